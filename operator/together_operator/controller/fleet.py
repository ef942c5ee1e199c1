"""Observe every Together cluster with one List call per poll interval per API key.

Each GPUCluster reads its cluster from the latest snapshot of its key's observer instead of
calling Together itself, so steady-state API traffic does not grow with the number of
objects. The observer polls fast while any cluster is changing (or an action just happened)
and slowly, with jitter, when everything is stable; errors back off, honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from together_operator.gpucluster.plan import is_transitional
from together_operator.together.backoff import Backoff, BackoffPolicy
from together_operator.together.client import TogetherClient
from together_operator.together.errors import RetryLater, TogetherError
from together_operator.together.models import GPUClusterInfo

logger = logging.getLogger(__name__)
#: Shutdown waits this long for observers to end (they end at once; this is a bound).
CLOSE_TIMEOUT_SECONDS = 5.0
#: How long a cluster stays "managed" after a GPUCluster last looked at it.
TRACKING_SECONDS = 600.0


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for an API key, safe for logs and metrics."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Snapshot:
    """The clusters one List call returned, and when."""

    clusters: dict[str, GPUClusterInfo]
    fetched_at: float  # wall-clock seconds

    def named(self, cluster_name: str) -> list[GPUClusterInfo]:
        return [c for c in self.clusters.values() if c.cluster_name == cluster_name]


@dataclass
class PollPolicy:
    fast_seconds: float
    slow_seconds: float
    jitter: float = 0.2
    max_error_backoff: float = 300.0

    def interval(self, changing: bool) -> float:
        if changing:
            return self.fast_seconds
        return self.slow_seconds * random.uniform(1 - self.jitter, 1 + self.jitter)

    def error_backoff(self) -> Backoff:
        """The backoff of a failing List: from twice the fast interval up to the cap."""
        return Backoff(BackoffPolicy(base=self.fast_seconds * 2.0, cap=self.max_error_backoff))


@dataclass
class FleetObserver:
    """Polls ``list_clusters`` for one API key and keeps the latest snapshot."""

    client: TogetherClient
    policy: PollPolicy
    fingerprint: str
    snapshot: Snapshot | None = None
    error: TogetherError | None = None
    _hurry_until: float = 0.0
    #: Clusters some GPUCluster manages, with when it last said so: only their changes
    #: make polling fast (an account's unmanaged clusters do not).
    _tracked: dict[str, float] = field(default_factory=dict)
    _stopping: bool = False
    _backoff: Backoff | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _fresh: asyncio.Condition = field(default_factory=asyncio.Condition)
    _clock: Callable[[], float] = time.monotonic

    def hurry(self, seconds: float = 15.0) -> None:
        """Poll fast for a while: something was just changed at Together. Short, because a
        change Together acts on shows as a transitional state, which keeps polling fast."""
        self._hurry_until = max(self._hurry_until, self._clock() + seconds)
        self._wake.set()

    def track(self, cluster_id: str) -> None:
        """A GPUCluster manages ``cluster_id``: poll fast while it is changing."""
        self._tracked[cluster_id] = self._clock()

    def _changing(self, snapshot: Snapshot) -> bool:
        now = self._clock()
        if now < self._hurry_until:
            return True
        for cluster_id, tracked_at in list(self._tracked.items()):
            if now - tracked_at > TRACKING_SECONDS:
                del self._tracked[cluster_id]  # no GPUCluster asked about it for a while
        return any(
            is_transitional(cluster)
            for cluster_id, cluster in snapshot.clusters.items()
            if cluster_id in self._tracked
        )

    def remember(self, cluster: GPUClusterInfo) -> None:
        """Fold a cluster returned by a create/update into the snapshot right away."""
        if self.snapshot is not None:
            clusters = {**self.snapshot.clusters, cluster.cluster_id: cluster}
            self.snapshot = Snapshot(clusters, self.snapshot.fetched_at)

    async def refresh(self) -> Snapshot:
        """List now (outside the cadence): for decisions that must not use stale data."""
        return await self._poll_once()

    async def first_snapshot(self, wait_seconds: float) -> Snapshot | None:
        """The current snapshot, waiting up to ``wait_seconds`` for the first one."""
        if self.snapshot is not None:
            return self.snapshot
        async with self._fresh:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._fresh.wait_for(lambda: self.snapshot is not None or bool(self.error)),
                    wait_seconds,
                )
        return self.snapshot

    def stop(self) -> None:
        """Ask :meth:`run` to end; it does at its next wake-up (set here, so at once)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Poll until :meth:`stop` (or cancelled)."""
        # The flag, not only cancellation: on Python 3.11, wait_for() can swallow a cancel
        # that races with the wake event being set.
        while not self._stopping:
            backoff = self._backoff = self._backoff or self.policy.error_backoff()
            delay = self.policy.fast_seconds
            try:
                snapshot = await self._poll_once()
                backoff.succeeded()
                delay = self.policy.interval(self._changing(snapshot))
            except RetryLater as error:
                delay = backoff.failed(error.retry_after)
            except TogetherError:
                delay = backoff.failed()
            except Exception:
                # A List the client could not read (a body that does not fit the model, say)
                # must not end the loop: every GPUCluster of this key relies on its snapshots.
                logger.exception("listing clusters (key %s) failed", self.fingerprint)
                delay = backoff.failed()
            self._wake.clear()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _poll_once(self) -> Snapshot:
        try:
            clusters = await self.client.list_clusters()
        except TogetherError as error:
            self.error = error
            logger.warning("listing clusters (key %s) failed: %s", self.fingerprint, error)
            async with self._fresh:
                self._fresh.notify_all()
            raise
        self.error = None
        self.snapshot = Snapshot({c.cluster_id: c for c in clusters}, time.time())
        async with self._fresh:
            self._fresh.notify_all()
        return self.snapshot


ClientFactory = Callable[[str], TogetherClient]


@dataclass
class Fleet:
    """One observer (and one client) per API key, started on first use and retired when no
    GPUCluster has used its key for ``idle_seconds`` (a rotated or mistyped key must not be
    polled forever)."""

    client_factory: ClientFactory
    policy: PollPolicy
    idle_seconds: float = 900.0
    _observers: dict[str, FleetObserver] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _last_used: dict[str, float] = field(default_factory=dict)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _clock: Callable[[], float] = time.monotonic

    def observer_for(self, api_key: str) -> FleetObserver:
        fingerprint = key_fingerprint(api_key)
        now = self._clock()
        self._last_used[fingerprint] = now
        self._retire_idle(now)
        observer = self._observers.get(fingerprint)
        if observer is None:
            observer = FleetObserver(self.client_factory(api_key), self.policy, fingerprint)
            self._observers[fingerprint] = observer
            self._tasks[fingerprint] = asyncio.create_task(
                observer.run(), name=f"fleet-observer-{fingerprint}"
            )
        return observer

    def _retire_idle(self, now: float) -> None:
        for fingerprint, used in list(self._last_used.items()):
            if now - used <= self.idle_seconds:
                continue
            del self._last_used[fingerprint]
            task = self._tasks.pop(fingerprint, None)
            observer = self._observers.pop(fingerprint, None)
            if observer is not None:
                observer.stop()
            if task is not None:
                task.cancel()
            if observer is not None:
                closing = asyncio.create_task(observer.client.aclose())
                self._retiring.add(closing)  # keep a reference until it is done
                closing.add_done_callback(self._retiring.discard)
            logger.info("stopped observing Together for unused key %s", fingerprint)

    async def close(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for observer in self._observers.values():
            observer.stop()
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks.values(), timeout=CLOSE_TIMEOUT_SECONDS)
        for observer in self._observers.values():
            await observer.client.aclose()
        self._tasks.clear()
        self._observers.clear()
