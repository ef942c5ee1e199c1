"""Every status and phase of the contract can be reached: naturally where the lifecycle implies
it, through the admin API otherwise; and a status outside the enum can be forced, so clients'
tolerance can be tested. The contract checks catch an out-of-enum status unless told."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import httpx
import pytest
import yaml

from tests.simulator.conftest import REGION
from tests.simulator.contract import CONTRACT, ContractChecks, validate_body
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import STATUS_FOR_PHASE, Timings
from together_operator.simulator.server import RunningSimulator

TIMINGS = Timings()
CreateCluster = Callable[..., dict[str, Any]]


@cache
def contract_enum(schema: str, field: str) -> tuple[str, ...]:
    spec = yaml.safe_load(CONTRACT.read_text())
    return tuple(spec["components"]["schemas"][schema]["properties"][field]["enum"])


CONTRACT_STATUSES = contract_enum("GPUClusterInfo", "status")
CONTRACT_PHASES = contract_enum("ClusterPhaseTransition", "phase")


@pytest.fixture
def sim_admin(sim: RunningSimulator) -> Iterator[SimulatorAdmin]:
    with SimulatorAdmin(sim.admin_url) as admin:
        yield admin


def statuses_seen(
    api: httpx.Client, clock: FakeClock, cluster_id: str, seconds: float
) -> list[str]:
    seen: list[str] = []
    for _ in range(int(seconds) + 1):
        status = api.get(f"/v1/compute/clusters/{cluster_id}").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        clock.advance(1)
    return seen


def test_a_shared_volume_makes_the_cluster_wait_for_it(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster(shared_volume={"volume_name": "home", "size_tib": 1, "region": REGION})
    assert cluster["volumes"][0]["status"] == "provisioning"
    seen = statuses_seen(
        api, clock, cluster["cluster_id"], TIMINGS.create_to_ready + TIMINGS.shared_volume
    )
    assert seen == [
        "WaitingForControlPlaneNodes",
        "WaitingForDataPlaneNodes",
        "WaitingForSubnet",
        "WaitingForSharedVolume",
        "InstallingDrivers",
        "RunningAcceptanceTests",
        "Ready",
    ]
    ready = api.get(f"/v1/compute/clusters/{cluster['cluster_id']}").json()
    assert ready["volumes"][0]["status"] == "bound"
    assert "CLUSTER_PHASE_WAITING_FOR_SHARED_VOLUME" in [
        p["phase"] for p in ready["phase_transitions"]
    ]


def test_an_existing_volume_is_waited_for_too(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    volume = api.post(
        "/v1/compute/clusters/storage/volumes",
        json={"volume_name": "data", "size_tib": 1, "region": REGION},
    ).json()
    cluster = create_cluster(volume_id=volume["volume_id"])
    seen = statuses_seen(
        api, clock, cluster["cluster_id"], TIMINGS.create_to_ready + TIMINGS.shared_volume
    )
    assert "WaitingForSharedVolume" in seen
    assert seen[-1] == "Ready"


def test_without_a_volume_the_cluster_does_not_wait_for_one(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    seen = statuses_seen(api, clock, create_cluster()["cluster_id"], TIMINGS.create_to_ready)
    assert "WaitingForSubnet" in seen
    assert "WaitingForSharedVolume" not in seen


@pytest.mark.parametrize("status", CONTRACT_STATUSES)
def test_every_contract_status_can_be_reached(
    api: httpx.Client,
    sim_admin: SimulatorAdmin,
    create_cluster: CreateCluster,
    clock: FakeClock,
    status: str,
) -> None:
    cluster_id = create_cluster()["cluster_id"]
    clock.advance(TIMINGS.create_to_ready)
    if status == "Deleting":
        api.delete(f"/v1/compute/clusters/{cluster_id}")
    else:
        phase = next(p for p, s in STATUS_FOR_PHASE.items() if s == status)
        sim_admin.force_phase(cluster_id, phase)
    assert api.get(f"/v1/compute/clusters/{cluster_id}").json()["status"] == status


@pytest.mark.parametrize("phase", [p for p in CONTRACT_PHASES if p != "CLUSTER_PHASE_DELETING"])
def test_every_contract_phase_can_be_forced_and_reports_its_status(
    api: httpx.Client,
    sim_admin: SimulatorAdmin,
    create_cluster: CreateCluster,
    contract_checks: ContractChecks,
    phase: str,
) -> None:
    contract_checks.tolerated_statuses = frozenset({"Scheduled"})  # CLUSTER_PHASE_SCHEDULED's
    cluster_id = create_cluster()["cluster_id"]
    forced = sim_admin.force_phase(cluster_id, phase)
    seen = api.get(f"/v1/compute/clusters/{cluster_id}").json()
    assert seen["phase_transitions"][-1]["phase"] == phase
    assert seen["status"] == forced.status == STATUS_FOR_PHASE[phase]


def test_pausing_pauses_the_nodes_and_ready_resumes_them(
    api: httpx.Client, sim_admin: SimulatorAdmin, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster_id = create_cluster(num_gpus=16, num_preemptible_gpus=8)["cluster_id"]
    clock.advance(TIMINGS.create_to_ready + TIMINGS.preemptible_step)

    def node_statuses() -> list[str]:
        body = api.get(f"/v1/compute/clusters/{cluster_id}").json()
        return [n["status"] for n in body["gpu_worker_nodes"]]

    assert node_statuses() == ["Running"] * 3
    sim_admin.force_phase(cluster_id, "CLUSTER_PHASE_ON_DEMAND_COMPUTE_PAUSED")
    assert node_statuses() == ["Paused", "Paused", "Running"]  # the preemptible node runs on
    sim_admin.force_phase(cluster_id, "CLUSTER_PHASE_PAUSED")
    assert node_statuses() == ["Paused"] * 3
    sim_admin.force_phase(cluster_id, "CLUSTER_PHASE_READY")
    assert node_statuses() == ["Running"] * 3


@pytest.mark.parametrize("status", ["Scheduled", "SomethingNobodyKnows"])
def test_a_status_outside_the_enum_can_be_forced_and_is_caught_unless_tolerated(
    api: httpx.Client,
    sim_admin: SimulatorAdmin,
    create_cluster: CreateCluster,
    contract_checks: ContractChecks,
    status: str,
) -> None:
    cluster_id = create_cluster()["cluster_id"]
    phases_before = api.get(f"/v1/compute/clusters/{cluster_id}").json()["phase_transitions"]
    assert sim_admin.force_status(cluster_id, status).status == status
    with pytest.raises(AssertionError, match="answered outside the contract"):
        api.get(f"/v1/compute/clusters/{cluster_id}")  # the default check refuses it
    contract_checks.tolerated_statuses = frozenset({status})
    seen = api.get(f"/v1/compute/clusters/{cluster_id}").json()
    assert (seen["status"], seen["phase_transitions"]) == (status, phases_before)


def test_the_contract_check_tolerates_only_what_it_is_told(create_cluster: CreateCluster) -> None:
    body = create_cluster()
    path = f"/v1/compute/clusters/{body['cluster_id']}"
    for status in ("Scheduled", "Queued"):
        with pytest.raises(AssertionError, match=f"'{status}' is not one of"):
            validate_body("GET", path, {**body, "status": status})
    validate_body("GET", path, {**body, "status": "Scheduled"}, frozenset({"Scheduled"}))
    with pytest.raises(AssertionError):
        validate_body("GET", path, {**body, "status": "Queued"}, frozenset({"Scheduled"}))
