"""The kustomize base and the Helm chart render, agree with each other and with crds/."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    CHART,
    CRD_SOURCE,
    SYSTEM_NAMESPACE,
    helm_template,
    kustomize,
    load_objects,
    of_kind,
    only,
    operator_container,
    run_tool,
)


def rendered(kubectl: Path, helm: Path, source: str) -> list[dict[str, Any]]:
    return load_objects(kustomize(kubectl) if source == "kustomize" else helm_template(helm))


@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_rendered_crd_is_the_generated_crd(kubectl: Path, helm: Path, source: str) -> None:
    objects = rendered(kubectl, helm, source)
    assert only(objects, "CustomResourceDefinition") == yaml.safe_load(CRD_SOURCE.read_text())


@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_operator_pod_meets_restricted_pod_security(kubectl: Path, helm: Path, source: str) -> None:
    objects = rendered(kubectl, helm, source)
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--liveness-port={ports['healthz']}" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert container["args"][0] == "run"
    assert container["env"][0] == {
        "name": "TOGETHER_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "together-api-key", "key": "apiKey"}},
    }


def test_kustomize_base_installs_into_a_restricted_namespace(kubectl: Path) -> None:
    objects = load_objects(kustomize(kubectl))
    namespace = only(objects, "Namespace")
    assert namespace["metadata"]["name"] == SYSTEM_NAMESPACE
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    namespaced = [o for o in objects if o["kind"] not in {"Namespace", "CustomResourceDefinition"}]
    namespaced = [o for o in namespaced if not o["kind"].startswith("Cluster")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {SYSTEM_NAMESPACE}
    assert "--all-namespaces" in operator_container(objects)["args"]


def test_helm_defaults_watch_every_namespace_without_creating_a_secret(helm: Path) -> None:
    objects = load_objects(helm_template(helm))
    assert not of_kind(objects, "Secret")
    assert not of_kind(objects, "ServiceMonitor")
    assert not of_kind(objects, "Namespace")  # `helm install --create-namespace` does that
    assert "--all-namespaces" in operator_container(objects)["args"]
    roles = [
        (o["kind"], o["metadata"].get("namespace")) for o in objects if o["kind"].endswith("Role")
    ]
    # Cluster-wide for the GPUClusters; the Lease only in the operator's own namespace.
    assert sorted(roles, key=str) == [("ClusterRole", None), ("Role", SYSTEM_NAMESPACE)]


def test_helm_watch_namespaces_become_flags_and_namespaced_roles(helm: Path) -> None:
    objects = load_objects(helm_template(helm, "watchNamespaces={team-a,team-b}"))
    args = operator_container(objects)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    assert not of_kind(objects, "ClusterRole")
    assert not of_kind(objects, "ClusterRoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in of_kind(objects, "Role")) == [
        "team-a",
        "team-b",
        SYSTEM_NAMESPACE,  # the Lease
    ]


def test_helm_creates_the_api_key_secret_only_from_a_value(helm: Path) -> None:
    objects = load_objects(
        helm_template(helm, "apiKey.value=tok-123", "apiKey.secretName=together-creds")
    )
    secret = only(objects, "Secret")
    assert secret["metadata"]["name"] == "together-creds"
    assert base64.b64decode(secret["data"]["apiKey"]).decode() == "tok-123"
    ref = operator_container(objects)["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "together-creds", "key": "apiKey"}


def test_helm_without_an_operator_key_sets_no_key_variable(helm: Path) -> None:
    objects = load_objects(helm_template(helm, "apiKey.enabled=false"))
    names = [e["name"] for e in operator_container(objects).get("env") or []]
    assert "TOGETHER_API_KEY" not in names


def test_helm_settings_reach_the_operator(helm: Path) -> None:
    objects = load_objects(
        helm_template(
            helm,
            "baseURL=http://127.0.0.1:8090",
            "poll.fastSeconds=2",
            "poll.slowSeconds=120",
            "logFormat=plain",
            "image.repository=registry.example/together-operator",
            "image.tag=1.2.3",
        )
    )
    container = operator_container(objects)
    assert container["image"] == "registry.example/together-operator:1.2.3"
    assert {"--fast-poll-seconds=2", "--slow-poll-seconds=120", "--log-format=plain"} <= set(
        container["args"]
    )
    assert {"name": "TOGETHER_BASE_URL", "value": "http://127.0.0.1:8090"} in container["env"]


def test_helm_metrics_service_and_optional_service_monitor(helm: Path) -> None:
    objects = load_objects(
        helm_template(helm, "metrics.port=9100", "metrics.serviceMonitor.enabled=true")
    )
    service = only(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9100, "targetPort": "metrics"}]
    labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    monitor = only(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert "--metrics-port=9100" in operator_container(objects)["args"]

    without = load_objects(helm_template(helm, "metrics.enabled=false"))
    assert not of_kind(without, "Service")
    assert not [a for a in operator_container(without)["args"] if "metrics" in a]


def test_chart_passes_helm_lint_strict(helm: Path) -> None:
    assert "0 chart(s) failed" in run_tool([helm, "lint", "--strict", CHART])


def test_helm_rejects_values_outside_its_schema(helm: Path) -> None:
    with pytest.raises(AssertionError, match="logFormat"):
        helm_template(helm, "logFormat=xml")
