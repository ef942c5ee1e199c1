"""`dev up --in-cluster`: the operator as a Pod on a one-node cluster, installed from deploy/.

Two halves. :func:`prepare` runs in the foreground of `dev up` (so first-time builds show
their progress): Debian packages, binaries, and the images (pause; the operator's image
built from the project's Dockerfile as it is) exported to archives. :func:`start` runs in
the supervisor: the node, the simulator on the node's address (where the Pod
reaches it), and the operator installed with kustomize from deploy/ and that image.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from together_operator.devenv.node import images
from together_operator.devenv.node.cluster import NodeCluster, NodeError
from together_operator.devenv.node.hostnet import NODE_ADDRESS
from together_operator.devenv.processes import ManagedProcess
from together_operator.devenv.system import ensure_system_packages
from together_operator.devenv.toolchain import CONTROL_PLANE_TOOLS, NODE_TOOLS, ensure_binaries

if TYPE_CHECKING:
    from together_operator.devenv.stack import StackFiles, StackOptions

ProgressFn = Callable[[str], None]
OPERATOR_REPOSITORY = "docker.io/library/together-operator"
OPERATOR_NAMESPACE = "together-operator-system"
OPERATOR_DEPLOYMENT = "together-operator"
API_KEY_SECRET = "together-api-key"


class InClusterError(RuntimeError):
    """The in-cluster stack could not be prepared or started; the message says why."""


def project_source() -> Path:
    """The checkout that holds the Dockerfile and deploy/ (this package's, when installed
    editable, else the current directory)."""
    for candidate in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (candidate / "Dockerfile").is_file() and (candidate / "deploy").is_dir():
            return candidate
    raise InClusterError(
        "`dev up --in-cluster` builds the image from the project's Dockerfile and installs "
        "deploy/: run it from a checkout of together-operator"
    )


def deploy_image_tag(source: Path) -> str:
    """The image tag deploy/'s kustomization installs (its `images:` newTag)."""
    kustomization = yaml.safe_load((source / "deploy" / "kustomization.yaml").read_text())
    for image in kustomization.get("images", []):
        if image.get("name") == "together-operator":
            return str(image["newTag"])
    raise InClusterError("deploy/kustomization.yaml sets no newTag for the together-operator image")


@dataclass(frozen=True)
class PreparedImages:
    """What the supervisor imports into the node's containerd."""

    sandbox_image: str
    archives: list[Path]
    operator_image: str | None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "sandbox_image": self.sandbox_image,
                    "archives": [str(a) for a in self.archives],
                    "operator_image": self.operator_image,
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> PreparedImages:
        data = json.loads(path.read_text())
        return cls(
            data["sandbox_image"], [Path(a) for a in data["archives"]], data["operator_image"]
        )


def prepare(state_dir: Path, progress: ProgressFn, *, with_operator: bool) -> PreparedImages:
    """Packages, binaries and image archives for the node (the slow, first-time part)."""
    if os.geteuid() != 0:
        raise InClusterError(
            "`dev up --in-cluster` needs root: the node adds an address on lo, a bridge, "
            "routes and iptables rules, and runs containerd and the kubelet"
        )
    ensure_system_packages(progress)
    ensure_binaries((*CONTROL_PLANE_TOOLS, *NODE_TOOLS), progress)
    image_dir = state_dir / "images"
    buildah = images.Buildah.for_cache(state_dir / "logs" / "images.log")
    sandbox = images.ensure_pause_image(buildah, progress)
    archives = [images.export_archive(buildah, sandbox, image_dir / "pause.tar")]
    operator_image = None
    if with_operator:
        source = project_source()
        operator_image = f"{OPERATOR_REPOSITORY}:{deploy_image_tag(source)}"
        for base in images.dockerfile_base_images((source / "Dockerfile").read_text()):
            images.ensure_stand_in_base(buildah, base, progress)
        progress(f"building {operator_image} from {source / 'Dockerfile'} (buildah) ...")
        started = time.monotonic()
        images.build_from_dockerfile(buildah, source, operator_image)
        progress(f"image built in {time.monotonic() - started:.0f}s")
        archives.append(
            images.export_archive(buildah, operator_image, image_dir / "together-operator.tar")
        )
    prepared = PreparedImages(sandbox, archives, operator_image)
    prepared.save(image_dir / "prepared.json")
    return prepared


def free_node_port() -> int:
    """A TCP port free on the node's address a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((NODE_ADDRESS, 0))
        return int(sock.getsockname()[1])


def pointed_at(rendered: str, base_url: str) -> str:
    """deploy/'s rendered objects with the operator's Deployment given TOGETHER_BASE_URL (the
    one change the dev install makes: the simulator instead of Together)."""
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    for document in documents:
        if document["kind"] == "Deployment" and document["metadata"]["name"] == OPERATOR_DEPLOYMENT:
            container = document["spec"]["template"]["spec"]["containers"][0]
            container.setdefault("env", []).append({"name": "TOGETHER_BASE_URL", "value": base_url})
    return yaml.safe_dump_all(documents, sort_keys=False)


def install_operator(node: NodeCluster, deploy: Path, base_url: str, api_key: str) -> None:
    """The README's install: `kubectl apply -k deploy/` (pointed at the simulator), the API key
    Secret, and a wait for the rollout."""
    _announce(f"installing the operator: kubectl apply --server-side -k {deploy}")
    manifests = pointed_at(node.kubectl("kustomize", str(deploy)) or "", base_url)
    (node.layout.root / "operator-install.yaml").write_text(manifests)
    namespace = node.kubectl(
        "create", "namespace", OPERATOR_NAMESPACE, "--dry-run=client", "-o", "yaml"
    )
    node.kubectl("apply", "-f", "-", stdin=namespace)
    # The key goes through stdin, never onto a command line or into a file.
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": API_KEY_SECRET, "namespace": OPERATOR_NAMESPACE},
        "stringData": {"apiKey": api_key},
    }
    node.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    node.kubectl("apply", "--server-side", "-f", "-", stdin=manifests)
    rollout = node.kubectl(
        "-n",
        OPERATOR_NAMESPACE,
        "rollout",
        "status",
        f"deployment/{OPERATOR_DEPLOYMENT}",
        "--timeout=180s",
        check=False,
        timeout=200,
    )
    if rollout is None:
        pods = node.kubectl("-n", OPERATOR_NAMESPACE, "describe", "pods", check=False)
        raise NodeError(f"the operator Deployment did not roll out within 180s:\n{pods}")
    _announce(f"operator running in namespace {OPERATOR_NAMESPACE}")


StartSimulator = Callable[
    ["StackFiles", "StackOptions", Path, str, int], tuple[ManagedProcess, str]
]


def start(
    files: StackFiles, options: StackOptions, start_simulator: StartSimulator
) -> tuple[NodeCluster, list[ManagedProcess], dict[str, str]]:
    """The supervisor's half: node, simulator on the node's address, operator from deploy/."""
    from together_operator.devenv.stack import DEV_API_KEY

    prepared = PreparedImages.load(files.prepared_images)
    node = NodeCluster.start(
        files.node, _announce, images=prepared.archives, sandbox_image=prepared.sandbox_image
    )
    try:
        print(f"kube-apiserver {node.plane.server}", flush=True)
        tenant = node.plane.mint_user("tenant-admin", ["system:masters"], name="tenant")
        simulator, base_url = start_simulator(
            files, options, tenant, NODE_ADDRESS, free_node_port()
        )
        if options.with_operator:
            install_operator(node, project_source() / "deploy", base_url, DEV_API_KEY)
    except BaseException:
        node.stop(_announce)
        raise
    variables = {
        "KUBECONFIG": str(node.kubeconfig),
        "TOGETHER_BASE_URL": base_url,
        "TOGETHER_API_KEY": DEV_API_KEY,
    }
    return node, [simulator], variables


def _announce(message: str) -> None:
    print(message, flush=True)
