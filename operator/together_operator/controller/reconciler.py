"""The reconcile loop for one GPUCluster, top to bottom: validate -> credentials -> observe ->
plan -> act -> publish -> report. Deletion runs the same way (:mod:`.finalizer`).

Decisions are made in :mod:`together_operator.gpucluster` (``plan.plan_action`` decides
creates, adoptions and updates, ``deletion.plan_deletion`` decides deletion); this module only
performs the I/O around them and hands each outcome to the reporter, once per visit.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from together_operator.controller.actions import Actions
from together_operator.controller.claims import ClaimIndex, NoClaims
from together_operator.controller.credentials import (
    CREDENTIALS_ROLE,
    KUBECONFIG_ROLE,
    ROLE_LABEL,
    Credentials,
)
from together_operator.controller.finalizer import Finalizer
from together_operator.controller.fleet import Fleet
from together_operator.controller.health_watch import HealthWatch
from together_operator.controller.kube import KubeApi
from together_operator.controller.kubeconfig_secret import KubeconfigPublisher, published_digest
from together_operator.controller.lookout import HeldBack, Lookout
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.objects import EventFn, GPUClusterObject, ObjectMemory
from together_operator.controller.records import Records, StaleObject, recorded
from together_operator.controller.reporting import Outcome, Reporter
from together_operator.gpucluster import addons, plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import AddOnStatus, GPUClusterSpec
from together_operator.gpucluster.status import Verdict
from together_operator.settings import OperatorSettings
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.errors import TogetherError
from together_operator.together.models import GPUClusterInfo

__all__ = ["EventFn", "GPUClusterObject", "ObjectMemory", "Reconciler"]

#: A write refused because the object changed meanwhile is retried this soon (the fresh
#: body arrives through the watch in the meantime).
STALE_RETRY_SECONDS = 0.5
#: A new object waiting for its finalizer is looked at again this soon if nothing wakes it.
FINALIZER_RECHECK_SECONDS = 5.0


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
        self.now = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self.fleet = fleet
        self.settings = settings
        self.metrics = metrics
        self.kube = kube
        self.grace = datetime.timedelta(seconds=settings.create_grace_seconds)
        self.records = Records(kube)
        self.actions = Actions(self.records, self.now)
        self.reporter = Reporter(
            kube, metrics, BackoffPolicy(base=settings.fast_poll_seconds * 2.0, cap=300.0), self.now
        )
        #: Who claims which cluster; the operator's kopf index once the daemons run.
        self.claims: ClaimIndex = NoClaims()
        self.credentials = Credentials(kube, settings)
        self.lookout = Lookout(fleet, self.credentials, settings.slow_poll_seconds)
        self._publisher = KubeconfigPublisher(kube, recheck_seconds=settings.slow_poll_seconds)
        self.health = HealthWatch(
            every_seconds=settings.health_check_seconds,
            while_troubled_seconds=settings.slow_poll_seconds,
        )
        self._memories: dict[str, ObjectMemory] = {}
        self._finalizer = Finalizer(self)
        fleet.wake = self.wake

    async def close(self) -> None:
        await self.fleet.close()
        await self.kube.close()

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
        self.fleet.forget(uid)
        self._memories.pop(uid, None)

    async def secret_changed(self, kind: str, secret: Mapping[str, Any]) -> None:
        """A Secret the operator watches changed: a kubeconfig Secret it publishes (put it
        back if it was deleted or edited) or a credentials Secret it guards (a rotated key
        reaches every object that uses it at once; an unused one is let go)."""
        meta = secret.get("metadata", {})
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        role = (meta.get("labels") or {}).get(ROLE_LABEL)
        if role == KUBECONFIG_ROLE:
            for owner in meta.get("ownerReferences") or []:
                memory = self._memories.get(owner.get("uid", ""))
                if memory is None:
                    continue
                if kind == "DELETED" or published_digest(secret) != memory.secret.digest:
                    memory.secret.digest = None  # not what was published: publish again
                    memory.doorbell.set()
        elif role == CREDENTIALS_ROLE:
            self.credentials.forget(namespace, name)
            users = self.credentials.users.users(namespace, name)
            self.wake(users)
            if not users and kind != "DELETED":
                await self.credentials.release_if_unused(namespace, name, leaving="")

    def adoption_allowed(self, obj: GPUClusterObject, spec: GPUClusterSpec) -> bool:
        """With its own key an object may adopt from its own account; with the operator's
        shared key only where the operator's configuration allows it."""
        if spec.credentials_secret_ref is not None:
            return True
        allowed = self.settings.adoption_namespaces
        return "*" in allowed or obj.namespace in allowed

    async def finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> float | None:
        """Delete the Together cluster. None when done; else seconds until the next check."""
        self._memories.setdefault(obj.uid, memory)
        return await self._finalizer.finalize(obj, memory, event)

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
            try:
                outcome = await self._reconcile(obj, memory, event)
            except StaleObject:
                return STALE_RETRY_SECONDS  # nothing was written; decide again, afresh
            if outcome.verdict.reason == Reason.WAITING_FOR_FINALIZER:
                # A wait of moments, ended by the finalizer's own event: not worth a status
                # write per new object. Looked at again soon in case that event is missed.
                return FINALIZER_RECHECK_SECONDS
            await self.reporter.report(obj, memory, outcome, event)
            return plan.revisit_after(
                outcome.verdict.reason,
                backoff_remaining=memory.failure.next_action_at - time.monotonic(),
                grace_remaining=plan.unresolved_create(
                    recorded(obj, memory), self.now(), self.grace
                ),
                recheck_seconds=self.settings.credentials_ttl_seconds,
                foreign_secret_seconds=self.settings.slow_poll_seconds,
                health_read_in=self.health.read_in(memory.health) if outcome.cluster else None,
            )

    async def _reconcile(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> Outcome:
        spec = plan.parse_spec(obj.spec, "spec is invalid")
        if isinstance(spec, plan.Stall):
            fix = replace(spec, message=f"{spec.message}; fix the manifest")
            return Outcome(Verdict.stall(fix))
        observer = await self.lookout.observer(obj, spec, memory)
        await self._let_go_of_old_credentials(obj, memory, spec)
        if isinstance(observer, plan.Stall):
            return Outcome(Verdict.stall(observer))
        was = recorded(obj, memory)
        self.lookout.watch(obj, memory, spec, was, observer)
        snapshot = await observer.first_snapshot(self.settings.request_timeout_seconds)
        if snapshot is None:  # the observer backs off on its own: nothing to gate here
            if observer.error is None:
                return Outcome(Verdict.waiting_for_together())
            failed = self.reporter.failure(obj, memory, observer.error, event, backoff=False)
            return Outcome(failed)
        synced_at = snapshot.fetched_at
        try:
            observed = await self.lookout.look(
                obj, memory, spec, was, observer, snapshot, fresh=False
            )
            action = self._plan(obj, memory, spec, was, observed)
            if isinstance(action, plan.LookAgain):
                observed = await self.lookout.look(
                    obj, memory, spec, was, observer, snapshot, fresh=True
                )
                action = self._plan(obj, memory, spec, was, observed)
        except TogetherError as error:
            # A failed look (a GET, or a List before a create) backs off like an action.
            failed = self.reporter.failure(obj, memory, error, event, backoff=True)
            return Outcome(failed, synced_at=synced_at)
        except HeldBack:
            assert memory.failure.verdict is not None
            return Outcome(memory.failure.verdict, synced_at=synced_at)
        own = _own_cluster(was, observed, action)
        if own is not None and observed.key_fingerprint != was.key_fingerprint:
            assert observed.key_fingerprint is not None
            await self.records.key_saw_cluster(obj, memory, observed.key_fingerprint)
        try:
            cluster, verdict = await self.actions.perform(obj, memory, action, observer, event)
            # Watched by the cluster ID it now has (a create, an adoption): the observer polls
            # fast while that cluster changes, and must know so before this object's next
            # visit, which only a change it is watched for would bring.
            self.lookout.watch(obj, memory, spec, recorded(obj, memory), observer)
        except TogetherError as error:
            failed = self.reporter.failure(obj, memory, error, event, backoff=True)
            if own is not None and error.heals:
                failed = Verdict.for_cluster(own).despite(failed)
                memory.failure.verdict = failed
            return Outcome(failed, own, synced_at)
        said = memory.failure.last_error
        if verdict.sync_error is None and said is not None:
            # No exchange this visit: the last one (which failed) is what Synced reports.
            verdict = replace(verdict, sync_error=(Reason(said[0]), said[1]))
        if observer.error is not None:
            verdict = verdict.with_list_error(observer.error)
        cluster = cluster or own  # waiting or stalled still shows Together's view of its own
        conflict = await self._publisher.publish(
            obj.owner,
            spec,
            cluster,
            memory.secret,
            event,
            shown_before=bool(obj.status.get("kubeconfigSecretName")),
        )
        if cluster is None:
            return Outcome(verdict.unless_secret_conflict(conflict), synced_at=synced_at)
        return Outcome(
            verdict.unless_secret_conflict(conflict),
            cluster,
            synced_at,
            add_ons=self._add_on_statuses(memory, spec, was, cluster),
            health=await self.health.look(obj, memory.health, observer.client, cluster, event),
        )

    @staticmethod
    def _add_on_statuses(
        memory: ObjectMemory, spec: GPUClusterSpec, was: plan.Recorded, cluster: GPUClusterInfo
    ) -> list[AddOnStatus]:
        """``status.addOns``; what they show as managed is remembered (the object's status
        catches up only once the write is seen)."""
        known = memory.add_ons
        managed = addons.managed_names(spec, was.managed_add_ons)
        shown = addons.statuses(cluster, known.listed, managed)
        known.managed = addons.still_managed(shown, was.managed_add_ons, listed=known.listed)
        return shown

    async def _let_go_of_old_credentials(
        self, obj: GPUClusterObject, memory: ObjectMemory, spec: GPUClusterSpec
    ) -> None:
        secret = spec.credentials_secret_ref.name if spec.credentials_secret_ref else None
        if memory.credentials_secret not in (None, secret):
            await self.credentials.release_if_unused(
                obj.namespace, memory.credentials_secret, obj.uid
            )
        memory.credentials_secret = secret

    def _plan(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observed: plan.Observation,
    ) -> plan.Action:
        who = obj.incarnation
        return plan.plan_action(
            spec,
            who=who,
            recorded=was,
            observed=observed,
            now=self.now(),
            intent_grace=self.grace,
            attempts=plan.Attempts(
                backing_off=memory.failure.backing_off(time.monotonic()),
                accepted_updates=memory.accepted_updates,
            ),
            rivals=self.claims.rivals(who, plan.cluster_to_observe(spec, was), observed.cluster),
            adoption_allowed=self.adoption_allowed(obj, spec),
            finalized=obj.finalized,
        )


def _own_cluster(
    was: plan.Recorded, observed: plan.Observation, action: plan.Action
) -> GPUClusterInfo | None:
    """Together's view of the cluster this object owns, if it saw it; never one it does not
    own (a refused adoption, a cluster another GPUCluster prevails on)."""
    cluster = observed.cluster
    if cluster is None or was.cluster_id != cluster.cluster_id:
        return None
    if isinstance(action, plan.Stall) and action.reason == Reason.CLUSTER_CLAIMED:
        return None
    return cluster
