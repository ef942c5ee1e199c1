"""Status rendering: mirrored fields and kstatus-shaped conditions."""

from __future__ import annotations

import datetime

from together_operator.gpucluster.status import (
    Verdict,
    conditions_for,
    mirror_cluster,
    new_phase_transitions,
    status_patch,
    verdict_for_cluster,
)
from together_operator.together.models import GPUClusterInfo

T0 = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def info(**overrides: object) -> GPUClusterInfo:
    fields: dict[str, object] = {
        "cluster_id": "c-1",
        "cluster_name": "n",
        "region": "r",
        "status": "Ready",
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
    fields.update(overrides)
    return GPUClusterInfo.model_validate(fields)


def by_type(conditions: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in conditions}


def test_mirror_shows_allocated_over_desired_and_phases() -> None:
    status = mirror_cluster(info())
    assert status["preemptible"] == "8/16"
    assert status["allocatedPreemptibleGpus"] == 8
    assert status["phaseTransitions"][-1] == {
        "phase": "CLUSTER_PHASE_READY",
        "transitionTime": "2026-11-22T11:01:00Z",
    }


def test_conditions_carry_generation_and_keep_transition_time_when_unchanged() -> None:
    ready = Verdict(True, False, False, "ClusterReady", "ok")
    first = conditions_for(ready, generation=3, previous=None, now=T0)
    assert {c["observedGeneration"] for c in first} == {3}
    again = conditions_for(ready, generation=4, previous=first, now=T1)
    assert by_type(again)["Ready"]["lastTransitionTime"] == "2026-11-22T12:00:00Z"
    assert by_type(again)["Ready"]["observedGeneration"] == 4
    flipped = conditions_for(
        Verdict(False, True, False, "Updating", "scaling"), generation=5, previous=again, now=T1
    )
    assert by_type(flipped)["Ready"]["lastTransitionTime"] == "2026-11-22T12:05:00Z"
    assert by_type(flipped)["Reconciling"]["status"] == "True"
    assert by_type(flipped)["Reconciling"]["reason"] == "Updating"


def test_sync_error_turns_synced_false_with_reason() -> None:
    verdict = Verdict(False, True, False, "RateLimited", "slow down", ("RateLimited", "slow down"))
    synced = by_type(conditions_for(verdict, generation=1, previous=None, now=T0))["Synced"]
    assert synced["status"] == "False"
    assert synced["reason"] == "RateLimited"


def test_verdicts_per_together_state() -> None:
    assert verdict_for_cluster(info()).ready
    assert "8 of 16 preemptible" in verdict_for_cluster(info()).message
    provisioning = verdict_for_cluster(info(status="InstallingDrivers", phase_transitions=[]))
    assert provisioning.reconciling
    assert not provisioning.ready
    degraded = verdict_for_cluster(info(status="Degraded"))
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
    assert verdict_for_cluster(failed_tests).stalled
    paused = verdict_for_cluster(info(status="Paused"))
    assert not paused.reconciling
    assert not paused.stalled
    assert not paused.ready


def test_only_unseen_phase_transitions_are_new() -> None:
    seen = [
        {
            "phase": "CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES",
            "transitionTime": "2026-11-22T11:00:00Z",
        }
    ]
    assert new_phase_transitions(seen, info()) == [("CLUSTER_PHASE_READY", "2026-11-22T11:01:00Z")]


def test_status_patch_holds_only_differences() -> None:
    assert status_patch({"a": 1, "b": 2, "c": 5}, {"a": 1, "b": 3, "c": None}) == {
        "b": 3,
        "c": None,
    }
    assert status_patch({"a": 1}, {"a": 1, "d": None}) == {}  # absent stays absent
    assert status_patch({"a": 1}, {"a": 1}) == {}
