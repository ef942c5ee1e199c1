"""The Together client's typed errors: one class per meaning, Together's message from either
body shape, and never the API key."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.client_support import (
    API_KEY,
    OPERATIONS,
    RETRIED,
    TEST_TIMEOUT_SECONDS,
    Handler,
    answers,
    client_on,
    connection_dropped,
    connection_refused,
    create_request,
    error_response,
    everything_said_about,
    read_timed_out,
    success_for,
)
from together_operator.together.client import cluster_or_none
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
    Unauthorized,
)

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


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
async def test_rate_limited_carries_retry_after_seconds(
    header: dict[str, str], retry_after: float | None
) -> None:
    client, _ = client_on(answers(error_response(429, "slow down", **header)), attempts=1)
    with pytest.raises(RateLimited) as raised:
        await client.list_clusters()
    await client.aclose()
    assert raised.value.retry_after == retry_after


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
async def test_a_success_answer_that_is_not_json_raises_a_together_error(operation: str) -> None:
    # A proxy's maintenance page, say: callers handle TogetherError, never a JSON error.
    client, recording = client_on(answers(httpx.Response(200, text="<html>down</html>")))
    with pytest.raises(ServerError):
        await OPERATIONS[operation](client)
    await client.aclose()
    assert len(recording.requests) == 3  # like any server error on a read: retried


async def test_a_create_answered_with_unreadable_success_is_ambiguous() -> None:
    # Together said 200, so the cluster may well exist; its id is lost with the body.
    client, recording = client_on(answers(httpx.Response(200, text="<html>ok</html>")))
    with pytest.raises(AmbiguousCreate):
        await client.create_cluster(create_request())
    await client.aclose()
    assert len(recording.requests) == 1


# --- the API key stays secret ----------------------------------------------------------------


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
async def test_the_api_key_never_appears_in_an_error(operation: str, handler: Handler) -> None:
    client, _ = client_on(handler)
    with pytest.raises(TogetherError) as raised:
        await OPERATIONS[operation](client)
    await client.aclose()
    said = everything_said_about(raised.value)
    assert API_KEY not in said
    assert "SECRET-7f3a9c1e" not in said
