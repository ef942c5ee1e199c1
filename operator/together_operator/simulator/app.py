"""The HTTP face of the simulator: Together's `/v1/compute` routes and the `/_sim/` admin API.

Every error, the API's or the admin API's, is JSON of one shape: `{"code": <grpc code>,
"message": "..."}`. Paths under `/v1/compute` that the simulator does not serve answer 501.

The admin API has no authentication: it is meant for loopback, where the simulator listens by
default. Operations are named by the contract's operationId (`*` = every operation).

    GET    /_sim/health                          {"ok": true}
    GET    /_sim/faults                          faults in force
    DELETE /_sim/faults                          remove every fault
    POST   /_sim/faults/failures                 {"operation", "status", "count"?, "probability"?,
                                                  "retry_after"?, "message"?}
    POST   /_sim/faults/latency                  {"operation", "seconds", "after_commit"?}
                                                  (0 removes; after_commit delays the answer)
    POST   /_sim/faults/drops                    {"operation", "count"}: drop after commit
    GET    /_sim/requests                        {"requests": [{"operation", "status", "count"}]}
    DELETE /_sim/requests                        reset the counts
    GET    /_sim/clusters                        every cluster, deleted ones included:
                                                  {"clusters": [{"cluster", "deleted",
                                                                 "deleted_at"?}]}
    POST   /_sim/clusters/{cluster_id}/phase     {"phase": CLUSTER_PHASE_DEGRADED |
                                                  CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED |
                                                  CLUSTER_PHASE_READY}
    POST   /_sim/clusters/{cluster_id}/preempt   {"gpus"?}: reclaim preemptible GPUs
    GET    /_sim/stock                           stock per region and GPU type
    PUT    /_sim/stock                           {"region", "gpu_type", "gpus"?,
                                                  "preemptible_gpus"?}
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from together_operator.simulator.errors import ApiError, InvalidRequest, error_body
from together_operator.simulator.faults import DropSpec, FailureSpec, Faults, LatencySpec
from together_operator.simulator.state import CloudState
from together_operator.together import operations
from together_operator.together.operations import Operation

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("together_operator.simulator.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Payload = TypeVar("Payload", bound=BaseModel)

STATE: Final = web.AppKey("state", CloudState)
FAULTS: Final = web.AppKey("faults", Faults)
API_KEYS: Final = web.AppKey("api_keys", tuple)
REQUEST_COUNTS: Final = web.AppKey("request_counts", Counter)
OPERATIONS: Final = web.AppKey("operations", dict)
OPERATION: Final = web.RequestKey("operation", str)
WAS_DROPPED: Final = web.RequestKey("was_dropped", bool)

API_ROOT: Final = "/v1"
API_PREFIX: Final = API_ROOT + "/"
COMPUTE_PREFIX: Final = "/v1/compute/"
ADMIN_PREFIX: Final = "/_sim/"
UNIMPLEMENTED: Final = "Unimplemented"
UNKNOWN_PATH: Final = "NotFound"
ADMIN: Final = "Admin"
DROPPED: Final = "dropped"


def _json(model: BaseModel) -> web.Response:
    return web.json_response(model.model_dump(mode="json", exclude_none=True))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(error_body(status, message), status=status, headers=headers)


async def _body(request: web.Request) -> object:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not valid JSON") from None


def _project_filter(request: web.Request) -> str | None:
    # The contract and the official SDK send `projectId`; accept the snake_case spelling too.
    return request.query.get("projectId") or request.query.get("project_id") or None


def _state(request: web.Request) -> CloudState:
    return request.app[STATE]


# --- the API ---------------------------------------------------------------------------------


async def list_clusters(request: web.Request) -> web.Response:
    return _json(_state(request).list_clusters(_project_filter(request)))


async def create_cluster(request: web.Request) -> web.Response:
    return _json(_state(request).create_cluster(await _body(request)))


async def get_cluster(request: web.Request) -> web.Response:
    return _json(_state(request).get_cluster(request.match_info["cluster_id"]))


async def update_cluster(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json(_state(request).update_cluster(request.match_info["cluster_id"], body))


async def delete_cluster(request: web.Request) -> web.Response:
    return _json(_state(request).delete_cluster(request.match_info["cluster_id"]))


async def list_regions(request: web.Request) -> web.Response:
    return _json(_state(request).regions())


async def list_volumes(request: web.Request) -> web.Response:
    return _json(_state(request).list_volumes(_project_filter(request)))


async def create_volume(request: web.Request) -> web.Response:
    return _json(_state(request).create_volume(await _body(request)))


async def update_volume(request: web.Request) -> web.Response:
    return _json(_state(request).update_volume(await _body(request)))


async def get_volume(request: web.Request) -> web.Response:
    return _json(_state(request).get_volume(request.match_info["volume_id"]))


async def delete_volume(request: web.Request) -> web.Response:
    return _json(_state(request).delete_volume(request.match_info["volume_id"]))


API_ROUTES: Final[dict[Operation, Handler]] = {
    operations.LIST_CLUSTERS: list_clusters,
    operations.CREATE_CLUSTER: create_cluster,
    operations.GET_CLUSTER: get_cluster,
    operations.UPDATE_CLUSTER: update_cluster,
    operations.DELETE_CLUSTER: delete_cluster,
    operations.LIST_REGIONS: list_regions,
    operations.LIST_VOLUMES: list_volumes,
    operations.CREATE_VOLUME: create_volume,
    operations.UPDATE_VOLUME: update_volume,
    operations.GET_VOLUME: get_volume,
    operations.DELETE_VOLUME: delete_volume,
}


# --- the admin API ---------------------------------------------------------------------------


class _AdminPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhasePayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/phase`."""

    phase: str


class PreemptPayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/preempt`; all allocated GPUs when `gpus` is absent."""

    gpus: int | None = Field(default=None, ge=1)


class StockPayload(_AdminPayload):
    """`PUT /_sim/stock`; an absent count is left as it is."""

    region: str
    gpu_type: str
    gpus: int | None = Field(default=None, ge=0)
    preemptible_gpus: int | None = Field(default=None, ge=0)


async def _admin_payload(request: web.Request, model: type[Payload]) -> Payload:
    body = await _body(request) if request.can_read_body else {}
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(body)"
        raise InvalidRequest(f"invalid {model.__name__}: `{field}`: {first['msg']}") from None


async def admin_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def admin_get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].describe())


async def admin_reset_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].reset()
    return web.json_response(request.app[FAULTS].describe())


async def admin_add_failure(request: web.Request) -> web.Response:
    request.app[FAULTS].add_failure(await _admin_payload(request, FailureSpec))
    return web.json_response(request.app[FAULTS].describe())


async def admin_set_latency(request: web.Request) -> web.Response:
    request.app[FAULTS].set_latency(await _admin_payload(request, LatencySpec))
    return web.json_response(request.app[FAULTS].describe())


async def admin_add_drops(request: web.Request) -> web.Response:
    request.app[FAULTS].add_drops(await _admin_payload(request, DropSpec))
    return web.json_response(request.app[FAULTS].describe())


def _counts_body(counts: Counter[tuple[str, str]]) -> dict[str, Any]:
    rows = [
        {"operation": operation, "status": status, "count": count}
        for (operation, status), count in sorted(counts.items())
    ]
    return {"requests": rows}


async def admin_get_requests(request: web.Request) -> web.Response:
    return web.json_response(_counts_body(request.app[REQUEST_COUNTS]))


async def admin_reset_requests(request: web.Request) -> web.Response:
    request.app[REQUEST_COUNTS].clear()
    return web.json_response(_counts_body(request.app[REQUEST_COUNTS]))


async def admin_list_clusters(request: web.Request) -> web.Response:
    summaries = _state(request).all_clusters()
    return web.json_response(
        {"clusters": [s.model_dump(mode="json", exclude_none=True) for s in summaries]}
    )


async def admin_force_phase(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, PhasePayload)
    return _json(_state(request).force_phase(request.match_info["cluster_id"], payload.phase))


async def admin_preempt(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, PreemptPayload)
    return _json(_state(request).preempt(request.match_info["cluster_id"], payload.gpus))


async def admin_get_stock(request: web.Request) -> web.Response:
    stock = _state(request).catalog.stock
    rows = [
        {"region": region, "gpu_type": gpu_type, **vars(entry)}
        for (region, gpu_type), entry in sorted(stock.items())
    ]
    return web.json_response({"stock": rows})


async def admin_set_stock(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, StockPayload)
    stock = _state(request).set_stock(
        payload.region,
        payload.gpu_type,
        gpus=payload.gpus,
        preemptible_gpus=payload.preemptible_gpus,
    )
    return web.json_response({"region": payload.region, "gpu_type": payload.gpu_type, **stock})


ADMIN_ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/_sim/health", admin_health),
    ("GET", "/_sim/faults", admin_get_faults),
    ("DELETE", "/_sim/faults", admin_reset_faults),
    ("POST", "/_sim/faults/failures", admin_add_failure),
    ("POST", "/_sim/faults/latency", admin_set_latency),
    ("POST", "/_sim/faults/drops", admin_add_drops),
    ("GET", "/_sim/requests", admin_get_requests),
    ("DELETE", "/_sim/requests", admin_reset_requests),
    ("GET", "/_sim/clusters", admin_list_clusters),
    ("POST", "/_sim/clusters/{cluster_id}/phase", admin_force_phase),
    ("POST", "/_sim/clusters/{cluster_id}/preempt", admin_preempt),
    ("GET", "/_sim/stock", admin_get_stock),
    ("PUT", "/_sim/stock", admin_set_stock),
]


# --- middlewares -----------------------------------------------------------------------------


def _operation(request: web.Request) -> str:
    route = request.match_info.route
    operation = request.app[OPERATIONS].get(route)
    if operation is not None:
        return str(operation)
    if request.path.startswith(COMPUTE_PREFIX):
        return UNIMPLEMENTED
    if request.path.startswith(ADMIN_PREFIX):
        return ADMIN
    return UNKNOWN_PATH


@web.middleware
async def access_log_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape, count and log each request in one line
    (never its headers or body)."""
    started = time.monotonic()
    operation = _operation(request)
    request[OPERATION] = operation
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        # The client went away mid-request (aiohttp cancels the handler): still count it,
        # because what was committed before that point stays committed.
        if request.path.startswith(API_PREFIX):
            request.app[REQUEST_COUNTS][(operation, DROPPED)] += 1
        raise
    except ApiError as error:
        response = _error(error.status, error.message)
    except web.HTTPException as error:
        response = _unrouted(request, error)
    except Exception:
        logger.exception("internal error serving %s %s", request.method, request.path)
        response = _error(500, "internal simulator error; see the simulator's log")
    status = DROPPED if request.get(WAS_DROPPED) else str(response.status)
    if request.path.startswith(API_PREFIX):
        request.app[REQUEST_COUNTS][(operation, status)] += 1
    access_logger.info(
        "%s %s %s %.1fms %s",
        request.method,
        request.path,
        status,
        (time.monotonic() - started) * 1000,
        operation,
    )
    return response


def _unrouted(request: web.Request, error: web.HTTPException) -> web.Response:
    if error.status in (404, 405) and request.path.startswith(COMPUTE_PREFIX):
        return _error(
            501,
            f"{request.method} {request.path} is not implemented in the simulator "
            "(it serves clusters, regions and shared volumes)",
        )
    if error.status == 404:
        return _error(404, f"no such path: {request.path}")
    return _error(error.status, error.reason)


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require `Authorization: Bearer <key>` with a configured key on the API (not `/_sim/`)."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    token = _bearer_token(request)
    if token is None:
        return _error(401, "missing API key: send `Authorization: Bearer <your API key>`")
    # Compare every key in constant time so timing reveals nothing about the keys.
    valid = [hmac.compare_digest(token.encode(), key.encode()) for key in request.app[API_KEYS]]
    if not any(valid):
        return _error(401, "invalid API key")
    return await handler(request)


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the faults in force to API requests: delay, fail, or drop after commit."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    faults = request.app[FAULTS]
    operation = request[OPERATION]
    delay = faults.latency_for(operation)
    if delay:
        await asyncio.sleep(delay)
    failure = faults.failure_for(operation)
    if failure is not None:
        retry_after = failure.retry_after_header
        message = failure.message or f"injected fault: {operation} answered {failure.status}"
        return _error(
            failure.status, message, {"Retry-After": retry_after} if retry_after else None
        )
    response = await handler(request)
    answer_delay = faults.latency_for(operation, after_commit=True)
    if answer_delay:
        await asyncio.sleep(answer_delay)
    if response.status < 400 and faults.take_drop(operation):
        # The request was committed; the client never hears so. Abort the transport.
        request[WAS_DROPPED] = True
        if request.transport is not None:
            request.transport.abort()
    return response


def build_app(*, state: CloudState, faults: Faults, api_keys: Iterable[str]) -> web.Application:
    """The aiohttp application serving the API under `/v1` and the admin API under `/_sim/`."""
    keys = tuple(api_keys)
    if not keys:
        raise ValueError("the simulator needs at least one API key")
    app = web.Application(middlewares=[access_log_and_errors, authenticate, inject_faults])
    app[STATE] = state
    app[FAULTS] = faults
    app[API_KEYS] = keys
    app[REQUEST_COUNTS] = Counter()
    route_operations: dict[web.AbstractRoute, str] = {}
    for operation, handler in API_ROUTES.items():
        route = app.router.add_route(operation.method, API_ROOT + operation.path, handler)
        route_operations[route] = operation.id
    for method, path, handler in ADMIN_ROUTES:
        app.router.add_route(method, path, handler)
    app[OPERATIONS] = route_operations
    return app
