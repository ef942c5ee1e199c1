"""The reconciler creating a cluster: the intent before the POST, a lost answer adopted, a
refusal cleared and backed off."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from tests.factories import gpucluster_spec
from tests.unit.reconciler_harness import (
    CREATE,
    CREATE_GRACE_SECONDS,
    FAST_POLL_SECONDS,
    KEY,
    NAME,
    NAMESPACE,
    SCENARIO_TIMEOUT_SECONDS,
    SPEC,
    UID,
    Harness,
    KubeWrite,
    Simulator,
    spec,
)
from together_operator.controller.fleet import key_fingerprint
from together_operator.gpucluster.plan import Incarnation, desired_cluster_name
from together_operator.gpucluster.status import rfc3339

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)


def ownership_writes(harness: Harness) -> list[Mapping[str, Any]]:
    """The status.ownership part of every status write, in order."""
    return [
        w.body["ownership"]
        for w in harness.kube.writes
        if w.method == "patch_status" and "ownership" in w.body
    ]


async def test_first_visit_records_the_intent_before_posting_then_the_cluster_id(
    harness: Harness, sim: Simulator
) -> None:
    # Every write of records is paired with the number of creates Together had seen by then.
    record_writes: list[tuple[Mapping[str, Any], int]] = []

    def witness(write: KubeWrite) -> None:
        if write.method == "patch_status" and "ownership" in write.body:
            record_writes.append((write.body, sim.requests(CREATE)))

    harness.kube.on_write = witness

    await harness.visit(generation=3)

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    name = desired_cluster_name(gpucluster_spec(), Incarnation(NAMESPACE, NAME, UID))
    assert cluster.cluster_name == name
    intent_write, creates_before = record_writes[0]
    assert intent_write["ownership"] == {
        "uid": UID,
        "clusterName": name,
        "createIntentAt": rfc3339(sim.clock.now()),
    }
    assert creates_before == 0, "the intent must be stored before the POST"
    recorded_write, creates_after = record_writes[1]
    assert creates_after == 1
    assert recorded_write["clusterId"] == cluster.cluster_id
    assert recorded_write["ownership"] == {
        "uid": UID,
        "createIntentAt": None,
        "keyFingerprint": key_fingerprint(KEY),
    }
    assert len(record_writes) == 2
    assert harness.kube.annotations == {}, "no records where a tenant could write them"
    status = harness.status()
    assert status["clusterId"] == cluster.cluster_id
    assert status["ownership"] == {
        "uid": UID,
        "clusterName": name,
        "keyFingerprint": key_fingerprint(KEY),
    }
    assert status["observedGeneration"] == 3
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Synced",
        "Reconciling",
        "Stalled",
        "NodesHealthy",
    }
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert harness.condition("Ready")["status"] == "False"
    assert harness.condition("Reconciling")["status"] == "True"
    assert harness.condition("Synced")["status"] == "True"
    assert ("Normal", "Created") in {(kind, reason) for kind, reason, _ in harness.events}


async def test_the_intent_is_written_only_on_the_object_the_decision_saw(
    harness: Harness, sim: Simulator
) -> None:
    # Another writer (a second operator instance, say) moved the object on meanwhile.
    stale = harness.kube.gpucluster(spec(), 1)
    await harness.kube.patch_status(NAMESPACE, NAME, {"somethingElse": "x"})
    revisit = await harness.reconciler.reconcile(stale, harness.memory, harness.event)
    assert revisit is not None, "decided again soon, on the fresh object"
    assert revisit < 1.0
    assert sim.requests(CREATE) == 0, "no POST without the intent stored first"
    assert "ownership" not in harness.status()
    await harness.visit()
    assert sim.requests(CREATE) == 1


async def test_create_whose_answer_is_lost_keeps_the_intent_and_adopts_the_committed_cluster(
    harness: Harness, sim: Simulator
) -> None:
    sim.admin.drop(CREATE)

    await harness.visit()
    assert harness.kube.records().get("createIntentAt"), "intent kept: the outcome is unknown"
    assert "clusterId" not in harness.status()
    assert harness.condition("Synced")["status"] == "False"
    await harness.visit_until(lambda: "Adopted" in harness.reasons(), "adoption")

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    assert sim.requests(CREATE, "dropped") == 1
    assert harness.reasons().count("Adopted") == 1
    assert harness.status()["clusterId"] == cluster.cluster_id
    assert "createIntentAt" not in harness.kube.records()
    assert "adopted" not in harness.kube.records(), "its own create, not an adoption"


async def test_rejected_create_clears_the_intent_stalls_and_does_not_post_again_during_backoff(
    harness: Harness, sim: Simulator
) -> None:
    # A CUDA/driver pair the region does not offer: Together answers 400 to the POST.
    unoffered = spec(cudaVersion="12.9", nvidiaDriverVersion="575")

    for _ in range(3):
        await harness.visit(unoffered)

    assert sim.requests(CREATE) == 1
    assert sim.requests(CREATE, "400") == 1
    assert sim.live_clusters() == []
    intents = [o["createIntentAt"] for o in ownership_writes(harness) if "createIntentAt" in o]
    assert len(intents) == 2
    assert intents[0] is not None
    assert intents[1] is None, "a definite no clears the intent"
    assert "createIntentAt" not in harness.kube.records()
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "InvalidRequest"
    assert "not offered" in stalled["message"]
    assert harness.condition("Ready")["status"] == "False"
    assert harness.reasons().count("InvalidRequest") == 1


async def test_synced_stays_false_while_the_last_exchange_failed_and_none_followed(
    harness: Harness, sim: Simulator
) -> None:
    sim.admin.fail(500, CREATE, count=1)
    await harness.visit()
    assert harness.condition("Synced")["reason"] == "TogetherUnavailable"
    # The intent is waited out from the cache: no call to Together, so nothing new to say.
    for _ in range(2):
        await harness.visit()
        assert harness.condition("Reconciling")["reason"] == "ConfirmingCreate"
        synced = harness.condition("Synced")
        assert (synced["status"], synced["reason"]) == ("False", "TogetherUnavailable")
    sim.advance(CREATE_GRACE_SECONDS + 1)
    await asyncio.sleep(4 * FAST_POLL_SECONDS)  # the backoff of the failed create, in real time
    await harness.fresh_list()
    await harness.visit()
    assert sim.requests(CREATE) == 2
    assert harness.condition("Synced")["status"] == "True"


async def test_a_new_object_waits_for_its_finalizer_without_writing_anything(
    harness: Harness, sim: Simulator
) -> None:
    """kopf adds the finalizer as the daemon starts: the first visit neither creates (the
    object could vanish without it) nor writes a status for that moment's wait; once the
    finalizer is on, the next visit creates."""
    unfinalized = replace(harness.kube.gpucluster(SPEC, 1), finalized=False)

    revisit = await harness.reconciler.reconcile(unfinalized, harness.memory, harness.event)

    assert revisit is not None
    assert sim.requests(CREATE) == 0
    assert harness.kube.writes == []
    await harness.visit()
    assert sim.requests(CREATE) == 1
    assert harness.status()["clusterId"]


async def test_a_created_cluster_is_watched_by_its_id_at_once(harness: Harness) -> None:
    """The fleet observer polls fast while a watched cluster is in a transitional state; a new
    cluster must be watched by its ID from the create on, not from the object's next visit
    (which only a change it is watched for would bring)."""
    await harness.visit()

    cluster_id = harness.status()["clusterId"]
    observer = harness.reconciler.fleet.observer_for(KEY)
    assert set(observer.interest.by_cluster) == {cluster_id}
    assert observer.interest.by_name == {}
