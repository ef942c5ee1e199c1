"""The end-to-end tier: the operator's image as a Pod on a real one-node cluster.

One node for the whole session, brought up exactly as a person does it
(`together-operator dev up --in-cluster`: the image built from the Dockerfile, the operator
installed from deploy/ with kustomize, the simulator on the node's address). Tests switch
between the kustomize and Helm installs through :class:`Installation`. At the end
`dev down` must leave the machine as it found it: the teardown compares two captures of
processes, mounts, iptables, addresses, links, routes, sysctls and cgroups, and fails on any
difference.

A missing prerequisite (root, Debian packages) fails the run in CI and skips it elsewhere,
with the reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import use_existing_cluster
from tests.deploy.manifests import CHART, DEPLOY, RELEASE, SYSTEM_NAMESPACE
from tests.e2e.machine import MachineState
from tests.integration.conftest import GPUClusters, Simulator
from tests.support import wait_for
from together_operator.devenv import stack
from together_operator.devenv.incluster import API_KEY_SECRET, deploy_image_tag, pointed_at
from together_operator.devenv.system import missing_packages
from together_operator.devenv.toolchain import HELM, KUBECTL, resolve_binary
from together_operator.gpucluster.spec import GROUP, PLURAL
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.server import RunningSimulator
from together_operator.simulator.state import ClusterSummary

REPO = Path(__file__).resolve().parents[2]
#: Setup may build the stand-in base image and the operator's image (minutes when cold).
E2E_TIMEOUT = 1200
SIMULATOR_SPEED = 30.0
CRD_NAME = f"{PLURAL}.{GROUP}"


#: Modules in the order that switches installs least: kustomize (what `dev up` installed)
#: first, then Helm, then the uninstall tests (Helm's first, as it is then installed).
MODULE_ORDER = (
    "test_image",
    "test_kustomize_install",
    "test_controller_manager",
    "test_helm_install",
    "test_uninstall",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))

    def rank(item: pytest.Item) -> int:
        module = Path(str(item.fspath)).stem
        return MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER)

    # Last in the session, so the node's session teardown (dev down and the leak check)
    # follows the tier at once, and the quick tests report first.
    others = [item for item in items if item not in ours]
    items[:] = others + sorted(ours, key=rank)


#: Timings of the session's node, for the end of the run's output.
TIMINGS: list[str] = []
_TIMED = re.compile(r"(built in \d+s|Ready \d+s after start)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "e2e node timings")
        for line in TIMINGS:
            terminalreporter.write_line(line)


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the one-node cluster needs root (an address on lo, a bridge, iptables rules)"
    missing = missing_packages()
    if missing:
        return (
            f"Debian packages missing: {' '.join(missing)} "
            "(`together-operator dev tools --with-node` installs them as root)"
        )
    return None


def require_prerequisites() -> None:
    """Fail in CI (a missing prerequisite must never pass as a skip there), skip elsewhere."""
    if use_existing_cluster():
        pytest.skip("the e2e tier brings up its own node; USE_EXISTING_CLUSTER is for the others")
    reason = missing_prerequisite()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"e2e prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def run(argv: list[str | Path], *, stdin: str | None = None, timeout: float = 120) -> str:
    """Run a command; its stdout, or an AssertionError with what it said."""
    completed = subprocess.run(
        [str(a) for a in argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        shown = " ".join(str(a) for a in argv[:6])
        raise AssertionError(f"`{shown} ...` exited {completed.returncode}:\n{completed.stderr}")
    return completed.stdout


@dataclass
class NodeStack:
    """The running `dev up --in-cluster` stack and the tools to drive it."""

    state_dir: Path
    kubeconfig: Path
    base_url: str
    api_key: str
    kubectl_binary: Path
    helm_binary: Path
    simulator: Simulator = field(init=False)

    def __post_init__(self) -> None:
        running = RunningSimulator(base_url=self.base_url, stop=lambda: None)
        self.simulator = Simulator(running, self.kubeconfig, SimulatorAdmin(running.admin_url))

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        return run(
            [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args],
            stdin=stdin,
            timeout=timeout,
        )

    def helm(self, *args: str, timeout: float = 300) -> str:
        return run([self.helm_binary, f"--kubeconfig={self.kubeconfig}", *args], timeout=timeout)

    def ctr(self, *args: str) -> str:
        socket = self.state_dir / "node" / "containerd" / "containerd.sock"
        return run(["ctr", f"--address={socket}", "--namespace=k8s.io", *args])

    def get_json(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return result

    def operator_pods(self, namespace: str = SYSTEM_NAMESPACE) -> list[dict[str, Any]]:
        """The operator's Pods that are not on their way out."""
        listed = self.get_json(
            "pods", "-n", namespace, "-l", "app.kubernetes.io/name=together-operator"
        )
        return [
            pod
            for pod in listed["items"]
            if "deletionTimestamp" not in pod["metadata"]
            and pod["status"].get("phase") not in {"Succeeded", "Failed"}
        ]

    def operator_logs(self, namespace: str = SYSTEM_NAMESPACE) -> str:
        return self.kubectl(
            "-n",
            namespace,
            "logs",
            "-l",
            "app.kubernetes.io/name=together-operator",
            "--tail=-1",
        )

    def wait_operator_ready(self, namespace: str = SYSTEM_NAMESPACE, timeout: float = 180) -> None:
        self.kubectl(
            "-n",
            namespace,
            "rollout",
            "status",
            "deployment",
            "-l",
            "app.kubernetes.io/name=together-operator",
            f"--timeout={int(timeout)}s",
            timeout=timeout + 30,
        )


@pytest.fixture(scope="session")
def node_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeStack]:
    """`dev up --in-cluster` for the session; `dev down` must then leave nothing behind."""
    require_prerequisites()
    kubectl, helm = resolve_binary(KUBECTL), resolve_binary(HELM)
    state_dir = tmp_path_factory.mktemp("e2e-stack")
    before = MachineState.capture(markers=(str(state_dir),))
    progress_log = state_dir / "dev-up.progress"

    def progress(message: str) -> None:
        with progress_log.open("a") as log:
            log.write(message + "\n")
        if _TIMED.search(message):
            TIMINGS.append(message)

    options = stack.StackOptions(speed=SIMULATOR_SPEED, in_cluster=True)
    started = time.monotonic()
    try:
        exports = stack.up(state_dir, progress, options)
        variables = dict(
            line.removeprefix("export ").split("=", 1) for line in exports.splitlines()
        )
        TIMINGS.append(f"dev up --in-cluster, whole: {time.monotonic() - started:.0f}s")
        yield NodeStack(
            state_dir=state_dir,
            kubeconfig=Path(variables["KUBECONFIG"]),
            base_url=variables["TOGETHER_BASE_URL"],
            api_key=variables["TOGETHER_API_KEY"],
            kubectl_binary=kubectl,
            helm_binary=helm,
        )
    finally:
        stopping = time.monotonic()
        stack.down(state_dir, progress)
        TIMINGS.append(f"dev down: {time.monotonic() - stopping:.0f}s")
        TIMINGS.append(f"e2e tier (dev up, tests, dev down): {time.monotonic() - started:.0f}s")
        after = MachineState.capture(markers=(str(state_dir),))
        left = before.left_behind(after)
        assert not left, "dev down left this on the machine:\n" + "\n".join(left)


@dataclass
class Installation:
    """Which install of the operator is on the node, switched by the README's procedures."""

    node: NodeStack
    #: "kustomize" (what `dev up --in-cluster` installs), "helm", or None.
    current: str | None = "kustomize"
    helm_values: tuple[str, ...] = ()

    def kustomize(self) -> None:
        """deploy/ installed with kustomize (the image built by `dev up`)."""
        if self.current == "kustomize":
            return
        self.uninstall()
        self._api_key_secret(SYSTEM_NAMESPACE)
        rendered = self.node.kubectl("kustomize", str(DEPLOY))
        self.node.kubectl(
            "apply", "--server-side", "-f", "-", stdin=pointed_at(rendered, self.node.base_url)
        )
        self.current = "kustomize"
        self.node.wait_operator_ready()

    def helm(self, *values: str) -> None:
        """The chart installed (or upgraded in place) with ``values``."""
        if self.current == "helm" and self.helm_values == values:
            return
        if self.current != "helm":
            self.uninstall()
            self._api_key_secret(SYSTEM_NAMESPACE)
        self.helm_upgrade(*values)
        self.helm_values = values
        self.current = "helm"
        self.node.wait_operator_ready()

    def helm_upgrade(self, *values: str, wait: bool = True) -> None:
        args = ["upgrade", "--install", RELEASE, str(CHART), "-n", SYSTEM_NAMESPACE]
        args += ["--set", f"baseURL={self.node.base_url}"]
        for value in values:
            args += ["--set", value]
        if wait:
            args += ["--wait", "--timeout=3m"]
        self.node.helm(*args)
        self.helm_values = values

    def _api_key_secret(self, namespace: str) -> None:
        """As the README says: the namespace, then the key Secret (through stdin)."""
        self.node.kubectl(
            "apply",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace},
                }
            ),
        )
        self.node.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": API_KEY_SECRET, "namespace": namespace},
                    "stringData": {"apiKey": self.node.api_key},
                }
            ),
        )

    def uninstall(self) -> None:
        """deploy/README.md's order: GPUClusters first (and wait), then the operator and CRD."""
        if self.current is None:
            return
        node = self.node
        if CRD_NAME in node.kubectl("get", "crd", "-o", "name"):
            node.kubectl("delete", PLURAL, "--all", "--all-namespaces", "--wait=false")
            node.kubectl(
                "wait",
                "--for=delete",
                PLURAL,
                "--all",
                "--all-namespaces",
                "--timeout=120s",
                timeout=150,
            )
            remaining = node.kubectl("get", PLURAL, "--all-namespaces", "-o", "name")
            assert not remaining.strip(), f"GPUClusters left after the wait: {remaining}"
        if self.current == "helm":
            node.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--wait", "--timeout=2m")
            node.kubectl("delete", "namespace", SYSTEM_NAMESPACE, "--timeout=120s", timeout=150)
        else:
            node.kubectl(
                "delete", "-k", str(DEPLOY), "--ignore-not-found", "--timeout=120s", timeout=150
            )
        node.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--timeout=120s", timeout=150)
        self.current = None
        self.helm_values = ()


@pytest.fixture(scope="session")
def installation(node_stack: NodeStack) -> Installation:
    return Installation(node_stack)


@pytest.fixture
def kustomize_install(installation: Installation) -> NodeStack:
    installation.kustomize()
    return installation.node


@pytest.fixture
def gpuclusters(node_stack: NodeStack) -> GPUClusters:
    return GPUClusters(node_stack.kubeconfig)


@pytest.fixture
def namespace(node_stack: NodeStack, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace; deleted afterwards (with a controller-manager, it really goes)."""
    name = f"e2e-{os.getpid() % 1000}-{int(time.time() * 1000) % 100000}"
    node_stack.kubectl("create", "namespace", name)
    yield name
    node_stack.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


def image_tag() -> str:
    return deploy_image_tag(REPO)


def live_clusters(node: NodeStack, base: str) -> list[ClusterSummary]:
    """The clusters created for ``base`` (``<namespace>-<name>``) and not deleted."""
    return [c for c in node.simulator.clusters_for(base) if not c.deleted]


def wait_namespace_gone(node: NodeStack, name: str, timeout: float = 120) -> None:
    def gone() -> bool:
        listed = node.kubectl("get", "namespaces", "-o", "name").splitlines()
        return f"namespace/{name}" not in listed

    wait_for(gone, timeout=timeout, interval=1, what=f"namespace {name} to be deleted")
