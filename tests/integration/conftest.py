"""The operator's integration stage: the real API server, the simulator and the operator.

The operator runs as a separate process (`together-operator run`), as it would in a Pod, so
tests can SIGKILL and restart it. The simulator runs in-process on 127.0.0.1 at a high speed
(about a second from create to Ready).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.deploy.manifests import kustomize, load_objects, run_tool
from tests.factories import spec_fields
from tests.support import KubeTarget, api_client, wait_for
from together_operator.devenv.controlplane import free_loopback_port
from together_operator.devenv.kubeconfig import write_kubeconfig
from together_operator.devenv.toolchain import KUBECTL, resolve_binary
from together_operator.gpucluster.crd import crd_manifest
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.simulator.state import ClusterSummary

API_KEY = "sim-test-key-7f3a9c"  # distinctive, so leak scans can find it
#: A second key of the same account (the operator's key, rotated) and a key of another one.
ROTATED_KEY = "sim-test-key-rotated-41be07"
OTHER_ACCOUNT_KEY = "sim-test-key-elsewhere-9d2c55"
ALL_KEYS = (API_KEY, ROTATED_KEY, OTHER_ACCOUNT_KEY)
TENANT_USER = "tenant-admin"


@dataclass
class Simulator:
    """The running simulator and its admin API."""

    running: RunningSimulator
    tenant_kubeconfig: Path
    admin: SimulatorAdmin

    @property
    def base_url(self) -> str:
        return self.running.base_url

    def clusters_for(self, base: str) -> list[ClusterSummary]:
        """Every cluster (deleted ones included) created under ``base`` — the spec's
        clusterName or ``<namespace>-<name>`` — whatever the incarnation's tag after it."""
        return [
            row
            for row in self.admin.clusters()
            if row.cluster.cluster_name.rpartition("-")[0] == base
        ]


@pytest.fixture(scope="session")
def gpucluster_crd(kube: KubeTarget) -> dict[str, Any]:
    """The operator's CRD, installed (or updated) and Established."""
    extensions = client.ApiextensionsV1Api(api_client(kube.kubeconfig))
    manifest = crd_manifest()
    name = manifest["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
        manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, manifest)
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(manifest)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait_for(established, timeout=30, what="the GPUCluster CRD to be Established")
    return manifest


@pytest.fixture(scope="session")
def simulator(kube: KubeTarget) -> Iterator[Simulator]:
    """The Together simulator, handing out a kubeconfig that works against the test cluster."""
    tenant = kube.mint_user(TENANT_USER, ["system:masters"], name="tenant")
    running = start_in_thread(
        SimulatorConfig(
            api_keys=ALL_KEYS,
            accounts={API_KEY: "main", ROTATED_KEY: "main", OTHER_ACCOUNT_KEY: "other"},
            speed=60.0,
            tenant_kubeconfig=tenant,
        )
    )
    try:
        with SimulatorAdmin(running.admin_url) as admin:
            yield Simulator(running, tenant, admin)
    finally:
        running.stop()


@dataclass
class OperatorProcess:
    """`together-operator run` as a child process, restartable."""

    kubeconfig: Path
    base_url: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_loopback_port)
    popen: subprocess.Popen[bytes] | None = None
    runs: int = 0

    def start(self) -> None:
        self.runs += 1
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            TOGETHER_BASE_URL=self.base_url,
            TOGETHER_API_KEY=API_KEY,
            TOGETHER_OPERATOR_FAST_POLL_SECONDS="0.5",
            TOGETHER_OPERATOR_SLOW_POLL_SECONDS="3",
            TOGETHER_OPERATOR_CREATE_GRACE_SECONDS="4",
            TOGETHER_OPERATOR_CREDENTIALS_TTL_SECONDS="1",
            TOGETHER_OPERATOR_METRICS_PORT=str(self.metrics_port),
            **self.extra_env,
        )
        env.pop("USE_EXISTING_CLUSTER", None)
        # Run another build of the operator against the same suite (an older commit, say):
        # its package directory goes first on the operator process's path.
        other_build = os.environ.get("OPERATOR_UNDER_TEST_SOURCE")
        if other_build:
            env["PYTHONPATH"] = other_build
        log = (self.log_dir / f"operator-{self.runs}.log").open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "together_operator.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup, exactly like a node failure or an OOM kill."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )


@pytest.fixture(scope="session")
def operator_identity(
    kube: KubeTarget, gpucluster_crd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig for the exact identity deploy/ creates: its ServiceAccount, bound by its
    RBAC, authenticated with a token from the TokenRequest API (as in a Pod)."""
    kubectl = resolve_binary(KUBECTL)
    identity_kinds = {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    }
    objects = [o for o in load_objects(kustomize(kubectl)) if o["kind"] in identity_kinds]
    run_tool(
        [kubectl, f"--kubeconfig={kube.kubeconfig}", "apply", "--server-side", "-f", "-"],
        stdin=yaml.safe_dump_all(objects),
    )
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    name, namespace = account["metadata"]["name"], account["metadata"]["namespace"]
    core = client.CoreV1Api(api_client(kube.kubeconfig))
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 4 * 3600}}
    ).status.token
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    user = f"system:serviceaccount:{namespace}:{name}"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": "operator",
    }
    return write_kubeconfig(tmp_path_factory.mktemp("identity") / "operator.kubeconfig", document)


@pytest.fixture(scope="session")
def operator(
    operator_identity: Path,
    simulator: Simulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, watching every namespace, as deploy/'s ServiceAccount (least privilege:
    every integration test doubles as a proof that its RBAC suffices)."""
    process = OperatorProcess(
        operator_identity, simulator.base_url, tmp_path_factory.mktemp("operator-logs")
    )
    process.start()
    yield process
    process.stop()


@contextlib.contextmanager
def scratch_namespace(kube: KubeTarget, name: str | None = None) -> Iterator[str]:
    """A namespace for one test, emptied of GPUClusters and deleted afterwards."""
    name = name or f"tgc-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client(kube.kubeconfig))
    core.create_namespace({"metadata": {"name": name}})
    yield name
    # Without a controller-manager nothing empties a deleted namespace: delete what the test
    # left (the operator, when running, then deletes their clusters at the simulator).
    custom = client.CustomObjectsApi(api_client(kube.kubeconfig))
    with contextlib.suppress(ApiException):
        custom.delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL)
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)


@pytest.fixture
def namespace(kube: KubeTarget) -> Iterator[str]:
    with scratch_namespace(kube) as name:
        yield name


@pytest.fixture
def other_namespace(kube: KubeTarget) -> Iterator[str]:
    """A second team's namespace."""
    with scratch_namespace(kube) as name:
        yield name


class GPUClusters:
    """GPUCluster objects through the admin identity."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = api_client(kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def create(
        self,
        namespace: str,
        name: str,
        annotations: dict[str, str] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "GPUCluster",
            "metadata": {"name": name, "annotations": annotations or {}},
            # A None override removes that field from the minimal spec.
            "spec": {k: v for k, v in {**minimal_spec(), **spec}.items() if v is not None},
        }
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return result

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def delete_and_wait(self, namespace: str, name: str, timeout: float = 40) -> None:
        """Delete and wait until the finalizer let the object go."""
        self.delete(namespace, name)
        wait_for(
            lambda: self.get(namespace, name) is None,
            timeout=timeout,
            what=f"{namespace}/{name} to be gone",
        )

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
        obj = self.get(namespace, name) or {}
        for condition in obj.get("status", {}).get("conditions", []):
            if condition["type"] == kind:
                return dict(condition)
        return None

    def wait_condition(
        self,
        namespace: str,
        name: str,
        kind: str,
        status: str,
        *,
        reason: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            condition = self.condition(namespace, name, kind)
            if (
                condition
                and condition["status"] == status
                and (reason is None or condition["reason"] == reason)
            ):
                return condition
            return None

        return wait_for(
            matches,
            timeout=timeout,
            what=f"{namespace}/{name} {kind}={status}" + (f" ({reason})" if reason else ""),
        )

    def events(self, namespace: str, name: str) -> list[Any]:
        listed = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(listed.items)


def minimal_spec() -> dict[str, Any]:
    return spec_fields()


@pytest.fixture(scope="session")
def gpuclusters(kube: KubeTarget, gpucluster_crd: dict[str, Any]) -> GPUClusters:
    return GPUClusters(kube.kubeconfig)
