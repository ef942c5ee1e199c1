"""The local control plane is a real Kubernetes API server: CRDs, CEL, status, watches, RBAC."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support import KubeTarget, api_client, wait_for

GROUP = "fixtures.together.test"
VERSION = "v1"
PLURAL = "widgets"


def widget_crd() -> dict[str, Any]:
    """A CRD with a status subresource and a CEL rule, like the operator's own."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"replicas": {"type": "integer"}},
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.replicas % 2 == 0",
                                            "message": "replicas must be an even number",
                                        }
                                    ],
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def admin(kube: KubeTarget) -> Any:
    return api_client(kube.kubeconfig)


@pytest.fixture(scope="module")
def established_crd(admin: Any) -> Iterator[dict[str, Any]]:
    extensions = client.ApiextensionsV1Api(admin)
    manifest = widget_crd()
    extensions.create_custom_resource_definition(manifest)

    def established() -> dict[str, Any] | None:
        crd = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        return crd.to_dict() if conditions.get("Established") == "True" else None

    crd = wait_for(established, timeout=30, what="the Widget CRD to become Established")
    yield crd
    extensions.delete_custom_resource_definition(manifest["metadata"]["name"])


@pytest.fixture
def namespace(admin: Any) -> Iterator[str]:
    name = f"cp-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    # Without a controller-manager the namespace stays Terminating; harmless in a test plane.
    core.delete_namespace(name)


def widget(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    }


def test_crd_becomes_established(established_crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in established_crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"


def test_custom_object_create_patch_watch_delete(
    admin: Any, established_crd: dict[str, Any], namespace: str
) -> None:
    objects = client.CustomObjectsApi(admin)
    start = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    events: list[tuple[str, int | None]] = []
    watcher = watch.Watch()

    def record() -> None:
        for event in watcher.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=start["metadata"]["resourceVersion"],
            timeout_seconds=20,
        ):
            obj = event["object"]
            events.append((event["type"], obj.get("spec", {}).get("replicas")))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("w1", 2))
    patched = objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "w1", {"spec": {"replicas": 4}}
    )
    assert patched["spec"]["replicas"] == 4
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")
    thread.join(timeout=25)

    assert events == [("ADDED", 2), ("MODIFIED", 4), ("DELETED", 4)]
    with pytest.raises(ApiException) as missing:
        objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")
    assert missing.value.status == 404


def test_status_subresource_update_keeps_generation(
    admin: Any, established_crd: dict[str, Any], namespace: str
) -> None:
    objects = client.CustomObjectsApi(admin)
    created = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("w2", 2)
    )
    assert created["metadata"]["generation"] == 1

    after_status = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "w2", {"status": {"phase": "Ready"}}
    )
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["metadata"]["generation"] == 1

    # The main resource ignores status, and a spec change does bump the generation.
    after_spec = objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "w2",
        {"spec": {"replicas": 6}, "status": {"phase": "Ignored"}},
    )
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["status"] == {"phase": "Ready"}


def test_cel_rule_rejects_bad_object_with_its_message(
    admin: Any, established_crd: dict[str, Any], namespace: str
) -> None:
    objects = client.CustomObjectsApi(admin)
    with pytest.raises(ApiException) as rejected:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("odd", 3))
    assert rejected.value.status == 422
    assert "replicas must be an even number" in rejected.value.body


def test_minted_user_is_forbidden_until_bound(
    kube: KubeTarget, admin: Any, established_crd: dict[str, Any], namespace: str
) -> None:
    user = f"alice-{uuid.uuid4().hex[:6]}"
    alice = client.CustomObjectsApi(api_client(kube.mint_user(user, ["widget-readers"])))

    with pytest.raises(ApiException) as forbidden:
        alice.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert forbidden.value.status == 403
    assert user in forbidden.value.body

    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "widget-reader"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["list", "get"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "widget-readers"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "widget-reader",
            },
            "subjects": [
                {"kind": "Group", "name": "widget-readers", "apiGroup": "rbac.authorization.k8s.io"}
            ],
        },
    )

    def allowed() -> dict[str, Any] | None:
        try:
            listed: dict[str, Any] = alice.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL
            )
        except ApiException as error:
            if error.status == 403:
                return None  # the RBAC cache has not seen the binding yet
            raise
        return listed

    assert wait_for(allowed, timeout=15, what=f"{user} to be allowed")["items"] == []
    # The grant is exactly what was bound: reading yes, writing still no.
    with pytest.raises(ApiException) as still_forbidden:
        alice.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, widget("x", 2))
    assert still_forbidden.value.status == 403
