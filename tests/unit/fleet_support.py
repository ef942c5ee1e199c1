"""Shared pieces of the fleet observer tests: a fake Together that counts List requests.

The fleet observer makes one List per poll interval per API key, fast while anything changes.

The client runs on ``httpx.MockTransport`` that counts and timestamps List requests. Cadence
tests use a tiny fast interval and a huge slow one, so "polled slowly" means "did not poll
again at all" and "polled fast" means "polled several times within seconds": every timing
assertion is a lower bound or an eventually-with-a-generous-deadline, never a tight window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import cluster_fields
from tests.support import wait_for_async
from together_operator.controller.fleet import (
    FleetObserver,
    PollPolicy,
    key_fingerprint,
)
from together_operator.together.client import RetryPolicy, TogetherClient

API_KEY = "tgp_v1_FLEET-SECRET-5b2e8d40-never-log-me"
OTHER_KEY = "tgp_v1_FLEET-SECRET-9a61c3f7-also-private"
BASE_URL = "http://together.test"
TEST_TIMEOUT_SECONDS = 15.0
FAST = 0.01
SLOW = 60.0  # never elapses within a test: a second poll means the observer did not wait it
QUIET_WINDOW = 0.3  # how long "no further poll" is watched for


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    await wait_for_async(condition, timeout=within, what=what)


def cluster(cluster_id: str, name: str = "train", **overrides: Any) -> dict[str, Any]:
    return cluster_fields(cluster_id=cluster_id, cluster_name=name, **overrides)


Answer = Callable[[int], httpx.Response]


def listing(*clusters: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"clusters": list(clusters)})


def always(*clusters: dict[str, Any]) -> Answer:
    return lambda index: listing(*clusters)


def failing(status: int = 500, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": 13, "message": "injected"}, headers=headers)


@dataclass
class FakeTogether:
    """Answers List requests with ``answer(n)`` for the n-th request (from 0), recording them."""

    answer: Answer
    times: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.times)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("GET", "/v1/compute/clusters")
        index = self.count
        self.times.append(time.monotonic())
        self.keys.append(request.headers["Authorization"].removeprefix("Bearer "))
        return self.answer(index)

    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.times, self.times[1:], strict=False)]


def client_for(together: FakeTogether, api_key: str = API_KEY) -> TogetherClient:
    # One attempt per poll: the observer's own cadence is under test, not the client's retries.
    return TogetherClient(
        api_key,
        base_url=BASE_URL,
        retry=RetryPolicy(attempts=1),
        transport=httpx.MockTransport(together),
    )


@dataclass
class RecordingPolicy(PollPolicy):
    """A PollPolicy that remembers each (changing, interval) it was asked for."""

    decisions: list[tuple[bool, float]] = field(default_factory=list)

    def interval(self, changing: bool) -> float:
        seconds = super().interval(changing)
        self.decisions.append((changing, seconds))
        return seconds


def observer_on(
    together: FakeTogether, policy: PollPolicy | None = None, **fields: Any
) -> FleetObserver:
    return FleetObserver(
        client_for(together),
        policy or RecordingPolicy(fast_seconds=FAST, slow_seconds=SLOW),
        key_fingerprint(API_KEY),
        **fields,
    )


@contextlib.asynccontextmanager
async def running(observer: FleetObserver) -> AsyncIterator[asyncio.Task[None]]:
    """The observer's poll loop as a task, cancelled (and its client closed) on the way out."""
    task = asyncio.create_task(observer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await observer.client.aclose()


def decisions(observer: FleetObserver) -> list[tuple[bool, float]]:
    assert isinstance(observer.policy, RecordingPolicy)
    return observer.policy.decisions


# --- snapshots -------------------------------------------------------------------------------
