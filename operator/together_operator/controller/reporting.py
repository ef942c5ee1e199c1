"""Report what a visit found: the status patch (only what changed), events, metrics and logs.

Every visit ends in exactly one :meth:`Reporter.report`; failures of Together calls are turned
into verdicts (and backoff) in one place, :meth:`Reporter.failure`.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from together_operator.controller.health_watch import NodeHealth
from together_operator.controller.kube import KubeApi
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.objects import EventFn, GPUClusterObject, ObjectMemory
from together_operator.gpucluster.health import NODES_HEALTHY
from together_operator.gpucluster.plan import STALLED_RETRY_SECONDS
from together_operator.gpucluster.reasons import reason_of
from together_operator.gpucluster.spec import AddOnStatus, GPUClusterStatus
from together_operator.gpucluster.status import (
    Verdict,
    condition,
    conditions_for,
    describe,
    mirror_cluster,
    rfc3339,
    status_patch,
)
from together_operator.together.backoff import BackoffPolicy
from together_operator.together.errors import RetryLater, TogetherError
from together_operator.together.models import GPUClusterInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one visit found, to be reported."""

    verdict: Verdict
    #: Together's view of the object's own cluster, when there is one to mirror.
    cluster: GPUClusterInfo | None = None
    #: Wall-clock time of the List the decision was based on.
    synced_at: float | None = None
    #: ``status.addOns``, shown with the cluster.
    add_ons: list[AddOnStatus] | None = None
    #: Node health, shown with the cluster.
    health: NodeHealth | None = None


class Reporter:
    """Writes outcomes onto the object and into events, metrics and logs."""

    def __init__(
        self,
        kube: KubeApi,
        metrics: OperatorMetrics,
        backoff: BackoffPolicy,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._kube = kube
        self._metrics = metrics
        self._backoff = backoff
        self._now = clock

    async def report(
        self, obj: GPUClusterObject, memory: ObjectMemory, outcome: Outcome, event: EventFn
    ) -> None:
        """Patch status with what changed (nothing, when nothing did)."""
        verdict = outcome.verdict
        self._metrics.reconciles.labels(verdict.reason).inc()
        if verdict.stalled or verdict.sync_error:
            failing = verdict.sync_error[0] if verdict.sync_error else verdict.reason
            self._metrics.errors.labels(failing).inc()
        wanted = GPUClusterStatus(observed_generation=obj.generation)
        if outcome.cluster is not None:
            self._metrics.observe_cluster(obj.namespace, obj.name, outcome.cluster)
            wanted = mirror_cluster(outcome.cluster).model_copy(
                update={"observed_generation": obj.generation}
            )
            wanted.add_ons = outcome.add_ons or None
            if outcome.health is not None:
                shown = outcome.health.summary
                wanted.health = shown if shown.model_dump(exclude_none=True) else None
            secret_name = obj.spec.get("kubeconfigSecretName") or f"{obj.name}-kubeconfig"
            if memory.secret.written_to == secret_name:
                wanted.kubeconfig_secret_name = secret_name
        previous = obj.status.get("conditions")
        wanted.conditions = conditions_for(
            verdict, generation=obj.generation, previous=previous, now=self._now()
        )
        if outcome.health is not None:
            said = outcome.health.verdict
            before = next((c for c in previous or [] if c.get("type") == NODES_HEALTHY), None)
            wanted.conditions.append(
                condition(
                    NODES_HEALTHY,
                    said.status,
                    said.reason,
                    said.message,
                    before=before,
                    generation=obj.generation,
                    now=self._now(),
                )
            )
        patch = status_patch(obj.status, wanted)
        records = memory.unsaved_records
        if not patch and not records:
            return  # nothing changed: no write, no watch event for anyone
        if outcome.synced_at is not None:
            # When Together's view shown here was read (written with a change, not per List).
            synced = datetime.datetime.fromtimestamp(outcome.synced_at, datetime.UTC)
            patch["lastSyncTime"] = rfc3339(synced)
        await self._kube.patch_status(obj.namespace, obj.name, {**patch, **(records or {})})
        memory.unsaved_records = None

    def failure(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        error: TogetherError,
        event: EventFn,
        *,
        backoff: bool,
    ) -> Verdict:
        """The verdict for a failed call; with ``backoff``, the action it belongs to is not
        tried again before the backoff (or Together's Retry-After) has passed."""
        next_try = None
        if backoff:
            failure = memory.failure
            failure.failures += 1
            failure.generation = obj.generation
            retry_after = error.retry_after if isinstance(error, RetryLater) else None
            if error.heals:
                delay = self._backoff.delay(failure.failures, retry_after)
            else:
                delay = STALLED_RETRY_SECONDS
            failure.next_action_at = time.monotonic() + delay
            next_try = self._now() + datetime.timedelta(seconds=delay)
        verdict = Verdict.failure(error, next_try)
        said = (str(reason_of(error)), describe(error))
        if memory.failure.last_error != said:
            event("Warning", *said)
        memory.failure.last_error = said
        logger.warning("%s: %s", obj.where, said[1])
        if backoff:
            memory.failure.verdict = verdict
        return verdict
