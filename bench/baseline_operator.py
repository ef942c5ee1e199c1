"""A per-object polling GPUCluster operator: the shape most operators have, as a baseline.

- On create: POST the cluster to Together, write its id and state into `.status`.
- Every 60 s per object (a `@kopf.timer`): one GET of that object's cluster; `.status` is
  patched only when Together's view changed (the fair version of the shape: a write on every
  tick would only make the baseline look worse on the Kubernetes rows).
- On delete: DELETE, then retry every 5 s until GET answers 404, then release the finalizer.

It has none of the project operator's guarantees (no intent record before the POST, no
adoption, no shared observation): it exists so that `bench/fleet.py` can measure the project's
operator against it in the same run. It needs only kopf and httpx, and reads

    KUBECONFIG, TOGETHER_BASE_URL (the host, paths add /v1), TOGETHER_API_KEY,
    BASELINE_POLL_SECONDS (default 60), BASELINE_PATCH_EVERY_POLL (1: also write
    status.lastSyncTime on every poll, as many operators do; default 0)

    .venv/bin/python bench/baseline_operator.py
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

GROUP, VERSION, PLURAL = "compute.together.ai", "v1alpha1", "gpuclusters"
POLL_SECONDS = float(os.environ.get("BASELINE_POLL_SECONDS", "60"))
PATCH_EVERY_POLL = os.environ.get("BASELINE_PATCH_EVERY_POLL", "0") == "1"
DELETION_RETRY_SECONDS = 5.0

# Spec fields that are the operator's own, not part of Together's create body.
OPERATOR_FIELDS = frozenset(
    {"credentialsSecretRef", "kubeconfigSecretName", "deletionPolicy", "clusterId"}
)

_together: httpx.AsyncClient | None = None


def together() -> httpx.AsyncClient:
    if _together is None:
        raise RuntimeError("the Together client is made at start-up")
    return _together


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def create_body(spec: dict[str, Any], namespace: str | None, name: str) -> dict[str, Any]:
    """The POST body: the spec's fields in snake_case, with the CRD's defaults filled in."""
    body = {snake(key): value for key, value in spec.items() if key not in OPERATOR_FIELDS}
    body.setdefault("cluster_name", f"{namespace}-{name}")
    body.setdefault("billing_type", "ON_DEMAND")
    body.setdefault("cluster_type", "KUBERNETES")
    return body


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def raise_for(response: httpx.Response, what: str) -> None:
    """kopf retries a TemporaryError, and gives up on a PermanentError."""
    if response.is_success:
        return
    message = f"{what}: HTTP {response.status_code} {response.text[:200]}"
    if response.status_code in (409, 429) or response.status_code >= 500:
        raise kopf.TemporaryError(message, delay=10)
    raise kopf.PermanentError(message)


def observed_status(cluster: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The status fields mirrored from Together; the Ready condition moves only on change."""
    state = str(cluster.get("status", ""))
    ready = "True" if state == "Ready" else "False"
    conditions = [c for c in current.get("conditions", []) if c.get("type") == "Ready"]
    if not conditions or conditions[0].get("status") != ready:
        conditions = [
            {
                "type": "Ready",
                "status": ready,
                "reason": state or "Unknown",
                "message": f"Together reports {state}",
                "lastTransitionTime": now(),
            }
        ]
    return {
        "clusterId": cluster["cluster_id"],
        "state": state,
        "numGpus": cluster.get("num_gpus"),
        "controlPlaneReady": bool(cluster.get("control_plane_ready")),
        "phaseTransitions": [
            {"phase": t["phase"], "transitionTime": t["transition_time"]}
            for t in cluster.get("phase_transitions", [])
        ],
        "conditions": conditions,
    }


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _together
    # The same persistence, scanning and logging choices as the project's operator, so that
    # the comparison is about the polling shape and not kopf's defaults.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.scanning.disabled = True
    base_url = os.environ["TOGETHER_BASE_URL"].rstrip("/") + "/v1"
    headers = {"Authorization": f"Bearer {os.environ['TOGETHER_API_KEY']}"}
    _together = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30.0)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _together is not None:
        await _together.aclose()


@kopf.on.create(GROUP, VERSION, PLURAL)
async def create(
    spec: kopf.Spec, name: str, namespace: str | None, patch: kopf.Patch, **_: Any
) -> None:
    response = await together().post(
        "/compute/clusters", json=create_body(dict(spec), namespace, name)
    )
    raise_for(response, "create")
    patch["status"] = observed_status(response.json(), {})


@kopf.timer(GROUP, VERSION, PLURAL, interval=POLL_SECONDS)
async def poll(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    cluster_id = status.get("clusterId")
    if not cluster_id:
        return  # the create handler has not recorded the cluster yet
    response = await together().get(f"/compute/clusters/{cluster_id}")
    if response.status_code == 404:
        return
    raise_for(response, "get")
    current = dict(status)
    observed = observed_status(response.json(), current)
    changed = {key: value for key, value in observed.items() if current.get(key) != value}
    if PATCH_EVERY_POLL:
        changed["lastSyncTime"] = now()
    if changed:
        patch["status"] = changed


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete(status: kopf.Status, **_: Any) -> None:
    cluster_id = status.get("clusterId")
    if not cluster_id:
        return
    path = f"/compute/clusters/{cluster_id}"
    response = await together().get(path)
    if response.status_code == 404:
        return  # gone: kopf removes the finalizer
    raise_for(response, "get")
    if response.json().get("status") != "Deleting":
        raise_for(await together().delete(path), "delete")
    raise kopf.TemporaryError("waiting for Together to delete the cluster", DELETION_RETRY_SECONDS)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # As in the project's operator: no log line (and no Kubernetes Event) per timer run.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    kopf.run(standalone=True, clusterwide=True)


if __name__ == "__main__":
    main()
