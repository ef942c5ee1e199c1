"""The node-health rules, without I/O: what needs a person first, what counts as trouble."""

from __future__ import annotations

from typing import Any

from tests.factories import cluster_info
from together_operator.gpucluster import health
from together_operator.gpucluster.spec import AlertStatus, NodeHealthStatus, RemediationStatus


def remediation(state: str, node: str = "n1") -> RemediationStatus:
    return RemediationStatus(node=node, id=f"r-{node}", state=state)


def firing(count: int) -> list[AlertStatus]:
    return [
        AlertStatus(id=f"a{i}", name="Xid", severity="CRITICAL", node="n1") for i in range(count)
    ]


def test_what_needs_a_person_comes_first() -> None:
    mixed = NodeHealthStatus(
        firing_alerts=3,
        alerts=firing(2),
        remediations=[remediation("RUNNING", "n1"), remediation("FAILED", "n2")],
    )
    said = health.verdict(mixed, None, alerts_read=True)
    assert (said.status, said.reason) == ("False", "RemediationFailed")
    only_alerts = NodeHealthStatus(firing_alerts=3, alerts=firing(2))
    said = health.verdict(only_alerts, None, alerts_read=True)
    assert (said.status, said.reason) == ("False", "HealthAlertsFiring")
    assert said.message.endswith("and 1 more")
    said = health.verdict(NodeHealthStatus(), "503 from Together", alerts_read=False)
    assert (said.status, said.reason) == ("Unknown", "HealthCheckFailed")


def worker(remediation_state: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {"node_id": "n", "status": "", "host_name": "host-1"}
    if remediation_state is not None:
        node["latest_remediation"] = {"id": "r1", "state": remediation_state}
    return node


def test_trouble_is_an_open_or_failed_remediation_or_a_degraded_cluster() -> None:
    assert health.trouble(cluster_info(gpu_worker_nodes=[worker(None)])) == ""
    assert health.trouble(cluster_info(gpu_worker_nodes=[worker("SUCCEEDED")])) == ""
    assert health.trouble(cluster_info(gpu_worker_nodes=[worker("PENDING_APPROVAL")])) != ""
    assert health.trouble(cluster_info(gpu_worker_nodes=[worker("FAILED")])) != ""
    assert health.trouble(cluster_info(status="Degraded")) != ""


def test_a_remediation_that_ended_unseen_is_not_reported() -> None:
    events, states = health.remediation_events(
        {}, cluster_info(gpu_worker_nodes=[worker("SUCCEEDED")])
    )
    assert events == []
    assert states == {"r1": "SUCCEEDED"}
    events, _ = health.remediation_events(
        {"r1": "RUNNING"}, cluster_info(gpu_worker_nodes=[worker("SUCCEEDED")])
    )
    assert [e.message.rsplit(" ", 1)[-1] for e in events] == ["SUCCEEDED"]
