"""A typed client of the simulator's admin API (`/_sim/`): for tests, benchmarks and the demo.

Operations are named by the contract's operationId, or by an :class:`Operation` from
:mod:`together_operator.together.operations`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from together_operator.simulator.faults import ANY_OPERATION
from together_operator.simulator.state import ClusterSummary
from together_operator.together.health import PassiveHealthCheckAlert, Remediation
from together_operator.together.models import GPUClusterInfo
from together_operator.together.operations import Operation

OperationRef = Operation | str


def _operation_id(operation: OperationRef) -> str:
    return operation.id if isinstance(operation, Operation) else operation


class SimulatorAdmin:
    """The admin API of one running simulator."""

    def __init__(self, admin_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=admin_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimulatorAdmin:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=payload)
        response.raise_for_status()
        return response.json()

    # --- clusters ----------------------------------------------------------------------------

    def clusters(self) -> list[ClusterSummary]:
        """Every cluster the simulator knows, deleted ones included."""
        body = self._send("GET", "/clusters")
        return [ClusterSummary.model_validate(row) for row in body["clusters"]]

    def live_clusters(self) -> list[GPUClusterInfo]:
        """Clusters not deleted (yet): a cluster in `Deleting` is still live."""
        return [row.cluster for row in self.clusters() if not row.deleted]

    def clusters_named(self, name: str) -> list[ClusterSummary]:
        """Every cluster ever created with ``name``, deleted ones included."""
        return [row for row in self.clusters() if row.cluster.cluster_name == name]

    def force_phase(self, cluster_id: str, phase: str) -> GPUClusterInfo:
        """Move a cluster into ``phase`` (any ``ClusterPhase`` but Deleting), with the status
        that phase reports; it stays there until forced again."""
        body = self._send("POST", f"/clusters/{cluster_id}/phase", {"phase": phase})
        return GPUClusterInfo.model_validate(body)

    def force_status(self, cluster_id: str, status: str) -> GPUClusterInfo:
        """Make a cluster report ``status`` verbatim, in the contract's enum or not (e.g.
        ``Scheduled``, or a value nobody knows), with no phase change."""
        body = self._send("POST", f"/clusters/{cluster_id}/status", {"status": status})
        return GPUClusterInfo.model_validate(body)

    # --- node health -------------------------------------------------------------------------

    def raise_alert(
        self,
        cluster_id: str,
        *,
        instance_id: str | None = None,
        alert_name: str | None = None,
        severity: str | None = None,
        annotations: dict[str, str] | None = None,
        remediation_mode: str | None = None,
    ) -> PassiveHealthCheckAlert:
        """Start a passive health-check alert on a node (the first GPU worker by default);
        with ``remediation_mode``, an automated remediation waits for approval, linked to it
        (its ID is the alert's ``node_remediation_intent_id``)."""
        optional = {
            "instance_id": instance_id,
            "alert_name": alert_name,
            "severity": severity,
            "annotations": annotations,
            "remediation_mode": remediation_mode,
        }
        payload = {key: value for key, value in optional.items() if value is not None}
        body = self._send("POST", f"/clusters/{cluster_id}/alerts", payload)
        return PassiveHealthCheckAlert.model_validate(body)

    def resolve_alert(self, cluster_id: str, alert_id: str) -> PassiveHealthCheckAlert:
        """Stop an alert firing (a remediation waiting for approval because of it then
        resolves itself: AUTO_RESOLVED)."""
        body = self._send("POST", f"/clusters/{cluster_id}/alerts/{alert_id}/resolve")
        return PassiveHealthCheckAlert.model_validate(body)

    def fail_remediation(
        self, cluster_id: str, remediation_id: str, error_message: str | None = None
    ) -> Remediation:
        """Make an active remediation (PENDING, QUARANTINING, QUARANTINED or RUNNING) fail."""
        payload = {} if error_message is None else {"error_message": error_message}
        body = self._send(
            "POST", f"/clusters/{cluster_id}/remediations/{remediation_id}/fail", payload
        )
        return Remediation.model_validate(body)

    def preempt(self, cluster_id: str, gpus: int | None = None) -> GPUClusterInfo:
        """Reclaim ``gpus`` preemptible GPUs (all allocated ones when None)."""
        payload = {} if gpus is None else {"gpus": gpus}
        body = self._send("POST", f"/clusters/{cluster_id}/preempt", payload)
        return GPUClusterInfo.model_validate(body)

    # --- capacity ----------------------------------------------------------------------------

    def stock(self) -> list[dict[str, Any]]:
        """Stock per region and GPU type."""
        return list(self._send("GET", "/stock")["stock"])

    def set_stock(
        self,
        region: str,
        gpu_type: str,
        *,
        gpus: int | None = None,
        preemptible_gpus: int | None = None,
    ) -> dict[str, Any]:
        """Change the stock of one region and GPU type (None leaves a count as it is)."""
        payload: dict[str, Any] = {"region": region, "gpu_type": gpu_type}
        if gpus is not None:
            payload["gpus"] = gpus
        if preemptible_gpus is not None:
            payload["preemptible_gpus"] = preemptible_gpus
        return dict(self._send("PUT", "/stock", payload))

    def set_list_scope(self, scope: str) -> None:
        """What a List without projectId shows: "account" or "default-project"."""
        self._send("PUT", "/list-scope", {"list_scope": scope})

    # --- faults ------------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        operation: OperationRef = ANY_OPERATION,
        *,
        count: int | None = None,
        probability: float | None = None,
        retry_after: float | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer requests to ``operation`` with ``status`` (the next ``count``, else all);
        ``reason`` puts an ErrorInfo with that reason (e.g. ``OUT_OF_STOCK``) in the body."""
        payload: dict[str, Any] = {"operation": _operation_id(operation), "status": status}
        optional = {
            "count": count,
            "probability": probability,
            "retry_after": retry_after,
            "message": message,
            "reason": reason,
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        self._send("POST", "/faults/failures", payload)

    def delay(self, operation: OperationRef, seconds: float, *, after_commit: bool = False) -> None:
        """Delay requests to ``operation`` (after committing them, with ``after_commit``)."""
        payload = {
            "operation": _operation_id(operation),
            "seconds": seconds,
            "after_commit": after_commit,
        }
        self._send("POST", "/faults/latency", payload)

    def drop(self, operation: OperationRef, count: int = 1) -> None:
        """Drop the connection after committing the next ``count`` requests to ``operation``."""
        self._send("POST", "/faults/drops", {"operation": _operation_id(operation), "count": count})

    def faults(self) -> dict[str, Any]:
        """The faults in force."""
        return dict(self._send("GET", "/faults"))

    def reset_faults(self) -> None:
        self._send("DELETE", "/faults")

    # --- request counts ----------------------------------------------------------------------

    def request_counts(self) -> list[dict[str, Any]]:
        """``[{"operation", "status", "count"}]`` for every API request since the last reset."""
        return list(self._send("GET", "/requests")["requests"])

    def request_count(self, operation: OperationRef, status: str | None = None) -> int:
        """Requests to ``operation``, answered with ``status`` ("200", "dropped", ...) or any."""
        wanted = _operation_id(operation)
        return sum(
            row["count"]
            for row in self.request_counts()
            if row["operation"] == wanted and status in (None, row["status"])
        )

    def reset_requests(self) -> None:
        self._send("DELETE", "/requests")
