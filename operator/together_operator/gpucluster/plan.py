"""Decide the one next action for a GPUCluster: pure, no I/O (the crossplane managed pattern).

Inputs are the desired spec, what the operator has recorded on the object (cluster ID, create
intent, key fingerprint), what it remembers of its own recent attempts, and what Together
reports. The output is exactly one of: create, adopt, update, change add-ons, wait, hold
(back off), look again (before a create), stall, or nothing to do. Every branch that could
double-create a cluster ends in a stall with an instruction for a person instead of a guess.

The create decision is made here, in :func:`plan_action`; deletion is decided in
:mod:`together_operator.gpucluster.deletion`. Both share :func:`unresolved_create`.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from together_operator.gpucluster import addons
from together_operator.gpucluster.compare import as_json, differs
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import (
    FINALIZER,
    GPUClusterSpec,
    operator_fields,
    updatable_fields,
)
from together_operator.together.models import (
    AddOnCreateRequest,
    AddOnInfo,
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


#: Characters of the UID-derived tag in a Together cluster name, and of the name before it.
TAG_LENGTH, BASE_LENGTH = 10, 52


def incarnation_tag(uid: str) -> str:
    """A short tag only the GPUCluster with metadata.uid ``uid`` produces."""
    return hashlib.sha256(uid.encode()).hexdigest()[:TAG_LENGTH]


def name_tag(cluster_name: str) -> str | None:
    """The incarnation tag a Together cluster name ends with, if it has the operator's form."""
    base, _, tag = cluster_name.rpartition("-")
    if base and len(tag) == TAG_LENGTH and all(c in "0123456789abcdef" for c in tag):
        return tag
    return None


@dataclass(frozen=True)
class Incarnation:
    """One GPUCluster object as ownership sees it: a UID, not a name (a deleted and
    re-applied object is another incarnation, and so is a copy)."""

    namespace: str
    name: str
    uid: str
    created_at: datetime.datetime | None = None

    @property
    def tag(self) -> str:
        return incarnation_tag(self.uid)


def desired_cluster_name(spec: GPUClusterSpec, who: Incarnation) -> str:
    """The name a cluster is created with at Together: ``spec.clusterName`` (default
    ``<namespace>-<name>``, cut to 52 characters), a dash, and the incarnation's tag. Only
    this object can produce it, so a cluster found under it was created for this object."""
    base = spec.cluster_name or f"{who.namespace}-{who.name}"
    return f"{base[:BASE_LENGTH]}-{who.tag}"


@dataclass(frozen=True)
class Claim:
    """Another GPUCluster naming a cluster: it recorded it as its own, or asks to adopt it."""

    uid: str
    created_at: datetime.datetime | None
    recorded: bool


@dataclass(frozen=True)
class Rivals:
    """What other GPUClusters say about the cluster this object looks at."""

    claims: tuple[Claim, ...] = ()
    #: Another object whose tag the cluster's name carries: the object that created it.
    creator: Claim | None = None


def prevails(who: Incarnation, rivals: Sequence[Claim], cluster: GPUClusterInfo | None) -> bool:
    """Whether ``who`` keeps a cluster that ``rivals`` name too: the object that created it
    (its tag is in the cluster's name) keeps it; otherwise the oldest object (then the
    smallest UID), a rule every claimant computes the same way."""
    contenders = [Claim(who.uid, who.created_at, True), *rivals]
    if cluster is not None:
        tag = name_tag(cluster.cluster_name)
        creators = [c for c in contenders if incarnation_tag(c.uid) == tag]
        if creators:
            return creators[0].uid == who.uid
    oldest = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    first = min(contenders, key=lambda c: (c.created_at or oldest, c.uid))
    return first.uid == who.uid


def parse_spec(raw: Mapping[str, Any], doing: str) -> GPUClusterSpec | Stall:
    """The spec, or a stall that says ``doing`` failed and why."""
    try:
        return GPUClusterSpec.model_validate(raw)
    except ValidationError as error:
        return Stall(Reason.INVALID_SPEC, f"{doing}: {error.errors()[0].get('msg')}")


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What the operator has written on the object about its Together cluster."""

    cluster_id: str | None = None
    #: When the operator recorded its intent to create (set before the POST, cleared after
    #: a definite answer). Present on restart means: a create may be in flight or done.
    create_intent_at: datetime.datetime | None = None
    #: Fingerprint of the API key that last saw the cluster.
    key_fingerprint: str | None = None
    #: Together accepted this operator's DELETE of the cluster.
    delete_accepted: bool = False
    #: An operator before records moved into status began a create: its name is not known.
    legacy_intent: bool = False
    #: Add-ons the spec named before (``status.addOns[].managed``): removed when it no
    #: longer does.
    managed_add_ons: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Observation:
    """Together's view. ``cluster`` is set when an ID is known and Together returned it;
    ``same_name`` holds the listed clusters with the desired name (for the no-ID path).

    ``fresh`` says the list was taken for this decision rather than from the shared cache:
    a create after an unanswered one is only ever decided on a fresh list.
    ``key_fingerprint`` names the key that was asked: a "not found" only proves absence when
    it is the key that made the cluster.
    """

    cluster: GPUClusterInfo | None = None
    same_name: list[GPUClusterInfo] = field(default_factory=list)
    fresh: bool = False
    key_fingerprint: str | None = None
    #: Every add-on of ``cluster``, disabled ones included; None when not listed (the
    #: object manages none, or the cluster is not settled).
    add_ons: Sequence[AddOnInfo] | None = None


@dataclass(frozen=True)
class Attempts:
    """What the operator remembers of its own recent tries on this object."""

    #: A failed create, adopt or update is still inside its backoff.
    backing_off: bool = False
    #: Each update body (its JSON) Together accepted without applying it: how often, and
    #: when last.
    accepted_updates: Mapping[str, tuple[int, datetime.datetime]] = field(default_factory=dict)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """POST this request (after recording the intent to)."""

    request: GPUClusterCreateRequest


@dataclass(frozen=True)
class Adopt:
    """Record this existing cluster as the object's own: one created for it whose answer
    was lost, or (``by_spec``) one that ``spec.clusterId`` names."""

    cluster: GPUClusterInfo
    why: str
    by_spec: bool = False


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
class ChangeAddOns:
    """Add, change and remove add-ons of ``cluster_id``, in this order."""

    cluster_id: str
    steps: tuple[addons.AddOnStep, ...]

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(step.says for step in self.steps)

    @property
    def body(self) -> str:
        """The steps as text: what identical-update counting compares."""
        return repr(self.steps)


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

    postponed: Create | Adopt | Update | ChangeAddOns


@dataclass(frozen=True)
class LookAgain:
    """A create after an unanswered one is due on a cached list: list again, now, and plan
    once more."""


@dataclass(frozen=True)
class ForgetCreate:
    """An unanswered create never reached Together: clear its intent (so that
    ``spec.clusterId``, set meanwhile, can be adopted)."""


@dataclass(frozen=True)
class InSync:
    """Together matches the spec."""

    cluster: GPUClusterInfo


Action = (
    Create | Adopt | Update | ChangeAddOns | Wait | Stall | Hold | LookAgain | ForgetCreate | InSync
)


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
    health_read_in: float | None = None,
) -> float | None:
    """Seconds until an object must be looked at again on its own, None when only a change
    (at Together, or in its spec) can make a difference: a backoff to wait out, an
    unanswered create to confirm, a Secret a person may be creating or deleting right now,
    a stall whose cure nobody announces, or alerts due to be read (``health_read_in``)."""
    own = _revisit_for_reason(
        reason,
        backoff_remaining=backoff_remaining,
        grace_remaining=grace_remaining,
        recheck_seconds=recheck_seconds,
        foreign_secret_seconds=foreign_secret_seconds,
    )
    waits = [w for w in (own, health_read_in) if w is not None]
    return min(waits) if waits else None


def _revisit_for_reason(
    reason: Reason,
    *,
    backoff_remaining: float,
    grace_remaining: datetime.timedelta | None,
    recheck_seconds: float,
    foreign_secret_seconds: float,
) -> float | None:
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
    who: Incarnation,
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
    attempts: Attempts | None = None,
    rivals: Rivals | None = None,
    adoption_allowed: bool = False,
    finalized: bool = True,
) -> Action:
    """The single next step that moves Together towards ``spec``. ``finalized``: the
    operator's finalizer is on the object (nothing is created before it is)."""
    conflict = cluster_id_conflict(spec, recorded)
    if conflict is not None:
        return conflict
    if recorded.legacy_intent and recorded.cluster_id is None:
        return _legacy_intent(spec, who)
    cluster_id = cluster_to_observe(spec, recorded)
    others = rivals or Rivals()
    if spec.cluster_id is not None and cluster_id is None:
        # spec.clusterId came while this object's own create was unresolved: resolve that
        # first. A cluster it created is its own (and then clusterId cannot take over).
        action = _plan_unknown(spec, who, recorded, observed, now, intent_grace, finalized)
        if isinstance(action, Create):
            action = ForgetCreate()
    elif cluster_id is not None and recorded.cluster_id is None:
        action = _plan_adoption(cluster_id, who, observed, others, adoption_allowed)
    elif cluster_id is not None:
        action = _plan_known(spec, cluster_id, who, recorded, observed, others)
    else:
        action = _plan_unknown(spec, who, recorded, observed, now, intent_grace, finalized)
    return _gate(action, attempts or Attempts(), now)


def _gate(action: Action, attempts: Attempts, now: datetime.datetime) -> Action:
    """Apply the operator's own memory: backoff after a failure, and the limit on updates
    Together accepts but never applies (tried again after a while: capacity may have come)."""
    if isinstance(action, Update | ChangeAddOns):
        accepted, last = attempts.accepted_updates.get(action.body, (0, now))
        waited = (now - last).total_seconds() >= STALLED_RETRY_SECONDS
        if accepted >= MAX_IDENTICAL_UPDATES and not waited:
            return Stall(
                Reason.UPDATE_NOT_APPLIED,
                f"Together accepted {', '.join(action.changed)} {accepted} times but still "
                "reports other values; check the spec against what Together supports, or "
                "contact Together support",
            )
    if isinstance(action, Create | Adopt | Update | ChangeAddOns) and attempts.backing_off:
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
    return None


def absence(cluster_id: str, recorded: Recorded, observed: Observation) -> Stall:
    """What "Together does not know ``cluster_id``", the object's own cluster, means."""
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


def _legacy_intent(spec: GPUClusterSpec, who: Incarnation) -> Stall:
    legacy_name = spec.cluster_name or f"{who.namespace}-{who.name}"
    return Stall(
        Reason.LEGACY_CREATE_UNRESOLVED,
        "an earlier version of the operator started creating a cluster for this GPUCluster "
        f"and its outcome was never recorded. Look at Together for a cluster named "
        f"{legacy_name!r}: if there is one, set spec.clusterId to its ID (adoption); if there "
        "is none, remove the annotation compute.together.ai/create-intent",
    )


def _plan_adoption(
    cluster_id: str, who: Incarnation, observed: Observation, rivals: Rivals, allowed: bool
) -> Action:
    """``spec.clusterId`` asks to adopt a cluster: only with the right to, and only a
    cluster nobody else holds. The refusal says the same whatever the reason at Together,
    so that an object learns nothing about clusters that are not its own."""
    if not allowed:
        return Stall(
            Reason.ADOPTION_NOT_ALLOWED,
            "adopting a cluster with the operator's shared API key is not allowed in this "
            "namespace: ask the platform team to allow it (--adoption-namespace), or give "
            "this GPUCluster its own key in spec.credentialsSecretRef",
        )
    cluster = observed.cluster
    held = any(c.recorded for c in rivals.claims) or rivals.creator is not None
    asking = [c for c in rivals.claims if not c.recorded]
    if (
        cluster is None
        or cluster.status == ClusterStatus.DELETING
        or held
        or (asking and not prevails(who, asking, None))
    ):
        return _not_adoptable(cluster_id)
    return Adopt(cluster, "spec.clusterId names it", by_spec=True)


def _not_adoptable(cluster_id: str) -> Stall:
    return Stall(
        Reason.CLUSTER_NOT_ADOPTABLE,
        f"spec.clusterId {cluster_id} cannot be adopted: it does not exist for this API key, "
        "is being deleted, or another GPUCluster manages it. Check the ID, or the key in "
        "spec.credentialsSecretRef",
    )


def _plan_known(
    spec: GPUClusterSpec,
    cluster_id: str,
    who: Incarnation,
    recorded: Recorded,
    observed: Observation,
    rivals: Rivals,
) -> Action:
    cluster = observed.cluster
    recorded_rivals = [c for c in rivals.claims if c.recorded]
    if recorded_rivals and not prevails(who, recorded_rivals, cluster):
        return Stall(
            Reason.CLUSTER_CLAIMED,
            "another GPUCluster records the Together cluster this object's status names, and "
            "it prevails; this object will not manage it. Delete this GPUCluster (its cluster "
            "is left alone) or ask the platform team",
        )
    if cluster is None:
        return absence(cluster_id, recorded, observed)
    if cluster.status == ClusterStatus.DELETING:
        return Stall(
            Reason.CLUSTER_DELETING,
            f"Together cluster {cluster_id} is being deleted outside the operator; delete this "
            "GPUCluster, then apply it again once the deletion finished",
        )
    request, changed = update_for(spec, cluster)
    action: Update | ChangeAddOns | Stall | None = None
    if changed:
        action = Update(cluster_id, request, changed)
    elif observed.add_ons is not None:
        action = _plan_add_ons(spec, cluster_id, recorded, observed.add_ons)
    if action is None:
        return InSync(cluster)
    if isinstance(action, Stall):
        return action
    if cluster.status not in UPDATABLE_STATES:
        return Wait(
            Reason.WAITING_FOR_STABLE_CLUSTER,
            f"{', '.join(action.changed)} will be applied once the cluster leaves {cluster.status}",
        )
    return action


def _plan_add_ons(
    spec: GPUClusterSpec, cluster_id: str, recorded: Recorded, present: Sequence[AddOnInfo]
) -> ChangeAddOns | Stall | None:
    steps, conflict = addons.steps_for(spec, present, recorded.managed_add_ons)
    if conflict is not None:
        return Stall(
            Reason.ADD_ON_TYPE_CONFLICT,
            f"Together cluster {cluster_id} has an add-on named {conflict.name!r} of type "
            f"{conflict.present}, and spec.addOns asks for a {conflict.wanted}: an add-on "
            "keeps its type. Give the add-on in the spec another name",
        )
    return ChangeAddOns(cluster_id, steps) if steps else None


def _plan_unknown(
    spec: GPUClusterSpec,
    who: Incarnation,
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
    finalized: bool,
) -> Action:
    cluster_name = desired_cluster_name(spec, who)
    live = [c for c in observed.same_name if c.status != ClusterStatus.DELETING]
    if len(live) > 1:
        ids = ", ".join(sorted(c.cluster_id for c in live))
        return Stall(
            Reason.AMBIGUOUS_CLUSTER_NAME,
            f"{len(live)} Together clusters are named {cluster_name!r} ({ids}), a name only "
            "this GPUCluster creates. Delete all but one at Together, then set spec.clusterId "
            "to the one left",
        )
    if len(live) == 1:
        # Only this incarnation creates under this name: the cluster is this object's own,
        # created by a request whose answer was lost (or by another operator instance).
        return Adopt(live[0], "a create for this GPUCluster did reach Together")
    if unresolved_create(recorded, now, intent_grace) is not None:
        # An earlier POST's outcome is unknown and it may still be in flight: listing again
        # after the grace period is what tells "never created" from "not visible yet".
        return Wait(
            Reason.CONFIRMING_CREATE,
            f"an earlier create of {cluster_name!r} got no answer; checking it did not happen "
            "before creating again",
        )
    if not finalized:
        # Deleted before the finalizer is on, the object would vanish and leave the cluster
        # behind. kopf adds it within moments of the object's first event, which wakes us.
        return Wait(
            Reason.WAITING_FOR_FINALIZER,
            f"waiting for the finalizer {FINALIZER} before creating {cluster_name!r}",
        )
    if recorded.create_intent_at is not None and not observed.fresh:
        # An earlier POST of this incarnation went unanswered: only a List sent after the
        # grace period tells "never created" from "created": never re-create on a cached one.
        return LookAgain()
    # No intent was ever recorded (or it was resolved): no POST under this name can have
    # happened. The name carries this incarnation's tag and every POST under it follows a
    # confirmed, conditional intent write, so the shared snapshot is as good as a fresh List
    # here, and a burst of first creates costs no List at all.
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
            continue  # through the add-on endpoints, which also add, remove and re-enable
        observed = getattr(cluster, role.observed_as or name)
        if differs(as_json(wanted), as_json(observed)):
            body[name] = as_json(wanted)
            changed.append(GPUClusterSpec.model_fields[name].alias or name)
    return GPUClusterUpdateRequest.model_validate(body), tuple(changed)
