"""The wire models read what real servers send, including what the contract does not list."""

from __future__ import annotations

from together_operator.together.models import (
    ClusterStatus,
    GPUClusterInfo,
    GPUClusterUpdateRequest,
)


def test_cluster_info_tolerates_unknown_status_and_fields() -> None:
    info = GPUClusterInfo.model_validate(
        {
            "cluster_id": "c-1",
            "cluster_name": "train",
            "region": "us-central-8",
            "status": "SomethingNew",
            "brand_new_field": {"nested": True},
            "phase_transitions": [
                {
                    "phase": "CLUSTER_PHASE_FROM_THE_FUTURE",
                    "transition_time": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    assert info.status == "SomethingNew"
    assert info.kube_config == ""
    assert info.phase_transitions[0].phase == "CLUSTER_PHASE_FROM_THE_FUTURE"
    assert ClusterStatus.SCHEDULED == "Scheduled"


def test_an_update_request_serialises_only_what_was_set() -> None:
    update = GPUClusterUpdateRequest(num_gpus=16)
    assert update.model_dump(mode="json", exclude_none=True) == {"num_gpus": 16}
