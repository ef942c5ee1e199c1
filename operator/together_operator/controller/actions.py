"""Carry out one planned action against Together, recording on the object what safety needs.

The order is the crash-safety promise: the create intent is stored on the object *before* the
POST, the cluster ID right after it, and a lost answer keeps the intent (re-stamped) so that
it is resolved by listing, never by posting again. Nothing here decides; the planners did.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from contextlib import suppress

from together_operator.controller.fleet import FleetObserver
from together_operator.controller.objects import EventFn, GPUClusterObject, ObjectMemory
from together_operator.controller.records import Records
from together_operator.gpucluster import addons, plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.status import Verdict
from together_operator.together.errors import (
    AlreadyExists,
    AmbiguousCreate,
    NotFound,
    ServerError,
    TogetherError,
)
from together_operator.together.models import GPUClusterInfo

Performed = tuple[GPUClusterInfo | None, Verdict]


class Actions:
    """Performs planned actions; raises :class:`TogetherError` when Together refuses."""

    def __init__(self, records: Records, clock: Callable[[], datetime.datetime]) -> None:
        self._records = records
        self._now = clock

    async def perform(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        action: plan.Action,
        observer: FleetObserver,
        event: EventFn,
    ) -> Performed:
        """Do ``action``; the cluster as Together now reports it (when known) and the verdict."""
        match action:
            case plan.InSync(cluster):
                memory.failure.clear()
                memory.accepted_updates.clear()
                return cluster, Verdict.for_cluster(cluster)
            case plan.Stall():
                return None, Verdict.stall(action)
            case plan.Wait(reason, message):
                return None, Verdict.progressing(reason, message)
            case plan.Hold():
                assert memory.failure.verdict is not None, "held only while backing off"
                return None, memory.failure.verdict
            case plan.LookAgain():
                raise AssertionError("a create is planned again on a fresh list, not performed")
            case plan.ForgetCreate():
                await self._records.clear_intent(obj, memory)
                memory.doorbell.set()  # look again at once, now without the intent
                message = "the unanswered create never reached Together"
                return None, Verdict.progressing(Reason.CONFIRMING_CREATE, message)
            case plan.Adopt(cluster, why, by_spec):
                self._records.own_cluster(
                    obj, memory, cluster.cluster_id, observer.fingerprint, adopted=by_spec
                )
                event(
                    "Normal",
                    Reason.ADOPTED,
                    f"adopted Together cluster {cluster.cluster_id}: {why}",
                )
                return cluster, Verdict.for_cluster(cluster)
            case plan.Update():
                return await self._update(memory, action, observer, event)
            case plan.ChangeAddOns():
                return await self._change_add_ons(memory, action, observer, event)
            case plan.Create():
                return await self._create(obj, memory, action, observer, event)

    async def _update(
        self, memory: ObjectMemory, action: plan.Update, observer: FleetObserver, event: EventFn
    ) -> Performed:
        cluster = await observer.client.update_cluster(action.cluster_id, action.request)
        self._count_accepted(memory, action.body)
        observer.remember(cluster)
        observer.hurry()
        memory.failure.clear()
        changed = ", ".join(action.changed)
        event(
            "Normal", Reason.UPDATING, f"asked Together to apply {changed} to {action.cluster_id}"
        )
        return cluster, Verdict.progressing(Reason.UPDATING, f"applying {changed}")

    async def _change_add_ons(
        self,
        memory: ObjectMemory,
        action: plan.ChangeAddOns,
        observer: FleetObserver,
        event: EventFn,
    ) -> Performed:
        client, cluster_id = observer.client, action.cluster_id
        known = {a.name: a for a in memory.add_ons.listed or ()}
        try:
            for step in action.steps:
                match step:
                    case addons.RemoveAddOn(name):
                        with suppress(NotFound):  # gone already: what was asked
                            await client.delete_add_on(cluster_id, name)
                        known.pop(name, None)
                    case addons.AddAddOn(request):
                        # Made meanwhile (an answer of ours lost, or by someone else): the
                        # listing that confirms these steps judges it.
                        with suppress(AlreadyExists):
                            known[request.name] = await client.create_add_on(cluster_id, request)
                    case addons.ChangeAddOn(name, request):
                        known[name] = await client.update_add_on(cluster_id, name, request)
        finally:
            # What the calls answered, until a listing on the next visit confirms it.
            memory.add_ons.listed = tuple(known.values())
            memory.add_ons.listed_at_digest = None
        self._count_accepted(memory, action.body)
        memory.failure.clear()
        observer.hurry()  # the cluster's own add_ons change with enabled add-ons
        memory.doorbell.set()  # confirm at once
        changed = ", ".join(action.changed)
        event("Normal", Reason.UPDATING_ADD_ONS, f"add-ons of {cluster_id}: {changed}")
        return None, Verdict.progressing(Reason.UPDATING_ADD_ONS, f"add-ons: {changed}")

    def _count_accepted(self, memory: ObjectMemory, body: str) -> None:
        # Counted once Together accepted it: a refused or unanswered request is not.
        accepted, _ = memory.accepted_updates.get(body, (0, self._now()))
        memory.accepted_updates[body] = (accepted + 1, self._now())

    async def _create(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        action: plan.Create,
        observer: FleetObserver,
        event: EventFn,
    ) -> Performed:
        name = action.request.cluster_name
        await self._records.intend_create(obj, memory, self._now(), name)
        event("Normal", Reason.CREATING, f"creating Together cluster {name!r}")
        try:
            cluster = await observer.client.create_cluster(action.request)
        except (AmbiguousCreate, ServerError):
            # Outcome unknown: keep the intent, counted from now, so the grace period before
            # any new POST starts when the answer was lost, not when the request was sent.
            await self._records.restamp_intent(obj, memory, self._now())
            raise
        except TogetherError:
            await self._records.clear_intent(obj, memory)  # a definite "no": nothing was created
            raise
        self._records.own_cluster(obj, memory, cluster.cluster_id, observer.fingerprint)
        observer.remember(cluster)
        observer.hurry()
        memory.failure.clear()
        event(
            "Normal", Reason.CREATED, f"Together accepted cluster {name!r} as {cluster.cluster_id}"
        )
        return cluster, Verdict.for_cluster(cluster)

    async def delete(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        cluster_id: str,
        observer: FleetObserver,
        event: EventFn,
    ) -> bool:
        """Ask Together to delete ``cluster_id``; False when Together says it is gone."""
        try:
            await observer.client.delete_cluster(cluster_id)
        except NotFound:
            return False  # gone between the look and the DELETE
        await self._records.delete_accepted(obj, memory, self._now())
        observer.hurry()
        event("Normal", Reason.DELETING, f"asked Together to delete cluster {cluster_id}")
        return True
