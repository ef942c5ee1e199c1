"""Start kopf with the GPUCluster handlers: `together-operator run`."""

from __future__ import annotations

import logging
import sys

import kopf
from pythonjsonlogger.json import JsonFormatter

from together_operator.controller.handlers import DELETION_WAIT_MESSAGE, build_registry
from together_operator.settings import OperatorSettings


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
    """Run until SIGINT/SIGTERM."""
    configure_logging(settings.log_format)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    kopf.run(
        registry=build_registry(settings),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
    )
