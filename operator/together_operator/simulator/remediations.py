"""Node remediations: created through the API (PENDING at once) or by the system for an alert
(PENDING_APPROVAL, until approved, rejected, cancelled, or auto-resolved when its alert
resolves), then moved through their states by the clock. Pure functions on a cluster record.

Lifecycle, one `Timings.remediation_step` per step:
PENDING -> [QUARANTINING -> QUARANTINED, for the host-level modes] -> RUNNING -> SUCCEEDED.
FAILED is reached through the admin API; CANCELLED by cancel or reject; AUTO_RESOLVED when the
alert behind a PENDING_APPROVAL remediation resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final, TypeVar

from pydantic import BaseModel, Field

from together_operator.simulator.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
)
from together_operator.simulator.parsing import parse, query_enums, query_int
from together_operator.together.health import (
    ApproveRemediationRequest,
    CommentBody,
    ListRemediationsResponse,
    PassiveHealthCheckAlert,
    Remediation,
    RemediationMode,
    RemediationRequest,
    RemediationState,
    RemediationTrigger,
)
from together_operator.together.models import ClusterStatus, GPUClusterGPUWorkerNode

if TYPE_CHECKING:
    from multidict import MultiMapping

    from together_operator.simulator.lifecycle import ClusterRecord, Timings

ANY_INSTANCE: Final = "-"  # the contract's wildcard for "every node of the cluster"
REQUESTED_BY_API: Final = "api"
REQUESTED_BY_SYSTEM: Final = "together-health-checks"
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
_HOST_LEVEL_MODES: Final = (RemediationMode.HOST_AWARE, RemediationMode.HOST_POWER_CYCLE)
_NEXT_STATE: Final = {
    RemediationState.QUARANTINING: RemediationState.QUARANTINED,
    RemediationState.QUARANTINED: RemediationState.RUNNING,
    RemediationState.RUNNING: RemediationState.SUCCEEDED,
}
ACTIVE_STATES: Final = (RemediationState.PENDING, *_NEXT_STATE)
Item = TypeVar("Item")
_ORDERS: Final = {
    "": True,
    "create_time desc": True,
    "create_time": False,
    "create_time asc": False,
}


class RemediationRecord(BaseModel):
    """A remediation as stored, with its linked alerts by ID and its next clock step."""

    remediation: Remediation
    linked_alert_ids: list[str] = Field(default_factory=list)
    next_step_at: datetime | None = None


# --- paging ----------------------------------------------------------------------------------


def page_of(items: Sequence[Item], query: MultiMapping[str]) -> tuple[list[Item], str]:
    """One page of `items` as `page_size` and `page_token` ask, and the next page's token
    ("" on the last page). Tokens are opaque to clients; here, the offset of the page."""
    size = query_int(query, "page_size", default=0) or DEFAULT_PAGE_SIZE
    token = query.get("page_token", "")
    if token and not token.isdigit():
        raise InvalidRequest("`page_token` is not a token this API returned")
    start = int(token or 0)
    end = start + min(size, MAX_PAGE_SIZE)
    return list(items[start:end]), str(end) if end < len(items) else ""


# --- views -----------------------------------------------------------------------------------


def view(record: RemediationRecord, alerts: list[PassiveHealthCheckAlert]) -> Remediation:
    """The remediation as the API shows it, with its linked alerts as they are now."""
    linked = [a for a in alerts if a.passive_health_check_alert_id in record.linked_alert_ids]
    update = {"linked_alerts": linked} if record.linked_alert_ids else {}
    return record.remediation.model_copy(update=update, deep=True)


def latest_for(cluster: ClusterRecord, instance_id: str) -> Remediation | None:
    """The newest remediation of an instance (a worker node's `latest_remediation`)."""
    mine = [r for r in cluster.remediations if r.remediation.instance_id == instance_id]
    return view(mine[-1], cluster.alerts) if mine else None


def list_for(
    cluster: ClusterRecord, instance_id: str, query: MultiMapping[str]
) -> ListRemediationsResponse:
    """The remediations of one instance (or, with `-`, of the whole cluster), filtered by
    state, trigger and mode, newest first unless `order_by` says `create_time asc`."""
    states = query_enums(query.getall("state", []), "state", RemediationState)
    triggers = query_enums(query.getall("trigger", []), "trigger", RemediationTrigger)
    modes = query_enums(query.getall("mode", []), "mode", RemediationMode)
    order = " ".join(query.get("order_by", "").split()).lower()
    if order not in _ORDERS:
        raise InvalidRequest("`order_by` must be `create_time asc` or `create_time desc`")
    if instance_id != ANY_INSTANCE:
        _node(cluster, instance_id, live_only=False)
    chosen = [
        r
        for r in cluster.remediations
        if instance_id in (ANY_INSTANCE, r.remediation.instance_id)
        and (not states or r.remediation.state in states)
        and (not triggers or r.remediation.trigger in triggers)
        and (not modes or r.remediation.mode in modes)
    ]
    if _ORDERS[order]:
        chosen.reverse()
    page, token = page_of(chosen, query)
    return ListRemediationsResponse(
        remediations=[view(r, cluster.alerts) for r in page],
        next_page_token=token,
        has_next=bool(token),
    )


def _node(cluster: ClusterRecord, instance_id: str, *, live_only: bool) -> GPUClusterGPUWorkerNode:
    nodes = list(cluster.info.gpu_worker_nodes)
    if not live_only:
        nodes += cluster.info.deleted_gpu_worker_nodes or []
    node = next((n for n in nodes if n.instance_id == instance_id), None)
    if node is None:
        raise NotFound(f"instance {instance_id} not found in cluster {cluster.cluster_id}")
    return node


def find(cluster: ClusterRecord, instance_id: str, remediation_id: str) -> RemediationRecord:
    """A remediation by ID; the instance must be its own or the wildcard `-`."""
    found = next((r for r in cluster.remediations if r.remediation.id == remediation_id), None)
    if found is None or instance_id not in (ANY_INSTANCE, found.remediation.instance_id):
        raise NotFound(
            f"remediation {remediation_id} not found on instance {instance_id} "
            f"of cluster {cluster.cluster_id}"
        )
    return found


# --- changes ---------------------------------------------------------------------------------


def parse_create(body: object) -> RemediationRequest:
    """The body of a remediation create: the contract's `Remediation`, of which only `mode` and
    `reason` are writable (readOnly fields are ignored)."""
    return parse(RemediationRequest, body)


def create(
    cluster: ClusterRecord,
    instance_id: str,
    request: RemediationRequest,
    *,
    now: datetime,
    timings: Timings,
    new_id: Callable[[], str],
    remediation_id: str | None = None,
    trigger: RemediationTrigger = RemediationTrigger.MANUAL,
    alert: PassiveHealthCheckAlert | None = None,
) -> RemediationRecord:
    """Open a remediation on a live node. A manual one starts at once (PENDING); an automated
    one waits for approval. A client-chosen `remediation_id` makes the create idempotent."""
    if instance_id == ANY_INSTANCE:
        raise InvalidRequest("a remediation targets one instance: `-` only lists remediations")
    if remediation_id:
        existing = next(
            (r for r in cluster.remediations if r.remediation.id == remediation_id), None
        )
        if existing is not None:
            if existing.remediation.instance_id != instance_id:
                raise AlreadyExists(
                    f"remediation {remediation_id} exists already, on instance "
                    f"{existing.remediation.instance_id}"
                )
            return existing  # the retried create of the same remediation
    if cluster.info.status == ClusterStatus.DELETING:
        raise Conflict(f"cluster {cluster.cluster_id} is being deleted; nothing to remediate")
    node = _node(cluster, instance_id, live_only=True)
    manual = trigger == RemediationTrigger.MANUAL
    record = RemediationRecord(
        remediation=Remediation(
            id=remediation_id or new_id(),
            cluster_id=cluster.cluster_id,
            instance_id=instance_id,
            mode=request.mode.value,
            trigger=trigger.value,
            state=(RemediationState.PENDING if manual else RemediationState.PENDING_APPROVAL).value,
            reason=request.reason,
            passive_health_check_event_id=None
            if alert is None
            else alert.passive_health_check_alert_id,
            requested_by=REQUESTED_BY_API if manual else REQUESTED_BY_SYSTEM,
            create_time=now,
            update_time=now,
            instance_name=node.host_name,
        ),
        linked_alert_ids=[] if alert is None else [alert.passive_health_check_alert_id],
        next_step_at=timings.after(now, timings.remediation_step) if manual else None,
    )
    cluster.remediations.append(record)
    return record


def _require(record: RemediationRecord, allowed: Sequence[RemediationState], action: str) -> None:
    state = record.remediation.state
    if state not in allowed:
        raise FailedPrecondition(
            f"remediation {record.remediation.id} is {state}; only "
            + " or ".join(allowed)
            + f" remediations can be {action}"
        )


def approve(
    record: RemediationRecord,
    request: ApproveRemediationRequest,
    *,
    now: datetime,
    timings: Timings,
) -> None:
    """PENDING_APPROVAL -> PENDING, optionally with another mode (never HOST_POWER_CYCLE)."""
    _require(record, [RemediationState.PENDING_APPROVAL], "approved")
    if request.mode == RemediationMode.HOST_POWER_CYCLE:
        raise InvalidRequest(
            "`mode` REMEDIATION_MODE_HOST_POWER_CYCLE cannot be set as an approval override; "
            "create a host power-cycle remediation directly"
        )
    remediation = record.remediation
    if request.mode is not None:
        remediation.mode = request.mode.value
    _review(remediation, request.comment, now)
    _enter(record, RemediationState.PENDING, now)
    record.next_step_at = timings.after(now, timings.remediation_step)


def reject(record: RemediationRecord, request: CommentBody, *, now: datetime) -> None:
    """PENDING_APPROVAL -> CANCELLED, with the reviewer's comment."""
    _require(record, [RemediationState.PENDING_APPROVAL], "rejected")
    _review(record.remediation, request.comment, now)
    _enter(record, RemediationState.CANCELLED, now)


def cancel(record: RemediationRecord, *, now: datetime) -> None:
    """PENDING_APPROVAL or PENDING -> CANCELLED."""
    _require(record, [RemediationState.PENDING_APPROVAL, RemediationState.PENDING], "cancelled")
    _enter(record, RemediationState.CANCELLED, now)


def fail(record: RemediationRecord, message: str, *, now: datetime) -> None:
    """An active remediation fails (the admin API's way to reach FAILED)."""
    _require(record, ACTIVE_STATES, "failed")
    record.remediation.error_message = message
    _enter(record, RemediationState.FAILED, now)


def auto_resolve(cluster: ClusterRecord, alert_id: str, now: datetime) -> None:
    """The alert behind pending-approval remediations resolved: nothing left to do."""
    for record in cluster.remediations:
        waiting = record.remediation.state == RemediationState.PENDING_APPROVAL
        if waiting and alert_id in record.linked_alert_ids:
            _enter(record, RemediationState.AUTO_RESOLVED, now)


def _review(remediation: Remediation, comment: str | None, now: datetime) -> None:
    remediation.reviewed_by = REQUESTED_BY_API
    remediation.review_time = now
    remediation.review_comment = comment or ""


def _enter(record: RemediationRecord, state: RemediationState, at: datetime) -> None:
    remediation = record.remediation
    remediation.state = state.value
    remediation.update_time = at
    if state in (RemediationState.QUARANTINING, RemediationState.RUNNING) and (
        remediation.start_time is None
    ):
        remediation.start_time = at
    if state not in (RemediationState.PENDING, *_NEXT_STATE):
        remediation.end_time = at
        record.next_step_at = None


# --- the clock -------------------------------------------------------------------------------


def next_due(cluster: ClusterRecord) -> datetime | None:
    """When the next remediation of the cluster moves on, if one will."""
    return min((r.next_step_at for r in cluster.remediations if r.next_step_at), default=None)


def apply_due(cluster: ClusterRecord, at: datetime, timings: Timings) -> bool:
    """Move on the first remediation due at `at`; False when none is."""
    record = next((r for r in cluster.remediations if r.next_step_at == at), None)
    if record is None:
        return False
    state = record.remediation.state
    if state == RemediationState.PENDING:
        host_level = record.remediation.mode in _HOST_LEVEL_MODES
        following = RemediationState.QUARANTINING if host_level else RemediationState.RUNNING
    else:
        following = _NEXT_STATE[RemediationState(state)]
    _enter(record, following, at)
    if following != RemediationState.SUCCEEDED:
        record.next_step_at = timings.after(at, timings.remediation_step)
    return True
