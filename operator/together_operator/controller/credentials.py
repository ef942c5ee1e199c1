"""The Together API key for a GPUCluster: its own Secret (spec.credentialsSecretRef) or the
operator's key (TOGETHER_API_KEY)."""

from __future__ import annotations

import time

from together_operator.controller.kube import KubeApi
from together_operator.gpucluster.plan import Stall
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.settings import OperatorSettings


class Credentials:
    """Resolves API keys, re-reading a Secret at most every ``credentials_ttl_seconds`` so
    that a fleet of objects does not turn every visit into a Secret read."""

    def __init__(self, kube: KubeApi, settings: OperatorSettings) -> None:
        self._kube = kube
        self._settings = settings
        self._cache: dict[tuple[str, str, str], tuple[str | None, float]] = {}

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

    async def _secret_value(self, namespace: str, name: str, key: str) -> str | None:
        cache_key = (namespace, name, key)
        cached = self._cache.get(cache_key)
        if (
            cached is not None
            and time.monotonic() - cached[1] < self._settings.credentials_ttl_seconds
        ):
            return cached[0]
        value = await self._kube.secret_value(namespace, name, key)
        self._cache[cache_key] = (value, time.monotonic())
        return value
