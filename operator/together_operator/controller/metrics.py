"""Prometheus metrics: reconciles, errors by reason, Together latency, clusters and GPUs.

Everything lives in one registry owned by the operator (no prometheus_client globals), so
tests and embedders get an isolated set. Per-cluster series are removed when the GPUCluster
goes, so a long-running operator does not accumulate dead label sets.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from together_operator.together.models import GPUClusterInfo
from together_operator.together.operations import LIST_CLUSTERS


class _ClustersByState(Collector):
    """`together_operator_clusters{state}`, computed at scrape time from the latest views."""

    def __init__(self, states: dict[tuple[str, str], str]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "together_operator_clusters",
            "Together clusters managed by this operator, by Together state.",
            labels=["state"],
        )
        for state, count in sorted(Tally(self._states.values()).items()):
            family.add_metric([state], count)
        yield family


class OperatorMetrics:
    """The operator's metrics and the HTTP endpoint that serves them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "together_operator_reconciles",
            "GPUCluster reconciliations, by outcome (the Ready/Stalled reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "together_operator_errors",
            "Failed Together calls and problems that need a person, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "together_api_request_duration_seconds",
            "Together API request latency, by operation and HTTP status (0: no answer).",
            ["operation", "code"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.gpus = Gauge(
            "together_gpucluster_gpus",
            "GPUs of a GPUCluster: kind=on_demand (numGpus), preemptible_desired, "
            "preemptible_allocated.",
            ["namespace", "name", "kind"],
            registry=self.registry,
        )
        self.last_list = Gauge(
            "together_operator_last_list_timestamp_seconds",
            "When a List of Together's clusters last succeeded (Unix time): the operator's "
            "view is this fresh even while no GPUCluster status changes.",
            registry=self.registry,
        )
        self._states: dict[tuple[str, str], str] = {}
        self.registry.register(_ClustersByState(self._states))

    def observe_request(self, operation: str, code: int, seconds: float) -> None:
        self.api_latency.labels(operation, str(code)).observe(seconds)
        if operation == LIST_CLUSTERS.id and code == 200:
            self.last_list.set_to_current_time()

    def observe_cluster(self, namespace: str, name: str, cluster: GPUClusterInfo) -> None:
        self._states[(namespace, name)] = cluster.status
        self.gpus.labels(namespace, name, "on_demand").set(cluster.num_gpus)
        self.gpus.labels(namespace, name, "preemptible_desired").set(
            cluster.desired_preemptible_gpus
        )
        self.gpus.labels(namespace, name, "preemptible_allocated").set(
            cluster.allocated_preemptible_gpus
        )

    def forget_cluster(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)
        for kind in ("on_demand", "preemptible_desired", "preemptible_allocated"):
            with contextlib.suppress(KeyError):  # never observed: nothing to remove
                self.gpus.remove(namespace, name, kind)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve `/metrics` on ``port`` from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)
