"""The Together client's add-on and node-health calls, and how it tells errors apart: by status,
then by the body's structured fields (gRPC code, ErrorInfo reason), the message text only as a
fallback. Precise cases on ``httpx.MockTransport``; realistic ones against the simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import SimulatorConfig, start_in_thread
from together_operator.together.client import MAX_PAGES, RetryPolicy, TogetherClient
from together_operator.together.errors import (
    AlreadyExists,
    AmbiguousCreate,
    Conflict,
    InvalidRequest,
    NotFound,
    OutOfStock,
)
from together_operator.together.health import AlertStatus, RemediationState
from together_operator.together.models import (
    AddOnConfig,
    AddOnType,
    ClusterAddOnCreateRequest,
    ClusterAddOnUpdateRequest,
    GPUClusterCreateRequest,
    GPUClusterUpdateRequest,
    Toggle,
)

pytestmark = pytest.mark.timeout(30)

API_KEY = "sim-client-key"
REGION = "us-central-8"
OUT_OF_STOCK_INFO = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "OUT_OF_STOCK",
    "domain": "compute.together.ai",
}


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> TogetherClient:
    async def sleep(_: float) -> None:
        return None

    return TogetherClient(
        "k", base_url="http://together.test", transport=httpx.MockTransport(handler), sleep=sleep
    )


async def conflict_from(body: Any) -> Exception:
    content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    client = mock_client(lambda _: httpx.Response(409, content=content))
    try:
        await client.create_cluster(
            GPUClusterCreateRequest.model_validate(
                {
                    "cluster_name": "c",
                    "region": REGION,
                    "gpu_type": "H100_SXM",
                    "num_gpus": 8,
                    "billing_type": "ON_DEMAND",
                    "nvidia_version_id": "x",
                }
            )
        )
    except Exception as error:
        return error
    finally:
        await client.aclose()
    raise AssertionError("no error")


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        pytest.param(
            {"code": 10, "message": "capacity exhausted", "details": [OUT_OF_STOCK_INFO]},
            OutOfStock,
            "capacity exhausted",
            id="structured marker, other words",
        ),
        pytest.param(
            {"code": 10, "message": "Out of stock: none left"},
            OutOfStock,
            "Out of stock: none left",
            id="words only: the fallback",
        ),
        pytest.param(
            {
                "code": 10,
                "message": "out of stock? no: quota",
                "details": [{**OUT_OF_STOCK_INFO, "reason": "QUOTA_EXCEEDED"}],
            },
            Conflict,
            "out of stock? no: quota",
            id="another structured reason beats the words",
        ),
        pytest.param(
            {"code": 6, "message": "add-on dash exists"},
            AlreadyExists,
            "add-on dash exists",
            id="grpc ALREADY_EXISTS",
        ),
        pytest.param(
            {"error": {"message": "nested shape", "details": [OUT_OF_STOCK_INFO]}},
            OutOfStock,
            "nested shape",
            id="nested error object",
        ),
        pytest.param(
            {"error": "just text, out of stock"},
            OutOfStock,
            "just text, out of stock",
            id="error string",
        ),
        pytest.param(b"<html>busy</html>", Conflict, "<html>busy</html>", id="not JSON"),
        pytest.param(
            {"code": 10, "message": "being deleted", "details": ["junk", {"no": "reason"}]},
            Conflict,
            "being deleted",
            id="malformed details ignored",
        ),
    ],
)
async def test_a_409_is_classified_by_its_structured_fields_first(
    body: Any, kind: type[Exception], message: str
) -> None:
    error = await conflict_from(body)
    assert type(error) is kind
    assert isinstance(error, Conflict)
    assert error.message == message
    assert error.heals is (kind is not AlreadyExists)


@asynccontextmanager
async def simulator_client() -> AsyncIterator[tuple[TogetherClient, SimulatorAdmin, FakeClock]]:
    clock = FakeClock()
    running = start_in_thread(SimulatorConfig(api_keys=(API_KEY,)), clock=clock)
    # One attempt per call: a 409 heals, and a retry would hide the error under test.
    client = TogetherClient(API_KEY, base_url=running.base_url, retry=RetryPolicy(attempts=1))
    admin = SimulatorAdmin(running.admin_url)
    try:
        yield client, admin, clock
    finally:
        await client.aclose()
        admin.close()
        running.stop()


async def ready_cluster(client: TogetherClient, clock: FakeClock, **fields: Any) -> str:
    request = GPUClusterCreateRequest.model_validate(
        {
            "cluster_name": "c",
            "region": REGION,
            "gpu_type": "H100_SXM",
            "num_gpus": 8,
            "billing_type": "ON_DEMAND",
            "nvidia_version_id": f"{REGION}-cuda12.6-nv560",
            **fields,
        }
    )
    cluster = await client.create_cluster(request)
    clock.advance(Timings().create_to_ready)
    return cluster.cluster_id


async def test_the_simulators_stock_out_is_recognised_by_its_marker_not_its_words() -> None:
    async with simulator_client() as (client, admin, clock):
        cluster_id = await ready_cluster(client, clock)
        admin.fail(409, "GPUClusterService_Get", count=1, message="no GPUs", reason="OUT_OF_STOCK")
        with pytest.raises(OutOfStock) as marked:
            await client.get_cluster(cluster_id)
        assert marked.value.message == "no GPUs"
        admin.set_stock(REGION, "H100_SXM", gpus=0)
        with pytest.raises(OutOfStock):
            await client.update_cluster(cluster_id, _update(num_gpus=16))


def _update(**fields: Any) -> GPUClusterUpdateRequest:
    return GPUClusterUpdateRequest.model_validate(fields)


async def test_add_ons_are_added_disabled_re_enabled_and_deleted() -> None:
    async with simulator_client() as (client, _, clock):
        cluster_id = await ready_cluster(client, clock)
        on = AddOnConfig(headlamp=Toggle(enabled=True))
        made = await client.create_add_on(
            cluster_id,
            ClusterAddOnCreateRequest(name="lamp", add_on_type=AddOnType.HEADLAMP, config=on),
        )
        assert (made.name, made.state.headlamp) == ("lamp", {})
        assert [a.name for a in (await client.get_cluster(cluster_id)).add_ons] == ["lamp"]

        off = ClusterAddOnUpdateRequest(config=AddOnConfig(headlamp=Toggle(enabled=False)))
        disabled = await client.update_add_on(cluster_id, "lamp", off)
        assert disabled.state.headlamp is None
        assert (await client.get_cluster(cluster_id)).add_ons == []
        assert [a.name for a in await client.list_add_ons(cluster_id)] == ["lamp"]

        again = await client.update_add_on(cluster_id, "lamp", ClusterAddOnUpdateRequest(config=on))
        assert again.config.headlamp == Toggle(enabled=True)
        assert (await client.get_add_on(cluster_id, "lamp")).state.headlamp == {}

        with pytest.raises(AlreadyExists):
            await client.create_add_on(
                cluster_id, ClusterAddOnCreateRequest(name="lamp", add_on_type=AddOnType.INGRESS)
            )
        await client.delete_add_on(cluster_id, "lamp")
        assert await client.list_add_ons(cluster_id) == []
        with pytest.raises(NotFound):
            await client.delete_add_on(cluster_id, "lamp")


async def test_a_lost_add_on_create_is_ambiguous_and_not_retried() -> None:
    sent: list[httpx.Request] = []

    def drop(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ReadTimeout("lost", request=request)

    client = mock_client(drop)
    with pytest.raises(AmbiguousCreate):
        await client.create_add_on(
            "c-1", ClusterAddOnCreateRequest(name="d", add_on_type=AddOnType.DASHBOARD)
        )
    await client.aclose()
    assert len(sent) == 1
    assert sent[0].url.path == "/v1/compute/clusters/c-1/addons"


async def test_remediations_and_alerts_are_listed_through_every_page() -> None:
    async with simulator_client() as (client, admin, clock):
        cluster_id = await ready_cluster(client, clock)
        for _ in range(3):
            admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_VM_ONLY")
            clock.advance(1)
        waiting = await client.list_remediations(
            cluster_id, states=[RemediationState.PENDING_APPROVAL]
        )
        assert len(waiting) == 3
        assert all(r.trigger == "REMEDIATION_TRIGGER_AUTOMATED" for r in waiting)
        assert await client.list_remediations(cluster_id, states=[RemediationState.RUNNING]) == []
        firing = await client.list_health_check_alerts(cluster_id)
        assert [a.node_remediation_intent_id for a in firing] == [r.id for r in waiting]
        admin.resolve_alert(cluster_id, firing[0].passive_health_check_alert_id)
        assert len(await client.list_health_check_alerts(cluster_id)) == 2
        resolved = await client.list_health_check_alerts(cluster_id, status=AlertStatus.RESOLVED)
        assert [a.passive_health_check_alert_id for a in resolved] == [
            firing[0].passive_health_check_alert_id
        ]
        assert len(await client.list_remediations(cluster_id, "-", states=[])) == 3
        with pytest.raises(InvalidRequest):
            await client.list_health_check_alerts("")  # cluster_id is required


async def test_paging_follows_tokens_and_stops_after_max_pages() -> None:
    pages: list[httpx.Request] = []

    def endless(request: httpx.Request) -> httpx.Response:
        pages.append(request)
        token = request.url.params.get("page_token", "0")
        body = {"alerts": [], "next_page_token": str(int(token) + 1)}
        return httpx.Response(200, json=body)

    client = mock_client(endless)
    assert await client.list_health_check_alerts("c-1") == []
    await client.aclose()
    assert len(pages) == MAX_PAGES
    assert pages[0].url.params.get("cluster_id") == "c-1"
    assert "page_token" not in pages[0].url.params
    assert pages[1].url.params.get("page_token") == "1"
