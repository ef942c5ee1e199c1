"""The simulated cloud: clusters (with their add-ons, remediations and alerts), shared volumes
and stock, advanced lazily from a clock.

Every public method first applies, in time order, each step that fell due since the last
call (at the step's own instant), then does its work. A request that fails changes nothing:
every check comes before the first change. The optional state file is rewritten atomically
after every change, so clusters and volumes survive a restart.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import tempfile
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Final, TypeVar

from multidict import MultiMapping
from pydantic import BaseModel, Field

from together_operator.simulator import (
    addons,
    alerts,
    clusters,
    lifecycle,
    remediations,
    validation,
)
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.clock import Clock
from together_operator.simulator.errors import Conflict, InvalidRequest, NotFound, OutOfStock
from together_operator.simulator.lifecycle import ClusterRecord, Timings
from together_operator.simulator.volumes import VolumeRecord, VolumeStore
from together_operator.together.health import ListPassiveHealthCheckAlertsResponse
from together_operator.together.models import (
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
)

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_ID: Final = "sim-project"
DEFAULT_ACCOUNT: Final = "default"
#: The account of the API request being served (set by the app from its key); None for the
#: admin API, which sees every account.
caller_account: ContextVar[str | None] = ContextVar("caller_account", default=None)
# Phases during which an inline shared volume is still being made.
_BEFORE_VOLUME: Final = frozenset(
    {
        ClusterPhase.SCHEDULED,
        ClusterPhase.QUEUED,
        ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES,
        ClusterPhase.WAITING_FOR_DATA_PLANE_NODES,
        ClusterPhase.WAITING_FOR_SUBNET,
        ClusterPhase.WAITING_FOR_SHARED_VOLUME,
    }
)
Result = TypeVar("Result")
ClusterAction = Callable[[ClusterRecord, datetime], Result]


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
        list_scope: str = "account",
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.timings = timings or Timings()
        self._state_file = state_file
        self._tenant_kubeconfig = tenant_kubeconfig
        self._new_id = new_id
        #: "account": an unfiltered List shows every project of the account;
        #: "default-project": only the key's default project (see the deviations).
        self.list_scope = list_scope
        snapshot = Snapshot()
        if state_file is not None and state_file.exists():
            snapshot = Snapshot.model_validate_json(state_file.read_text())
            logger.info(
                "loaded %d clusters and %d volumes from %s",
                len(snapshot.clusters),
                len(snapshot.volumes),
                state_file,
            )
        self._clusters: dict[str, ClusterRecord] = {r.cluster_id: r for r in snapshot.clusters}
        self.volumes = VolumeStore(snapshot.volumes, new_id)

    # --- time --------------------------------------------------------------------------------

    def advance(self) -> datetime:
        """Apply every step due by now, each at its own instant (earliest first, then in
        creation order); return now.

        A heap of due steps, not a recomputation of every cluster's next step per step
        applied: with a thousand clusters changing phase together, that made a request take
        hundreds of milliseconds. Arming preemptible steps still looks at every cluster after
        each step, a cheap check per cluster."""
        now = self.clock.now()
        due: list[tuple[datetime, int, int, ClusterRecord]] = []
        pushed = itertools.count()

        def push(record: ClusterRecord) -> None:
            at = record.next_due()
            if at is not None and at <= now:
                heapq.heappush(due, (at, record.sequence, next(pushed), record))

        for record in self._clusters.values():
            push(record)
        changed = False
        while due:
            at, _, _, record = heapq.heappop(due)
            if record.next_due() != at:
                continue  # superseded: its current step was pushed when it was scheduled
            self._apply_due(record, at)
            changed = True
            push(record)
            for armed in self._schedule_preemptible(at):
                push(armed)
        if changed:
            self._save()
        return now

    def _apply_due(self, record: ClusterRecord, at: datetime) -> None:
        if record.gone_at is not None and record.gone_at <= at:
            record.deleted = True
            record.plan.clear()
            record.next_preemptible_step_at = None
            for volume in self.volumes.records.values():
                if volume.owned_by_cluster_id == record.cluster_id:
                    volume.deleted = True
            return
        if record.plan and record.plan[0].at <= at:
            step = record.plan.pop(0)
            self._enter_phase(record, step.phase, step.at)
            return
        if remediations.apply_due(record, at, self.timings):
            return
        record.next_preemptible_step_at = None
        lifecycle.step_preemptible(record, at, self._free_preemptible(record))

    def _enter_phase(self, record: ClusterRecord, phase: str, at: datetime) -> None:
        lifecycle.enter_phase(record, phase, at)
        if phase not in _BEFORE_VOLUME:
            for volume_id in record.volume_ids:
                self.volumes.records[volume_id].provisioning = False

    def _schedule_preemptible(self, at: datetime) -> list[ClusterRecord]:
        """Arm the next preemptible step of every cluster that needs one and can take it;
        the clusters armed."""
        armed = []
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
            armed.append(record)
        return armed

    def _live(self) -> list[ClusterRecord]:
        return [r for r in self._clusters.values() if not r.deleted]

    def _visible(self) -> list[ClusterRecord]:
        """Live clusters of the caller's account (every account for the admin API)."""
        account = caller_account.get()
        return [r for r in self._live() if account is None or r.account == account]

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
            raise OutOfStock(
                f"Out of stock: {gpus} {gpu_type} GPUs requested in {region}, "
                f"{max(free, 0)} available; try fewer GPUs, another region, or later",
                region=region,
                gpu_type=gpu_type,
                available_gpus=str(max(free, 0)),
            )

    # --- clusters ----------------------------------------------------------------------------

    def list_clusters(self, project_id: str | None = None) -> GPUClusters:
        """Live clusters (Deleting included), optionally of one project."""
        self.advance()
        if project_id is None and self.list_scope == "default-project":
            project_id = DEFAULT_PROJECT_ID  # the key's default project (a deviation option)
        return GPUClusters(
            clusters=[
                self._view(r)
                for r in self._visible()
                if project_id is None or r.info.project_id == project_id
            ]
        )

    def get_cluster(self, cluster_id: str) -> GPUClusterInfo:
        """One live cluster."""
        self.advance()
        return self._view(self._record(cluster_id))

    def create_cluster(self, body: object) -> GPUClusterInfo:
        """Validate a create request, reserve stock and start the lifecycle. Every check comes
        before the first change, so a refused create leaves nothing behind (no volume)."""
        now = self.advance()
        request, driver = validation.validate_create(body, self.catalog)
        self._check_stock(request.region, request.gpu_type, request.num_gpus)
        if request.volume_id is not None:
            volume = self.volumes.find(request.volume_id)
            if volume.region != request.region:
                raise InvalidRequest(
                    f"`volume_id` {request.volume_id} is in region {volume.region!r}, "
                    f"not {request.region!r}"
                )
        cluster_id = self._new_id()
        project_id = request.project_id or DEFAULT_PROJECT_ID
        volume_ids = [request.volume_id] if request.volume_id else []
        inline: VolumeRecord | None = None
        if request.shared_volume is not None:
            shared = request.shared_volume
            inline = self.volumes.new(
                shared.volume_name,
                shared.size_tib,
                request.region,
                shared.project_id or project_id,
                inline=True,
            )
            if not shared.is_lifecycle_independent:
                inline.owned_by_cluster_id = cluster_id
            volume_ids.append(inline.volume.volume_id)
        name = request.cluster_name
        info = clusters.new_cluster_info(request, driver, cluster_id, project_id, now)
        kubeconfig = self._tenant_kubeconfig or lifecycle.generated_kubeconfig(cluster_id, name)
        record = ClusterRecord(
            info=info,
            sequence=len(self._clusters),
            account=caller_account.get() or DEFAULT_ACCOUNT,
            plan=lifecycle.plan_creation(
                now, self.timings, request.reservation_start_time, shared_volume=bool(volume_ids)
            ),
            volume_ids=volume_ids,
            kube_config_on_ready=lifecycle.encode_kubeconfig(kubeconfig),
            add_ons=[addons.from_request(a) for a in request.add_ons or []],
        )
        # Nothing above changed the cloud; from here on nothing can fail.
        if inline is not None:
            self.volumes.add(inline)
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
        names = {a.name for a in record.add_ons}
        update = validation.validate_update(body, info, add_on_names=names)
        if update.num_gpus is not None and update.num_gpus > info.num_gpus:
            self._check_stock(info.region, info.gpu_type, update.num_gpus, excluding=cluster_id)
        clusters.apply_update(record, update, now, self.timings)
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

    def on_cluster(
        self, cluster_id: str, action: ClusterAction[Result], *, changes: bool
    ) -> Result:
        """Run `action` on a live cluster's record at the current time (saving after, when it
        `changes` anything): the add-on, remediation and alert operations go through here."""
        now = self.advance()
        result = action(self._record(cluster_id), now)
        if changes:
            self._save()
        return result

    def _record(self, cluster_id: str) -> ClusterRecord:
        record = self._clusters.get(cluster_id)
        account = caller_account.get()
        if record is None or record.deleted or account not in (None, record.account):
            raise NotFound(f"cluster {cluster_id} not found")
        return record

    def _view(self, record: ClusterRecord) -> GPUClusterInfo:
        volumes = [
            GPUClusterVolume(
                volume_id=v.volume.volume_id,
                volume_name=v.volume.volume_name,
                size_tib=v.volume.size_tib,
                status=self._volume_view(v).status,
            )
            for v in (self.volumes.records.get(i) for i in record.volume_ids)
            if v is not None and not v.deleted
        ]
        shown = {"volumes": volumes, "add_ons": addons.enabled_views(record.add_ons, record.info)}
        info = record.info.model_copy(update=shown, deep=True)
        for node in info.gpu_worker_nodes:
            if node.instance_id:
                node.latest_remediation = remediations.latest_for(record, node.instance_id)
        return info

    def list_alerts(self, query: MultiMapping[str]) -> ListPassiveHealthCheckAlertsResponse:
        """Health-check alerts, as the query filters them."""
        self.advance()
        return alerts.list_alerts(self._live(), query)

    # --- regions -----------------------------------------------------------------------------

    def regions(self) -> RegionListResponse:
        """The regions on offer."""
        return self.catalog.region_list()

    # --- shared volumes ----------------------------------------------------------------------

    def create_volume(self, body: object) -> GPUClustersSharedVolume:
        """Create a shared volume; it is available at once."""
        self.advance()
        record = self.volumes.create(body, self.catalog, DEFAULT_PROJECT_ID)
        self._save()
        return self._volume_view(record)

    def get_volume(self, volume_id: str) -> GPUClustersSharedVolume:
        """One shared volume."""
        self.advance()
        return self._volume_view(self.volumes.find(volume_id))

    def list_volumes(self, project_id: str | None = None) -> GPUClustersSharedVolumes:
        """Shared volumes, optionally of one project."""
        self.advance()
        return GPUClustersSharedVolumes(
            volumes=[self._volume_view(v) for v in self.volumes.live(project_id)]
        )

    def update_volume(self, body: object) -> GPUClustersSharedVolume:
        """Resize a shared volume (volumes grow, never shrink)."""
        self.advance()
        record = self.volumes.resize(body)
        self._save()
        return self._volume_view(record)

    def delete_volume(self, volume_id: str) -> GPUClustersSharedVolumeDeleteResponse:
        """Delete a shared volume, unless a live cluster uses it."""
        self.advance()
        self.volumes.delete(volume_id, self._users_of(volume_id))
        self._save()
        return GPUClustersSharedVolumeDeleteResponse(success=True)

    def _users_of(self, volume_id: str) -> list[str]:
        return [r.cluster_id for r in self._live() if volume_id in r.volume_ids]

    def _volume_view(self, record: VolumeRecord) -> GPUClustersSharedVolume:
        attached = bool(self._users_of(record.volume.volume_id))
        return self.volumes.view(record, attached=attached)

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
        """Put a cluster into any phase of the contract but Deleting, now, with the status that
        phase reports, dropping whatever it had planned; it stays there until forced again."""
        now = self.advance()
        if phase not in lifecycle.FORCEABLE_PHASES:
            raise InvalidRequest(
                f"`phase` must be one of {', '.join(lifecycle.FORCEABLE_PHASES)} (got {phase!r})"
            )
        record = self._deletable_record(cluster_id)
        record.plan.clear()
        record.next_preemptible_step_at = None
        self._enter_phase(record, phase, now)
        self._schedule_preemptible(now)
        self._save()
        return self._view(record)

    def force_status(self, cluster_id: str, status: str) -> GPUClusterInfo:
        """Report `status` verbatim, in the enum or not (e.g. `Scheduled`), without a phase
        change and dropping whatever was planned: for testing a client's tolerance."""
        self.advance()
        record = self._deletable_record(cluster_id)
        record.plan.clear()
        record.info.status = status
        self._save()
        return self._view(record)

    def _deletable_record(self, cluster_id: str) -> ClusterRecord:
        record = self._record(cluster_id)
        if record.info.status == ClusterStatus.DELETING:
            raise Conflict(f"cluster {cluster_id} is being deleted")
        return record

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

    def new_id(self) -> str:
        """A fresh ID (for alerts and remediations made through `on_cluster`)."""
        return self._new_id()

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
            clusters=list(self._clusters.values()), volumes=list(self.volumes.records.values())
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
