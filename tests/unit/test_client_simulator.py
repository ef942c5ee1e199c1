"""The Together client against the simulator on 127.0.0.1 (a background thread), driven by a
fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.unit.client_support import (
    API_KEY,
    REGION,
    TEST_TIMEOUT_SECONDS,
    create_request,
    everything_said_about,
)
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.together import operations
from together_operator.together.client import RetryPolicy, TogetherClient, cluster_or_none
from together_operator.together.errors import AmbiguousCreate, Conflict, OutOfStock, Unauthorized
from together_operator.together.models import ClusterStatus, GPUClusterUpdateRequest

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


@dataclass
class Simulator:
    running: RunningSimulator
    clock: FakeClock
    admin: SimulatorAdmin

    def client(self, api_key: str = API_KEY, **kwargs: Any) -> TogetherClient:
        return TogetherClient(api_key, base_url=self.running.base_url, timeout=5.0, **kwargs)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    clock = FakeClock()
    running = start_in_thread(SimulatorConfig(api_keys=(API_KEY,)), clock=clock)
    try:
        with SimulatorAdmin(running.admin_url) as admin:
            yield Simulator(running, clock, admin)
    finally:
        running.stop()


def request_counts(simulator: Simulator) -> dict[tuple[str, str], int]:
    rows = simulator.admin.request_counts()
    return {(row["operation"], row["status"]): row["count"] for row in rows}


async def test_simulator_round_trip_create_get_list_update_delete(simulator: Simulator) -> None:
    client = simulator.client()
    created = await client.create_cluster(create_request(cluster_name="round-trip"))
    assert created.cluster_name == "round-trip"
    assert created.status != ClusterStatus.READY

    simulator.clock.advance(3600)
    fetched = await client.get_cluster(created.cluster_id)
    assert fetched.status == ClusterStatus.READY
    assert [c.cluster_id for c in await client.list_clusters()] == [created.cluster_id]

    updated = await client.update_cluster(created.cluster_id, GPUClusterUpdateRequest(num_gpus=16))
    assert updated.num_gpus == 16
    assert updated.cluster_name == "round-trip"  # merge: what was not sent is kept

    deleted = await client.delete_cluster(created.cluster_id)
    assert deleted.cluster_id == created.cluster_id
    deleting = await cluster_or_none(client, created.cluster_id)
    assert deleting is not None
    assert deleting.status == ClusterStatus.DELETING

    simulator.clock.advance(3600)
    assert await cluster_or_none(client, created.cluster_id) is None
    assert await client.list_clusters() == []
    regions = await client.list_regions()
    await client.aclose()
    assert REGION in [region.name for region in regions.regions]


async def test_simulator_drop_after_commit_makes_create_ambiguous_and_cluster_exists(
    simulator: Simulator,
) -> None:
    simulator.admin.drop(operations.CREATE_CLUSTER)
    client = simulator.client(retry=RetryPolicy(attempts=5))
    with pytest.raises(AmbiguousCreate) as raised:
        await client.create_cluster(create_request(cluster_name="lost-answer"))
    assert API_KEY not in everything_said_about(raised.value)
    # Resolved by listing, never by posting again: the cluster is there, exactly once.
    listed = await client.list_clusters()
    await client.aclose()
    assert [c.cluster_name for c in listed] == ["lost-answer"]
    counts = request_counts(simulator)
    assert counts[("GPUClusterService_Create", "dropped")] == 1
    assert sum(n for (op, _), n in counts.items() if op == "GPUClusterService_Create") == 1


async def test_simulator_out_of_stock_is_a_conflict_and_create_is_not_retried(
    simulator: Simulator,
) -> None:
    simulator.admin.set_stock(REGION, "H100_SXM", gpus=0)
    client = simulator.client(retry=RetryPolicy(attempts=5))
    with pytest.raises(Conflict) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert isinstance(raised.value, OutOfStock)
    assert raised.value.status == 409
    assert request_counts(simulator) == {("GPUClusterService_Create", "409"): 1}


async def test_simulator_unavailable_list_is_retried_until_it_answers(
    simulator: Simulator,
) -> None:
    simulator.admin.fail(503, operations.LIST_CLUSTERS, count=2)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = simulator.client(retry=RetryPolicy(attempts=3), sleep=sleep)
    assert await client.list_clusters() == []
    await client.aclose()
    # The simulator's 503 says Retry-After: 1, and the client waits exactly that.
    assert sleeps == [1.0, 1.0]
    assert request_counts(simulator) == {
        ("GPUClusterService_List", "200"): 1,
        ("GPUClusterService_List", "503"): 2,
    }


async def test_simulator_rejects_a_wrong_key_as_unauthorized_without_echoing_it(
    simulator: Simulator,
) -> None:
    wrong_key = "tgp_v1_WRONG-0c0ffee-also-secret"
    client = simulator.client(api_key=wrong_key)
    with pytest.raises(Unauthorized) as raised:
        await client.list_clusters()
    await client.aclose()
    assert raised.value.status == 401
    assert wrong_key not in everything_said_about(raised.value)
