"""The Together client: URLs, auth, typed errors, safe retries, ambiguity and secrecy.

Precise cases run on ``httpx.MockTransport`` (the transport seam) with an injected ``sleep``
that records delays instead of waiting; a few realistic ones run against the simulator in a
background thread on 127.0.0.1, driven by a fake clock.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support import async_test as support_async_test
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.client import RetryPolicy, TogetherClient, cluster_or_none
from together_operator.together.errors import (
    AmbiguousCreate,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    OutOfStock,
    RateLimited,
    ServerError,
    TogetherError,
    TransportError,
    Unauthorized,
)
from together_operator.together.models import (
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterUpdateRequest,
)

# Distinctive enough that finding it anywhere in an error means the key leaked.
API_KEY = "tgp_v1_SECRET-7f3a9c1e-never-print-me"
BASE_URL = "http://together.test"
REGION = "us-central-8"
DRIVER_ID = "us-central-8-cuda12.6-nv560"
TEST_TIMEOUT_SECONDS = 10.0

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


async_test = support_async_test(TEST_TIMEOUT_SECONDS)


def cluster_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cluster_id": "c-1",
        "cluster_name": "train",
        "region": REGION,
        "status": ClusterStatus.READY,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
    }
    body.update(overrides)
    return body


def create_request(**overrides: Any) -> GPUClusterCreateRequest:
    fields: dict[str, Any] = {
        "cluster_name": "train",
        "region": REGION,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "billing_type": "ON_DEMAND",
        "nvidia_version_id": DRIVER_ID,
    }
    fields.update(overrides)
    return GPUClusterCreateRequest.model_validate(fields)


def error_response(status: int, message: str = "boom", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": 2, "message": message}, headers=headers)


@dataclass
class Recording:
    """Everything a client did: requests sent, delays slept, exchanges observed."""

    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    exchanges: list[tuple[str, int, float]] = field(default_factory=list)


def client_on(
    handler: Handler,
    *,
    attempts: int = 3,
    base_delay: float = 0.5,
    max_delay: float = 10.0,
    base_url: str = BASE_URL,
) -> tuple[TogetherClient, Recording]:
    """A client whose requests go to ``handler``; sleeping and observing are recorded."""
    recording = Recording()

    async def answer(request: httpx.Request) -> httpx.Response:
        recording.requests.append(request)
        response = handler(request)
        return await response if isinstance(response, Awaitable) else response

    async def sleep(seconds: float) -> None:
        recording.sleeps.append(seconds)

    def observe(operation: str, status: int, seconds: float) -> None:
        recording.exchanges.append((operation, status, seconds))

    client = TogetherClient(
        API_KEY,
        base_url=base_url,
        retry=RetryPolicy(attempts, BackoffPolicy(base=base_delay, cap=max_delay, jitter=0.5)),
        transport=httpx.MockTransport(answer),
        observer=observe,
        sleep=sleep,
    )
    return client, recording


def given(answer: httpx.Response | Exception) -> httpx.Response:
    """A fresh copy of a scripted response (each exchange consumes its own), or the raise."""
    if isinstance(answer, Exception):
        raise answer
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def answers(*responses: httpx.Response | Exception) -> Handler:
    """A handler that gives these answers in turn (raising the exceptions), repeating the last."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return given(queue.pop(0) if len(queue) > 1 else queue[0])

    return handler


def connection_dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def connection_refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def read_timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out")


#: Each client operation, and how to call it.
Operation = Callable[[TogetherClient], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "list": lambda c: c.list_clusters(),
    "get": lambda c: c.get_cluster("c-1"),
    "create": lambda c: c.create_cluster(create_request()),
    "update": lambda c: c.update_cluster("c-1", GPUClusterUpdateRequest(num_gpus=16)),
    "delete": lambda c: c.delete_cluster("c-1"),
    "regions": lambda c: c.list_regions(),
}
RETRIED = ["list", "get", "update", "delete", "regions"]


def success_for(request: httpx.Request) -> httpx.Response:
    """A plausible 200 for any cluster or region route."""
    path = request.url.path
    if path == "/v1/compute/regions":
        return httpx.Response(200, json={"regions": [{"name": REGION}]})
    if request.method == "DELETE":
        return httpx.Response(200, json={"cluster_id": "c-1"})
    if path == "/v1/compute/clusters" and request.method == "GET":
        return httpx.Response(200, json={"clusters": [cluster_body()]})
    return httpx.Response(200, json=cluster_body())


def then_success(*first: httpx.Response | Exception) -> Handler:
    """A handler that gives ``first`` in turn, then answers every request successfully."""
    queue = list(first)

    def handler(request: httpx.Request) -> httpx.Response:
        return given(queue.pop(0)) if queue else success_for(request)

    return handler


# --- URLs and authentication -----------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["http://together.test", "http://together.test/"])
@async_test
async def test_base_url_is_the_host_and_paths_go_under_v1(base_url: str) -> None:
    client, recording = client_on(success_for, base_url=base_url)
    await client.list_clusters()
    await client.aclose()
    assert str(recording.requests[0].url) == "http://together.test/v1/compute/clusters"


@async_test
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
@async_test
async def test_each_operation_sends_its_method_and_path_with_the_bearer_key(
    operation: str, method: str, path: str
) -> None:
    client, recording = client_on(success_for)
    await OPERATIONS[operation](client)
    await client.aclose()
    [request] = recording.requests
    assert (request.method, request.url.path) == (method, path)
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


@async_test
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


@async_test
async def test_update_sends_only_the_changed_fields_for_merge_semantics() -> None:
    client, recording = client_on(success_for)
    await client.update_cluster("c-1", GPUClusterUpdateRequest(num_gpus=16))
    await client.aclose()
    assert json.loads(recording.requests[0].content) == {"num_gpus": 16}


@async_test
async def test_list_filters_by_project_with_the_contracts_query_parameter() -> None:
    client, recording = client_on(success_for)
    await client.list_clusters(project_id="p-1")
    await client.list_clusters()
    await client.aclose()
    assert dict(recording.requests[0].url.params) == {"projectId": "p-1"}
    assert not recording.requests[1].url.params


@async_test
async def test_answers_are_read_into_wire_models_tolerating_unknown_status_and_fields() -> None:
    listed = {"clusters": [cluster_body(status="Scheduled", brand_new_field={"x": 1})]}
    client, _ = client_on(answers(httpx.Response(200, json=listed)))
    [cluster] = await client.list_clusters()
    await client.aclose()
    assert (cluster.cluster_id, cluster.status) == ("c-1", "Scheduled")


# --- typed errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
    ],
)
@async_test
async def test_error_status_raises_its_typed_error(status: int, kind: type[TogetherError]) -> None:
    client, _ = client_on(answers(error_response(status, "Together says no")), attempts=1)
    with pytest.raises(kind) as raised:
        await client.get_cluster("c-1")
    await client.aclose()
    assert type(raised.value) is kind
    assert raised.value.status == status
    assert raised.value.message == "Together says no"
    assert raised.value.operation == "GPUClusterService_Get"
    assert str(raised.value) == f"GPUClusterService_Get: HTTP {status}: Together says no"


@pytest.mark.parametrize(
    ("message", "out_of_stock"),
    [
        ("Out of stock: 8 H100_SXM GPUs requested in us-central-8, 0 available", True),
        ("cluster is being deleted", False),
    ],
)
@async_test
async def test_conflict_tells_out_of_stock_apart(message: str, out_of_stock: bool) -> None:
    client, _ = client_on(answers(error_response(409, message)))
    with pytest.raises(Conflict) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert isinstance(raised.value, OutOfStock) is out_of_stock
    assert raised.value.reason == ("OutOfStock" if out_of_stock else "Conflict")
    assert raised.value.heals


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(400, json={"code": 3, "message": "grpc shape"}), "grpc shape"),
        (httpx.Response(400, json={"error": {"message": "nested shape"}}), "nested shape"),
        (httpx.Response(400, json={"error": "bare string"}), "bare string"),
        (
            httpx.Response(400, json={"message": "", "error": {"message": "second"}}),
            "second",
        ),
        (httpx.Response(400, text="upstream proxy said no\n"), "upstream proxy said no"),
        (httpx.Response(400, text="x" * 500), "x" * 200),
        (httpx.Response(502), "Bad Gateway"),
    ],
    ids=["code-message", "error-message", "error-string", "empty-message", "text", "long", "empty"],
)
@async_test
async def test_error_message_is_read_from_either_shape_or_the_body(
    response: httpx.Response, message: str
) -> None:
    client, _ = client_on(answers(response), attempts=1)
    with pytest.raises(TogetherError) as raised:
        await client.get_cluster("c-1")
    await client.aclose()
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("header", "retry_after"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"Retry-After": "not a date"}, None),
        ({}, None),
    ],
    ids=["seconds", "fraction", "negative", "http-date", "garbage", "absent"],
)
@async_test
async def test_rate_limited_carries_retry_after_seconds(
    header: dict[str, str], retry_after: float | None
) -> None:
    client, _ = client_on(answers(error_response(429, "slow down", **header)), attempts=1)
    with pytest.raises(RateLimited) as raised:
        await client.list_clusters()
    await client.aclose()
    assert raised.value.retry_after == retry_after


@async_test
async def test_cluster_or_none_answers_none_for_404_and_raises_other_errors() -> None:
    client, _ = client_on(answers(error_response(404, "no such cluster")))
    assert await cluster_or_none(client, "c-1") is None
    await client.aclose()
    client, _ = client_on(answers(error_response(403, "not your project")))
    with pytest.raises(Forbidden):
        await cluster_or_none(client, "c-1")
    await client.aclose()
    client, _ = client_on(success_for)
    found = await cluster_or_none(client, "c-1")
    await client.aclose()
    assert found is not None
    assert found.cluster_id == "c-1"


@pytest.mark.parametrize("operation", RETRIED)
@async_test
async def test_a_success_answer_that_is_not_json_raises_a_together_error(operation: str) -> None:
    # A proxy's maintenance page, say: callers handle TogetherError, never a JSON error.
    client, recording = client_on(answers(httpx.Response(200, text="<html>down</html>")))
    with pytest.raises(ServerError):
        await OPERATIONS[operation](client)
    await client.aclose()
    assert len(recording.requests) == 3  # like any server error on a read: retried


@async_test
async def test_a_create_answered_with_unreadable_success_is_ambiguous() -> None:
    # Together said 200, so the cluster may well exist; its id is lost with the body.
    client, recording = client_on(answers(httpx.Response(200, text="<html>ok</html>")))
    with pytest.raises(AmbiguousCreate):
        await client.create_cluster(create_request())
    await client.aclose()
    assert len(recording.requests) == 1


# --- retries of reads, updates and deletes ---------------------------------------------------


@pytest.mark.parametrize("operation", RETRIED)
@pytest.mark.parametrize(
    "failure",
    [
        error_response(500),
        error_response(503),
        error_response(429),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["500", "503", "429", "read-timeout", "connect-error", "dropped"],
)
@async_test
async def test_idempotent_calls_retry_transient_failures_then_succeed(
    operation: str, failure: httpx.Response | Exception
) -> None:
    client, recording = client_on(then_success(failure, failure), attempts=3)
    await OPERATIONS[operation](client)
    await client.aclose()
    assert len(recording.requests) == 3
    assert len(recording.sleeps) == 2


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (error_response(500), ServerError),
        (error_response(429), RateLimited),
        (httpx.ReadTimeout("timed out"), TransportError),
    ],
    ids=["500", "429", "timeout"],
)
@async_test
async def test_retries_stop_after_the_policys_attempts_and_raise(
    failure: httpx.Response | Exception, kind: type[TogetherError]
) -> None:
    client, recording = client_on(answers(failure), attempts=4)
    with pytest.raises(kind):
        await client.get_cluster("c-1")
    await client.aclose()
    assert len(recording.requests) == 4
    assert len(recording.sleeps) == 3  # no sleep after the last attempt


@async_test
async def test_a_transport_failure_on_a_read_is_a_plain_transport_error() -> None:
    client, _ = client_on(read_timed_out, attempts=2)
    with pytest.raises(TransportError) as raised:
        await client.list_clusters()
    await client.aclose()
    assert not isinstance(raised.value, AmbiguousCreate)
    assert "ReadTimeout" in str(raised.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@async_test
async def test_client_errors_are_not_retried(status: int) -> None:
    client, recording = client_on(answers(error_response(status)), attempts=5)
    with pytest.raises(TogetherError):
        await client.update_cluster("c-1", GPUClusterUpdateRequest(num_gpus=16))
    await client.aclose()
    assert len(recording.requests) == 1
    assert recording.sleeps == []


@async_test
async def test_retry_after_is_honoured_between_attempts() -> None:
    client, recording = client_on(then_success(error_response(429, **{"Retry-After": "2"})))
    await client.list_clusters()
    await client.aclose()
    assert recording.sleeps == [2.0]


@async_test
async def test_retry_after_longer_than_max_delay_is_left_to_the_caller() -> None:
    # Retrying after 5 s when Together said "in an hour" would not honour Retry-After.
    limited = error_response(429, **{"Retry-After": "3600"})
    client, recording = client_on(then_success(limited, limited), max_delay=5.0)
    with pytest.raises(RateLimited) as raised:
        await client.get_cluster("c-1")
    await client.aclose()
    assert raised.value.retry_after == 3600
    assert recording.sleeps == []


@async_test
async def test_retry_after_in_http_date_form_is_honoured() -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    limited = error_response(429, **{"Retry-After": email.utils.format_datetime(when)})
    client, recording = client_on(then_success(limited), max_delay=10.0)
    await client.get_cluster("c-1")
    await client.aclose()
    [slept] = recording.sleeps
    assert 1.0 <= slept <= 3.0


@async_test
async def test_without_retry_after_delays_grow_exponentially_with_jitter() -> None:
    client, recording = client_on(answers(error_response(503)), attempts=5, base_delay=0.5)
    with pytest.raises(ServerError):
        await client.delete_cluster("c-1")
    await client.aclose()
    assert len(recording.sleeps) == 4
    for attempt, slept in enumerate(recording.sleeps):
        full = 0.5 * 2**attempt
        assert full / 2 <= slept <= full, (attempt, slept)
    # Each full backoff doubles, so even with jitter attempt n+2 waits longer than attempt n.
    assert recording.sleeps[2] > recording.sleeps[0]
    assert recording.sleeps[3] > recording.sleeps[1]


@async_test
async def test_exponential_backoff_is_capped_by_max_delay() -> None:
    client, recording = client_on(
        answers(httpx.ConnectError("refused")), attempts=8, base_delay=1.0, max_delay=1.5
    )
    with pytest.raises(TransportError):
        await client.get_cluster("c-1")
    await client.aclose()
    assert len(recording.sleeps) == 7
    assert all(slept <= 1.5 for slept in recording.sleeps)
    assert all(slept >= 0.75 for slept in recording.sleeps[1:])


def test_backoff_waits_at_least_retry_after_and_otherwise_backs_off() -> None:
    policy = BackoffPolicy(base=0.5, cap=10.0, jitter=0.5)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert 0.25 <= policy.delay(1, retry_after=0.0) <= 0.5
    assert policy.delay(1, retry_after=99.0) == 99.0  # the server's word beats the cap
    assert 2.0 <= policy.delay(4) <= 4.0
    assert 5.0 <= policy.delay(30) <= 10.0  # capped, however long the outage


# --- creates are never retried ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (error_response(500), ServerError),
        (error_response(503, **{"Retry-After": "1"}), ServerError),
        (error_response(429, **{"Retry-After": "1"}), RateLimited),
        (error_response(409, "Out of stock: none left"), Conflict),
        (httpx.ReadTimeout("timed out"), AmbiguousCreate),
        (httpx.WriteTimeout("timed out"), AmbiguousCreate),
        (httpx.RemoteProtocolError("Server disconnected"), AmbiguousCreate),
        (httpx.ReadError("connection reset by peer"), AmbiguousCreate),
    ],
    ids=["500", "503", "429", "409", "read-timeout", "write-timeout", "dropped", "reset"],
)
@async_test
async def test_create_sends_exactly_one_request_whatever_goes_wrong(
    failure: httpx.Response | Exception, kind: type[TogetherError]
) -> None:
    client, recording = client_on(then_success(failure), attempts=5)
    with pytest.raises(kind):
        await client.create_cluster(create_request())
    await client.aclose()
    assert len(recording.requests) == 1
    assert recording.sleeps == []


@async_test
async def test_create_whose_connection_drops_after_sending_is_ambiguous() -> None:
    client, _ = client_on(connection_dropped)
    with pytest.raises(AmbiguousCreate) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert isinstance(raised.value, TransportError)  # callers catching transport errors see it
    assert raised.value.operation == "GPUClusterService_Create"
    assert "may or may not" in str(raised.value)


@async_test
async def test_create_whose_connection_is_refused_is_not_ambiguous() -> None:
    client, recording = client_on(connection_refused, attempts=3)
    with pytest.raises(TransportError) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert not isinstance(raised.value, AmbiguousCreate)
    assert len(recording.requests) == 1


def closed_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@async_test
async def test_a_real_refused_connection_is_a_plain_transport_error_for_create_and_get() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = TogetherClient(
        API_KEY,
        base_url=f"http://127.0.0.1:{closed_loopback_port()}",
        timeout=5.0,
        retry=RetryPolicy(attempts=2),
        sleep=sleep,
    )
    with pytest.raises(TransportError) as create_error:
        await client.create_cluster(create_request())
    assert not isinstance(create_error.value, AmbiguousCreate)
    assert sleeps == []
    with pytest.raises(TransportError) as get_error:
        await client.get_cluster("c-1")
    await client.aclose()
    assert not isinstance(get_error.value, AmbiguousCreate)
    assert len(sleeps) == 1  # the read was retried once (attempts=2)


# --- the request observer --------------------------------------------------------------------


@async_test
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


@async_test
async def test_observer_reports_no_answer_as_status_zero_for_an_ambiguous_create() -> None:
    client, recording = client_on(connection_dropped)
    with pytest.raises(AmbiguousCreate):
        await client.create_cluster(create_request())
    await client.aclose()
    assert [(op, status) for op, status, _ in recording.exchanges] == [
        ("GPUClusterService_Create", 0)
    ]


@async_test
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


# --- the API key stays secret ----------------------------------------------------------------


def everything_said_about(error: BaseException) -> str:
    """Every way an error is likely to be printed or logged, its chained errors included."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if error.__context__ is not None:
        parts += [str(error.__context__), repr(error.__context__)]
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("operation", "handler"),
    [
        ("get", answers(error_response(401, "invalid API key"))),
        ("get", answers(error_response(403))),
        ("get", answers(error_response(404))),
        ("update", answers(error_response(409))),
        ("list", answers(error_response(429, **{"Retry-After": "1"}))),
        ("delete", answers(httpx.Response(500, text="internal error"))),
        ("get", connection_refused),
        ("list", read_timed_out),
        ("create", connection_dropped),
        ("create", connection_refused),
        ("create", answers(httpx.Response(200, text="not json"))),
    ],
)
@async_test
async def test_the_api_key_never_appears_in_an_error(operation: str, handler: Handler) -> None:
    client, _ = client_on(handler)
    with pytest.raises(TogetherError) as raised:
        await OPERATIONS[operation](client)
    await client.aclose()
    said = everything_said_about(raised.value)
    assert API_KEY not in said
    assert "SECRET-7f3a9c1e" not in said


# --- against the simulator -------------------------------------------------------------------


@dataclass
class Simulator:
    running: RunningSimulator
    clock: FakeClock

    def client(self, api_key: str = API_KEY, **kwargs: Any) -> TogetherClient:
        return TogetherClient(api_key, base_url=self.running.base_url, timeout=5.0, **kwargs)

    @asynccontextmanager
    async def admin(self) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=self.running.admin_url, timeout=5.0) as admin:
            yield admin


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    clock = FakeClock()
    running = start_in_thread(SimulatorConfig(api_keys=(API_KEY,)), clock=clock)
    try:
        yield Simulator(running, clock)
    finally:
        running.stop()


async def request_counts(simulator: Simulator) -> dict[tuple[str, str], int]:
    async with simulator.admin() as admin:
        rows = (await admin.get("/requests")).json()["requests"]
    return {(row["operation"], row["status"]): row["count"] for row in rows}


@async_test
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


@async_test
async def test_simulator_drop_after_commit_makes_create_ambiguous_and_cluster_exists(
    simulator: Simulator,
) -> None:
    async with simulator.admin() as admin:
        dropped = await admin.post(
            "/faults/drops", json={"operation": "GPUClusterService_Create", "count": 1}
        )
        assert dropped.status_code == 200, dropped.text
    client = simulator.client(retry=RetryPolicy(attempts=5))
    with pytest.raises(AmbiguousCreate) as raised:
        await client.create_cluster(create_request(cluster_name="lost-answer"))
    assert API_KEY not in everything_said_about(raised.value)
    # Resolved by listing, never by posting again: the cluster is there, exactly once.
    listed = await client.list_clusters()
    await client.aclose()
    assert [c.cluster_name for c in listed] == ["lost-answer"]
    counts = await request_counts(simulator)
    assert counts[("GPUClusterService_Create", "dropped")] == 1
    assert sum(n for (op, _), n in counts.items() if op == "GPUClusterService_Create") == 1


@async_test
async def test_simulator_out_of_stock_is_a_conflict_and_create_is_not_retried(
    simulator: Simulator,
) -> None:
    async with simulator.admin() as admin:
        emptied = await admin.put(
            "/stock", json={"region": REGION, "gpu_type": "H100_SXM", "gpus": 0}
        )
        assert emptied.status_code == 200, emptied.text
    client = simulator.client(retry=RetryPolicy(attempts=5))
    with pytest.raises(Conflict) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert isinstance(raised.value, OutOfStock)
    assert raised.value.status == 409
    assert await request_counts(simulator) == {("GPUClusterService_Create", "409"): 1}


@async_test
async def test_simulator_unavailable_list_is_retried_until_it_answers(
    simulator: Simulator,
) -> None:
    async with simulator.admin() as admin:
        failing = await admin.post(
            "/faults/failures",
            json={"operation": "GPUClusterService_List", "status": 503, "count": 2},
        )
        assert failing.status_code == 200, failing.text
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = simulator.client(retry=RetryPolicy(attempts=3), sleep=sleep)
    assert await client.list_clusters() == []
    await client.aclose()
    # The simulator's 503 says Retry-After: 1, and the client waits exactly that.
    assert sleeps == [1.0, 1.0]
    assert await request_counts(simulator) == {
        ("GPUClusterService_List", "200"): 1,
        ("GPUClusterService_List", "503"): 2,
    }


@async_test
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
