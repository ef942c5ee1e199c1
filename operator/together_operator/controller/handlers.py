"""kopf wiring: every decorator in one place, each handler a few lines (the crate-operator way).

Handlers hand plain data to :class:`Reconciler`. The same reconcile runs on create, spec
update, operator resume and a periodic timer (which reads the shared fleet snapshot, so it
costs no Together call); a per-object lock keeps them from overlapping.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from together_operator.controller.fleet import Fleet, PollPolicy
from together_operator.controller.kube import KubeApi, load_api_client
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.reconciler import (
    EventFn,
    GPUClusterObject,
    ObjectMemory,
    Reconciler,
)
from together_operator.gpucluster.spec import FINALIZER, GROUP, PLURAL, VERSION
from together_operator.settings import OperatorSettings
from together_operator.together.client import TogetherClient

RESOURCE = (GROUP, VERSION, PLURAL)
DELETION_WAIT_MESSAGE = "waiting for the Together cluster to be deleted"
logger = logging.getLogger("together_operator")


def _object_memory(memo: kopf.Memo) -> ObjectMemory:
    memory = memo.get("object_memory")
    if memory is None:
        memory = memo["object_memory"] = ObjectMemory()
    assert isinstance(memory, ObjectMemory)
    return memory


def _events_for(body: kopf.Body) -> EventFn:
    where = f"{body.metadata.namespace}/{body.metadata.name}"

    def post(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)
        level = logging.WARNING if kind == "Warning" else logging.INFO
        logger.log(level, "%s: %s: %s", where, reason, message)

    return post


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A kopf registry with the GPUCluster handlers, configured from ``settings``."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a Pod: the service account; elsewhere: KUBECONFIG (or ~/.kube/config).
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        # No watching of CRDs and namespaces: least privilege (no cluster-wide read of
        # customresourcedefinitions); the GPUCluster CRD must exist when the operator starts.
        settings.scanning.disabled = True
        memo["reconciler"] = _build_reconciler(operator_settings)

    operator_settings = settings

    @kopf.on.cleanup(registry=registry)
    async def close(memo: kopf.Memo, **_: Any) -> None:
        reconciler = memo.get("reconciler")
        if isinstance(reconciler, Reconciler):
            await reconciler.close()

    @kopf.on.resume(*RESOURCE, registry=registry)
    @kopf.on.create(*RESOURCE, registry=registry)
    @kopf.on.update(*RESOURCE, field="spec", registry=registry)
    @kopf.timer(*RESOURCE, interval=settings.resync_seconds, registry=registry)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        reconciler = memo["reconciler"]
        await reconciler.reconcile(
            GPUClusterObject.from_body(body), _object_memory(memo), _events_for(body)
        )

    @kopf.on.delete(*RESOURCE, registry=registry)
    async def finalize(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        reconciler = memo["reconciler"]
        delay = await reconciler.finalize(
            GPUClusterObject.from_body(body), _object_memory(memo), _events_for(body)
        )
        if delay is not None:
            raise kopf.TemporaryError(DELETION_WAIT_MESSAGE, delay=delay)

    return registry


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
        )

    fleet = Fleet(client_for, PollPolicy(settings.fast_poll_seconds, settings.slow_poll_seconds))
    return Reconciler(KubeApi(load_api_client()), fleet, settings, metrics)
