"""Passive health-check alerts: raised against a node through the admin API (the simulator has
no hardware to watch), resolved through it too, and listed through the API. Raising one can
open an automated remediation that waits for approval, as Together's health checks do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field

from together_operator.simulator import remediations
from together_operator.simulator.errors import InvalidRequest, NotFound
from together_operator.simulator.parsing import query_enum, query_enums
from together_operator.together.health import (
    AlertOrder,
    AlertSeverity,
    AlertStatus,
    ListPassiveHealthCheckAlertsResponse,
    PassiveHealthCheckAlert,
    RemediationMode,
    RemediationRequest,
    RemediationTrigger,
)

if TYPE_CHECKING:
    from multidict import MultiMapping

    from together_operator.simulator.lifecycle import ClusterRecord, Timings


_NEVER: Final = datetime.min.replace(tzinfo=UTC)  # sorts an alert without a start first


class AlertSpec(BaseModel):
    """`POST /_sim/clusters/{cluster_id}/alerts`: an alert on a node (the first live GPU worker
    when `instance_id` is absent); with `remediation_mode`, an automated remediation of that
    mode opens in PENDING_APPROVAL, linked to the alert."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str | None = None
    alert_name: str = Field(default="GpuXidError", min_length=1)
    severity: AlertSeverity = AlertSeverity.CRITICAL
    annotations: dict[str, str] = Field(default_factory=dict)
    remediation_mode: RemediationMode | None = None


def raise_alert(
    cluster: ClusterRecord,
    spec: AlertSpec,
    *,
    now: datetime,
    timings: Timings,
    new_id: Callable[[], str],
) -> PassiveHealthCheckAlert:
    """Start an alert firing on a node of `cluster` (and maybe a remediation for it)."""
    nodes = cluster.info.gpu_worker_nodes
    instance_id = spec.instance_id or next((n.instance_id for n in nodes if n.instance_id), None)
    node = next((n for n in nodes if n.instance_id == instance_id), None)
    if node is None or instance_id is None:
        raise NotFound(
            f"cluster {cluster.cluster_id} has no live GPU worker with instance "
            f"{spec.instance_id or '(any)'}"
        )
    alert = PassiveHealthCheckAlert(
        passive_health_check_alert_id=new_id(),
        cluster_id=cluster.cluster_id,
        instance_id=instance_id,
        target_vm=node.host_name,
        alert_name=spec.alert_name,
        severity=spec.severity.value,
        annotations=spec.annotations,
        started_at=now,
    )
    cluster.alerts.append(alert)
    if spec.remediation_mode is not None:
        record = remediations.create(
            cluster,
            instance_id,
            RemediationRequest(mode=spec.remediation_mode, reason=f"alert {spec.alert_name}"),
            now=now,
            timings=timings,
            new_id=new_id,
            trigger=RemediationTrigger.AUTOMATED,
            alert=alert,
        )
        alert.node_remediation_intent_id = record.remediation.id
    return alert


def resolve_alert(cluster: ClusterRecord, alert_id: str, now: datetime) -> PassiveHealthCheckAlert:
    """Stop an alert firing; a remediation still waiting for approval because of it resolves
    itself (AUTO_RESOLVED)."""
    alert = next((a for a in cluster.alerts if a.passive_health_check_alert_id == alert_id), None)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found on cluster {cluster.cluster_id}")
    if alert.resolved_at is None:
        alert.resolved_at = now
        remediations.auto_resolve(cluster, alert_id, now)
    return alert


def list_alerts(
    clusters: Iterable[ClusterRecord], query: MultiMapping[str]
) -> ListPassiveHealthCheckAlertsResponse:
    """`GET /v1/compute/passive_health_check_alerts`: filters combine; `cluster_id` is required
    (the contract requires it of non-admin callers, and API keys are not admins)."""
    cluster_id = query.get("cluster_id", "")
    if not cluster_id:
        raise InvalidRequest("query parameter `cluster_id` is required")
    status = query_enum(query, "status", AlertStatus) or AlertStatus.FIRING
    severities = query_enums(query.getall("severity_filter", []), "severity_filter", AlertSeverity)
    order = query_enum(query, "order_by", AlertOrder) or AlertOrder.STARTED_AT_DESC
    instance_id = query.get("instance_id", "")
    intent_id = query.get("intent_id", "")
    chosen = [
        alert
        for cluster in clusters
        if cluster.cluster_id == cluster_id
        for alert in cluster.alerts
        if (not instance_id or alert.instance_id == instance_id)
        and (not intent_id or alert.node_remediation_intent_id == intent_id)
        and (not severities or alert.severity in severities)
        and _has_status(alert, status)
    ]
    chosen.sort(key=lambda a: a.started_at or _NEVER, reverse=order == AlertOrder.STARTED_AT_DESC)
    page, token = remediations.page_of(chosen, query)
    return ListPassiveHealthCheckAlertsResponse(alerts=page, next_page_token=token)


def _has_status(alert: PassiveHealthCheckAlert, status: AlertStatus) -> bool:
    if status == AlertStatus.ALL:
        return True
    return (alert.resolved_at is None) == (status == AlertStatus.FIRING)
