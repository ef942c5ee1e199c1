"""kopf wiring: every decorator in one place, each handler a few lines (the crate-operator way).

Each GPUCluster has a daemon that reconciles it and then waits on its doorbell. The fleet
observer rings it when the object's cluster changed at Together, the event handler when its
spec changed; a timer only for backoffs, unanswered creates and a slow safety resync. So an
object that nothing happens to costs an idle wait: no API call, no status write.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import kopf

from together_operator.controller.claims import IndexedClaims, claims_of
from together_operator.controller.credentials import ROLE_LABEL, IndexedUsers, credential_users_of
from together_operator.controller.fleet import Fleet, PollPolicy
from together_operator.controller.kube import KubeApi, load_configuration
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.reconciler import EventFn, GPUClusterObject, Reconciler
from together_operator.gpucluster.plan import Claim
from together_operator.gpucluster.spec import FINALIZER, GROUP, PLURAL, VERSION
from together_operator.settings import OperatorSettings
from together_operator.together.client import TogetherClient

RESOURCE = (GROUP, VERSION, PLURAL)
DELETION_WAIT_MESSAGE = "waiting for the Together cluster to be deleted"
#: After an unexpected error (the API server refusing a write, say), a daemon tries again
#: this soon, doubling up to the cap.
ERROR_RETRY_SECONDS, ERROR_RETRY_CAP_SECONDS = 2.0, 60.0
#: How long a visit under way when deletion begins may take to finish before kopf cancels
#: it: a visit is a few calls, each bounded by the request timeout's retries.
DAEMON_GRACEFUL_EXIT_SECONDS = 15.0
logger = logging.getLogger("together_operator")


def _events_for(body: kopf.Body) -> EventFn:
    where = f"{body.metadata.namespace}/{body.metadata.name}"

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
        level = logging.WARNING if kind == "Warning" else logging.INFO
        logger.log(level, "%s: %s: %s", where, reason, message)

    return post


async def _until_rung(bell: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Wait for the doorbell, the daemon's stop, or ``seconds``, whichever comes first."""
    rung = asyncio.ensure_future(bell.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({rung, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        rung.cancel()
        stopping.cancel()


class NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled configuration": no handler here reacts to a diff (the daemons compare
    the spec themselves, deletion goes by deletionTimestamp), and storing one cost every new
    GPUCluster a PATCH, a MODIFIED event to every watcher and a deep copy of each body seen."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A kopf registry with the GPUCluster handlers, configured from ``settings``."""
    registry = kopf.OperatorRegistry()
    operator_settings = settings

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a Pod: the service account; elsewhere: KUBECONFIG (or ~/.kube/config).
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        # No watching of CRDs and namespaces: least privilege (no cluster-wide read of
        # customresourcedefinitions); the GPUCluster CRD must exist when the operator starts.
        settings.scanning.disabled = True
        # Of all Secrets, the operator watches only its own kubeconfig Secrets and the
        # credentials Secrets it guards: filtered by the API server, not in the operator.
        settings.watching.label_selectors["v1", "secrets"] = ROLE_LABEL
        memo["reconciler"] = _build_reconciler(operator_settings)

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        reconciler = memo.get("reconciler")
        if isinstance(reconciler, Reconciler):
            await reconciler.close()

    @kopf.index(*RESOURCE, registry=registry, id="claims")  # the keyword handlers get it by
    def claims(body: kopf.Body, **_: Any) -> dict[str, Claim]:
        # kopf indexes every object before any handler runs: no claimant is ever missed.
        return claims_of(body)

    @kopf.index(*RESOURCE, registry=registry, id="credential_users")
    def credential_users(body: kopf.Body, **_: Any) -> dict[str, str]:
        return credential_users_of(body)

    # A visit under way when deletion begins (a create, say) is let finish: kopf cancels a
    # daemon at once unless given a backoff, and the deletion handler waits for the visit
    # anyway (the object's lock), so cancelling it saves nothing and logs a warning.
    @kopf.daemon(
        *RESOURCE,
        registry=registry,
        cancellation_backoff=DAEMON_GRACEFUL_EXIT_SECONDS,
        cancellation_timeout=30.0,
    )
    async def keep_in_sync(
        stopped: kopf.DaemonStopped, body: kopf.Body, uid: str, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        reconciler: Reconciler = memo["reconciler"]
        _attach_indexes(reconciler, kwargs)
        memory = reconciler.memory_of(uid)
        events = _events_for(body)
        resync = operator_settings.resync_seconds
        failures = 0
        while not stopped:
            if body.metadata.get("deletionTimestamp"):
                # The deletion handler takes over. Leaving at once, before kopf stops the
                # daemon, spares a visit and a cancellation (a warning) per deleted object.
                return
            memory.doorbell.clear()  # before looking: a ring during the visit is kept
            try:
                revisit = await reconciler.reconcile(
                    GPUClusterObject.from_body(body), memory, events
                )
                failures = 0
            except Exception as error:
                failures += 1
                revisit = min(ERROR_RETRY_SECONDS * 2 ** (failures - 1), ERROR_RETRY_CAP_SECONDS)
                logger.warning(
                    "%s/%s: visit failed (%s); trying again in %.0fs",
                    body.metadata.namespace,
                    body.metadata.name,
                    type(error).__name__,
                    revisit,
                )
            wait = _jittered(resync) if revisit is None else min(revisit, _jittered(resync))
            await _until_rung(memory.doorbell, stopped, wait)

    @kopf.on.event(*RESOURCE, registry=registry)
    def notice(body: kopf.Body, uid: str, memo: kopf.Memo, **_: Any) -> None:
        # The operator's own status writes change none of these: they do not wake anyone.
        # The finalizer does: a new object waits for it before its cluster is created.
        reconciler: Reconciler = memo["reconciler"]
        finalized = FINALIZER in (body.metadata.get("finalizers") or ())
        seen = (body.metadata.get("generation"), dict(body.metadata.annotations), finalized)
        memory = reconciler.memory_of(uid)
        if memory.seen != seen:
            memory.seen = seen
            memory.doorbell.set()

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def finalize(body: kopf.Body, uid: str, memo: kopf.Memo, **kwargs: Any) -> None:
        reconciler: Reconciler = memo["reconciler"]
        _attach_indexes(reconciler, kwargs)
        delay = await reconciler.finalize(
            GPUClusterObject.from_body(body), reconciler.memory_of(uid), _events_for(body)
        )
        if delay is not None:
            raise kopf.TemporaryError(DELETION_WAIT_MESSAGE, delay=delay)

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def secret_changed(type: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        reconciler: Reconciler = memo["reconciler"]
        _attach_indexes(reconciler, kwargs)
        await reconciler.secret_changed(type or "ADDED", body)

    return registry


def _attach_indexes(reconciler: Reconciler, handler_kwargs: dict[str, Any]) -> None:
    """kopf hands its indexes to every handler by name; the reconciler reads them live."""
    reconciler.claims = IndexedClaims(handler_kwargs["claims"])
    reconciler.credentials.users = IndexedUsers(handler_kwargs["credential_users"])


def _build_reconciler(settings: OperatorSettings) -> Reconciler:
    metrics = OperatorMetrics()
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_port)

    def client_for(api_key: str) -> TogetherClient:
        return TogetherClient(
            api_key,
            base_url=settings.together_base_url,
            timeout=settings.request_timeout_seconds,
            observer=metrics.observe_request,
            max_in_flight=settings.max_concurrent_requests,
        )

    fleet = Fleet(client_for, PollPolicy(settings.fast_poll_seconds, settings.slow_poll_seconds))
    kube = KubeApi(load_configuration(), max_in_flight=settings.max_concurrent_requests)
    return Reconciler(kube, fleet, settings, metrics)
