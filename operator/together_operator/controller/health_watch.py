"""Reads a cluster's health-check alerts when it is worth a call, and turns node health into
what a visit reports: ``status.health``, the ``NodesHealthy`` condition, events.

When a read is worth it is decided in :mod:`together_operator.gpucluster.health` (trouble in
the cluster body, alerts firing, or the opt-in timer); this module only keeps the memory and
makes the call. A failed read never fails the visit: it shows as NodesHealthy=Unknown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from together_operator.controller.objects import EventFn, GPUClusterObject, HealthMemory
from together_operator.gpucluster import health
from together_operator.gpucluster.spec import NodeHealthStatus
from together_operator.gpucluster.status import describe
from together_operator.together.client import TogetherClient
from together_operator.together.errors import TogetherError
from together_operator.together.models import GPUClusterInfo


@dataclass(frozen=True)
class NodeHealth:
    """What a visit reports of node health."""

    summary: NodeHealthStatus
    verdict: health.Verdict


class HealthWatch:
    """Node health per object; reads alerts at most as often as :func:`read_due` allows."""

    def __init__(
        self,
        *,
        every_seconds: float,
        while_troubled_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every = every_seconds
        self._troubled = while_troubled_seconds
        self._clock = clock

    async def look(
        self,
        obj: GPUClusterObject,
        memory: HealthMemory,
        client: TogetherClient,
        cluster: GPUClusterInfo,
        event: EventFn,
    ) -> NodeHealth:
        """The cluster's node health, alerts read again first when due."""
        if memory.remediation_states is None:
            _remember_from_status(memory, obj.status.get("health"))
        trouble = health.trouble(cluster)
        if cluster.status in health.ALERT_STATES and self.read_due(memory, trouble):
            await self._read(memory, client, cluster, trouble, event)
        said, memory.remediation_states = health.remediation_events(
            memory.remediation_states or {}, cluster
        )
        for item in said:
            event(item.type, item.reason, item.message)
        summary = health.summary(cluster, memory.alerts)
        memory.shown_alerts = summary.alerts or []
        verdict = health.verdict(summary, memory.error, alerts_read=memory.alerts is not None)
        return NodeHealth(summary, verdict)

    def read_due(self, memory: HealthMemory, trouble: str) -> bool:
        """Whether the alerts are worth a call now."""
        waited = self._clock() - memory.read_at
        if trouble != memory.trouble:
            return True  # trouble appeared, changed or ended
        if (trouble or memory.alerts or memory.error) and waited >= self._troubled:
            return True
        return self._every > 0 and waited >= self._every

    def read_in(self, memory: HealthMemory) -> float | None:
        """Seconds until a read falls due on a timer (None: only a change can make one)."""
        waits = []
        if memory.trouble or memory.alerts or memory.error:
            waits.append(self._troubled)
        if self._every > 0:
            waits.append(self._every)
        if not waits:
            return None
        return max(min(waits) - (self._clock() - memory.read_at), 0.0)

    async def _read(
        self,
        memory: HealthMemory,
        client: TogetherClient,
        cluster: GPUClusterInfo,
        trouble: str,
        event: EventFn,
    ) -> None:
        memory.read_at, memory.trouble = self._clock(), trouble
        try:
            alerts = await client.list_health_check_alerts(cluster.cluster_id)
        except TogetherError as error:
            memory.error = describe(error)
            return
        for item in health.alert_events(memory.shown_alerts or [], alerts, cluster.cluster_id):
            event(item.type, item.reason, item.message)
        memory.alerts, memory.error = tuple(alerts), None


def _remember_from_status(memory: HealthMemory, shown: Mapping[str, Any] | Any) -> None:
    """What the object's status last showed: so that a restart repeats no event, and a
    firing alert it showed is read again at once (alerts are not in Together's List)."""
    try:
        before = NodeHealthStatus.model_validate(shown or {})
    except ValueError:
        before = NodeHealthStatus()
    memory.shown_alerts = before.alerts or []
    memory.remediation_states = {r.id: r.state for r in before.remediations or []}
    if before.firing_alerts:
        memory.trouble = "(alerts firing before a restart)"
