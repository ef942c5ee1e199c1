"""Wire models of node health: remediations (`RemediationService`) and passive health-check
alerts (`HealthCheckService`), named as in the contract's schemas.

Reading is tolerant as in :mod:`together_operator.together.models`: `state`, `mode`, `trigger`
and `severity` are plain strings on what the server sends (the known values are the enums
below), and required fields that carry no identity default to empty values (the docs' own
example of a node's `latest_remediation` has no `mode`, `trigger` or `state`). The request
models use the enums, so a bad request fails before it is sent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from together_operator.together.wire import WireModel


class RemediationMode(StrEnum):
    """How a remediation is carried out."""

    VM_ONLY = "REMEDIATION_MODE_VM_ONLY"
    HOST_AWARE = "REMEDIATION_MODE_HOST_AWARE"
    EVICT_WITHOUT_REPLACEMENT = "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"
    REBOOT_VM = "REMEDIATION_MODE_REBOOT_VM"
    HOST_POWER_CYCLE = "REMEDIATION_MODE_HOST_POWER_CYCLE"


class RemediationTrigger(StrEnum):
    """Who started a remediation: a user (MANUAL) or the system (AUTOMATED, needs approval)."""

    MANUAL = "REMEDIATION_TRIGGER_MANUAL"
    AUTOMATED = "REMEDIATION_TRIGGER_AUTOMATED"


class RemediationState(StrEnum):
    """The lifecycle state of a remediation."""

    PENDING_APPROVAL = "PENDING_APPROVAL"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    AUTO_RESOLVED = "AUTO_RESOLVED"
    QUARANTINING = "QUARANTINING"
    QUARANTINED = "QUARANTINED"


class AlertSeverity(StrEnum):
    """`PassiveHealthCheckAlert.severity`."""

    INFO = "PHC_SEVERITY_INFO"
    WARNING = "PHC_SEVERITY_WARNING"
    CRITICAL = "PHC_SEVERITY_CRITICAL"


class AlertStatus(StrEnum):
    """The `status` filter of the alert list: firing (the default), resolved, or all."""

    FIRING = "PHC_ALERT_STATUS_FIRING"
    RESOLVED = "PHC_ALERT_STATUS_RESOLVED"
    ALL = "PHC_ALERT_STATUS_ALL"


class AlertOrder(StrEnum):
    """The `order_by` of the alert list (newest first by default)."""

    STARTED_AT_ASC = "PHC_ALERT_ORDER_STARTED_AT_ASC"
    STARTED_AT_DESC = "PHC_ALERT_ORDER_STARTED_AT_DESC"


class PassiveHealthCheckAlert(WireModel):
    """An alert raised against a node; `resolved_at` is unset while it fires."""

    passive_health_check_alert_id: str
    cluster_id: str = ""
    target_vm: str = ""
    alert_name: str = ""
    severity: str = ""
    annotations: dict[str, str] = Field(default_factory=dict)
    started_at: datetime | None = None
    instance_id: str | None = None
    resolved_at: datetime | None = None
    node_remediation_intent_id: str | None = None


class ListPassiveHealthCheckAlertsResponse(WireModel):
    """The body of `GET /v1/compute/passive_health_check_alerts`."""

    alerts: list[PassiveHealthCheckAlert] = Field(default_factory=list)
    next_page_token: str = ""


class Remediation(WireModel):
    """A node remediation; an instance can have several over time (failures, retries)."""

    id: str
    cluster_id: str = ""
    instance_id: str = ""
    mode: str = ""
    trigger: str = ""
    state: str = ""
    reason: str | None = None
    active_health_check_run_id: str | None = None
    passive_health_check_event_id: str | None = None
    requested_by: str | None = None
    create_time: datetime | None = None
    reviewed_by: str | None = None
    review_time: datetime | None = None
    review_comment: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_message: str | None = None
    update_time: datetime | None = None
    instance_name: str | None = None
    linked_alerts: list[PassiveHealthCheckAlert] | None = None


class RemediationRequest(WireModel):
    """The body of a remediation create: the writable part of the contract's `Remediation`
    (its readOnly fields are set by the server, and ignored when sent)."""

    mode: RemediationMode
    reason: str | None = None


class ListRemediationsResponse(WireModel):
    """The body of `GET .../instances/{instance_id}/remediations`."""

    remediations: list[Remediation] = Field(default_factory=list)
    next_page_token: str = ""
    has_next: bool = False


class ApproveRemediationRequest(WireModel):
    """The body of `POST .../remediations/{remediation_id}/approve`; `mode` overrides the
    remediation's mode (never with HOST_POWER_CYCLE)."""

    comment: str | None = None
    mode: RemediationMode | None = None


class CommentBody(WireModel):
    """The body of `POST .../remediations/{remediation_id}/reject`."""

    comment: str | None = None
