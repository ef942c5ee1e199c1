"""What only a cluster with kube-controller-manager shows: garbage collection through the
kubeconfig Secret's ownerReference, and namespace deletion driving GPUCluster deletion."""

from __future__ import annotations

import json

import httpx

from tests.deploy.manifests import SYSTEM_NAMESPACE
from tests.e2e.conftest import NodeStack, live_clusters, wait_namespace_gone
from tests.integration.conftest import GPUClusters
from tests.support import wait_for
from together_operator.gpucluster.spec import PLURAL


def scale_operator(node: NodeStack, replicas: int) -> None:
    node.kubectl(
        "-n",
        SYSTEM_NAMESPACE,
        "scale",
        "deployment",
        "-l",
        "app.kubernetes.io/name=together-operator",
        f"--replicas={replicas}",
    )
    if replicas:
        node.wait_operator_ready()
    else:
        wait_for(
            lambda: not node.operator_pods(),
            timeout=90,
            interval=1,
            what="the operator Pod to be gone",
        )


def test_kubeconfig_secret_is_garbage_collected_through_its_owner_reference(
    kustomize_install: NodeStack, gpuclusters: GPUClusters, namespace: str
) -> None:
    """With the operator stopped (so it cannot delete the Secret itself) and the finalizer
    removed by hand, only the garbage collector can remove the Secret."""
    node = kustomize_install
    gpuclusters.create(namespace, "owned")
    gpuclusters.wait_condition(namespace, "owned", "Ready", "True", timeout=90)
    secret = node.get_json("secret", "-n", namespace, "owned-kubeconfig")
    [owner] = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("GPUCluster", "owned")
    [cluster] = live_clusters(node, f"{namespace}-owned")

    scale_operator(node, 0)
    try:
        node.kubectl("-n", namespace, "delete", PLURAL, "owned", "--wait=false")
        node.kubectl(
            "-n",
            namespace,
            "patch",
            PLURAL,
            "owned",
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        wait_for(
            lambda: (
                "owned-kubeconfig"
                not in node.kubectl("-n", namespace, "get", "secrets", "-o", "name")
            ),
            timeout=60,
            interval=1,
            what="the garbage collector to delete the Secret",
        )
    finally:
        scale_operator(node, 1)
    # The Together cluster was released by hand above: delete it at Together, as a person would.
    httpx.delete(
        f"{node.base_url}/v1/compute/clusters/{cluster.cluster.cluster_id}",
        headers={"Authorization": f"Bearer {node.api_key}"},
        timeout=10,
    ).raise_for_status()


def test_deleting_a_namespace_deletes_its_clusters_and_finishes(
    kustomize_install: NodeStack, gpuclusters: GPUClusters
) -> None:
    node = kustomize_install
    namespace = "e2e-doomed"
    node.kubectl("create", "namespace", namespace)
    for name in ("first", "second"):
        gpuclusters.create(namespace, name)
    for name in ("first", "second"):
        gpuclusters.wait_condition(namespace, name, "Ready", "True", timeout=90)
        assert len(live_clusters(node, f"{namespace}-{name}")) == 1

    node.kubectl("delete", "namespace", namespace, "--wait=false")
    # The namespace controller deletes the GPUClusters; their finalizers hold until Together
    # has deleted the clusters; then the namespace finishes (nothing left Terminating).
    wait_namespace_gone(node, namespace, timeout=180)
    for name in ("first", "second"):
        assert live_clusters(node, f"{namespace}-{name}") == []
        assert len(node.simulator.clusters_for(f"{namespace}-{name}")) == 1
