"""Shared factories: a GPUCluster spec as users write it, and Together's view of a cluster."""

from __future__ import annotations

from typing import Any

from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.together.models import (
    BillingType,
    ClusterStatus,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GpuType,
)

REGION = "us-central-8"


def spec_fields(**overrides: Any) -> dict[str, Any]:
    """A minimal valid spec (camelCase, as in a manifest); a None override removes a field."""
    fields: dict[str, Any] = {
        "region": REGION,
        "gpuType": "H100_SXM",
        "numGpus": 8,
        "cudaVersion": "12.5",
        "nvidiaDriverVersion": "555",
        **overrides,
    }
    return {key: value for key, value in fields.items() if value is not None}


def gpucluster_spec(**overrides: Any) -> GPUClusterSpec:
    """:func:`spec_fields`, parsed."""
    return GPUClusterSpec.model_validate(spec_fields(**overrides))


def cluster_fields(**overrides: Any) -> dict[str, Any]:
    """Together's answer for a cluster (snake_case, as on the wire)."""
    return {
        "cluster_id": "c-1",
        "cluster_name": "team-a-train",
        "region": REGION,
        "status": ClusterStatus.READY,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        **overrides,
    }


def cluster_info(**overrides: Any) -> GPUClusterInfo:
    """:func:`cluster_fields`, parsed by the client's wire model."""
    return GPUClusterInfo.model_validate(cluster_fields(**overrides))


def create_request(**overrides: Any) -> GPUClusterCreateRequest:
    """A valid create body for the simulator's catalogue."""
    fields: dict[str, Any] = {
        "cluster_name": "someone-else",
        "region": REGION,
        "gpu_type": GpuType.H100_SXM,
        "num_gpus": 8,
        "billing_type": BillingType.ON_DEMAND,
        "cuda_version": "12.5",
        "nvidia_driver_version": "555",
        **overrides,
    }
    # A None override leaves that field out (the contract has no nullable fields).
    return GPUClusterCreateRequest.model_validate(
        {key: value for key, value in fields.items() if value is not None}
    )
