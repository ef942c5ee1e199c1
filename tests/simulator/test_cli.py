"""`together-operator simulator` as a standalone process, and the simulator at real speed."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from tests.simulator.conftest import API_KEY, create_body
from tests.support import wait_for
from together_operator.cli import main
from together_operator.simulator.server import SimulatorConfig, start_in_thread


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def standalone() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "together_operator.cli", "simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        try:
            return httpx.get(f"{base_url}/_sim/health", timeout=1).is_success
        except httpx.TransportError:
            return False

    try:
        wait_for(serving, timeout=20, interval=0.1, what="the simulator to listen")
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.stderr is not None
    log = process.stderr.read().decode()
    assert "sim-key" not in log
    assert "GET /v1/compute/regions 200" in log


def test_standalone_simulator_serves_regions_with_the_default_key(standalone: str) -> None:
    response = httpx.get(
        f"{standalone}/v1/compute/regions", headers={"Authorization": "Bearer sim-key"}
    )
    assert response.status_code == 200
    assert response.json()["regions"]


def test_bad_fault_flags_are_usage_errors() -> None:
    result = CliRunner().invoke(main, ["simulator", "--fail", "GPUClusterService_List:503"])
    assert result.exit_code == 2
    assert "OPERATION:STATUS:COUNT" in result.output


def test_a_fast_simulator_reaches_ready_in_real_time() -> None:
    running = start_in_thread(SimulatorConfig(api_keys=(API_KEY,), speed=200))
    try:
        with httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as client:
            cluster_id = client.post("/v1/compute/clusters", json=create_body()).json()[
                "cluster_id"
            ]

            def status() -> bool:
                body = client.get(f"/v1/compute/clusters/{cluster_id}").json()
                return bool(body["status"] == "Ready")

            wait_for(status, timeout=10, interval=0.05, what="the cluster to be Ready")
    finally:
        running.stop()
