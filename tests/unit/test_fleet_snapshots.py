"""The fleet observer's snapshots: what one List holds, remembered results, the first one."""

from __future__ import annotations

import time

import pytest

from tests.unit.fleet_support import (
    TEST_TIMEOUT_SECONDS,
    FakeTogether,
    always,
    cluster,
    failing,
    listing,
    observer_on,
    running,
)
from together_operator.controller.fleet import Snapshot
from together_operator.together.errors import ServerError
from together_operator.together.models import ClusterStatus, GPUClusterInfo

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


async def test_refresh_lists_once_and_indexes_clusters_by_id() -> None:
    together = FakeTogether(always(cluster("c-1", "a"), cluster("c-2", "b"), cluster("c-3", "a")))
    observer = observer_on(together)
    before = time.time()
    snapshot = await observer.refresh()
    after = time.time()
    await observer.client.aclose()
    assert together.count == 1
    assert observer.snapshot is snapshot
    assert observer.error is None
    assert sorted(snapshot.clusters) == ["c-1", "c-2", "c-3"]
    assert snapshot.clusters["c-2"].cluster_name == "b"
    assert before <= snapshot.fetched_at <= after


async def test_snapshot_named_filters_by_cluster_name() -> None:
    together = FakeTogether(always(cluster("c-1", "a"), cluster("c-2", "b"), cluster("c-3", "a")))
    observer = observer_on(together)
    snapshot = await observer.refresh()
    await observer.client.aclose()
    assert sorted(c.cluster_id for c in snapshot.named("a")) == ["c-1", "c-3"]
    assert [c.cluster_id for c in snapshot.named("b")] == ["c-2"]
    assert snapshot.named("nobody") == []


async def test_refresh_failure_raises_records_the_error_and_keeps_the_last_snapshot() -> None:
    answers = [listing(cluster("c-1")), failing(503), listing(cluster("c-2"))]
    together = FakeTogether(lambda index: answers[index])
    observer = observer_on(together)
    first = await observer.refresh()
    with pytest.raises(ServerError):
        await observer.refresh()
    assert isinstance(observer.error, ServerError)
    assert observer.snapshot is first
    second = await observer.refresh()
    await observer.client.aclose()
    assert observer.error is None  # a good List clears the error
    assert list(second.clusters) == ["c-2"]


def test_remember_folds_a_cluster_into_the_snapshot_keeping_its_time() -> None:
    together = FakeTogether(always())
    observer = observer_on(together)
    original = Snapshot(
        {
            "c-1": GPUClusterInfo.model_validate(cluster("c-1", "a", status="Scheduled")),
            "c-2": GPUClusterInfo.model_validate(cluster("c-2", "b")),
        },
        fetched_at=1234.5,
    )
    observer.snapshot = original
    observer.remember(GPUClusterInfo.model_validate(cluster("c-1", "a", num_gpus=16)))
    observer.remember(GPUClusterInfo.model_validate(cluster("c-9", "new")))
    folded = observer.snapshot
    assert folded is not None
    assert sorted(folded.clusters) == ["c-1", "c-2", "c-9"]
    assert folded.clusters["c-1"].num_gpus == 16
    assert folded.clusters["c-1"].status == ClusterStatus.READY
    assert [c.cluster_id for c in folded.named("new")] == ["c-9"]
    assert folded.fetched_at == 1234.5  # remembering is not listing
    assert original.clusters["c-1"].num_gpus == 8  # the old snapshot is left as it was
    assert "c-9" not in original.clusters
    assert together.count == 0


def test_remember_before_any_list_leaves_no_partial_snapshot() -> None:
    observer = observer_on(FakeTogether(always()))
    observer.remember(GPUClusterInfo.model_validate(cluster("c-1")))
    assert observer.snapshot is None


# --- poll policy -----------------------------------------------------------------------------


async def test_first_snapshot_is_none_and_error_is_set_when_the_api_keeps_failing() -> None:
    together = FakeTogether(lambda index: failing(500))
    observer = observer_on(together)
    async with running(observer):
        started = time.monotonic()
        snapshot = await observer.first_snapshot(wait_seconds=5.0)
        waited = time.monotonic() - started
    assert snapshot is None
    assert isinstance(observer.error, ServerError)
    assert waited < 4.0  # it gives up on the error, not at the end of the wait


async def test_first_snapshot_gives_up_after_its_wait_when_nothing_polls() -> None:
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together)
    started = time.monotonic()
    snapshot = await observer.first_snapshot(wait_seconds=0.1)
    waited = time.monotonic() - started
    await observer.client.aclose()
    assert snapshot is None
    assert waited >= 0.09
    assert together.count == 0


async def test_first_snapshot_waits_for_the_first_list() -> None:
    together = FakeTogether(always(cluster("c-1"), cluster("c-2")))
    observer = observer_on(together)
    async with running(observer):
        snapshot = await observer.first_snapshot(wait_seconds=5.0)
    assert snapshot is not None
    assert sorted(snapshot.clusters) == ["c-1", "c-2"]


async def test_first_snapshot_returns_the_current_one_without_listing_again() -> None:
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together)
    refreshed = await observer.refresh()
    assert await observer.first_snapshot(wait_seconds=5.0) is refreshed
    await observer.client.aclose()
    assert together.count == 1


# --- the fleet: one observer per API key -----------------------------------------------------
