"""deploy/ installed with kustomize, the image built from the Dockerfile, on a real node."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy.manifests import SYSTEM_NAMESPACE
from tests.e2e.conftest import NodeStack, image_tag, live_clusters
from tests.integration.conftest import GPUClusters
from tests.support import wait_for
from together_operator.devenv.node.hostnet import NODE_NAME


def pod_manifest(name: str, namespace: str, script: str) -> dict[str, Any]:
    """A one-shot Pod running ``script`` with the operator's image (it has Python), meeting
    Pod Security "restricted"."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": f"together-operator:{image_tag()}",
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def run_pod(node: NodeStack, name: str, namespace: str, script: str) -> str:
    """Run ``script`` in a Pod to completion; its log."""
    node.kubectl("apply", "-f", "-", stdin=json.dumps(pod_manifest(name, namespace, script)))

    def finished() -> str | None:
        phase = node.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}")
        return phase if phase in {"Succeeded", "Failed"} else None

    phase = wait_for(finished, timeout=90, interval=1, what=f"Pod {namespace}/{name} to finish")
    log = node.kubectl("-n", namespace, "logs", name)
    assert phase == "Succeeded", log
    return log


def test_gpucluster_lifecycle_is_reconciled_by_the_operator_pod(
    kustomize_install: NodeStack, gpuclusters: GPUClusters, namespace: str, tmp_path: Path
) -> None:
    node = kustomize_install
    gpuclusters.create(namespace, "lifecycle")
    gpuclusters.wait_condition(namespace, "lifecycle", "Ready", "True", timeout=90)
    # The operator that did it is the Pod: its log (JSON) names the object.
    assert f"{namespace}/lifecycle" in node.operator_logs()

    # The kubeconfig Secret works: the simulator hands out a kubeconfig for this very node.
    secret = node.get_json("secret", "-n", namespace, "lifecycle-kubeconfig")
    kubeconfig = tmp_path / "tenant.kubeconfig"
    kubeconfig.write_bytes(base64.b64decode(secret["data"]["kubeconfig"]))
    readyz = subprocess.run(
        [str(node.kubectl_binary), f"--kubeconfig={kubeconfig}", "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert readyz.stdout == "ok", readyz.stderr

    together_name = f"{namespace}-lifecycle"
    gpuclusters.patch_spec(namespace, "lifecycle", {"numGpus": 16})
    wait_for(
        lambda: [c for c in live_clusters(node, together_name) if c.cluster.num_gpus == 16],
        timeout=90,
        interval=1,
        what="Together to scale the cluster to 16 GPUs",
    )
    wait_for(
        lambda: (
            (gpuclusters.get(namespace, "lifecycle") or {}).get("status", {}).get("numGpus") == 16
        ),
        timeout=90,
        interval=1,
        what="status.numGpus to show 16",
    )

    gpuclusters.delete_and_wait(namespace, "lifecycle", timeout=120)
    [cluster] = node.simulator.clusters_for(together_name)
    assert cluster.deleted, "the GPUCluster is gone but its Together cluster is not"


def test_operator_pod_passes_its_liveness_probe(kustomize_install: NodeStack) -> None:
    node = kustomize_install
    [pod] = node.operator_pods()
    pod_name = pod["metadata"]["name"]

    def successful_liveness_probes() -> int:
        # The kubelet's own probe counters, read through the API server's node proxy.
        metrics = node.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/probes")
        total = 0
        for line in metrics.splitlines():
            if line.startswith("prober_probe_total{") and f'pod="{pod_name}"' in line:
                labels = line.split("}")[0]
                assert 'result="successful"' in labels or 'probe_type="Liveness"' not in labels, (
                    f"a liveness probe did not succeed: {line}"
                )
                if 'probe_type="Liveness"' in labels:
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total

    # initialDelaySeconds 15, periodSeconds 20: at least one probe within about 40 s.
    wait_for(successful_liveness_probes, timeout=90, interval=2, what="a successful liveness probe")
    [pod] = node.operator_pods()
    [status] = pod["status"]["containerStatuses"]
    assert (status["ready"], status["restartCount"]) == (True, 0), status


def test_metrics_are_scraped_through_the_service(
    kustomize_install: NodeStack, namespace: str
) -> None:
    """From a Pod, by the Service's DNS name, as Prometheus would: CoreDNS + kube-proxy."""
    url = f"http://together-operator-metrics.{SYSTEM_NAMESPACE}.svc.cluster.local:8080/metrics"
    script = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    scraped = run_pod(kustomize_install, "scrape", namespace, script)
    assert "# TYPE together_operator_reconciles_total counter" in scraped
    assert "together_operator_clusters" in scraped


def test_operator_namespace_enforces_pod_security_restricted(kustomize_install: NodeStack) -> None:
    node = kustomize_install
    labels = node.get_json("namespace", SYSTEM_NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    privileged = pod_manifest("privileged", SYSTEM_NAMESPACE, "print()")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    rejected = subprocess.run(
        [
            str(node.kubectl_binary),
            f"--kubeconfig={node.kubeconfig}",
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ],
        input=json.dumps(privileged),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rejected.returncode != 0
    assert re.search(r'violates PodSecurity "restricted:latest"', rejected.stderr), rejected.stderr
    # ... while the operator's own Pod was admitted and runs there.
    [pod] = node.operator_pods()
    assert pod["status"]["phase"] == "Running"


def test_deleting_the_operator_pod_right_after_apply_creates_one_cluster(
    kustomize_install: NodeStack, gpuclusters: GPUClusters, namespace: str
) -> None:
    node = kustomize_install
    gpuclusters.create(namespace, "restart")
    node.kubectl(
        "-n",
        SYSTEM_NAMESPACE,
        "delete",
        "pod",
        "-l",
        "app.kubernetes.io/name=together-operator",
        "--wait=false",
    )
    node.wait_operator_ready()
    gpuclusters.wait_condition(namespace, "restart", "Ready", "True", timeout=120)
    assert len(node.simulator.clusters_for(f"{namespace}-restart")) == 1
    gpuclusters.delete_and_wait(namespace, "restart", timeout=120)
