"""Async client for Together's GPU cluster API. Talks HTTP; decides nothing about Kubernetes.

Retries are only where they are safe: reads, merge-PUTs and deletes are retried on 429, 5xx
and transport errors with exponential backoff that honours ``Retry-After``, within a small
bound (the reconciler's own backoff handles longer outages). A create is never retried: if
its answer is lost the client raises :class:`AmbiguousCreate` and the caller lists clusters
(an add-on create likewise: the caller lists add-ons).

Error bodies are read leniently (the contract documents none): grpc-gateway's
``{"code", "message", "details"}``, or ``{"error": {"message", ...}}``, or plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import json as jsonlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from together_operator.together import operations
from together_operator.together.backoff import Backoff, BackoffPolicy
from together_operator.together.errors import (
    AmbiguousCreate,
    InvalidResponse,
    NotFound,
    RetryLater,
    ServerError,
    TogetherError,
    TransportError,
    error_for_status,
)
from together_operator.together.health import (
    AlertSeverity,
    AlertStatus,
    ListPassiveHealthCheckAlertsResponse,
    ListRemediationsResponse,
    PassiveHealthCheckAlert,
    Remediation,
    RemediationState,
)
from together_operator.together.models import (
    AddOnInfo,
    ClusterAddOnCreateRequest,
    ClusterAddOnsListResponse,
    ClusterAddOnUpdateRequest,
    ClusterListing,
    ErrorBody,
    GPUClusterCreateRequest,
    GPUClusterDeleteResponse,
    GPUClusterInfo,
    GPUClusters,
    GPUClusterUpdateRequest,
    RegionListResponse,
    UnreadableCluster,
)
from together_operator.together.wire import WireModel

DEFAULT_BASE_URL = "https://api.together.ai"
ALL_INSTANCES: Final = "-"  # the contract's wildcard instance: every node of the cluster
#: Pages read at most by one list call that follows `next_page_token`s.
MAX_PAGES: Final = 100
Model = TypeVar("Model", bound=BaseModel)
QueryParams = dict[str, str] | tuple[tuple[str, str], ...]
#: Called once per HTTP exchange: (operation, status code or 0 for no answer, seconds).
RequestObserver = Callable[[str, int, float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a single call tries before giving up to the caller: ``attempts`` in all,
    ``backoff`` between them (jittered, to spread a fleet's retries). A ``Retry-After`` longer
    than the backoff's cap goes back to the caller instead of being waited out here."""

    attempts: int = 3
    backoff: BackoffPolicy = field(
        default_factory=lambda: BackoffPolicy(base=0.5, cap=10.0, jitter=0.5)
    )


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form: an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _parse(model: type[Model], body: Any) -> Model:
    """Validate a 200 body; one that does not fit the contract is a typed, retryable error
    (whose message never quotes the body: it may hold a kubeconfig)."""
    try:
        return model.model_validate(body)
    except ValidationError as error:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors()[:3])
        raise InvalidResponse(
            f"Together's answer does not fit {model.__name__} (at {where})"
        ) from None


class _ReadableListing(WireModel):
    """A List whose every entry fits: the fast path, validated straight from the bytes."""

    clusters: list[GPUClusterInfo]


def _read_listing_bytes(content: bytes, operation: str) -> ClusterListing:
    """Validate a List straight from its bytes (no tree of dicts beside the models: a List of
    a thousand clusters is megabytes of JSON); an entry that does not fit sends the whole
    answer to the tolerant, entry-by-entry reading."""
    try:
        return ClusterListing(clusters=_ReadableListing.model_validate_json(content).clusters)
    except ValidationError:
        pass
    try:
        body = jsonlib.loads(content)
    except ValueError:
        reason = "unreadable answer from Together (HTTP 200)"
        raise ServerError(reason, operation=operation) from None
    return _read_listing(body)


def _read_listing(body: Any) -> ClusterListing:
    entries = body.get("clusters") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise InvalidResponse("Together's answer does not fit GPUClusters (at clusters)")
    listing = ClusterListing()
    for entry in entries:
        try:
            listing.clusters.append(GPUClusterInfo.model_validate(entry))
        except ValidationError:
            named = entry if isinstance(entry, dict) else {}
            listing.unreadable.append(
                UnreadableCluster(
                    cluster_id=str(named.get("cluster_id") or ""),
                    cluster_name=str(named.get("cluster_name") or ""),
                )
            )
    return listing


def read_error(response: httpx.Response) -> ErrorBody:
    """What an error answer says: its message (from either JSON shape, else a short excerpt of
    the text) and the structured fields it carries (gRPC ``code``, ErrorInfo ``details``)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        nested = body.get("error")
        fields = nested if isinstance(nested, dict) else body
        parsed = ErrorBody.model_validate(
            {
                "code": _int_or_none(fields.get("code")),
                "message": _first_text(body.get("message"), fields.get("message"), nested),
                "details": [
                    d
                    for d in (fields.get("details") or [])
                    if isinstance(d, dict) and isinstance(d.get("reason"), str)
                ],
            }
        )
        if parsed.message:
            return parsed
        return parsed.model_copy(update={"message": _text_of(response)})
    return ErrorBody(message=_text_of(response))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_text(*candidates: object) -> str:
    return next((c for c in candidates if isinstance(c, str) and c), "")


def _text_of(response: httpx.Response) -> str:
    text = response.text.strip()
    return text[:200] if text else response.reason_phrase or "no message"


class TogetherClient:
    """Typed calls to ``/v1/compute``; one instance per API key."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_in_flight: int | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/v1",
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "together-operator"},
            timeout=timeout,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._observer = observer
        self._sleep = sleep
        # Under a burst (a thousand GPUClusters applied at once), requests queue here rather
        # than all at once at Together; a retry's sleep does not hold a place.
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight else None

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def list_clusters(self, project_id: str | None = None) -> list[GPUClusterInfo]:
        # The contract (and the official SDK) name this query parameter `projectId`.
        params = {"projectId": project_id} if project_id else None
        body = await self._call(operations.LIST_CLUSTERS, params=params)
        return _parse(GPUClusters, body).clusters

    async def cluster_listing(self, project_id: str | None = None) -> ClusterListing:
        """A tolerant List: an entry that does not fit the wire model is set aside (named by
        what can be read of it) instead of making every cluster of the account unreadable.
        The answer is read in a worker thread, so that a List of a thousand clusters does not
        hold up the event loop."""
        params = {"projectId": project_id} if project_id else None
        operation = operations.LIST_CLUSTERS
        content = await self._call(operation, params=params, raw=True)
        return await asyncio.to_thread(_read_listing_bytes, content, operation.id)

    async def get_cluster(self, cluster_id: str) -> GPUClusterInfo:
        body = await self._call(operations.GET_CLUSTER, cluster_id=cluster_id)
        return _parse(GPUClusterInfo, body)

    async def create_cluster(self, request: GPUClusterCreateRequest) -> GPUClusterInfo:
        body = await self._call(
            operations.CREATE_CLUSTER,
            json=request.model_dump(mode="json", exclude_none=True),
            idempotent=False,
        )
        try:
            return _parse(GPUClusterInfo, body)
        except InvalidResponse as error:
            # Together said yes, but which cluster it made cannot be read: resolve by listing.
            raise AmbiguousCreate(
                f"{error.message}; the cluster was probably created",
                operation=operations.CREATE_CLUSTER.id,
            ) from None

    async def update_cluster(
        self, cluster_id: str, request: GPUClusterUpdateRequest
    ) -> GPUClusterInfo:
        body = await self._call(
            operations.UPDATE_CLUSTER,
            cluster_id=cluster_id,
            json=request.model_dump(mode="json", exclude_none=True),
        )
        return _parse(GPUClusterInfo, body)

    async def delete_cluster(self, cluster_id: str) -> GPUClusterDeleteResponse:
        body = await self._call(operations.DELETE_CLUSTER, cluster_id=cluster_id)
        return _parse(GPUClusterDeleteResponse, body)

    async def list_regions(self) -> RegionListResponse:
        body = await self._call(operations.LIST_REGIONS)
        return _parse(RegionListResponse, body)

    # --- add-ons (the add-on's ID in the paths is its name) ----------------------------------

    async def list_add_ons(self, cluster_id: str) -> list[AddOnInfo]:
        """Every add-on of the cluster, disabled ones included (a cluster's own ``add_ons``
        shows only enabled ones)."""
        body = await self._call(operations.LIST_ADDONS, cluster_id=cluster_id)
        return _parse(ClusterAddOnsListResponse, body).add_ons

    async def create_add_on(self, cluster_id: str, request: ClusterAddOnCreateRequest) -> AddOnInfo:
        """Add an add-on. Not retried: a lost answer raises :class:`AmbiguousCreate` (list the
        add-ons to find out); a name in use raises :class:`AlreadyExists`."""
        body = await self._call(
            operations.CREATE_ADDON,
            cluster_id=cluster_id,
            json=request.model_dump(mode="json", exclude_none=True),
            idempotent=False,
        )
        return _parse(AddOnInfo, body)

    async def get_add_on(self, cluster_id: str, add_on_id: str) -> AddOnInfo:
        """One add-on, enabled or not."""
        body = await self._call(operations.GET_ADDON, cluster_id=cluster_id, addon_id=add_on_id)
        return _parse(AddOnInfo, body)

    async def update_add_on(
        self, cluster_id: str, add_on_id: str, request: ClusterAddOnUpdateRequest
    ) -> AddOnInfo:
        """Merge ``request.config`` into the add-on's config (enable, disable, re-enable)."""
        body = await self._call(
            operations.UPDATE_ADDON,
            cluster_id=cluster_id,
            addon_id=add_on_id,
            json=request.model_dump(mode="json", exclude_none=True),
        )
        return _parse(AddOnInfo, body)

    async def delete_add_on(self, cluster_id: str, add_on_id: str) -> None:
        """Remove an add-on (retried like every delete: a repeat answers 404, NotFound)."""
        await self._call(operations.DELETE_ADDON, cluster_id=cluster_id, addon_id=add_on_id)

    # --- node health ---------------------------------------------------------------------------

    async def list_remediations(
        self,
        cluster_id: str,
        instance_id: str = ALL_INSTANCES,
        *,
        states: Iterable[RemediationState] = (),
    ) -> list[Remediation]:
        """Remediations of one node (or, by default, every node of the cluster), newest first,
        optionally only in ``states``; follows the pages (at most :data:`MAX_PAGES`)."""
        params = tuple(("state", state.value) for state in states)
        found: list[Remediation] = []
        async for body in self._pages(
            operations.LIST_REMEDIATIONS, params, cluster_id=cluster_id, instance_id=instance_id
        ):
            found += _parse(ListRemediationsResponse, body).remediations
        return found

    async def list_health_check_alerts(
        self,
        cluster_id: str,
        *,
        status: AlertStatus = AlertStatus.FIRING,
        severities: Iterable[AlertSeverity] = (),
        instance_id: str | None = None,
    ) -> list[PassiveHealthCheckAlert]:
        """Passive health-check alerts of a cluster (firing ones by default), newest first;
        follows the pages (at most :data:`MAX_PAGES`)."""
        params: tuple[tuple[str, str], ...] = (("cluster_id", cluster_id), ("status", status.value))
        params += tuple(("severity_filter", severity.value) for severity in severities)
        if instance_id:
            params += (("instance_id", instance_id),)
        found: list[PassiveHealthCheckAlert] = []
        async for body in self._pages(operations.LIST_HEALTH_CHECK_ALERTS, params):
            found += _parse(ListPassiveHealthCheckAlertsResponse, body).alerts
        return found

    async def _pages(
        self,
        operation: operations.Operation,
        params: tuple[tuple[str, str], ...],
        **path_parameters: str,
    ) -> AsyncIterator[Any]:
        """Each page's body, following ``next_page_token`` for at most :data:`MAX_PAGES`."""
        path: dict[str, Any] = path_parameters  # (typed Any: mypy fears it might hold flags)
        token = ""
        for _ in range(MAX_PAGES):
            page_params = (*params, ("page_token", token)) if token else params
            body = await self._call(operation, params=page_params, **path)
            yield body
            token = body.get("next_page_token", "") if isinstance(body, dict) else ""
            if not isinstance(token, str) or not token:
                return

    async def _call(
        self,
        operation: operations.Operation,
        *,
        idempotent: bool = True,
        params: QueryParams | None = None,
        json: Any = None,
        raw: bool = False,
        **path_parameters: str,
    ) -> Any:
        """The decoded answer (with ``raw``, its bytes), retried as the error allows."""
        backoff = Backoff(self._retry.backoff)
        while True:
            try:
                return await self._exchange(
                    operation, operation.url(**path_parameters), idempotent, params, json, raw
                )
            except TogetherError as error:
                retry_after = error.retry_after if isinstance(error, RetryLater) else None
                if not (idempotent and error.heals) or backoff.failures + 1 >= self._retry.attempts:
                    raise
                if (retry_after or 0.0) > self._retry.backoff.cap:
                    raise  # "come back in a minute": the caller's backoff honours that, not us
                await self._sleep(backoff.failed(retry_after))

    async def _exchange(
        self,
        operation: operations.Operation,
        path: str,
        idempotent: bool,
        params: QueryParams | None,
        json: Any,
        raw: bool,
    ) -> Any:
        async with self._in_flight or contextlib.nullcontext():
            return await self._exchange_now(operation, path, idempotent, params, json, raw)

    async def _exchange_now(
        self,
        operation: operations.Operation,
        path: str,
        idempotent: bool,
        params: QueryParams | None,
        json: Any,
        raw: bool = False,
    ) -> Any:
        started = time.monotonic()
        name = operation.id
        try:
            response = await self._http.request(operation.method, path, params=params, json=json)
        except httpx.HTTPError as error:
            self._observe(name, 0, started)
            reason = f"no answer from Together ({type(error).__name__})"
            never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
            if not idempotent and not never_sent:
                # The request may have reached Together; only a failed connect proves not.
                raise AmbiguousCreate(
                    f"{reason}; the request may or may not have been applied", operation=name
                ) from None
            raise TransportError(reason, operation=name) from None
        self._observe(name, response.status_code, started)
        if response.is_success:
            if raw:
                return response.content
            try:
                return response.json()
            except ValueError:
                # A proxy's HTML page, say: callers handle TogetherError, not JSON errors. A
                # create answered 200 may have happened, and its cluster id is lost with the body.
                reason = f"unreadable answer from Together (HTTP {response.status_code})"
                if not idempotent:
                    raise AmbiguousCreate(reason, operation=name) from None
                raise ServerError(reason, operation=name) from None
        answer = read_error(response)
        raise error_for_status(
            response.status_code,
            answer.message,
            operation=name,
            retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
            code=answer.code,
            reasons=[detail.reason for detail in answer.details],
        )

    def _observe(self, operation: str, status: int, started: float) -> None:
        if self._observer is not None:
            self._observer(operation, status, time.monotonic() - started)


async def cluster_or_none(client: TogetherClient, cluster_id: str) -> GPUClusterInfo | None:
    """GET a cluster; ``None`` when Together says it does not exist."""
    try:
        return await client.get_cluster(cluster_id)
    except NotFound:
        return None
