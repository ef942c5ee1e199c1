"""The few Kubernetes API calls the controller makes itself (kopf does the watching).

The official client is synchronous; each call runs in a worker thread so that the event loop
(and every other GPUCluster) keeps going. Writes that must land *before* a Together call —
the create intent — are made here, synchronously confirmed, not deferred to kopf's patch.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION


def load_api_client() -> Any:
    """An ApiClient from the in-cluster service account, else from KUBECONFIG."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class KubeApi:
    """Async wrappers around the calls the controller needs."""

    def __init__(self, api_client: Any) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    async def read_secret(self, namespace: str, name: str) -> Any | None:
        try:
            return await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """A decoded value from a Secret; None when the Secret or the key is missing."""
        secret = await self.read_secret(namespace, name)
        if secret is None or not secret.data or key not in secret.data:
            return None
        return base64.b64decode(secret.data[key]).decode().strip()

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        await asyncio.to_thread(self._core.create_namespaced_secret, namespace, body)

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        await asyncio.to_thread(self._core.replace_namespaced_secret, name, namespace, body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(self._core.delete_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Merge-patch annotations on a GPUCluster (None removes one); returns once stored."""
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource of a GPUCluster."""
        await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )
