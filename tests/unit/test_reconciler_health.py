"""Node health through the reconciler: a remediation waiting for approval, a failed one and
firing alerts show as NodesHealthy, status.health and events; a healthy fleet reads no
alerts; a failed read leaves Ready and Synced alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.unit.reconciler_harness import (
    KEY,
    SCENARIO_TIMEOUT_SECONDS,
    SLOW_POLL_SECONDS,
    Harness,
    Simulator,
    running,
)
from together_operator.controller.objects import ObjectMemory
from together_operator.together import operations

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)

ALERTS = operations.LIST_HEALTH_CHECK_ALERTS.id


def approve(sim: Simulator, cluster_id: str, instance_id: str, remediation_id: str) -> None:
    """A person approving a remediation at Together (the operator never does)."""
    path = operations.APPROVE_REMEDIATION.url(
        cluster_id=cluster_id, instance_id=instance_id, remediation_id=remediation_id
    )
    answer = httpx.post(
        f"{sim.running.base_url}/v1{path}",
        json={},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text


async def look(harness: Harness) -> None:
    """A List, then a visit: what the operator does when Together's cluster changed."""
    await harness.fresh_list()
    await harness.visit()


async def test_an_alert_with_a_remediation_waiting_for_approval_shows_until_it_resolves(
    harness: Harness, sim: Simulator
) -> None:
    cluster_id = await harness.create_ready_cluster()
    assert harness.condition("NodesHealthy")["status"] == "True"
    alert = sim.admin.raise_alert(
        cluster_id, alert_name="GpuXidError", remediation_mode="REMEDIATION_MODE_REBOOT_VM"
    )
    await look(harness)

    healthy = harness.condition("NodesHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "RemediationNeedsApproval")
    assert "approve or reject it at Together" in healthy["message"]
    shown = harness.status()["health"]
    assert shown["firingAlerts"] == 1
    [firing] = shown["alerts"]
    assert (firing["id"], firing["name"], firing["severity"]) == (
        alert.passive_health_check_alert_id,
        "GpuXidError",
        "CRITICAL",
    )
    [remediation] = shown["remediations"]
    assert remediation["state"] == "PENDING_APPROVAL"
    assert remediation["id"] == alert.node_remediation_intent_id
    assert (remediation["mode"], remediation["trigger"]) == ("REBOOT_VM", "AUTOMATED")
    assert harness.condition("Ready")["status"] == "True", "node health never changes Ready"
    assert {"HealthAlertFiring", "Remediation"} <= set(harness.reasons())

    sim.admin.resolve_alert(cluster_id, alert.passive_health_check_alert_id)
    await look(harness)
    healthy = harness.condition("NodesHealthy")
    assert (healthy["status"], healthy["reason"]) == ("True", "NodesHealthy")
    assert harness.status()["health"] == {"firingAlerts": 0}
    assert "HealthAlertResolved" in harness.reasons()
    ended = [m for _, r, m in harness.events if r == "Remediation" and "AUTO_RESOLVED" in m]
    assert len(ended) == 1


async def test_a_failed_remediation_needs_a_person_and_is_said_once(
    harness: Harness, sim: Simulator
) -> None:
    cluster_id = await harness.create_ready_cluster()
    alert = sim.admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_REBOOT_VM")
    remediation_id = alert.node_remediation_intent_id
    assert remediation_id is not None
    assert alert.instance_id is not None
    approve(sim, cluster_id, alert.instance_id, remediation_id)
    sim.admin.fail_remediation(cluster_id, remediation_id, "the host did not come back")
    for _ in range(3):
        await look(harness)
    healthy = harness.condition("NodesHealthy")
    assert (healthy["status"], healthy["reason"]) == ("False", "RemediationFailed")
    [shown] = harness.status()["health"]["remediations"]
    assert (shown["state"], shown["message"]) == ("FAILED", "the host did not come back")
    failed = [m for _, r, m in harness.events if r == "Remediation" and "FAILED" in m]
    assert len(failed) == 1


async def test_a_healthy_fleet_reads_no_alerts(harness: Harness, sim: Simulator) -> None:
    await harness.create_ready_cluster()
    for _ in range(3):
        await look(harness)
        await asyncio.sleep(SLOW_POLL_SECONDS)  # long enough for a timer, were there one
    assert sim.requests(ALERTS) == 0
    healthy = harness.condition("NodesHealthy")
    assert (healthy["status"], healthy["reason"]) == ("True", "NoRemediationOpen")


async def test_an_alert_without_a_remediation_shows_with_the_health_check_timer(
    sim: Simulator,
) -> None:
    async with running(sim, health_check_seconds=SLOW_POLL_SECONDS) as harness:
        cluster_id = await harness.create_ready_cluster()
        reads = sim.requests(ALERTS)
        sim.admin.raise_alert(cluster_id, alert_name="NvlinkDown", severity="PHC_SEVERITY_WARNING")
        await asyncio.sleep(SLOW_POLL_SECONDS)
        revisit = await harness.visit()
        assert revisit is not None
        assert revisit <= SLOW_POLL_SECONDS, "alerts firing are read again on a timer"
        assert sim.requests(ALERTS) == reads + 1
        healthy = harness.condition("NodesHealthy")
        assert (healthy["status"], healthy["reason"]) == ("False", "HealthAlertsFiring")
        assert "NvlinkDown (WARNING)" in healthy["message"]


async def test_alerts_that_cannot_be_read_leave_ready_and_synced_alone(
    harness: Harness, sim: Simulator
) -> None:
    cluster_id = await harness.create_ready_cluster()
    sim.admin.fail(503, ALERTS, count=1)
    sim.admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_REBOOT_VM")
    await look(harness)
    # The remediation (in the cluster body) needs a person whatever the alerts say.
    assert harness.condition("NodesHealthy")["reason"] == "RemediationNeedsApproval"
    assert harness.condition("Ready")["status"] == "True"
    assert harness.condition("Synced")["status"] == "True"
    assert sim.requests(ALERTS, "503") == 1
    await asyncio.sleep(SLOW_POLL_SECONDS)
    await look(harness)  # read again while there is trouble
    assert harness.status()["health"]["firingAlerts"] == 1


async def test_a_restarted_operator_repeats_no_event_and_reads_shown_alerts_again(
    harness: Harness, sim: Simulator
) -> None:
    cluster_id = await harness.create_ready_cluster()
    sim.admin.raise_alert(cluster_id, alert_name="GpuXidError")  # no remediation
    sim.admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_REBOOT_VM")
    await look(harness)
    assert harness.status()["health"]["firingAlerts"] == 2
    before = len(harness.events)

    harness.memory = ObjectMemory()  # what a new process knows: the object only
    reads = sim.requests(ALERTS)
    await look(harness)
    assert sim.requests(ALERTS) == reads + 1, "the alerts status showed are read again"
    assert harness.events[before:] == []
    assert harness.status()["health"]["firingAlerts"] == 2
