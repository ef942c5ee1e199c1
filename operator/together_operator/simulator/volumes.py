"""Shared volumes: created on their own (available at once) or inline with a cluster
(provisioning until the cluster has passed WaitingForSharedVolume), resized, deleted."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from together_operator.simulator import validation
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.errors import Conflict, InvalidRequest, NotFound
from together_operator.together.models import (
    GPUClustersSharedVolume,
    SharedVolumeStatus,
)


class VolumeRecord(BaseModel):
    """A shared volume and what the simulator needs to know about it."""

    volume: GPUClustersSharedVolume
    region: str
    project_id: str
    deleted: bool = False
    # Created inline with a cluster, and not lifecycle-independent: goes when the cluster goes.
    owned_by_cluster_id: str | None = None
    # Inline volumes are made while their cluster waits for them.
    provisioning: bool = False


class VolumeStore:
    """Every shared volume, deleted ones included (the store never forgets an ID)."""

    def __init__(self, records: list[VolumeRecord], new_id: Callable[[], str]) -> None:
        self.records = {r.volume.volume_id: r for r in records}
        self._new_id = new_id

    def new(
        self, name: str, size_tib: int, region: str, project_id: str, *, inline: bool = False
    ) -> VolumeRecord:
        """A volume record with a fresh ID, not yet stored (see `add`)."""
        return VolumeRecord(
            volume=GPUClustersSharedVolume(
                volume_id=self._new_id(),
                volume_name=name,
                size_tib=size_tib,
                status=SharedVolumeStatus.AVAILABLE,
            ),
            region=region,
            project_id=project_id,
            provisioning=inline,
        )

    def add(self, record: VolumeRecord) -> None:
        """Store a volume made by `new`."""
        self.records[record.volume.volume_id] = record

    def find(self, volume_id: str) -> VolumeRecord:
        """A volume that exists (not deleted)."""
        record = self.records.get(volume_id)
        if record is None or record.deleted:
            raise NotFound(f"volume {volume_id} not found")
        return record

    def live(self, project_id: str | None = None) -> list[VolumeRecord]:
        """Volumes not deleted, optionally of one project."""
        return [
            v
            for v in self.records.values()
            if not v.deleted and (project_id is None or v.project_id == project_id)
        ]

    def create(self, body: object, catalog: Catalog, default_project: str) -> VolumeRecord:
        """Validate a create request and store the volume; it is available at once."""
        request = validation.validate_volume_create(body, catalog)
        record = self.new(
            request.volume_name,
            request.size_tib,
            request.region,
            request.project_id or default_project,
        )
        self.add(record)
        return record

    def resize(self, body: object) -> VolumeRecord:
        """Apply a resize (volumes grow, never shrink)."""
        request = validation.validate_volume_update(body)
        record = self.find(request.volume_id)
        if request.size_tib is not None:
            if request.size_tib < record.volume.size_tib:
                raise InvalidRequest(
                    f"`size_tib` cannot shrink volume {request.volume_id} "
                    f"({record.volume.size_tib} TiB -> {request.size_tib} TiB)"
                )
            record.volume.size_tib = request.size_tib
        return record

    def delete(self, volume_id: str, users: list[str]) -> None:
        """Delete a volume, unless a live cluster (one of `users`) uses it."""
        record = self.find(volume_id)
        if users:
            raise Conflict(
                f"volume {volume_id} is attached to cluster {users[0]}; delete the cluster "
                "(and wait until it is gone) before deleting the volume"
            )
        record.deleted = True

    def view(self, record: VolumeRecord, *, attached: bool) -> GPUClustersSharedVolume:
        """The volume as the API shows it."""
        if record.provisioning:
            status = SharedVolumeStatus.PROVISIONING
        elif attached:
            status = SharedVolumeStatus.BOUND
        else:
            status = SharedVolumeStatus.AVAILABLE
        return record.volume.model_copy(update={"status": status})
