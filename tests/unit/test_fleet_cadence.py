"""The fleet observer's cadence: fast while a managed cluster changes or after an action,
slow and jittered when everything is stable."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.unit.fleet_support import (
    FAST,
    QUIET_WINDOW,
    SLOW,
    TEST_TIMEOUT_SECONDS,
    FakeTogether,
    RecordingPolicy,
    always,
    cluster,
    decisions,
    listing,
    observer_on,
    running,
    until,
)
from together_operator.controller.fleet import PollPolicy
from together_operator.together.models import ClusterStatus

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


def test_poll_policy_is_fast_while_changing_and_slow_with_jitter_when_stable() -> None:
    policy = PollPolicy(fast_seconds=5.0, slow_seconds=100.0, jitter=0.2)
    assert policy.interval(changing=True) == 5.0
    stable = [policy.interval(changing=False) for _ in range(200)]
    assert all(80.0 <= seconds <= 120.0 for seconds in stable)
    assert len(set(stable)) > 1  # jittered: a fleet of operators does not poll in lockstep


def test_poll_policy_without_jitter_is_exactly_the_slow_interval() -> None:
    assert PollPolicy(fast_seconds=5.0, slow_seconds=100.0, jitter=0.0).interval(False) == 100.0


# --- the poll loop's cadence -----------------------------------------------------------------


async def test_all_clusters_stable_waits_the_slow_interval() -> None:
    together = FakeTogether(always(cluster("c-1"), cluster("c-2", status="Paused")))
    observer = observer_on(together)
    async with running(observer):
        await until(lambda: bool(decisions(observer)), "the first poll")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1
    [(changing, seconds)] = decisions(observer)
    assert changing is False
    assert SLOW * 0.8 <= seconds <= SLOW * 1.2


@pytest.mark.parametrize(
    "changing_cluster",
    [
        cluster("c-2", status=ClusterStatus.WAITING_FOR_DATA_PLANE_NODES),
        cluster("c-2", status=ClusterStatus.DELETING),
        cluster("c-2", status="SomethingNew"),  # not in the enum: tolerated, and changing
    ],
    ids=["provisioning", "deleting", "unknown-status"],
)
async def test_a_managed_cluster_changing_polls_fast(changing_cluster: dict[str, Any]) -> None:
    together = FakeTogether(always(cluster("c-1"), changing_cluster))
    observer = observer_on(together)
    observer.watch("uid-c-2", cluster_id="c-2", cluster_name=None)
    async with running(observer):
        # At the slow interval this would take minutes; fast polling takes milliseconds.
        await until(lambda: together.count >= 6, "six polls")
    assert all(changing for changing, _ in decisions(observer))
    assert all(seconds == FAST for _, seconds in decisions(observer))


@pytest.mark.parametrize(
    ("listed", "tracked"),
    [
        (cluster("c-2", status=ClusterStatus.WAITING_FOR_DATA_PLANE_NODES), "c-1"),
        (cluster("c-2", status="Scheduled"), "c-2"),
        (cluster("c-2", desired_preemptible_gpus=8, allocated_preemptible_gpus=0), "c-2"),
    ],
    ids=["unmanaged-cluster-changing", "scheduled-for-days", "preemptible-shortfall"],
)
async def test_slow_polling_for_what_can_last_long_or_is_not_ours(
    listed: dict[str, Any], tracked: str
) -> None:
    together = FakeTogether(always(cluster("c-1"), listed))
    observer = observer_on(together)
    observer.watch("uid-tracked", cluster_id=tracked, cluster_name=None)
    async with running(observer):
        await until(lambda: bool(decisions(observer)), "the first poll")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1
    assert [changing for changing, _ in decisions(observer)] == [False]


async def test_polling_slows_down_once_every_cluster_is_ready() -> None:
    def answer(index: int) -> httpx.Response:
        status = ClusterStatus.INSTALLING_DRIVERS if index < 3 else ClusterStatus.READY
        return listing(cluster("c-1", status=status))

    together = FakeTogether(answer)
    observer = observer_on(together)
    observer.watch("uid-c-1", cluster_id="c-1", cluster_name=None)
    async with running(observer):
        await until(lambda: together.count >= 4, "four polls")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 4
    assert [changing for changing, _ in decisions(observer)] == [True, True, True, False]


async def test_hurry_wakes_a_slow_wait_and_polls_fast() -> None:
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together)
    async with running(observer):
        await until(lambda: together.count == 1 and bool(decisions(observer)), "the first poll")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1  # stable: waiting the slow interval
        observer.hurry()
        await until(lambda: together.count >= 6, "fast polls after hurry()")
    assert [changing for changing, _ in decisions(observer)][:5] == [False, True, True, True, True]


async def test_hurry_expires_and_polling_slows_down_again() -> None:
    now = [1000.0]
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together, _clock=lambda: now[0])
    observer.hurry(seconds=10.0)
    async with running(observer):
        await until(lambda: together.count >= 3, "fast polls while hurried")
        now[0] += 11.0  # the hurry is over
        await until(lambda: not decisions(observer)[-1][0], "a stable decision")
        settled = together.count
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == settled
    assert decisions(observer)[0][0] is True


async def test_hurry_never_shortens_an_earlier_longer_hurry() -> None:
    now = [1000.0]
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together, _clock=lambda: now[0])
    observer.hurry(seconds=100.0)
    observer.hurry(seconds=1.0)
    now[0] += 50.0
    async with running(observer):
        await until(lambda: together.count >= 3, "fast polls while still hurried")
    assert all(changing for changing, _ in decisions(observer))


async def test_a_slow_list_does_not_stretch_the_fast_interval() -> None:
    """The interval runs from List to List: at a thousand clusters a List takes a while, and
    waiting the whole fast interval after it would miss phases that last that long."""
    observer_clock = [0.0]

    def slow_answer(index: int) -> httpx.Response:
        observer_clock[0] += 0.45  # each List takes 0.45 s of the observer's clock
        return listing(cluster("c-1", status=ClusterStatus.INSTALLING_DRIVERS))

    together = FakeTogether(slow_answer)
    policy = RecordingPolicy(fast_seconds=0.5, slow_seconds=SLOW)
    observer = observer_on(together, policy, _clock=lambda: observer_clock[0])
    observer.watch("uid-c-1", cluster_id="c-1", cluster_name=None)
    async with running(observer):
        # Waiting 0.05 s between Lists, four take well under a second; waiting the whole
        # 0.5 s after each answer, they would take 1.5 s.
        await until(lambda: together.count >= 4, "four polls", within=1.0)


async def test_a_burst_of_hurries_lists_at_the_fast_interval_not_at_once() -> None:
    """A thousand creates each hurry the observer: that must mean "List within the fast
    interval", not a List of the whole account per create."""
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together, RecordingPolicy(fast_seconds=0.3, slow_seconds=SLOW))
    async with running(observer):
        await until(lambda: together.count == 1, "the first poll")
        for _ in range(20):  # 0.2 s of creates, each hurrying
            observer.hurry()
            await asyncio.sleep(0.01)
        await until(lambda: together.count >= 2, "the hurried List")
        assert together.count == 2
    assert together.gaps()[0] >= 0.29  # the fast interval from the first List, not sooner
