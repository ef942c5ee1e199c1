"""Render Together's view and the operator's verdict into `.status`: pure, no I/O.

Conditions follow kstatus: ``Ready`` is the summary; ``Reconciling=True`` while the cluster or
the operator is still moving towards the spec; ``Stalled=True`` when it cannot get there
without a person; ``Synced`` says whether the last exchange with Together worked. Each carries
``observedGeneration``, and ``lastTransitionTime`` only moves when the status flips.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from together_operator.gpucluster.plan import Stall
from together_operator.gpucluster.reasons import Reason, reason_of
from together_operator.gpucluster.spec import Condition, GPUClusterStatus, PhaseTransition
from together_operator.together.errors import TogetherError
from together_operator.together.models import ClusterPhase, ClusterStatus, GPUClusterInfo

READY, SYNCED, RECONCILING, STALLED = "Ready", "Synced", "Reconciling", "Stalled"
CONDITION_TYPES = (READY, SYNCED, RECONCILING, STALLED)
FAILED_PHASES = frozenset({ClusterPhase.ACCEPTANCE_TESTS_FAILED, ClusterPhase.NCCL_TESTS_FAILED})
PAUSED_STATES = frozenset({ClusterStatus.PAUSED, ClusterStatus.ON_DEMAND_COMPUTE_PAUSED})
# What a person can do about an error, where Together's own message does not say.
_ADVICE = {
    Reason.UNAUTHORIZED: "check the API key (spec.credentialsSecretRef or the operator's "
    "TOGETHER_API_KEY)",
}


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Verdict:
    """The operator's summary of one reconciliation, to be shown as conditions.

    Build one with the named constructors; each says which situation it describes.
    """

    ready: bool
    reconciling: bool
    stalled: bool
    reason: Reason
    message: str
    #: None when Together answered; else why the last call failed (e.g. RateLimited).
    sync_error: tuple[Reason, str] | None = None

    @classmethod
    def for_cluster(cls, cluster: GPUClusterInfo) -> Verdict:
        """The spec and Together agree: it is all about Together's state."""
        last_phase = cluster.phase_transitions[-1].phase if cluster.phase_transitions else ""
        if cluster.status == ClusterStatus.READY:
            message = "Together reports the cluster Ready"
            if cluster.allocated_preemptible_gpus != cluster.desired_preemptible_gpus:
                message += (
                    f"; {cluster.allocated_preemptible_gpus} of "
                    f"{cluster.desired_preemptible_gpus} preemptible GPUs allocated so far"
                )
            return cls(True, False, False, Reason.CLUSTER_READY, message)
        if cluster.status == ClusterStatus.DEGRADED or last_phase in FAILED_PHASES:
            what = "Degraded" if cluster.status == ClusterStatus.DEGRADED else last_phase
            return cls.stall(
                Stall(
                    Reason.CLUSTER_DEGRADED,
                    f"Together reports the cluster {what}: see the cluster's nodes and "
                    "contact Together support if it does not recover",
                )
            )
        if cluster.status in PAUSED_STATES:
            return cls(
                False,
                False,
                False,
                Reason.CLUSTER_PAUSED,
                f"Together reports the cluster {cluster.status}",
            )
        return cls.progressing(
            Reason.PROVISIONING, f"Together reports the cluster {cluster.status}"
        )

    @classmethod
    def progressing(cls, reason: Reason, message: str) -> Verdict:
        """The operator or Together is still working towards the spec."""
        return cls(ready=False, reconciling=True, stalled=False, reason=reason, message=message)

    @classmethod
    def stall(cls, problem: Stall) -> Verdict:
        """A problem that needs a person."""
        return cls(
            ready=False,
            reconciling=False,
            stalled=True,
            reason=problem.reason,
            message=problem.message,
        )

    @classmethod
    def waiting_for_together(cls) -> Verdict:
        """No List has answered yet for this object's key."""
        message = "no answer from Together yet"
        return replace(
            cls.progressing(Reason.WAITING_FOR_TOGETHER, message),
            sync_error=(Reason.WAITING_FOR_TOGETHER, message),
        )

    @classmethod
    def failure(cls, error: TogetherError, next_try: datetime.datetime | None = None) -> Verdict:
        """A call to Together failed: a passing fault (Reconciling) or one that needs a
        person (Stalled), with when the operator tries again."""
        reason = reason_of(error)
        message = describe(error)
        shown = f"{message}; next try at {rfc3339(next_try)}" if next_try else message
        return cls(
            ready=False,
            reconciling=error.heals,
            stalled=not error.heals,
            reason=reason,
            message=shown,
            sync_error=(reason, message),
        )

    def despite(self, fault: Verdict) -> Verdict:
        """This (Together's) verdict, with a passing ``fault`` of the operator's own call:
        Together's state still decides Ready; Synced and Reconciling carry the fault."""
        return replace(self, reconciling=True, sync_error=fault.sync_error)

    def with_list_error(self, error: TogetherError) -> Verdict:
        """The decision used the last good List because the latest one failed: say so."""
        return replace(
            self,
            ready=self.ready and error.heals,
            stalled=self.stalled or not error.heals,
            sync_error=(reason_of(error), f"listing clusters failed: {describe(error)}"),
        )

    def unless_secret_conflict(self, conflict: Stall | None) -> Verdict:
        """Ready only when the kubeconfig Secret could be written too."""
        if conflict is None or not self.ready:
            return self
        return Verdict.stall(conflict)


def describe(error: TogetherError) -> str:
    """The error, with what to do about it where Together's words do not say."""
    advice = _ADVICE.get(reason_of(error))
    return f"{error}; {advice}" if advice else str(error)


def mirror_cluster(cluster: GPUClusterInfo) -> GPUClusterStatus:
    """Status fields mirrored from Together's view of the cluster (None clears a field)."""
    return GPUClusterStatus(
        cluster_id=cluster.cluster_id,
        state=cluster.status,
        phase_transitions=[
            PhaseTransition(phase=t.phase, transition_time=rfc3339(t.transition_time))
            for t in cluster.phase_transitions
        ],
        num_gpus=cluster.num_gpus,
        desired_preemptible_gpus=cluster.desired_preemptible_gpus,
        allocated_preemptible_gpus=cluster.allocated_preemptible_gpus,
        preemptible=f"{cluster.allocated_preemptible_gpus}/{cluster.desired_preemptible_gpus}",
        control_plane_ready=bool(cluster.control_plane_ready),
        control_plane_nodes=len(cluster.control_plane_nodes),
        worker_nodes=len(cluster.gpu_worker_nodes),
        cuda_version=cluster.cuda_version or None,
        nvidia_driver_version=cluster.nvidia_driver_version or None,
        first_ready_at=rfc3339(cluster.first_ready_at) if cluster.first_ready_at else None,
    )


def conditions_for(
    verdict: Verdict,
    *,
    generation: int,
    previous: Sequence[Mapping[str, Any]] | None,
    now: datetime.datetime,
) -> list[Condition]:
    """The four conditions for ``verdict``, keeping transition times of unchanged ones."""
    before = {c.get("type"): c for c in previous or []}
    sync_reason, sync_message = verdict.sync_error or (
        Reason.SYNCED,
        "last call to Together succeeded",
    )
    wanted = [
        (READY, verdict.ready, verdict.reason, verdict.message),
        (SYNCED, verdict.sync_error is None, sync_reason, sync_message),
        (
            RECONCILING,
            verdict.reconciling,
            verdict.reason if verdict.reconciling else Reason.SETTLED,
            verdict.message if verdict.reconciling else "nothing left to do",
        ),
        (
            STALLED,
            verdict.stalled,
            verdict.reason if verdict.stalled else Reason.NOT_STALLED,
            verdict.message if verdict.stalled else "no problem that needs a person",
        ),
    ]
    return [
        condition(
            kind,
            "True" if flag else "False",
            reason,
            message,
            before=before.get(kind),
            generation=generation,
            now=now,
        )
        for kind, flag, reason, message in wanted
    ]


def condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    before: Mapping[str, Any] | None,
    generation: int,
    now: datetime.datetime,
) -> Condition:
    """One condition; its ``lastTransitionTime`` moves only when its status does."""
    unchanged = before is not None and before.get("status") == status
    return Condition(
        type=kind,
        status=status,
        reason=str(reason),
        message=message,
        last_transition_time=str(before.get("lastTransitionTime", rfc3339(now)))
        if unchanged and before is not None
        else rfc3339(now),
        observed_generation=generation,
    )


def status_patch(current: Mapping[str, Any] | None, wanted: GPUClusterStatus) -> dict[str, Any]:
    """The merge patch that turns ``current`` status into ``wanted``: only the fields
    ``wanted`` sets, only where they differ (a field set to None is removed)."""
    current = current or {}
    fields = wanted.model_dump(by_alias=True, mode="json", exclude_unset=True)
    return {key: value for key, value in fields.items() if current.get(key) != value}
