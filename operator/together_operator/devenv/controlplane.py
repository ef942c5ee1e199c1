"""A real etcd + kube-apiserver on loopback: controller-runtime's envtest, in Python.

The API server runs with RBAC authorization, a client-certificate CA (so tests can mint users
with chosen groups) and a service-account signing key (so the TokenRequest API works).
By default there is no controller-manager: nothing garbage-collects, finalizes namespaces or
signs CSRs. ``controllers=LIFECYCLE_CONTROLLERS`` adds kube-controller-manager with the
namespace and garbage-collector controllers, so a test can drive a real namespace deletion;
the one-node cluster runs it with every controller.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import yaml

from together_operator.devenv.kubeconfig import (
    kubeconfig_document,
    write_kubeconfig,
    write_private_file,
)
from together_operator.devenv.pki import (
    CertificateAuthority,
    new_private_key,
    private_key_pem,
    public_key_pem,
)
from together_operator.devenv.processes import ManagedProcess, spawn
from together_operator.devenv.toolchain import (
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    resolve_binary,
)

ADMIN_USER = "together-admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
#: Enough of kube-controller-manager for namespaces to finish deleting and for ownerReferences
#: to be honoured (the integration tier); the node runs every controller ("*").
LIFECYCLE_CONTROLLERS = ("namespace", "garbagecollector")


@dataclass(frozen=True)
class ApiServerNetwork:
    """Where the API server listens and what its serving certificate names.

    The default is envtest's: 127.0.0.1 on a free port. The one-node cluster listens on the
    node's address, so that Pods reach it through the ``kubernetes`` Service.
    """

    address: str = "127.0.0.1"
    port: int | None = None
    service_cidr: str = SERVICE_CLUSTER_IP_RANGE
    #: The first address of the Service range: what ``kubernetes.default.svc`` resolves to.
    service_ip: str = "10.0.0.1"
    extra_dns_names: tuple[str, ...] = ()


class ControlPlaneError(RuntimeError):
    """The control plane failed to start; the message carries the failing process's log."""


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControlPlane:
    """A running local control plane. Use :meth:`start`; stop with :meth:`stop` or ``with``."""

    workdir: Path
    server: str
    kubeconfig: Path
    processes: list[ManagedProcess]
    client_ca: CertificateAuthority
    serving_ca: CertificateAuthority
    owns_workdir: bool
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        *,
        timeout: float = 90.0,
        etcd_binary: Path | None = None,
        apiserver_binary: Path | None = None,
        progress: Callable[[str], None] | None = None,
        network: ApiServerNetwork | None = None,
        controllers: tuple[str, ...] = (),
    ) -> ControlPlane:
        """Start etcd and kube-apiserver (and kube-controller-manager with ``controllers``)
        and wait until ``/readyz`` says ok."""
        net = network or ApiServerNetwork()
        etcd_path = etcd_binary or resolve_binary(ETCD, progress)
        apiserver_path = apiserver_binary or resolve_binary(KUBE_APISERVER, progress)
        controller_manager_path = (
            resolve_binary(KUBE_CONTROLLER_MANAGER, progress) if controllers else None
        )
        owns_workdir = workdir is None
        root = Path(tempfile.mkdtemp(prefix="together-cp-")) if workdir is None else workdir
        root.mkdir(parents=True, exist_ok=True)
        pki_dir = root / "pki"

        serving_ca = CertificateAuthority.generate("together-local-serving-ca")
        client_ca = CertificateAuthority.generate("together-local-client-ca")
        serving = serving_ca.issue(
            "kube-apiserver",
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                *net.extra_dns_names,
            ],
            ip_addresses=sorted({"127.0.0.1", net.address, net.service_ip}),
            server=True,
        )
        write_private_file(pki_dir / "serving.crt", serving.cert_pem)
        write_private_file(pki_dir / "serving.key", serving.key_pem)
        write_private_file(pki_dir / "serving-ca.crt", serving_ca.cert_pem)
        write_private_file(pki_dir / "client-ca.crt", client_ca.cert_pem)
        # kube-controller-manager signs CSRs (kubernetes.io/kube-apiserver-client) with it.
        write_private_file(pki_dir / "client-ca.key", private_key_pem(client_ca.key))
        kubelet_client = client_ca.issue(
            "kube-apiserver-kubelet-client", organizations=["system:masters"]
        )
        write_private_file(pki_dir / "kubelet-client.crt", kubelet_client.cert_pem)
        write_private_file(pki_dir / "kubelet-client.key", kubelet_client.key_pem)
        signing_key = new_private_key()
        write_private_file(pki_dir / "sa.key", private_key_pem(signing_key))
        write_private_file(pki_dir / "sa.pub", public_key_pem(signing_key))

        etcd_client_port, etcd_peer_port, free_port = _distinct_ports(3)
        apiserver_port = net.port or free_port
        server = f"https://{net.address}:{apiserver_port}"
        processes: list[ManagedProcess] = []
        plane = cls(
            workdir=root,
            server=server,
            kubeconfig=root / "admin.kubeconfig",
            processes=processes,
            client_ca=client_ca,
            serving_ca=serving_ca,
            owns_workdir=owns_workdir,
        )
        try:
            processes.append(
                spawn(
                    "etcd",
                    _etcd_argv(etcd_path, root / "etcd", etcd_client_port, etcd_peer_port),
                    root / "logs" / "etcd.log",
                )
            )
            processes.append(
                spawn(
                    "kube-apiserver",
                    _apiserver_argv(apiserver_path, pki_dir, etcd_client_port, net, apiserver_port),
                    root / "logs" / "kube-apiserver.log",
                )
            )
            plane.kubeconfig = plane.mint_user(ADMIN_USER, ["system:masters"], name="admin")
            plane._wait_ready(timeout)
            if controller_manager_path is not None:
                kubeconfig = plane.mint_user(
                    "system:kube-controller-manager", ["system:masters"], name="controller-manager"
                )
                processes.append(
                    spawn(
                        "kube-controller-manager",
                        _controller_manager_argv(
                            controller_manager_path, pki_dir, kubeconfig, controllers, net
                        ),
                        root / "logs" / "kube-controller-manager.log",
                    )
                )
        except BaseException:
            plane.stop()
            raise
        return plane

    def mint_user(self, user: str, groups: Sequence[str] = (), *, name: str | None = None) -> Path:
        """A kubeconfig for ``user`` in ``groups``, authenticated by a client certificate."""
        pair = self.client_ca.issue(user, organizations=groups)
        document = kubeconfig_document(
            server=self.server,
            ca_pem=self.serving_ca.cert_pem,
            user=user,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
        )
        return write_kubeconfig(self.workdir / "users" / f"{name or user}.kubeconfig", document)

    def _wait_ready(self, timeout: float) -> None:
        context = _client_ssl_context(self.kubeconfig)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(verify=context, timeout=2.0) as client:
            while time.monotonic() < deadline:
                for process in self.processes:
                    if not process.running():
                        raise ControlPlaneError(
                            f"{process.name} exited with code {process.popen.returncode} "
                            f"during start-up; last lines of {process.log_path}:\n"
                            f"{process.log_tail()}"
                        )
                try:
                    response = client.get(f"{self.server}/readyz")
                    if response.status_code == 200 and response.text.strip() == "ok":
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as error:
                    last = type(error).__name__
                time.sleep(0.2)
        apiserver = self.processes[-1]
        raise ControlPlaneError(
            f"kube-apiserver at {self.server} not ready after {timeout:.0f}s ({last}); "
            f"last lines of {apiserver.log_path}:\n{apiserver.log_tail()}"
        )

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd; remove the work directory if we made it."""
        if self._stopped:
            return
        self._stopped = True
        for process in reversed(self.processes):
            process.stop()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(count * 10):
        port = free_loopback_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise ControlPlaneError("could not find free loopback ports")


def _etcd_argv(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=together-local",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=together-local={peer}",
        # Test data is thrown away: skipping fsync makes every write much faster.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def _apiserver_argv(
    binary: Path, pki: Path, etcd_port: int, net: ApiServerNetwork, port: int
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--bind-address={net.address}",
        f"--advertise-address={net.address}",
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--client-ca-file={pki / 'client-ca.crt'}",
        f"--service-account-issuer=https://{net.address}:{port}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={net.service_cidr}",
        # Logs, exec and the node proxy: the kubelet trusts the client CA.
        f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        # As on OpenShift: setting blockOwnerDeletion needs update on the owner's
        # finalizers, so tests under the operator's ServiceAccount prove it has that.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
    ]


def _controller_manager_argv(
    binary: Path, pki: Path, kubeconfig: Path, controllers: tuple[str, ...], net: ApiServerNetwork
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(controllers)}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        # Its own HTTPS endpoint stays on loopback, on a free port.
        "--bind-address=127.0.0.1",
        f"--secure-port={free_loopback_port()}",
        f"--root-ca-file={pki / 'serving-ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={pki / 'client-ca.crt'}",
        f"--cluster-signing-key-file={pki / 'client-ca.key'}",
        f"--service-cluster-ip-range={net.service_cidr}",
        # A namespace deletion finishes in seconds, not after the default 5 s resync rounds.
        "--concurrent-namespace-syncs=5",
    ]


def _client_ssl_context(kubeconfig: Path) -> ssl.SSLContext:
    """An SSL context holding the kubeconfig's CA and client certificate."""
    import base64

    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    with tempfile.TemporaryDirectory() as scratch:
        cert = write_private_file(
            Path(scratch) / "client.crt", base64.b64decode(user["client-certificate-data"])
        )
        key = write_private_file(
            Path(scratch) / "client.key", base64.b64decode(user["client-key-data"])
        )
        context.load_cert_chain(cert, key)
    return context
