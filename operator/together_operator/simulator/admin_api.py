"""The simulator's admin API under `/_sim/`: faults, request counts, clusters, stock, and ways
to reach what the API alone cannot (any phase or status, alerts, failed remediations).

It has no authentication: it is meant for loopback, where the simulator listens by default.
Operations are named by the contract's operationId (`*` = every operation).

    GET    /_sim/health                          {"ok": true}
    GET    /_sim/faults                          faults in force
    DELETE /_sim/faults                          remove every fault
    POST   /_sim/faults/failures                 {"operation", "status", "count"?, "probability"?,
                                                  "retry_after"?, "message"?, "reason"?}
                                                  (reason: an ErrorInfo reason, e.g. OUT_OF_STOCK)
    POST   /_sim/faults/latency                  {"operation", "seconds", "after_commit"?}
                                                  (0 removes; after_commit delays the answer)
    POST   /_sim/faults/drops                    {"operation", "count"}: drop after commit
    GET    /_sim/requests                        {"requests": [{"operation", "status", "count"}]}
    DELETE /_sim/requests                        reset the counts
    GET    /_sim/clusters                        every cluster, deleted ones included:
                                                  {"clusters": [{"cluster", "deleted",
                                                                 "deleted_at"?}]}
    POST   /_sim/clusters/{cluster_id}/phase     {"phase": any CLUSTER_PHASE_* but DELETING}:
                                                  enter it now, with its status, and stay
    POST   /_sim/clusters/{cluster_id}/status    {"status": any text}: report it verbatim
                                                  (e.g. Scheduled, or a value no one knows)
    POST   /_sim/clusters/{cluster_id}/preempt   {"gpus"?}: reclaim preemptible GPUs
    POST   /_sim/clusters/{cluster_id}/alerts    {"instance_id"?, "alert_name"?, "severity"?,
                                                  "annotations"?, "remediation_mode"?}: an alert
                                                  fires (and an automated remediation waits)
    POST   /_sim/clusters/{cluster_id}/alerts/{alert_id}/resolve
    POST   /_sim/clusters/{cluster_id}/remediations/{remediation_id}/fail
                                                 {"error_message"?}
    GET    /_sim/stock                           stock per region and GPU type
    PUT    /_sim/stock                           {"region", "gpu_type", "gpus"?,
                                                  "preemptible_gpus"?}
    PUT    /_sim/list-scope                      {"list_scope": "account" | "default-project"}
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from together_operator.simulator import alerts, remediations
from together_operator.simulator.api import STATE, Handler, json_response, read_body
from together_operator.simulator.errors import InvalidRequest
from together_operator.simulator.faults import DropSpec, FailureSpec, Faults, LatencySpec
from together_operator.simulator.lifecycle import ClusterRecord
from together_operator.simulator.state import CloudState
from together_operator.together.health import PassiveHealthCheckAlert, Remediation

FAULTS: Final = web.AppKey("faults", Faults)
REQUEST_COUNTS: Final = web.AppKey("request_counts", Counter)
Payload = TypeVar("Payload", bound=BaseModel)


class _AdminPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhasePayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/phase`."""

    phase: str


class StatusPayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/status`."""

    status: str = Field(min_length=1)


class PreemptPayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/preempt`; all allocated GPUs when `gpus` is absent."""

    gpus: int | None = Field(default=None, ge=1)


class FailPayload(_AdminPayload):
    """`POST /_sim/clusters/{cluster_id}/remediations/{remediation_id}/fail`."""

    error_message: str = Field(default="remediation failed (simulated)", min_length=1)


class StockPayload(_AdminPayload):
    """`PUT /_sim/stock`; an absent count is left as it is."""

    region: str
    gpu_type: str
    gpus: int | None = Field(default=None, ge=0)
    preemptible_gpus: int | None = Field(default=None, ge=0)


async def _admin_payload(request: web.Request, model: type[Payload]) -> Payload:
    body = await read_body(request) if request.can_read_body else {}
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(body)"
        raise InvalidRequest(f"invalid {model.__name__}: `{field}`: {first['msg']}") from None


def _state(request: web.Request) -> CloudState:
    return request.app[STATE]


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
    cluster_id = request.match_info["cluster_id"]
    return json_response(_state(request).force_phase(cluster_id, payload.phase))


async def admin_force_status(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, StatusPayload)
    cluster_id = request.match_info["cluster_id"]
    return json_response(_state(request).force_status(cluster_id, payload.status))


async def admin_preempt(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, PreemptPayload)
    return json_response(_state(request).preempt(request.match_info["cluster_id"], payload.gpus))


async def admin_raise_alert(request: web.Request) -> web.Response:
    spec = await _admin_payload(request, alerts.AlertSpec)
    state = _state(request)

    def fire(record: ClusterRecord, now: datetime) -> PassiveHealthCheckAlert:
        return alerts.raise_alert(record, spec, now=now, timings=state.timings, new_id=state.new_id)

    return json_response(state.on_cluster(request.match_info["cluster_id"], fire, changes=True))


async def admin_resolve_alert(request: web.Request) -> web.Response:
    alert_id = request.match_info["alert_id"]
    resolved = _state(request).on_cluster(
        request.match_info["cluster_id"],
        lambda record, now: alerts.resolve_alert(record, alert_id, now),
        changes=True,
    )
    return json_response(resolved)


async def admin_fail_remediation(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, FailPayload)
    remediation_id = request.match_info["remediation_id"]

    def fail(record: ClusterRecord, now: datetime) -> Remediation:
        found = remediations.find(record, remediations.ANY_INSTANCE, remediation_id)
        remediations.fail(found, payload.error_message, now=now)
        return remediations.view(found, record.alerts)

    failed = _state(request).on_cluster(request.match_info["cluster_id"], fail, changes=True)
    return json_response(failed)


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


class ListScopePayload(_AdminPayload):
    """`PUT /_sim/list-scope`: what a List without projectId shows (see the deviations)."""

    list_scope: Literal["account", "default-project"]


async def admin_set_list_scope(request: web.Request) -> web.Response:
    payload = await _admin_payload(request, ListScopePayload)
    _state(request).list_scope = payload.list_scope
    return web.json_response({"list_scope": payload.list_scope})


_CLUSTER: Final = "/_sim/clusters/{cluster_id}"
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
    ("POST", _CLUSTER + "/phase", admin_force_phase),
    ("POST", _CLUSTER + "/status", admin_force_status),
    ("POST", _CLUSTER + "/preempt", admin_preempt),
    ("POST", _CLUSTER + "/alerts", admin_raise_alert),
    ("POST", _CLUSTER + "/alerts/{alert_id}/resolve", admin_resolve_alert),
    ("POST", _CLUSTER + "/remediations/{remediation_id}/fail", admin_fail_remediation),
    ("GET", "/_sim/stock", admin_get_stock),
    ("PUT", "/_sim/stock", admin_set_stock),
    ("PUT", "/_sim/list-scope", admin_set_list_scope),
]
