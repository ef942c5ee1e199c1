"""The GPUCluster as the controller reads it, and what it remembers about each one in between.

kopf hands over a body per visit; :class:`GPUClusterObject` is the part of it the controller
reads. :class:`ObjectMemory` lives as long as the process (in kopf's per-object memo); nothing
in it is needed for safety after a restart, which rests on what is recorded on the object.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from together_operator.gpucluster.plan import Incarnation
from together_operator.gpucluster.spec import FINALIZER, GROUP, KIND, VERSION, AlertStatus
from together_operator.gpucluster.status import Verdict
from together_operator.together.health import PassiveHealthCheckAlert
from together_operator.together.models import AddOnInfo

EventFn = Callable[[str, str, str], None]  # (type, reason, message)


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Owner:
    """The GPUCluster a Secret belongs to."""

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class GPUClusterObject:
    """The parts of a GPUCluster body the reconciler reads."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    resource_version: str | None = None
    created_at: datetime.datetime | None = None
    #: The operator's finalizer is on the object.
    finalized: bool = True

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> GPUClusterObject:
        meta = body.get("metadata", {})
        created = meta.get("creationTimestamp")
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation", 1)),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
            resource_version=meta.get("resourceVersion"),
            created_at=parse_time(created),
            finalized=FINALIZER in (meta.get("finalizers") or ()),
        )

    @property
    def incarnation(self) -> Incarnation:
        return Incarnation(self.namespace, self.name, self.uid, self.created_at)

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class FailureMemory:
    """The last failed action on an object: how often in a row, and what was said about it."""

    failures: int = 0
    #: Monotonic time before which no action is tried again.
    next_action_at: float = 0.0
    #: The generation that failed: a new spec deserves a fresh attempt.
    generation: int | None = None
    #: (reason, message) last posted as an event, so that a repeat is not posted again.
    last_error: tuple[str, str] | None = None
    #: The verdict shown while backing off (it names the next try, so it does not change).
    verdict: Verdict | None = None

    def backing_off(self, now: float) -> bool:
        return now < self.next_action_at and self.verdict is not None

    def clear(self) -> None:
        self.failures, self.next_action_at, self.generation = 0, 0.0, None
        self.last_error, self.verdict = None, None


@dataclass
class SecretMemory:
    """What was last published to the kubeconfig Secret."""

    #: Digest of (name, content) last written: the same content is never written twice.
    digest: str | None = None
    #: The Secret name written to (status names it only once it holds the kubeconfig).
    written_to: str | None = None
    #: A Secret of that name exists and is not ours; looked at again now and then.
    foreign: bool = False
    foreign_checked_at: float = 0.0


@dataclass
class AddOnMemory:
    """The cluster's add-ons as last listed, and what status last said the object manages."""

    #: Every add-on, disabled ones included, as last listed.
    listed: tuple[AddOnInfo, ...] | None = None
    #: What the cluster itself reported of its add-ons at that listing (``addons.
    #: reported_digest``): the listing is good while the cluster reports the same.
    listed_at_digest: str | None = None
    #: The names last shown as managed (newer than the object's status until it is seen).
    managed: frozenset[str] | None = None

    def forget_listing(self) -> None:
        self.listed, self.listed_at_digest = None, None


@dataclass
class HealthMemory:
    """The cluster's alerts as last read, and what was last reported of node health."""

    #: Firing alerts as last read (None: never read by this process).
    alerts: tuple[PassiveHealthCheckAlert, ...] | None = None
    #: Why the last read failed (None: it worked, or none was made).
    error: str | None = None
    #: Monotonic time of the last read.
    read_at: float = 0.0
    #: ``health.trouble`` of the cluster at the last read.
    trouble: str = ""
    #: Alerts last shown (for "resolved" events), remediation ID -> state last seen.
    shown_alerts: list[AlertStatus] | None = None
    remediation_states: dict[str, str] | None = None


@dataclass
class ObjectMemory:
    """What the operator remembers about one GPUCluster between visits (per process).

    The recorded cluster ID and intent are also kept here because the object kopf hands us
    may predate our own latest write to it.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Rung when something this object depends on changed (its cluster at Together, its
    #: spec, its kubeconfig Secret); the object's daemon waits on it between visits.
    doorbell: asyncio.Event = field(default_factory=asyncio.Event)
    #: The observer this object watches through (a rotated key moves it to another).
    observer_key: tuple[str, str | None] | None = None
    #: (generation, annotations, finalized) of the body last seen by the event handler.
    seen: tuple[int | None, dict[str, str], bool] | None = None
    cluster_id: str | None = None
    #: Records made in this process and not written yet: they go with the visit's status
    #: report (see :meth:`Records.own_cluster`).
    unsaved_records: dict[str, Any] | None = None
    intent_at: datetime.datetime | None = None
    intent_cleared: bool = False
    key_fingerprint: str | None = None
    delete_accepted: bool = False
    failure: FailureMemory = field(default_factory=FailureMemory)
    secret: SecretMemory = field(default_factory=SecretMemory)
    #: Monotonic time a cluster missing from the List was last looked up by ID.
    absent_checked_at: float = 0.0
    #: Each update body (JSON) Together accepted without applying it: how often, when last.
    accepted_updates: dict[str, tuple[int, datetime.datetime]] = field(default_factory=dict)
    #: The last API key that worked for this object (its Secret is guarded by a finalizer
    #: while it is in use; this covers a Secret deleted before the guard was in place).
    api_key: str | None = None
    #: The credentials Secret the object named last (to let go of it when that changes).
    credentials_secret: str | None = None
    add_ons: AddOnMemory = field(default_factory=AddOnMemory)
    health: HealthMemory = field(default_factory=HealthMemory)
