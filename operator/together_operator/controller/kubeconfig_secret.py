"""The Secret that holds a cluster's kubeconfig: owned, written only on change, never stolen."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Any

from together_operator.controller.kube import KubeApi
from together_operator.gpucluster.spec import GROUP, KIND, VERSION

KUBECONFIG_KEY = "kubeconfig"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "together-operator"


@dataclass(frozen=True)
class Owner:
    """The GPUCluster a Secret belongs to."""

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


class SecretOutcome(Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    FOREIGN = "foreign"  # a Secret of that name exists and is not ours: left untouched


def content_digest(kubeconfig: str) -> str:
    return hashlib.sha256(kubeconfig.encode()).hexdigest()


def secret_manifest(owner: Owner, secret_name: str, kubeconfig: str) -> dict[str, Any]:
    """The Secret for ``kubeconfig`` (decoded YAML), owned by the GPUCluster."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name,
            "namespace": owner.namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, f"{GROUP}/gpucluster": owner.name},
            "ownerReferences": [owner.reference()],
        },
        "data": {KUBECONFIG_KEY: base64.b64encode(kubeconfig.encode()).decode()},
    }


def owned_by(secret: Any, owner: Owner) -> bool:
    references = secret.metadata.owner_references or []
    return any(ref.uid == owner.uid for ref in references)


async def ensure_kubeconfig_secret(
    kube: KubeApi, owner: Owner, secret_name: str, kubeconfig: str
) -> SecretOutcome:
    """Create or update the Secret when its content differs; never touch a foreign one."""
    existing = await kube.read_secret(owner.namespace, secret_name)
    wanted = secret_manifest(owner, secret_name, kubeconfig)
    if existing is None:
        await kube.create_secret(owner.namespace, wanted)
        return SecretOutcome.WRITTEN
    if not owned_by(existing, owner):
        return SecretOutcome.FOREIGN
    if (existing.data or {}).get(KUBECONFIG_KEY) == wanted["data"][KUBECONFIG_KEY]:
        return SecretOutcome.UNCHANGED
    wanted["metadata"]["resourceVersion"] = existing.metadata.resource_version
    await kube.replace_secret(owner.namespace, secret_name, wanted)
    return SecretOutcome.WRITTEN


async def delete_owned_secret(kube: KubeApi, owner: Owner, secret_name: str) -> bool:
    """Delete the Secret if it is ours (garbage collection would too, where it runs)."""
    existing = await kube.read_secret(owner.namespace, secret_name)
    if existing is None or not owned_by(existing, owner):
        return False
    await kube.delete_secret(owner.namespace, secret_name)
    return True
