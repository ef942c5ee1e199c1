"""API keys and kubeconfigs never show in operator logs, events or GPUCluster objects."""

from __future__ import annotations

import base64
import json

import yaml

from tests.integration.conftest import (
    ALL_KEYS,
    API_KEY,
    GPUClusters,
    OperatorProcess,
    Simulator,
)
from tests.support import wait_for

BAD_KEY = "leaky-wrong-key-5e1d"


def secret_fragments(simulator: Simulator) -> list[str]:
    """Strings that must never appear: both keys, and the tenant kubeconfig's credentials."""
    tenant = simulator.tenant_kubeconfig.read_bytes()
    user = yaml.safe_load(tenant)["users"][0]["user"]
    fragments = [*ALL_KEYS, BAD_KEY, base64.b64encode(tenant).decode()[:40]]
    for field in ("client-key-data", "client-certificate-data"):
        fragments.append(user[field][:40])  # base64 as stored
        fragments.append(base64.b64decode(user[field]).decode().splitlines()[1][:40])  # PEM
    return fragments


def test_keys_and_kubeconfigs_stay_out_of_logs_events_and_objects(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    core = gpuclusters.core
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "good"}, "stringData": {"apiKey": API_KEY}}
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "bad"}, "stringData": {"apiKey": BAD_KEY}}
    )
    gpuclusters.create(namespace, "secretive", credentialsSecretRef={"name": "good"})
    gpuclusters.create(namespace, "rejected", credentialsSecretRef={"name": "bad"})
    gpuclusters.wait_condition(namespace, "secretive", "Ready", "True")
    gpuclusters.wait_condition(namespace, "rejected", "Stalled", "True", reason="Unauthorized")
    wait_for(
        lambda: _secret_exists(gpuclusters, namespace),
        timeout=15,
        what="the kubeconfig Secret to be written",
    )
    for name in ("secretive", "rejected"):
        gpuclusters.delete(namespace, name)
    wait_for(
        lambda: gpuclusters.get(namespace, "secretive") is None,
        timeout=40,
        what="the GPUCluster to be deleted",
    )

    objects = gpuclusters.custom.list_cluster_custom_object(
        "compute.together.ai", "v1alpha1", "gpuclusters"
    )
    events = core.list_event_for_all_namespaces()
    haystacks = {
        "operator logs": operator.logs(),
        "events": "\n".join(f"{e.reason} {e.message}" for e in events.items),
        "GPUClusters": json.dumps(objects),
    }
    assert "Unauthorized" in haystacks["events"]  # the scan does look at real content
    assert len(haystacks["operator logs"]) > 1000
    # Report where, never what: the failure message must not print the secret either.
    leaks = [
        f"secret #{number} in the {where}"
        for where, text in haystacks.items()
        for number, fragment in enumerate(secret_fragments(simulator))
        if fragment in text
    ]
    assert not leaks, f"leaked: {', '.join(leaks)}"


def _secret_exists(gpuclusters: GPUClusters, namespace: str) -> bool:
    secrets = gpuclusters.core.list_namespaced_secret(namespace).items
    return any(s.metadata.name == "secretive-kubeconfig" for s in secrets)
