"""Add-ons after creation, end to end: the operator process applies spec.addOns changes to
the simulator through the add-on endpoints and shows them in status."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.conftest import API_KEY, GPUClusters, OperatorProcess, Simulator
from tests.support import wait_for
from together_operator.together import operations
from together_operator.together.client import TogetherClient
from together_operator.together.models import AddOnInfo, GPUClusterInfo

LAMP = {"name": "lamp", "addOnType": "headlamp", "config": {"headlamp": {"enabled": True}}}
LAMP_OFF = {**LAMP, "config": {"headlamp": {"enabled": False}}}
DASH = {"name": "dash", "addOnType": "dashboard", "config": {"dashboard": {"enabled": True}}}


def at_together(simulator: Simulator, cluster_id: str) -> tuple[list[AddOnInfo], GPUClusterInfo]:
    """Every add-on of the cluster (the add-on endpoints), and the cluster itself."""

    async def look() -> tuple[list[AddOnInfo], GPUClusterInfo]:
        together = TogetherClient(API_KEY, base_url=simulator.base_url, timeout=5)
        try:
            return (
                await together.list_add_ons(cluster_id),
                await together.get_cluster(cluster_id),
            )
        finally:
            await together.aclose()

    return asyncio.run(look())


WRITES = (operations.CREATE_ADDON, operations.UPDATE_ADDON, operations.DELETE_ADDON)


def test_add_ons_gained_changed_re_enabled_and_lost_after_ready(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
) -> None:
    gpuclusters.create(namespace, "tools", addOns=[LAMP])
    gpuclusters.wait_condition(namespace, "tools", "Ready", "True")
    [row] = simulator.clusters_for(f"{namespace}-tools")
    cluster_id = row.cluster.cluster_id
    before = {op.id: simulator.admin.request_count(op, "200") for op in WRITES}

    def at_simulator() -> dict[str, bool]:
        """name -> enabled, disabled ones included."""
        return {a.name: a.enabled for a in at_together(simulator, cluster_id)[0]}

    def settled_to(generation: int, shown: dict[str, tuple[str, bool]]) -> bool:
        obj = gpuclusters.get(namespace, "tools") or {}
        status = obj.get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        in_status = {a["name"]: (a["state"], a["managed"]) for a in status.get("addOns", [])}
        return (
            bool(ready)
            and ready[0]["status"] == "True"
            and ready[0]["observedGeneration"] == generation
            and in_status == shown
        )

    def step(generation: int, add_ons: list[dict[str, Any]], shown: Any, what: str) -> None:
        gpuclusters.patch_spec(namespace, "tools", {"addOns": add_ons})
        wait_for(lambda: settled_to(generation, shown), timeout=30, what=what)

    wait_for(lambda: settled_to(1, {"lamp": ("Running", True)}), timeout=30, what="lamp in status")
    step(
        2,
        [LAMP_OFF, DASH],
        {"lamp": ("Disabled", True), "dash": ("Running", True)},
        "dash added and lamp disabled",
    )
    assert at_simulator() == {"lamp": False, "dash": True}
    # The contract: a cluster's own add_ons lists the enabled ones only.
    assert [a.name for a in at_together(simulator, cluster_id)[1].add_ons] == ["dash"]

    step(3, [LAMP, DASH], {"lamp": ("Running", True), "dash": ("Running", True)}, "lamp again")
    assert at_simulator() == {"lamp": True, "dash": True}

    step(4, [LAMP], {"lamp": ("Running", True)}, "dash removed")
    assert at_simulator() == {"lamp": True}

    counts = {op.id: simulator.admin.request_count(op, "200") - before[op.id] for op in WRITES}
    assert counts == {
        operations.CREATE_ADDON.id: 1,
        operations.UPDATE_ADDON.id: 2,
        operations.DELETE_ADDON.id: 1,
    }
    reasons = [e.reason for e in gpuclusters.events(namespace, "tools")]
    assert "UpdatingAddOns" in reasons
    gpuclusters.delete_and_wait(namespace, "tools")
