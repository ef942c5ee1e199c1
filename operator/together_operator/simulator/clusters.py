"""What a create or an update does to a cluster: pure builders on the wire models and the
cluster record. The store checks stock and saves; these only compute."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from together_operator.simulator import addons, lifecycle
from together_operator.simulator.lifecycle import ClusterRecord, Timings
from together_operator.together.models import (
    ClusterDriverVersionInfo,
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GPUClusterUpdateRequest,
    InstanceClusterConfig,
)


def new_cluster_info(
    request: GPUClusterCreateRequest,
    driver: ClusterDriverVersionInfo,
    cluster_id: str,
    project_id: str,
    now: datetime,
) -> GPUClusterInfo:
    """The wire view of a cluster `request` has just created."""
    reserved = request.num_reserved_gpus
    if reserved is None:  # the contract: defaults to num_gpus for RESERVED billing
        reserved = request.num_gpus if request.billing_type == "RESERVED" else 0
    return GPUClusterInfo(
        cluster_id=cluster_id,
        cluster_name=request.cluster_name,
        region=request.region,
        status=ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
        cluster_type=request.cluster_type or "KUBERNETES",
        gpu_type=request.gpu_type,
        billing_type=request.billing_type,
        num_gpus=request.num_gpus,
        cuda_version=driver.cuda_version,
        nvidia_driver_version=driver.nvidia_driver_version,
        nvidia_driver_version_id=driver.id,
        os_image=driver.os,
        project_id=project_id,
        desired_preemptible_gpus=request.num_preemptible_gpus or 0,
        num_capacity_pool_gpus=request.num_capacity_pool_gpus or 0,
        num_reserved_gpus=reserved,
        duration_hours=request.duration_days * 24 if request.duration_days else None,
        slurm_shm_size_gib=request.slurm_shm_size_gib,
        capacity_pool_id=request.capacity_pool_id,
        reservation_start_time=request.reservation_start_time,
        reservation_end_time=request.reservation_end_time,
        install_traefik=request.install_traefik or False,
        created_at=now,
        oidc_config=request.oidc_config,
        cluster_config=request.cluster_config,
        control_plane_ready=False,
        machine_cluster_id=f"mc-{cluster_id[:8]}",
        node_lifecycle_events=[],
        deleted_gpu_worker_nodes=[],
    )


def apply_update(
    record: ClusterRecord, update: GPUClusterUpdateRequest, now: datetime, timings: Timings
) -> None:
    """Apply a checked update with merge semantics: what it omits keeps its value."""
    info = record.info
    if update.num_gpus is not None and update.num_gpus != info.num_gpus:
        info.num_gpus = update.num_gpus
        if info.status in (ClusterStatus.READY, ClusterStatus.DEGRADED):
            record.plan = lifecycle.plan_scaling(now, timings)
    if update.num_preemptible_gpus is not None:
        info.desired_preemptible_gpus = update.num_preemptible_gpus
    if update.num_capacity_pool_gpus is not None:
        info.num_capacity_pool_gpus = update.num_capacity_pool_gpus
    if update.num_reserved_gpus is not None:
        info.num_reserved_gpus = update.num_reserved_gpus
    if update.reservation_end_time is not None:
        info.reservation_end_time = update.reservation_end_time
    if update.cluster_config is not None:
        info.cluster_config = merged_config(info.cluster_config, update.cluster_config)
    for change in update.add_ons or []:
        add_on = next(a for a in record.add_ons if a.name == change.name)
        if change.config is not None:
            addons.merge_config(add_on, change.config)


def merged_config(
    current: InstanceClusterConfig | None, change: InstanceClusterConfig
) -> InstanceClusterConfig:
    """`change` merged into `current`: what `change` sets wins, at every level; the rest stays
    (merge semantics, like the update's other fields)."""

    def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in update.items():
            old = out.get(key)
            out[key] = (
                merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
            )
        return out

    base = current.model_dump(mode="json", exclude_none=True) if current is not None else {}
    update = change.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return InstanceClusterConfig.model_validate(merge(base, update))
