"""The reconciler creating a cluster: the intent before the POST, a lost answer adopted, a
refusal cleared and backed off."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from tests.unit.reconciler_harness import (
    CREATE,
    CREATE_GRACE_SECONDS,
    FAST_POLL_SECONDS,
    KEY,
    SCENARIO_TIMEOUT_SECONDS,
    Harness,
    KubeWrite,
    Simulator,
    spec,
)
from together_operator.controller.fleet import key_fingerprint
from together_operator.controller.reconciler import CLUSTER_ID_ANNOTATION
from together_operator.controller.records import INTENT_ANNOTATION, KEY_ANNOTATION
from together_operator.gpucluster.status import rfc3339

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)


async def test_first_visit_records_the_intent_before_posting_then_the_cluster_id(
    harness: Harness, sim: Simulator
) -> None:
    # Every annotation patch is paired with the number of creates Together had seen by then.
    annotation_patches: list[tuple[Mapping[str, Any], int]] = []

    def witness(write: KubeWrite) -> None:
        if write.method == "patch_annotations":
            annotation_patches.append((write.body, sim.requests(CREATE)))

    harness.kube.on_write = witness

    await harness.visit(generation=3)

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    intent_patch, creates_before = annotation_patches[0]
    assert set(intent_patch) == {INTENT_ANNOTATION}
    assert intent_patch[INTENT_ANNOTATION] == rfc3339(sim.clock.now())
    assert creates_before == 0, "the intent must be stored before the POST"
    recorded_patch, creates_after = annotation_patches[1]
    assert creates_after == 1
    assert recorded_patch == {
        CLUSTER_ID_ANNOTATION: cluster.cluster_id,
        KEY_ANNOTATION: key_fingerprint(KEY),
        INTENT_ANNOTATION: None,
    }
    assert len(annotation_patches) == 2
    assert harness.annotations() == {
        CLUSTER_ID_ANNOTATION: cluster.cluster_id,
        KEY_ANNOTATION: key_fingerprint(KEY),
    }
    status = harness.status()
    assert status["clusterId"] == cluster.cluster_id
    assert status["observedGeneration"] == 3
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Synced",
        "Reconciling",
        "Stalled",
    }
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert harness.condition("Ready")["status"] == "False"
    assert harness.condition("Reconciling")["status"] == "True"
    assert harness.condition("Synced")["status"] == "True"
    assert ("Normal", "Created") in {(kind, reason) for kind, reason, _ in harness.events}


async def test_create_whose_answer_is_lost_keeps_the_intent_and_adopts_the_committed_cluster(
    harness: Harness, sim: Simulator
) -> None:
    sim.admin.drop(CREATE)

    await harness.visit()
    assert INTENT_ANNOTATION in harness.annotations(), "intent kept: the outcome is unknown"
    assert CLUSTER_ID_ANNOTATION not in harness.annotations()
    assert harness.condition("Synced")["status"] == "False"
    await harness.visit_until(lambda: "Adopted" in harness.reasons(), "adoption")

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    assert sim.requests(CREATE, "dropped") == 1
    assert harness.reasons().count("Adopted") == 1
    assert harness.annotations()[CLUSTER_ID_ANNOTATION] == cluster.cluster_id
    assert INTENT_ANNOTATION not in harness.annotations()
    assert harness.status()["clusterId"] == cluster.cluster_id


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
    intents = [w.body for w in harness.kube.writes if INTENT_ANNOTATION in w.body]
    assert len(intents) == 2
    assert intents[0][INTENT_ANNOTATION] is not None
    assert intents[1] == {INTENT_ANNOTATION: None}, "a definite no clears the intent"
    assert INTENT_ANNOTATION not in harness.annotations()
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
