"""The wire models read what real servers send, including what the contract does not list."""

from __future__ import annotations

from together_operator.together.models import (
    ClusterStatus,
    GPUClusterGPUWorkerNode,
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


def test_a_worker_node_reads_the_docs_example_of_latest_remediation() -> None:
    # The docs' example body (seeds/001) has no mode, trigger or state in latest_remediation:
    # a real answer like it must not make a List unreadable.
    node = GPUClusterGPUWorkerNode.model_validate(
        {
            "node_id": "n-1",
            "status": "Running",
            "host_name": "h",
            "latest_remediation": {
                "id": "r-1",
                "cluster_id": "c-1",
                "instance_id": "i-1",
                "reason": "<string>",
                "create_time": "2023-11-07T05:31:56Z",
            },
        }
    )
    assert node.latest_remediation is not None
    assert (node.latest_remediation.id, node.latest_remediation.state) == ("r-1", "")
