"""Decide what deleting a GPUCluster means at Together: pure, no I/O.

A finalizer holds the object until this says :class:`Release`: either nothing was created,
``deletionPolicy: Orphan`` keeps the cluster, or Together has confirmed (with the key that
made the cluster) that it is gone. An unanswered create is waited out first, with the same
grace rule as before re-creating (:func:`~together_operator.gpucluster.plan.unresolved_create`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace

from together_operator.gpucluster.plan import (
    Incarnation,
    Observation,
    Recorded,
    Rivals,
    Stall,
    cluster_id_conflict,
    key_mismatch,
    prevails,
    unresolved_create,
)
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import FINALIZER, DeletionPolicy, GPUClusterSpec
from together_operator.together.models import ClusterStatus

ORPHAN_HINT = " (or set deletionPolicy: Orphan to keep the cluster)"
NOTHING_CREATED = "no Together cluster was created or adopted for this GPUCluster"


@dataclass(frozen=True)
class LookUp:
    """Look at Together, fresh, then plan again: the cluster ``cluster_id`` (by GET), or,
    when None, the clusters listed under the object's name (an unresolved create)."""

    cluster_id: str | None


@dataclass(frozen=True)
class Release:
    """Let the object go; post ``reason`` as an event when there is one to tell."""

    reason: Reason | None
    message: str


@dataclass(frozen=True)
class DeleteCluster:
    """Ask Together to delete ``cluster_id``."""

    cluster_id: str


@dataclass(frozen=True)
class AwaitDeletion:
    """Together is deleting ``cluster_id``: look again soon."""

    cluster_id: str


@dataclass(frozen=True)
class AwaitCreate:
    """A create got no answer and may still appear: look again in ``seconds``."""

    seconds: float


DeletionAction = LookUp | Release | DeleteCluster | AwaitDeletion | AwaitCreate | Stall


def plan_deletion(
    spec: GPUClusterSpec,
    *,
    who: Incarnation,
    recorded: Recorded,
    observed: Observation | None,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
    rivals: Rivals | None = None,
) -> DeletionAction:
    """The single next step of deleting the object's Together cluster.

    ``observed`` is None until :class:`LookUp` was answered; then it is fresh: the cluster
    by ID (None when Together answered 404), or, while a create is unresolved, the clusters
    listed under the object's name.
    """
    if spec.deletion_policy == DeletionPolicy.ORPHAN:
        return _orphaned(spec, recorded)
    conflict = cluster_id_conflict(spec, recorded)
    if conflict is not None:
        return _with_orphan_hint(conflict)
    if recorded.cluster_id is None and recorded.create_intent_at is None:
        # Nothing created, and a spec.clusterId never adopted was never this object's.
        return Release(None, NOTHING_CREATED)
    cluster_id = recorded.cluster_id  # None while a create is unresolved: look by name
    if observed is None:
        return LookUp(cluster_id)
    if cluster_id is None:
        return _plan_unresolved(recorded, observed, now, intent_grace)
    cluster = observed.cluster
    recorded_rivals = [c for c in (rivals or Rivals()).claims if c.recorded]
    if recorded_rivals and not prevails(who, recorded_rivals, cluster):
        return Release(None, f"another GPUCluster manages {cluster_id}; left alone")
    if cluster is None:
        # After this operator's own accepted DELETE, "not found" is the deletion finished,
        # whatever key asks; otherwise only the key that last saw the cluster may say so.
        mismatch = key_mismatch(cluster_id, recorded, observed)
        if mismatch is not None and not recorded.delete_accepted:
            return _with_orphan_hint(mismatch)
        return Release(Reason.DELETED, f"Together cluster {cluster_id} is gone")
    if cluster.status == ClusterStatus.DELETING:
        return AwaitDeletion(cluster_id)
    return DeleteCluster(cluster_id)


def _plan_unresolved(
    recorded: Recorded,
    observed: Observation,
    now: datetime.datetime,
    intent_grace: datetime.timedelta,
) -> DeletionAction:
    live = [c for c in observed.same_name if c.status != ClusterStatus.DELETING]
    if len(live) > 1:
        return _with_orphan_hint(
            Stall(
                Reason.AMBIGUOUS_CLUSTER_NAME,
                f"cannot tell which of {', '.join(c.cluster_id for c in live)} (all named "
                f"{live[0].cluster_name!r}) this GPUCluster created; delete the right one at "
                f"Together, then remove the finalizer {FINALIZER}",
            )
        )
    if live:
        return DeleteCluster(live[0].cluster_id)
    remaining = unresolved_create(recorded, now, intent_grace)
    if remaining is not None:
        return AwaitCreate(max(remaining.total_seconds(), 1.0))
    return Release(None, "the unanswered create never reached Together")


def _with_orphan_hint(stall: Stall) -> Stall:
    return replace(stall, message=stall.message + ORPHAN_HINT)


def _orphaned(spec: GPUClusterSpec, recorded: Recorded) -> Release:
    kept = spec.cluster_id or recorded.cluster_id
    if kept is not None:
        return Release(
            Reason.ORPHANED, f"deletionPolicy is Orphan: Together cluster {kept} is left running"
        )
    if recorded.create_intent_at is not None:
        return Release(
            Reason.ORPHANED,
            "deletionPolicy is Orphan: a create had no answer yet; if Together made the "
            "cluster, it is left running",
        )
    return Release(None, NOTHING_CREATED)
