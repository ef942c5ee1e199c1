"""Status rendering: mirrored fields and kstatus-shaped conditions."""

from __future__ import annotations

import datetime
from typing import Any

from tests.factories import cluster_info
from together_operator.gpucluster.plan import Stall
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterStatus
from together_operator.gpucluster.status import (
    Verdict,
    conditions_for,
    mirror_cluster,
    status_patch,
)
from together_operator.together.errors import RateLimited, Unauthorized
from together_operator.together.models import GPUClusterInfo

T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def info(**overrides: object) -> GPUClusterInfo:
    fields: dict[str, object] = {
        "num_gpus": 16,
        "desired_preemptible_gpus": 16,
        "allocated_preemptible_gpus": 8,
        "phase_transitions": [
            {
                "phase": "CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES",
                "transition_time": "2026-11-22T11:00:00Z",
            },
            {"phase": "CLUSTER_PHASE_READY", "transition_time": "2026-11-22T11:01:00Z"},
        ],
    }
    return cluster_info(**{**fields, **overrides})


def conditions(verdict: Verdict, generation: int, previous: Any, now: datetime.datetime) -> Any:
    rendered = conditions_for(verdict, generation=generation, previous=previous, now=now)
    return [c.model_dump(by_alias=True) for c in rendered]


def by_type(rendered: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in rendered}


def test_mirror_shows_allocated_over_desired_and_phases() -> None:
    status = mirror_cluster(info()).model_dump(by_alias=True, exclude_unset=True)
    assert status["preemptible"] == "8/16"
    assert status["allocatedPreemptibleGpus"] == 8
    assert status["phaseTransitions"][-1] == {
        "phase": "CLUSTER_PHASE_READY",
        "transitionTime": "2026-11-22T11:01:00Z",
    }


def test_conditions_carry_generation_and_keep_transition_time_when_unchanged() -> None:
    ready = Verdict.for_cluster(info())
    first = conditions(ready, 3, None, T0)
    assert {c["observedGeneration"] for c in first} == {3}
    again = conditions(ready, 4, first, T1)
    assert by_type(again)["Ready"]["lastTransitionTime"] == "2026-11-22T12:00:00Z"
    assert by_type(again)["Ready"]["observedGeneration"] == 4
    flipped = conditions(Verdict.progressing(Reason.UPDATING, "scaling"), 5, again, T1)
    assert by_type(flipped)["Ready"]["lastTransitionTime"] == "2026-11-22T12:05:00Z"
    assert by_type(flipped)["Reconciling"]["status"] == "True"
    assert by_type(flipped)["Reconciling"]["reason"] == "Updating"


def test_sync_error_turns_synced_false_with_reason() -> None:
    verdict = Verdict.failure(RateLimited("slow down", status=429), next_try=T1)
    rendered = by_type(conditions(verdict, 1, None, T0))
    assert rendered["Synced"]["status"] == "False"
    assert rendered["Synced"]["reason"] == "RateLimited"
    assert rendered["Synced"]["message"] == "HTTP 429: slow down"
    assert rendered["Ready"]["message"] == "HTTP 429: slow down; next try at 2026-11-22T12:05:00Z"
    assert rendered["Reconciling"]["status"] == "True"  # it heals: no person needed
    assert rendered["Stalled"]["status"] == "False"


def test_an_error_that_does_not_heal_stalls_with_advice() -> None:
    verdict = Verdict.failure(Unauthorized("invalid API key", status=401))
    assert verdict.stalled
    assert not verdict.reconciling
    assert verdict.reason == Reason.UNAUTHORIZED
    assert "check the API key" in verdict.message


def test_a_passing_fault_keeps_togethers_verdict_for_ready() -> None:
    fault = Verdict.failure(RateLimited("slow down", status=429), next_try=T1)
    shown = Verdict.for_cluster(info()).despite(fault)
    assert shown.ready
    assert shown.reconciling
    assert shown.sync_error == (Reason.RATE_LIMITED, "HTTP 429: slow down")


def test_a_failed_list_is_shown_and_a_lasting_one_stalls() -> None:
    ready = Verdict.for_cluster(info())
    passing = ready.with_list_error(RateLimited("slow down", status=429))
    assert passing.ready
    assert passing.sync_error is not None
    assert passing.sync_error[1].startswith("listing clusters failed")
    lasting = ready.with_list_error(Unauthorized("revoked", status=401))
    assert not lasting.ready
    assert lasting.stalled


def test_a_foreign_kubeconfig_secret_overrides_ready_only() -> None:
    conflict = Stall(Reason.KUBECONFIG_SECRET_CONFLICT, "Secret x is not ours")
    assert Verdict.for_cluster(info()).unless_secret_conflict(conflict).stalled
    provisioning = Verdict.for_cluster(info(status="InstallingDrivers"))
    assert provisioning.unless_secret_conflict(conflict) == provisioning
    assert Verdict.for_cluster(info()).unless_secret_conflict(None).ready


def test_verdicts_per_together_state() -> None:
    assert Verdict.for_cluster(info()).ready
    assert "8 of 16 preemptible" in Verdict.for_cluster(info()).message
    provisioning = Verdict.for_cluster(info(status="InstallingDrivers", phase_transitions=[]))
    assert provisioning.reconciling
    assert not provisioning.ready
    degraded = Verdict.for_cluster(info(status="Degraded"))
    assert degraded.stalled
    assert degraded.reason == "ClusterDegraded"
    failed_tests = info(
        status="RunningAcceptanceTests",
        phase_transitions=[
            {
                "phase": "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED",
                "transition_time": "2026-11-22T11:00:00Z",
            }
        ],
    )
    assert Verdict.for_cluster(failed_tests).stalled
    paused = Verdict.for_cluster(info(status="Paused"))
    assert not paused.reconciling
    assert not paused.stalled
    assert not paused.ready


def test_status_patch_holds_only_differences() -> None:
    current = {"numGpus": 8, "state": "Ready", "cudaVersion": "12.5"}
    wanted = GPUClusterStatus(num_gpus=8, state="Degraded", cuda_version=None)
    assert status_patch(current, wanted) == {"state": "Degraded", "cudaVersion": None}
    absent = GPUClusterStatus(num_gpus=8, nvidia_driver_version=None)
    assert status_patch(current, absent) == {}  # absent stays absent
    assert status_patch(current, GPUClusterStatus(num_gpus=8)) == {}
    # Fields the wanted status does not set are left alone, not removed.
    assert status_patch(current, GPUClusterStatus()) == {}
