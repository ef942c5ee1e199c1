"""Start kopf with the GPUCluster handlers: `together-operator run`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import kopf
from pythonjsonlogger.json import JsonFormatter

from together_operator.controller.handlers import DELETION_WAIT_MESSAGE, build_registry
from together_operator.controller.kube import load_api_client
from together_operator.controller.leadership import (
    Leadership,
    LeaseUnavailable,
    default_lease_namespace,
    instance_identity,
)
from together_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)


class DemoteDeletionWaits(logging.Filter):
    """kopf logs every retry of a handler at ERROR; waiting for Together to finish a deletion
    is the normal path, not an error, so it is shown at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and DELETION_WAIT_MESSAGE in record.getMessage():
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        # One JSON object per line, for log pipelines: time, level, logger, message (and
        # exc_info for a traceback). Messages never carry keys or kubeconfigs.
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # kopf logs each timer run at INFO (every few seconds per object): keep warnings only.
    # The operator's own actions are logged (and posted as events) by the reconciler.
    logging.getLogger("kopf").setLevel(logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    handler.addFilter(DemoteDeletionWaits())
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_operator(settings: OperatorSettings, *, liveness_port: int | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until the Lease is lost: then exit non-zero, so that a
    Pod restarts and waits for the Lease again)."""
    configure_logging(settings.log_format)
    try:
        lost = asyncio.run(_run(settings, liveness_port))
    except LeaseUnavailable as error:
        logger.error("%s", error)
        sys.exit(2)
    if lost:
        sys.exit(1)


async def _run(settings: OperatorSettings, liveness_port: int | None) -> bool:
    """The operator, inside the Lease; True when it stopped because the Lease was lost."""
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    stop = asyncio.Event()
    lost = asyncio.Event()
    leadership = None
    if settings.leader_election:
        leadership = Leadership.for_api_client(
            load_api_client(),
            settings.lease_namespace or default_lease_namespace(),
            settings.lease_name,
            instance_identity(),
            duration_seconds=settings.lease_seconds,
        )
        await _until_stopped(leadership.acquire(), stop)
        if stop.is_set():
            return False

    def on_lost() -> None:
        lost.set()
        stop.set()

    keeper = asyncio.create_task(leadership.keep(on_lost)) if leadership is not None else None
    try:
        await kopf.operator(
            registry=build_registry(settings),
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
    finally:
        if keeper is not None:
            keeper.cancel()
        if leadership is not None and not lost.is_set():
            await leadership.release()
    return lost.is_set()


async def _until_stopped(waiting: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Wait for ``waiting``, unless SIGINT/SIGTERM comes first (kopf is not running yet to
    catch them)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.ensure_future(waiting)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        stopping.cancel()
        if not task.done():
            task.cancel()
        elif task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
