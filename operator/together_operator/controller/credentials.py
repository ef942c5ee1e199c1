"""The Together API key for a GPUCluster: its own Secret (spec.credentialsSecretRef) or the
operator's key (TOGETHER_API_KEY); and the guard that keeps such a Secret while it is needed.

A credentials Secret in use carries the finalizer ``compute.together.ai/credentials-in-use``
(the pattern Crossplane uses for ProviderConfigs in use): deleting the namespace, or the
Secret by mistake, cannot take the key away from a GPUCluster that still needs it to delete
its cluster. The finalizer goes once no GPUCluster of the namespace names the Secret; the
Secret also carries a label, so that the operator watches exactly these Secrets (and its own
kubeconfig Secrets), and learns at once when a key is rotated.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from together_operator.controller.kube import KubeApi, Secret
from together_operator.gpucluster.plan import Stall
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GROUP, GPUClusterSpec
from together_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)
CREDENTIALS_FINALIZER = f"{GROUP}/credentials-in-use"
#: Which of the operator's Secrets this is: "kubeconfig" (written by it) or "credentials"
#: (a user's, guarded by it). The operator watches Secrets with this label, and only those.
ROLE_LABEL = f"{GROUP}/role"
CREDENTIALS_ROLE, KUBECONFIG_ROLE = "credentials", "kubeconfig"


def _users_key(namespace: str, secret: str) -> str:
    return f"{namespace}/{secret}"


def credential_users_of(body: Mapping[str, Any]) -> dict[str, str]:
    """Index entry of one GPUCluster: the credentials Secret it names, to its UID."""
    meta, spec = body.get("metadata", {}), body.get("spec") or {}
    ref = spec.get("credentialsSecretRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        return {}
    return {_users_key(meta["namespace"], ref["name"]): meta.get("uid", "")}


class CredentialUsers(Protocol):
    """Which GPUClusters (by UID) name a credentials Secret."""

    def users(self, namespace: str, secret: str) -> set[str]: ...


class IndexedUsers:
    """:class:`CredentialUsers` over a kopf index of :func:`credential_users_of`."""

    def __init__(self, index: Mapping[str, Iterable[str]]) -> None:
        self._index = index

    def users(self, namespace: str, secret: str) -> set[str]:
        return set(self._index.get(_users_key(namespace, secret), ()))


class NoUsers:
    """:class:`CredentialUsers` of an operator that sees no other object (unit tests)."""

    def users(self, namespace: str, secret: str) -> set[str]:
        return set()


class Credentials:
    """Resolves API keys, re-reading a Secret at most every ``credentials_ttl_seconds`` so
    that a fleet of objects does not turn every visit into a Secret read, and guards the
    Secrets it reads."""

    def __init__(self, kube: KubeApi, settings: OperatorSettings) -> None:
        self._kube = kube
        self._settings = settings
        self._cache: dict[tuple[str, str, str], tuple[str | None, float]] = {}
        self.users: CredentialUsers = NoUsers()

    async def api_key(self, namespace: str, spec: GPUClusterSpec) -> str | Stall:
        """The key for an object in ``namespace`` with ``spec``, or why there is none."""
        ref = spec.credentials_secret_ref
        if ref is None:
            if self._settings.together_api_key is None:
                return Stall(
                    Reason.NO_CREDENTIALS,
                    "the operator has no TOGETHER_API_KEY and spec.credentialsSecretRef is "
                    "not set; set one of them",
                )
            return self._settings.together_api_key.get_secret_value()
        value = await self._secret_value(namespace, ref.name, ref.key)
        if not value:
            return Stall(
                Reason.CREDENTIALS_NOT_FOUND,
                f"Secret {namespace}/{ref.name} with key {ref.key!r} "
                "(spec.credentialsSecretRef) does not exist or is empty; create it with the "
                "Together API key",
            )
        return value

    def forget(self, namespace: str, secret: str) -> None:
        """The Secret changed (a rotated key, say): read it again next time."""
        for cached in [k for k in self._cache if k[:2] == (namespace, secret)]:
            del self._cache[cached]

    async def _secret_value(self, namespace: str, name: str, key: str) -> str | None:
        now = time.monotonic()
        ttl = self._settings.credentials_ttl_seconds
        # Keys of Secrets nobody asked for lately (a deleted namespace's) do not linger.
        for stale in [k for k, (_, at) in self._cache.items() if now - at >= ttl]:
            del self._cache[stale]
        cached = self._cache.get((namespace, name, key))
        if cached is not None:
            return cached[0]
        secret = await self._kube.read_secret(namespace, name)
        value = None
        data = (secret or {}).get("data") or {}
        if secret is not None and key in data:
            value = base64.b64decode(data[key]).decode().strip()
            await self._guard(secret)
        self._cache[(namespace, name, key)] = (value, now)
        return value

    async def _guard(self, secret: Secret) -> None:
        """Put the finalizer and the label on a credentials Secret in use (once)."""
        meta = secret.setdefault("metadata", {})
        finalizers = list(meta.get("finalizers") or [])
        labels = dict(meta.get("labels") or {})
        if meta.get("deletionTimestamp") is not None:
            return  # being deleted: no finalizer may be added; the one there (if any) holds it
        if CREDENTIALS_FINALIZER in finalizers and labels.get(ROLE_LABEL) == CREDENTIALS_ROLE:
            return
        meta["finalizers"] = sorted({*finalizers, CREDENTIALS_FINALIZER})
        meta["labels"] = {**labels, ROLE_LABEL: CREDENTIALS_ROLE}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        try:
            await self._kube.replace_secret(namespace, name, secret)
        except ApiException as error:
            # Changed meanwhile (409) or gone: the next read guards it.
            logger.info("guarding Secret %s/%s: %s", namespace, name, error.reason)

    async def release_if_unused(self, namespace: str, secret: str, leaving: str) -> None:
        """``leaving`` (a UID) no longer needs the Secret: if no other GPUCluster names it,
        take the finalizer (and label) off, so that the Secret can go."""
        if self.users.users(namespace, secret) - {leaving}:
            return
        current = await self._kube.read_secret(namespace, secret)
        if current is None:
            return
        meta = current.setdefault("metadata", {})
        finalizers = meta.get("finalizers") or []
        if CREDENTIALS_FINALIZER not in finalizers:
            return
        meta["finalizers"] = [f for f in finalizers if f != CREDENTIALS_FINALIZER]
        meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != ROLE_LABEL}
        try:
            await self._kube.replace_secret(namespace, secret, current)
        except ApiException as error:
            if error.status != 404:
                raise
        self.forget(namespace, secret)
