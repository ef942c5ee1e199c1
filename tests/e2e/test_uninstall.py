"""The README's uninstall order, followed on a real node, leaves nothing behind."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SYSTEM_NAMESPACE
from tests.e2e.conftest import CRD_NAME, Installation, live_clusters
from tests.integration.conftest import GPUClusters


@pytest.mark.parametrize("method", ["helm", "kustomize"])
def test_readme_uninstall_order_leaves_no_cluster_and_no_stuck_object(
    installation: Installation, gpuclusters: GPUClusters, namespace: str, method: str
) -> None:
    if method == "helm":
        installation.helm()
    else:
        installation.kustomize()
    node = installation.node
    names = ("alpha", "beta")
    for name in names:
        gpuclusters.create(namespace, name)
    for name in names:
        gpuclusters.wait_condition(namespace, name, "Ready", "True", timeout=90)

    installation.uninstall()  # deploy/README.md, "Uninstalling without leaking clusters"

    for name in names:
        assert live_clusters(node, f"{namespace}-{name}") == [], f"{name} leaked at Together"
    assert CRD_NAME not in node.kubectl("get", "crd", "-o", "name")
    namespaces = node.get_json("namespaces")["items"]
    assert [n["metadata"]["name"] for n in namespaces if n["status"]["phase"] != "Active"] == []
    assert f"namespace/{SYSTEM_NAMESPACE}" not in node.kubectl("get", "namespaces", "-o", "name")
    assert node.operator_pods(namespace=namespace) == []
