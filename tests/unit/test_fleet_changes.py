"""The fleet observer wakes only what changed: interest by cluster ID or name, one List at a
time however many objects need a fresh one, everyone on the first answer and on failures."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from tests.unit.fleet_support import (
    API_KEY,
    TEST_TIMEOUT_SECONDS,
    FakeTogether,
    always,
    client_for,
    cluster,
    failing,
    listing,
    observer_on,
)
from together_operator.controller.fleet import (
    Fleet,
    FleetObserver,
    PollPolicy,
    Snapshot,
    changed_clusters,
)
from together_operator.together.client import TogetherClient
from together_operator.together.errors import ServerError
from together_operator.together.models import ClusterStatus, GPUClusterInfo

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


def snapshot(*clusters: GPUClusterInfo, unreadable: dict[str, str] | None = None) -> Snapshot:
    return Snapshot({c.cluster_id: c for c in clusters}, 0.0, 0.0, unreadable or {})


def info(cluster_id: str, **overrides: Any) -> GPUClusterInfo:
    return GPUClusterInfo.model_validate(cluster(cluster_id, **overrides))


def test_changed_clusters_are_the_ones_that_appeared_disappeared_or_differ() -> None:
    before = snapshot(info("c-1"), info("c-2"), info("c-3"))
    after = snapshot(info("c-1"), info("c-2", num_gpus=16), info("c-4"), unreadable={"c-5": "x"})
    assert changed_clusters(before, after) == {"c-2", "c-3", "c-4", "c-5"}
    assert changed_clusters(after, after) == set()


async def test_only_the_objects_whose_cluster_changed_are_woken() -> None:
    answers = [
        listing(cluster("c-1"), cluster("c-2")),
        listing(cluster("c-1"), cluster("c-2", status=ClusterStatus.DEGRADED)),
        listing(cluster("c-1"), cluster("c-2", status=ClusterStatus.DEGRADED)),
    ]
    together = FakeTogether(lambda index: answers[index])
    woken: list[set[str]] = []
    observer = observer_on(together, wake=lambda uids: woken.append(set(uids)))
    observer.watch("uid-1", cluster_id="c-1", cluster_name=None)
    observer.watch("uid-2", cluster_id="c-2", cluster_name=None)
    observer.watch("uid-new", cluster_id=None, cluster_name="not-there-yet")
    for _ in answers:
        await observer.refresh()
    await observer.client.aclose()
    # The first answer wakes everyone; then only uid-2, whose cluster changed; then nobody.
    assert woken == [{"uid-1", "uid-2", "uid-new"}, {"uid-2"}, set()]


async def test_a_cluster_appearing_under_a_watched_name_wakes_its_creator() -> None:
    answers = [listing(), listing(cluster("c-9", name="team-a-train-1f2e"))]
    together = FakeTogether(lambda index: answers[index])
    woken: list[set[str]] = []
    observer = observer_on(together, wake=lambda uids: woken.append(set(uids)))
    observer.watch("uid-creator", cluster_id=None, cluster_name="team-a-train-1f2e")
    observer.watch("uid-other", cluster_id=None, cluster_name="someone-else")
    await observer.refresh()
    await observer.refresh()
    await observer.client.aclose()
    assert woken[-1] == {"uid-creator"}


async def test_a_failing_list_wakes_everyone_once_and_so_does_recovering() -> None:
    answers = [listing(cluster("c-1")), failing(503), failing(503), listing(cluster("c-1"))]
    together = FakeTogether(lambda index: answers[index])
    woken: list[set[str]] = []
    observer = observer_on(together, wake=lambda uids: woken.append(set(uids)))
    observer.watch("uid-1", cluster_id="c-1", cluster_name=None)
    for _ in answers:
        with contextlib.suppress(ServerError):  # the failing Lists raise; that is the point
            await observer.refresh()
    await observer.client.aclose()
    assert woken == [{"uid-1"}, {"uid-1"}, {"uid-1"}]  # first answer, first failure, recovery


class GatedTogether:
    """Answers Lists only once the gate opens, counting them."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.lists = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.lists += 1
        await self.gate.wait()
        return listing(cluster("c-1"))


async def test_a_burst_of_objects_needing_a_fresh_list_shares_a_few_lists() -> None:
    together = GatedTogether()
    client = TogetherClient(
        API_KEY, base_url="http://together.test", transport=httpx.MockTransport(together)
    )
    observer = FleetObserver(client, PollPolicy(60, 60), "fp")
    waiters = [asyncio.ensure_future(observer.refresh()) for _ in range(200)]
    await asyncio.sleep(0.05)  # every one of them is waiting now
    together.gate.set()
    snapshots = await asyncio.gather(*waiters)
    await client.aclose()
    assert all("c-1" in s.clusters for s in snapshots)
    # The first List was in flight before most of them asked; the second serves them all.
    assert together.lists <= 2, f"{together.lists} Lists for 200 objects"


async def test_an_observer_with_watchers_is_never_retired_and_one_without_is() -> None:
    now = [0.0]
    fleet = Fleet(
        lambda key: client_for(FakeTogether(always()), key),
        PollPolicy(60, 60),
        idle_seconds=100,
        _clock=lambda: now[0],
    )
    watched = fleet.observer_for("key-in-use")
    watched.watch("uid-1", cluster_id="c-1", cluster_name=None)
    unused = fleet.observer_for("rotated-away-key")
    now[0] = 500
    assert fleet.observer_for("key-in-use") is watched
    assert fleet.observer_for("rotated-away-key") is not unused
    fleet.forget("uid-1")
    assert not watched.watched
    await fleet.close()
