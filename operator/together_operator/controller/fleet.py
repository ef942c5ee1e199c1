"""Observe every Together cluster with one List per poll interval per API key (and project).

Each GPUCluster reads its cluster from the latest snapshot of its observer instead of calling
Together itself, so Together traffic does not grow with the number of objects. Each also
registers its *interest* (the cluster ID it manages, or the name it is creating under), so
that after a List only the objects whose cluster changed are woken: the operator's work grows
with change, not with objects times polls.

The observer polls fast while a watched cluster is changing (or an action just happened) and
slowly, with jitter, when everything is stable; errors back off, honouring Retry-After. Only
one List is in flight per observer: a caller that needs a fresh List joins the next one, so a
thousand objects applied at once cost a handful of Lists, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from together_operator.gpucluster.plan import is_transitional
from together_operator.together.backoff import Backoff, BackoffPolicy
from together_operator.together.client import TogetherClient
from together_operator.together.errors import RetryLater, TogetherError
from together_operator.together.models import GPUClusterInfo

logger = logging.getLogger(__name__)
#: Shutdown waits this long for observers to end (they end at once; this is a bound).
CLOSE_TIMEOUT_SECONDS = 5.0

WakeFn = Callable[[Iterable[str]], None]  # the UIDs of GPUClusters to wake


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible name for an API key, safe for logs and metrics."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Snapshot:
    """What one List returned: readable clusters by ID, and entries set aside as unreadable."""

    clusters: Mapping[str, GPUClusterInfo]
    #: Wall-clock time the answer arrived.
    fetched_at: float
    #: Monotonic time the List was sent: what "fresh enough" is measured against.
    started_at: float = 0.0
    #: cluster_id -> cluster_name of entries that did not fit the wire model.
    unreadable: Mapping[str, str] = field(default_factory=dict)

    def named(self, cluster_name: str) -> list[GPUClusterInfo]:
        return [c for c in self.clusters.values() if c.cluster_name == cluster_name]

    def unreadable_named(self, cluster_name: str) -> bool:
        return cluster_name in self.unreadable.values()


def changed_clusters(before: Snapshot | None, after: Snapshot) -> set[str]:
    """IDs of the clusters that appeared, disappeared or changed between two snapshots."""
    if before is None:
        return set(after.clusters) | set(after.unreadable)
    ids = set(before.clusters) | set(after.clusters)
    changed = {i for i in ids if before.clusters.get(i) != after.clusters.get(i)}
    return changed | (set(before.unreadable) ^ set(after.unreadable))


@dataclass
class Interest:
    """Which GPUCluster (by UID) cares about which cluster ID or cluster name."""

    by_cluster: dict[str, set[str]] = field(default_factory=dict)
    by_name: dict[str, set[str]] = field(default_factory=dict)
    of: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def register(self, uid: str, cluster_id: str | None, cluster_name: str | None) -> None:
        if self.of.get(uid) == (cluster_id, cluster_name):
            return
        self.forget(uid)
        self.of[uid] = (cluster_id, cluster_name)
        if cluster_id is not None:
            self.by_cluster.setdefault(cluster_id, set()).add(uid)
        if cluster_name is not None:
            self.by_name.setdefault(cluster_name, set()).add(uid)

    def forget(self, uid: str) -> None:
        cluster_id, cluster_name = self.of.pop(uid, (None, None))
        for index, key in ((self.by_cluster, cluster_id), (self.by_name, cluster_name)):
            if key is not None and key in index:
                index[key].discard(uid)
                if not index[key]:
                    del index[key]

    def woken_by(self, changed: set[str], before: Snapshot | None, after: Snapshot) -> set[str]:
        uids: set[str] = set()
        for cluster_id in changed:
            uids |= self.by_cluster.get(cluster_id, set())
            for snapshot in (before, after):
                if snapshot is None:
                    continue
                cluster = snapshot.clusters.get(cluster_id)
                name = cluster.cluster_name if cluster else snapshot.unreadable.get(cluster_id)
                if name is not None:
                    uids |= self.by_name.get(name, set())
        return uids


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
    """Polls ``cluster_listing`` for one API key (and project) and keeps the latest snapshot."""

    client: TogetherClient
    policy: PollPolicy
    fingerprint: str
    project_id: str | None = None
    wake: WakeFn = lambda uids: None
    snapshot: Snapshot | None = None
    error: TogetherError | None = None
    interest: Interest = field(default_factory=Interest)
    _hurry_until: float = 0.0
    _stopping: bool = False
    _backoff: Backoff | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _fresh: asyncio.Condition = field(default_factory=asyncio.Condition)
    _listing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _clock: Callable[[], float] = time.monotonic

    def hurry(self, seconds: float = 15.0) -> None:
        """Poll fast for a while: something was just changed at Together. Short, because a
        change Together acts on shows as a transitional state, which keeps polling fast."""
        self._hurry_until = max(self._hurry_until, self._clock() + seconds)
        self._wake.set()

    def watch(self, uid: str, *, cluster_id: str | None, cluster_name: str | None) -> None:
        """The GPUCluster ``uid`` cares about ``cluster_id`` (or, before it has one, the
        cluster named ``cluster_name``): wake it when that changes."""
        self.interest.register(uid, cluster_id, cluster_name)

    def forget(self, uid: str) -> None:
        self.interest.forget(uid)

    @property
    def watched(self) -> bool:
        return bool(self.interest.of)

    def _changing(self, snapshot: Snapshot) -> bool:
        if self._clock() < self._hurry_until:
            return True
        return any(
            is_transitional(cluster)
            for cluster_id, cluster in snapshot.clusters.items()
            if cluster_id in self.interest.by_cluster
        )

    def remember(self, cluster: GPUClusterInfo) -> None:
        """Fold a cluster returned by a create/update into the snapshot right away."""
        if self.snapshot is not None:
            clusters = {**self.snapshot.clusters, cluster.cluster_id: cluster}
            unreadable = {
                k: v for k, v in self.snapshot.unreadable.items() if k != cluster.cluster_id
            }
            self.snapshot = Snapshot(
                clusters, self.snapshot.fetched_at, self.snapshot.started_at, unreadable
            )

    async def refresh(self, newer_than: float | None = None) -> Snapshot:
        """A snapshot from a List sent after ``newer_than`` (monotonic; by default now).

        One List at a time: a caller whose need the List in flight already meets shares
        its answer, so a burst of callers costs a few Lists, not one each."""
        wanted = self._clock() if newer_than is None else newer_than
        async with self._listing:
            if self.snapshot is not None and self.snapshot.started_at >= wanted:
                return self.snapshot
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
            try:
                async with self._listing:
                    started = self._clock()
                    snapshot = await self._poll_once()
                backoff.succeeded()
                # From List to List, not from answer to List: a List that takes a second at
                # a thousand clusters must not stretch the fast interval past a phase that
                # lasts exactly that long.
                elapsed = self._clock() - started
                delay = max(0.0, self.policy.interval(self._changing(snapshot)) - elapsed)
                hurried = max(0.0, self.policy.fast_seconds - elapsed)
            except RetryLater as error:
                delay = hurried = backoff.failed(error.retry_after)
            except TogetherError:
                delay = hurried = backoff.failed()
            except Exception:
                # A List the client could not read must not end the loop: every GPUCluster
                # of this key relies on its snapshots.
                logger.exception("listing clusters (key %s) failed", self.fingerprint)
                delay = hurried = backoff.failed()
            await self._rest(delay, hurried)

    async def _rest(self, delay: float, hurried: float) -> None:
        """Wait ``delay`` seconds before the next List; :meth:`stop` ends the wait, and
        :meth:`hurry` cuts it to ``hurried`` (the fast interval from the last List, or an
        error's backoff) — not to nothing: a burst of a thousand creates, each of which
        hurries, must not become back-to-back Lists of the whole account."""
        began = time.monotonic()  # the waits below are in real time, whatever _clock is
        timeout = delay
        while not self._stopping and timeout > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            waited = time.monotonic() - began
            if self._clock() < self._hurry_until:
                timeout = min(delay, hurried) - waited
            else:
                timeout = delay - waited

    async def _poll_once(self) -> Snapshot:
        """One List (the caller holds ``_listing``); wakes whoever it concerns."""
        started = self._clock()
        before, was_failing = self.snapshot, self.error is not None
        try:
            listing = await self.client.cluster_listing(self.project_id)
        except TogetherError as error:
            self.error = error
            logger.warning("listing clusters (key %s) failed: %s", self.fingerprint, error)
            async with self._fresh:
                self._fresh.notify_all()
            if not was_failing:
                self.wake(list(self.interest.of))  # everyone shows that listing fails
            raise
        self.error = None
        after = self.snapshot = Snapshot(
            {c.cluster_id: c for c in listing.clusters},
            time.time(),
            started,
            {u.cluster_id: u.cluster_name for u in listing.unreadable if u.cluster_id},
        )
        if listing.unreadable:
            logger.warning(
                "listing clusters (key %s): %d entries do not fit the contract and are set aside",
                self.fingerprint,
                len(listing.unreadable),
            )
        async with self._fresh:
            self._fresh.notify_all()
        if was_failing or before is None:  # the first answer, or the first after failures
            self.wake(list(self.interest.of))
        else:
            self.wake(self.interest.woken_by(changed_clusters(before, after), before, after))
        return after


ClientFactory = Callable[[str], TogetherClient]
ObserverKey = tuple[str, str | None]  # (key fingerprint, project ID)


@dataclass
class Fleet:
    """One observer (and one client) per API key and project, started on first use and
    retired once no GPUCluster has watched through it for ``idle_seconds`` (a rotated or
    mistyped key must not be polled forever)."""

    client_factory: ClientFactory
    policy: PollPolicy
    idle_seconds: float = 900.0
    wake: WakeFn = lambda uids: None
    _observers: dict[ObserverKey, FleetObserver] = field(default_factory=dict)
    _tasks: dict[ObserverKey, asyncio.Task[None]] = field(default_factory=dict)
    _last_used: dict[ObserverKey, float] = field(default_factory=dict)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _clock: Callable[[], float] = time.monotonic

    def observer_for(self, api_key: str, project_id: str | None = None) -> FleetObserver:
        key = (key_fingerprint(api_key), project_id)
        now = self._clock()
        self._last_used[key] = now
        self._retire_idle(now)
        observer = self._observers.get(key)
        if observer is None:
            observer = FleetObserver(
                self.client_factory(api_key), self.policy, key[0], project_id, self.wake
            )
            self._observers[key] = observer
            name = f"fleet-observer-{key[0]}" + (f"-{project_id}" if project_id else "")
            self._tasks[key] = asyncio.create_task(observer.run(), name=name)
        return observer

    def forget(self, uid: str) -> None:
        """The GPUCluster ``uid`` is gone: no observer wakes it any more."""
        for observer in self._observers.values():
            observer.forget(uid)

    def _retire_idle(self, now: float) -> None:
        for key, observer in list(self._observers.items()):
            if observer.watched:
                self._last_used[key] = now
                continue
            if now - self._last_used.get(key, now) <= self.idle_seconds:
                continue
            self._last_used.pop(key, None)
            task = self._tasks.pop(key, None)
            del self._observers[key]
            observer.stop()
            if task is not None:
                task.cancel()
            closing = asyncio.create_task(observer.client.aclose())
            self._retiring.add(closing)  # keep a reference until it is done
            closing.add_done_callback(self._retiring.discard)
            logger.info("stopped observing Together for unused key %s", key[0])

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
