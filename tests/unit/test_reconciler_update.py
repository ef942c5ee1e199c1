"""The reconciler updating a cluster: passing faults keep Ready, an update Together never
applies stalls, a later clusterId cannot take over."""

from __future__ import annotations

import base64

import pytest

from tests.factories import create_request
from tests.support import wait_for_async
from tests.unit.reconciler_harness import (
    CREATE,
    DELETE,
    GET,
    KEY,
    NAME,
    NAMESPACE,
    SCENARIO_TIMEOUT_SECONDS,
    TO_READY_SECONDS,
    UID,
    UPDATE,
    Harness,
    Simulator,
    spec,
)
from together_operator.controller.fleet import key_fingerprint
from together_operator.gpucluster.plan import MAX_IDENTICAL_UPDATES
from together_operator.together.client import TogetherClient

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)


async def test_transient_503_on_update_of_a_ready_cluster_keeps_ready_and_reports_not_synced(
    harness: Harness, sim: Simulator
) -> None:
    await harness.create_ready_cluster()
    ready_since = harness.condition("Ready")["lastTransitionTime"]
    sim.admin.fail(503, UPDATE, count=1)
    await harness.visit(spec(numGpus=16), generation=2)
    ready = harness.condition("Ready")
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == ready_since
    assert ready["observedGeneration"] == 2

    assert sim.requests(UPDATE) == 1
    assert sim.requests(UPDATE, "503") == 1
    synced = harness.condition("Synced")
    assert synced["status"] == "False"
    assert synced["reason"] == "TogetherUnavailable"
    assert harness.condition("Reconciling")["status"] == "True"
    assert harness.condition("Stalled")["status"] == "False"
    assert harness.status()["state"] == "Ready"


async def test_update_accepted_but_never_reflected_stalls_after_the_identical_update_limit(
    harness_ignoring_updates: Harness, sim: Simulator
) -> None:
    harness = harness_ignoring_updates
    wanted = spec(numGpus=16)

    await harness.create_ready_cluster()
    for attempt in range(1, MAX_IDENTICAL_UPDATES + 1):
        await harness.visit(wanted, generation=2)
        assert sim.requests(UPDATE, "200") == attempt
        assert harness.condition("Stalled")["status"] == "False"
    await harness.visit(wanted, generation=2)
    await harness.visit(wanted, generation=2)

    assert sim.requests(UPDATE) == MAX_IDENTICAL_UPDATES
    assert [c.num_gpus for c in sim.live_clusters()] == [8]
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "UpdateNotApplied"
    assert "numGpus" in stalled["message"]
    assert harness.condition("Reconciling")["status"] == "False"


async def test_spec_cluster_id_other_than_the_recorded_one_stalls_without_writing_to_together(
    harness: Harness, sim: Simulator
) -> None:
    await harness.visit()
    recorded = harness.status()["clusterId"]
    # Another cluster, with a different size: taking it over would PUT numGpus 8 to it.
    together = TogetherClient(KEY, base_url=sim.running.base_url, timeout=5)
    try:
        other = await together.create_cluster(create_request(num_gpus=16))
    finally:
        await together.aclose()
    sim.advance(TO_READY_SECONDS)
    await harness.fresh_list()
    before = {op: sim.requests(op) for op in (CREATE, UPDATE, DELETE)}
    for _ in range(2):
        await harness.visit(spec(clusterId=other.cluster_id), generation=2)
    assert {op: sim.requests(op) for op in (CREATE, UPDATE, DELETE)} == before
    assert harness.status()["clusterId"] == recorded
    # Nothing of the other cluster is mirrored or published into this object.
    assert harness.status()["clusterId"] == recorded
    secrets = [s["data"].get("kubeconfig", "") for s in harness.kube.secrets.values()]
    assert not any(other.cluster_id in base64.b64decode(data).decode() for data in secrets if data)

    assert sorted(c.num_gpus for c in sim.live_clusters()) == [8, 16]
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "ClusterIdConflict"
    assert harness.condition("Ready")["status"] == "False"


async def test_a_settled_object_causes_no_write_however_often_it_is_visited(
    harness: Harness, sim: Simulator
) -> None:
    await harness.create_ready_cluster()
    sim.advance(600)  # long after Ready: nothing changes at Together any more
    await harness.fresh_list()
    await harness.visit()
    settled = len(harness.kube.writes)
    for _ in range(5):
        await harness.fresh_list()  # a new List each time: its time must not be a change
        revisit = await harness.visit()
        assert revisit is None, "nothing to wait for: only a change wakes it"
    assert harness.kube.writes[settled:] == []
    assert sim.requests(UPDATE) == 0


async def test_a_scale_answered_429_a_few_times_is_applied_once_together_takes_it(
    harness: Harness, sim: Simulator
) -> None:
    await harness.create_ready_cluster()
    sim.admin.fail(429, UPDATE, count=MAX_IDENTICAL_UPDATES, retry_after=0.1)
    wanted = spec(numGpus=16)

    async def applied() -> bool:
        await harness.visit(wanted, generation=2)
        return sim.requests(UPDATE, "200") == 1

    # Refused PUTs are not "accepted": they must not count towards UpdateNotApplied.
    done: bool = await wait_for_async(
        applied, timeout=10, interval=0.05, what="the scale to be accepted"
    )
    assert done
    assert sim.requests(UPDATE, "429") == MAX_IDENTICAL_UPDATES
    assert "UpdateNotApplied" not in harness.reasons()
    assert harness.condition("Stalled")["status"] == "False"


async def test_a_cluster_missing_from_the_list_is_not_looked_up_again_while_a_get_backs_off(
    harness: Harness, sim: Simulator
) -> None:
    # The records name a cluster the List does not show; GETs of it fail.
    harness.kube.status[(NAMESPACE, NAME)] = {
        "clusterId": "c-not-listed",
        "ownership": {"uid": UID, "keyFingerprint": key_fingerprint(KEY)},
    }
    sim.admin.fail(503, GET, retry_after=30)
    for _ in range(5):
        await harness.visit()
    assert sim.requests(GET) == 1, "one GET, then the backoff (30 s, as Together asked)"
    synced = harness.condition("Synced")
    assert (synced["status"], synced["reason"]) == ("False", "TogetherUnavailable")
