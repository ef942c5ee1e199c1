"""The reconciler finalizing a GPUCluster: Orphan, delete-and-wait, an unresolved create, and
a 404 seen with another key."""

from __future__ import annotations

import pytest

from tests.unit.reconciler_harness import (
    CREATE,
    CREATE_GRACE_SECONDS,
    DELETE,
    FAST_POLL_SECONDS,
    KEY,
    NAME,
    NAMESPACE,
    OTHER_KEY,
    SCENARIO_TIMEOUT_SECONDS,
    TO_GONE_SECONDS,
    UID,
    Harness,
    Simulator,
    spec,
)
from together_operator.controller.fleet import key_fingerprint
from together_operator.controller.kubeconfig_secret import KUBECONFIG_KEY
from together_operator.gpucluster.status import rfc3339

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)


async def test_finalize_with_orphan_policy_releases_without_deleting_at_together(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []

    await harness.visit()
    results.append(await harness.finalize(spec(deletionPolicy="Orphan")))

    assert results == [None]
    assert sim.requests(DELETE) == 0
    assert len(sim.live_clusters()) == 1
    assert "Orphaned" in harness.reasons()


async def test_finalize_deletes_once_waits_while_deleting_and_releases_when_gone(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []
    kubeconfig_secret = (NAMESPACE, f"{NAME}-kubeconfig")

    await harness.create_ready_cluster()
    assert KUBECONFIG_KEY in harness.kube.secrets[kubeconfig_secret]["data"]
    results.append(await harness.finalize())
    assert harness.condition("Reconciling")["reason"] == "Deleting"
    results.append(await harness.finalize())
    sim.advance(TO_GONE_SECONDS)
    results.append(await harness.finalize())

    deleting_first, deleting_again, released = results
    assert deleting_first == FAST_POLL_SECONDS, "checked again at the fast cadence"
    assert deleting_again == FAST_POLL_SECONDS
    assert released is None
    assert sim.requests(DELETE) == 1
    assert sim.live_clusters() == []
    assert harness.reasons().count("Deleting") == 1
    assert "Deleted" in harness.reasons()
    assert kubeconfig_secret not in harness.kube.secrets, "the owned kubeconfig Secret goes too"


async def test_finalize_with_an_unresolved_intent_waits_out_the_create_grace_before_releasing(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []
    # A create was started (intent recorded) and its answer lost; nothing is listed yet.
    harness.kube.status[(NAMESPACE, NAME)] = {
        "ownership": {"uid": UID, "createIntentAt": rfc3339(sim.clock.now())}
    }

    results.append(await harness.finalize())
    assert harness.condition("Reconciling")["reason"] == "ConfirmingCreate"
    sim.advance(CREATE_GRACE_SECONDS / 2)
    results.append(await harness.finalize())
    sim.advance(CREATE_GRACE_SECONDS / 2 + 1)
    results.append(await harness.finalize())

    at_start, halfway, after_grace = results
    assert at_start == pytest.approx(CREATE_GRACE_SECONDS)
    assert halfway == pytest.approx(CREATE_GRACE_SECONDS / 2)
    assert after_grace is None
    assert sim.requests(CREATE) == 0
    assert sim.requests(DELETE) == 0


async def test_finalize_does_not_release_on_404_seen_with_a_different_key(
    harness: Harness, sim: Simulator
) -> None:
    # The credentials Secret now holds KEY; the cluster was created with OTHER_KEY, so
    # Together's 404 may only mean "not visible to this key", not "gone".
    harness.kube.put_secret(NAMESPACE, "together-credentials", {"apiKey": KEY})
    harness.kube.status[(NAMESPACE, NAME)] = {
        "clusterId": "c-created-with-the-old-key",
        "ownership": {"uid": UID, "keyFingerprint": key_fingerprint(OTHER_KEY)},
    }
    with_secret = spec(credentialsSecretRef={"name": "together-credentials"})
    results: list[float | None] = []

    results.append(await harness.finalize(with_secret))
    results.append(await harness.finalize(with_secret))

    assert all(result is not None and result > 0 for result in results), results
    assert sim.requests("GPUClusterService_Get", "404") == 2
    assert sim.requests(DELETE) == 0
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "CredentialsChanged"
    assert key_fingerprint(OTHER_KEY) in stalled["message"]
    assert KEY not in stalled["message"]


async def test_orphan_releases_even_a_spec_this_operator_cannot_read(harness: Harness) -> None:
    harness.kube.status[(NAMESPACE, NAME)] = {
        "clusterId": "c-kept",
        "ownership": {"uid": UID, "keyFingerprint": key_fingerprint(KEY)},
    }
    unreadable = {**spec(), "gpuType": "A-GPU-FROM-THE-FUTURE"}
    assert await harness.finalize(unreadable) is not None  # without Orphan: it must wait
    assert harness.condition("Stalled")["reason"] == "InvalidSpec"
    assert "deletionPolicy: Orphan" in harness.condition("Stalled")["message"]
    released = await harness.finalize({**unreadable, "deletionPolicy": "Orphan"})
    assert released is None
    assert "Orphaned" in harness.reasons()
    assert "c-kept is left running" in harness.events[-1][2]
