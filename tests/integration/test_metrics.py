"""The Prometheus endpoint, scraped while a GPUCluster goes through its lifecycle."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import GPUClusters, OperatorProcess, Simulator
from tests.support import wait_for


def scrape(operator: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str
) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def test_metrics_follow_a_cluster_from_create_to_delete(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "measured", numGpus=16, numPreemptibleGpus=8)
    gpuclusters.wait_condition(namespace, "measured", "Ready", "True")
    wait_for(
        lambda: (
            (gpuclusters.get(namespace, "measured") or {}).get("status", {}).get("preemptible")
            == "8/8"
        ),
        timeout=20,
        what="preemptible GPUs allocated",
    )

    def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scrape(operator)
        allocated = value(
            samples,
            "together_gpucluster_gpus",
            namespace=namespace,
            name="measured",
            kind="preemptible_allocated",
        )
        return samples if allocated == 8 else None

    samples = wait_for(settled, timeout=15, what="the allocation to show in metrics")
    assert (
        value(
            samples,
            "together_gpucluster_gpus",
            namespace=namespace,
            name="measured",
            kind="on_demand",
        )
        == 16
    )
    assert (
        value(
            samples,
            "together_gpucluster_gpus",
            namespace=namespace,
            name="measured",
            kind="preemptible_desired",
        )
        == 8
    )
    assert (value(samples, "together_operator_clusters", state="Ready") or 0) >= 1
    assert (value(samples, "together_operator_reconciles_total", outcome="ClusterReady") or 0) >= 1
    creates = value(
        samples,
        "together_api_request_duration_seconds_count",
        operation="GPUClusterService_Create",
        code="200",
    )
    assert creates is not None
    assert creates >= 1
    lists = value(
        samples,
        "together_api_request_duration_seconds_count",
        operation="GPUClusterService_List",
        code="200",
    )
    assert lists is not None
    assert lists >= 1

    gpuclusters.delete_and_wait(namespace, "measured")
    after = scrape(operator)
    assert (
        value(
            after,
            "together_gpucluster_gpus",
            namespace=namespace,
            name="measured",
            kind="on_demand",
        )
        is None
    )
    deletes = value(
        after,
        "together_api_request_duration_seconds_count",
        operation="GPUClusterService_Delete",
        code="200",
    )
    assert deletes is not None
    assert deletes >= 1
