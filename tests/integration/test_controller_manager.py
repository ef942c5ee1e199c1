"""The local control plane with kube-controller-manager's lifecycle controllers: a namespace
deletion finishes and ownerReferences are honoured, without a node."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.support import api_client, wait_for
from together_operator.devenv.controlplane import LIFECYCLE_CONTROLLERS, ControlPlane


def test_namespace_deletion_and_garbage_collection_work(tmp_path: Path) -> None:
    with ControlPlane.start(tmp_path / "plane", controllers=LIFECYCLE_CONTROLLERS) as plane:
        assert [p.name for p in plane.processes][-1] == "kube-controller-manager"
        core = client.CoreV1Api(api_client(plane.kubeconfig))
        core.create_namespace({"metadata": {"name": "doomed"}})
        owner = core.create_namespaced_config_map("doomed", {"metadata": {"name": "owner"}})
        reference = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": owner.metadata.uid,
        }
        core.create_namespaced_config_map(
            "doomed", {"metadata": {"name": "owned", "ownerReferences": [reference]}}
        )
        core.delete_namespaced_config_map("owner", "doomed")

        def collected() -> bool:
            names = [c.metadata.name for c in core.list_namespaced_config_map("doomed").items]
            return "owned" not in names

        wait_for(collected, timeout=60, what="the garbage collector to delete the dependent")

        core.delete_namespace("doomed")
        wait_for(
            lambda: "doomed" not in [n.metadata.name for n in core.list_namespace().items],
            timeout=60,
            what="the namespace controller to finish deleting the namespace",
        )
