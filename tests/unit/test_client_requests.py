"""The Together client's requests: URLs under /v1, the bearer key, bodies that carry only what
was set, answers read into wire models, and the request observer."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.unit.client_support import (
    API_KEY,
    DRIVER_ID,
    OPERATIONS,
    REGION,
    TEST_TIMEOUT_SECONDS,
    answers,
    client_on,
    cluster_body,
    connection_dropped,
    create_request,
    error_response,
    success_for,
    then_success,
)
from together_operator.together.errors import AmbiguousCreate
from together_operator.together.models import GPUClusterUpdateRequest

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


# --- URLs and authentication -----------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["http://together.test", "http://together.test/"])
async def test_base_url_is_the_host_and_paths_go_under_v1(base_url: str) -> None:
    client, recording = client_on(success_for, base_url=base_url)
    await client.list_clusters()
    await client.aclose()
    assert str(recording.requests[0].url) == "http://together.test/v1/compute/clusters"


async def test_base_url_with_a_path_prefix_keeps_the_prefix_before_v1() -> None:
    client, recording = client_on(success_for, base_url="http://proxy.test/together")
    await client.get_cluster("c-1")
    await client.aclose()
    assert str(recording.requests[0].url) == "http://proxy.test/together/v1/compute/clusters/c-1"


@pytest.mark.parametrize(
    ("operation", "method", "path"),
    [
        ("list", "GET", "/v1/compute/clusters"),
        ("get", "GET", "/v1/compute/clusters/c-1"),
        ("create", "POST", "/v1/compute/clusters"),
        ("update", "PUT", "/v1/compute/clusters/c-1"),
        ("delete", "DELETE", "/v1/compute/clusters/c-1"),
        ("regions", "GET", "/v1/compute/regions"),
    ],
)
async def test_each_operation_sends_its_method_and_path_with_the_bearer_key(
    operation: str, method: str, path: str
) -> None:
    client, recording = client_on(success_for)
    await OPERATIONS[operation](client)
    await client.aclose()
    [request] = recording.requests
    assert (request.method, request.url.path) == (method, path)
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_create_sends_only_the_fields_that_were_set() -> None:
    client, recording = client_on(success_for)
    created = await client.create_cluster(create_request())
    await client.aclose()
    assert json.loads(recording.requests[0].content) == {
        "cluster_name": "train",
        "region": REGION,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "billing_type": "ON_DEMAND",
        "nvidia_version_id": DRIVER_ID,
    }
    assert created.cluster_id == "c-1"


async def test_update_sends_only_the_changed_fields_for_merge_semantics() -> None:
    client, recording = client_on(success_for)
    await client.update_cluster("c-1", GPUClusterUpdateRequest(num_gpus=16))
    await client.aclose()
    assert json.loads(recording.requests[0].content) == {"num_gpus": 16}


async def test_list_filters_by_project_with_the_contracts_query_parameter() -> None:
    client, recording = client_on(success_for)
    await client.list_clusters(project_id="p-1")
    await client.list_clusters()
    await client.aclose()
    assert dict(recording.requests[0].url.params) == {"projectId": "p-1"}
    assert not recording.requests[1].url.params


async def test_answers_are_read_into_wire_models_tolerating_unknown_status_and_fields() -> None:
    listed = {"clusters": [cluster_body(status="Scheduled", brand_new_field={"x": 1})]}
    client, _ = client_on(answers(httpx.Response(200, json=listed)))
    [cluster] = await client.list_clusters()
    await client.aclose()
    assert (cluster.cluster_id, cluster.status) == ("c-1", "Scheduled")


# --- the request observer --------------------------------------------------------------------


async def test_observer_sees_every_exchange_with_its_status() -> None:
    client, recording = client_on(then_success(error_response(503), httpx.ConnectError("no")))
    await client.get_cluster("c-1")
    await client.create_cluster(create_request())
    await client.aclose()
    seen = [(operation, status) for operation, status, _ in recording.exchanges]
    assert seen == [
        ("GPUClusterService_Get", 503),
        ("GPUClusterService_Get", 0),  # no answer at all
        ("GPUClusterService_Get", 200),
        ("GPUClusterService_Create", 200),
    ]
    assert all(seconds >= 0.0 for _, _, seconds in recording.exchanges)


async def test_observer_reports_no_answer_as_status_zero_for_an_ambiguous_create() -> None:
    client, recording = client_on(connection_dropped)
    with pytest.raises(AmbiguousCreate):
        await client.create_cluster(create_request())
    await client.aclose()
    assert [(op, status) for op, status, _ in recording.exchanges] == [
        ("GPUClusterService_Create", 0)
    ]


async def test_observer_measures_how_long_the_exchange_took() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return success_for(request)

    client, recording = client_on(slow)
    await client.list_regions()
    await client.aclose()
    [(operation, status, seconds)] = recording.exchanges
    assert (operation, status) == ("RegionService_List", 200)
    assert seconds >= 0.04
