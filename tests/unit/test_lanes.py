"""The Kubernetes API's concurrency limit with a fast lane for the writes a create waits on."""

from __future__ import annotations

import asyncio

import pytest

from together_operator.controller.lanes import Lanes

pytestmark = pytest.mark.timeout(10)


async def _hold(
    lanes: Lanes, name: str, log: list[str], release: asyncio.Event, urgent: bool
) -> None:
    async with lanes.slot(urgent=urgent):
        log.append(name)
        await release.wait()


async def test_an_urgent_caller_goes_before_ordinary_ones_already_waiting() -> None:
    lanes, release = Lanes(1), asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(_hold(lanes, "first", log, release, urgent=False))
    await asyncio.sleep(0)
    queued = [
        asyncio.create_task(_hold(lanes, f"report-{n}", log, release, urgent=False))
        for n in range(3)
    ]
    await asyncio.sleep(0)
    intent = asyncio.create_task(_hold(lanes, "intent", log, release, urgent=True))
    await asyncio.sleep(0)
    assert log == ["first"]
    assert lanes.waiting == 4
    release.set()
    await asyncio.gather(first, intent, *queued)
    assert log == ["first", "intent", "report-0", "report-1", "report-2"]


async def test_never_more_than_the_limit_at_once() -> None:
    lanes, inside, most = Lanes(3), 0, 0

    async def call(urgent: bool) -> None:
        nonlocal inside, most
        async with lanes.slot(urgent=urgent):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(call(urgent=n % 4 == 0) for n in range(40)))
    assert most == 3
    assert lanes.waiting == 0


async def test_a_cancelled_waiter_does_not_lose_a_slot() -> None:
    lanes, release = Lanes(1), asyncio.Event()
    log: list[str] = []
    first = asyncio.create_task(_hold(lanes, "first", log, release, urgent=False))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(_hold(lanes, "doomed", log, release, urgent=True))
    later = asyncio.create_task(_hold(lanes, "later", log, release, urgent=False))
    await asyncio.sleep(0)
    doomed.cancel()
    release.set()
    await asyncio.gather(first, later)
    assert doomed.cancelled()
    assert log == ["first", "later"]
    assert lanes.waiting == 0


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    lanes, release = Lanes(1), asyncio.Event()
    waiter: asyncio.Task[None] | None = None

    async def holder() -> None:
        async with lanes.slot():
            await release.wait()
        assert waiter is not None
        waiter.cancel()  # the slot was just handed to it; it has not run yet

    async def wait_for_slot() -> None:
        async with lanes.slot():
            pass

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(wait_for_slot())
    await asyncio.sleep(0)
    release.set()
    await holding
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # Had the slot been lost with the cancelled waiter, this would wait forever.
    await asyncio.wait_for(wait_for_slot(), timeout=1)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="lets nobody in"):
        Lanes(0)
