"""Render Together's view and the planner's verdict into `.status`: pure, no I/O.

Conditions follow kstatus: ``Ready`` is the summary; ``Reconciling=True`` while the cluster or
the operator is still moving towards the spec; ``Stalled=True`` when it cannot get there
without a person; ``Synced`` says whether the last exchange with Together worked. Each carries
``observedGeneration``, and ``lastTransitionTime`` only moves when the status flips.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from together_operator.together.models import ClusterStatus, GPUClusterInfo

READY, SYNCED, RECONCILING, STALLED = "Ready", "Synced", "Reconciling", "Stalled"
CONDITION_TYPES = (READY, SYNCED, RECONCILING, STALLED)


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Verdict:
    """The operator's summary of one reconciliation, to be shown as conditions."""

    ready: bool
    reconciling: bool
    stalled: bool
    reason: str
    message: str
    #: None when Together answered; else why the last call failed (e.g. RateLimited).
    sync_error: tuple[str, str] | None = None


def stalled(reason: str, message: str) -> Verdict:
    """The verdict for a problem that needs a person."""
    return Verdict(ready=False, reconciling=False, stalled=True, reason=reason, message=message)


def mirror_cluster(cluster: GPUClusterInfo) -> dict[str, Any]:
    """Status fields (camelCase) mirrored from Together's view of the cluster."""
    return {
        "clusterId": cluster.cluster_id,
        "state": cluster.status,
        "phaseTransitions": [
            {"phase": t.phase, "transitionTime": rfc3339(t.transition_time)}
            for t in cluster.phase_transitions
        ],
        "numGpus": cluster.num_gpus,
        "desiredPreemptibleGpus": cluster.desired_preemptible_gpus,
        "allocatedPreemptibleGpus": cluster.allocated_preemptible_gpus,
        "preemptible": f"{cluster.allocated_preemptible_gpus}/{cluster.desired_preemptible_gpus}",
        "controlPlaneReady": bool(cluster.control_plane_ready),
        "controlPlaneNodes": len(cluster.control_plane_nodes),
        "workerNodes": len(cluster.gpu_worker_nodes),
        "cudaVersion": cluster.cuda_version or None,
        "nvidiaDriverVersion": cluster.nvidia_driver_version or None,
        "firstReadyAt": rfc3339(cluster.first_ready_at) if cluster.first_ready_at else None,
    }


def cluster_is_ready(cluster: GPUClusterInfo) -> bool:
    return cluster.status == ClusterStatus.READY


def conditions_for(
    verdict: Verdict,
    *,
    generation: int,
    previous: Sequence[Mapping[str, Any]] | None,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """The four conditions for ``verdict``, keeping transition times of unchanged ones."""
    before = {c.get("type"): c for c in previous or []}
    sync_reason, sync_message = verdict.sync_error or ("Synced", "last call to Together succeeded")
    wanted = [
        (READY, verdict.ready, verdict.reason, verdict.message),
        (SYNCED, verdict.sync_error is None, sync_reason, sync_message),
        (
            RECONCILING,
            verdict.reconciling,
            verdict.reason if verdict.reconciling else "Settled",
            verdict.message if verdict.reconciling else "nothing left to do",
        ),
        (
            STALLED,
            verdict.stalled,
            verdict.reason if verdict.stalled else "NotStalled",
            verdict.message if verdict.stalled else "no problem that needs a person",
        ),
    ]
    conditions = []
    for kind, flag, reason, message in wanted:
        status = "True" if flag else "False"
        old = before.get(kind)
        changed = old is None or old.get("status") != status
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now)
                if changed or old is None
                else old.get("lastTransitionTime", rfc3339(now)),
                "observedGeneration": generation,
            }
        )
    return conditions


def new_phase_transitions(
    previous: Sequence[Mapping[str, Any]] | None, cluster: GPUClusterInfo
) -> list[tuple[str, str]]:
    """(phase, time) of the transitions Together reports that status did not have yet."""
    seen = {(p.get("phase"), p.get("transitionTime")) for p in previous or []}
    fresh = []
    for transition in cluster.phase_transitions:
        key = (transition.phase, rfc3339(transition.transition_time))
        if key not in seen:
            fresh.append(key)
    return fresh


def status_patch(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``current`` status into ``wanted`` (None deletes a field)."""
    current = current or {}
    return {key: value for key, value in wanted.items() if current.get(key) != value}


FAILED_PHASES = frozenset(
    {"CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED", "CLUSTER_PHASE_NCCL_TESTS_FAILED"}
)
PAUSED_STATES = frozenset({ClusterStatus.PAUSED, ClusterStatus.ON_DEMAND_COMPUTE_PAUSED})


def verdict_for_cluster(cluster: GPUClusterInfo) -> Verdict:
    """The verdict when the spec and Together agree: it is all about Together's state."""
    last_phase = cluster.phase_transitions[-1].phase if cluster.phase_transitions else ""
    if cluster.status == ClusterStatus.READY:
        message = "Together reports the cluster Ready"
        if cluster.allocated_preemptible_gpus != cluster.desired_preemptible_gpus:
            message += (
                f"; {cluster.allocated_preemptible_gpus} of "
                f"{cluster.desired_preemptible_gpus} preemptible GPUs allocated so far"
            )
        return Verdict(
            ready=True, reconciling=False, stalled=False, reason="ClusterReady", message=message
        )
    if cluster.status == ClusterStatus.DEGRADED or last_phase in FAILED_PHASES:
        what = "Degraded" if cluster.status == ClusterStatus.DEGRADED else last_phase
        return Verdict(
            ready=False,
            reconciling=False,
            stalled=True,
            reason="ClusterDegraded",
            message=f"Together reports the cluster {what}: see the cluster's nodes and "
            "contact Together support if it does not recover",
        )
    if cluster.status in PAUSED_STATES:
        return Verdict(
            ready=False,
            reconciling=False,
            stalled=False,
            reason="ClusterPaused",
            message=f"Together reports the cluster {cluster.status}",
        )
    return Verdict(
        ready=False,
        reconciling=True,
        stalled=False,
        reason="Provisioning",
        message=f"Together reports the cluster {cluster.status}",
    )
