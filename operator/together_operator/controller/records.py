"""What the operator records on a GPUCluster about its Together cluster, read and written.

Safety after a crash rests on these records, so each is written (and confirmed by the API
server) before the step that depends on it: the create intent before the POST, the cluster ID
and key fingerprint right after it. The process's memory mirrors them because the body kopf
hands over may predate the operator's own latest write.
"""

from __future__ import annotations

import datetime

from together_operator.controller.kube import KubeApi
from together_operator.controller.objects import GPUClusterObject, ObjectMemory
from together_operator.gpucluster.plan import Recorded
from together_operator.gpucluster.spec import GROUP
from together_operator.gpucluster.status import rfc3339

INTENT_ANNOTATION = f"{GROUP}/create-intent"
CLUSTER_ID_ANNOTATION = f"{GROUP}/cluster-id"
#: Fingerprint (never the key) of the API key that created or adopted the cluster.
KEY_ANNOTATION = f"{GROUP}/api-key-fingerprint"


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def recorded(obj: GPUClusterObject, memory: ObjectMemory) -> Recorded:
    """The records, newest first: this process's own writes, then the object's."""
    cluster_id = (
        memory.cluster_id
        or obj.annotations.get(CLUSTER_ID_ANNOTATION)
        or obj.status.get("clusterId")
    )
    intent = (
        None
        if memory.intent_cleared
        else (memory.intent_at or _parse_time(obj.annotations.get(INTENT_ANNOTATION)))
    )
    return Recorded(
        cluster_id=cluster_id,
        create_intent_at=intent,
        key_fingerprint=obj.annotations.get(KEY_ANNOTATION),
    )


class Records:
    """Writes the records on the object; each call returns once the API server stored it."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def intend_create(
        self, obj: GPUClusterObject, memory: ObjectMemory, at: datetime.datetime
    ) -> None:
        """A create may be about to happen (or, after a lost answer, may have happened)."""
        await self._kube.patch_annotations(
            obj.namespace, obj.name, {INTENT_ANNOTATION: rfc3339(at)}
        )
        memory.intent_at, memory.intent_cleared = at, False

    async def clear_intent(self, obj: GPUClusterObject, memory: ObjectMemory) -> None:
        """Together said a definite "no": nothing was created."""
        memory.intent_at, memory.intent_cleared = None, True
        await self._kube.patch_annotations(obj.namespace, obj.name, {INTENT_ANNOTATION: None})

    async def own_cluster(
        self, obj: GPUClusterObject, memory: ObjectMemory, cluster_id: str, key_fingerprint: str
    ) -> None:
        """``cluster_id`` is this object's cluster, seen with the key ``key_fingerprint``."""
        memory.cluster_id = cluster_id
        memory.intent_at, memory.intent_cleared = None, True
        annotations: dict[str, str | None] = {
            CLUSTER_ID_ANNOTATION: cluster_id,
            KEY_ANNOTATION: key_fingerprint,
            INTENT_ANNOTATION: None,
        }
        await self._kube.patch_annotations(obj.namespace, obj.name, annotations)
        await self._kube.patch_status(obj.namespace, obj.name, {"clusterId": cluster_id})
