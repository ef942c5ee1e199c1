"""Node health as a platform team needs to see it: open remediations and firing health-check
alerts, as the ``NodesHealthy`` condition, a summary in ``status.health``, and events. Pure.

Where each comes from, and what it costs (the README's "Node health" section says the same):

- Remediations: each GPU worker node in Together's cluster body carries its latest
  remediation, so the fleet's List brings them at no extra call. An open one (waiting for
  approval, pending, quarantining, running) or a failed one is shown.
- Alerts: the contract lists them per cluster only (``cluster_id`` is required of API keys),
  one call per cluster. They are read when the body shows trouble or stops showing it (a
  remediation opens or ends, the cluster turns Degraded or recovers), again every slow poll
  while there is trouble or an alert fires, and, when the platform team opts in
  (``TOGETHER_OPERATOR_HEALTH_CHECK_SECONDS``), on that timer for every cluster. A healthy
  fleet thus costs no call: steady state stays at one List per minute whatever its size.

``NodesHealthy`` is not one of kstatus's conditions: it never changes ``Ready``, which is
Together's view of the cluster, and GitOps health follows ``Ready``, ``Reconciling`` and
``Stalled`` only. Its reason says what needs a person first: a remediation waiting for
approval, then a failed one, then firing alerts, then remediations under way.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import AlertStatus, NodeHealthStatus, RemediationStatus
from together_operator.together.health import PassiveHealthCheckAlert, Remediation
from together_operator.together.health import RemediationState as State
from together_operator.together.models import ClusterStatus, GPUClusterInfo

NODES_HEALTHY = "NodesHealthy"
#: Remediations shown: under way, waiting for a person, or failed (a node's latest only).
SHOWN_STATES = frozenset(
    {
        State.PENDING_APPROVAL,
        State.PENDING,
        State.QUARANTINING,
        State.QUARANTINED,
        State.RUNNING,
        State.FAILED,
    }
)
ENDED_STATES = frozenset({State.SUCCEEDED, State.CANCELLED, State.AUTO_RESOLVED, State.FAILED})
_APPROVE = "approve or reject it at Together"
#: At most this many alerts are listed in status (all are counted).
MAX_ALERTS_SHOWN = 10
#: Alerts are read only while the cluster is settled (a cluster coming up has no alerts yet).
ALERT_STATES = frozenset({ClusterStatus.READY, ClusterStatus.DEGRADED})


@dataclass(frozen=True)
class NodeRemediation:
    """A node's latest remediation."""

    node: str
    remediation: Remediation


@dataclass(frozen=True)
class Verdict:
    """The ``NodesHealthy`` condition's status, reason and message."""

    status: str
    reason: Reason
    message: str


def remediations(cluster: GPUClusterInfo) -> list[NodeRemediation]:
    """Each GPU worker node's latest remediation, as the cluster body carries it."""
    return [
        NodeRemediation(node.host_name or node.node_id, node.latest_remediation)
        for node in cluster.gpu_worker_nodes
        if node.latest_remediation is not None
    ]


def trouble(cluster: GPUClusterInfo) -> str:
    """What the cluster body shows of trouble, as a digest ("" for none): when it changes,
    alerts are worth reading."""
    shown = sorted(
        (r.node, r.remediation.id, r.remediation.state)
        for r in remediations(cluster)
        if r.remediation.state in SHOWN_STATES
    )
    if not shown and cluster.status != ClusterStatus.DEGRADED:
        return ""
    seen = repr((cluster.status == ClusterStatus.DEGRADED, shown)).encode()
    return hashlib.sha256(seen).hexdigest()[:16]


def summary(
    cluster: GPUClusterInfo, alerts: Sequence[PassiveHealthCheckAlert] | None
) -> NodeHealthStatus:
    """``status.health``: alerts firing (as last read) and the remediations shown."""
    firing = sorted(alerts or (), key=_started, reverse=True)
    return NodeHealthStatus(
        firing_alerts=len(firing) if alerts is not None else None,
        alerts=[_alert(a) for a in firing[:MAX_ALERTS_SHOWN]] or None,
        remediations=[
            _remediation(r) for r in remediations(cluster) if r.remediation.state in SHOWN_STATES
        ]
        or None,
    )


def verdict(health: NodeHealthStatus, alerts_error: str | None, *, alerts_read: bool) -> Verdict:
    """``NodesHealthy`` for ``health``; Unknown when alerts could not be read (or never
    were, while the body shows trouble) and nothing else needs a person."""
    shown = health.remediations or []
    for state, reason, advice in (
        (
            State.PENDING_APPROVAL,
            Reason.REMEDIATION_NEEDS_APPROVAL,
            "approve or reject it at Together",
        ),
        (State.FAILED, Reason.REMEDIATION_FAILED, "see the node at Together"),
    ):
        waiting = [r for r in shown if r.state == state]
        if waiting:
            nodes = ", ".join(f"{r.node} ({r.id})" for r in waiting)
            return Verdict("False", reason, f"{_state_words(state)} on {nodes}: {advice}")
    if health.firing_alerts:
        alerts = health.alerts or []
        named = "; ".join(f"{a.name} ({a.severity}) on {a.node}" for a in alerts)
        more = health.firing_alerts - len(alerts)
        tail = f" and {more} more" if more > 0 else ""
        return Verdict(
            "False", Reason.HEALTH_ALERTS_FIRING, f"{health.firing_alerts} firing: {named}{tail}"
        )
    if shown:
        nodes = ", ".join(f"{r.node} ({r.state})" for r in shown)
        return Verdict("False", Reason.REMEDIATING, f"remediation under way on {nodes}")
    if alerts_error is not None:
        return Verdict(
            "Unknown", Reason.HEALTH_CHECK_FAILED, f"reading alerts failed: {alerts_error}"
        )
    if not alerts_read:
        return Verdict(
            "True", Reason.NO_REMEDIATION_OPEN, "no remediation open (alerts are read on trouble)"
        )
    return Verdict("True", Reason.NODES_HEALTHY, "no remediation open and no alert firing")


def _state_words(state: State) -> str:
    return {
        State.PENDING_APPROVAL: "a remediation waits for approval",
        State.FAILED: "a remediation failed",
    }[state]


def _started(alert: PassiveHealthCheckAlert) -> datetime.datetime:
    return alert.started_at or datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _short(value: str, prefix: str) -> str:
    return value.removeprefix(prefix) or "UNSPECIFIED"


def _time(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _alert(alert: PassiveHealthCheckAlert) -> AlertStatus:
    return AlertStatus(
        id=alert.passive_health_check_alert_id,
        name=alert.alert_name,
        severity=_short(alert.severity, "PHC_SEVERITY_"),
        node=alert.target_vm or alert.instance_id or "",
        started_at=_time(alert.started_at),
        remediation_id=alert.node_remediation_intent_id or None,
    )


def _remediation(found: NodeRemediation) -> RemediationStatus:
    remediation = found.remediation
    return RemediationStatus(
        node=found.node,
        id=remediation.id,
        state=remediation.state,
        mode=_short(remediation.mode, "REMEDIATION_MODE_") if remediation.mode else None,
        trigger=_short(remediation.trigger, "REMEDIATION_TRIGGER_")
        if remediation.trigger
        else None,
        message=remediation.error_message or remediation.reason or None,
    )


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthEvent:
    type: str
    reason: Reason
    message: str


def alert_events(
    before: Sequence[AlertStatus], after: Sequence[PassiveHealthCheckAlert], cluster_id: str
) -> list[HealthEvent]:
    """An event per alert that started firing, and per alert that stopped."""
    was = {a.id: a for a in before}
    now = {a.passive_health_check_alert_id: a for a in after}
    started = [
        HealthEvent(
            "Warning",
            Reason.HEALTH_ALERT_FIRING,
            f"{a.alert_name} ({_short(a.severity, 'PHC_SEVERITY_')}) on "
            f"{a.target_vm or a.instance_id} of cluster {cluster_id} since {_time(a.started_at)}",
        )
        for key, a in now.items()
        if key not in was
    ]
    stopped = [
        HealthEvent(
            "Normal",
            Reason.HEALTH_ALERT_RESOLVED,
            f"{a.name} on {a.node} of cluster {cluster_id} ended",
        )
        for key, a in was.items()
        if key not in now
    ]
    return started + stopped


def remediation_events(
    before: dict[str, str], cluster: GPUClusterInfo
) -> tuple[list[HealthEvent], dict[str, str]]:
    """An event per remediation that entered a state since ``before`` (ID -> state), and
    the states now. A remediation ended before it was ever seen open is not reported."""
    now = {r.remediation.id: r for r in remediations(cluster)}
    events = []
    for key, found in now.items():
        state = found.remediation.state
        if before.get(key) == state:
            continue
        if state in ENDED_STATES - {State.FAILED} and key not in before:
            continue
        kind = "Warning" if state in (State.PENDING_APPROVAL, State.FAILED) else "Normal"
        events.append(
            HealthEvent(
                kind,
                Reason.REMEDIATION,
                f"node {found.node} of cluster {cluster.cluster_id}: remediation "
                f"{key} is {state}"
                + (
                    " (approve or reject it at Together)" if state == State.PENDING_APPROVAL else ""
                ),
            )
        )
    return events, {key: found.remediation.state for key, found in now.items()}
