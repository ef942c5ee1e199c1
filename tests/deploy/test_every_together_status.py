"""Every status Together's contract lists (and two it does not), through the operator: the
simulator reports it, the real reconciler visits, and the object it leaves is judged by
kstatus (Flux) and by deploy/argocd/health.lua (Argo CD).

Unlike gpucluster_states (objects built from the operator's functions), nothing here is
assembled by hand: status and conditions are what the reconciler wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kstatus_tool import compute, kstatus_binary
from tests.deploy.test_argocd_health import health
from tests.unit.reconciler_harness import (
    KEY,
    NAME,
    NAMESPACE,
    SCENARIO_TIMEOUT_SECONDS,
    SPEC,
    UID,
    Harness,
    Simulator,
    harness,
    sim,
)
from together_operator.gpucluster.spec import GROUP, VERSION
from together_operator.together.client import TogetherClient

__all__ = ["harness", "sim"]  # the reconciler harness's fixtures, used here too

CONTRACT = Path(__file__).resolve().parents[1] / "contract" / "together-compute-openapi.yaml"
PROGRESSING = ("False", "True", "False", "InProgress", "Progressing")
# status -> Ready, Reconciling, Stalled, kstatus, Argo CD health
EXPECTED: dict[str, tuple[str, str, str, str, str]] = {
    "WaitingForControlPlaneNodes": PROGRESSING,
    "WaitingForDataPlaneNodes": PROGRESSING,
    "WaitingForSubnet": PROGRESSING,
    "WaitingForSharedVolume": PROGRESSING,
    "InstallingDrivers": PROGRESSING,
    "RunningAcceptanceTests": PROGRESSING,
    # Paused is not progress and not failure: Argo CD has a word for it, kstatus does not.
    "Paused": ("False", "False", "False", "InProgress", "Suspended"),
    "OnDemandComputePaused": ("False", "False", "False", "InProgress", "Suspended"),
    "Ready": ("True", "False", "False", "Current", "Healthy"),
    "Degraded": ("False", "False", "True", "Failed", "Degraded"),
    # Deleted outside the operator: a person must decide (the object still names it).
    "Deleting": ("False", "False", "True", "Failed", "Degraded"),
    # Outside the contract's enum: Together sends Scheduled, and may send more.
    "Scheduled": PROGRESSING,
    "SomethingNew": PROGRESSING,
}


def contract_statuses() -> set[str]:
    schema = yaml.safe_load(CONTRACT.read_text())["components"]["schemas"]["GPUClusterInfo"]
    return set(schema["properties"]["status"]["enum"])


def test_every_status_of_the_contract_is_covered() -> None:
    assert contract_statuses() <= set(EXPECTED)
    assert set(EXPECTED) - contract_statuses() == {"Scheduled", "SomethingNew"}


async def delete_at_together(sim: Simulator, cluster_id: str) -> None:
    """Someone deletes the cluster at Together, not through the GPUCluster."""
    together = TogetherClient(KEY, base_url=sim.running.base_url, timeout=5)
    try:
        await together.delete_cluster(cluster_id)
    finally:
        await together.aclose()


@pytest.fixture(scope="module")
def kstatus() -> Path:
    return kstatus_binary()


def stored(harness: Harness) -> dict[str, Any]:
    """The GPUCluster as the reconciler left it."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GPUCluster",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": UID, "generation": 1},
        "spec": dict(SPEC),
        "status": harness.status(),
    }


@pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS + 60)  # the first call may build kstatus
@pytest.mark.parametrize("status", sorted(EXPECTED))
async def test_each_status_through_the_operator(
    harness: Harness, sim: Simulator, kstatus: Path, status: str
) -> None:
    cluster_id = await harness.create_ready_cluster()
    if status == "Deleting":
        await delete_at_together(sim, cluster_id)
    else:
        sim.admin.force_status(cluster_id, status)
    await harness.fresh_list()
    await harness.visit()

    assert harness.status()["state"] == status
    conditions = tuple(harness.condition(k)["status"] for k in ("Ready", "Reconciling", "Stalled"))
    obj = stored(harness)
    [flux] = compute(kstatus, [obj])
    argo, _ = health(obj)
    assert (*conditions, flux["status"], argo) == EXPECTED[status]


STALLED = ("False", "False", "True", "Failed", "Degraded")
# phase -> Ready, Reconciling, Stalled, kstatus, Argo CD health (Deleting: the status test)
EXPECTED_BY_PHASE: dict[str, tuple[str, str, str, str, str]] = {
    **{
        f"CLUSTER_PHASE_{p}": PROGRESSING
        for p in (
            "QUEUED",
            "SCHEDULED",
            "WAITING_FOR_CONTROL_PLANE_NODES",
            "WAITING_FOR_DATA_PLANE_NODES",
            "WAITING_FOR_SUBNET",
            "WAITING_FOR_SHARED_VOLUME",
            "WAITING_FOR_AUTO_SCALER",
            "INSTALLING_DRIVERS",
            "RUNNING_ACCEPTANCE_TESTS",
            "RUNNING_NCCL_TESTS",
        )
    },
    "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED": STALLED,
    "CLUSTER_PHASE_NCCL_TESTS_FAILED": STALLED,
    "CLUSTER_PHASE_READY": EXPECTED["Ready"],
    "CLUSTER_PHASE_PAUSED": EXPECTED["Paused"],
    "CLUSTER_PHASE_ON_DEMAND_COMPUTE_PAUSED": EXPECTED["OnDemandComputePaused"],
    "CLUSTER_PHASE_DEGRADED": STALLED,
}


def test_every_phase_of_the_contract_is_covered() -> None:
    schema = yaml.safe_load(CONTRACT.read_text())["components"]["schemas"]
    phases = set(schema["ClusterPhaseTransition"]["properties"]["phase"]["enum"])
    assert phases - set(EXPECTED_BY_PHASE) == {"CLUSTER_PHASE_DELETING"}


@pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS + 60)
@pytest.mark.parametrize("phase", sorted(EXPECTED_BY_PHASE))
async def test_each_phase_through_the_operator(
    harness: Harness, sim: Simulator, kstatus: Path, phase: str
) -> None:
    cluster_id = await harness.create_ready_cluster()
    reported = sim.admin.force_phase(cluster_id, phase)
    await harness.fresh_list()
    await harness.visit()

    status = harness.status()
    assert status["phaseTransitions"][-1]["phase"] == phase
    assert status["state"] == reported.status
    conditions = tuple(harness.condition(k)["status"] for k in ("Ready", "Reconciling", "Stalled"))
    obj = stored(harness)
    [flux] = compute(kstatus, [obj])
    argo, _ = health(obj)
    assert (*conditions, flux["status"], argo) == EXPECTED_BY_PHASE[phase]
