"""Fixtures: a simulator in a background thread on 127.0.0.1 driven by a fake clock, and
clients whose every response is checked against the OpenAPI contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from together import Together

from tests.simulator.contract import ContractChecks
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread

API_KEY = "test-key"
REGION = "us-central-8"
DRIVER_ID = "us-central-8-cuda12.6-nv560"


def create_body(**overrides: Any) -> dict[str, Any]:
    """A valid create request, with `overrides` applied (a `None` value removes a field)."""
    body: dict[str, Any] = {
        "cluster_name": "train",
        "region": REGION,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "billing_type": "ON_DEMAND",
        "nvidia_version_id": DRIVER_ID,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(api_keys=(API_KEY,))


@pytest.fixture
def sim(sim_config: SimulatorConfig, clock: FakeClock) -> Iterator[RunningSimulator]:
    running = start_in_thread(sim_config, clock=clock)
    yield running
    running.stop()


@pytest.fixture
def contract_checks() -> ContractChecks:
    return ContractChecks()


@pytest.fixture
def api(sim: RunningSimulator, contract_checks: ContractChecks) -> Iterator[httpx.Client]:
    """Raw HTTP against the API, authenticated, every answer checked against the contract."""
    with httpx.Client(
        base_url=sim.base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        event_hooks={"response": [contract_checks]},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def admin(sim: RunningSimulator) -> Iterator[httpx.Client]:
    """The admin API (`/_sim/`)."""
    with httpx.Client(base_url=sim.admin_url, timeout=10) as client:
        yield client


@pytest.fixture
def sdk(sim: RunningSimulator, contract_checks: ContractChecks) -> Iterator[Together]:
    """The official Together SDK, unmodified, with strict response parsing and no retries."""
    http = httpx.Client(event_hooks={"response": [contract_checks]}, timeout=10)
    client = Together(
        api_key=API_KEY,
        base_url=sim.base_url,
        http_client=http,
        max_retries=0,
        _strict_response_validation=True,
    )
    yield client
    client.close()


@pytest.fixture
def create_cluster(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Create a cluster over HTTP (overrides as in `create_body`); returns its body."""

    def create(**overrides: Any) -> dict[str, Any]:
        response = api.post("/v1/compute/clusters", json=create_body(**overrides))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return create
