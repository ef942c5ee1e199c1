"""The fleet observer: one List per poll interval per API key, fast while anything changes.

The client runs on ``httpx.MockTransport`` that counts and timestamps List requests. Cadence
tests use a tiny fast interval and a huge slow one, so "polled slowly" means "did not poll
again at all" and "polled fast" means "polled several times within seconds": every timing
assertion is a lower bound or an eventually-with-a-generous-deadline, never a tight window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support import async_test as support_async_test
from together_operator.controller.fleet import (
    Fleet,
    FleetObserver,
    PollPolicy,
    Snapshot,
    key_fingerprint,
)
from together_operator.together.client import RetryPolicy, TogetherClient
from together_operator.together.errors import RateLimited, ServerError
from together_operator.together.models import ClusterStatus, GPUClusterInfo

API_KEY = "tgp_v1_FLEET-SECRET-5b2e8d40-never-log-me"
OTHER_KEY = "tgp_v1_FLEET-SECRET-9a61c3f7-also-private"
BASE_URL = "http://together.test"
TEST_TIMEOUT_SECONDS = 15.0
FAST = 0.01
SLOW = 60.0  # never elapses within a test: a second poll means the observer did not wait it
QUIET_WINDOW = 0.3  # how long "no further poll" is watched for


async_test = support_async_test(TEST_TIMEOUT_SECONDS)


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds; fail after ``within``."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


def cluster(cluster_id: str, name: str = "train", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cluster_id": cluster_id,
        "cluster_name": name,
        "region": "us-central-8",
        "status": ClusterStatus.READY,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
    }
    body.update(overrides)
    return body


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


@async_test
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


@async_test
async def test_snapshot_named_filters_by_cluster_name() -> None:
    together = FakeTogether(always(cluster("c-1", "a"), cluster("c-2", "b"), cluster("c-3", "a")))
    observer = observer_on(together)
    snapshot = await observer.refresh()
    await observer.client.aclose()
    assert sorted(c.cluster_id for c in snapshot.named("a")) == ["c-1", "c-3"]
    assert [c.cluster_id for c in snapshot.named("b")] == ["c-2"]
    assert snapshot.named("nobody") == []


@async_test
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


def test_poll_policy_is_fast_while_changing_and_slow_with_jitter_when_stable() -> None:
    policy = PollPolicy(fast_seconds=5.0, slow_seconds=100.0, jitter=0.2)
    assert policy.interval(changing=True) == 5.0
    stable = [policy.interval(changing=False) for _ in range(200)]
    assert all(80.0 <= seconds <= 120.0 for seconds in stable)
    assert len(set(stable)) > 1  # jittered: a fleet of operators does not poll in lockstep


def test_poll_policy_without_jitter_is_exactly_the_slow_interval() -> None:
    assert PollPolicy(fast_seconds=5.0, slow_seconds=100.0, jitter=0.0).interval(False) == 100.0


# --- the poll loop's cadence -----------------------------------------------------------------


@async_test
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
@async_test
async def test_a_managed_cluster_changing_polls_fast(changing_cluster: dict[str, Any]) -> None:
    together = FakeTogether(always(cluster("c-1"), changing_cluster))
    observer = observer_on(together)
    observer.track("c-2")
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
@async_test
async def test_slow_polling_for_what_can_last_long_or_is_not_ours(
    listed: dict[str, Any], tracked: str
) -> None:
    together = FakeTogether(always(cluster("c-1"), listed))
    observer = observer_on(together)
    observer.track(tracked)
    async with running(observer):
        await until(lambda: bool(decisions(observer)), "the first poll")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1
    assert [changing for changing, _ in decisions(observer)] == [False]


@async_test
async def test_polling_slows_down_once_every_cluster_is_ready() -> None:
    def answer(index: int) -> httpx.Response:
        status = ClusterStatus.INSTALLING_DRIVERS if index < 3 else ClusterStatus.READY
        return listing(cluster("c-1", status=status))

    together = FakeTogether(answer)
    observer = observer_on(together)
    observer.track("c-1")
    async with running(observer):
        await until(lambda: together.count >= 4, "four polls")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 4
    assert [changing for changing, _ in decisions(observer)] == [True, True, True, False]


@async_test
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


@async_test
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


@async_test
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


@async_test
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


@async_test
async def test_rate_limited_poll_records_the_error() -> None:
    together = FakeTogether(lambda index: failing(429, **{"Retry-After": "60"}))
    observer = observer_on(together)
    async with running(observer):
        await until(lambda: observer.error is not None, "the 429 to be recorded")
        await asyncio.sleep(QUIET_WINDOW)
        assert together.count == 1  # still waiting out the Retry-After
    assert isinstance(observer.error, RateLimited)
    assert observer.error.retry_after == 60.0


@async_test
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


@async_test
async def test_error_backoff_is_capped() -> None:
    together = FakeTogether(lambda index: failing(502))
    policy = RecordingPolicy(fast_seconds=0.04, slow_seconds=SLOW, max_error_backoff=0.05)
    observer = observer_on(together, policy)
    async with running(observer):
        # Uncapped, ten polls would take 0.08 + 0.16 + ... > 40 s; capped, about half a second.
        await until(lambda: together.count >= 10, "ten failed polls", within=8.0)


@async_test
async def test_polling_survives_errors_and_recovers() -> None:
    together = FakeTogether(
        lambda index: (
            failing(503)
            if index < 2
            else listing(cluster("c-1", status=ClusterStatus.INSTALLING_DRIVERS))
        )
    )
    observer = observer_on(together)
    observer.track("c-1")
    async with running(observer):
        await until(lambda: together.count >= 5, "polls after recovery")
        assert observer.error is None
        assert observer.snapshot is not None
        assert list(observer.snapshot.clusters) == ["c-1"]


@pytest.mark.parametrize(
    "unreadable",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, json={"clusters": [{"cluster_id": "no-name-or-status"}]}),
    ],
    ids=["not-json", "not-a-cluster-list"],
)
@async_test
async def test_polling_survives_an_answer_it_cannot_read(unreadable: httpx.Response) -> None:
    body = unreadable.content

    def answer(index: int) -> httpx.Response:
        if index == 0:
            return httpx.Response(200, headers=unreadable.headers, content=body)
        return listing(cluster("c-1", status=ClusterStatus.WAITING_FOR_SUBNET))

    together = FakeTogether(answer)
    observer = observer_on(together)
    observer.track("c-1")
    async with running(observer) as task:
        await until(lambda: together.count >= 3 or task.done(), "polls after the bad answer")
        assert not task.done()  # the loop is still alive
    assert observer.snapshot is not None
    assert list(observer.snapshot.clusters) == ["c-1"]


# --- the first snapshot ----------------------------------------------------------------------


@async_test
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


@async_test
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


@async_test
async def test_first_snapshot_waits_for_the_first_list() -> None:
    together = FakeTogether(always(cluster("c-1"), cluster("c-2")))
    observer = observer_on(together)
    async with running(observer):
        snapshot = await observer.first_snapshot(wait_seconds=5.0)
    assert snapshot is not None
    assert sorted(snapshot.clusters) == ["c-1", "c-2"]


@async_test
async def test_first_snapshot_returns_the_current_one_without_listing_again() -> None:
    together = FakeTogether(always(cluster("c-1")))
    observer = observer_on(together)
    refreshed = await observer.refresh()
    assert await observer.first_snapshot(wait_seconds=5.0) is refreshed
    await observer.client.aclose()
    assert together.count == 1


# --- the fleet: one observer per API key -----------------------------------------------------


@dataclass
class FleetFixture:
    """A Fleet whose clients talk to one fake Together per API key."""

    together: dict[str, FakeTogether] = field(default_factory=dict)
    clients: dict[str, list[TogetherClient]] = field(default_factory=dict)

    def client_factory(self, api_key: str) -> TogetherClient:
        together = self.together.setdefault(api_key, FakeTogether(always(cluster("c-1"))))
        client = client_for(together, api_key)
        self.clients.setdefault(api_key, []).append(client)
        return client

    def fleet(self, answer: Answer | None = None) -> Fleet:
        if answer is not None:
            for key in (API_KEY, OTHER_KEY):
                self.together[key] = FakeTogether(answer)
        return Fleet(self.client_factory, RecordingPolicy(fast_seconds=FAST, slow_seconds=SLOW))


def observer_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("fleet-observer-")]


@async_test
async def test_fleet_has_one_observer_and_one_list_per_api_key() -> None:
    fixture = FleetFixture()
    fleet = fixture.fleet()
    try:
        first = fleet.observer_for(API_KEY)
        assert fleet.observer_for(API_KEY) is first
        other = fleet.observer_for(OTHER_KEY)
        assert other is not first
        assert fleet.observer_for(OTHER_KEY) is other
        assert {k: len(c) for k, c in fixture.clients.items()} == {API_KEY: 1, OTHER_KEY: 1}
        assert len(observer_tasks()) == 2

        await until(
            lambda: all(fixture.together[k].count == 1 for k in (API_KEY, OTHER_KEY)),
            "one List per key",
        )
        await asyncio.sleep(QUIET_WINDOW)
        assert fixture.together[API_KEY].count == 1  # stable: no more Lists
        assert fixture.together[OTHER_KEY].count == 1
        assert fixture.together[API_KEY].keys == [API_KEY]  # each key lists with its own key
        assert fixture.together[OTHER_KEY].keys == [OTHER_KEY]
        assert first.snapshot is not None
        assert other.snapshot is not None
    finally:
        await fleet.close()


def test_key_fingerprint_is_short_stable_distinct_and_never_the_key() -> None:
    fingerprint = key_fingerprint(API_KEY)
    assert fingerprint == key_fingerprint(API_KEY)
    assert fingerprint != key_fingerprint(OTHER_KEY)
    assert len(fingerprint) == 12
    assert all(ch in "0123456789abcdef" for ch in fingerprint)
    assert fingerprint not in API_KEY
    for part in API_KEY.split("-"):
        assert part not in fingerprint


@async_test
async def test_fleet_names_observers_and_tasks_by_fingerprint_never_by_key() -> None:
    fleet = FleetFixture().fleet()
    try:
        observer = fleet.observer_for(API_KEY)
        assert observer.fingerprint == key_fingerprint(API_KEY)
        [task] = observer_tasks()
        assert task.get_name() == f"fleet-observer-{key_fingerprint(API_KEY)}"
        assert "SECRET" not in task.get_name()
        assert "SECRET" not in repr(observer)
    finally:
        await fleet.close()


def test_failed_polls_are_logged_by_fingerprint_never_by_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @async_test
    async def scenario() -> None:
        fixture = FleetFixture()
        fleet = fixture.fleet(lambda index: failing(401))
        try:
            fleet.observer_for(API_KEY)
            await until(lambda: fixture.together[API_KEY].count >= 2, "two failed polls")
        finally:
            await fleet.close()

    with caplog.at_level(logging.WARNING, logger="together_operator.controller.fleet"):
        scenario()
    assert any(key_fingerprint(API_KEY) in record.getMessage() for record in caplog.records)
    logged = caplog.text + "".join(record.getMessage() for record in caplog.records)
    assert "SECRET" not in logged


@async_test
async def test_fleet_close_cancels_every_observer_and_closes_every_client() -> None:
    fixture = FleetFixture()
    fleet = fixture.fleet()
    fleet.observer_for(API_KEY)
    fleet.observer_for(OTHER_KEY)
    await until(
        lambda: all(fixture.together[k].count == 1 for k in (API_KEY, OTHER_KEY)), "first Lists"
    )
    tasks = observer_tasks()
    assert len(tasks) == 2

    await fleet.close()

    assert all(task.done() for task in tasks)  # ended (cancelled, or stopped by its flag)
    assert observer_tasks() == []
    for clients in fixture.clients.values():
        for client in clients:
            with pytest.raises(RuntimeError, match="closed"):
                await client.list_clusters()
    assert {k: t.count for k, t in fixture.together.items()} == {API_KEY: 1, OTHER_KEY: 1}

    # A closed fleet forgets its observers: using it again starts a fresh one.
    again = fleet.observer_for(API_KEY)
    try:
        assert len(fixture.clients[API_KEY]) == 2
        assert again.client is fixture.clients[API_KEY][1]
    finally:
        await fleet.close()


@async_test
async def test_fleet_close_while_a_poll_is_in_flight_does_not_hang() -> None:
    gate = asyncio.Event()

    async def never_answers(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return listing()

    fleet = Fleet(
        lambda key: TogetherClient(
            key, base_url=BASE_URL, transport=httpx.MockTransport(never_answers)
        ),
        PollPolicy(fast_seconds=FAST, slow_seconds=SLOW),
    )
    observer = fleet.observer_for(API_KEY)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(fleet.close(), timeout=5.0)
    assert observer.snapshot is None
    assert observer_tasks() == []


def test_observer_of_a_key_nobody_uses_any_more_is_retired() -> None:
    async def scenario() -> None:
        now = [0.0]
        clients: list[TogetherClient] = []

        def factory(key: str) -> TogetherClient:
            client = TogetherClient(
                key,
                base_url="http://127.0.0.1:9",
                transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"clusters": []})),
            )
            clients.append(client)
            return client

        fleet = Fleet(factory, PollPolicy(60, 60), idle_seconds=100, _clock=lambda: now[0])
        old = fleet.observer_for("rotated-away-key")
        now[0] = 50
        fleet.observer_for("current-key")
        now[0] = 120  # the old key idle for 120 s, the current one for 70 s
        current = fleet.observer_for("current-key")
        await asyncio.sleep(0)
        assert fleet.observer_for("current-key") is current
        assert fleet.observer_for("rotated-away-key") is not old  # a new one when used again
        await fleet.close()
        assert clients[0].is_closed

    asyncio.run(scenario())


@async_test
async def test_close_right_after_hurry_does_not_hang() -> None:
    # On Python 3.11 wait_for() can swallow a cancel that races with the wake event;
    # the observer's stop flag ends the loop regardless.
    fixture = FleetFixture()
    fleet = fixture.fleet()
    observer = fleet.observer_for(API_KEY)
    await observer.first_snapshot(5)
    await asyncio.sleep(0.1)
    observer.hurry()
    await asyncio.wait_for(fleet.close(), timeout=3)
    assert observer_tasks() == []
