"""The reconcile loop for one GPUCluster, top to bottom: validate -> credentials -> observe ->
plan -> act -> publish -> report. Deletion runs the same way through its own planner.

Decisions are made in :mod:`together_operator.gpucluster` (``plan.plan_action`` decides
creates and updates, ``deletion.plan_deletion`` decides deletion); this module only performs
the I/O around them and hands each outcome to the reporter, once per visit.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from pydantic import ValidationError

from together_operator.controller.actions import Actions
from together_operator.controller.credentials import Credentials
from together_operator.controller.fleet import Fleet, FleetObserver, Snapshot
from together_operator.controller.kube import KubeApi
from together_operator.controller.kubeconfig_secret import (
    KubeconfigPublisher,
    delete_owned_secret,
    secret_name_for,
)
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.objects import EventFn, GPUClusterObject, ObjectMemory
from together_operator.controller.records import (
    CLUSTER_ID_ANNOTATION,
    INTENT_ANNOTATION,
    KEY_ANNOTATION,
    Records,
    recorded,
)
from together_operator.controller.reporting import Outcome, Reporter
from together_operator.gpucluster import deletion, plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.gpucluster.status import Verdict
from together_operator.settings import OperatorSettings
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.client import cluster_or_none
from together_operator.together.errors import InvalidResponse, RetryLater, TogetherError

__all__ = [
    "CLUSTER_ID_ANNOTATION",
    "DELETION_RECHECK_SECONDS",
    "INTENT_ANNOTATION",
    "KEY_ANNOTATION",
    "EventFn",
    "GPUClusterObject",
    "ObjectMemory",
    "Reconciler",
]

#: A blocked deletion is looked at again this soon: kopf does not re-run a delete handler
#: on a spec change (such as deletionPolicy: Orphan, the documented way out) before then.
DELETION_RECHECK_SECONDS = 10.0


def _parse_spec(obj: GPUClusterObject, doing: str) -> GPUClusterSpec | plan.Stall:
    try:
        return GPUClusterSpec.model_validate(obj.spec)
    except ValidationError as error:
        return plan.Stall(Reason.INVALID_SPEC, f"{doing}: {error.errors()[0].get('msg')}")


class Reconciler:
    """Reconciles GPUClusters; one instance per operator process."""

    def __init__(
        self,
        kube: KubeApi,
        fleet: Fleet,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._now = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._fleet = fleet
        self._settings = settings
        self._metrics = metrics
        self._grace = datetime.timedelta(seconds=settings.create_grace_seconds)
        self._credentials = Credentials(kube, settings)
        self._actions = Actions(Records(kube), self._now)
        self._publisher = KubeconfigPublisher(kube, recheck_seconds=settings.slow_poll_seconds)
        backoff = BackoffPolicy(base=settings.fast_poll_seconds * 2.0, cap=300.0)
        self._reporter = Reporter(kube, metrics, backoff, self._now)
        self._kube = kube
        self._memories: dict[str, ObjectMemory] = {}
        fleet.wake = self.wake

    async def close(self) -> None:
        await self._fleet.close()

    def memory_of(self, uid: str) -> ObjectMemory:
        """What this process remembers of the GPUCluster ``uid`` (created on first use)."""
        memory = self._memories.get(uid)
        if memory is None:
            memory = self._memories[uid] = ObjectMemory()
        return memory

    def wake(self, uids: Iterable[str]) -> None:
        """Ring the doorbells of these GPUClusters: something they depend on changed."""
        for uid in uids:
            memory = self._memories.get(uid)
            if memory is not None:
                memory.doorbell.set()

    def forget(self, uid: str) -> None:
        """The GPUCluster ``uid`` is gone: drop its memory and interests."""
        self._fleet.forget(uid)
        self._memories.pop(uid, None)

    # --- reconcile -------------------------------------------------------------------------

    async def reconcile(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> float | None:
        """One visit: bring Together one step closer to the spec and report. Returns the
        seconds until the object must be looked at again on its own (None: only when
        something it depends on changes)."""
        self._memories.setdefault(obj.uid, memory)
        async with memory.lock:
            if memory.failure.generation not in (None, obj.generation):
                memory.failure.clear()  # a new spec deserves a fresh attempt
            outcome = await self._reconcile(obj, memory, event)
            await self._reporter.report(obj, memory, outcome, event)
            return plan.revisit_after(
                outcome.verdict.reason,
                backoff_remaining=memory.failure.next_action_at - time.monotonic(),
                grace_remaining=plan.unresolved_create(
                    recorded(obj, memory), self._now(), self._grace
                ),
                recheck_seconds=self._settings.credentials_ttl_seconds,
                foreign_secret_seconds=self._settings.slow_poll_seconds,
            )

    async def _reconcile(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> Outcome:
        spec = _parse_spec(obj, "spec is invalid")
        if isinstance(spec, plan.Stall):
            return Outcome(
                Verdict.stall(replace(spec, message=f"{spec.message}; fix the manifest"))
            )
        observer = await self._observer(obj, spec, memory)
        if isinstance(observer, plan.Stall):
            return Outcome(Verdict.stall(observer))
        was = recorded(obj, memory)
        self._watch(obj, memory, spec, was, observer)
        snapshot = await observer.first_snapshot(self._settings.request_timeout_seconds)
        if snapshot is None:  # the observer backs off on its own: nothing to gate here
            if observer.error is None:
                return Outcome(Verdict.waiting_for_together())
            return Outcome(
                self._reporter.failure(obj, memory, observer.error, event, backoff=False)
            )
        synced_at = snapshot.fetched_at
        try:
            observed = await self._observe(obj, memory, spec, was, observer, snapshot, fresh=False)
            action = self._plan(obj, memory, spec, was, observed)
            if isinstance(action, plan.LookAgain):
                observed = await self._observe(
                    obj, memory, spec, was, observer, snapshot, fresh=True
                )
                action = self._plan(obj, memory, spec, was, observed)
        except TogetherError as error:
            # A failed look (a GET, or a List before a create) backs off like an action.
            failed = self._reporter.failure(obj, memory, error, event, backoff=True)
            return Outcome(failed, synced_at=synced_at)
        try:
            cluster, verdict = await self._actions.perform(obj, memory, action, observer, event)
        except TogetherError as error:
            failed = self._reporter.failure(obj, memory, error, event, backoff=True)
            if observed.cluster is not None and error.heals:
                failed = Verdict.for_cluster(observed.cluster).despite(failed)
                memory.failure.verdict = failed
            return Outcome(failed, observed.cluster, synced_at)
        said = memory.failure.last_error
        if verdict.sync_error is None and said is not None:
            # No exchange this visit: the last one (which failed) is what Synced reports.
            verdict = replace(verdict, sync_error=(Reason(said[0]), said[1]))
        if observer.error is not None:
            verdict = verdict.with_list_error(observer.error)
        cluster = cluster or observed.cluster  # waiting or stalled still shows Together's view
        conflict = await self._publisher.publish(obj.owner, spec, cluster, memory.secret, event)
        return Outcome(verdict.unless_secret_conflict(conflict), cluster, synced_at)

    def _plan(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observed: plan.Observation,
    ) -> plan.Action:
        return plan.plan_action(
            spec,
            namespace=obj.namespace,
            name=obj.name,
            recorded=was,
            observed=observed,
            now=self._now(),
            intent_grace=self._grace,
            attempts=plan.Attempts(
                backing_off=memory.failure.backing_off(time.monotonic()),
                accepted_updates=memory.accepted_updates,
            ),
        )

    async def _observe(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observer: FleetObserver,
        snapshot: Snapshot,
        *,
        fresh: bool,
    ) -> plan.Observation:
        """Together's view of this object's cluster: from the shared List, else by ID (at
        most once per slow poll), or the clusters under its name while it has no ID."""
        cluster_id = plan.cluster_to_observe(spec, was)
        if cluster_id is None:
            if fresh:
                snapshot = await observer.refresh()
            name = plan.desired_cluster_name(spec, obj.namespace, obj.name)
            if snapshot.unreadable_named(name):
                raise InvalidResponse(f"Together lists a cluster named {name!r} it cannot read")
            return plan.Observation(
                same_name=snapshot.named(name), fresh=fresh, key_fingerprint=observer.fingerprint
            )
        if cluster_id in snapshot.unreadable:
            raise InvalidResponse(f"Together lists cluster {cluster_id} but it cannot be read")
        cluster = snapshot.clusters.get(cluster_id)
        now = time.monotonic()
        if cluster is None and plan.worth_looking_up(
            memory.absent_checked_at, now, self._settings.slow_poll_seconds
        ):
            cluster = await cluster_or_none(observer.client, cluster_id)
            memory.absent_checked_at = now if cluster is None else 0.0
            if cluster is not None:
                observer.remember(cluster)
        return plan.Observation(cluster=cluster, fresh=fresh, key_fingerprint=observer.fingerprint)

    def _watch(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observer: FleetObserver,
    ) -> None:
        """Ask ``observer`` to wake this object when its cluster (or, before it has one, the
        cluster under its name) changes; and the previous observer, after a key change, not to."""
        key = (observer.fingerprint, observer.project_id)
        if memory.observer_key not in (None, key):
            self._fleet.forget(obj.uid)
        memory.observer_key = key
        cluster_id = plan.cluster_to_observe(spec, was)
        name = None if cluster_id else plan.desired_cluster_name(spec, obj.namespace, obj.name)
        observer.watch(obj.uid, cluster_id=cluster_id, cluster_name=name)

    async def _observer(
        self,
        obj: GPUClusterObject,
        spec: GPUClusterSpec,
        memory: ObjectMemory,
        *,
        deleting: bool = False,
    ) -> FleetObserver | plan.Stall:
        api_key = await self._credentials.api_key(obj.namespace, spec)
        if isinstance(api_key, plan.Stall):
            if not (deleting and memory.api_key):
                return api_key
            api_key = memory.api_key  # the Secret went first (namespace deletion, say)
        memory.api_key = api_key
        return self._fleet.observer_for(api_key, spec.project_id)

    # --- finalize: delete at Together (or orphan), then let the object go -------------------

    async def finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> float | None:
        """Delete the Together cluster. None when done; else seconds until the next check."""
        async with memory.lock:
            try:
                outcome, recheck = await self._finalize(obj, memory, event)
            except TogetherError as error:
                failed = self._reporter.failure(obj, memory, error, event, backoff=True)
                outcome = Outcome(failed)
                wait = max(memory.failure.next_action_at - time.monotonic(), 1.0)
                honoured = isinstance(error, RetryLater) and error.retry_after
                recheck = wait if honoured else min(wait, DELETION_RECHECK_SECONDS)
            if outcome is not None:
                await self._reporter.report(obj, memory, outcome, event)
            return recheck

    async def _finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> tuple[Outcome | None, float | None]:
        spec = _parse_spec(obj, "cannot delete: the stored spec is invalid")
        if isinstance(spec, plan.Stall):
            hint = "; fix it, or set deletionPolicy: Orphan"
            stall = replace(spec, message=f"{spec.message}{hint}")
            return Outcome(Verdict.stall(stall)), DELETION_RECHECK_SECONDS
        was = recorded(obj, memory)
        action = self._plan_deletion(spec, was, None)
        if isinstance(action, deletion.LookUp):
            observer = await self._observer(obj, spec, memory, deleting=True)
            if isinstance(observer, plan.Stall):
                action = replace(observer, message=f"{observer.message}{deletion.ORPHAN_HINT}")
            else:
                action = await self._look_and_delete(obj, spec, was, action, observer, event)
        match action:
            case deletion.Release(reason, message):
                if reason is not None:
                    event("Normal", reason, message)
                await delete_owned_secret(self._kube, obj.owner, secret_name_for(obj.name, spec))
                self._metrics.forget_cluster(obj.namespace, obj.name)
                self.forget(obj.uid)
                return None, None
            case deletion.DeleteCluster(cluster_id) | deletion.AwaitDeletion(cluster_id):
                memory.failure.clear()
                waiting = f"waiting for Together to finish deleting {cluster_id}"
                return Outcome(Verdict.progressing(Reason.DELETING, waiting)), (
                    self._settings.fast_poll_seconds
                )
            case deletion.AwaitCreate(seconds):
                waiting = (
                    "an earlier create got no answer; checking whether it created a cluster "
                    "before letting this GPUCluster go"
                )
                return Outcome(Verdict.progressing(Reason.CONFIRMING_CREATE, waiting)), seconds
            case plan.Stall():
                return Outcome(Verdict.stall(action)), DELETION_RECHECK_SECONDS
            case deletion.LookUp():
                raise AssertionError("deletion is planned again once Together was looked at")

    async def _look_and_delete(
        self,
        obj: GPUClusterObject,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        lookup: deletion.LookUp,
        observer: FleetObserver,
        event: EventFn,
    ) -> deletion.DeletionAction:
        """Look at Together as the planner asked, plan again, and send the DELETE it wants."""
        if lookup.cluster_id is not None:
            cluster = await cluster_or_none(observer.client, lookup.cluster_id)
            observed = plan.Observation(
                cluster=cluster, fresh=True, key_fingerprint=observer.fingerprint
            )
        else:
            name = plan.desired_cluster_name(spec, obj.namespace, obj.name)
            listed = (await observer.refresh()).named(name)
            observed = plan.Observation(
                same_name=listed, fresh=True, key_fingerprint=observer.fingerprint
            )
        action = self._plan_deletion(spec, was, observed)
        deleted = isinstance(action, deletion.DeleteCluster) and await self._actions.delete(
            action.cluster_id, observer, event
        )
        if isinstance(action, deletion.DeleteCluster) and not deleted:
            # Gone already: what Together said is proof (or not) of the deletion.
            resolved = replace(was, cluster_id=action.cluster_id, create_intent_at=None)
            action = self._plan_deletion(spec, resolved, replace(observed, cluster=None))
        return action

    def _plan_deletion(
        self, spec: GPUClusterSpec, was: plan.Recorded, observed: plan.Observation | None
    ) -> deletion.DeletionAction:
        return deletion.plan_deletion(
            spec, recorded=was, observed=observed, now=self._now(), intent_grace=self._grace
        )
