"""The Together client's retries: reads, merge-PUTs and deletes are retried with backoff that
honours Retry-After; a create is sent exactly once, and a lost answer is ambiguous."""

from __future__ import annotations

import datetime
import email.utils
import socket

import httpx
import pytest

from tests.unit.client_support import (
    API_KEY,
    OPERATIONS,
    RETRIED,
    TEST_TIMEOUT_SECONDS,
    answers,
    client_on,
    connection_dropped,
    connection_refused,
    create_request,
    error_response,
    read_timed_out,
    then_success,
)
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.client import RetryPolicy, TogetherClient
from together_operator.together.errors import (
    AmbiguousCreate,
    Conflict,
    RateLimited,
    ServerError,
    TogetherError,
    TransportError,
)
from together_operator.together.models import GPUClusterUpdateRequest

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


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
async def test_retries_stop_after_the_policys_attempts_and_raise(
    failure: httpx.Response | Exception, kind: type[TogetherError]
) -> None:
    client, recording = client_on(answers(failure), attempts=4)
    with pytest.raises(kind):
        await client.get_cluster("c-1")
    await client.aclose()
    assert len(recording.requests) == 4
    assert len(recording.sleeps) == 3  # no sleep after the last attempt


async def test_a_transport_failure_on_a_read_is_a_plain_transport_error() -> None:
    client, _ = client_on(read_timed_out, attempts=2)
    with pytest.raises(TransportError) as raised:
        await client.list_clusters()
    await client.aclose()
    assert not isinstance(raised.value, AmbiguousCreate)
    assert "ReadTimeout" in str(raised.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(status: int) -> None:
    client, recording = client_on(answers(error_response(status)), attempts=5)
    with pytest.raises(TogetherError):
        await client.update_cluster("c-1", GPUClusterUpdateRequest(num_gpus=16))
    await client.aclose()
    assert len(recording.requests) == 1
    assert recording.sleeps == []


async def test_retry_after_is_honoured_between_attempts() -> None:
    client, recording = client_on(then_success(error_response(429, **{"Retry-After": "2"})))
    await client.list_clusters()
    await client.aclose()
    assert recording.sleeps == [2.0]


async def test_retry_after_longer_than_max_delay_is_left_to_the_caller() -> None:
    # Retrying after 5 s when Together said "in an hour" would not honour Retry-After.
    limited = error_response(429, **{"Retry-After": "3600"})
    client, recording = client_on(then_success(limited, limited), max_delay=5.0)
    with pytest.raises(RateLimited) as raised:
        await client.get_cluster("c-1")
    await client.aclose()
    assert raised.value.retry_after == 3600
    assert recording.sleeps == []


async def test_retry_after_in_http_date_form_is_honoured() -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3)
    limited = error_response(429, **{"Retry-After": email.utils.format_datetime(when)})
    client, recording = client_on(then_success(limited), max_delay=10.0)
    await client.get_cluster("c-1")
    await client.aclose()
    [slept] = recording.sleeps
    assert 1.0 <= slept <= 3.0


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
async def test_create_sends_exactly_one_request_whatever_goes_wrong(
    failure: httpx.Response | Exception, kind: type[TogetherError]
) -> None:
    client, recording = client_on(then_success(failure), attempts=5)
    with pytest.raises(kind):
        await client.create_cluster(create_request())
    await client.aclose()
    assert len(recording.requests) == 1
    assert recording.sleeps == []


async def test_create_whose_connection_drops_after_sending_is_ambiguous() -> None:
    client, _ = client_on(connection_dropped)
    with pytest.raises(AmbiguousCreate) as raised:
        await client.create_cluster(create_request())
    await client.aclose()
    assert isinstance(raised.value, TransportError)  # callers catching transport errors see it
    assert raised.value.operation == "GPUClusterService_Create"
    assert "may or may not" in str(raised.value)


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
