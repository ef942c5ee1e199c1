"""Deleting a GPUCluster, top to bottom: validate -> plan -> (credentials -> look) -> plan ->
act -> report. A finalizer holds the object until :func:`plan_deletion` says it may go.

The decision is :func:`together_operator.gpucluster.deletion.plan_deletion`; this module
performs the I/O around it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from together_operator.controller.actions import Actions
from together_operator.controller.claims import ClaimIndex
from together_operator.controller.credentials import Credentials
from together_operator.controller.fleet import FleetObserver
from together_operator.controller.kube import KubeApi
from together_operator.controller.kubeconfig_secret import delete_owned_secret, secret_name_for
from together_operator.controller.lookout import Lookout
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.objects import EventFn, GPUClusterObject, ObjectMemory
from together_operator.controller.records import StaleObject, recorded
from together_operator.controller.reporting import Outcome, Reporter
from together_operator.gpucluster import deletion, plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import DeletionPolicy, GPUClusterSpec
from together_operator.gpucluster.status import Verdict
from together_operator.settings import OperatorSettings
from together_operator.together.client import cluster_or_none
from together_operator.together.errors import RetryLater, TogetherError
from together_operator.together.models import GPUClusterInfo

#: A blocked deletion is looked at again this soon: kopf does not re-run a delete handler
#: on a spec change (such as deletionPolicy: Orphan, the documented way out) before then.
#: The look costs no Together call while the last one's backoff lasts.
DELETION_RECHECK_SECONDS = 10.0


def _orphan_requested(raw_spec: Any) -> bool:
    """``deletionPolicy: Orphan`` read from a spec that may not parse: the way out must work
    even for a spec this operator version cannot read."""
    return isinstance(raw_spec, dict) and raw_spec.get("deletionPolicy") == DeletionPolicy.ORPHAN


class Collaborators(Protocol):
    """What finalizing needs of the reconciler it works for."""

    settings: OperatorSettings
    kube: KubeApi
    metrics: OperatorMetrics
    reporter: Reporter
    actions: Actions
    credentials: Credentials
    claims: ClaimIndex
    grace: datetime.timedelta
    now: Callable[[], datetime.datetime]
    lookout: Lookout

    def forget(self, uid: str) -> None: ...


class Finalizer:
    """Finalizes GPUClusters with the collaborators of a reconciler."""

    def __init__(self, collaborators: Collaborators) -> None:
        self._r = collaborators

    async def finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> float | None:
        """Delete the Together cluster. None when done; else seconds until the next check."""
        async with memory.lock:
            try:
                outcome, recheck = await self._finalize(obj, memory, event)
            except StaleObject:
                return 1.0
            except TogetherError as error:
                failed = self._r.reporter.failure(obj, memory, error, event, backoff=True)
                outcome = Outcome(failed)
                wait = max(memory.failure.next_action_at - time.monotonic(), 1.0)
                honoured = isinstance(error, RetryLater) and error.retry_after
                recheck = wait if honoured else min(wait, DELETION_RECHECK_SECONDS)
            if outcome is not None:
                await self._r.reporter.report(obj, memory, outcome, event)
            return recheck

    async def _finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> tuple[Outcome | None, float | None]:
        parsed = self._spec(obj)
        if isinstance(parsed, plan.Stall):
            return Outcome(Verdict.stall(parsed)), DELETION_RECHECK_SECONDS
        spec = parsed
        was = recorded(obj, memory)
        action = self._plan(obj, spec, was, None, None)
        if isinstance(action, deletion.LookUp):
            if memory.failure.backing_off(time.monotonic()):
                # Only Orphan is looked for until the last failure's backoff has passed.
                remaining = memory.failure.next_action_at - time.monotonic()
                return None, min(max(remaining, 1.0), DELETION_RECHECK_SECONDS)
            observer = await self._r.lookout.observer(obj, spec, memory, deleting=True)
            if isinstance(observer, plan.Stall):
                action = replace(observer, message=f"{observer.message}{deletion.ORPHAN_HINT}")
            else:
                action = await self._look_and_delete(
                    obj, memory, spec, was, action, observer, event
                )
        return await self._act(obj, memory, spec, action, event)

    def _spec(self, obj: GPUClusterObject) -> GPUClusterSpec | plan.Stall:
        parsed = plan.parse_spec(obj.spec, "cannot delete: the stored spec is invalid")
        if not isinstance(parsed, plan.Stall):
            return parsed
        if _orphan_requested(obj.spec):
            # Orphan needs nothing of the spec but the policy: keep the cluster, let go.
            secret = obj.spec.get("kubeconfigSecretName")
            return GPUClusterSpec.model_construct(
                deletion_policy=DeletionPolicy.ORPHAN,
                kubeconfig_secret_name=secret if isinstance(secret, str) else None,
            )
        return replace(parsed, message=f"{parsed.message}; fix it, or set deletionPolicy: Orphan")

    async def _act(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        action: deletion.DeletionAction,
        event: EventFn,
    ) -> tuple[Outcome | None, float | None]:
        match action:
            case deletion.Release(reason, message):
                if reason is not None:
                    event("Normal", reason, message)
                secret = secret_name_for(obj.name, spec)
                await delete_owned_secret(self._r.kube, obj.owner, secret)
                if spec.credentials_secret_ref is not None:
                    await self._r.credentials.release_if_unused(
                        obj.namespace, spec.credentials_secret_ref.name, obj.uid
                    )
                self._r.metrics.forget_cluster(obj.namespace, obj.name)
                self._r.forget(obj.uid)
                return None, None
            case deletion.DeleteCluster(cluster_id) | deletion.AwaitDeletion(cluster_id):
                memory.failure.clear()
                waiting = f"waiting for Together to finish deleting {cluster_id}"
                deleting = Outcome(Verdict.progressing(Reason.DELETING, waiting))
                return deleting, self._r.settings.fast_poll_seconds
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
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        lookup: deletion.LookUp,
        observer: FleetObserver,
        event: EventFn,
    ) -> deletion.DeletionAction:
        """Look at Together as the planner asked, plan again, and send the DELETE it wants."""
        key = observer.fingerprint
        cluster = None
        if lookup.cluster_id is not None:
            cluster = await cluster_or_none(observer.client, lookup.cluster_id)
            observed = plan.Observation(cluster=cluster, fresh=True, key_fingerprint=key)
        else:
            name = plan.desired_cluster_name(spec, obj.incarnation)
            listed = (await observer.refresh()).named(name)
            observed = plan.Observation(same_name=listed, fresh=True, key_fingerprint=key)
        action = self._plan(obj, spec, was, observed, cluster)
        deleted = isinstance(action, deletion.DeleteCluster) and await self._r.actions.delete(
            obj, memory, action.cluster_id, observer, event
        )
        if isinstance(action, deletion.DeleteCluster) and not deleted:
            # Gone already: what Together said is proof (or not) of the deletion.
            resolved = replace(was, cluster_id=action.cluster_id, create_intent_at=None)
            action = self._plan(obj, spec, resolved, replace(observed, cluster=None), None)
        return action

    def _plan(
        self,
        obj: GPUClusterObject,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observed: plan.Observation | None,
        cluster: GPUClusterInfo | None,
    ) -> deletion.DeletionAction:
        who = obj.incarnation
        return deletion.plan_deletion(
            spec,
            who=who,
            recorded=was,
            observed=observed,
            now=self._r.now(),
            intent_grace=self._r.grace,
            rivals=self._r.claims.rivals(who, was.cluster_id, cluster),
        )
