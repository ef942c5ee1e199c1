"""The Secret that holds a cluster's kubeconfig: owned, written only on change, never stolen."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from enum import Enum
from typing import Any

from kubernetes.client.rest import ApiException

from together_operator.controller.credentials import KUBECONFIG_ROLE, ROLE_LABEL
from together_operator.controller.kube import KubeApi, Secret
from together_operator.controller.objects import EventFn, Owner, SecretMemory
from together_operator.gpucluster.plan import Stall
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GROUP, GPUClusterSpec
from together_operator.together.models import GPUClusterInfo

KUBECONFIG_KEY = "kubeconfig"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "together-operator"


class SecretOutcome(Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    FOREIGN = "foreign"  # a Secret of that name exists and is not ours: left untouched


def secret_digest(secret_name: str, kubeconfig: str) -> str:
    """What identifies the content published to a Secret: its name and the kubeconfig."""
    return content_digest(f"{secret_name}\n{kubeconfig}")


def published_digest(secret: Mapping[str, Any]) -> str | None:
    """:func:`secret_digest` of a Secret as a watch event shows it (None: no kubeconfig)."""
    encoded = (secret.get("data") or {}).get(KUBECONFIG_KEY)
    kubeconfig = _decode_kubeconfig(encoded) if isinstance(encoded, str) else None
    if kubeconfig is None:
        return None
    return secret_digest(secret.get("metadata", {}).get("name", ""), kubeconfig)


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
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                f"{GROUP}/gpucluster": owner.name,
                ROLE_LABEL: KUBECONFIG_ROLE,
            },
            "ownerReferences": [owner.reference()],
        },
        "data": {KUBECONFIG_KEY: base64.b64encode(kubeconfig.encode()).decode()},
    }


def owned_by(secret: Secret, owner: Owner) -> bool:
    references = (secret.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid for ref in references)


async def ensure_kubeconfig_secret(
    kube: KubeApi, owner: Owner, secret_name: str, kubeconfig: str, *, probably_new: bool = False
) -> SecretOutcome:
    """Create or update the Secret when its content differs; never touch a foreign one.

    ``probably_new``: the GPUCluster never showed a published Secret, so create it straight
    away (one call, not a read and a create, for each of a thousand new clusters); an
    existing Secret refuses the create and is then read as usual."""
    wanted = secret_manifest(owner, secret_name, kubeconfig)
    if probably_new and await _created(kube, owner.namespace, wanted):
        return SecretOutcome.WRITTEN
    existing = await kube.read_secret(owner.namespace, secret_name)
    if existing is None:
        await kube.create_secret(owner.namespace, wanted)
        return SecretOutcome.WRITTEN
    if not owned_by(existing, owner):
        return SecretOutcome.FOREIGN
    meta = existing.get("metadata") or {}
    same_data = (existing.get("data") or {}).get(KUBECONFIG_KEY) == wanted["data"][KUBECONFIG_KEY]
    labelled = (meta.get("labels") or {}).get(ROLE_LABEL) == KUBECONFIG_ROLE
    if same_data and labelled:  # (older operators did not label it: watched only once it is)
        return SecretOutcome.UNCHANGED
    wanted["metadata"]["resourceVersion"] = meta.get("resourceVersion")
    await kube.replace_secret(owner.namespace, secret_name, wanted)
    return SecretOutcome.WRITTEN


async def _created(kube: KubeApi, namespace: str, wanted: dict[str, Any]) -> bool:
    """Create the Secret; False when one by that name exists already."""
    try:
        await kube.create_secret(namespace, wanted)
    except ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


async def delete_owned_secret(kube: KubeApi, owner: Owner, secret_name: str) -> bool:
    """Delete the Secret if it is ours (garbage collection would too, where it runs)."""
    existing = await kube.read_secret(owner.namespace, secret_name)
    if existing is None or not owned_by(existing, owner):
        return False
    await kube.delete_secret(owner.namespace, secret_name)
    return True


def _decode_kubeconfig(encoded: str) -> str | None:
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def secret_name_for(obj_name: str, spec: GPUClusterSpec) -> str:
    """``spec.kubeconfigSecretName`` or ``<name>-kubeconfig``."""
    return spec.kubeconfig_secret_name or f"{obj_name}-kubeconfig"


class KubeconfigPublisher:
    """Publishes a cluster's kubeconfig to its Secret: only when the content changed, never
    over a Secret the GPUCluster does not own (which is looked at again at the slow cadence,
    since its owner may delete it)."""

    def __init__(self, kube: KubeApi, recheck_seconds: float) -> None:
        self._kube = kube
        self._recheck_seconds = recheck_seconds

    async def publish(
        self,
        owner: Owner,
        spec: GPUClusterSpec,
        cluster: GPUClusterInfo | None,
        memory: SecretMemory,
        event: EventFn,
        *,
        shown_before: bool = True,
    ) -> Stall | None:
        """Write the kubeconfig if it is new; the conflict, if a foreign Secret is in the way.
        ``shown_before``: the object's status names a Secret published for it already."""
        secret_name = secret_name_for(owner.name, spec)
        if cluster is None or not cluster.kube_config:
            return self.conflict(owner, secret_name, memory)
        kubeconfig = _decode_kubeconfig(cluster.kube_config)
        if kubeconfig is None:
            event(
                "Warning",
                Reason.INVALID_KUBECONFIG,
                f"Together returned a kube_config for {cluster.cluster_id} that is not "
                "base64 text; the Secret was not written",
            )
            return self.conflict(owner, secret_name, memory)
        digest = secret_digest(secret_name, kubeconfig)
        recently_checked = time.monotonic() - memory.foreign_checked_at < self._recheck_seconds
        if memory.digest == digest or (memory.foreign and recently_checked):
            return self.conflict(owner, secret_name, memory)
        memory.foreign_checked_at = time.monotonic()
        outcome = await ensure_kubeconfig_secret(
            self._kube, owner, secret_name, kubeconfig, probably_new=not shown_before
        )
        foreign = outcome is SecretOutcome.FOREIGN
        memory.digest = None if foreign else digest
        memory.written_to = None if foreign else secret_name
        if outcome is SecretOutcome.WRITTEN:
            event(
                "Normal",
                Reason.KUBECONFIG_WRITTEN,
                f"kubeconfig of {cluster.cluster_id} written to Secret {secret_name}",
            )
        newly_foreign = foreign and not memory.foreign
        memory.foreign = foreign
        conflict = self.conflict(owner, secret_name, memory)
        if newly_foreign and conflict is not None:
            event("Warning", conflict.reason, conflict.message)
        return conflict

    @staticmethod
    def conflict(owner: Owner, secret_name: str, memory: SecretMemory) -> Stall | None:
        if not memory.foreign:
            return None
        return Stall(
            Reason.KUBECONFIG_SECRET_CONFLICT,
            f"Secret {owner.namespace}/{secret_name} exists and is not owned by this "
            "GPUCluster, so the kubeconfig was not written; delete that Secret or set "
            "spec.kubeconfigSecretName to another name",
        )
