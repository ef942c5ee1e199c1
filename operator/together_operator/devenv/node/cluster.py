"""Start and stop the one-node cluster.

etcd, kube-apiserver and kube-controller-manager (the local ControlPlane, listening on the
node's address), kube-scheduler, CoreDNS, containerd, the kubelet and kube-proxy, each a
child process of the caller (they die with it); images are imported into containerd from
archives. Only one node runs on a machine at a time (it uses fixed addresses), guarded by
a lock that its owner holds for its whole life.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from together_operator.devenv.controlplane import ApiServerNetwork, ControlPlane, free_loopback_port
from together_operator.devenv.kubeconfig import write_private_file
from together_operator.devenv.node import cleanup, hostnet
from together_operator.devenv.node.configs import (
    POD_CGROUP_ROOT,
    NodeLayout,
    cni_conflist,
    containerd_config,
    corefile,
    dns_service_manifests,
    kube_proxy_config,
    kubelet_config,
)
from together_operator.devenv.node.hostnet import (
    CLUSTER_DOMAIN,
    KUBERNETES_SERVICE_IP,
    NODE_ADDRESS,
    NODE_NAME,
    SERVICE_CIDR,
)
from together_operator.devenv.node.record import NodeRecord
from together_operator.devenv.processes import ManagedProcess, spawn
from together_operator.devenv.toolchain import (
    CONTROL_PLANE_TOOLS,
    COREDNS,
    KUBE_PROXY,
    KUBE_SCHEDULER,
    KUBECTL,
    KUBELET,
    NODE_TOOLS,
    ensure_binaries,
)

ProgressFn = Callable[[str], None]
APISERVER_PORT = 6443
LOCK_DIR = Path("/run/together-operator")
#: Which state directory the machine's node (running, or crashed) belongs to.
OWNER_FILE = LOCK_DIR / "node-owner"


class NodeError(RuntimeError):
    """The node could not start; the message names the component and quotes its log."""


def _hold_node_lock() -> IO[str]:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    handle = (LOCK_DIR / "node.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else "unknown"
        raise NodeError(
            f"a one-node cluster is already running on this machine (state in {owner}); "
            "stop it with `together-operator dev down` (with that --state-dir) first"
        ) from None
    return handle


def clean_up_previous(progress: ProgressFn) -> None:
    """Undo a node whose owner died without cleaning up (its record is still on disk)."""
    if not OWNER_FILE.exists():
        return
    record = NodeRecord.load(NodeLayout(Path(OWNER_FILE.read_text().strip())).record)
    if record is not None:
        progress(f"removing what a previous node left behind ({record.path})")
        cleanup.tear_down(record, progress)


@dataclass
class NodeCluster:
    """A running one-node cluster. :meth:`start` it; :meth:`stop` undoes everything."""

    layout: NodeLayout
    plane: ControlPlane
    record: NodeRecord
    binaries: dict[str, Path]
    lock: IO[str]
    processes: list[ManagedProcess] = field(default_factory=list)
    _stopped: bool = field(default=False, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @classmethod
    def start(
        cls,
        root: Path,
        progress: ProgressFn,
        *,
        images: Sequence[Path] = (),
        sandbox_image: str,
        timeout: float = 180.0,
    ) -> NodeCluster:
        """Bring the node up (and import ``images`` into containerd) until it is Ready."""
        binaries = ensure_binaries((*CONTROL_PLANE_TOOLS, *NODE_TOOLS), progress)
        lock = _hold_node_lock()
        try:
            clean_up_previous(progress)
            layout = NodeLayout(root)
            OWNER_FILE.write_text(f"{root}\n")
            record = NodeRecord(
                layout.record,
                mount_roots=[str(root)],
                cgroup=POD_CGROUP_ROOT,
                process_markers=[str(layout.containerd_socket)],
            )
            record.save()
        except BaseException:
            lock.close()
            raise
        node: NodeCluster | None = None
        started = time.monotonic()
        try:
            hostnet.record_sysctls(record)
            hostnet.set_up(record)
            _make_pod_cgroup_root()
            progress(f"node: API server on https://{NODE_ADDRESS}:{APISERVER_PORT}")
            plane = ControlPlane.start(
                layout.control_plane,
                network=ApiServerNetwork(
                    address=NODE_ADDRESS,
                    port=APISERVER_PORT,
                    service_cidr=SERVICE_CIDR,
                    service_ip=KUBERNETES_SERVICE_IP,
                    extra_dns_names=(f"kubernetes.default.svc.{CLUSTER_DOMAIN}",),
                ),
                controllers=("*",),
                etcd_binary=binaries["etcd"],
                apiserver_binary=binaries["kube-apiserver"],
            )
            for process in plane.processes:
                record.note_process(process.name, process.pid)
            node = cls(layout, plane, record, binaries, lock)
            node._start_components(images, sandbox_image, progress, timeout)
            progress(f"node: {NODE_NAME} Ready {time.monotonic() - started:.0f}s after start")
        except BaseException:
            if node is not None:
                node.stop(progress)
            else:
                cleanup.tear_down(record, progress)
                lock.close()
            raise
        return node

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        process = spawn(name, argv, self.layout.logs / f"{name}.log")
        self.processes.append(process)
        self.record.note_process(name, process.pid)
        return process

    def _start_components(
        self, images: Sequence[Path], sandbox_image: str, progress: ProgressFn, timeout: float
    ) -> None:
        layout, plane = self.layout, self.plane
        write_private_file(layout.resolv_conf, b"# Pods with dnsPolicy Default resolve nothing\n")
        layout.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (layout.cni_conf_dir / "10-together.conflist").write_text(cni_conflist(layout))
        config = layout.containerd / "config.toml"
        write_private_file(config, containerd_config(layout, sandbox_image).encode())
        containerd = self._spawn("containerd", ["containerd", f"--config={config}"])
        self._wait(containerd, lambda: self.ctr("version", check=False) is not None, 30)
        for archive in images:
            progress(f"node: importing {archive.name} into containerd")
            self.ctr("images", "import", str(archive), timeout=300)

        progress("node: kube-scheduler, CoreDNS, kubelet, kube-proxy")
        scheduler_kubeconfig = plane.mint_user("system:kube-scheduler", name="scheduler")
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries[KUBE_SCHEDULER.name]),
                f"--kubeconfig={scheduler_kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_loopback_port()}",
            ],
        )
        self._start_coredns()
        self._start_kubelet()
        self._start_kube_proxy()
        self._wait_node_ready(timeout)
        self.kubectl("apply", "--server-side", "-f", "-", stdin=dns_service_manifests())

    def _start_coredns(self) -> None:
        kubeconfig = self.plane.mint_user("together-coredns", ["system:masters"], name="coredns")
        context = yaml.safe_load(kubeconfig.read_text())["current-context"]
        ready_port = free_loopback_port()
        conf = self.layout.root / "coredns" / "Corefile"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(corefile(kubeconfig, context, ready_port))
        coredns = self._spawn(
            "coredns", [str(self.binaries[COREDNS.name]), f"-conf={conf}", "-quiet"]
        )
        self._wait(coredns, lambda: _http_ok(f"http://127.0.0.1:{ready_port}/ready"), 60)

    def _start_kubelet(self) -> None:
        plane, layout = self.plane, self.layout
        pki = layout.kubelet / "pki"
        serving = plane.serving_ca.issue(
            NODE_NAME, dns_names=[NODE_NAME], ip_addresses=[NODE_ADDRESS], server=True
        )
        write_private_file(pki / "kubelet.crt", serving.cert_pem)
        write_private_file(pki / "kubelet.key", serving.key_pem)
        kubeconfig = plane.mint_user(f"system:node:{NODE_NAME}", ["system:nodes"], name="kubelet")
        config = layout.kubelet / "config.yaml"
        document = kubelet_config(
            layout,
            client_ca=plane.workdir / "pki" / "client-ca.crt",
            tls_cert=pki / "kubelet.crt",
            tls_key=pki / "kubelet.key",
        )
        write_private_file(config, yaml.safe_dump(document).encode())
        layout.kubelet_root.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "kubelet",
            [
                str(self.binaries[KUBELET.name]),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={layout.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_ADDRESS}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        kubeconfig = self.plane.mint_user("system:kube-proxy", name="kube-proxy")
        config = self.layout.root / "kube-proxy" / "config.yaml"
        document = kube_proxy_config(kubeconfig, free_loopback_port(), free_loopback_port())
        write_private_file(config, yaml.safe_dump(document).encode())
        self._spawn(
            "kube-proxy", [str(self.binaries[KUBE_PROXY.name]), f"--config={config}", "--v=1"]
        )

    def _wait(self, process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.running():
                raise NodeError(
                    f"{process.name} exited with code {process.popen.returncode} during "
                    f"start-up; last lines of {process.log_path}:\n{process.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise NodeError(
            f"{process.name} not ready after {timeout:.0f}s; last lines of "
            f"{process.log_path}:\n{process.log_tail()}"
        )

    def _wait_node_ready(self, timeout: float) -> None:
        kubelet = next(p for p in self.processes if p.name == "kubelet")

        def ready() -> bool:
            for process in (*self.plane.processes, *self.processes):
                if not process.running():
                    raise NodeError(
                        f"{process.name} exited with code {process.popen.returncode}; last "
                        f"lines of {process.log_path}:\n{process.log_tail()}"
                    )
            listed = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if not listed:
                return False
            conditions = json.loads(listed)["status"].get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait(kubelet, ready, timeout)

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> str | None:
        """kubectl as the cluster admin; its stdout (None on failure when not ``check``)."""
        return _run(
            [str(self.binaries[KUBECTL.name]), f"--kubeconfig={self.kubeconfig}", *args],
            stdin=stdin,
            check=check,
            timeout=timeout,
        )

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> str | None:
        """containerd's own client on the node's socket, in the CRI's namespace."""
        return _run(
            ["ctr", f"--address={self.layout.containerd_socket}", "--namespace=k8s.io", *args],
            check=check,
            timeout=timeout,
        )

    def stop(self, progress: ProgressFn) -> None:
        """Stop Pods (through the kubelet, so CNI releases their network), then every process,
        then undo the machine changes."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._drain_pods(progress)
        finally:
            for process in reversed(self.processes):
                process.stop()
            self.plane.stop()
            cleanup.tear_down(self.record, progress)
            OWNER_FILE.unlink(missing_ok=True)
            self.lock.close()

    def _drain_pods(self, progress: ProgressFn, timeout: float = 60.0) -> None:
        controller_manager = [
            p for p in self.plane.processes if p.name == "kube-controller-manager"
        ]
        kubelet = [p for p in self.processes if p.name == "kubelet" and p.running()]
        if not kubelet or not all(p.running() for p in self.plane.processes):
            return
        for process in controller_manager:
            process.stop()  # or its ReplicaSets would start the Pods again
        self.kubectl(
            "delete",
            "pods",
            "--all",
            "--all-namespaces",
            "--grace-period=1",
            "--wait=false",
            check=False,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.kubectl("get", "pods", "--all-namespaces", "-o", "name", check=False)
            tasks = self.ctr("tasks", "list", "--quiet", check=False)
            if pods is not None and not pods.strip() and tasks is not None and not tasks.strip():
                return
            time.sleep(0.5)
        progress(f"node: Pods still stopping after {timeout:.0f}s; stopping them by force")


def _make_pod_cgroup_root() -> None:
    """The kubelet wants its cgroupRoot to exist in every hierarchy; cpuset needs its CPUs
    and memory nodes set before anything can join it (cgroups v1)."""
    for hierarchy in cleanup.CGROUP_MOUNT.iterdir():
        if not hierarchy.is_dir():
            continue
        directory = hierarchy / POD_CGROUP_ROOT.lstrip("/")
        directory.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                (directory / name).write_text((hierarchy / name).read_text())


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _run(argv: list[str], *, stdin: str | None = None, check: bool, timeout: float) -> str | None:
    completed = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        if check:
            raise NodeError(
                f"`{' '.join(argv[:4])} ...` failed (exit {completed.returncode}): "
                f"{completed.stderr.strip()[-2000:]}"
            )
        return None
    return completed.stdout
