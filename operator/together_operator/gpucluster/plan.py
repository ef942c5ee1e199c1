"""Decide the one next action for a GPUCluster: pure, no I/O (the crossplane managed pattern).

Inputs are the desired spec, what the operator has recorded on the object (cluster ID, create
intent, key fingerprint), what it remembers of its own recent attempts, and what Together
reports. The output is exactly one of: create, adopt, update, wait, hold (back off), look
again (before a create), stall, or nothing to do. Every branch that could double-create a
cluster ends in a stall with an instruction for a person instead of a guess.

The create decision is made here, in :func:`plan_action`; deletion is decided in
:mod:`together_operator.gpucluster.deletion`. Both share :func:`unresolved_create`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterSpec, operator_fields, updatable_fields
from together_operator.together.models import (
    AddOnCreateRequest,
    AddOnUpdateRequest,
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GPUClusterUpdateRequest,
)

# Together accepts configuration changes only while the cluster is settled.
UPDATABLE_STATES = frozenset({ClusterStatus.READY, ClusterStatus.DEGRADED})
# States in which the cluster is not changing on its own (anything else: poll fast).
STABLE_STATES = frozenset(
    {
        ClusterStatus.READY,
        ClusterStatus.DEGRADED,
        ClusterStatus.PAUSED,
        ClusterStatus.ON_DEMAND_COMPUTE_PAUSED,
    }
)
#: The same update accepted this often without Together reporting it: stop and say so.
MAX_IDENTICAL_UPDATES = 3


def is_transitional(cluster: GPUClusterInfo) -> bool:
    """Whether Together is working on the cluster right now (worth polling fast).

    ``Scheduled`` can last days and a preemptible shortfall hours: both are watched at the
    slow cadence. Unknown states count as transitional.
    """
    return cluster.status not in STABLE_STATES and cluster.status != ClusterStatus.SCHEDULED


def desired_cluster_name(spec: GPUClusterSpec, namespace: str, name: str) -> str:
    """The Together cluster name: ``spec.clusterName`` or ``<namespace>-<name>``."""
    return spec.cluster_name or f"{namespace}-{name}"


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What the operator has written on the object about its Together cluster."""

    cluster_id: str | None = None
    #: When the operator recorded its intent to create (set before the POST, cleared after
    #: a definite answer). Present on restart means: a create may be in flight or done.
    create_intent_at: datetime.datetime | None = None
    #: Fingerprint of the API key that created or adopted the cluster.
    key_fingerprint: str | None = None


@dataclass(frozen=True)
class Observation:
    """Together's view. ``cluster`` is set when an ID is known and Together returned it;
    ``same_name`` holds the listed clusters with the desired name (for the no-ID path).

    ``fresh`` says the list was taken for this decision rather than from the shared cache:
    a create is only ever decided on a fresh list. ``key_fingerprint`` names the key that
    was asked: a "not found" only proves absence when it is the key that made the cluster.
    """

    cluster: GPUClusterInfo | None = None
    same_name: list[GPUClusterInfo] = field(default_factory=list)
    fresh: bool = False
    key_fingerprint: str | None = None


@dataclass(frozen=True)
class Attempts:
    """What the operator remembers of its own recent tries on this object."""

    #: A failed create, adopt or update is still inside its backoff.
    backing_off: bool = False
    #: How often Together accepted each update body (its JSON) without applying it.
    accepted_updates: Mapping[str, int] = field(default_factory=dict)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """POST this request (after recording the intent to)."""

    request: GPUClusterCreateRequest


@dataclass(frozen=True)
class Adopt:
    """Record this existing cluster as the object's own."""

    cluster: GPUClusterInfo
    why: str


@dataclass(frozen=True)
class Update:
    """Merge-PUT ``request`` to ``cluster_id``; ``changed`` names the spec fields."""

    cluster_id: str
    request: GPUClusterUpdateRequest
    changed: tuple[str, ...]

    @property
    def body(self) -> str:
        """The request as JSON: what identical-update counting compares."""
        return self.request.model_dump_json(exclude_none=True)


@dataclass(frozen=True)
class Wait:
    """Nothing to do until Together (or time) moves on."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Stall:
    """A problem only a person can fix; ``message`` says what to do. The one form of
    "needs a person" in the operator, whoever finds it (planner, credentials, deletion)."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class Hold:
    """An action is due but its backoff has not elapsed: keep the last verdict."""

    postponed: Create | Adopt | Update


@dataclass(frozen=True)
class LookAgain:
    """A create is due on a cached list: list again, now, and plan once more."""


@dataclass(frozen=True)
class InSync:
    """Together matches the spec."""

    cluster: GPUClusterInfo


Action = Create | Adopt | Update | Wait | Stall | Hold | LookAgain | InSync


# --- the decision ------------------------------------------------------------------------------


def cluster_to_observe(spec: GPUClusterSpec, recorded: Recorded) -> str | None:
    """The cluster this object may look at: the one it recorded, else the one it adopts;
    None while its own create is unresolved (that is looked for by name) or never made."""
    if recorded.cluster_id is not None:
        return recorded.cluster_id
    if recorded.create_intent_at is not None:
        return None
    return spec.cluster_id


#: A problem only a person can fix is looked at again this rarely, in case it was fixed
#: somewhere that does not wake the object (a key corrected at Together, capacity freed).
STALLED_RETRY_SECONDS = 300.0
# Reasons whose cure does not announce itself: look again on a timer.
_RETRIED_ON_A_TIMER = frozenset({Reason.UPDATE_NOT_APPLIED})
_CREDENTIAL_PROBLEMS = frozenset({Reason.NO_CREDENTIALS, Reason.CREDENTIALS_NOT_FOUND})


def revisit_after(
    reason: Reason,
    *,
    backoff_remaining: float,
    grace_remaining: datetime.timedelta | None,
    recheck_seconds: float,
    foreign_secret_seconds: float,
) -> float | None:
    """Seconds until an object must be looked at again on its own, None when only a change
    (at Together, or in its spec) can make a difference: a backoff to wait out, an
    unanswered create to confirm, a Secret a person may be creating or deleting right now,
    or a stall whose cure nobody announces."""
    if backoff_remaining > 0:
        return backoff_remaining
    if grace_remaining is not None:
        return grace_remaining.total_seconds()
    if reason in _CREDENTIAL_PROBLEMS:
        return max(recheck_seconds, 1.0)
    if reason == Reason.KUBECONFIG_SECRET_CONFLICT:
        return foreign_secret_seconds
    if reason in _RETRIED_ON_A_TIMER:
        return STALLED_RETRY_SECONDS
    return None


def worth_looking_up(last_looked_at: float, now: float, interval: float) -> bool:
    """Whether a cluster missing from the List is worth a GET now: one found missing is not
    asked about again before the next slow poll (the List will show it if it comes back)."""
    return now - last_looked_at >= interval


def unresolved_create(
    recorded: Recorded, now: datetime.datetime, grace: datetime.timedelta
) -> datetime.timedelta | None:
    """How much longer an unanswered create may still show up in a List (None: it may not,
    or there is none). Before that, neither re-creating nor releasing is safe."""
    if recorded.cluster_id is not None or recorded.create_intent_at is None:
        return None
    remaining = recorded.create_intent_at + grace - now
    return remaining if remaining > datetime.timedelta(0) else None


def plan_action(
    spec: GPUClusterSpec,
    *,
    namespace: str,
    name: str,
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
    attempts: Attempts | None = None,
) -> Action:
    """The single next step that moves Together towards ``spec``."""
    conflict = cluster_id_conflict(spec, recorded)
    if conflict is not None:
        return conflict
    cluster_id = cluster_to_observe(spec, recorded)
    if cluster_id is not None:
        action = _plan_known(spec, cluster_id, recorded, observed)
    else:
        action = _plan_unknown(spec, namespace, name, recorded, observed, now, intent_grace)
    return _gate(action, attempts or Attempts())


def _gate(action: Action, attempts: Attempts) -> Action:
    """Apply the operator's own memory: backoff after a failure, and the limit on updates
    Together accepts but never applies."""
    if isinstance(action, Update):
        accepted = attempts.accepted_updates.get(action.body, 0)
        if accepted >= MAX_IDENTICAL_UPDATES:
            return Stall(
                Reason.UPDATE_NOT_APPLIED,
                f"Together accepted {', '.join(action.changed)} {accepted} times but still "
                "reports other values; check the spec against what Together supports, or "
                "contact Together support",
            )
    if isinstance(action, Create | Adopt | Update) and attempts.backing_off:
        return Hold(action)
    return action


def cluster_id_conflict(spec: GPUClusterSpec, recorded: Recorded) -> Stall | None:
    """A ``spec.clusterId`` set after this object already created (or started creating) a
    cluster must not silently take over: the first cluster would leak."""
    if spec.cluster_id is None:
        return None
    if recorded.cluster_id is not None and recorded.cluster_id != spec.cluster_id:
        return Stall(
            Reason.CLUSTER_ID_CONFLICT,
            f"this GPUCluster already manages Together cluster {recorded.cluster_id}; "
            f"spec.clusterId {spec.cluster_id} cannot take over. Set deletionPolicy: Orphan, "
            "delete this GPUCluster, and manage each cluster with its own GPUCluster",
        )
    if recorded.cluster_id is None and recorded.create_intent_at is not None:
        return Stall(
            Reason.CLUSTER_ID_CONFLICT,
            f"this GPUCluster started creating a cluster whose outcome is unknown; "
            f"spec.clusterId {spec.cluster_id} cannot be adopted until that is resolved. "
            "Check Together for a cluster named after this GPUCluster and delete it there, "
            f"then remove the annotation compute.together.ai/create-intent",
        )
    return None


def absence(cluster_id: str, recorded: Recorded, observed: Observation, *, adopting: bool) -> Stall:
    """What "Together does not know ``cluster_id``" means for this object."""
    if adopting:
        return Stall(
            Reason.CLUSTER_NOT_FOUND,
            f"spec.clusterId {cluster_id} does not exist at Together (for this API key); "
            "fix spec.clusterId or use a key that can see the cluster",
        )
    mismatch = key_mismatch(cluster_id, recorded, observed)
    if mismatch is not None:
        return mismatch
    return Stall(
        Reason.CLUSTER_GONE,
        f"Together cluster {cluster_id} no longer exists (deleted outside the operator). "
        "Delete this GPUCluster and apply it again to create a new cluster",
    )


def key_mismatch(cluster_id: str, recorded: Recorded, observed: Observation) -> Stall | None:
    """A "not found" only proves absence when asked with the key that created the cluster."""
    if not recorded.key_fingerprint or recorded.key_fingerprint == observed.key_fingerprint:
        return None
    return Stall(
        Reason.CREDENTIALS_CHANGED,
        f"Together says cluster {cluster_id} does not exist, but the API key in use "
        f"(fingerprint {observed.key_fingerprint}) is not the one that created it "
        f"({recorded.key_fingerprint}); restore that key in spec.credentialsSecretRef",
    )


def _plan_known(
    spec: GPUClusterSpec, cluster_id: str, recorded: Recorded, observed: Observation
) -> Action:
    cluster = observed.cluster
    if cluster is None:
        return absence(cluster_id, recorded, observed, adopting=spec.cluster_id is not None)
    if cluster.status == ClusterStatus.DELETING:
        return Stall(
            Reason.CLUSTER_DELETING,
            f"Together cluster {cluster_id} is being deleted outside the operator; delete this "
            "GPUCluster, then apply it again once the deletion finished",
        )
    request, changed = update_for(spec, cluster)
    if not changed:
        return InSync(cluster)
    if cluster.status not in UPDATABLE_STATES:
        return Wait(
            Reason.WAITING_FOR_STABLE_CLUSTER,
            f"{', '.join(changed)} will be applied once the cluster leaves {cluster.status}",
        )
    return Update(cluster_id, request, changed)


def _plan_unknown(
    spec: GPUClusterSpec,
    namespace: str,
    name: str,
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
) -> Action:
    cluster_name = desired_cluster_name(spec, namespace, name)
    live = [c for c in observed.same_name if c.status != ClusterStatus.DELETING]
    if len(live) > 1:
        ids = ", ".join(sorted(c.cluster_id for c in live))
        return Stall(
            Reason.AMBIGUOUS_CLUSTER_NAME,
            f"{len(live)} Together clusters are named {cluster_name!r} ({ids}). Set "
            "spec.clusterId to the one this GPUCluster manages and delete the others at Together",
        )
    if len(live) == 1:
        found = live[0]
        if recorded.create_intent_at is not None:
            return Adopt(found, "a create this operator started earlier did reach Together")
        return Stall(
            Reason.CLUSTER_NAME_TAKEN,
            f"a Together cluster named {cluster_name!r} already exists ({found.cluster_id}) and "
            f"this GPUCluster did not create it. Set spec.clusterId: {found.cluster_id} to adopt "
            "it, or set spec.clusterName to another name",
        )
    if unresolved_create(recorded, now, intent_grace) is not None:
        # An earlier POST's outcome is unknown and it may still be in flight: listing again
        # after the grace period is what tells "never created" from "not visible yet".
        return Wait(
            Reason.CONFIRMING_CREATE,
            f"an earlier create of {cluster_name!r} got no answer; checking it did not happen "
            "before creating again",
        )
    if not observed.fresh:
        return LookAgain()  # never decide to POST on a cached list
    return Create(create_request(spec, cluster_name))


# --- requests, derived from the spec's field markers -------------------------------------------


def create_request(spec: GPUClusterSpec, cluster_name: str) -> GPUClusterCreateRequest:
    """The POST body for ``spec``: its Together fields, snake_case, operator fields left out."""
    fields = spec.model_dump(
        mode="json", exclude_none=True, exclude={*operator_fields(), "cluster_name", "add_ons"}
    )
    fields["cluster_name"] = cluster_name
    if spec.add_ons:
        fields["add_ons"] = [
            AddOnCreateRequest.model_validate(
                {"name": a.name, "add_on_type": a.add_on_type, "config": a.config}
            )
            for a in spec.add_ons
        ]
    return GPUClusterCreateRequest.model_validate(fields)


def _is_unset(value: Any) -> bool:
    # proto3 servers omit zero values: false, "", 0, empty and the NONE enum mean "unset".
    return value in (None, False, "", "NONE", {}, [])


def differs(wanted: Any, observed: Any) -> bool:
    """Whether Together's value differs from the spec's, comparing only what the spec sets."""
    if isinstance(wanted, dict):
        seen = observed if isinstance(observed, dict) else {}
        return any(differs(value, seen.get(key)) for key, value in wanted.items())
    if _is_unset(wanted):
        return not _is_unset(observed)
    return bool(wanted != observed)


def _as_json(value: Any) -> Any:
    return (
        value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
    )


def update_for(
    spec: GPUClusterSpec, cluster: GPUClusterInfo
) -> tuple[GPUClusterUpdateRequest, tuple[str, ...]]:
    """A merge-PUT body with only the updatable fields that differ, and their spec names."""
    body: dict[str, Any] = {}
    changed: list[str] = []
    for name, role in updatable_fields().items():
        wanted = getattr(spec, name)
        if wanted is None:
            continue  # the spec leaves it to Together
        if name == "add_ons":
            updates = _add_on_updates(spec, cluster)
            if updates:
                body[name] = updates
                changed.append(GPUClusterSpec.model_fields[name].alias or name)
            continue
        observed = getattr(cluster, role.observed_as or name)
        if differs(_as_json(wanted), _as_json(observed)):
            body[name] = _as_json(wanted)
            changed.append(GPUClusterSpec.model_fields[name].alias or name)
    return GPUClusterUpdateRequest.model_validate(body), tuple(changed)


def _add_on_updates(spec: GPUClusterSpec, cluster: GPUClusterInfo) -> list[AddOnUpdateRequest]:
    # Add-ons that Together does not report yet cannot be added by this PUT (it updates
    # existing add-ons by name); see the README's known limits.
    observed = {a.name: a.config.model_dump(mode="json") for a in cluster.add_ons}
    return [
        AddOnUpdateRequest.model_validate({"name": a.name, "config": a.config})
        for a in spec.add_ons or []
        if a.name in observed and differs(a.config or {}, observed[a.name])
    ]
