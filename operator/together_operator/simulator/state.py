"""The simulated cloud: clusters, shared volumes and stock, advanced lazily from a clock.

Every public method first applies, in time order, each step that fell due since the last
call (at the step's own instant), then does its work. The optional state file is rewritten
atomically after every change, so clusters and volumes survive a restart.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel, Field

from together_operator.simulator import lifecycle, validation
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.clock import Clock
from together_operator.simulator.errors import Conflict, InvalidRequest, NotFound
from together_operator.simulator.lifecycle import ClusterRecord, Timings
from together_operator.together.models import (
    AddOnConfig,
    AddOnInfo,
    AddOnState,
    ClusterPhase,
    ClusterStatus,
    GPUClusterDeleteResponse,
    GPUClusterInfo,
    GPUClusters,
    GPUClustersSharedVolume,
    GPUClustersSharedVolumeDeleteResponse,
    GPUClustersSharedVolumes,
    GPUClusterVolume,
    RegionListResponse,
    SharedVolumeStatus,
)

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_ID: Final = "sim-project"


class VolumeRecord(BaseModel):
    """A shared volume and what the simulator needs to know about it."""

    volume: GPUClustersSharedVolume
    region: str
    project_id: str
    deleted: bool = False
    # Created inline with a cluster, and not lifecycle-independent: goes when the cluster goes.
    owned_by_cluster_id: str | None = None


class Snapshot(BaseModel):
    """What the state file holds."""

    clusters: list[ClusterRecord] = Field(default_factory=list)
    volumes: list[VolumeRecord] = Field(default_factory=list)


class ClusterSummary(BaseModel):
    """A cluster as the admin API lists it, deleted ones included."""

    cluster: GPUClusterInfo
    deleted: bool
    deleted_at: datetime | None = None


class CloudState:
    """The simulated Together cloud behind the API."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        clock: Clock,
        timings: Timings | None = None,
        state_file: Path | None = None,
        tenant_kubeconfig: str | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.timings = timings or Timings()
        self._state_file = state_file
        self._tenant_kubeconfig = tenant_kubeconfig
        self._new_id = new_id
        self._clusters: dict[str, ClusterRecord] = {}
        self._volumes: dict[str, VolumeRecord] = {}
        if state_file is not None and state_file.exists():
            snapshot = Snapshot.model_validate_json(state_file.read_text())
            self._clusters = {r.cluster_id: r for r in snapshot.clusters}
            self._volumes = {v.volume.volume_id: v for v in snapshot.volumes}
            logger.info(
                "loaded %d clusters and %d volumes from %s",
                len(self._clusters),
                len(self._volumes),
                state_file,
            )

    # --- time --------------------------------------------------------------------------------

    def advance(self) -> datetime:
        """Apply every step due by now, each at its own instant; return now."""
        now = self.clock.now()
        changed = False
        while True:
            due = [(r.next_due(), r.sequence, r) for r in self._clusters.values()]
            pending = [(at, seq, r) for at, seq, r in due if at is not None and at <= now]
            if not pending:
                break
            at, _, record = min(pending, key=lambda item: (item[0], item[1]))
            self._apply_due(record, at)
            self._schedule_preemptible(at)
            changed = True
        if changed:
            self._save()
        return now

    def _apply_due(self, record: ClusterRecord, at: datetime) -> None:
        if record.gone_at is not None and record.gone_at <= at:
            record.deleted = True
            record.plan.clear()
            record.next_preemptible_step_at = None
            for volume in self._volumes.values():
                if volume.owned_by_cluster_id == record.cluster_id:
                    volume.deleted = True
            return
        if record.plan and record.plan[0].at <= at:
            step = record.plan.pop(0)
            lifecycle.enter_phase(record, step.phase, step.at)
            return
        record.next_preemptible_step_at = None
        lifecycle.step_preemptible(record, at, self._free_preemptible(record))

    def _schedule_preemptible(self, at: datetime) -> None:
        """Arm the next preemptible step of every cluster that needs one and can take it."""
        for record in self._clusters.values():
            if record.next_preemptible_step_at is not None:
                continue
            if not lifecycle.wants_preemptible_step(record):
                continue
            info = record.info
            growing = info.allocated_preemptible_gpus < info.desired_preemptible_gpus
            if growing and self._free_preemptible(record) < lifecycle.GPUS_PER_NODE:
                continue  # capped by stock until some is freed
            record.next_preemptible_step_at = self.timings.after(at, self.timings.preemptible_step)

    def _live(self) -> list[ClusterRecord]:
        return [r for r in self._clusters.values() if not r.deleted]

    def _used_gpus(self, region: str, gpu_type: str, *, excluding: str = "") -> int:
        return sum(
            r.info.num_gpus
            for r in self._live()
            if r.info.region == region and r.info.gpu_type == gpu_type and r.cluster_id != excluding
        )

    def _free_preemptible(self, record: ClusterRecord) -> int:
        info = record.info
        used = sum(
            r.info.allocated_preemptible_gpus
            for r in self._live()
            if r.info.region == info.region and r.info.gpu_type == info.gpu_type
        )
        return self.catalog.stock_of(info.region, info.gpu_type).preemptible_gpus - used

    def _check_stock(self, region: str, gpu_type: str, gpus: int, *, excluding: str = "") -> None:
        stock = self.catalog.stock_of(region, gpu_type).gpus
        free = stock - self._used_gpus(region, gpu_type, excluding=excluding)
        if gpus > free:
            raise Conflict(
                f"Out of stock: {gpus} {gpu_type} GPUs requested in {region}, "
                f"{max(free, 0)} available; try fewer GPUs, another region, or later"
            )

    # --- clusters ----------------------------------------------------------------------------

    def list_clusters(self, project_id: str | None = None) -> GPUClusters:
        """Live clusters (Deleting included), optionally of one project."""
        self.advance()
        return GPUClusters(
            clusters=[
                self._view(r)
                for r in self._live()
                if project_id is None or r.info.project_id == project_id
            ]
        )

    def get_cluster(self, cluster_id: str) -> GPUClusterInfo:
        """One live cluster."""
        self.advance()
        return self._view(self._record(cluster_id))

    def create_cluster(self, body: object) -> GPUClusterInfo:
        """Validate a create request, reserve stock and start the lifecycle."""
        now = self.advance()
        request, driver = validation.validate_create(body, self.catalog)
        self._check_stock(request.region, request.gpu_type, request.num_gpus)
        if request.volume_id is not None:
            volume = self._volume(request.volume_id)
            if volume.region != request.region:
                raise InvalidRequest(
                    f"`volume_id` {request.volume_id} is in region {volume.region!r}, "
                    f"not {request.region!r}"
                )
        cluster_id = self._new_id()
        volume_ids = [request.volume_id] if request.volume_id else []
        if request.shared_volume is not None:
            inline = self._add_volume(
                request.shared_volume.volume_name,
                request.shared_volume.size_tib,
                request.region,
                request.shared_volume.project_id or request.project_id or DEFAULT_PROJECT_ID,
            )
            if not request.shared_volume.is_lifecycle_independent:
                inline.owned_by_cluster_id = cluster_id
            volume_ids.append(inline.volume.volume_id)
        name = request.cluster_name
        info = GPUClusterInfo(
            cluster_id=cluster_id,
            cluster_name=name,
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
            project_id=request.project_id or DEFAULT_PROJECT_ID,
            desired_preemptible_gpus=request.num_preemptible_gpus or 0,
            num_capacity_pool_gpus=request.num_capacity_pool_gpus or 0,
            num_reserved_gpus=request.num_reserved_gpus
            if request.num_reserved_gpus is not None
            else (request.num_gpus if request.billing_type == "RESERVED" else 0),
            duration_hours=request.duration_days * 24 if request.duration_days else None,
            slurm_shm_size_gib=request.slurm_shm_size_gib,
            capacity_pool_id=request.capacity_pool_id,
            reservation_start_time=request.reservation_start_time,
            reservation_end_time=request.reservation_end_time,
            install_traefik=request.install_traefik or False,
            created_at=now,
            oidc_config=request.oidc_config,
            cluster_config=request.cluster_config,
            add_ons=[
                AddOnInfo(
                    name=a.name,
                    add_on_type=a.add_on_type,
                    config=a.config or AddOnConfig(),
                    state=AddOnState(),
                )
                for a in request.add_ons or []
            ],
            control_plane_ready=False,
            machine_cluster_id=f"mc-{cluster_id[:8]}",
            node_lifecycle_events=[],
            deleted_gpu_worker_nodes=[],
        )
        kubeconfig = self._tenant_kubeconfig or lifecycle.generated_kubeconfig(cluster_id, name)
        record = ClusterRecord(
            info=info,
            sequence=len(self._clusters),
            plan=lifecycle.plan_creation(now, self.timings, request.reservation_start_time),
            volume_ids=volume_ids,
            kube_config_on_ready=lifecycle.encode_kubeconfig(kubeconfig),
        )
        self._clusters[cluster_id] = record
        self.advance()
        self._save()
        logger.info("created cluster %s (%s)", cluster_id, name)
        return self._view(record)

    def update_cluster(self, cluster_id: str, body: object) -> GPUClusterInfo:
        """Apply an update with merge semantics: omitted fields keep their value."""
        now = self.advance()
        record = self._record(cluster_id)
        info = record.info
        update = validation.validate_update(body, info)
        if update.num_gpus is not None and update.num_gpus > info.num_gpus:
            self._check_stock(info.region, info.gpu_type, update.num_gpus, excluding=cluster_id)
        if update.num_gpus is not None and update.num_gpus != info.num_gpus:
            info.num_gpus = update.num_gpus
            if info.status in (ClusterStatus.READY, ClusterStatus.DEGRADED):
                record.plan = lifecycle.plan_scaling(now, self.timings)
        if update.num_preemptible_gpus is not None:
            info.desired_preemptible_gpus = update.num_preemptible_gpus
        if update.num_capacity_pool_gpus is not None:
            info.num_capacity_pool_gpus = update.num_capacity_pool_gpus
        if update.num_reserved_gpus is not None:
            info.num_reserved_gpus = update.num_reserved_gpus
        if update.reservation_end_time is not None:
            info.reservation_end_time = update.reservation_end_time
        if update.cluster_config is not None:
            info.cluster_config = update.cluster_config
        for change in update.add_ons or []:
            add_on = next(a for a in info.add_ons if a.name == change.name)
            if change.config is not None:
                merged = add_on.config.model_dump(exclude_none=True)
                merged.update(change.config.model_dump(exclude_none=True))
                add_on.config = AddOnConfig.model_validate(merged)
        self._schedule_preemptible(now)
        self.advance()
        self._save()
        return self._view(record)

    def delete_cluster(self, cluster_id: str) -> GPUClusterDeleteResponse:
        """Start deleting a cluster: Deleting now, gone (404) after the deletion delay."""
        now = self.advance()
        record = self._record(cluster_id)
        if record.info.status != ClusterStatus.DELETING:
            record.plan.clear()
            record.next_preemptible_step_at = None
            lifecycle.enter_phase(record, ClusterPhase.DELETING, now)
            record.gone_at = self.timings.after(now, self.timings.deleting)
            self._save()
        return GPUClusterDeleteResponse(cluster_id=cluster_id)

    def _record(self, cluster_id: str) -> ClusterRecord:
        record = self._clusters.get(cluster_id)
        if record is None or record.deleted:
            raise NotFound(f"cluster {cluster_id} not found")
        return record

    def _view(self, record: ClusterRecord) -> GPUClusterInfo:
        volumes = [
            GPUClusterVolume(
                volume_id=v.volume.volume_id,
                volume_name=v.volume.volume_name,
                size_tib=v.volume.size_tib,
                status=self._volume_status(v),
            )
            for v in (self._volumes.get(i) for i in record.volume_ids)
            if v is not None and not v.deleted
        ]
        return record.info.model_copy(update={"volumes": volumes}, deep=True)

    # --- regions -----------------------------------------------------------------------------

    def regions(self) -> RegionListResponse:
        """The regions on offer."""
        return self.catalog.region_list()

    # --- shared volumes ----------------------------------------------------------------------

    def create_volume(self, body: object) -> GPUClustersSharedVolume:
        """Create a shared volume; it is available at once."""
        self.advance()
        request = validation.validate_volume_create(body, self.catalog)
        record = self._add_volume(
            request.volume_name,
            request.size_tib,
            request.region,
            request.project_id or DEFAULT_PROJECT_ID,
        )
        self._save()
        return self._volume_view(record)

    def get_volume(self, volume_id: str) -> GPUClustersSharedVolume:
        """One shared volume."""
        self.advance()
        return self._volume_view(self._volume(volume_id))

    def list_volumes(self, project_id: str | None = None) -> GPUClustersSharedVolumes:
        """Shared volumes, optionally of one project."""
        self.advance()
        return GPUClustersSharedVolumes(
            volumes=[
                self._volume_view(v)
                for v in self._volumes.values()
                if not v.deleted and (project_id is None or v.project_id == project_id)
            ]
        )

    def update_volume(self, body: object) -> GPUClustersSharedVolume:
        """Resize a shared volume (volumes grow, never shrink)."""
        self.advance()
        request = validation.validate_volume_update(body)
        record = self._volume(request.volume_id)
        if request.size_tib is not None:
            if request.size_tib < record.volume.size_tib:
                raise InvalidRequest(
                    f"`size_tib` cannot shrink volume {request.volume_id} "
                    f"({record.volume.size_tib} TiB -> {request.size_tib} TiB)"
                )
            record.volume.size_tib = request.size_tib
        self._save()
        return self._volume_view(record)

    def delete_volume(self, volume_id: str) -> GPUClustersSharedVolumeDeleteResponse:
        """Delete a shared volume, unless a live cluster uses it."""
        self.advance()
        record = self._volume(volume_id)
        users = [r.cluster_id for r in self._live() if volume_id in r.volume_ids]
        if users:
            raise Conflict(
                f"volume {volume_id} is attached to cluster {users[0]}; delete the cluster "
                "(and wait until it is gone) before deleting the volume"
            )
        record.deleted = True
        self._save()
        return GPUClustersSharedVolumeDeleteResponse(success=True)

    def _add_volume(self, name: str, size_tib: int, region: str, project_id: str) -> VolumeRecord:
        volume_id = self._new_id()
        record = VolumeRecord(
            volume=GPUClustersSharedVolume(
                volume_id=volume_id,
                volume_name=name,
                size_tib=size_tib,
                status=SharedVolumeStatus.AVAILABLE,
            ),
            region=region,
            project_id=project_id,
        )
        self._volumes[volume_id] = record
        return record

    def _volume(self, volume_id: str) -> VolumeRecord:
        record = self._volumes.get(volume_id)
        if record is None or record.deleted:
            raise NotFound(f"volume {volume_id} not found")
        return record

    def _volume_status(self, record: VolumeRecord) -> str:
        attached = any(record.volume.volume_id in r.volume_ids for r in self._live())
        return SharedVolumeStatus.BOUND if attached else SharedVolumeStatus.AVAILABLE

    def _volume_view(self, record: VolumeRecord) -> GPUClustersSharedVolume:
        return record.volume.model_copy(update={"status": self._volume_status(record)})

    # --- admin -------------------------------------------------------------------------------

    def all_clusters(self) -> list[ClusterSummary]:
        """Every cluster the simulator has seen, deleted ones included."""
        self.advance()
        return [
            ClusterSummary(
                cluster=self._view(r),
                deleted=r.deleted,
                deleted_at=r.gone_at if r.deleted else None,
            )
            for r in self._clusters.values()
        ]

    def force_phase(self, cluster_id: str, phase: str) -> GPUClusterInfo:
        """Put a cluster into `phase` now (Degraded, failed acceptance tests, or Ready),
        dropping whatever it had planned."""
        now = self.advance()
        if phase not in lifecycle.FORCEABLE_PHASES:
            raise InvalidRequest(
                f"`phase` must be one of {', '.join(lifecycle.FORCEABLE_PHASES)} (got {phase!r})"
            )
        record = self._record(cluster_id)
        if record.info.status == ClusterStatus.DELETING:
            raise Conflict(f"cluster {cluster_id} is being deleted")
        record.plan.clear()
        lifecycle.enter_phase(record, phase, now)
        self._schedule_preemptible(now)
        self._save()
        return self._view(record)

    def preempt(self, cluster_id: str, gpus: int | None) -> GPUClusterInfo:
        """Reclaim allocated preemptible GPUs of a cluster (all of them when `gpus` is None);
        the cluster then tries to win them back one step at a time."""
        now = self.advance()
        record = self._record(cluster_id)
        lifecycle.preempt(
            record, record.info.allocated_preemptible_gpus if gpus is None else gpus, now
        )
        record.next_preemptible_step_at = None
        self._schedule_preemptible(now)
        self._save()
        return self._view(record)

    def set_stock(
        self, region: str, gpu_type: str, *, gpus: int | None, preemptible_gpus: int | None
    ) -> dict[str, int]:
        """Change the stock of one (region, GPU type); preemptible GPUs above the new stock
        are reclaimed from clusters, newest first."""
        now = self.advance()
        stock = self.catalog.set_stock(
            region, gpu_type, gpus=gpus, preemptible_gpus=preemptible_gpus
        )
        holders = sorted(
            (r for r in self._live() if r.info.region == region and r.info.gpu_type == gpu_type),
            key=lambda r: r.sequence,
            reverse=True,
        )
        excess = sum(r.info.allocated_preemptible_gpus for r in holders) - stock.preemptible_gpus
        for record in holders:
            if excess <= 0:
                break
            excess -= lifecycle.preempt(record, excess, now)
        self._schedule_preemptible(now)
        self._save()
        return {"gpus": stock.gpus, "preemptible_gpus": stock.preemptible_gpus}

    # --- persistence -------------------------------------------------------------------------

    def _save(self) -> None:
        if self._state_file is None:
            return
        snapshot = Snapshot(
            clusters=list(self._clusters.values()), volumes=list(self._volumes.values())
        )
        directory = self._state_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a crash leaves either the old file or the new one, never half.
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".simulator-state-")
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(snapshot.model_dump_json())
            os.replace(temporary, self._state_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
