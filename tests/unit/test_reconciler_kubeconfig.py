"""Publishing the kubeconfig Secret: a new cluster's Secret is created in one call; a Secret
by that name the GPUCluster does not own refuses the create and is never touched."""

from __future__ import annotations

import base64

import pytest

from tests.unit.reconciler_harness import (
    NAME,
    NAMESPACE,
    SCENARIO_TIMEOUT_SECONDS,
    Harness,
)
from together_operator.controller.kubeconfig_secret import KUBECONFIG_KEY

pytestmark = pytest.mark.timeout(SCENARIO_TIMEOUT_SECONDS)
SECRET = f"{NAME}-kubeconfig"


async def test_a_new_clusters_secret_is_created_without_reading_it_first(
    harness: Harness,
) -> None:
    await harness.create_ready_cluster()

    assert KUBECONFIG_KEY in harness.kube.secrets[(NAMESPACE, SECRET)]["data"]
    assert SECRET not in harness.kube.secret_reads
    assert harness.kube.refused_creates == []
    assert harness.status()["kubeconfigSecretName"] == SECRET


async def test_a_foreign_secret_refuses_the_create_and_is_left_alone(harness: Harness) -> None:
    harness.kube.put_secret(NAMESPACE, SECRET, {"note": "made by a person"})

    await harness.visit()
    await harness.bring_to_ready()

    assert harness.kube.refused_creates == [SECRET]
    stored = harness.kube.secrets[(NAMESPACE, SECRET)]
    assert base64.b64decode(stored["data"]["note"]).decode() == "made by a person"
    assert KUBECONFIG_KEY not in stored["data"]
    assert harness.condition("Stalled")["reason"] == "KubeconfigSecretConflict"
    assert "kubeconfigSecretName" not in harness.status()


async def test_a_published_secret_deleted_by_a_person_is_created_again(
    harness: Harness,
) -> None:
    """The status names the Secret, so the operator reads before writing; gone, it is made."""
    await harness.create_ready_cluster()
    del harness.kube.secrets[(NAMESPACE, SECRET)]
    harness.memory.secret.digest = None  # what the watch does when the Secret is deleted

    await harness.visit()

    assert KUBECONFIG_KEY in harness.kube.secrets[(NAMESPACE, SECRET)]["data"]
    assert SECRET in harness.kube.secret_reads
    assert harness.kube.refused_creates == []
