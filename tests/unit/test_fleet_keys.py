"""The fleet: one observer (and one List) per API key, named by fingerprint, closed and
retired cleanly."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.unit.fleet_support import (
    API_KEY,
    BASE_URL,
    FAST,
    OTHER_KEY,
    QUIET_WINDOW,
    SLOW,
    TEST_TIMEOUT_SECONDS,
    Answer,
    FakeTogether,
    RecordingPolicy,
    always,
    client_for,
    cluster,
    failing,
    listing,
    until,
)
from together_operator.controller.fleet import Fleet, PollPolicy, key_fingerprint
from together_operator.together.client import TogetherClient

pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)


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


async def test_failed_polls_are_logged_by_fingerprint_never_by_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixture = FleetFixture()
    fleet = fixture.fleet(lambda index: failing(401))
    with caplog.at_level(logging.WARNING, logger="together_operator.controller.fleet"):
        try:
            fleet.observer_for(API_KEY)
            await until(lambda: fixture.together[API_KEY].count >= 2, "two failed polls")
        finally:
            await fleet.close()
    assert any(key_fingerprint(API_KEY) in record.getMessage() for record in caplog.records)
    logged = caplog.text + "".join(record.getMessage() for record in caplog.records)
    assert "SECRET" not in logged


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


async def test_observer_of_a_key_nobody_uses_any_more_is_retired() -> None:
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
