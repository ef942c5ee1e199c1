"""Carry out the planner's decision for one GPUCluster and write what happened into status.

The planner (gpucluster.plan) decides; this module does the I/O around it, in an order that
keeps the crash-safety promise: the create intent is stored on the object *before* the POST,
the cluster ID right after it, and a lost answer is resolved by listing, never by re-posting.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from together_operator.controller.fleet import Fleet, FleetObserver, Snapshot
from together_operator.controller.kube import KubeApi
from together_operator.controller.kubeconfig_secret import (
    Owner,
    SecretOutcome,
    content_digest,
    delete_owned_secret,
    ensure_kubeconfig_secret,
)
from together_operator.controller.metrics import OperatorMetrics
from together_operator.gpucluster import plan
from together_operator.gpucluster.spec import GROUP, DeletionPolicy, GPUClusterSpec
from together_operator.gpucluster.status import (
    Verdict,
    conditions_for,
    mirror_cluster,
    new_phase_transitions,
    rfc3339,
    stalled,
    status_patch,
    verdict_for_cluster,
)
from together_operator.settings import OperatorSettings
from together_operator.together.client import cluster_or_none
from together_operator.together.errors import (
    AmbiguousCreate,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryLater,
    ServerError,
    TogetherError,
    Unauthorized,
)
from together_operator.together.models import ClusterStatus, GPUClusterInfo

logger = logging.getLogger(__name__)

INTENT_ANNOTATION = f"{GROUP}/create-intent"
CLUSTER_ID_ANNOTATION = f"{GROUP}/cluster-id"
#: Fingerprint (never the key) of the API key that created or adopted the cluster.
KEY_ANNOTATION = f"{GROUP}/api-key-fingerprint"
#: A non-healing error is retried this rarely (in case a key was fixed or capacity freed).
STALLED_RETRY_SECONDS = 300.0
#: A blocked deletion is looked at again this soon: kopf does not re-run a delete handler
#: on a spec change (such as deletionPolicy: Orphan, the documented way out) before then.
DELETION_RECHECK_SECONDS = 10.0
#: The same update accepted this often without Together reporting it: stop and say so.
MAX_IDENTICAL_UPDATES = 3

EventFn = Callable[[str, str, str], None]  # (type, reason, message)


class NeedsPerson(Exception):
    """A problem the operator cannot fix by retrying (no credentials, say)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ObjectMemory:
    """What the operator remembers about one GPUCluster between visits (per process).

    The recorded cluster ID and intent are also kept here because the object kopf hands us
    may predate our own latest write to it.
    """

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cluster_id: str | None = None
    intent_at: datetime.datetime | None = None
    intent_cleared: bool = False
    next_action_at: float = 0.0
    failures: int = 0
    failure_generation: int | None = None
    last_error: tuple[str, str] | None = None
    last_verdict: Verdict | None = None
    kubeconfig_digest: str | None = None
    kubeconfig_secret_written: str | None = None
    foreign_secret_checked_at: float = 0.0
    absent_checked_at: float = 0.0
    update_attempts: dict[str, int] = field(default_factory=dict)
    #: The last API key that worked for this object: deletion still needs it after the
    #: credentials Secret is gone (a namespace being deleted removes Secrets first).
    api_key: str | None = None
    seen_phases: set[tuple[str, str]] | None = None
    secret_conflict_reported: bool = False


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

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> GPUClusterObject:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta.get("uid", ""),
            generation=int(meta.get("generation", 1)),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            annotations=meta.get("annotations") or {},
        )

    @property
    def owner(self) -> Owner:
        return Owner(self.namespace, self.name, self.uid)


def error_reason(error: TogetherError) -> tuple[str, bool]:
    """(condition reason, whether retrying can fix it without a person)."""
    if isinstance(error, Unauthorized):
        return "Unauthorized", False
    if isinstance(error, Forbidden):
        return "Forbidden", False
    if isinstance(error, InvalidRequest):
        return "InvalidRequest", False
    if isinstance(error, Conflict):
        return ("OutOfStock" if error.out_of_stock else "Conflict"), True
    if isinstance(error, RateLimited):
        return "RateLimited", True
    if isinstance(error, ServerError):
        return "TogetherUnavailable", True
    if isinstance(error, NotFound):
        return "NotFound", False
    return "TogetherUnreachable", True


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _decode_kubeconfig(encoded: str) -> str | None:
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


class Reconciler:
    """Reconciles GPUClusters; one instance per operator process."""

    def __init__(
        self,
        kube: KubeApi,
        fleet: Fleet,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        self._kube = kube
        self._fleet = fleet
        self._settings = settings
        self._metrics = metrics
        self._now = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._credentials: dict[tuple[str, str, str], tuple[str | None, float]] = {}

    async def close(self) -> None:
        await self._fleet.close()

    # ----------------------------------------------------------------------------------
    # reconcile: observe, plan, act, report

    async def reconcile(self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn) -> None:
        """One visit: bring Together one step closer to the spec and report."""
        async with memory.lock:
            self._forget_failures_of_older_generations(obj, memory)
            try:
                spec = GPUClusterSpec.model_validate(obj.spec)
            except ValidationError as error:
                await self._report(
                    obj,
                    memory,
                    None,
                    stalled(
                        "InvalidSpec",
                        f"spec is invalid: {error.errors()[0].get('msg')}; fix the manifest",
                    ),
                    event,
                )
                return
            try:
                observer = await self._observer(obj, spec, memory)
            except NeedsPerson as problem:
                await self._report(
                    obj,
                    memory,
                    None,
                    stalled(problem.reason, problem.message),
                    event,
                )
                return
            cluster, verdict = await self._step(obj, memory, spec, observer, event)
            await self._report(obj, memory, cluster, verdict, event, snapshot=observer.snapshot)
            if cluster is not None and cluster.kube_config:
                await self._publish_kubeconfig(obj, memory, spec, cluster, event)

    async def _step(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        observer: FleetObserver,
        event: EventFn,
    ) -> tuple[GPUClusterInfo | None, Verdict]:
        snapshot = await observer.first_snapshot(self._settings.request_timeout_seconds)
        if snapshot is None:
            # The observer backs off on its own; nothing to gate here.
            return None, self._error_verdict(obj, memory, observer.error, event, backoff=False)
        recorded = self._recorded(obj, memory)
        conflict = plan.cluster_id_conflict(spec, recorded)
        if conflict is not None:
            # Decided before observing: the other cluster's state (and kubeconfig) must not
            # be mirrored into this object.
            return None, stalled(conflict.reason, conflict.message)
        try:
            observed = await self._observe(observer, snapshot, spec, recorded, obj, memory)
        except TogetherError as error:
            return None, self._error_verdict(obj, memory, error, event, backoff=False)
        except NeedsPerson as problem:
            return None, stalled(problem.reason, problem.message)
        action = plan.plan_action(
            spec,
            namespace=obj.namespace,
            name=obj.name,
            recorded=recorded,
            observed=observed,
            now=self._now(),
            intent_grace=datetime.timedelta(seconds=self._settings.create_grace_seconds),
        )
        acting = isinstance(action, (plan.Create, plan.Update, plan.Adopt))
        if acting and time.monotonic() < memory.next_action_at and memory.last_verdict:
            # Backing off after a failed action: do not call Together again yet (the verdict
            # already says when the next try is, so status does not change on every tick).
            return observed.cluster, memory.last_verdict
        try:
            cluster, verdict = await self._act(obj, memory, spec, observer, action, event)
        except TogetherError as error:
            failed = self._error_verdict(obj, memory, error, event, backoff=True)
            if observed.cluster is not None and not failed.stalled:
                # A passing fault on an existing cluster: Together's state still decides
                # Ready; Synced and Reconciling carry the fault.
                mirrored = verdict_for_cluster(observed.cluster)
                failed = replace(mirrored, reconciling=True, sync_error=failed.sync_error)
                memory.last_verdict = failed
            return observed.cluster, failed
        if observer.error is not None:
            # The decision used the last good list; the latest one failed. Say so.
            reason, heals = error_reason(observer.error)
            verdict = replace(
                verdict,
                ready=verdict.ready and heals,
                stalled=verdict.stalled or not heals,
                sync_error=(reason, f"listing clusters failed: {observer.error}"),
            )
        # Waiting or stalled still shows what Together reports.
        return cluster or observed.cluster, verdict

    async def _act(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        observer: FleetObserver,
        action: plan.Action,
        event: EventFn,
    ) -> tuple[GPUClusterInfo | None, Verdict]:
        if isinstance(action, plan.InSync):
            self._succeeded(memory)
            memory.update_attempts.clear()
            return action.cluster, verdict_for_cluster(action.cluster)
        if isinstance(action, plan.Stall):
            return None, stalled(action.reason, action.message)
        if isinstance(action, plan.Wait):
            return None, Verdict(False, True, False, action.reason, action.message)
        if isinstance(action, plan.Adopt):
            await self._record_cluster_id(
                obj, memory, action.cluster.cluster_id, observer.fingerprint
            )
            event(
                "Normal",
                "Adopted",
                f"adopted Together cluster {action.cluster.cluster_id}: {action.reason}",
            )
            return action.cluster, verdict_for_cluster(action.cluster)
        if isinstance(action, plan.Update):
            body = action.request.model_dump_json(exclude_none=True)
            attempts = memory.update_attempts.get(body, 0)
            if attempts >= MAX_IDENTICAL_UPDATES:
                return None, stalled(
                    "UpdateNotApplied",
                    f"Together accepted {', '.join(action.changed)} {attempts} times but still "
                    "reports other values; check the spec against what Together supports, or "
                    "contact Together support",
                )
            memory.update_attempts[body] = attempts + 1
            cluster = await observer.client.update_cluster(action.cluster_id, action.request)
            observer.remember(cluster)
            observer.hurry()
            self._succeeded(memory)
            event(
                "Normal",
                "Updating",
                f"asked Together to apply {', '.join(action.changed)} to {action.cluster_id}",
            )
            return cluster, Verdict(
                False, True, False, "Updating", f"applying {', '.join(action.changed)}"
            )
        return await self._create(obj, memory, spec, observer, action, event)

    async def _create(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        observer: FleetObserver,
        action: plan.Create,
        event: EventFn,
    ) -> tuple[GPUClusterInfo | None, Verdict]:
        # Never decide to POST on a cached list: list again, right now.
        fresh = await observer.refresh()
        name = action.request.cluster_name
        recorded = self._recorded(obj, memory)
        again = plan.plan_action(
            spec,
            namespace=obj.namespace,
            name=obj.name,
            recorded=recorded,
            observed=plan.Observation(same_name=fresh.named(name)),
            now=self._now(),
            intent_grace=datetime.timedelta(seconds=self._settings.create_grace_seconds),
        )
        if not isinstance(again, plan.Create):
            return await self._act(obj, memory, spec, observer, again, event)
        intent_at = self._now()
        await self._kube.patch_annotations(
            obj.namespace, obj.name, {INTENT_ANNOTATION: rfc3339(intent_at)}
        )
        memory.intent_at, memory.intent_cleared = intent_at, False
        event("Normal", "Creating", f"creating Together cluster {name!r}")
        try:
            cluster = await observer.client.create_cluster(action.request)
        except (AmbiguousCreate, ServerError):
            # Outcome unknown: keep the intent, counted from now, so the grace period before
            # any new POST starts when the answer was lost, not when the request was sent.
            failed_at = self._now()
            memory.intent_at = failed_at
            await self._kube.patch_annotations(
                obj.namespace, obj.name, {INTENT_ANNOTATION: rfc3339(failed_at)}
            )
            raise
        except TogetherError:
            await self._clear_intent(obj, memory)  # a definite "no": nothing was created
            raise
        await self._record_cluster_id(obj, memory, cluster.cluster_id, observer.fingerprint)
        observer.remember(cluster)
        observer.hurry()
        self._succeeded(memory)
        event("Normal", "Created", f"Together accepted cluster {name!r} as {cluster.cluster_id}")
        return cluster, verdict_for_cluster(cluster)

    async def _observe(
        self,
        observer: FleetObserver,
        snapshot: Snapshot,
        spec: GPUClusterSpec,
        recorded: plan.Recorded,
        obj: GPUClusterObject,
        memory: ObjectMemory,
    ) -> plan.Observation:
        cluster_id = spec.cluster_id or recorded.cluster_id
        if cluster_id is None:
            name = plan.desired_cluster_name(spec, obj.namespace, obj.name)
            return plan.Observation(same_name=snapshot.named(name))
        observer.track(cluster_id)
        cluster = snapshot.clusters.get(cluster_id)
        if cluster is None:
            # Not in the last list (it may predate the cluster): only a GET can tell. A
            # cluster found missing is not asked about again before the next slow poll.
            since = time.monotonic() - memory.absent_checked_at
            if since < self._settings.slow_poll_seconds:
                return plan.Observation()
            cluster = await cluster_or_none(observer.client, cluster_id)
            if cluster is None:
                memory.absent_checked_at = time.monotonic()
                if not spec.cluster_id:
                    self._require_same_key(obj, observer, cluster_id)
            else:
                memory.absent_checked_at = 0.0
                observer.remember(cluster)
        return plan.Observation(cluster=cluster)

    # ----------------------------------------------------------------------------------
    # finalize: delete at Together (or orphan), then let the object go

    async def finalize(
        self, obj: GPUClusterObject, memory: ObjectMemory, event: EventFn
    ) -> float | None:
        """Delete the Together cluster. None when done; else seconds until the next check."""
        async with memory.lock:
            try:
                spec = GPUClusterSpec.model_validate(obj.spec)
            except ValidationError as error:
                problem = stalled(
                    "InvalidSpec",
                    f"cannot delete: the stored spec is invalid "
                    f"({error.errors()[0].get('msg')}); fix it, or set deletionPolicy: Orphan",
                )
                await self._report(obj, memory, None, problem, event)
                return DELETION_RECHECK_SECONDS
            if spec.deletion_policy == DeletionPolicy.ORPHAN:
                self._metrics.forget_cluster(obj.namespace, obj.name)
                cluster_id = spec.cluster_id or self._recorded(obj, memory).cluster_id
                event(
                    "Normal",
                    "Orphaned",
                    f"deletionPolicy is Orphan: Together cluster {cluster_id} is left running",
                )
                return None
            try:
                return await self._delete(obj, memory, spec, event)
            except NeedsPerson as problem:
                message = f"{problem.message} (or set deletionPolicy: Orphan to keep the cluster)"
                await self._report(obj, memory, None, stalled(problem.reason, message), event)
                return DELETION_RECHECK_SECONDS
            except TogetherError as error:
                verdict = self._error_verdict(obj, memory, error, event)
                await self._report(obj, memory, None, verdict, event)
                wait = max(memory.next_action_at - time.monotonic(), 1.0)
                if isinstance(error, RetryLater) and error.retry_after:
                    return wait
                return min(wait, DELETION_RECHECK_SECONDS)

    async def _delete(
        self, obj: GPUClusterObject, memory: ObjectMemory, spec: GPUClusterSpec, event: EventFn
    ) -> float | None:
        observer = await self._observer(obj, spec, memory, deleting=True)
        target = await self._cluster_to_delete(obj, memory, spec, observer)
        if isinstance(target, float):
            waiting = Verdict(
                False,
                True,
                False,
                "ConfirmingCreate",
                "an earlier create got no answer; checking whether it created a cluster "
                "before letting this GPUCluster go",
            )
            await self._report(obj, memory, None, waiting, event)
            return target
        if target is not None:
            cluster = await cluster_or_none(observer.client, target)
            if cluster is not None and cluster.status != ClusterStatus.DELETING:
                try:
                    await observer.client.delete_cluster(target)
                except NotFound:
                    cluster = None  # gone between the GET and the DELETE
                else:
                    observer.hurry()
                    event("Normal", "Deleting", f"asked Together to delete cluster {target}")
            if cluster is not None:
                self._succeeded(memory)
                deleting = Verdict(
                    False,
                    True,
                    False,
                    "Deleting",
                    f"waiting for Together to finish deleting {target}",
                )
                await self._report(obj, memory, cluster, deleting, event)
                return self._settings.fast_poll_seconds
            self._require_same_key(obj, observer, target)
            event("Normal", "Deleted", f"Together cluster {target} is gone")
        secret_name = spec.kubeconfig_secret_name or f"{obj.name}-kubeconfig"
        await delete_owned_secret(self._kube, obj.owner, secret_name)
        self._metrics.forget_cluster(obj.namespace, obj.name)
        return None

    async def _cluster_to_delete(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        observer: FleetObserver,
    ) -> str | float | None:
        """The cluster to delete; None when there is none; seconds to wait when a create's
        outcome is still unknown."""
        recorded = self._recorded(obj, memory)
        conflict = plan.cluster_id_conflict(spec, recorded)
        if conflict is not None:
            raise NeedsPerson(conflict.reason, conflict.message)
        cluster_id = spec.cluster_id or recorded.cluster_id
        if cluster_id is not None or recorded.create_intent_at is None:
            return cluster_id
        # A create may have reached Together without its ID being recorded: find it by name.
        name = plan.desired_cluster_name(spec, obj.namespace, obj.name)
        live = [
            c for c in (await observer.refresh()).named(name) if c.status != ClusterStatus.DELETING
        ]
        if len(live) > 1:
            raise NeedsPerson(
                "AmbiguousClusterName",
                f"cannot tell which of {', '.join(c.cluster_id for c in live)} (all named "
                f"{name!r}) this GPUCluster created; delete the right one at Together, then "
                f"remove the finalizer {GROUP}/finalizer",
            )
        if live:
            return live[0].cluster_id
        # Not listed (yet): the same grace as before re-creating, then it never happened.
        remaining = (
            recorded.create_intent_at
            + datetime.timedelta(seconds=self._settings.create_grace_seconds)
            - self._now()
        ).total_seconds()
        return max(remaining, 1.0) if remaining > 0 else None

    def _require_same_key(
        self, obj: GPUClusterObject, observer: FleetObserver, cluster_id: str
    ) -> None:
        """A 404 only proves the cluster is gone when asked with the key that created it."""
        recorded = obj.annotations.get(KEY_ANNOTATION)
        if recorded and recorded != observer.fingerprint:
            raise NeedsPerson(
                "CredentialsChanged",
                f"Together says cluster {cluster_id} does not exist, but the API key in use "
                f"(fingerprint {observer.fingerprint}) is not the one that created it "
                f"({recorded}); restore that key in spec.credentialsSecretRef",
            )

    # ----------------------------------------------------------------------------------
    # helpers

    async def _observer(
        self,
        obj: GPUClusterObject,
        spec: GPUClusterSpec,
        memory: ObjectMemory,
        *,
        deleting: bool = False,
    ) -> FleetObserver:
        try:
            api_key = await self._api_key(obj, spec)
        except NeedsPerson:
            if not (deleting and memory.api_key):
                raise
            api_key = memory.api_key  # the Secret went first (namespace deletion, say)
        memory.api_key = api_key
        return self._fleet.observer_for(api_key)

    async def _api_key(self, obj: GPUClusterObject, spec: GPUClusterSpec) -> str:
        ref = spec.credentials_secret_ref
        if ref is None:
            if self._settings.together_api_key is None:
                raise NeedsPerson(
                    "NoCredentials",
                    "the operator has no TOGETHER_API_KEY and spec.credentialsSecretRef is "
                    "not set; set one of them",
                )
            return self._settings.together_api_key.get_secret_value()
        value = await self._credential(obj.namespace, ref.name, ref.key)
        if not value:
            raise NeedsPerson(
                "CredentialsNotFound",
                f"Secret {obj.namespace}/{ref.name} with key {ref.key!r} "
                "(spec.credentialsSecretRef) does not exist or is empty; create it with the "
                "Together API key",
            )
        return value

    async def _credential(self, namespace: str, name: str, key: str) -> str | None:
        """The API key from a Secret, re-read at most every ``credentials_ttl_seconds`` so
        that a fleet of objects does not turn every resync into a Secret read."""
        cache_key = (namespace, name, key)
        cached = self._credentials.get(cache_key)
        if (
            cached is not None
            and time.monotonic() - cached[1] < self._settings.credentials_ttl_seconds
        ):
            return cached[0]
        value = await self._kube.secret_value(namespace, name, key)
        self._credentials[cache_key] = (value, time.monotonic())
        return value

    def _recorded(self, obj: GPUClusterObject, memory: ObjectMemory) -> plan.Recorded:
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
        return plan.Recorded(cluster_id=cluster_id, create_intent_at=intent)

    async def _record_cluster_id(
        self, obj: GPUClusterObject, memory: ObjectMemory, cluster_id: str, key_fingerprint: str
    ) -> None:
        memory.cluster_id = cluster_id
        memory.intent_at, memory.intent_cleared = None, True
        annotations: dict[str, str | None] = {
            CLUSTER_ID_ANNOTATION: cluster_id,
            KEY_ANNOTATION: key_fingerprint,
            INTENT_ANNOTATION: None,
        }
        await self._kube.patch_annotations(obj.namespace, obj.name, annotations)
        await self._kube.patch_status(obj.namespace, obj.name, {"clusterId": cluster_id})

    async def _clear_intent(self, obj: GPUClusterObject, memory: ObjectMemory) -> None:
        memory.intent_at, memory.intent_cleared = None, True
        await self._kube.patch_annotations(obj.namespace, obj.name, {INTENT_ANNOTATION: None})

    def _forget_failures_of_older_generations(
        self, obj: GPUClusterObject, memory: ObjectMemory
    ) -> None:
        # A new spec deserves a fresh attempt, whatever failed before.
        if memory.failure_generation is not None and memory.failure_generation != obj.generation:
            self._succeeded(memory)

    @staticmethod
    def _succeeded(memory: ObjectMemory) -> None:
        memory.failures, memory.next_action_at = 0, 0.0
        memory.last_error, memory.failure_generation = None, None
        memory.last_verdict = None

    def _error_verdict(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        error: TogetherError | None,
        event: EventFn,
        *,
        backoff: bool = True,
    ) -> Verdict:
        if error is None:
            return Verdict(
                False,
                True,
                False,
                "WaitingForTogether",
                "no answer from Together yet",
                sync_error=("WaitingForTogether", "no answer from Together yet"),
            )
        reason, heals = error_reason(error)
        if backoff:
            memory.failures += 1
            memory.failure_generation = obj.generation
        if not backoff:
            delay = 0.0
        elif isinstance(error, RetryLater) and error.retry_after is not None:
            delay = error.retry_after
        elif heals:
            delay = min(
                self._settings.fast_poll_seconds * 2.0 ** min(memory.failures, 8),
                STALLED_RETRY_SECONDS,
            )
        else:
            delay = STALLED_RETRY_SECONDS
        if backoff:
            memory.next_action_at = time.monotonic() + delay
        message = f"{error}"
        if isinstance(error, Unauthorized):
            message += (
                "; check the API key (spec.credentialsSecretRef or the operator's TOGETHER_API_KEY)"
            )
        if memory.last_error != (reason, message):
            event("Warning", reason, message)
        memory.last_error = (reason, message)
        logger.warning("%s/%s: %s", obj.namespace, obj.name, message)
        verdict = Verdict(False, heals, not heals, reason, message, sync_error=(reason, message))
        if backoff:
            next_try = self._now() + datetime.timedelta(seconds=delay)
            verdict = replace(verdict, message=f"{message}; next try at {rfc3339(next_try)}")
            memory.last_verdict = verdict
        return verdict

    async def _report(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        cluster: GPUClusterInfo | None,
        verdict: Verdict,
        event: EventFn,
        snapshot: Snapshot | None = None,
    ) -> None:
        spec_secret = obj.spec.get("kubeconfigSecretName") or f"{obj.name}-kubeconfig"
        wanted: dict[str, Any] = {"observedGeneration": obj.generation}
        self._metrics.reconciles.labels(verdict.reason).inc()
        if verdict.stalled or verdict.sync_error:
            self._metrics.errors.labels(
                verdict.sync_error[0] if verdict.sync_error else verdict.reason
            ).inc()
        if cluster is not None:
            self._metrics.observe_cluster(obj.namespace, obj.name, cluster)
            wanted.update(mirror_cluster(cluster))
            self._phase_events(obj, memory, cluster, event)
            if memory.kubeconfig_secret_written == spec_secret:
                wanted["kubeconfigSecretName"] = spec_secret
        if snapshot is not None:
            wanted["lastSyncTime"] = rfc3339(
                datetime.datetime.fromtimestamp(snapshot.fetched_at, datetime.UTC)
            )
        if memory.secret_conflict_reported and verdict.ready:
            verdict = Verdict(
                False,
                False,
                True,
                "KubeconfigSecretConflict",
                self._secret_conflict_message(obj, spec_secret),
            )
        wanted["conditions"] = conditions_for(
            verdict,
            generation=obj.generation,
            previous=obj.status.get("conditions"),
            now=self._now(),
        )
        patch = status_patch(obj.status, wanted)
        if set(patch) - {"conditions"} or patch.get("conditions") != obj.status.get("conditions"):
            await self._kube.patch_status(obj.namespace, obj.name, patch)

    def _phase_events(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        cluster: GPUClusterInfo,
        event: EventFn,
    ) -> None:
        if memory.seen_phases is None:
            memory.seen_phases = {
                (p.get("phase", ""), p.get("transitionTime", ""))
                for p in obj.status.get("phaseTransitions") or []
            }
        for phase, at in new_phase_transitions(None, cluster):
            if (phase, at) not in memory.seen_phases:
                memory.seen_phases.add((phase, at))
                event(
                    "Normal",
                    "PhaseChanged",
                    f"Together cluster {cluster.cluster_id} entered {phase} at {at}",
                )

    @staticmethod
    def _secret_conflict_message(obj: GPUClusterObject, secret_name: str) -> str:
        return (
            f"Secret {obj.namespace}/{secret_name} exists and is not owned by this "
            "GPUCluster, so the kubeconfig was not written; delete that Secret or set "
            "spec.kubeconfigSecretName to another name"
        )

    async def _publish_kubeconfig(
        self,
        obj: GPUClusterObject,
        memory: ObjectMemory,
        spec: GPUClusterSpec,
        cluster: GPUClusterInfo,
        event: EventFn,
    ) -> None:
        kubeconfig = _decode_kubeconfig(cluster.kube_config)
        secret_name = spec.kubeconfig_secret_name or f"{obj.name}-kubeconfig"
        if kubeconfig is None:
            event(
                "Warning",
                "InvalidKubeconfig",
                f"Together returned a kube_config for {cluster.cluster_id} that is not "
                "base64 text; the Secret was not written",
            )
            return
        digest = content_digest(f"{secret_name}\n{kubeconfig}")
        if memory.kubeconfig_digest == digest:
            return  # written already for exactly this content
        if (
            memory.secret_conflict_reported
            and time.monotonic() - memory.foreign_secret_checked_at
            < self._settings.slow_poll_seconds
        ):
            return  # a foreign Secret: looked at again now and then, not on every tick
        memory.foreign_secret_checked_at = time.monotonic()
        outcome = await ensure_kubeconfig_secret(self._kube, obj.owner, secret_name, kubeconfig)
        # A foreign Secret is checked again on every visit: its owner may delete it.
        memory.kubeconfig_digest = None if outcome is SecretOutcome.FOREIGN else digest
        memory.kubeconfig_secret_written = None if outcome is SecretOutcome.FOREIGN else secret_name
        if outcome is SecretOutcome.WRITTEN:
            event(
                "Normal",
                "KubeconfigWritten",
                f"kubeconfig of {cluster.cluster_id} written to Secret {secret_name}",
            )
        was_reported = memory.secret_conflict_reported
        memory.secret_conflict_reported = outcome is SecretOutcome.FOREIGN
        if outcome is SecretOutcome.FOREIGN and not was_reported:
            event(
                "Warning",
                "KubeconfigSecretConflict",
                self._secret_conflict_message(obj, secret_name),
            )
            await self._report(obj, memory, cluster, verdict_for_cluster(cluster), event)
