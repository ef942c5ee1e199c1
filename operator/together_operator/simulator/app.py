"""The HTTP face of the simulator: the app, its routes (Together's `/v1/compute` operations
from :mod:`~together_operator.simulator.api`, the admin API from
:mod:`~together_operator.simulator.admin_api`) and the middlewares every request passes.

Every error, the API's or the admin API's, is JSON of one shape (see
:mod:`~together_operator.simulator.errors`), never an HTML page and never a bare 500.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiohttp import web

from together_operator.simulator.admin_api import ADMIN_ROUTES, FAULTS, REQUEST_COUNTS
from together_operator.simulator.api import API_ROUTES, STATE, Handler
from together_operator.simulator.errors import ApiError, error_body, error_info
from together_operator.simulator.faults import Faults
from together_operator.simulator.state import DEFAULT_ACCOUNT, CloudState, caller_account

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("together_operator.simulator.access")

OPERATIONS: Final = web.AppKey("operations", dict)
API_KEYS: Final = web.AppKey("api_keys", tuple)
ACCOUNTS: Final = web.AppKey("accounts", dict)
OPERATION: Final = web.RequestKey("operation", str)
WAS_DROPPED: Final = web.RequestKey("was_dropped", bool)

API_ROOT: Final = "/v1"
API_PREFIX: Final = API_ROOT + "/"
ADMIN_PREFIX: Final = "/_sim/"
UNKNOWN_OPERATION: Final = "NotFound"
ADMIN: Final = "Admin"
DROPPED: Final = "dropped"


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, **fields: Any
) -> web.Response:
    return web.json_response(error_body(status, message, **fields), status=status, headers=headers)


# --- middlewares -----------------------------------------------------------------------------


def _operation(request: web.Request) -> str:
    route = request.match_info.route
    operation = request.app[OPERATIONS].get(route)
    if operation is not None:
        return str(operation)
    if request.path.startswith(ADMIN_PREFIX):
        return ADMIN
    return UNKNOWN_OPERATION


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
        response = web.json_response(error.body(), status=error.status)
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
    if error.status == 404:
        return _error(404, f"no such path: {request.path}")
    if error.status == 405:
        return _error(405, f"{request.method} is not an operation of {request.path}")
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
    account = request.app[ACCOUNTS].get(token, DEFAULT_ACCOUNT)
    reset = caller_account.set(account)
    try:
        return await handler(request)
    finally:
        caller_account.reset(reset)


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
        details = [error_info(failure.reason)] if failure.reason else None
        return _error(
            failure.status,
            message,
            {"Retry-After": retry_after} if retry_after else None,
            details=details,
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


def build_app(
    *,
    state: CloudState,
    faults: Faults,
    api_keys: Iterable[str],
    accounts: Mapping[str, str] | None = None,
) -> web.Application:
    """The aiohttp application serving the API under `/v1` and the admin API under `/_sim/`."""
    keys = tuple(api_keys)
    if not keys:
        raise ValueError("the simulator needs at least one API key")
    app = web.Application(middlewares=[access_log_and_errors, authenticate, inject_faults])
    app[STATE] = state
    app[FAULTS] = faults
    app[API_KEYS] = keys
    # key -> account; a key not named here belongs to the default account.
    app[ACCOUNTS] = dict(accounts or {})
    app[REQUEST_COUNTS] = Counter()
    route_operations: dict[web.AbstractRoute, str] = {}
    for operation, handler in API_ROUTES.items():
        route = app.router.add_route(operation.method, API_ROOT + operation.path, handler)
        route_operations[route] = operation.id
    for method, path, handler in ADMIN_ROUTES:
        app.router.add_route(method, path, handler)
    app[OPERATIONS] = route_operations
    return app
