"""Node health end to end: an automated remediation waiting for approval shows on the object
as NodesHealthy=False, with the alert behind it, and clears when the alert resolves."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import GPUClusters, OperatorProcess, Simulator
from tests.support import wait_for


def test_a_remediation_waiting_for_approval_shows_until_its_alert_resolves(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
) -> None:
    gpuclusters.create(namespace, "nodes")
    gpuclusters.wait_condition(namespace, "nodes", "Ready", "True")
    [row] = simulator.clusters_for(f"{namespace}-nodes")
    alert = simulator.admin.raise_alert(
        row.cluster.cluster_id,
        alert_name="GpuXidError",
        remediation_mode="REMEDIATION_MODE_REBOOT_VM",
    )

    healthy = gpuclusters.wait_condition(
        namespace, "nodes", "NodesHealthy", "False", reason="RemediationNeedsApproval"
    )
    assert "approve or reject it at Together" in healthy["message"]

    def health() -> dict[str, Any]:
        shown: dict[str, Any] = (gpuclusters.get(namespace, "nodes") or {})["status"]["health"]
        return shown

    shown = wait_for(lambda: health().get("alerts") and health(), timeout=30, what="the alert")
    assert [a["name"] for a in shown["alerts"]] == ["GpuXidError"]
    assert [r["state"] for r in shown["remediations"]] == ["PENDING_APPROVAL"]
    assert gpuclusters.condition(namespace, "nodes", "Ready")["status"] == "True"  # type: ignore[index]

    simulator.admin.resolve_alert(row.cluster.cluster_id, alert.passive_health_check_alert_id)
    gpuclusters.wait_condition(namespace, "nodes", "NodesHealthy", "True", reason="NodesHealthy")
    reasons = {e.reason for e in gpuclusters.events(namespace, "nodes")}
    assert {"HealthAlertFiring", "HealthAlertResolved", "Remediation"} <= reasons
    gpuclusters.delete_and_wait(namespace, "nodes")
