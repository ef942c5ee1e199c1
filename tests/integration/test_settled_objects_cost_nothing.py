"""A settled GPUCluster costs nothing: the operator keeps polling Together (one List feeds every
object), and yet writes nothing to the object while nothing changes."""

from __future__ import annotations

import time

from kubernetes import watch

from tests.integration.conftest import GPUClusters, OperatorProcess, Simulator
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION
from together_operator.together import operations

SETTLE_SECONDS = 20.0  # past the post-create fast polling (15 s of hurry)
QUIET_WINDOW_SECONDS = 12.0  # four slow polls of the test operator (3 s)


def test_a_settled_object_is_not_written_while_lists_keep_coming(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    for name in ("quiet-a", "quiet-b", "quiet-c"):
        gpuclusters.create(namespace, name)
    for name in ("quiet-a", "quiet-b", "quiet-c"):
        gpuclusters.wait_condition(namespace, name, "Ready", "True", timeout=60)
    time.sleep(SETTLE_SECONDS)
    listing = gpuclusters.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    lists_before = simulator.admin.request_count(operations.LIST_CLUSTERS, "200")
    events = []
    stream = watch.Watch()
    for event in stream.stream(
        gpuclusters.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=listing["metadata"]["resourceVersion"],
        timeout_seconds=int(QUIET_WINDOW_SECONDS),
    ):
        events.append((event["type"], event["object"]["metadata"]["name"]))
    stream.stop()
    lists = simulator.admin.request_count(operations.LIST_CLUSTERS, "200") - lists_before
    assert lists >= 3, f"the operator should have polled Together meanwhile ({lists} Lists)"
    assert events == [], f"settled objects were written: {events}"
    for name in ("quiet-a", "quiet-b", "quiet-c"):
        gpuclusters.delete_and_wait(namespace, name)
