"""The Helm chart's namespaced mode: Roles only in the watched namespaces, and the operator
watching just those, under that exact identity.

Runs on a private control plane: the suite's cluster-wide operator would otherwise reconcile
the same objects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.conftest import use_existing_cluster
from tests.deploy.manifests import helm_template, load_objects, run_tool
from tests.integration.conftest import API_KEY, GPUClusters
from tests.support import api_client
from together_operator.devenv import ControlPlane
from together_operator.devenv.kubeconfig import kubeconfig_document, write_kubeconfig
from together_operator.devenv.stack import crd_established
from together_operator.devenv.toolchain import HELM, KUBECTL, resolve_binary
from together_operator.gpucluster.crd import crd_yaml
from together_operator.simulator.server import SimulatorConfig, start_in_thread

pytestmark = pytest.mark.skipif(
    use_existing_cluster(), reason="needs a private control plane next to the shared cluster"
)

WATCHED, UNWATCHED, SYSTEM = "team-a", "team-b", "together-operator-system"


@pytest.fixture(scope="module")
def private_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane.start(tmp_path_factory.mktemp("namespaced-plane")) as plane:
        yield plane


def identity_kubeconfig(plane: ControlPlane, workdir: Path) -> Path:
    """Install the chart's namespaced identity; a kubeconfig with its ServiceAccount token."""
    kubectl = resolve_binary(KUBECTL)
    rendered = load_objects(
        helm_template(resolve_binary(HELM), f"watchNamespaces={{{WATCHED}}}", namespace=SYSTEM)
    )
    identity = [
        o
        for o in rendered
        if o["kind"]
        in {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ]
    assert {o["kind"] for o in identity} == {"ServiceAccount", "Role", "RoleBinding"}
    # The GPUClusters' Role in the watched namespace; the Lease's in the operator's own.
    assert {o["metadata"]["namespace"] for o in identity if o["kind"] == "Role"} == {
        WATCHED,
        SYSTEM,
    }
    run_tool(
        [kubectl, f"--kubeconfig={plane.kubeconfig}", "apply", "--server-side", "-f", "-"],
        stdin=yaml.safe_dump_all(identity),
    )
    [account] = [o for o in identity if o["kind"] == "ServiceAccount"]
    token = (
        client.CoreV1Api(api_client(plane.kubeconfig))
        .create_namespaced_service_account_token(
            account["metadata"]["name"], SYSTEM, {"spec": {"expirationSeconds": 3600}}
        )
        .status.token
    )
    document = kubeconfig_document(
        server=plane.server, ca_pem=plane.serving_ca.cert_pem, user="operator", token=token
    )
    return write_kubeconfig(workdir / "operator.kubeconfig", document)


def test_namespaced_operator_manages_only_its_namespaces_with_roles_alone(
    private_plane: ControlPlane, tmp_path: Path
) -> None:
    kubectl = resolve_binary(KUBECTL)
    core = client.CoreV1Api(api_client(private_plane.kubeconfig))
    for namespace in (WATCHED, UNWATCHED, SYSTEM):
        core.create_namespace({"metadata": {"name": namespace}})
    run_tool(
        [kubectl, f"--kubeconfig={private_plane.kubeconfig}", "apply", "--server-side", "-f", "-"],
        stdin=crd_yaml(),
    )
    assert crd_established(kubectl, private_plane.kubeconfig), "the CRD was not Established"
    kubeconfig = identity_kubeconfig(private_plane, tmp_path)

    simulator = start_in_thread(SimulatorConfig(api_keys=(API_KEY,), speed=60.0))
    log_path = tmp_path / "operator.log"
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        TOGETHER_BASE_URL=simulator.base_url,
        TOGETHER_API_KEY=API_KEY,
        TOGETHER_OPERATOR_FAST_POLL_SECONDS="0.5",
        TOGETHER_OPERATOR_SLOW_POLL_SECONDS="3",
    )
    with log_path.open("wb") as log:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "together_operator.cli",
                "run",
                f"--namespace={WATCHED}",
                f"--lease-namespace={SYSTEM}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        objects = GPUClusters(private_plane.kubeconfig)
        objects.create(UNWATCHED, "ignored")
        objects.create(WATCHED, "managed")
        objects.wait_condition(WATCHED, "managed", "Ready", "True", timeout=60)
        time.sleep(2)  # the unwatched object had as long as the watched one took, and more
        ignored = objects.get(UNWATCHED, "ignored")
        assert ignored is not None
        assert "status" not in ignored
        assert not ignored["metadata"].get("finalizers")
        objects.delete_and_wait(WATCHED, "managed")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        simulator.stop()
    logs = log_path.read_text(errors="replace")
    assert "forbidden" not in logs.lower(), logs[-2000:]
