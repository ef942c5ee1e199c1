"""Together misbehaves: the operator reports it, backs off, recovers, never doubles a cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import GPUClusters, OperatorProcess, Simulator
from tests.support import wait_for


@pytest.fixture(autouse=True)
def clean_faults(simulator: Simulator) -> Iterator[None]:
    simulator.admin.reset_faults()
    yield
    simulator.admin.reset_faults()


def calls_during(
    simulator: Simulator, operation: str, seconds: float, status: str | None = None
) -> int:
    """How many requests to ``operation`` (answered ``status``) the simulator saw over the
    next ``seconds``."""
    before = simulator.admin.request_count(operation, status)
    time.sleep(seconds)
    return simulator.admin.request_count(operation, status) - before


def test_invalid_key_stalls_with_a_clear_message_and_no_hot_loop(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "together"}, "stringData": {"apiKey": "wrong-key-1234"}}
    )
    gpuclusters.create(namespace, "badkey", credentialsSecretRef={"name": "together"})
    stalled = gpuclusters.wait_condition(
        namespace, "badkey", "Stalled", "True", reason="Unauthorized"
    )
    assert "check the API key" in stalled["message"]
    synced = gpuclusters.condition(namespace, "badkey", "Synced")
    assert synced is not None
    assert synced["status"] == "False"
    assert "wrong-key-1234" not in str(gpuclusters.get(namespace, "badkey"))
    # The observer for the bad key backs off exponentially: a handful of calls, not a storm.
    # (Only the 401s count: the operator's other key may be polling fast for other tests.)
    assert calls_during(simulator, "GPUClusterService_List", 4.0, status="401") <= 3
    assert "Unauthorized" in {e.reason for e in gpuclusters.events(namespace, "badkey")}
    gpuclusters.delete(namespace, "badkey")


def test_out_of_stock_is_retried_with_backoff_and_recovers(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    region, gpu_type = "us-central-4", "H100_SXM"
    simulator.admin.set_stock(region, gpu_type, gpus=0)
    try:
        gpuclusters.create(namespace, "nostock", region="us-central-4")
        waiting = gpuclusters.wait_condition(
            namespace, "nostock", "Reconciling", "True", reason="OutOfStock"
        )
        assert "Out of stock" in waiting["message"]
        stalled = gpuclusters.condition(namespace, "nostock", "Stalled")
        assert stalled is not None
        assert stalled["status"] == "False"
        # Backoff: 1s, 2s, 4s, ... between attempts, so few creates over 5 seconds.
        assert calls_during(simulator, "GPUClusterService_Create", 5.0) <= 4
    finally:
        simulator.admin.set_stock(region, gpu_type, gpus=256)
    gpuclusters.wait_condition(namespace, "nostock", "Ready", "True", timeout=60)
    assert len(simulator.clusters_for(f"{namespace}-nostock")) == 1
    gpuclusters.delete_and_wait(namespace, "nostock")


def test_rate_limit_honours_retry_after_then_recovers(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    creates_before = simulator.admin.request_count("GPUClusterService_Create")
    simulator.admin.fail(429, "GPUClusterService_Create", count=1, retry_after=6)
    gpuclusters.create(namespace, "limited")
    gpuclusters.wait_condition(namespace, "limited", "Synced", "False", reason="RateLimited")
    assert simulator.admin.request_count("GPUClusterService_Create", "429") >= 1
    # Within the Retry-After window (6 s, of which some passed already) no new attempt.
    assert calls_during(simulator, "GPUClusterService_Create", 2.0) == 0
    gpuclusters.wait_condition(namespace, "limited", "Ready", "True", timeout=30)
    assert simulator.admin.request_count("GPUClusterService_Create") - creates_before == 2
    assert len(simulator.clusters_for(f"{namespace}-limited")) == 1
    gpuclusters.delete_and_wait(namespace, "limited")


def test_burst_of_server_errors_is_survived_without_doubling(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    # A 500 on create is ambiguous (Together may have committed): the operator must list,
    # not re-post blindly; the listing itself fails for a while too.
    simulator.admin.fail(500, "GPUClusterService_Create", count=2)
    gpuclusters.create(namespace, "bursty")
    gpuclusters.wait_condition(namespace, "bursty", "Synced", "False", reason="TogetherUnavailable")
    simulator.admin.fail(503, "GPUClusterService_List", count=3, retry_after=0.5)
    gpuclusters.wait_condition(namespace, "bursty", "Ready", "True", timeout=60)
    assert len(simulator.clusters_for(f"{namespace}-bursty")) == 1
    synced = gpuclusters.condition(namespace, "bursty", "Synced")
    assert synced is not None
    assert synced["status"] == "True"
    gpuclusters.delete_and_wait(namespace, "bursty")


def test_ambiguous_create_is_adopted_not_repeated(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    simulator.admin.drop("GPUClusterService_Create", 1)
    gpuclusters.create(namespace, "dropped")
    gpuclusters.wait_condition(namespace, "dropped", "Ready", "True", timeout=60)
    [only] = simulator.clusters_for(f"{namespace}-dropped")
    obj = gpuclusters.get(namespace, "dropped")
    assert obj is not None
    assert obj["status"]["clusterId"] == only.cluster.cluster_id
    assert "createIntentAt" not in obj["status"]["ownership"]
    assert "Adopted" in {e.reason for e in gpuclusters.events(namespace, "dropped")}
    gpuclusters.delete_and_wait(namespace, "dropped")


def test_operator_killed_right_after_post_creates_exactly_one_cluster(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    # Together commits the create but takes 3 s to answer: kill the operator in between,
    # after its intent was recorded and before it could record anything else.
    simulator.admin.delay("GPUClusterService_Create", 3, after_commit=True)
    creates_before = simulator.admin.request_count("GPUClusterService_Create")
    gpuclusters.create(namespace, "crashy")

    def intent_recorded() -> Any:
        obj = gpuclusters.get(namespace, "crashy") or {}
        return (obj.get("status", {}).get("ownership") or {}).get("createIntentAt")

    wait_for(intent_recorded, timeout=20, what="the create intent to be recorded")
    time.sleep(0.5)  # the POST is now on the wire
    operator.kill()
    try:
        obj = gpuclusters.get(namespace, "crashy")
        assert obj is not None
        assert "clusterId" not in obj.get("status", {})  # nothing was saved after the POST
        wait_for(
            lambda: simulator.clusters_for(f"{namespace}-crashy"),
            timeout=10,
            what="Together to commit the in-flight create",
        )
    finally:
        operator.start()
    gpuclusters.wait_condition(namespace, "crashy", "Ready", "True", timeout=60)
    assert len(simulator.clusters_for(f"{namespace}-crashy")) == 1
    # The killed operator's request finishes at Together 3 s after it was sent; count it.
    wait_for(
        lambda: simulator.admin.request_count("GPUClusterService_Create") > creates_before,
        timeout=10,
        what="the in-flight create to finish at Together",
    )
    assert simulator.admin.request_count("GPUClusterService_Create") - creates_before == 1
    gpuclusters.delete_and_wait(namespace, "crashy")


def test_deleting_during_a_create_lets_it_finish_then_deletes_that_cluster(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    # Together takes 3 s to answer the create: the object is deleted while the POST is on the
    # wire. The visit finishes (not cancelled by kopf), and the deletion deletes its cluster.
    simulator.admin.delay("GPUClusterService_Create", 3, after_commit=True)
    log_before = len(operator.logs())
    gpuclusters.create(namespace, "hasty")

    def intent_recorded() -> Any:
        obj = gpuclusters.get(namespace, "hasty") or {}
        return (obj.get("status", {}).get("ownership") or {}).get("createIntentAt")

    wait_for(intent_recorded, timeout=20, what="the create intent to be recorded")
    gpuclusters.delete_and_wait(namespace, "hasty", timeout=60)
    [made] = simulator.clusters_for(f"{namespace}-hasty")
    assert made.deleted is True
    during = operator.logs()[log_before:]
    assert f"{namespace}/hasty: Created:" in during  # the create's answer was heard
    assert "is cancelled" not in during


def test_stuck_deletion_is_released_by_switching_to_orphan(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "stuck")
    gpuclusters.wait_condition(namespace, "stuck", "Ready", "True")
    # Together refuses every delete: the finalizer holds the object and says why.
    simulator.admin.fail(500, "GPUClusterService_Delete")
    gpuclusters.delete(namespace, "stuck")
    gpuclusters.wait_condition(namespace, "stuck", "Synced", "False", reason="TogetherUnavailable")
    assert gpuclusters.get(namespace, "stuck") is not None
    # The documented way out for a person who wants to keep the cluster.
    gpuclusters.patch_spec(namespace, "stuck", {"deletionPolicy": "Orphan"})
    wait_for(
        lambda: gpuclusters.get(namespace, "stuck") is None,
        timeout=40,
        what="the orphaned GPUCluster to be released",
    )
    [kept] = simulator.clusters_for(f"{namespace}-stuck")
    assert kept.deleted is False
