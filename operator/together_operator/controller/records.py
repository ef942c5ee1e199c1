"""What the operator records on a GPUCluster about its Together cluster, read and written.

The records live in ``status`` (``status.clusterId`` and ``status.ownership``): a copy of the
object (``kubectl get -o yaml``, renamed) does not carry status, and a tenant who may edit
GPUClusters but not their status subresource cannot forge it. They are bound to the object's
UID: records found under another UID (a restore, say) are not trusted.

Safety after a crash rests on them, so each is written (and confirmed by the API server)
before the step that depends on it: the create intent before the POST — conditionally on the
resourceVersion the decision was made on, so that a second operator instance acting on the
same object cannot also POST — and the cluster ID right after it, with the visit's report.
The process's memory mirrors them because the body kopf hands over may predate the
operator's own latest write.
"""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes.client.rest import ApiException

from together_operator.controller.kube import KubeApi
from together_operator.controller.objects import GPUClusterObject, ObjectMemory, parse_time
from together_operator.gpucluster import addons
from together_operator.gpucluster.plan import Recorded
from together_operator.gpucluster.spec import GROUP
from together_operator.gpucluster.status import rfc3339

#: Annotations of operators before 0.2: read once to carry their records over, never trusted
#: alone (a tenant can write annotations).
LEGACY_INTENT_ANNOTATION = f"{GROUP}/create-intent"
LEGACY_CLUSTER_ID_ANNOTATION = f"{GROUP}/cluster-id"


class StaleObject(Exception):
    """The object changed since the decision was made (another writer, or another operator
    instance): nothing was written; decide again on the current object."""


def _ownership(obj: GPUClusterObject) -> dict[str, Any] | None:
    """``status.ownership`` when it belongs to this incarnation."""
    ownership = obj.status.get("ownership")
    if isinstance(ownership, dict) and ownership.get("uid") == obj.uid:
        return ownership
    return None


def recorded_cluster_id(obj: GPUClusterObject) -> str | None:
    """The cluster this object's stored records name (the claims index reads this)."""
    ownership = _ownership(obj)
    cluster_id = obj.status.get("clusterId")
    if not isinstance(cluster_id, str) or not cluster_id:
        return None
    if ownership is not None:
        return cluster_id
    # An operator before 0.2 recorded the ID in status and in an annotation, never ownership.
    legacy = obj.annotations.get(LEGACY_CLUSTER_ID_ANNOTATION) == cluster_id
    return cluster_id if legacy and "ownership" not in obj.status else None


def recorded(obj: GPUClusterObject, memory: ObjectMemory) -> Recorded:
    """The records, newest first: this process's own writes, then the object's."""
    ownership = _ownership(obj) or {}
    cluster_id = memory.cluster_id or recorded_cluster_id(obj)
    intent = None
    if not memory.intent_cleared:
        intent = memory.intent_at or parse_time(ownership.get("createIntentAt"))
    legacy_intent = (
        not ownership
        and cluster_id is None
        and bool(obj.annotations.get(LEGACY_INTENT_ANNOTATION))
        and not memory.intent_cleared
    )
    return Recorded(
        cluster_id=cluster_id,
        create_intent_at=intent,
        key_fingerprint=memory.key_fingerprint or ownership.get("keyFingerprint"),
        delete_accepted=memory.delete_accepted or bool(ownership.get("deleteAcceptedAt")),
        legacy_intent=legacy_intent,
        managed_add_ons=(
            memory.add_ons.managed
            if memory.add_ons.managed is not None
            else addons.recorded_managed(obj.status.get("addOns") if ownership else None)
        ),
    )


class Records:
    """Writes the records in status; each call returns once the API server stored them."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def _write(
        self,
        obj: GPUClusterObject,
        ownership: dict[str, Any],
        *,
        cluster_id: str | None = None,
        conditional: bool = False,
    ) -> None:
        status: dict[str, Any] = {"ownership": {"uid": obj.uid, **ownership}}
        if cluster_id is not None:
            status["clusterId"] = cluster_id
        version = obj.resource_version if conditional else None
        try:
            # Urgent: a POST or DELETE waits on these, and they are few (status reports,
            # by the thousand in a burst, queue behind them).
            await self._kube.patch_status(obj.namespace, obj.name, status, version, urgent=True)
        except ApiException as error:
            if error.status == 409:
                raise StaleObject(f"{obj.where} changed since it was read") from None
            raise

    async def intend_create(
        self, obj: GPUClusterObject, memory: ObjectMemory, at: datetime.datetime, name: str
    ) -> None:
        """A create under ``name`` may be about to happen. Written only if the object is still
        the one the decision was made on (:class:`StaleObject` otherwise)."""
        await self._write(
            obj, {"clusterName": name, "createIntentAt": rfc3339(at)}, conditional=True
        )
        memory.intent_at, memory.intent_cleared = at, False

    async def restamp_intent(
        self, obj: GPUClusterObject, memory: ObjectMemory, at: datetime.datetime
    ) -> None:
        """The create's answer was lost: count the grace from now."""
        await self._write(obj, {"createIntentAt": rfc3339(at)})
        memory.intent_at, memory.intent_cleared = at, False

    async def clear_intent(self, obj: GPUClusterObject, memory: ObjectMemory) -> None:
        """Together said a definite "no", or the create never reached it: nothing exists."""
        memory.intent_at, memory.intent_cleared = None, True
        await self._write(obj, {"createIntentAt": None})

    @staticmethod
    def own_cluster(
        obj: GPUClusterObject,
        memory: ObjectMemory,
        cluster_id: str,
        key_fingerprint: str,
        *,
        adopted: bool = False,
    ) -> None:
        """``cluster_id`` is this object's cluster, seen with the key ``key_fingerprint``.

        Remembered at once and written with the visit's status report, in the same write:
        one write per create, not two. Until it lands, the intent stored before the POST
        covers a crash: the cluster is then found under its name and adopted. A report that
        fails keeps it for the next one."""
        ownership: dict[str, Any] = {"createIntentAt": None, "keyFingerprint": key_fingerprint}
        if adopted:
            ownership["adopted"] = True
        memory.unsaved_records = {
            "ownership": {"uid": obj.uid, **ownership},
            "clusterId": cluster_id,
        }
        memory.cluster_id, memory.key_fingerprint = cluster_id, key_fingerprint
        memory.intent_at, memory.intent_cleared = None, True

    async def key_saw_cluster(
        self, obj: GPUClusterObject, memory: ObjectMemory, key_fingerprint: str
    ) -> None:
        """The key in use (a rotated one, say) sees the cluster: it is the key that counts."""
        await self._write(obj, {"keyFingerprint": key_fingerprint})
        memory.key_fingerprint = key_fingerprint

    async def delete_accepted(
        self, obj: GPUClusterObject, memory: ObjectMemory, at: datetime.datetime
    ) -> None:
        """Together accepted this operator's DELETE: a later 404 is proof of the deletion."""
        await self._write(obj, {"deleteAcceptedAt": rfc3339(at)})
        memory.delete_accepted = True
