"""Request validation as the real service does it: pure functions that raise `InvalidRequest`
(or `Conflict`) with a message naming the offending field, and return the parsed request.

Types, formats and ranges are checked by :mod:`together_operator.simulator.parsing`; this module
adds the rules the contract states in prose, and the few the simulator chooses (listed in the
package's Deviations). Unknown request fields are ignored, as the real service does.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from together_operator.simulator.catalog import Catalog
from together_operator.simulator.errors import Conflict, InvalidRequest
from together_operator.simulator.parsing import parse
from together_operator.together.models import (
    ClusterDriverVersionInfo,
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GPUClustersSharedVolumeCreateRequest,
    GPUClustersSharedVolumeUpdateRequest,
    GPUClusterUpdateRequest,
    InstanceClusterConfig,
    LoadBalancer,
)

GPUS_PER_NODE: Final = 8
# "Prepaid" clusters: the only ones whose decommission time may be changed.
_PREPAID_BILLING: Final = ("RESERVED", "SCHEDULED_CAPACITY")


def _check_gpu_count(field: str, value: int | None, *, limit: int | None = None) -> None:
    """`value` is a non-negative multiple of 8 and, when `limit` is given, at most `limit`
    (the contract states that limit for capacity-pool GPUs only)."""
    if value is None:
        return
    if value < 0 or value % GPUS_PER_NODE:
        raise InvalidRequest(f"`{field}` must be a multiple of {GPUS_PER_NODE} (got {value})")
    if limit is not None and value > limit:
        raise InvalidRequest(f"`{field}` ({value}) must not exceed `num_gpus` ({limit})")


def _check_num_gpus(value: int) -> None:
    if value <= 0 or value % GPUS_PER_NODE:
        raise InvalidRequest(
            f"`num_gpus` must be a positive multiple of {GPUS_PER_NODE}, e.g. 8, 16 or 24 "
            f"(got {value})"
        )


def resolve_driver(request: GPUClusterCreateRequest, catalog: Catalog) -> ClusterDriverVersionInfo:
    """The driver catalog entry the request selects in its region (see the schema's anyOf)."""
    legacy = (request.cuda_version, request.nvidia_driver_version)
    if (legacy[0] is None) != (legacy[1] is None):
        raise InvalidRequest(
            "`cuda_version` and `nvidia_driver_version` must be given together "
            "(or give `nvidia_version_id` alone)"
        )
    if request.nvidia_version_id is None and legacy[0] is None:
        raise InvalidRequest(
            "`nvidia_version_id` is required (or both `cuda_version` and "
            "`nvidia_driver_version`); see GET /v1/compute/regions for the versions on offer"
        )
    region = catalog.region(request.region)
    assert region is not None, "the region is checked before the driver"
    offered = ", ".join(entry.id for entry in region.driver_versions)
    if request.nvidia_version_id is not None:
        entry = next((e for e in region.driver_versions if e.id == request.nvidia_version_id), None)
        if entry is None:
            raise InvalidRequest(
                f"`nvidia_version_id` {request.nvidia_version_id!r} is not offered in region "
                f"{region.name!r}; offered: {offered}"
            )
        if legacy[0] is not None and legacy != (entry.cuda_version, entry.nvidia_driver_version):
            raise InvalidRequest(
                "`cuda_version` and `nvidia_driver_version` do not match `nvidia_version_id` "
                f"{entry.id!r}"
            )
        return entry
    for entry in region.driver_versions:
        if (entry.cuda_version, entry.nvidia_driver_version) == legacy:
            return entry
    raise InvalidRequest(
        f"`cuda_version` {legacy[0]!r} with `nvidia_driver_version` {legacy[1]!r} is not "
        f"offered in region {region.name!r}; offered: {offered}"
    )


def _check_region_offer(request: GPUClusterCreateRequest, catalog: Catalog) -> None:
    region = catalog.region(request.region)
    if region is None:
        names = ", ".join(r.name for r in catalog.regions)
        raise InvalidRequest(f"`region` {request.region!r} is unknown; regions: {names}")
    if request.gpu_type not in region.supported_instance_types:
        offered = ", ".join(region.supported_instance_types)
        raise InvalidRequest(
            f"`gpu_type` {request.gpu_type} is not offered in region {region.name!r}; "
            f"offered: {offered}"
        )


def _check_billing(request: GPUClusterCreateRequest) -> None:
    if request.billing_type == "SCHEDULED_CAPACITY":
        start, end = request.reservation_start_time, request.reservation_end_time
        if start is None or end is None:
            raise InvalidRequest(
                "billing_type SCHEDULED_CAPACITY requires both `reservation_start_time` and "
                "`reservation_end_time`"
            )
        if end <= start:
            raise InvalidRequest("`reservation_end_time` must be after `reservation_start_time`")
    if request.duration_days is not None and request.duration_days <= 0:
        raise InvalidRequest(f"`duration_days` must be positive (got {request.duration_days})")


def check_add_on_names(names: list[str]) -> None:
    """Add-on names identify add-ons (the update finds them by name): non-empty and unique."""
    if any(not name.strip() for name in names):
        raise InvalidRequest("`add_ons[].name` must not be empty")
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        raise InvalidRequest(f"`add_ons[].name` must be unique (repeated: {duplicates[0]!r})")


def check_cluster_config(body: object) -> None:
    """`cluster_config`, when sent, carries its required `load_balancer`: the wire model reads
    it leniently (an answer may omit it), a request may not."""
    config = body.get("cluster_config") if isinstance(body, dict) else None
    if isinstance(config, dict) and "load_balancer" not in config:
        raise InvalidRequest(
            "`cluster_config.load_balancer` is required ("
            + ", ".join(LoadBalancer)
            + "); the rest of `cluster_config` is merged into the current one"
        )


def _check_load_balancer(config: InstanceClusterConfig | None) -> None:
    # The wire model reads load_balancer as free text (tolerant reads); requests are strict.
    if config is not None and config.load_balancer not in list(LoadBalancer):
        raise InvalidRequest(
            f"`cluster_config.load_balancer` {config.load_balancer!r} is not one of "
            + ", ".join(LoadBalancer)
        )


def _check_shared_volume(request: GPUClusterCreateRequest) -> None:
    volume = request.shared_volume
    if volume is None:
        return
    if request.volume_id is not None:
        raise InvalidRequest("give `shared_volume` or `volume_id`, not both")
    if volume.size_tib <= 0:
        raise InvalidRequest(f"`shared_volume.size_tib` must be positive (got {volume.size_tib})")
    if volume.region != request.region:
        raise InvalidRequest(
            f"`shared_volume.region` {volume.region!r} must be the cluster's region "
            f"{request.region!r}"
        )


def validate_create(
    body: object, catalog: Catalog
) -> tuple[GPUClusterCreateRequest, ClusterDriverVersionInfo]:
    """Parse and check a create request; return it with the driver entry it selects."""
    check_cluster_config(body)
    request = parse(GPUClusterCreateRequest, body)
    if not request.cluster_name.strip():
        raise InvalidRequest("`cluster_name` must not be empty")
    _check_num_gpus(request.num_gpus)
    _check_gpu_count("num_preemptible_gpus", request.num_preemptible_gpus)
    _check_gpu_count("num_reserved_gpus", request.num_reserved_gpus)
    _check_gpu_count(
        "num_capacity_pool_gpus", request.num_capacity_pool_gpus, limit=request.num_gpus
    )
    if (request.num_capacity_pool_gpus or 0) > 0 and not request.capacity_pool_id:
        raise InvalidRequest("`num_capacity_pool_gpus` requires `capacity_pool_id`")
    if request.cluster_type == "SLURM" and (request.slurm_shm_size_gib or 0) <= 0:
        raise InvalidRequest("cluster_type SLURM requires a positive `slurm_shm_size_gib`")
    _check_billing(request)
    if request.auto_scale or request.auto_scaled:
        maximum = request.auto_scale_max_gpus
        if maximum is None or maximum < request.num_gpus or maximum % GPUS_PER_NODE:
            raise InvalidRequest(
                "auto-scaling requires `auto_scale_max_gpus`, a multiple of 8 not below `num_gpus`"
            )
    _check_region_offer(request, catalog)
    driver = resolve_driver(request, catalog)
    _check_shared_volume(request)
    _check_load_balancer(request.cluster_config)
    check_add_on_names([a.name for a in request.add_ons or []])
    return request, driver


def validate_update(
    body: object, cluster: GPUClusterInfo, *, add_on_names: set[str]
) -> GPUClusterUpdateRequest:
    """Parse and check an update of `cluster` (its current view; `add_on_names` are all its
    add-ons, disabled ones included); return the parsed request."""
    check_cluster_config(body)
    update = parse(GPUClusterUpdateRequest, body)
    if cluster.status == ClusterStatus.DELETING:
        raise Conflict(
            f"cluster {cluster.cluster_id} is being deleted (status Deleting); "
            "it can no longer be updated"
        )
    if update.cluster_type is not None and update.cluster_type != cluster.cluster_type:
        raise InvalidRequest(
            f"`cluster_type` cannot be changed (cluster {cluster.cluster_id} is "
            f"{cluster.cluster_type})"
        )
    _check_load_balancer(update.cluster_config)
    num_gpus = cluster.num_gpus if update.num_gpus is None else update.num_gpus
    _check_num_gpus(num_gpus)
    _check_gpu_count("num_preemptible_gpus", update.num_preemptible_gpus)
    _check_gpu_count("num_capacity_pool_gpus", update.num_capacity_pool_gpus, limit=num_gpus)
    _check_gpu_count("num_reserved_gpus", update.num_reserved_gpus)
    if update.num_capacity_pool_gpus is not None and not cluster.capacity_pool_id:
        raise InvalidRequest(
            "`num_capacity_pool_gpus` is only valid for clusters created with a `capacity_pool_id`"
        )
    if update.num_reserved_gpus is not None and cluster.billing_type != "RESERVED":
        raise InvalidRequest("`num_reserved_gpus` only applies to RESERVED clusters")
    if update.reservation_end_time is not None:
        if cluster.billing_type not in _PREPAID_BILLING:
            raise InvalidRequest(
                "`reservation_end_time` is only accepted for prepaid clusters "
                "(RESERVED or SCHEDULED_CAPACITY)"
            )
        start = cluster.reservation_start_time
        if start is not None and update.reservation_end_time <= start:
            raise InvalidRequest("`reservation_end_time` must be after `reservation_start_time`")
    for add_on in update.add_ons or []:
        if add_on.name not in add_on_names:
            raise InvalidRequest(
                f"`add_ons[].name` {add_on.name!r} is not an add-on of cluster {cluster.cluster_id}"
            )
    return update


def validate_volume_create(body: object, catalog: Catalog) -> GPUClustersSharedVolumeCreateRequest:
    """Parse and check a shared-volume create request."""
    request = parse(GPUClustersSharedVolumeCreateRequest, body)
    if not request.volume_name.strip():
        raise InvalidRequest("`volume_name` must not be empty")
    if request.size_tib <= 0:
        raise InvalidRequest(f"`size_tib` must be positive (got {request.size_tib})")
    if catalog.region(request.region) is None:
        names = ", ".join(r.name for r in catalog.regions)
        raise InvalidRequest(f"`region` {request.region!r} is unknown; regions: {names}")
    return request


def validate_volume_update(body: object) -> GPUClustersSharedVolumeUpdateRequest:
    """Parse and check a shared-volume update (whether it shrinks is the store's check)."""
    request = parse(GPUClustersSharedVolumeUpdateRequest, body)
    if request.size_tib is not None and request.size_tib <= 0:
        raise InvalidRequest(f"`size_tib` must be positive (got {request.size_tib})")
    return request
