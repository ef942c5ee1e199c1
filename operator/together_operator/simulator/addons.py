"""Cluster add-ons: created with the cluster or through the add-on endpoints, changed, disabled,
re-enabled and deleted. Pure functions on a cluster record; the store saves.

An add-on is enabled when its config's member for its own type says `enabled: true`; only
enabled add-ons appear in the cluster's `add_ons` (the contract says so), while the add-on
endpoints list and serve every add-on, so that a disabled one can be found and re-enabled.
Its `state` carries the member of its type (an empty object, as the contract defines it) once
it runs: enabled, on a cluster whose control plane is ready. The add-on's ID in the paths is its
name: `AddOnInfo` has no other identity (see the package's Deviations).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from together_operator.simulator.errors import AlreadyExists, Conflict, NotFound
from together_operator.simulator.parsing import parse
from together_operator.simulator.validation import check_add_on_names
from together_operator.together.models import (
    AddOnConfig,
    AddOnCreateRequest,
    AddOnInfo,
    AddOnState,
    ClusterAddOnCreateRequest,
    ClusterAddOnDeleteResponse,
    ClusterAddOnsListResponse,
    ClusterAddOnUpdateRequest,
    ClusterStatus,
    GPUClusterInfo,
)


class AddOnRecord(BaseModel):
    """An add-on as stored: its name, type and the config it was given (merged over time)."""

    name: str
    add_on_type: str
    config: AddOnConfig = Field(default_factory=AddOnConfig)


def from_request(request: AddOnCreateRequest) -> AddOnRecord:
    """The record of an add-on created by `request`."""
    return AddOnRecord(
        name=request.name,
        add_on_type=request.add_on_type.value,
        config=request.config or AddOnConfig(),
    )


def is_enabled(add_on: AddOnRecord) -> bool:
    """Whether the config's member for the add-on's own type says `enabled: true`."""
    member = getattr(add_on.config, add_on.add_on_type, None)
    return bool(member is not None and member.enabled)


def view(add_on: AddOnRecord, cluster: GPUClusterInfo) -> AddOnInfo:
    """The add-on as the API shows it, with the state of a running add-on when it runs."""
    running = is_enabled(add_on) and bool(cluster.control_plane_ready)
    state = AddOnState.model_validate({add_on.add_on_type: {}} if running else {})
    return AddOnInfo(
        name=add_on.name,
        add_on_type=add_on.add_on_type,
        config=add_on.config.model_copy(deep=True),
        state=state,
    )


def enabled_views(add_ons: list[AddOnRecord], cluster: GPUClusterInfo) -> list[AddOnInfo]:
    """What a cluster's `add_ons` holds: its enabled add-ons only."""
    return [view(a, cluster) for a in add_ons if is_enabled(a)]


def merge_config(add_on: AddOnRecord, change: AddOnConfig) -> None:
    """Merge `change` into the add-on's config: members and their fields that `change` sets
    replace the current ones, the rest stay."""
    merged: dict[str, Any] = add_on.config.model_dump(exclude_none=True)
    for member, fields in change.model_dump(exclude_none=True).items():
        merged[member] = {**merged.get(member, {}), **fields}
    add_on.config = AddOnConfig.model_validate(merged)


def parse_create(body: object) -> ClusterAddOnCreateRequest:
    """The body of an add-on create, checked."""
    request = parse(ClusterAddOnCreateRequest, body)
    check_add_on_names([request.name])
    return request


def parse_update(body: object) -> ClusterAddOnUpdateRequest:
    """The body of an add-on update, checked."""
    return parse(ClusterAddOnUpdateRequest, body)


def _find(add_ons: list[AddOnRecord], cluster: GPUClusterInfo, add_on_id: str) -> AddOnRecord:
    found = next((a for a in add_ons if a.name == add_on_id), None)
    if found is None:
        raise NotFound(f"add-on {add_on_id!r} not found on cluster {cluster.cluster_id}")
    return found


def _check_not_deleting(cluster: GPUClusterInfo) -> None:
    if cluster.status == ClusterStatus.DELETING:
        raise Conflict(
            f"cluster {cluster.cluster_id} is being deleted (status Deleting); "
            "its add-ons can no longer be changed"
        )


def list_all(add_ons: list[AddOnRecord], cluster: GPUClusterInfo) -> ClusterAddOnsListResponse:
    """Every add-on of the cluster, disabled ones included, in creation order."""
    return ClusterAddOnsListResponse(add_ons=[view(a, cluster) for a in add_ons])


def get(add_ons: list[AddOnRecord], cluster: GPUClusterInfo, add_on_id: str) -> AddOnInfo:
    """One add-on, enabled or not."""
    return view(_find(add_ons, cluster, add_on_id), cluster)


def create(
    add_ons: list[AddOnRecord], cluster: GPUClusterInfo, request: ClusterAddOnCreateRequest
) -> AddOnInfo:
    """Add an add-on; its name must be new on the cluster."""
    _check_not_deleting(cluster)
    if any(a.name == request.name for a in add_ons):
        raise AlreadyExists(
            f"cluster {cluster.cluster_id} already has an add-on named {request.name!r}; "
            "update it instead"
        )
    record = from_request(request)
    add_ons.append(record)
    return view(record, cluster)


def update(
    add_ons: list[AddOnRecord],
    cluster: GPUClusterInfo,
    add_on_id: str,
    request: ClusterAddOnUpdateRequest,
) -> AddOnInfo:
    """Merge a config change into an add-on (enabling or disabling it, say)."""
    _check_not_deleting(cluster)
    record = _find(add_ons, cluster, add_on_id)
    if request.config is not None:
        merge_config(record, request.config)
    return view(record, cluster)


def delete(
    add_ons: list[AddOnRecord], cluster: GPUClusterInfo, add_on_id: str
) -> ClusterAddOnDeleteResponse:
    """Remove an add-on."""
    _check_not_deleting(cluster)
    add_ons.remove(_find(add_ons, cluster, add_on_id))
    return ClusterAddOnDeleteResponse()
