"""Remediations and passive health-check alerts: their states, the review actions, and the
admin API's ways to raise and resolve alerts and to fail a remediation. Every API answer is
checked against the contract by the `api` fixture."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import RunningSimulator

TIMINGS = Timings()
STEP = TIMINGS.remediation_step
CreateCluster = Callable[..., dict[str, Any]]
ALERTS = "/v1/compute/passive_health_check_alerts"


@pytest.fixture
def sim_admin(sim: RunningSimulator) -> Iterator[SimulatorAdmin]:
    with SimulatorAdmin(sim.admin_url) as admin:
        yield admin


@pytest.fixture
def node(create_cluster: CreateCluster, clock: FakeClock, api: httpx.Client) -> tuple[str, str]:
    """(cluster_id, instance_id) of a GPU worker of a Ready two-node cluster."""
    cluster_id = create_cluster(num_gpus=16)["cluster_id"]
    clock.advance(TIMINGS.create_to_ready)
    workers = api.get(f"/v1/compute/clusters/{cluster_id}").json()["gpu_worker_nodes"]
    return cluster_id, workers[0]["instance_id"]


def remediations_path(cluster_id: str, instance_id: str, *rest: str) -> str:
    return "/".join(
        [f"/v1/compute/clusters/{cluster_id}/instances/{instance_id}/remediations", *rest]
    )


def state_of(api: httpx.Client, cluster_id: str, instance_id: str, remediation_id: str) -> str:
    path = remediations_path(cluster_id, instance_id, remediation_id)
    return str(api.get(path).json()["state"])


@pytest.mark.parametrize(
    ("mode", "states"),
    [
        ("REMEDIATION_MODE_VM_ONLY", ["PENDING", "RUNNING", "SUCCEEDED"]),
        (
            "REMEDIATION_MODE_HOST_AWARE",
            ["PENDING", "QUARANTINING", "QUARANTINED", "RUNNING", "SUCCEEDED"],
        ),
    ],
)
def test_a_manual_remediation_runs_through_its_states(
    api: httpx.Client, clock: FakeClock, node: tuple[str, str], mode: str, states: list[str]
) -> None:
    cluster_id, instance_id = node
    made = api.post(remediations_path(cluster_id, instance_id), json={"mode": mode, "reason": "x"})
    assert made.status_code == 200, made.text
    body = made.json()
    assert (body["trigger"], body["requested_by"]) == ("REMEDIATION_TRIGGER_MANUAL", "api")
    seen = [body["state"]]
    for _ in states[1:]:
        clock.advance(STEP)
        seen.append(state_of(api, cluster_id, instance_id, body["id"]))
    assert seen == states
    done = api.get(remediations_path(cluster_id, instance_id, body["id"])).json()
    assert done["start_time"] < done["end_time"]
    worker = api.get(f"/v1/compute/clusters/{cluster_id}").json()["gpu_worker_nodes"][0]
    assert worker["latest_remediation"]["id"] == body["id"]


def test_an_alert_opens_a_remediation_that_waits_for_approval(
    api: httpx.Client, clock: FakeClock, sim_admin: SimulatorAdmin, node: tuple[str, str]
) -> None:
    cluster_id, instance_id = node
    alert = sim_admin.raise_alert(
        cluster_id, instance_id=instance_id, remediation_mode="REMEDIATION_MODE_HOST_AWARE"
    )
    remediation_id = alert.node_remediation_intent_id
    assert remediation_id
    path = remediations_path(cluster_id, instance_id, remediation_id)
    waiting = api.get(path).json()
    assert (waiting["state"], waiting["trigger"]) == (
        "PENDING_APPROVAL",
        "REMEDIATION_TRIGGER_AUTOMATED",
    )
    assert [a["passive_health_check_alert_id"] for a in waiting["linked_alerts"]] == [
        alert.passive_health_check_alert_id
    ]
    clock.advance(10 * STEP)
    assert api.get(path).json()["state"] == "PENDING_APPROVAL"  # nothing moves unapproved

    refused = api.post(path + "/approve", json={"mode": "REMEDIATION_MODE_HOST_POWER_CYCLE"})
    assert refused.status_code == 400
    assert "approval override" in refused.json()["message"]
    approved = api.post(
        path + "/approve", json={"comment": "go", "mode": "REMEDIATION_MODE_VM_ONLY"}
    )
    assert approved.json()["state"] == "PENDING"
    assert (approved.json()["review_comment"], approved.json()["mode"]) == (
        "go",
        "REMEDIATION_MODE_VM_ONLY",
    )
    again = api.post(path + "/approve", json={})
    assert again.status_code == 400
    assert again.json()["code"] == 9  # FAILED_PRECONDITION
    clock.advance(2 * STEP)
    assert api.get(path).json()["state"] == "SUCCEEDED"


def test_reject_and_cancel_end_in_cancelled_only_from_the_states_they_allow(
    api: httpx.Client, sim_admin: SimulatorAdmin, node: tuple[str, str]
) -> None:
    cluster_id, instance_id = node

    def automated() -> str:
        alert = sim_admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_VM_ONLY")
        assert alert.node_remediation_intent_id
        return alert.node_remediation_intent_id

    rejected = api.post(
        remediations_path(cluster_id, instance_id, automated(), "reject"), json={"comment": "no"}
    ).json()
    assert (rejected["state"], rejected["review_comment"]) == ("CANCELLED", "no")
    cancelled = api.post(remediations_path(cluster_id, "-", automated(), "cancel"))
    assert cancelled.json()["state"] == "CANCELLED"

    manual = api.post(
        remediations_path(cluster_id, instance_id), json={"mode": "REMEDIATION_MODE_REBOOT_VM"}
    ).json()
    not_reviewable = api.post(
        remediations_path(cluster_id, instance_id, manual["id"], "reject"), json={}
    )
    assert not_reviewable.status_code == 400
    assert "PENDING_APPROVAL" in not_reviewable.json()["message"]
    assert api.post(remediations_path(cluster_id, instance_id, manual["id"], "cancel")).json()[
        "state"
    ] == ("CANCELLED")
    body_required = api.post(remediations_path(cluster_id, instance_id, automated(), "reject"))
    assert body_required.status_code == 400


def test_a_resolved_alert_auto_resolves_its_waiting_remediation(
    api: httpx.Client, sim_admin: SimulatorAdmin, node: tuple[str, str], clock: FakeClock
) -> None:
    cluster_id, instance_id = node
    alert = sim_admin.raise_alert(cluster_id, remediation_mode="REMEDIATION_MODE_VM_ONLY")
    clock.advance(1)
    resolved = sim_admin.resolve_alert(cluster_id, alert.passive_health_check_alert_id)
    assert resolved.resolved_at is not None
    assert alert.node_remediation_intent_id
    path = remediations_path(cluster_id, instance_id, alert.node_remediation_intent_id)
    assert api.get(path).json()["state"] == "AUTO_RESOLVED"


def test_the_admin_api_fails_an_active_remediation(
    api: httpx.Client, sim_admin: SimulatorAdmin, node: tuple[str, str]
) -> None:
    cluster_id, instance_id = node
    made = api.post(
        remediations_path(cluster_id, instance_id), json={"mode": "REMEDIATION_MODE_VM_ONLY"}
    ).json()
    failed = sim_admin.fail_remediation(cluster_id, made["id"], "host did not come back")
    assert (failed.state, failed.error_message) == ("FAILED", "host did not come back")
    assert state_of(api, cluster_id, instance_id, made["id"]) == "FAILED"
    with pytest.raises(httpx.HTTPStatusError):
        sim_admin.fail_remediation(cluster_id, made["id"])  # FAILED is not active


def test_a_client_chosen_remediation_id_makes_the_create_idempotent(
    api: httpx.Client, node: tuple[str, str]
) -> None:
    cluster_id, instance_id = node
    path = remediations_path(cluster_id, instance_id)
    body = {"mode": "REMEDIATION_MODE_VM_ONLY"}
    first = api.post(path, params={"remediation_id": "mine-1"}, json=body).json()
    second = api.post(path, params={"remediation_id": "mine-1"}, json=body).json()
    assert first == second
    assert first["id"] == "mine-1"
    assert len(api.get(path).json()["remediations"]) == 1


def test_remediation_lists_filter_page_and_take_the_wildcard(
    api: httpx.Client, sim_admin: SimulatorAdmin, node: tuple[str, str], clock: FakeClock
) -> None:
    cluster_id, instance_id = node
    workers = api.get(f"/v1/compute/clusters/{cluster_id}").json()["gpu_worker_nodes"]
    other = workers[1]["instance_id"]
    made = []
    for target in (instance_id, other, instance_id):
        made.append(
            api.post(
                remediations_path(cluster_id, target), json={"mode": "REMEDIATION_MODE_VM_ONLY"}
            ).json()["id"]
        )
        clock.advance(1)
    sim_admin.raise_alert(
        cluster_id, instance_id=other, remediation_mode="REMEDIATION_MODE_VM_ONLY"
    )

    everything = api.get(remediations_path(cluster_id, "-")).json()
    assert len(everything["remediations"]) == 4
    assert (everything["has_next"], everything["next_page_token"]) == (False, "")
    mine = api.get(remediations_path(cluster_id, instance_id)).json()["remediations"]
    assert [r["id"] for r in mine] == [made[2], made[0]]  # newest first
    oldest_first = api.get(
        remediations_path(cluster_id, instance_id), params={"order_by": "create_time asc"}
    ).json()["remediations"]
    assert [r["id"] for r in oldest_first] == [made[0], made[2]]
    waiting = api.get(
        remediations_path(cluster_id, "-"),
        params=[("state", "PENDING_APPROVAL"), ("trigger", "REMEDIATION_TRIGGER_AUTOMATED")],
    ).json()["remediations"]
    assert [r["instance_id"] for r in waiting] == [other]

    first_page = api.get(remediations_path(cluster_id, "-"), params={"page_size": 3}).json()
    assert (len(first_page["remediations"]), first_page["has_next"]) == (3, True)
    rest = api.get(
        remediations_path(cluster_id, "-"),
        params={"page_size": 3, "page_token": first_page["next_page_token"]},
    ).json()
    assert (len(rest["remediations"]), rest["has_next"]) == (1, False)

    for params in ({"state": "DONE"}, {"page_size": "many"}, {"page_token": "x"}):
        assert api.get(remediations_path(cluster_id, "-"), params=params).status_code == 400
    assert api.get(remediations_path(cluster_id, "i-unknown")).status_code == 404
    wildcard_create = api.post(
        remediations_path(cluster_id, "-"), json={"mode": "REMEDIATION_MODE_VM_ONLY"}
    )
    assert wildcard_create.status_code == 400


def test_alerts_are_listed_by_cluster_status_severity_and_order(
    api: httpx.Client, sim_admin: SimulatorAdmin, node: tuple[str, str], clock: FakeClock
) -> None:
    cluster_id, instance_id = node
    first = sim_admin.raise_alert(cluster_id, severity="PHC_SEVERITY_WARNING")
    clock.advance(1)
    second = sim_admin.raise_alert(
        cluster_id, alert_name="NodeDown", annotations={"summary": "gone"}
    )
    clock.advance(1)
    sim_admin.resolve_alert(cluster_id, first.passive_health_check_alert_id)

    def ids(**params: Any) -> list[str]:
        body = api.get(ALERTS, params={"cluster_id": cluster_id, **params}).json()
        return [a["passive_health_check_alert_id"] for a in body["alerts"]]

    assert ids() == [second.passive_health_check_alert_id]  # firing ones by default
    assert ids(status="PHC_ALERT_STATUS_RESOLVED") == [first.passive_health_check_alert_id]
    both = [second.passive_health_check_alert_id, first.passive_health_check_alert_id]
    assert ids(status="PHC_ALERT_STATUS_ALL") == both
    assert (
        ids(status="PHC_ALERT_STATUS_ALL", order_by="PHC_ALERT_ORDER_STARTED_AT_ASC") == both[::-1]
    )
    assert ids(status="PHC_ALERT_STATUS_ALL", severity_filter="PHC_SEVERITY_WARNING") == [
        first.passive_health_check_alert_id
    ]
    assert ids(instance_id="i-other") == []
    alert = api.get(ALERTS, params={"cluster_id": cluster_id}).json()["alerts"][0]
    assert (alert["instance_id"], alert["annotations"]) == (instance_id, {"summary": "gone"})

    assert api.get(ALERTS).status_code == 400  # cluster_id is required of API keys
    assert api.get(ALERTS, params={"cluster_id": cluster_id, "status": "X"}).status_code == 400
