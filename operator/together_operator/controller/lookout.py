"""The observe stage of a visit: which fleet observer (API key and project) an object looks
through, what it asks that observer to wake it for, and Together's view of its cluster — from
the shared List, by ID at most once per slow poll when the List lacks it, and its add-ons when
it manages some (listed only when the cluster's own add-ons changed).
"""

from __future__ import annotations

import time

from together_operator.controller.credentials import Credentials
from together_operator.controller.fleet import Fleet, FleetObserver, Snapshot
from together_operator.controller.objects import GPUClusterObject, ObjectMemory
from together_operator.gpucluster import addons, plan
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.together.client import cluster_or_none
from together_operator.together.errors import InvalidResponse
from together_operator.together.models import AddOnInfo, GPUClusterInfo


class HeldBack(Exception):
    """A look at Together is due but the last one failed and its backoff has not passed."""


class Lookout:
    """Observes for the reconciler and the finalizer; holds no state of its own."""

    def __init__(self, fleet: Fleet, credentials: Credentials, slow_poll_seconds: float) -> None:
        self._fleet = fleet
        self._credentials = credentials
        self._slow_poll_seconds = slow_poll_seconds

    async def look(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observer: FleetObserver,
        snapshot: Snapshot,
        *,
        fresh: bool,
    ) -> plan.Observation:
        """Together's view of this object's cluster: from the shared List, else by ID (at
        most once per slow poll), or the clusters under its name while it has no ID."""
        key = observer.fingerprint
        cluster_id = plan.cluster_to_observe(spec, was)
        if cluster_id is None:
            if fresh:
                snapshot = await observer.refresh()
            name = plan.desired_cluster_name(spec, obj.incarnation)
            if snapshot.unreadable_named(name):
                raise InvalidResponse(f"Together lists a cluster named {name!r} it cannot read")
            return plan.Observation(
                same_name=snapshot.named(name), fresh=fresh, key_fingerprint=key
            )
        if cluster_id in snapshot.unreadable:
            raise InvalidResponse(f"Together lists cluster {cluster_id} but it cannot be read")
        cluster = snapshot.clusters.get(cluster_id)
        now = time.monotonic()
        if cluster is None and memory.failure.backing_off(now):
            raise HeldBack()  # the last look failed: not again before its backoff passed
        if cluster is None and plan.worth_looking_up(
            memory.absent_checked_at, now, self._slow_poll_seconds
        ):
            cluster = await cluster_or_none(observer.client, cluster_id)
            memory.absent_checked_at = now if cluster is None else 0.0
            if cluster is not None:
                observer.remember(cluster)
        add_ons = None
        if cluster is not None and cluster.cluster_id == was.cluster_id:
            add_ons = await self._add_ons(memory, spec, was, observer, cluster)
        return plan.Observation(cluster=cluster, fresh=fresh, key_fingerprint=key, add_ons=add_ons)

    async def _add_ons(
        self,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observer: FleetObserver,
        cluster: GPUClusterInfo,
    ) -> tuple[AddOnInfo, ...] | None:
        """Every add-on of the object's own cluster, when it manages some and the cluster is
        settled; listed again only when what the cluster reports of them has changed."""
        if not addons.worth_listing(spec, was.managed_add_ons):
            return None
        if cluster.status not in plan.UPDATABLE_STATES:
            return None
        digest = addons.reported_digest(cluster)
        known = memory.add_ons
        if known.listed is None or known.listed_at_digest != digest:
            known.listed = tuple(await observer.client.list_add_ons(cluster.cluster_id))
            known.listed_at_digest = digest
        return known.listed

    def watch(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        was: plan.Recorded,
        observer: FleetObserver,
    ) -> None:
        """Ask ``observer`` to wake this object when its cluster (or, before it has one, the
        cluster under its name) changes; and the previous observer, after a key change, not to."""
        key = (observer.fingerprint, observer.project_id)
        if memory.observer_key not in (None, key):
            self._fleet.forget(obj.uid)
        memory.observer_key = key
        cluster_id = plan.cluster_to_observe(spec, was)
        name = None if cluster_id else plan.desired_cluster_name(spec, obj.incarnation)
        observer.watch(obj.uid, cluster_id=cluster_id, cluster_name=name)

    async def observer(
        self,
        obj: GPUClusterObject,
        spec: GPUClusterSpec,
        memory: ObjectMemory,
        *,
        deleting: bool = False,
    ) -> FleetObserver | plan.Stall:
        """The fleet observer of this object's key and project, or why there is no key."""
        api_key = await self._credentials.api_key(obj.namespace, spec)
        if isinstance(api_key, plan.Stall):
            if not (deleting and memory.api_key):
                return api_key
            api_key = memory.api_key  # the Secret went first (namespace deletion, say)
        memory.api_key = api_key
        return self._fleet.observer_for(api_key, spec.project_id)
