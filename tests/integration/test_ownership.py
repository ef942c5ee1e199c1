"""One GPUCluster, one Together cluster: across namespaces, operator instances and restarts.

Each test describes a way a cluster could be doubled, leaked, exposed to another team or
deleted for it, and checks the harm did not happen, where the harm would show: at Together
(the simulator's record of every cluster, and of every request) and in Kubernetes.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.integration.conftest import (
    API_KEY,
    OTHER_ACCOUNT_KEY,
    ROTATED_KEY,
    GPUClusters,
    OperatorProcess,
    Simulator,
    scratch_namespace,
)
from tests.support import KubeTarget, wait_for
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION
from together_operator.together import operations

CREATE = operations.CREATE_CLUSTER


def cluster_id_of(gpuclusters: GPUClusters, namespace: str, name: str) -> str:
    obj = gpuclusters.get(namespace, name) or {}
    cluster_id: str = obj.get("status", {}).get("clusterId", "")
    return cluster_id


def live_ids(simulator: Simulator) -> set[str]:
    return {c.cluster_id for c in simulator.admin.live_clusters() if c.status != "Deleting"}


def copy_of(obj: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    """What `kubectl get -o yaml`, a rename and `kubectl apply` make of an object."""
    copied = copy.deepcopy(obj)
    meta = copied["metadata"]
    for field in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "managedFields",
        "finalizers",
        "deletionTimestamp",
    ):
        meta.pop(field, None)
    meta["namespace"], meta["name"] = namespace, name
    return copied  # status included: the API server drops it on create


def test_another_namespace_gets_nothing_of_a_cluster_it_does_not_own(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
    other_namespace: str,
) -> None:
    gpuclusters.create(namespace, "owner")
    gpuclusters.wait_condition(namespace, "owner", "Ready", "True", timeout=60)
    theirs = cluster_id_of(gpuclusters, namespace, "owner")
    owner = gpuclusters.get(namespace, "owner")
    assert owner is not None

    # With the operator's shared key, three ways to reach for the owner's cluster:
    gpuclusters.create(other_namespace, "by-id", clusterId=theirs)
    handwritten = {"compute.together.ai/cluster-id": theirs}
    gpuclusters.create(other_namespace, "by-record", annotations=handwritten)
    gpuclusters.custom.create_namespaced_custom_object(
        GROUP, VERSION, other_namespace, PLURAL, copy_of(owner, other_namespace, "by-copy")
    )

    refused = gpuclusters.wait_condition(
        other_namespace, "by-id", "Stalled", "True", reason="AdoptionNotAllowed"
    )
    assert theirs not in refused["message"]
    for name in ("by-record", "by-copy"):
        gpuclusters.wait_condition(other_namespace, name, "Ready", "True", timeout=60)
        assert cluster_id_of(gpuclusters, other_namespace, name) not in ("", theirs)
    # Nothing of the owner's cluster reached the other namespace: not its ID, not its
    # state, not its kubeconfig.
    by_id = (gpuclusters.get(other_namespace, "by-id") or {}).get("status", {})
    assert "clusterId" not in by_id
    assert "state" not in by_id
    with pytest.raises(ApiException) as missing:
        gpuclusters.core.read_namespaced_secret("by-id-kubeconfig", other_namespace)
    assert missing.value.status == 404

    for name in ("by-id", "by-record", "by-copy"):
        gpuclusters.delete_and_wait(other_namespace, name, timeout=60)
    assert theirs in live_ids(simulator), "deleting the others deleted the owner's cluster"
    gpuclusters.delete_and_wait(namespace, "owner")


def test_two_operator_instances_acting_at_once_never_create_a_cluster_twice(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
    tmp_path: Path,
) -> None:
    # Two more instances that do not wait for the Lease act beside the session's operator:
    # only the conditional create intent stands between them and a second POST.
    others = [
        OperatorProcess(
            operator.kubeconfig,
            operator.base_url,
            tmp_path / f"extra-{index}",
            extra_env={"TOGETHER_OPERATOR_LEADER_ELECTION": "false"},
        )
        for index in range(2)
    ]
    for other in others:
        other.log_dir.mkdir()
        other.start()
    simulator.admin.delay(CREATE, 1.0)  # every instance has time to decide to create
    names = [f"twice-{index}" for index in range(6)]
    creates_before = simulator.admin.request_count(CREATE)
    try:
        for name in names:
            gpuclusters.create(namespace, name)
        for name in names:
            gpuclusters.wait_condition(namespace, name, "Ready", "True", timeout=90)
    finally:
        simulator.admin.delay(CREATE, 0)
        for other in others:
            other.stop()
    for name in names:
        assert len(simulator.clusters_for(f"{namespace}-{name}")) == 1, name
    assert simulator.admin.request_count(CREATE) - creates_before == len(names)
    for name in names:
        gpuclusters.delete_and_wait(namespace, name, timeout=60)


def test_a_second_instance_waits_for_the_lease_and_takes_over_when_the_first_dies(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
    tmp_path: Path,
) -> None:
    standby = OperatorProcess(operator.kubeconfig, operator.base_url, tmp_path)
    standby.start()
    try:
        wait_for(
            lambda: "waiting for Lease" in standby.logs(),
            timeout=30,
            what="the second instance to wait for the Lease",
        )
        operator.kill()  # no chance to let go: the Lease must expire first
        gpuclusters.create(namespace, "after-takeover")
        gpuclusters.wait_condition(namespace, "after-takeover", "Ready", "True", timeout=90)
        assert "holding Lease" in standby.logs()
        assert len(simulator.clusters_for(f"{namespace}-after-takeover")) == 1
        gpuclusters.delete_and_wait(namespace, "after-takeover", timeout=60)
    finally:
        standby.stop()  # lets go of the Lease: the session's operator takes it at once
        operator.start()


def test_a_namespace_deleted_while_the_operator_is_down_still_deletes_its_clusters(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    kube: KubeTarget,
) -> None:
    with scratch_namespace(kube) as team:
        gpuclusters.core.create_namespaced_secret(
            team, {"metadata": {"name": "team-key"}, "stringData": {"apiKey": API_KEY}}
        )
        gpuclusters.create(team, "doomed", credentialsSecretRef={"name": "team-key"})
        gpuclusters.wait_condition(team, "doomed", "Ready", "True", timeout=60)
        cluster_id = cluster_id_of(gpuclusters, team, "doomed")
        guarded = gpuclusters.core.read_namespaced_secret("team-key", team)
        assert "compute.together.ai/credentials-in-use" in guarded.metadata.finalizers

        operator.kill()
        try:
            # What the namespace controller does first: delete every object in it. (The
            # local control plane has no controller-manager: the test does its part.)
            gpuclusters.core.delete_namespaced_secret("team-key", team)
            gpuclusters.delete(team, "doomed")
        finally:
            operator.start()
        wait_for(
            lambda: gpuclusters.get(team, "doomed") is None,
            timeout=90,
            what="the GPUCluster to be finalized after the restart",
        )
        assert cluster_id not in live_ids(simulator), "its cluster leaked"

        def secret_gone() -> bool:
            try:
                gpuclusters.core.read_namespaced_secret("team-key", team)
            except ApiException as error:
                return bool(error.status == 404)
            return False

        wait_for(secret_gone, timeout=30, what="the key's Secret to be let go")


def test_a_lost_create_never_adopts_another_objects_cluster_of_the_same_old_name(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    kube: KubeTarget,
) -> None:
    # <namespace>-<name> was the same for x-y/z and x/y-z.
    base = f"tgc-{os.urandom(3).hex()}"
    with scratch_namespace(kube, f"{base}-y") as first, scratch_namespace(kube, base) as second:
        gpuclusters.create(first, "z")
        gpuclusters.wait_condition(first, "z", "Ready", "True", timeout=60)
        theirs = cluster_id_of(gpuclusters, first, "z")
        # The second object's create fails before Together commits: its outcome is unknown
        # to the operator, which must resolve it without taking the first one's cluster.
        simulator.admin.fail(500, CREATE, count=1)
        gpuclusters.create(second, "y-z")
        gpuclusters.wait_condition(second, "y-z", "Ready", "True", timeout=90)
        mine = cluster_id_of(gpuclusters, second, "y-z")
        assert mine not in ("", theirs)
        gpuclusters.delete_and_wait(second, "y-z", timeout=60)
        assert theirs in live_ids(simulator), "deleting the second deleted the first's cluster"
        gpuclusters.delete_and_wait(first, "z", timeout=60)


def test_a_deleted_or_edited_kubeconfig_secret_is_written_again(
    operator: OperatorProcess, gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "restored")
    gpuclusters.wait_condition(namespace, "restored", "Ready", "True", timeout=60)
    secret = "restored-kubeconfig"
    original = gpuclusters.core.read_namespaced_secret(secret, namespace).data["kubeconfig"]

    gpuclusters.core.delete_namespaced_secret(secret, namespace)
    wait_for(
        lambda: _kubeconfig(gpuclusters, namespace, secret) == original,
        timeout=30,
        what="the deleted kubeconfig Secret to be written again",
    )
    edited = {"data": {"kubeconfig": "Z2FyYmFnZQ=="}}  # "garbage"
    gpuclusters.core.patch_namespaced_secret(secret, namespace, edited)
    wait_for(
        lambda: _kubeconfig(gpuclusters, namespace, secret) == original,
        timeout=30,
        what="the edited kubeconfig Secret to be put back",
    )
    gpuclusters.delete_and_wait(namespace, "restored")


def _kubeconfig(gpuclusters: GPUClusters, namespace: str, name: str) -> str | None:
    try:
        data = gpuclusters.core.read_namespaced_secret(name, namespace).data or {}
    except ApiException:
        return None
    value: str | None = data.get("kubeconfig")
    return value


def _own_key_secret(gpuclusters: GPUClusters, namespace: str, key: str) -> None:
    gpuclusters.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "team-key"}, "stringData": {"apiKey": key}}
    )


def _change_key(gpuclusters: GPUClusters, namespace: str, key: str) -> None:
    gpuclusters.core.patch_namespaced_secret("team-key", namespace, {"stringData": {"apiKey": key}})


def test_an_adopted_cluster_is_not_let_go_because_another_accounts_key_cannot_see_it(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    made = simulator_create(simulator, "made-by-hand")
    _own_key_secret(gpuclusters, namespace, API_KEY)
    gpuclusters.create(
        namespace, "adopted", clusterId=made, credentialsSecretRef={"name": "team-key"}
    )
    gpuclusters.wait_condition(namespace, "adopted", "Ready", "True", timeout=60)
    # The team's Secret now holds a key of another account, to which the cluster is a 404.
    _change_key(gpuclusters, namespace, OTHER_ACCOUNT_KEY)
    gpuclusters.delete(namespace, "adopted")
    gpuclusters.wait_condition(
        namespace, "adopted", "Stalled", "True", reason="CredentialsChanged", timeout=60
    )
    assert gpuclusters.get(namespace, "adopted") is not None, "let go while the cluster runs"
    assert made in live_ids(simulator)
    # With the account's key back, the deletion finishes, and the cluster is gone with it.
    _change_key(gpuclusters, namespace, API_KEY)
    wait_for(
        lambda: gpuclusters.get(namespace, "adopted") is None,
        timeout=60,
        what="the GPUCluster to be finalized with the right key",
    )
    assert made not in live_ids(simulator)


def test_a_rotated_key_of_the_same_account_deletes_the_cluster_it_did_not_create(
    operator: OperatorProcess, simulator: Simulator, gpuclusters: GPUClusters, namespace: str
) -> None:
    _own_key_secret(gpuclusters, namespace, API_KEY)
    gpuclusters.create(namespace, "rotated", credentialsSecretRef={"name": "team-key"})
    gpuclusters.wait_condition(namespace, "rotated", "Ready", "True", timeout=60)
    cluster_id = cluster_id_of(gpuclusters, namespace, "rotated")
    _change_key(gpuclusters, namespace, ROTATED_KEY)
    # The old key is revoked: wait until no cached copy of it can be used (the key cache
    # lives 1 s in these tests), so that the whole deletion runs with the rotated key.
    time.sleep(2.0)
    gpuclusters.delete(namespace, "rotated")
    wait_for(
        lambda: gpuclusters.get(namespace, "rotated") is None,
        timeout=60,
        what="the deletion to finish with the rotated key",
    )
    assert cluster_id not in live_ids(simulator)


@pytest.mark.parametrize("scope", ["default-project", "account"])
def test_a_cluster_in_a_project_is_found_after_a_lost_answer_however_lists_are_scoped(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    namespace: str,
    scope: str,
) -> None:
    simulator.admin.set_list_scope(scope)
    try:
        creates_before = simulator.admin.request_count(CREATE)
        simulator.admin.drop(CREATE)  # committed at Together, the answer never arrives
        gpuclusters.create(namespace, "in-project", projectId="team-p")
        gpuclusters.wait_condition(namespace, "in-project", "Ready", "True", timeout=90)
        [made] = simulator.clusters_for(f"{namespace}-in-project")
        assert made.cluster.project_id == "team-p"
        assert simulator.admin.request_count(CREATE) - creates_before == 1
        gpuclusters.delete_and_wait(namespace, "in-project", timeout=60)
        assert made.cluster.cluster_id not in live_ids(simulator), "its cluster leaked"
    finally:
        simulator.admin.set_list_scope("account")


def simulator_create(simulator: Simulator, name: str) -> str:
    """A cluster made outside the operator, with the operator's account key."""
    import httpx

    body = {
        "cluster_name": name,
        "region": "us-central-8",
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "billing_type": "ON_DEMAND",
        "cuda_version": "12.5",
        "nvidia_driver_version": "555",
    }
    answer = httpx.post(
        f"{simulator.base_url}/v1/compute/clusters",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json=body,
        timeout=10,
    )
    answer.raise_for_status()
    cluster_id: str = answer.json()["cluster_id"]
    return cluster_id
