"""Together's `/v1/compute` operations, every one in the contract: one small handler each,
which reads the request (bodies before lookups, so an invalid body is a 400 wherever it is
sent) and hands it to the store. `API_ROUTES` maps each contract operation to its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

from aiohttp import web
from pydantic import BaseModel

from together_operator.simulator import addons, remediations
from together_operator.simulator.lifecycle import ClusterRecord
from together_operator.simulator.parsing import parse, read_json
from together_operator.simulator.state import CloudState
from together_operator.together import operations
from together_operator.together.health import ApproveRemediationRequest, CommentBody
from together_operator.together.operations import Operation

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE: Final = web.AppKey("state", CloudState)


def json_response(model: BaseModel) -> web.Response:
    """A 200 with `model` as its body (unset optional fields left out: nothing is nullable)."""
    return web.json_response(model.model_dump(mode="json", exclude_none=True, by_alias=True))


async def read_body(request: web.Request) -> object:
    """The request's JSON body (an absent one is invalid JSON: a 400)."""
    return read_json(await request.read())


def _state(request: web.Request) -> CloudState:
    return request.app[STATE]


def _project_filter(request: web.Request) -> str | None:
    # The contract (and the official SDK) send `projectId`; accept the snake_case spelling too.
    return request.query.get("projectId") or request.query.get("project_id") or None


def _ids(request: web.Request) -> tuple[str, str]:
    return request.match_info["cluster_id"], request.match_info.get("instance_id", "")


# --- clusters, regions, shared volumes -------------------------------------------------------


async def list_clusters(request: web.Request) -> web.Response:
    return json_response(_state(request).list_clusters(_project_filter(request)))


async def create_cluster(request: web.Request) -> web.Response:
    return json_response(_state(request).create_cluster(await read_body(request)))


async def get_cluster(request: web.Request) -> web.Response:
    return json_response(_state(request).get_cluster(request.match_info["cluster_id"]))


async def update_cluster(request: web.Request) -> web.Response:
    body = await read_body(request)
    return json_response(_state(request).update_cluster(request.match_info["cluster_id"], body))


async def delete_cluster(request: web.Request) -> web.Response:
    return json_response(_state(request).delete_cluster(request.match_info["cluster_id"]))


async def list_regions(request: web.Request) -> web.Response:
    return json_response(_state(request).regions())


async def list_volumes(request: web.Request) -> web.Response:
    return json_response(_state(request).list_volumes(_project_filter(request)))


async def create_volume(request: web.Request) -> web.Response:
    return json_response(_state(request).create_volume(await read_body(request)))


async def update_volume(request: web.Request) -> web.Response:
    return json_response(_state(request).update_volume(await read_body(request)))


async def get_volume(request: web.Request) -> web.Response:
    return json_response(_state(request).get_volume(request.match_info["volume_id"]))


async def delete_volume(request: web.Request) -> web.Response:
    return json_response(_state(request).delete_volume(request.match_info["volume_id"]))


# --- add-ons ---------------------------------------------------------------------------------


async def list_add_ons(request: web.Request) -> web.Response:
    cluster_id, _ = _ids(request)
    found = _state(request).on_cluster(
        cluster_id, lambda r, _: addons.list_all(r.add_ons, r.info), changes=False
    )
    return json_response(found)


async def create_add_on(request: web.Request) -> web.Response:
    create = addons.parse_create(await read_body(request))
    cluster_id, _ = _ids(request)
    made = _state(request).on_cluster(
        cluster_id, lambda r, _: addons.create(r.add_ons, r.info, create), changes=True
    )
    return json_response(made)


async def get_add_on(request: web.Request) -> web.Response:
    cluster_id, add_on_id = request.match_info["cluster_id"], request.match_info["addon_id"]
    found = _state(request).on_cluster(
        cluster_id, lambda r, _: addons.get(r.add_ons, r.info, add_on_id), changes=False
    )
    return json_response(found)


async def update_add_on(request: web.Request) -> web.Response:
    change = addons.parse_update(await read_body(request))
    cluster_id, add_on_id = request.match_info["cluster_id"], request.match_info["addon_id"]
    changed = _state(request).on_cluster(
        cluster_id,
        lambda r, _: addons.update(r.add_ons, r.info, add_on_id, change),
        changes=True,
    )
    return json_response(changed)


async def delete_add_on(request: web.Request) -> web.Response:
    cluster_id, add_on_id = request.match_info["cluster_id"], request.match_info["addon_id"]
    gone = _state(request).on_cluster(
        cluster_id, lambda r, _: addons.delete(r.add_ons, r.info, add_on_id), changes=True
    )
    return json_response(gone)


# --- remediations and health-check alerts ----------------------------------------------------


async def list_remediations(request: web.Request) -> web.Response:
    cluster_id, instance_id = _ids(request)
    found = _state(request).on_cluster(
        cluster_id,
        lambda r, _: remediations.list_for(r, instance_id, request.query),
        changes=False,
    )
    return json_response(found)


async def create_remediation(request: web.Request) -> web.Response:
    create = remediations.parse_create(await read_body(request))
    cluster_id, instance_id = _ids(request)
    state = _state(request)

    def open_one(record: ClusterRecord, now: datetime) -> BaseModel:
        made = remediations.create(
            record,
            instance_id,
            create,
            now=now,
            timings=state.timings,
            new_id=state.new_id,
            remediation_id=request.query.get("remediation_id") or None,
        )
        return remediations.view(made, record.alerts)

    return json_response(state.on_cluster(cluster_id, open_one, changes=True))


async def get_remediation(request: web.Request) -> web.Response:
    cluster_id, instance_id = _ids(request)
    remediation_id = request.match_info["remediation_id"]

    def found(record: ClusterRecord, _: datetime) -> BaseModel:
        return remediations.view(
            remediations.find(record, instance_id, remediation_id), record.alerts
        )

    return json_response(_state(request).on_cluster(cluster_id, found, changes=False))


async def approve_remediation(request: web.Request) -> web.Response:
    approval = parse(ApproveRemediationRequest, await read_body(request))
    timings = _state(request).timings
    return await _review(
        request,
        lambda remediation, now: remediations.approve(
            remediation, approval, now=now, timings=timings
        ),
    )


async def cancel_remediation(request: web.Request) -> web.Response:
    # The contract gives cancel no request body: whatever is sent is ignored.
    return await _review(
        request, lambda remediation, now: remediations.cancel(remediation, now=now)
    )


async def reject_remediation(request: web.Request) -> web.Response:
    rejection = parse(CommentBody, await read_body(request))
    return await _review(
        request, lambda remediation, now: remediations.reject(remediation, rejection, now=now)
    )


async def _review(
    request: web.Request, action: Callable[[remediations.RemediationRecord, datetime], None]
) -> web.Response:
    """Approve, cancel or reject one remediation; answer with it as it is then."""
    cluster_id, instance_id = _ids(request)
    remediation_id = request.match_info["remediation_id"]

    def review(record: ClusterRecord, now: datetime) -> BaseModel:
        remediation = remediations.find(record, instance_id, remediation_id)
        action(remediation, now)
        return remediations.view(remediation, record.alerts)

    return json_response(_state(request).on_cluster(cluster_id, review, changes=True))


async def list_health_check_alerts(request: web.Request) -> web.Response:
    return json_response(_state(request).list_alerts(request.query))


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
    operations.LIST_ADDONS: list_add_ons,
    operations.CREATE_ADDON: create_add_on,
    operations.GET_ADDON: get_add_on,
    operations.UPDATE_ADDON: update_add_on,
    operations.DELETE_ADDON: delete_add_on,
    operations.LIST_REMEDIATIONS: list_remediations,
    operations.CREATE_REMEDIATION: create_remediation,
    operations.GET_REMEDIATION: get_remediation,
    operations.APPROVE_REMEDIATION: approve_remediation,
    operations.CANCEL_REMEDIATION: cancel_remediation,
    operations.REJECT_REMEDIATION: reject_remediation,
    operations.LIST_HEALTH_CHECK_ALERTS: list_health_check_alerts,
}
