"""Flux reads GPUCluster health with kstatus: it must say the right thing in every state.

The verdicts come from kstatus itself (sigs.k8s.io/cli-utils `status.Compute`, the library
Flux's kustomize-controller and helm-controller use), run over the objects the operator
writes (see gpucluster_states).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.gpucluster_states import all_states
from tests.deploy.kstatus_tool import compute, kstatus_binary

EXPECTED = {
    "creating": "InProgress",
    "ready": "Current",
    "scaling": "InProgress",
    "degraded": "Failed",
    "stalled-unauthorized": "Failed",
    "stalled-ambiguous-name": "Failed",
    "stalled-adoption-refused": "Failed",
    "rate-limited": "InProgress",
    "deleting": "Terminating",
    "deleting-blocked": "Terminating",
    "stale-generation": "InProgress",
    # kstatus knows no "suspended": Ready=False without Stalled reads as not current yet.
    "paused": "InProgress",
}


@pytest.fixture(scope="module")
def kstatus() -> Path:
    return kstatus_binary()


@pytest.fixture(scope="module")
def verdicts(kstatus: Path) -> dict[str, dict[str, Any]]:
    states = all_states()
    return dict(zip(states, compute(kstatus, states.values()), strict=True))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def test_every_state_has_an_expectation() -> None:
    assert set(all_states()) == set(EXPECTED)


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_kstatus_reads_the_operators_status(
    verdicts: dict[str, dict[str, Any]], state: str
) -> None:
    verdict = verdicts[state]
    assert not verdict.get("error"), verdict
    assert verdict["status"] == EXPECTED[state], verdict


@pytest.mark.parametrize("state", [s for s, v in EXPECTED.items() if v == "Failed"])
def test_failed_carries_the_stalled_message(
    verdicts: dict[str, dict[str, Any]], state: str
) -> None:
    assert verdicts[state]["message"] == condition(all_states()[state], "Stalled")["message"]


def test_in_progress_carries_the_reconciling_message(verdicts: dict[str, dict[str, Any]]) -> None:
    creating = all_states()["creating"]
    assert verdicts["creating"]["message"] == condition(creating, "Reconciling")["message"]


def test_kstatus_program_tells_states_apart(kstatus: Path) -> None:
    """The control: the same object reads differently once a generation goes unobserved."""
    ready = all_states()["ready"]
    newer = {**ready, "metadata": {**ready["metadata"], "generation": 2}}
    first, second = compute(kstatus, [ready, newer])
    assert (first["status"], second["status"]) == ("Current", "InProgress")
