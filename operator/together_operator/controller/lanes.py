"""A concurrency limit with a fast lane: at most ``limit`` calls at once, and a caller in the
urgent lane is let in before every caller waiting in the ordinary one.

Why: when a thousand GPUClusters are applied at once, their status reports queue for the
Kubernetes API by the thousand. The write a create waits on (the intent, recorded before the
POST) must not wait behind them, or every create reaches Together only once the whole burst
has been reported.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator


class Lanes:
    """Like ``asyncio.Semaphore(limit)``, first come first served within each lane."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a limit of {limit} lets nobody in")
        self._free = limit
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ordinary: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._ordinary)

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane = self._urgent if urgent else self._ordinary
        lane.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # already passed over by a release
                    lane.remove(turn)
            raise

    def _release(self) -> None:
        for lane in (self._urgent, self._ordinary):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)  # the slot goes straight to the next in line
                    return
        self._free += 1
