"""The add-on rules, without I/O: which calls a spec asks for, and what status shows."""

from __future__ import annotations

from typing import Any

from tests.factories import cluster_info, gpucluster_spec
from together_operator.gpucluster import addons
from together_operator.together.models import AddOnInfo


def info(name: str, kind: str, *, enabled: bool, running: bool = False) -> AddOnInfo:
    return AddOnInfo.model_validate(
        {
            "name": name,
            "add_on_type": kind,
            "config": {kind: {"enabled": enabled}},
            "state": {kind: {}} if running else {},
        }
    )


def wanted(*add_ons: tuple[str, str, bool]) -> Any:
    return gpucluster_spec(
        addOns=[{"name": n, "addOnType": k, "config": {k: {"enabled": e}}} for n, k, e in add_ons]
    )


def test_removals_come_first_and_only_of_add_ons_the_spec_named() -> None:
    present = [info("old", "dashboard", enabled=True), info("theirs", "ingress", enabled=True)]
    steps, conflict = addons.steps_for(
        wanted(("new", "dashboard", True)), present, recorded={"old"}
    )
    assert conflict is None
    assert [s.says for s in steps] == ["remove old", "add new"]


def test_a_config_the_spec_does_not_set_is_together_s_to_keep() -> None:
    present = [info("lamp", "headlamp", enabled=True)]
    spec = gpucluster_spec(addOns=[{"name": "lamp", "addOnType": "headlamp"}])
    assert addons.steps_for(spec, present, recorded=()) == ((), None)


def test_a_disabled_add_on_is_re_enabled_by_a_change_not_an_add() -> None:
    present = [info("lamp", "headlamp", enabled=False)]
    steps, _ = addons.steps_for(wanted(("lamp", "headlamp", True)), present, recorded={"lamp"})
    assert [s.says for s in steps] == ["change lamp"]


def test_another_type_under_the_spec_s_name_is_a_conflict_and_no_step() -> None:
    present = [info("lamp", "ingress", enabled=True)]
    steps, conflict = addons.steps_for(wanted(("lamp", "headlamp", True)), present, ())
    assert steps == ()
    assert conflict == addons.TypeConflict("lamp", "headlamp", "ingress")


def test_status_takes_configs_from_the_listing_and_running_from_the_cluster() -> None:
    # Just after the operator disabled lamp and added dash: the List still shows lamp on.
    cluster = cluster_info(
        add_ons=[
            {
                "name": "lamp",
                "add_on_type": "headlamp",
                "config": {"headlamp": {"enabled": True}},
                "state": {"headlamp": {}},
            }
        ]
    )
    listed = [info("lamp", "headlamp", enabled=False), info("dash", "dashboard", enabled=True)]
    shown = addons.statuses(cluster, listed, managed={"lamp", "dash"})
    assert [(s.name, s.state) for s in shown] == [("lamp", "Disabled"), ("dash", "Pending")]

    running = cluster_info(
        add_ons=[
            {
                "name": "dash",
                "add_on_type": "dashboard",
                "config": {"dashboard": {"enabled": True}},
                "state": {"dashboard": {}},
            }
        ]
    )
    assert addons.statuses(running, listed, managed=())[1].state == "Running"


def test_without_a_listing_managed_names_out_of_sight_are_kept() -> None:
    cluster = cluster_info(add_ons=[])
    shown = addons.statuses(cluster, None, managed={"lamp"})
    assert shown == []
    assert addons.still_managed(shown, {"lamp"}, listed=None) == {"lamp"}
    assert addons.still_managed(shown, {"lamp"}, listed=[]) == frozenset()


def test_the_listing_is_kept_while_the_cluster_reports_the_same_add_ons() -> None:
    on = {"name": "lamp", "add_on_type": "headlamp", "config": {"headlamp": {"enabled": True}}}
    a = cluster_info(add_ons=[on])
    b = cluster_info(add_ons=[{**on, "state": {"headlamp": {}}}])
    c = cluster_info(add_ons=[])
    assert addons.reported_digest(a) == addons.reported_digest(b)  # running: same configs
    assert addons.reported_digest(a) != addons.reported_digest(c)


def test_managed_records_are_read_from_status_add_ons() -> None:
    status = [
        {"name": "lamp", "managed": True},
        {"name": "theirs", "managed": False},
        {"managed": True},
        "junk",
    ]
    assert addons.recorded_managed(status) == {"lamp"}
    assert addons.recorded_managed(None) == frozenset()
