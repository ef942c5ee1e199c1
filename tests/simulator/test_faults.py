"""Fault injection, through the admin API and from start-up flags."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import API_KEY, create_body
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.faults import (
    Faults,
    parse_drop,
    parse_failure_burst,
    parse_failure_rate,
    parse_latency,
)
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import SimulatorConfig, start_in_thread

TIMINGS = Timings()
CreateCluster = Callable[..., dict[str, Any]]


def test_a_burst_fails_the_next_n_requests_then_clears(
    api: httpx.Client, admin: httpx.Client
) -> None:
    admin.post(
        "/faults/failures", json={"operation": "RegionService_List", "status": 503, "count": 2}
    ).raise_for_status()
    statuses = [api.get("/v1/compute/regions").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert api.get("/v1/compute/clusters").status_code == 200


def test_injected_errors_have_the_json_shape_and_retry_after(
    api: httpx.Client, admin: httpx.Client
) -> None:
    admin.post(
        "/faults/failures", json={"status": 429, "count": 1, "retry_after": 3}
    ).raise_for_status()
    limited = api.get("/v1/compute/clusters")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["code"] == 8
    admin.post("/faults/failures", json={"status": 500, "count": 1}).raise_for_status()
    broken = api.get("/v1/compute/clusters")
    assert broken.status_code == 500
    assert "Retry-After" not in broken.headers


def test_failure_probability_decides_each_request(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post(
        "/faults/failures",
        json={"operation": "RegionService_List", "status": 502, "probability": 0.0},
    ).raise_for_status()
    assert api.get("/v1/compute/regions").status_code == 200
    admin.delete("/faults").raise_for_status()
    admin.post(
        "/faults/failures",
        json={"operation": "RegionService_List", "status": 502, "probability": 1.0},
    ).raise_for_status()
    assert [api.get("/v1/compute/regions").status_code for _ in range(3)] == [502] * 3
    assert admin.delete("/faults").json() == {
        "failures": [],
        "latencies": {},
        "answer_latencies": {},
        "drops": {},
    }
    assert api.get("/v1/compute/regions").status_code == 200


def test_latency_delays_the_answer(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post(
        "/faults/latency", json={"operation": "RegionService_List", "seconds": 0.3}
    ).raise_for_status()
    started = time.monotonic()
    assert api.get("/v1/compute/regions").status_code == 200
    assert time.monotonic() - started >= 0.3
    admin.post("/faults/latency", json={"operation": "RegionService_List", "seconds": 0})
    assert admin.get("/faults").json()["latencies"] == {}


def test_ambiguous_create_commits_but_the_client_sees_a_connection_error(
    api: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/faults/drops", json={"operation": "GPUClusterService_Create"}).raise_for_status()
    with pytest.raises(httpx.TransportError):
        api.post("/v1/compute/clusters", json=create_body(cluster_name="ambiguous"))
    listed = api.get("/v1/compute/clusters").json()["clusters"]
    assert [c["cluster_name"] for c in listed] == ["ambiguous"]
    counts = admin.get("/requests").json()["requests"]
    assert {"operation": "GPUClusterService_Create", "status": "dropped", "count": 1} in counts
    assert api.post("/v1/compute/clusters", json=create_body()).status_code == 200


def test_forcing_degraded_and_failed_acceptance_tests(
    api: httpx.Client, admin: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster()
    clock.advance(TIMINGS.create_to_ready)
    phase_path = f"/clusters/{cluster['cluster_id']}/phase"
    degraded = admin.post(phase_path, json={"phase": "CLUSTER_PHASE_DEGRADED"}).json()
    assert degraded["status"] == "Degraded"
    failed = admin.post(phase_path, json={"phase": "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED"})
    assert failed.json()["phase_transitions"][-1]["phase"] == (
        "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED"
    )
    seen = api.get(f"/v1/compute/clusters/{cluster['cluster_id']}").json()
    assert seen["status"] == "Degraded"
    bad = admin.post(phase_path, json={"phase": "CLUSTER_PHASE_DELETING"})
    assert bad.status_code == 400
    assert "`phase`" in bad.json()["message"]


def test_preempting_through_the_admin_api_records_events(
    api: httpx.Client, admin: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster(num_gpus=16, num_preemptible_gpus=16)
    clock.advance(TIMINGS.create_to_ready + 2 * TIMINGS.preemptible_step)
    path = f"/v1/compute/clusters/{cluster['cluster_id']}"
    assert api.get(path).json()["allocated_preemptible_gpus"] == 16
    preempted = admin.post(f"/clusters/{cluster['cluster_id']}/preempt", json={"gpus": 8}).json()
    assert preempted["allocated_preemptible_gpus"] == 8
    assert preempted["desired_preemptible_gpus"] == 16
    assert preempted["node_lifecycle_events"][-1]["reason"] == "TogetherPreempted"


def test_admin_payload_typos_are_rejected(admin: httpx.Client) -> None:
    response = admin.post("/faults/failures", json={"status": 503, "cuont": 2})
    assert response.status_code == 400
    assert "cuont" in response.json()["message"]


@pytest.fixture
def faulty_sim() -> Iterator[str]:
    faults = Faults(seed=1)
    faults.add_failure(parse_failure_burst("GPUClusterService_List:503:1"))
    faults.add_failure(parse_failure_rate("RegionService_List:500:0.0"))
    faults.set_latency(parse_latency("*:0.01"))
    faults.add_drops(parse_drop("GPUClusterService_Create:1"))
    running = start_in_thread(SimulatorConfig(api_keys=(API_KEY,), faults=faults))
    yield running.base_url
    running.stop()


def test_faults_given_at_start_up_are_in_force(faulty_sim: str) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=faulty_sim, headers=headers) as client:
        assert client.get("/v1/compute/clusters").status_code == 503
        assert client.get("/v1/compute/clusters").status_code == 200
        assert client.get("/v1/compute/regions").status_code == 200
        with pytest.raises(httpx.TransportError):
            client.post("/v1/compute/clusters", json=create_body())
        assert len(client.get("/v1/compute/clusters").json()["clusters"]) == 1


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_failure_burst, "GPUClusterService_List:503"),
        (parse_failure_rate, "*:503:lots"),
        (parse_latency, "RegionService_List"),
        (parse_drop, ":1"),
    ],
)
def test_malformed_fault_flags_are_refused(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|could not convert|invalid literal"):
        parse(text)
