"""GPUCluster objects as the operator leaves them in each state, for the GitOps health tests.

Every status is built by the operator's own code: Together's answer goes through
``mirror_cluster``, the planner and the ``Verdict`` constructors, failed calls through
``Verdict.failure`` (with ``despite`` where Together's view still decides Ready, as the
reconciler does), and the conditions through ``conditions_for``. So a change in how the
operator computes conditions changes what these health tests see.
"""

from __future__ import annotations

import datetime
from typing import Any

from tests.factories import cluster_info, spec_fields
from together_operator.gpucluster import plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import FINALIZER, GROUP, VERSION, GPUClusterSpec
from together_operator.gpucluster.status import Verdict, conditions_for, mirror_cluster, rfc3339
from together_operator.together.errors import RateLimited, TogetherError, Unauthorized
from together_operator.together.models import ClusterStatus, GPUClusterInfo

NAMESPACE, NAME, UID = "ml", "training", "5a1f3c9e-0000-4000-8000-000000000001"
NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
SPEC: dict[str, Any] = spec_fields()


def together_cluster(status: str, **fields: Any) -> GPUClusterInfo:
    """Together's view of the cluster (the wire model, as the client parses it)."""
    queued = [{"phase": "CLUSTER_PHASE_QUEUED", "transition_time": "2026-11-22T11:00:00Z"}]
    return cluster_info(
        **{
            "cluster_id": "c-0001",
            "cluster_name": plan.desired_cluster_name(
                GPUClusterSpec.model_validate(SPEC), plan.Incarnation(NAMESPACE, NAME, UID)
            ),
            "status": status,
            "phase_transitions": queued,
            **fields,
        }
    )


def gpucluster(
    verdict: Verdict,
    cluster: GPUClusterInfo | None,
    *,
    generation: int = 1,
    observed_generation: int | None = None,
    spec: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """The object as stored after the operator reported ``verdict`` (and mirrored ``cluster``)."""
    seen = generation if observed_generation is None else observed_generation
    status: dict[str, Any] = {"observedGeneration": seen}
    if cluster is not None:
        status.update(mirror_cluster(cluster).to_k8s())
    conditions = conditions_for(verdict, generation=seen, previous=None, now=NOW)
    status["conditions"] = [c.to_k8s() for c in conditions]
    metadata: dict[str, Any] = {
        "name": NAME,
        "namespace": NAMESPACE,
        "uid": UID,
        "generation": generation,
        "finalizers": [FINALIZER],
        "creationTimestamp": rfc3339(NOW - datetime.timedelta(hours=1)),
    }
    if cluster is not None:
        status["ownership"] = {"uid": UID, "keyFingerprint": "0123456789ab"}
    if deleting:
        metadata["deletionTimestamp"] = rfc3339(NOW)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GPUCluster",
        "metadata": metadata,
        "spec": spec or dict(SPEC),
        "status": status,
    }


def error_verdict(error: TogetherError, cluster: GPUClusterInfo | None = None) -> Verdict:
    """What the reconciler reports after a failed call, with its next try in 30 s."""
    failed = Verdict.failure(error, NOW + datetime.timedelta(seconds=30))
    if cluster is not None and error.heals:
        return Verdict.for_cluster(cluster).despite(failed)
    return failed


def planned_verdict(action: plan.Action) -> Verdict:
    """What the reconciler reports for a planned stall, or an update Together accepted."""
    if isinstance(action, plan.Stall):
        return Verdict.stall(action)
    if isinstance(action, plan.Update):
        return Verdict.progressing(Reason.UPDATING, f"applying {', '.join(action.changed)}")
    raise AssertionError(f"no fixture maps {action!r}")


def plan_for(
    spec: dict[str, Any], observed: plan.Observation, cluster_id: str | None
) -> plan.Action:
    return plan.plan_action(
        GPUClusterSpec.model_validate(spec),
        who=plan.Incarnation(NAMESPACE, NAME, UID),
        recorded=plan.Recorded(cluster_id=cluster_id),
        observed=observed,
        now=NOW,
        intent_grace=datetime.timedelta(seconds=60),
    )


def all_states() -> dict[str, dict[str, Any]]:
    """Each state a GitOps tool must judge, by name."""
    creating = together_cluster(ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES)
    ready = together_cluster(ClusterStatus.READY, control_plane_ready=True)
    degraded = together_cluster(ClusterStatus.DEGRADED, control_plane_ready=True)
    paused = together_cluster(ClusterStatus.PAUSED, control_plane_ready=True)
    going = together_cluster(ClusterStatus.DELETING)

    scaled_spec = {**SPEC, "numGpus": 16}
    scaling = plan_for(scaled_spec, plan.Observation(cluster=ready), ready.cluster_id)
    twins = [together_cluster(ClusterStatus.READY, cluster_id=f"c-000{i}") for i in (1, 2)]
    ambiguous = plan_for(SPEC, plan.Observation(same_name=twins, fresh=True), None)
    refused = plan_for({**SPEC, "clusterId": "c-0009"}, plan.Observation(), None)
    unauthorized = Unauthorized("invalid API key", status=401, operation="listClusters")
    limited = RateLimited("too many requests", status=429, retry_after=30, operation="listClusters")
    deleting = Verdict.progressing(Reason.DELETING, "waiting for Together to finish deleting")
    return {
        "creating": gpucluster(Verdict.for_cluster(creating), creating),
        "ready": gpucluster(Verdict.for_cluster(ready), ready),
        "scaling": gpucluster(planned_verdict(scaling), ready, generation=2, spec=scaled_spec),
        "degraded": gpucluster(Verdict.for_cluster(degraded), degraded),
        "stalled-unauthorized": gpucluster(error_verdict(unauthorized), None),
        "stalled-ambiguous-name": gpucluster(planned_verdict(ambiguous), None),
        "stalled-adoption-refused": gpucluster(planned_verdict(refused), None),
        "rate-limited": gpucluster(error_verdict(limited, ready), ready),
        "deleting": gpucluster(deleting, going, deleting=True),
        "deleting-blocked": gpucluster(error_verdict(unauthorized), going, deleting=True),
        "stale-generation": gpucluster(
            Verdict.for_cluster(ready), ready, generation=3, observed_generation=2
        ),
        "paused": gpucluster(Verdict.for_cluster(paused), paused),
    }
