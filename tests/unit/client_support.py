"""Shared pieces of the Together client tests: scripted answers on ``httpx.MockTransport``
(the transport seam) and an injected ``sleep`` that records delays instead of waiting."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests import factories
from tests.factories import cluster_fields
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.client import RetryPolicy, TogetherClient
from together_operator.together.models import (
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


def cluster_body(**overrides: Any) -> dict[str, Any]:
    return cluster_fields(**{"cluster_name": "train", **overrides})


def create_request(**overrides: Any) -> GPUClusterCreateRequest:
    """A create selecting its driver by catalogue ID (the legacy pair left out)."""
    fields = {"cluster_name": "train", "nvidia_version_id": DRIVER_ID, **overrides}
    return factories.create_request(cuda_version=None, nvidia_driver_version=None, **fields)


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


def everything_said_about(error: BaseException) -> str:
    """Every way an error is likely to be printed or logged, its chained errors included."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if error.__context__ is not None:
        parts += [str(error.__context__), repr(error.__context__)]
    return "\n".join(parts)
