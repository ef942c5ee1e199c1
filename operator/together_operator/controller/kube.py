"""The few Kubernetes API calls the controller makes itself (kopf does the watching).

The official client is synchronous; each call runs in a worker thread so that the event loop
(and every other GPUCluster) keeps going. Writes that must land *before* a Together call —
the create intent — are made here, synchronously confirmed, not deferred to kopf's patch.

Calls queue behind a concurrency limit (the writes a Together call waits on ahead of status
reports: see :mod:`.lanes`), and an API server that sheds load (429 from API
Priority and Fairness, which throttles a ServiceAccount where it would not an admin) or
fails for a moment (5xx) is answered by waiting as long as it asks, a few times, before the
error reaches the caller.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from together_operator.controller.lanes import Lanes
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION
from together_operator.together.backoff import Backoff, BackoffPolicy

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: How often one call is tried when the API server sheds load or fails for a moment.
ATTEMPTS = 5
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF = BackoffPolicy(base=0.5, cap=10.0, jitter=0.5)
#: Calls in flight at once when the caller does not say.
DEFAULT_IN_FLIGHT = 8


def load_api_client() -> Any:
    """An ApiClient from the in-cluster service account, else from KUBECONFIG."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _retry_after(error: ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class KubeApi:
    """Async wrappers around the calls the controller needs."""

    def __init__(self, api_client: Any, *, max_in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._in_flight = Lanes(max_in_flight)
        # Its own threads, as many as calls may be in flight: the default executor has only
        # as many as cores plus four, and the rest of the process uses it too.
        self._threads = ThreadPoolExecutor(max_in_flight, thread_name_prefix="kube-api")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        backoff = Backoff(_BACKOFF)
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._in_flight.slot(urgent=urgent):
                    return await loop.run_in_executor(self._threads, partial(function, *args))
            except ApiException as error:
                if error.status not in _RETRIED_STATUSES or backoff.failures + 1 >= ATTEMPTS:
                    raise
                delay = backoff.failed(_retry_after(error))
                logger.info(
                    "Kubernetes API answered %s; trying again in %.1fs", error.status, delay
                )
                await asyncio.sleep(delay)

    async def read_secret(self, namespace: str, name: str) -> Any | None:
        try:
            return await self._call(self._core.read_namespaced_secret, name, namespace)
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
        await self._call(self._core.create_namespaced_secret, namespace, body)

    async def replace_secret(self, namespace: str, name: str, body: Any) -> None:
        """Replace a Secret (a manifest, or a V1Secret as read: its resourceVersion makes the
        write conditional)."""
        await self._call(self._core.replace_namespaced_secret, name, namespace, body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self._call(self._core.delete_namespaced_secret, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Merge-patch annotations on a GPUCluster (None removes one); returns once stored."""
        await self._call(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": annotations}},
        )

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
        *,
        urgent: bool = False,
    ) -> None:
        """Merge-patch the status subresource of a GPUCluster; with ``resource_version``,
        only if the object is still at that version (409 otherwise). An ``urgent`` write
        (one a Together call waits on) goes before every ordinary one queued."""
        body: dict[str, Any] = {"status": status}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        await self._call(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            urgent=urgent,
        )
