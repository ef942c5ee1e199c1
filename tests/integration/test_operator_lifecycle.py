"""The operator end to end: real API server, simulator, operator process."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.conftest import GPUClusters, OperatorProcess, Simulator
from tests.support import api_client, wait_for
from together_operator.devenv.kubeconfig import write_private_file


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_apply_to_ready_with_usable_secret_then_delete_removes_everything(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
    tmp_path: Any,
) -> None:
    gpuclusters.create(namespace, "train", numPreemptibleGpus=8)
    gpuclusters.wait_condition(namespace, "train", "Ready", "True")
    # Preemptible GPUs are allocated after the cluster is Ready, asynchronously.
    wait_for(
        lambda: (
            (gpuclusters.get(namespace, "train") or {}).get("status", {}).get("preemptible")
            == "8/8"
        ),
        timeout=20,
        what="8/8 preemptible GPUs",
    )

    obj = gpuclusters.get(namespace, "train")
    assert obj is not None
    status = obj["status"]
    [at_together] = simulator.clusters_for(f"{namespace}-train")
    cluster = at_together.cluster
    assert status["clusterId"] == cluster.cluster_id
    assert status["state"] == "Ready"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert [p["phase"] for p in status["phaseTransitions"]] == [
        p.phase for p in cluster.phase_transitions
    ][: len(status["phaseTransitions"])]
    assert status["phaseTransitions"][0]["phase"] == (
        "CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES"
    )
    assert status["phaseTransitions"][-1]["phase"] == "CLUSTER_PHASE_READY"
    assert status["controlPlaneReady"] is True
    assert status["workerNodes"] == 2  # 8 on-demand + 8 preemptible GPUs, 8 per node
    assert status["kubeconfigSecretName"] == "train-kubeconfig"
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Synced",
        "Reconciling",
        "Stalled",
        "NodesHealthy",
    }

    # The kubeconfig Secret works: it reaches the (simulated tenant's) API server.
    secret = wait_for(
        lambda: _secret_or_none(gpuclusters, namespace, "train-kubeconfig"),
        timeout=15,
        what="the kubeconfig Secret",
    )
    assert secret.metadata.owner_references[0].uid == obj["metadata"]["uid"]
    kubeconfig = base64.b64decode(secret.data["kubeconfig"])
    assert yaml.safe_load(kubeconfig)["kind"] == "Config"
    path = write_private_file(tmp_path / "tenant.kubeconfig", kubeconfig)
    version = client.VersionApi(api_client(path)).get_code()
    assert version.major == "1"

    reasons = {e.reason for e in gpuclusters.events(namespace, "train")}
    assert {"Creating", "Created", "KubeconfigWritten"} <= reasons
    # Together's phases are history in status.phaseTransitions, not one event each (at a
    # thousand clusters that was six thousand writes to the API server).
    assert "PhaseChanged" not in reasons

    gpuclusters.delete_and_wait(namespace, "train")
    [after] = simulator.clusters_for(f"{namespace}-train")
    assert after.deleted is True
    assert _secret_or_none(gpuclusters, namespace, "train-kubeconfig") is None
    # The object's daemon left when the deletion began, rather than being cancelled by kopf
    # (a warning per deleted object).
    assert "is cancelled" not in operator.logs()


def _secret_or_none(gpuclusters: GPUClusters, namespace: str, name: str) -> Any:
    from kubernetes.client.rest import ApiException

    try:
        return gpuclusters.core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_scaling_gpus_and_preemptible_allocation_lagging_desired(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
) -> None:
    region, gpu = "us-central-4", "L40_PCIE"
    # Only 8 preemptible GPUs in stock: 16 desired can only be half allocated.
    simulator.admin.set_stock(region, gpu, preemptible_gpus=8)
    gpuclusters.create(namespace, "scale", region=region, gpuType=gpu)
    gpuclusters.wait_condition(namespace, "scale", "Ready", "True")

    gpuclusters.patch_spec(namespace, "scale", {"numGpus": 16, "numPreemptibleGpus": 16})

    def scaled() -> dict[str, Any] | None:
        obj = gpuclusters.get(namespace, "scale") or {}
        status = obj.get("status", {})
        done = (
            status.get("numGpus") == 16
            and status.get("desiredPreemptibleGpus") == 16
            and status.get("allocatedPreemptibleGpus") == 8
            and status.get("state") == "Ready"
        )
        return status if done else None

    status = wait_for(scaled, timeout=30, what="16 GPUs with 8/16 preemptible")
    assert status["preemptible"] == "8/16"
    assert status["workerNodes"] == 3  # 16 on-demand + 8 preemptible GPUs, 8 per node
    ready = gpuclusters.condition(namespace, "scale", "Ready")
    assert ready is not None
    assert "8 of 16 preemptible GPUs allocated" in ready["message"]

    simulator.admin.set_stock(region, gpu, preemptible_gpus=64)
    wait_for(
        lambda: (
            (gpuclusters.get(namespace, "scale") or {}).get("status", {}).get("preemptible")
            == "16/16"
        ),
        timeout=30,
        what="the allocation to catch up to 16/16",
    )
    reasons = {e.reason for e in gpuclusters.events(namespace, "scale")}
    assert "Updating" in reasons
    gpuclusters.delete_and_wait(namespace, "scale")


def test_orphan_policy_releases_the_object_and_keeps_the_cluster(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "keep", deletionPolicy="Orphan")
    gpuclusters.wait_condition(namespace, "keep", "Ready", "True")
    gpuclusters.delete_and_wait(namespace, "keep")
    [kept] = simulator.clusters_for(f"{namespace}-keep")
    assert kept.deleted is False
    assert kept.cluster.status == "Ready"


def test_adoption_through_spec_cluster_id_creates_nothing(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    import httpx

    from tests.integration.conftest import API_KEY

    name = unique("made-elsewhere")
    created = httpx.post(
        f"{simulator.base_url}/v1/compute/clusters",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={
            "cluster_name": name,
            "region": "us-central-8",
            "gpu_type": "H100_SXM",
            "num_gpus": 8,
            "billing_type": "ON_DEMAND",
            "cuda_version": "12.5",
            "nvidia_driver_version": "555",
        },
        timeout=10,
    ).json()
    creates_before = simulator.admin.request_count("GPUClusterService_Create")
    # With its own key a GPUCluster may adopt from its own account (with the operator's
    # shared key only where the operator allows it: see test_ownership).
    gpuclusters.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "own-key"}, "stringData": {"apiKey": API_KEY}}
    )
    gpuclusters.create(
        namespace,
        "adopted",
        clusterId=created["cluster_id"],
        clusterName=name,
        credentialsSecretRef={"name": "own-key"},
    )
    gpuclusters.wait_condition(namespace, "adopted", "Ready", "True")
    obj = gpuclusters.get(namespace, "adopted")
    assert obj is not None
    assert obj["status"]["clusterId"] == created["cluster_id"]
    assert simulator.admin.request_count("GPUClusterService_Create") == creates_before
    assert len(simulator.admin.clusters_named(name)) == 1
    assert obj["status"]["ownership"]["adopted"] is True

    # clusterId may be set once: changing it is refused by the API server.
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as refused:
        gpuclusters.patch_spec(namespace, "adopted", {"clusterId": "another"})
    assert refused.value.status == 422
    assert "spec.clusterId may be set once" in refused.value.body


def test_foreign_secret_is_left_untouched_and_reported(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "mine-kubeconfig"}, "stringData": {"kubeconfig": "someone else's"}},
    )
    gpuclusters.create(namespace, "mine")
    stalled = gpuclusters.wait_condition(
        namespace, "mine", "Stalled", "True", reason="KubeconfigSecretConflict"
    )
    assert "mine-kubeconfig" in stalled["message"]
    secret = gpuclusters.core.read_namespaced_secret("mine-kubeconfig", namespace)
    assert base64.b64decode(secret.data["kubeconfig"]) == b"someone else's"
    assert not secret.metadata.owner_references
    assert "KubeconfigSecretConflict" in {e.reason for e in gpuclusters.events(namespace, "mine")}

    # Once the foreign Secret is gone, the operator writes its own and becomes Ready.
    gpuclusters.core.delete_namespaced_secret("mine-kubeconfig", namespace)
    gpuclusters.wait_condition(namespace, "mine", "Ready", "True")
    gpuclusters.delete_and_wait(namespace, "mine")


def test_cluster_id_added_later_cannot_take_over_from_the_created_cluster(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "first")
    gpuclusters.wait_condition(namespace, "first", "Ready", "True")
    gpuclusters.create(namespace, "second")
    gpuclusters.wait_condition(namespace, "second", "Ready", "True")
    other = (gpuclusters.get(namespace, "second") or {})["status"]["clusterId"]

    gpuclusters.patch_spec(namespace, "first", {"clusterId": other})
    stalled = gpuclusters.wait_condition(
        namespace, "first", "Stalled", "True", reason="ClusterIdConflict"
    )
    assert other in stalled["message"]
    # Deleting it now must not delete someone else's cluster, nor leak its own.
    gpuclusters.delete(namespace, "first")
    gpuclusters.wait_condition(namespace, "first", "Stalled", "True", reason="ClusterIdConflict")
    [second] = simulator.clusters_for(f"{namespace}-second")
    assert second.deleted is False
    gpuclusters.patch_spec(namespace, "first", {"deletionPolicy": "Orphan"})
    wait_for(
        lambda: gpuclusters.get(namespace, "first") is None,
        timeout=30,
        what="the orphaned GPUCluster to be released",
    )
    gpuclusters.delete_and_wait(namespace, "second")
