"""deploy/argocd/health.lua gives Argo CD the right health in every state the operator writes.

The script runs in Lua 5.1 (the language of gopher-lua, which Argo CD embeds) with the
object as the global ``obj``, as Argo CD calls it.
"""

from __future__ import annotations

from typing import Any

import pytest
from lupa import lua51  # type: ignore[import-untyped]

from tests.deploy.gpucluster_states import NAME, NAMESPACE, all_states
from tests.deploy.manifests import DEPLOY

HEALTH_LUA = DEPLOY / "argocd" / "health.lua"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD would show them for ``obj``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return str(result["status"]), str(result["message"])


def describe(obj: dict[str, Any], kind: str) -> str:
    found = next(c for c in obj["status"]["conditions"] if c["type"] == kind)
    return f"{found['reason']}: {found['message']}"


STATES = all_states()
EXPECTED: dict[str, tuple[str, str]] = {
    "creating": ("Progressing", describe(STATES["creating"], "Reconciling")),
    "ready": ("Healthy", "Together reports the cluster Ready"),
    "scaling": ("Progressing", "Updating: applying numGpus"),
    "degraded": ("Degraded", describe(STATES["degraded"], "Stalled")),
    "stalled-unauthorized": ("Degraded", describe(STATES["stalled-unauthorized"], "Stalled")),
    "stalled-ambiguous-name": ("Degraded", describe(STATES["stalled-ambiguous-name"], "Stalled")),
    "stalled-adoption-refused": (
        "Degraded",
        describe(STATES["stalled-adoption-refused"], "Stalled"),
    ),
    "rate-limited": ("Progressing", describe(STATES["rate-limited"], "Reconciling")),
    "deleting": ("Progressing", "Deleting: waiting for Together to finish deleting"),
    "deleting-blocked": (
        "Degraded",
        "Deleting, blocked by " + describe(STATES["deleting-blocked"], "Stalled"),
    ),
    "stale-generation": ("Progressing", "Waiting for the operator to observe generation 3"),
    "paused": ("Suspended", "Together reports the cluster Paused"),
}


def test_every_state_has_an_expectation() -> None:
    assert set(STATES) == set(EXPECTED)


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_health_of_each_state(state: str) -> None:
    assert health(STATES[state]) == EXPECTED[state]


def test_stalled_messages_say_what_to_do() -> None:
    _, message = health(STATES["stalled-ambiguous-name"])
    assert message.startswith("AmbiguousClusterName: ")
    assert "spec.clusterId" in message
    _, message = health(STATES["stalled-unauthorized"])
    assert message.startswith("Unauthorized: ")
    assert "401" in message


def test_a_new_object_without_status_is_progressing() -> None:
    new = {
        "apiVersion": "compute.together.ai/v1alpha1",
        "kind": "GPUCluster",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": 1},
        "spec": STATES["ready"]["spec"],
    }
    assert health(new) == ("Progressing", "Waiting for the operator to observe generation 1")


def test_deletion_wins_over_a_stale_generation() -> None:
    deleting = STATES["deleting"]
    newer = {**deleting, "metadata": {**deleting["metadata"], "generation": 9}}
    assert health(newer)[1].startswith("Deleting")
