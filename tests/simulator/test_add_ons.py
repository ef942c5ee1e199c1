"""Add-ons after creation: added, changed, disabled (gone from the cluster's `add_ons`, still
served by the add-on endpoints), re-enabled, deleted. Every answer is checked against the
contract by the `api` fixture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings

TIMINGS = Timings()
CreateCluster = Callable[..., dict[str, Any]]
DASHBOARD_ON = {"dashboard": {"enabled": True}}


@pytest.fixture
def ready_cluster(create_cluster: CreateCluster, clock: FakeClock) -> str:
    cluster = create_cluster()
    clock.advance(TIMINGS.create_to_ready)
    return str(cluster["cluster_id"])


def add_ons_path(cluster_id: str, name: str = "") -> str:
    return f"/v1/compute/clusters/{cluster_id}/addons" + (f"/{name}" if name else "")


def cluster_add_ons(api: httpx.Client, cluster_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = api.get(f"/v1/compute/clusters/{cluster_id}").json()["add_ons"]
    return listed


def test_an_add_on_added_after_creation_runs_and_shows_in_the_cluster(
    api: httpx.Client, ready_cluster: str
) -> None:
    made = api.post(
        add_ons_path(ready_cluster),
        json={"name": "dash", "add_on_type": "dashboard", "config": DASHBOARD_ON},
    )
    assert made.status_code == 200, made.text
    assert made.json() == {
        "name": "dash",
        "add_on_type": "dashboard",
        "config": DASHBOARD_ON,
        "state": {"dashboard": {}},
    }
    assert cluster_add_ons(api, ready_cluster) == [made.json()]
    assert api.get(add_ons_path(ready_cluster, "dash")).json() == made.json()


def test_a_disabled_add_on_leaves_the_cluster_view_and_can_be_re_enabled(
    api: httpx.Client, ready_cluster: str
) -> None:
    api.post(
        add_ons_path(ready_cluster),
        json={"name": "dash", "add_on_type": "dashboard", "config": DASHBOARD_ON},
    )
    off = api.put(
        add_ons_path(ready_cluster, "dash"), json={"config": {"dashboard": {"enabled": False}}}
    ).json()
    assert off["state"] == {}
    assert cluster_add_ons(api, ready_cluster) == []
    listed = api.get(add_ons_path(ready_cluster)).json()["add_ons"]
    assert [(a["name"], a["config"]) for a in listed] == [
        ("dash", {"dashboard": {"enabled": False}})
    ]

    on = api.put(add_ons_path(ready_cluster, "dash"), json={"config": DASHBOARD_ON}).json()
    assert on["state"] == {"dashboard": {}}
    assert [a["name"] for a in cluster_add_ons(api, ready_cluster)] == ["dash"]


def test_the_cluster_update_re_enables_a_disabled_add_on_by_name(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster(
        add_ons=[{"name": "lamp", "add_on_type": "headlamp", "config": {"headlamp": {}}}]
    )
    clock.advance(TIMINGS.create_to_ready)
    cluster_id = cluster["cluster_id"]
    assert cluster_add_ons(api, cluster_id) == []  # created without enabled: true
    change = {"add_ons": [{"name": "lamp", "config": {"headlamp": {"enabled": True}}}]}
    updated = api.put(f"/v1/compute/clusters/{cluster_id}", json=change).json()
    assert [(a["name"], a["state"]) for a in updated["add_ons"]] == [("lamp", {"headlamp": {}})]


def test_an_add_on_is_stateless_until_the_control_plane_is_ready(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster(
        add_ons=[{"name": "dash", "add_on_type": "dashboard", "config": DASHBOARD_ON}]
    )
    assert cluster["add_ons"][0]["state"] == {}
    clock.advance(TIMINGS.control_plane)
    assert cluster_add_ons(api, cluster["cluster_id"])[0]["state"] == {"dashboard": {}}


def test_add_on_changes_merge_into_the_config(api: httpx.Client, ready_cluster: str) -> None:
    api.post(
        add_ons_path(ready_cluster),
        json={"name": "web", "add_on_type": "ingress", "config": {"ingress": {"enabled": True}}},
    )
    changed = api.put(add_ons_path(ready_cluster, "web"), json={"config": {"torchpass": {}}})
    assert changed.json()["config"] == {"ingress": {"enabled": True}, "torchpass": {}}
    assert api.put(add_ons_path(ready_cluster, "web"), json={}).json() == changed.json()


def test_deleting_an_add_on_removes_it(api: httpx.Client, ready_cluster: str) -> None:
    api.post(
        add_ons_path(ready_cluster),
        json={"name": "dash", "add_on_type": "dashboard", "config": DASHBOARD_ON},
    )
    assert api.delete(add_ons_path(ready_cluster, "dash")).json() == {}
    assert api.get(add_ons_path(ready_cluster)).json() == {"add_ons": []}
    assert cluster_add_ons(api, ready_cluster) == []
    assert api.delete(add_ons_path(ready_cluster, "dash")).status_code == 404


def test_add_on_refusals_say_why(api: httpx.Client, ready_cluster: str, clock: FakeClock) -> None:
    path = add_ons_path(ready_cluster)
    api.post(path, json={"name": "dash", "add_on_type": "dashboard"})
    taken = api.post(path, json={"name": "dash", "add_on_type": "ingress"})
    assert taken.status_code == 409
    assert taken.json()["code"] == 6  # ALREADY_EXISTS: not a conflict that heals
    unknown_type = api.post(path, json={"name": "graf", "add_on_type": "grafana"})
    assert unknown_type.status_code == 400
    assert "`add_on_type`" in unknown_type.json()["message"]
    assert api.post(path, json={"name": " ", "add_on_type": "ingress"}).status_code == 400
    assert api.get(add_ons_path(ready_cluster, "nope")).status_code == 404
    assert api.get(add_ons_path("no-such-cluster")).status_code == 404
    bad_body = api.post(add_ons_path("no-such-cluster"), json={"name": 5})
    assert bad_body.status_code == 400  # the body is read before the cluster is looked up

    api.delete(f"/v1/compute/clusters/{ready_cluster}")
    deleting = api.post(path, json={"name": "late", "add_on_type": "ingress"})
    assert deleting.status_code == 409
    assert "being deleted" in deleting.json()["message"]
