"""The API server accepts the manifests as rendered, with no warning, in a restricted namespace.

Server-side dry-run runs every admission step (schema, defaulting, Pod Security) without
persisting anything. The CRD is applied for real first (a dry-run of CRs needs it), and each
test makes its own namespace labelled `restricted` for enforce, warn and audit: Pod Security
checks a Deployment's Pod template by *warning*, so "no Warning:" is the restricted verdict.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    CRD_SOURCE,
    DEPLOY,
    helm_template,
    kustomize,
    load_objects,
    run_tool,
)
from tests.support import KubeTarget
from together_operator.devenv.stack import crd_established

FIELD_MANAGER = "together-operator-deploy-tests"


def apply(
    kubectl: Path, kube: KubeTarget, manifests: str, *, dry_run: bool
) -> subprocess.CompletedProcess[str]:
    args = [str(kubectl), "--kubeconfig", str(kube.kubeconfig), "apply", "--server-side"]
    args += ["--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return subprocess.run(
        args, input=manifests, capture_output=True, text=True, timeout=120, check=False
    )


def applied_cleanly(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    assert "Warning:" not in result.stderr, result.stderr


@pytest.fixture
def restricted_namespace(kubectl: Path, kube: KubeTarget) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard; the CRD installed."""
    name = f"deploy-test-{uuid.uuid4().hex[:8]}"
    labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn", "audit")}
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }
    applied_cleanly(apply(kubectl, kube, yaml.safe_dump(namespace), dry_run=False))
    applied_cleanly(apply(kubectl, kube, CRD_SOURCE.read_text(), dry_run=False))
    assert crd_established(kubectl, kube.kubeconfig), "the CRD was not Established in 60s"
    yield name
    run_tool(
        [kubectl, "--kubeconfig", kube.kubeconfig, "delete", "namespace", name, "--wait=false"]
    )


def kustomize_into(kubectl: Path, namespace: str, workdir: Path) -> str:
    """deploy/ rendered through an overlay that moves it to ``namespace``, as users do."""
    overlay = workdir / "overlay"
    overlay.mkdir()
    base = os.path.relpath(DEPLOY, overlay)  # kustomize takes no absolute base paths
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": namespace, "resources": [base]})
    )
    return kustomize(kubectl, overlay)


def test_kustomize_output_passes_server_dry_run_without_warnings(
    kubectl: Path, kube: KubeTarget, restricted_namespace: str, tmp_path: Path
) -> None:
    manifests = kustomize_into(kubectl, restricted_namespace, tmp_path)
    kinds = {o["kind"] for o in load_objects(manifests)}
    assert {"Namespace", "Deployment", "ClusterRoleBinding", "CustomResourceDefinition"} <= kinds
    result = apply(kubectl, kube, manifests, dry_run=True)
    applied_cleanly(result)
    assert "deployment.apps/together-operator serverside-applied (server dry run)" in result.stdout


@pytest.mark.parametrize(
    "values",
    [(), ("watchNamespaces={NS}", "apiKey.value=not-a-real-key")],
    ids=["cluster-wide", "namespaced-with-created-secret"],
)
def test_helm_output_passes_server_dry_run_without_warnings(
    kubectl: Path,
    helm: Path,
    kube: KubeTarget,
    restricted_namespace: str,
    values: tuple[str, ...],
) -> None:
    chosen = [v.replace("NS", restricted_namespace) for v in values]
    manifests = helm_template(helm, *chosen, namespace=restricted_namespace)
    result = apply(kubectl, kube, manifests, dry_run=True)
    applied_cleanly(result)
    assert "deployment.apps/together-operator serverside-applied (server dry run)" in result.stdout


def test_pod_security_warns_about_a_pod_that_is_not_restricted(
    kubectl: Path, kube: KubeTarget, restricted_namespace: str, tmp_path: Path
) -> None:
    """The control for the tests above: without the securityContexts, the server warns."""
    objects = load_objects(kustomize_into(kubectl, restricted_namespace, tmp_path))
    deployment: dict[str, Any] = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    del pod["securityContext"]
    for container in pod["containers"]:
        del container["securityContext"]
    result = apply(kubectl, kube, yaml.safe_dump(deployment), dry_run=True)
    assert result.returncode == 0, result.stderr
    assert "Warning:" in result.stderr, result.stderr
    assert 'violate PodSecurity "restricted' in result.stderr, result.stderr
