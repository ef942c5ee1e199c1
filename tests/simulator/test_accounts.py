"""Keys belong to accounts: a key sees only its account's clusters; and what a List without
projectId shows, both ways the contract allows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.simulator.conftest import create_body
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread

FIRST, ROTATED, OTHER = "first-account-key", "first-account-rotated-key", "other-account-key"


def client(sim: RunningSimulator, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=sim.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.fixture
def accounts() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(
        api_keys=(FIRST, ROTATED, OTHER),
        accounts={FIRST: "acme", ROTATED: "acme", OTHER: "globex"},
    )
    running = start_in_thread(config, clock=FakeClock())
    yield running
    running.stop()


def test_a_key_sees_only_its_accounts_clusters(accounts: RunningSimulator) -> None:
    with client(accounts, FIRST) as first, client(accounts, ROTATED) as rotated:
        made = first.post("/v1/compute/clusters", json=create_body()).json()
        path = f"/v1/compute/clusters/{made['cluster_id']}"
        # Another key of the same account (a rotated one) sees the cluster ...
        assert rotated.get(path).status_code == 200
        assert [
            c["cluster_id"] for c in rotated.get("/v1/compute/clusters").json()["clusters"]
        ] == [made["cluster_id"]]
    with client(accounts, OTHER) as other:
        # ... another account's does not: as if it did not exist, for every operation.
        assert other.get(path).status_code == 404
        assert other.delete(path).status_code == 404
        assert other.put(path, json={"num_gpus": 16}).status_code == 404
        assert other.get(f"{path}/addons").status_code == 404
        assert other.get("/v1/compute/clusters").json()["clusters"] == []
    with client(accounts, FIRST) as first:
        assert first.get(path).json()["num_gpus"] == 8  # untouched by the other account


@pytest.mark.parametrize("scope", ["account", "default-project"])
def test_a_list_without_project_shows_what_the_scope_says(scope: str) -> None:
    running = start_in_thread(
        SimulatorConfig(api_keys=(FIRST,), list_scope=scope), clock=FakeClock()
    )
    try:
        with client(running, FIRST) as api:
            default = api.post("/v1/compute/clusters", json=create_body()).json()
            elsewhere = api.post(
                "/v1/compute/clusters", json=create_body(cluster_name="p", project_id="team-p")
            ).json()
            unfiltered = {
                c["cluster_id"] for c in api.get("/v1/compute/clusters").json()["clusters"]
            }
            filtered = api.get("/v1/compute/clusters", params={"projectId": "team-p"}).json()
    finally:
        running.stop()
    expected = {default["cluster_id"], elsewhere["cluster_id"]}
    if scope == "default-project":
        expected = {default["cluster_id"]}
    assert unfiltered == expected
    assert [c["cluster_id"] for c in filtered["clusters"]] == [elsewhere["cluster_id"]]
