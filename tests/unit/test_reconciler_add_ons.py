"""The reconciler keeping a cluster's add-ons to spec.addOns after creation, through the
add-on endpoints: add, change, disable, re-enable, remove; what it never touches; what it
costs when nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.unit.reconciler_harness import (
    KEY,
    SCENARIO_TIMEOUT_SECONDS,
    Harness,
    Simulator,
    spec,
)
from together_operator.together import operations
from together_operator.together.client import TogetherClient
from together_operator.together.models import (
    AddOnConfig,
    AddOnType,
    ClusterAddOnCreateRequest,
    Toggle,
)

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)

LIST, ADD, CHANGE, REMOVE = (
    operations.LIST_ADDONS.id,
    operations.CREATE_ADDON.id,
    operations.UPDATE_ADDON.id,
    operations.DELETE_ADDON.id,
)


def add_on(name: str, kind: str, enabled: bool = True) -> dict[str, Any]:
    return {"name": name, "addOnType": kind, "config": {kind: {"enabled": enabled}}}


LAMP_ON, LAMP_OFF = add_on("lamp", "headlamp"), add_on("lamp", "headlamp", enabled=False)
DASH = add_on("dash", "dashboard")


@pytest.fixture
async def together(sim: Simulator) -> AsyncIterator[TogetherClient]:
    """Together as a person at its console would use it."""
    client = TogetherClient(KEY, base_url=sim.running.base_url, timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


def shown(harness: Harness) -> dict[str, tuple[str, str, bool]]:
    """status.addOns: name -> (type, state, managed)."""
    return {
        a["name"]: (a["addOnType"], a["state"], a["managed"])
        for a in harness.status().get("addOns") or []
    }


async def settle(harness: Harness, wanted: dict[str, Any], generation: int) -> None:
    """Visit until the object is Ready again at ``generation`` with nothing left to do."""

    def settled() -> bool:
        ready = harness.condition("Ready")
        return bool(ready["status"] == "True" and ready["observedGeneration"] == generation)

    await harness.visit_until(
        settled, f"generation {generation} settled", spec=wanted, generation=generation
    )


async def at_together(together: TogetherClient, cluster_id: str) -> dict[str, bool]:
    """Every add-on at Together: name -> enabled."""
    return {a.name: a.enabled for a in await together.list_add_ons(cluster_id)}


async def test_add_ons_are_added_changed_disabled_re_enabled_and_removed_after_ready(
    harness: Harness, sim: Simulator, together: TogetherClient
) -> None:
    first = spec(addOns=[LAMP_ON])
    cluster_id = await harness.create_ready_cluster(first)
    assert shown(harness) == {"lamp": ("headlamp", "Running", True)}

    # Gains an add-on, and disables the one it had.
    second = spec(addOns=[LAMP_OFF, DASH])
    await settle(harness, second, generation=2)
    assert await at_together(together, cluster_id) == {"lamp": False, "dash": True}
    assert [a.name for a in (await together.get_cluster(cluster_id)).add_ons] == ["dash"]
    assert shown(harness) == {
        "lamp": ("headlamp", "Disabled", True),
        "dash": ("dashboard", "Running", True),
    }
    assert (sim.requests(ADD), sim.requests(CHANGE), sim.requests(REMOVE)) == (1, 1, 0)

    # Re-enables the disabled one: only the add-on endpoints can see it to do so.
    third = spec(addOns=[LAMP_ON, DASH])
    await settle(harness, third, generation=3)
    assert await at_together(together, cluster_id) == {"lamp": True, "dash": True}
    assert shown(harness)["lamp"] == ("headlamp", "Running", True)

    # Loses one.
    fourth = spec(addOns=[LAMP_ON])
    await settle(harness, fourth, generation=4)
    assert await at_together(together, cluster_id) == {"lamp": True}
    assert shown(harness) == {"lamp": ("headlamp", "Running", True)}
    assert (sim.requests(ADD), sim.requests(CHANGE), sim.requests(REMOVE)) == (1, 2, 1)
    assert "UpdatingAddOns" in harness.reasons()


async def test_removing_every_add_on_from_the_spec_removes_a_disabled_one_too(
    harness: Harness, sim: Simulator, together: TogetherClient
) -> None:
    cluster_id = await harness.create_ready_cluster(spec(addOns=[LAMP_OFF]))
    assert shown(harness) == {"lamp": ("headlamp", "Disabled", True)}
    await settle(harness, spec(), generation=2)
    assert await at_together(together, cluster_id) == {}
    assert sim.requests(REMOVE) == 1
    assert "addOns" not in harness.status()


async def test_an_add_on_the_spec_never_named_is_shown_and_never_touched(
    harness: Harness, sim: Simulator, together: TogetherClient
) -> None:
    cluster_id = await harness.create_ready_cluster(spec(addOns=[LAMP_ON]))
    theirs = ClusterAddOnCreateRequest(
        name="their-ingress",
        add_on_type=AddOnType.INGRESS,
        config=AddOnConfig(ingress=Toggle(enabled=True)),
    )
    await together.create_add_on(cluster_id, theirs)
    await harness.fresh_list()
    await harness.visit(spec(addOns=[LAMP_ON]))
    assert shown(harness)["their-ingress"] == ("ingress", "Running", False)

    await settle(harness, spec(addOns=[]), generation=2)
    assert await at_together(together, cluster_id) == {"their-ingress": True}
    assert sim.requests(REMOVE) == 1  # lamp, which the spec had named
    assert shown(harness) == {"their-ingress": ("ingress", "Running", False)}


async def test_an_add_on_of_the_same_name_and_another_type_stalls_without_a_call(
    harness: Harness, sim: Simulator, together: TogetherClient
) -> None:
    cluster_id = await harness.create_ready_cluster()
    clash = ClusterAddOnCreateRequest(name="lamp", add_on_type=AddOnType.INGRESS)
    await together.create_add_on(cluster_id, clash)
    sim.admin.reset_requests()
    for _ in range(2):
        await harness.visit(spec(addOns=[LAMP_ON]), generation=2)
    stalled = harness.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "AddOnTypeConflict")
    assert "'lamp'" in stalled["message"]
    assert "another name" in stalled["message"]
    assert (sim.requests(ADD), sim.requests(CHANGE), sim.requests(REMOVE)) == (0, 0, 0)


async def test_add_on_changes_wait_for_a_settled_cluster(harness: Harness, sim: Simulator) -> None:
    cluster_id = await harness.create_ready_cluster(spec(addOns=[LAMP_ON]))
    sim.admin.force_status(cluster_id, "Updating")
    await harness.fresh_list()
    await harness.visit(spec(addOns=[LAMP_ON, DASH]), generation=2)
    reconciling = harness.condition("Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "Provisioning")
    assert sim.requests(ADD) == 0
    sim.admin.force_status(cluster_id, "Ready")
    await harness.fresh_list()
    await settle(harness, spec(addOns=[LAMP_ON, DASH]), generation=2)
    assert sim.requests(ADD) == 1


async def test_an_add_on_made_meanwhile_under_the_same_name_is_not_an_error(
    harness: Harness, sim: Simulator, together: TogetherClient
) -> None:
    cluster_id = await harness.create_ready_cluster(spec(addOns=[LAMP_ON]))  # listed here
    same = ClusterAddOnCreateRequest(
        name="dash",
        add_on_type=AddOnType.DASHBOARD,
        config=AddOnConfig(dashboard=Toggle(enabled=False)),
    )
    # Disabled, so the cluster's own add_ons do not show it: the operator's listing is
    # still good as far as it can tell, and its add is answered "already exists".
    await together.create_add_on(cluster_id, same)
    await settle(harness, spec(addOns=[LAMP_ON, DASH]), generation=2)
    assert sim.requests(ADD, "409") == 1
    assert await at_together(together, cluster_id) == {"lamp": True, "dash": True}
    assert harness.condition("Synced")["status"] == "True"


async def test_a_settled_object_with_add_ons_lists_them_no_more(
    harness: Harness, sim: Simulator
) -> None:
    wanted = spec(addOns=[LAMP_OFF, DASH])
    await harness.create_ready_cluster(wanted)
    await settle(harness, wanted, generation=1)
    listed, writes = sim.requests(LIST), len(harness.kube.writes)
    for _ in range(5):
        await harness.fresh_list()
        await harness.visit(wanted)
    assert sim.requests(LIST) == listed
    assert harness.kube.writes[writes:] == []
