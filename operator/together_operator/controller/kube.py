"""The few Kubernetes API calls the controller makes itself (kopf does the watching).

They go over one asynchronous HTTP connection pool (httpx, as for Together), with the
address, TLS material and credentials the official client loads (in-cluster service account,
else KUBECONFIG; its token refresh included); not through the official client's API classes,
whose calls run in worker threads through a layer of argument validation, and whose core API
class alone costs the process about 20 MiB when imported. Without those threads and that
import, the operator's peak at a thousand GPUClusters fell by about 45 MiB (bench/README.md).
Writes that must land *before* a Together call — the create intent — are made here,
confirmed, not deferred to kopf's patch.

Calls queue behind a concurrency limit (the writes a Together call waits on ahead of status
reports: see :mod:`.lanes`), and an API server that sheds load (429 from API Priority and
Fairness, which throttles a ServiceAccount where it would not an admin) or fails for a moment
(5xx) is answered by waiting as long as it asks, a few times, before the error reaches the
caller. Errors are the official client's :class:`ApiException`, with status, reason, headers
and body, so that callers and kopf's users read them the usual way.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from together_operator.controller.lanes import Lanes
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION
from together_operator.together.backoff import Backoff, BackoffPolicy

logger = logging.getLogger(__name__)
#: How often one call is tried when the API server sheds load or fails for a moment.
ATTEMPTS = 5
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF = BackoffPolicy(base=0.5, cap=10.0, jitter=0.5)
#: Calls in flight at once when the caller does not say.
DEFAULT_IN_FLIGHT = 8
REQUEST_TIMEOUT_SECONDS = 30.0
MERGE_PATCH = "application/merge-patch+json"

Secret = dict[str, Any]  # a Secret as the API server returns it (JSON)


def load_configuration() -> Any:
    """The official client's Configuration: the in-cluster service account, else KUBECONFIG."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def load_api_client() -> Any:
    """An official ApiClient on the same configuration (leader election uses it)."""
    return client.ApiClient(load_configuration())


def _tls(configuration: Any) -> ssl.SSLContext | bool:
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def _retry_after(error: ApiException) -> float | None:
    value = (error.headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error(response: httpx.Response) -> ApiException:
    error = ApiException(status=response.status_code, reason=response.reason_phrase)
    error.headers = response.headers
    error.body = response.text
    return error


def _secrets(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


def _gpucluster(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
    return path + (f"/{subresource}" if subresource else "")


class KubeApi:
    """Async calls on Secrets and GPUClusters."""

    def __init__(
        self,
        configuration: Any,
        *,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._configuration = configuration
        self._sleep = sleep
        self._in_flight = Lanes(max_in_flight)
        self._http = httpx.AsyncClient(
            base_url=configuration.host,
            verify=_tls(configuration),
            transport=transport,
            timeout=REQUEST_TIMEOUT_SECONDS,
            # Like the official client: no proxy from the environment.
            trust_env=False,
            proxy=configuration.proxy or None,
            limits=httpx.Limits(max_connections=max_in_flight),
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        # Read per call: the configuration refreshes a service account's rotated token. Its
        # own auth_settings(), because client versions name the token differently.
        for setting in self._configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        urgent: bool = False,
    ) -> Any:
        """Send one request (retried on 429 and 5xx); the decoded answer."""
        backoff = Backoff(_BACKOFF)
        if body is not None and content_type is None:
            content_type = "application/json"
        while True:
            async with self._in_flight.slot(urgent=urgent):
                response = await self._http.request(
                    method, path, json=body, headers=self._headers(content_type)
                )
            if response.is_success:
                return response.json() if response.content else None
            error = _error(response)
            if error.status not in _RETRIED_STATUSES or backoff.failures + 1 >= ATTEMPTS:
                raise error
            delay = backoff.failed(_retry_after(error))
            logger.info("Kubernetes API answered %s; trying again in %.1fs", error.status, delay)
            await self._sleep(delay)

    async def read_secret(self, namespace: str, name: str) -> Secret | None:
        try:
            secret: Secret = await self._call("GET", _secrets(namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return secret

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """A decoded value from a Secret; None when the Secret or the key is missing."""
        secret = await self.read_secret(namespace, name)
        data = (secret or {}).get("data") or {}
        if key not in data:
            return None
        return base64.b64decode(data[key]).decode().strip()

    async def create_secret(self, namespace: str, body: Secret) -> None:
        await self._call("POST", _secrets(namespace), body)

    async def replace_secret(self, namespace: str, name: str, body: Secret) -> None:
        """Replace a Secret (a manifest, or one as read: its resourceVersion makes the write
        conditional)."""
        await self._call("PUT", _secrets(namespace, name), body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self._call("DELETE", _secrets(namespace, name))
        except ApiException as error:
            if error.status != 404:
                raise

    async def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        """Merge-patch annotations on a GPUCluster (None removes one); returns once stored."""
        body = {"metadata": {"annotations": annotations}}
        await self._call("PATCH", _gpucluster(namespace, name), body, content_type=MERGE_PATCH)

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
            "PATCH",
            _gpucluster(namespace, name, "status"),
            body,
            content_type=MERGE_PATCH,
            urgent=urgent,
        )
