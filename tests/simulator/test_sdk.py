"""The official Together SDK, unmodified, drives the simulator end to end."""

from __future__ import annotations

import httpx
import pytest
import together
from together import Together

from tests.simulator.conftest import DRIVER_ID, REGION
from tests.simulator.contract import ContractChecks
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings

TIMINGS = Timings()


def test_sdk_creates_retrieves_lists_updates_and_deletes_a_cluster(
    sdk: Together, clock: FakeClock, contract_checks: ContractChecks
) -> None:
    regions = sdk.clusters.list_regions()
    region = next(r for r in regions.regions if r.name == REGION)
    assert "H100_SXM" in region.supported_instance_types

    created = sdk.clusters.create(
        cluster_name="sdk-cluster",
        region=REGION,
        gpu_type="H100_SXM",
        num_gpus=8,
        billing_type="ON_DEMAND",
        nvidia_version_id=DRIVER_ID,
        project_id="proj-a",
    )
    assert created.status == "WaitingForControlPlaneNodes"
    assert created.kube_config == ""

    clock.advance(TIMINGS.create_to_ready)
    ready = sdk.clusters.retrieve(created.cluster_id)
    assert ready.status == "Ready"
    assert ready.kube_config
    assert [p.phase for p in ready.phase_transitions][-1] == "CLUSTER_PHASE_READY"

    listed = sdk.clusters.list(project_id="proj-a")
    assert [c.cluster_id for c in listed.clusters] == [created.cluster_id]
    assert sdk.clusters.list(project_id="proj-b").clusters == []

    scaling = sdk.clusters.update(created.cluster_id, num_gpus=16, num_preemptible_gpus=8)
    assert scaling.num_gpus == 16
    assert scaling.desired_preemptible_gpus == 8
    assert scaling.status == "WaitingForDataPlaneNodes"

    deleted = sdk.clusters.delete(created.cluster_id)
    assert deleted.cluster_id == created.cluster_id
    assert sdk.clusters.retrieve(created.cluster_id).status == "Deleting"
    clock.advance(TIMINGS.deleting)
    with pytest.raises(together.NotFoundError):
        sdk.clusters.retrieve(created.cluster_id)

    operations = set(contract_checks.checked)
    assert {
        "#/components/schemas/RegionListResponse",
        "#/components/schemas/GPUClusterInfo",
        "#/components/schemas/GPUClusters",
        "#/components/schemas/GPUClusterDeleteResponse",
    } <= operations


def test_sdk_manages_shared_volumes(sdk: Together, contract_checks: ContractChecks) -> None:
    volume = sdk.clusters.storage.create(volume_name="datasets", size_tib=2, region=REGION)
    assert volume.status == "available"
    assert sdk.clusters.storage.retrieve(volume.volume_id).size_tib == 2

    grown = sdk.clusters.storage.update(volume_id=volume.volume_id, size_tib=4)
    assert grown.size_tib == 4
    listed = sdk.clusters.storage.list()
    assert [v.volume_id for v in listed.volumes] == [volume.volume_id]

    assert sdk.clusters.storage.delete(volume.volume_id).success is True
    with pytest.raises(together.NotFoundError):
        sdk.clusters.storage.retrieve(volume.volume_id)
    assert "#/components/schemas/GPUClustersSharedVolumeDeleteResponse" in contract_checks.checked


def test_sdk_sees_errors_with_their_status(sdk: Together) -> None:
    with pytest.raises(together.BadRequestError) as raised:
        sdk.clusters.create(
            cluster_name="bad",
            region=REGION,
            gpu_type="H100_SXM",
            num_gpus=12,
            billing_type="ON_DEMAND",
            nvidia_version_id=DRIVER_ID,
        )
    assert "num_gpus" in str(raised.value)
    wrong_key = Together(
        api_key="not-the-key", base_url=str(sdk.base_url), max_retries=0, http_client=httpx.Client()
    )
    with pytest.raises(together.AuthenticationError):
        wrong_key.clusters.list()
