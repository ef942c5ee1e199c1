"""`--state-file`: clusters and volumes survive a simulator restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.simulator.conftest import API_KEY, REGION, create_body
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import SimulatorConfig, start_in_thread

TIMINGS = Timings()
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def test_clusters_and_volumes_survive_a_restart_and_keep_progressing(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "simulator.json"
    config = SimulatorConfig(api_keys=(API_KEY,), state_file=state_file)
    clock = FakeClock()
    first = start_in_thread(config, clock=clock)
    try:
        with httpx.Client(base_url=first.base_url, headers=HEADERS) as client:
            cluster = client.post("/v1/compute/clusters", json=create_body()).json()
            volume = client.post(
                "/v1/compute/clusters/storage/volumes",
                json={"volume_name": "data", "size_tib": 1, "region": REGION},
            ).json()
    finally:
        first.stop()
    assert state_file.exists()
    assert [p.name for p in state_file.parent.iterdir()] == ["simulator.json"]

    clock.advance(TIMINGS.create_to_ready)
    second = start_in_thread(config, clock=clock)
    try:
        with httpx.Client(base_url=second.base_url, headers=HEADERS) as client:
            again = client.get(f"/v1/compute/clusters/{cluster['cluster_id']}").json()
            assert again["status"] == "Ready"
            assert again["created_at"] == cluster["created_at"]
            volume_path = f"/v1/compute/clusters/storage/volumes/{volume['volume_id']}"
            assert client.get(volume_path).json()["volume_name"] == "data"
    finally:
        second.stop()
