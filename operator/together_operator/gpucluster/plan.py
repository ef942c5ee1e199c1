"""Decide the one next action for a GPUCluster: pure, no I/O (the crossplane managed pattern).

Inputs are the desired spec, what the operator has recorded on the object (cluster ID, create
intent) and what Together reports. The output is exactly one of: create, adopt, update, wait,
stall, or nothing to do. Every branch that could double-create a cluster ends in a stall with
an instruction for a person instead of a guess.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from together_operator.gpucluster.spec import GPUClusterSpec
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
SCHEDULED = "Scheduled"  # sent by real servers, not in the contract's enum
# States in which the cluster is not changing on its own (anything else: poll fast).
STABLE_STATES = frozenset(
    {
        ClusterStatus.READY,
        ClusterStatus.DEGRADED,
        ClusterStatus.PAUSED,
        ClusterStatus.ON_DEMAND_COMPUTE_PAUSED,
    }
)


def is_transitional(cluster: GPUClusterInfo) -> bool:
    """Whether Together is working on the cluster right now (worth polling fast).

    ``Scheduled`` can last days and a preemptible shortfall hours: both are watched at the
    slow cadence. Unknown states count as transitional.
    """
    return cluster.status not in STABLE_STATES and cluster.status != SCHEDULED


def desired_cluster_name(spec: GPUClusterSpec, namespace: str, name: str) -> str:
    """The Together cluster name: ``spec.clusterName`` or ``<namespace>-<name>``."""
    return spec.cluster_name or f"{namespace}-{name}"


@dataclass(frozen=True)
class Recorded:
    """What the operator has written on the object about its Together cluster."""

    cluster_id: str | None = None
    #: When the operator recorded its intent to create (set before the POST, cleared after
    #: a definite answer). Present on restart means: a create may be in flight or done.
    create_intent_at: datetime.datetime | None = None


@dataclass(frozen=True)
class Create:
    request: GPUClusterCreateRequest


@dataclass(frozen=True)
class Adopt:
    cluster: GPUClusterInfo
    reason: str


@dataclass(frozen=True)
class Update:
    cluster_id: str
    request: GPUClusterUpdateRequest
    changed: tuple[str, ...]


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str


@dataclass(frozen=True)
class Stall:
    reason: str
    message: str


@dataclass(frozen=True)
class InSync:
    cluster: GPUClusterInfo


Action = Create | Adopt | Update | Wait | Stall | InSync


@dataclass(frozen=True)
class Observation:
    """Together's view. ``cluster`` is set when an ID is known and Together returned it;
    ``same_name`` holds the listed clusters with the desired name (for the no-ID path)."""

    cluster: GPUClusterInfo | None = None
    same_name: list[GPUClusterInfo] = field(default_factory=list)


def plan_action(
    spec: GPUClusterSpec,
    *,
    namespace: str,
    name: str,
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
) -> Action:
    """The single next step that moves Together towards ``spec``."""
    conflict = cluster_id_conflict(spec, recorded)
    if conflict is not None:
        return conflict
    cluster_id = spec.cluster_id or recorded.cluster_id
    if cluster_id is not None:
        return _plan_known(spec, cluster_id, observed.cluster, adopting=spec.cluster_id)
    return _plan_unknown(spec, namespace, name, recorded, observed.same_name, now, intent_grace)


def cluster_id_conflict(spec: GPUClusterSpec, recorded: Recorded) -> Stall | None:
    """A ``spec.clusterId`` set after this object already created (or started creating) a
    cluster must not silently take over: the first cluster would leak."""
    if spec.cluster_id is None:
        return None
    if recorded.cluster_id is not None and recorded.cluster_id != spec.cluster_id:
        return Stall(
            "ClusterIdConflict",
            f"this GPUCluster already manages Together cluster {recorded.cluster_id}; "
            f"spec.clusterId {spec.cluster_id} cannot take over. Set deletionPolicy: Orphan, "
            "delete this GPUCluster, and manage each cluster with its own GPUCluster",
        )
    if recorded.cluster_id is None and recorded.create_intent_at is not None:
        return Stall(
            "ClusterIdConflict",
            f"this GPUCluster started creating a cluster whose outcome is unknown; "
            f"spec.clusterId {spec.cluster_id} cannot be adopted until that is resolved. "
            "Check Together for a cluster named after this GPUCluster and delete it there, "
            f"then remove the annotation compute.together.ai/create-intent",
        )
    return None


def _plan_known(
    spec: GPUClusterSpec, cluster_id: str, cluster: GPUClusterInfo | None, adopting: str | None
) -> Action:
    if cluster is None:
        if adopting:
            return Stall(
                "ClusterNotFound",
                f"spec.clusterId {cluster_id} does not exist at Together (for this API key); "
                "fix spec.clusterId or use a key that can see the cluster",
            )
        return Stall(
            "ClusterGone",
            f"Together cluster {cluster_id} no longer exists (deleted outside the operator). "
            "Delete this GPUCluster and apply it again to create a new cluster",
        )
    if cluster.status == ClusterStatus.DELETING:
        return Stall(
            "ClusterDeleting",
            f"Together cluster {cluster_id} is being deleted outside the operator; delete this "
            "GPUCluster, then apply it again once the deletion finished",
        )
    request, changed = update_for(spec, cluster)
    if not changed:
        return InSync(cluster)
    if cluster.status not in UPDATABLE_STATES:
        return Wait(
            "WaitingForStableCluster",
            f"{', '.join(changed)} will be applied once the cluster leaves {cluster.status}",
        )
    return Update(cluster_id, request, changed)


def _plan_unknown(
    spec: GPUClusterSpec,
    namespace: str,
    name: str,
    recorded: Recorded,
    same_name: list[GPUClusterInfo],
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
) -> Action:
    cluster_name = desired_cluster_name(spec, namespace, name)
    live = [c for c in same_name if c.status != ClusterStatus.DELETING]
    if len(live) > 1:
        ids = ", ".join(sorted(c.cluster_id for c in live))
        return Stall(
            "AmbiguousClusterName",
            f"{len(live)} Together clusters are named {cluster_name!r} ({ids}). Set "
            "spec.clusterId to the one this GPUCluster manages and delete the others at Together",
        )
    if len(live) == 1:
        found = live[0]
        if recorded.create_intent_at is not None:
            return Adopt(found, "a create this operator started earlier did reach Together")
        return Stall(
            "ClusterNameTaken",
            f"a Together cluster named {cluster_name!r} already exists ({found.cluster_id}) and "
            f"this GPUCluster did not create it. Set spec.clusterId: {found.cluster_id} to adopt "
            "it, or set spec.clusterName to another name",
        )
    if recorded.create_intent_at is not None and now - recorded.create_intent_at < intent_grace:
        # An earlier POST's outcome is unknown and it may still be in flight: listing again
        # after the grace period is what tells "never created" from "not visible yet".
        return Wait(
            "ConfirmingCreate",
            f"an earlier create of {cluster_name!r} got no answer; checking it did not happen "
            "before creating again",
        )
    return Create(create_request(spec, cluster_name))


def create_request(spec: GPUClusterSpec, cluster_name: str) -> GPUClusterCreateRequest:
    """The POST body for ``spec``: its create fields, snake_case, operator fields left out."""
    fields = spec.model_dump(
        mode="json",
        exclude_none=True,
        exclude={
            "cluster_name",
            "credentials_secret_ref",
            "kubeconfig_secret_name",
            "deletion_policy",
            "cluster_id",
            "add_ons",
        },
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


def update_for(
    spec: GPUClusterSpec, cluster: GPUClusterInfo
) -> tuple[GPUClusterUpdateRequest, tuple[str, ...]]:
    """A merge-PUT body with only the mutable fields that differ, and their spec names."""
    body: dict[str, Any] = {}
    changed: list[str] = []
    if spec.num_gpus != cluster.num_gpus:
        body["num_gpus"] = spec.num_gpus
        changed.append("numGpus")
    counts = (
        ("num_preemptible_gpus", "numPreemptibleGpus", cluster.desired_preemptible_gpus),
        ("num_reserved_gpus", "numReservedGpus", cluster.num_reserved_gpus),
        ("num_capacity_pool_gpus", "numCapacityPoolGpus", cluster.num_capacity_pool_gpus),
    )
    for attribute, spec_name, observed in counts:
        wanted = getattr(spec, attribute)
        if wanted is not None and wanted != observed:
            body[attribute] = wanted
            changed.append(spec_name)
    if spec.reservation_end_time is not None and (
        cluster.reservation_end_time is None
        or spec.reservation_end_time != cluster.reservation_end_time
    ):
        body["reservation_end_time"] = spec.reservation_end_time
        changed.append("reservationEndTime")
    if spec.cluster_config is not None:
        wanted_config = spec.cluster_config.model_dump(mode="json", exclude_none=True)
        observed_config = (
            cluster.cluster_config.model_dump(mode="json") if cluster.cluster_config else {}
        )
        if differs(wanted_config, observed_config):
            body["cluster_config"] = spec.cluster_config.model_dump(mode="json", exclude_none=True)
            changed.append("clusterConfig")
    if spec.add_ons is not None:
        observed_add_ons = {a.name: a.config.model_dump(mode="json") for a in cluster.add_ons}
        # Add-ons that Together does not report yet cannot be added by this PUT (it updates
        # existing add-ons by name); see the README's known limits.
        updates = [
            AddOnUpdateRequest.model_validate({"name": a.name, "config": a.config})
            for a in spec.add_ons
            if a.name in observed_add_ons and differs(a.config or {}, observed_add_ons[a.name])
        ]
        if updates:
            body["add_ons"] = updates
            changed.append("addOns")
    return GPUClusterUpdateRequest.model_validate(body), tuple(changed)
