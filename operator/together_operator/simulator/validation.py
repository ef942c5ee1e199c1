"""Request validation as the real service does it: pure functions that raise `InvalidRequest`
(or `Conflict`) with a message naming the offending field, and return the parsed request.

Unknown request fields are ignored, as the real service does.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Final, TypeVar

from pydantic import ValidationError

from together_operator.simulator.catalog import Catalog
from together_operator.simulator.errors import Conflict, InvalidRequest
from together_operator.together.models import (
    ClusterDriverVersionInfo,
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GPUClustersSharedVolumeCreateRequest,
    GPUClustersSharedVolumeUpdateRequest,
    GPUClusterUpdateRequest,
    InstanceClusterConfig,
    WireModel,
)

GPUS_PER_NODE: Final = 8
ADD_ON_TYPES: Final = ("dashboard", "ingress", "torchpass", "headlamp", "slurm_web")
# "Prepaid" clusters: the only ones whose decommission time may be changed.
_PREPAID_BILLING: Final = ("RESERVED", "SCHEDULED_CAPACITY")

Request = TypeVar("Request", bound=WireModel)


def parse(model: type[Request], body: object) -> Request:
    """`body` (decoded JSON) as `model`, or `InvalidRequest` naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object ({model.__name__})")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(body)"
        if first["type"] == "missing":
            raise InvalidRequest(f"invalid {model.__name__}: `{field}` is required") from None
        shown = repr(first.get("input"))[:80]
        raise InvalidRequest(
            f"invalid {model.__name__}: `{field}`: {first['msg']} (got {shown})"
        ) from None


def _utc(moment: datetime | None) -> datetime | None:
    """`moment` as aware UTC; a time without an offset is taken to be UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_gpu_count(field: str, value: int | None, *, limit: int | None = None) -> None:
    """`value` is a non-negative multiple of 8 and, when `limit` is given, at most `limit`."""
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
    if request.billing_type == "RESERVED" and (request.duration_days or 0) <= 0:
        raise InvalidRequest("billing_type RESERVED requires a positive `duration_days`")


def _check_add_ons(names: list[str], types: list[str]) -> None:
    for add_on_type in types:
        if add_on_type not in ADD_ON_TYPES:
            raise InvalidRequest(
                f"`add_ons[].add_on_type` {add_on_type!r} is unknown; known: "
                + ", ".join(ADD_ON_TYPES)
            )
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        raise InvalidRequest(f"`add_ons[].name` must be unique (repeated: {duplicates[0]!r})")


LOAD_BALANCERS = ("NONE", "TRAEFIK", "NGINX", "ISTIO")


def _check_cluster_config(config: InstanceClusterConfig | None) -> None:
    # The wire model reads load_balancer as free text (tolerant reads); requests are strict.
    if config is not None and config.load_balancer not in LOAD_BALANCERS:
        raise InvalidRequest(
            f"`cluster_config.load_balancer` {config.load_balancer!r} is not one of "
            + ", ".join(LOAD_BALANCERS)
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
    request = parse(GPUClusterCreateRequest, body)
    request.reservation_start_time = _utc(request.reservation_start_time)
    request.reservation_end_time = _utc(request.reservation_end_time)
    if not request.cluster_name.strip():
        raise InvalidRequest("`cluster_name` must not be empty")
    _check_num_gpus(request.num_gpus)
    for field in ("num_preemptible_gpus", "num_capacity_pool_gpus", "num_reserved_gpus"):
        _check_gpu_count(field, getattr(request, field), limit=request.num_gpus)
    if (request.num_capacity_pool_gpus or 0) > 0 and not request.capacity_pool_id:
        raise InvalidRequest("`num_capacity_pool_gpus` requires `capacity_pool_id`")
    if (request.num_reserved_gpus or 0) + (request.num_capacity_pool_gpus or 0) > request.num_gpus:
        raise InvalidRequest(
            "`num_reserved_gpus` + `num_capacity_pool_gpus` must not exceed `num_gpus`"
        )
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
    _check_cluster_config(request.cluster_config)
    add_ons = request.add_ons or []
    _check_add_ons([a.name for a in add_ons], [a.add_on_type for a in add_ons])
    return request, driver


def validate_update(body: object, cluster: GPUClusterInfo) -> GPUClusterUpdateRequest:
    """Parse and check an update of `cluster` (its current view); return the parsed request."""
    update = parse(GPUClusterUpdateRequest, body)
    update.reservation_end_time = _utc(update.reservation_end_time)
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
    _check_cluster_config(update.cluster_config)
    num_gpus = cluster.num_gpus if update.num_gpus is None else update.num_gpus
    _check_num_gpus(num_gpus)
    preemptible = update.num_preemptible_gpus
    _check_gpu_count("num_preemptible_gpus", preemptible, limit=num_gpus)
    _check_gpu_count("num_capacity_pool_gpus", update.num_capacity_pool_gpus, limit=num_gpus)
    _check_gpu_count("num_reserved_gpus", update.num_reserved_gpus, limit=num_gpus)
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
    existing = {add_on.name for add_on in cluster.add_ons}
    for add_on in update.add_ons or []:
        if add_on.name not in existing:
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
