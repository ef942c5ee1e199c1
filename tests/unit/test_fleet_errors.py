"""The fleet observer under failing Lists: Retry-After, exponential backoff, recovery."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.unit.fleet_support import (
    QUIET_WINDOW,
    SLOW,
    TEST_TIMEOUT_SECONDS,
    FakeTogether,
    RecordingPolicy,
    always,
    cluster,
    decisions,
    failing,
    listing,
    observer_on,
    running,
    until,
)
from together_operator.together.client import _read_listing, _read_listing_bytes
from together_operator.together.errors import RateLimited, ServerError
from together_operator.together.models import ClusterStatus

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


async def test_rate_limited_poll_waits_at_least_retry_after() -> None:
    retry_after = 0.4
    answers = [failing(429, **{"Retry-After": str(retry_after)})]
    together = FakeTogether(
        lambda index: answers[index] if index < len(answers) else listing(cluster("c-1"))
    )
    observer = observer_on(together)
    async with running(observer):
        await until(lambda: together.count >= 2, "the poll after the 429")
    # Without Retry-After the first error backoff would be 2 * FAST = 0.02 s.
    assert together.gaps()[0] >= retry_after * 0.95


async def test_rate_limited_poll_records_the_error() -> None:
    together = FakeTogether(lambda index: failing(429, **{"Retry-After": "60"}))
    observer = observer_on(together)
    async with running(observer):
        await until(lambda: observer.error is not None, "the 429 to be recorded")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1  # still waiting out the Retry-After
    assert isinstance(observer.error, RateLimited)
    assert observer.error.retry_after == 60.0


async def test_repeated_errors_back_off_exponentially() -> None:
    fast = 0.05
    together = FakeTogether(lambda index: failing(500))
    observer = observer_on(together, RecordingPolicy(fast_seconds=fast, slow_seconds=SLOW))
    async with running(observer):
        await until(lambda: together.count >= 4, "four failed polls")
    gaps = together.gaps()
    # Backoff after the n-th consecutive failure is fast * 2**n: 0.1, 0.2, 0.4 s.
    for failures, gap in enumerate(gaps[:3], start=1):
        assert gap >= fast * 2**failures * 0.95, (failures, gaps)
    assert decisions(observer) == []  # errors never reach the success cadence
    assert isinstance(observer.error, ServerError)


async def test_error_backoff_is_capped() -> None:
    together = FakeTogether(lambda index: failing(502))
    policy = RecordingPolicy(fast_seconds=0.04, slow_seconds=SLOW, max_error_backoff=0.05)
    observer = observer_on(together, policy)
    async with running(observer):
        # Uncapped, ten polls would take 0.08 + 0.16 + ... > 40 s; capped, about half a second.
        await until(lambda: together.count >= 10, "ten failed polls", within=8.0)


async def test_polling_survives_errors_and_recovers() -> None:
    together = FakeTogether(
        lambda index: (
            failing(503)
            if index < 2
            else listing(cluster("c-1", status=ClusterStatus.INSTALLING_DRIVERS))
        )
    )
    observer = observer_on(together)
    observer.watch("uid-c-1", cluster_id="c-1", cluster_name=None)
    async with running(observer):
        await until(lambda: together.count >= 5, "polls after recovery")
        assert observer.error is None
        assert observer.snapshot is not None
        assert list(observer.snapshot.clusters) == ["c-1"]


@pytest.mark.parametrize(
    "unreadable",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json={"items": []}),
    ],
    ids=["not-json", "not-a-cluster-list"],
)
async def test_polling_survives_an_answer_it_cannot_read(unreadable: httpx.Response) -> None:
    body = unreadable.content

    def answer(index: int) -> httpx.Response:
        if index == 0:
            return httpx.Response(200, headers=unreadable.headers, content=body)
        return listing(cluster("c-1", status=ClusterStatus.WAITING_FOR_SUBNET))

    together = FakeTogether(answer)
    observer = observer_on(together)
    observer.watch("uid-c-1", cluster_id="c-1", cluster_name=None)
    async with running(observer) as task:
        await until(lambda: together.count >= 3 or task.done(), "polls after the bad answer")
        assert not task.done()  # the loop is still alive
    assert observer.snapshot is not None
    assert list(observer.snapshot.clusters) == ["c-1"]


# --- the first snapshot ----------------------------------------------------------------------


async def test_one_unreadable_cluster_is_set_aside_and_the_others_are_read() -> None:
    odd = {"cluster_id": "c-odd", "cluster_name": "odd", "status": "Ready", "num_gpus": "many"}
    together = FakeTogether(always(cluster("c-1"), odd))
    observer = observer_on(together)
    snapshot = await observer.refresh()
    assert observer.error is None
    assert list(snapshot.clusters) == ["c-1"]
    assert snapshot.unreadable == {"c-odd": "odd"}
    assert snapshot.unreadable_named("odd")
    await observer.client.aclose()


def test_a_list_that_fits_is_read_from_its_bytes_as_entry_by_entry() -> None:
    # The fast path (validated straight from the bytes) and the tolerant one must agree.
    body = {
        "clusters": [
            cluster("c-1", status=ClusterStatus.WAITING_FOR_SUBNET),
            cluster("c-2", name="serve", status=ClusterStatus.READY),
        ]
    }
    fast = _read_listing_bytes(json.dumps(body).encode(), "GPUClusterService_List")
    assert fast == _read_listing(body)
    assert [c.cluster_id for c in fast.clusters] == ["c-1", "c-2"]
    assert not fast.unreadable
