"""Wire models for Together's GPU cluster API (`/v1/compute/...`), snake_case as on the wire.

They mirror the schemas of the OpenAPI contract (`together-compute-openapi.yaml`) and keep its
names (`GPUClusterInfo`, `GPUClusterCreateRequest`, ...) so a reader can find each one there.

Reading is tolerant, because real servers run ahead of the published contract: unknown fields
are ignored, `status`, phase and other open-ended strings are plain `str` (the known values are
constants below, not closed enums), and fields the contract marks required but that carry no
identity default to empty values. Requests the operator builds are strict where the contract
is (enums as `StrEnum`s, defined here once and imported by the CRD models), so a bad
request fails before it is sent.

Serialise with `model_dump(mode="json", exclude_none=True)`: the contract has no nullable
fields, so an unset optional field must be left out rather than sent as `null`.
Remediations and health-check alerts are in :mod:`together_operator.together.health`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import Field

from together_operator.together.health import Remediation
from together_operator.together.wire import WireModel

__all__ = ["WireModel"]  # re-exported: the base of every wire model lives in `wire`


class ClusterType(StrEnum):
    """`cluster_type`: what runs on the cluster."""

    KUBERNETES = "KUBERNETES"
    SLURM = "SLURM"


class BillingType(StrEnum):
    """`billing_type`: how the cluster is paid for."""

    RESERVED = "RESERVED"
    ON_DEMAND = "ON_DEMAND"
    SCHEDULED_CAPACITY = "SCHEDULED_CAPACITY"


class GpuType(StrEnum):
    """`gpu_type`: the GPU model of the worker nodes."""

    H100_SXM = "H100_SXM"
    H200_SXM = "H200_SXM"
    RTX_6000_PCI = "RTX_6000_PCI"
    L40_PCIE = "L40_PCIE"
    B200_SXM = "B200_SXM"
    H100_SXM_INF = "H100_SXM_INF"
    B300_SXM = "B300_SXM"


class LoadBalancer(StrEnum):
    """`cluster_config.load_balancer`: the load balancer installed in the tenant cluster."""

    NONE = "NONE"
    TRAEFIK = "TRAEFIK"
    NGINX = "NGINX"
    ISTIO = "ISTIO"


class AddOnType(StrEnum):
    """`add_on_type`: what an add-on installs. The contract types it as a string and lists the
    values in prose (two lists that differ); this is their union with `AddOnConfig`'s members."""

    DASHBOARD = "dashboard"
    INGRESS = "ingress"
    TORCHPASS = "torchpass"
    HEADLAMP = "headlamp"
    SLURM_WEB = "slurm_web"


class DcgmDiagLevel(StrEnum):
    """`acceptance_tests_params.dcgm_diag_level`."""

    SHORT = "DCGM_DIAG_LEVEL_SHORT"
    MEDIUM = "DCGM_DIAG_LEVEL_MEDIUM"
    LONG = "DCGM_DIAG_LEVEL_LONG"
    EXTENDED = "DCGM_DIAG_LEVEL_EXTENDED"


class ClusterStatus:
    """Known values of `GPUClusterInfo.status`; servers also send others (e.g. `Scheduled`)."""

    SCHEDULED: Final = "Scheduled"
    WAITING_FOR_CONTROL_PLANE_NODES: Final = "WaitingForControlPlaneNodes"
    WAITING_FOR_DATA_PLANE_NODES: Final = "WaitingForDataPlaneNodes"
    WAITING_FOR_SUBNET: Final = "WaitingForSubnet"
    WAITING_FOR_SHARED_VOLUME: Final = "WaitingForSharedVolume"
    INSTALLING_DRIVERS: Final = "InstallingDrivers"
    RUNNING_ACCEPTANCE_TESTS: Final = "RunningAcceptanceTests"
    PAUSED: Final = "Paused"
    ON_DEMAND_COMPUTE_PAUSED: Final = "OnDemandComputePaused"
    READY: Final = "Ready"
    DEGRADED: Final = "Degraded"
    DELETING: Final = "Deleting"


class ClusterPhase:
    """Values of `ClusterPhaseTransition.phase`."""

    QUEUED: Final = "CLUSTER_PHASE_QUEUED"
    SCHEDULED: Final = "CLUSTER_PHASE_SCHEDULED"
    WAITING_FOR_CONTROL_PLANE_NODES: Final = "CLUSTER_PHASE_WAITING_FOR_CONTROL_PLANE_NODES"
    WAITING_FOR_DATA_PLANE_NODES: Final = "CLUSTER_PHASE_WAITING_FOR_DATA_PLANE_NODES"
    WAITING_FOR_SUBNET: Final = "CLUSTER_PHASE_WAITING_FOR_SUBNET"
    WAITING_FOR_SHARED_VOLUME: Final = "CLUSTER_PHASE_WAITING_FOR_SHARED_VOLUME"
    WAITING_FOR_AUTO_SCALER: Final = "CLUSTER_PHASE_WAITING_FOR_AUTO_SCALER"
    INSTALLING_DRIVERS: Final = "CLUSTER_PHASE_INSTALLING_DRIVERS"
    RUNNING_ACCEPTANCE_TESTS: Final = "CLUSTER_PHASE_RUNNING_ACCEPTANCE_TESTS"
    ACCEPTANCE_TESTS_FAILED: Final = "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED"
    RUNNING_NCCL_TESTS: Final = "CLUSTER_PHASE_RUNNING_NCCL_TESTS"
    NCCL_TESTS_FAILED: Final = "CLUSTER_PHASE_NCCL_TESTS_FAILED"
    READY: Final = "CLUSTER_PHASE_READY"
    PAUSED: Final = "CLUSTER_PHASE_PAUSED"
    ON_DEMAND_COMPUTE_PAUSED: Final = "CLUSTER_PHASE_ON_DEMAND_COMPUTE_PAUSED"
    DEGRADED: Final = "CLUSTER_PHASE_DEGRADED"
    DELETING: Final = "CLUSTER_PHASE_DELETING"


class NodePhase:
    """Values of `NodePhaseTransition.phase`."""

    PENDING: Final = "NODE_PHASE_PENDING"
    SCHEDULING: Final = "NODE_PHASE_SCHEDULING"
    BOOTING: Final = "NODE_PHASE_BOOTING"
    BOOTSTRAPPING: Final = "NODE_PHASE_BOOTSTRAPPING"
    RUNNING: Final = "NODE_PHASE_RUNNING"
    SUCCEEDED: Final = "NODE_PHASE_SUCCEEDED"
    FAILED: Final = "NODE_PHASE_FAILED"
    PAUSED: Final = "NODE_PHASE_PAUSED"


class NodeLifecycleReason:
    """Known values of `GPUClusterNodeLifecycleEvent.reason`."""

    SCALED_UP: Final = "TogetherScaledUp"
    SCALED_DOWN: Final = "TogetherScaledDown"
    PREEMPTED: Final = "TogetherPreempted"


class SharedVolumeStatus:
    """Known values of `GPUClustersSharedVolume.status`."""

    SCHEDULED: Final = "scheduled"
    AVAILABLE: Final = "available"
    BOUND: Final = "bound"
    PROVISIONING: Final = "provisioning"
    DELETING: Final = "deleting"
    FAILED: Final = "failed"
    ACCESS_REVOKED: Final = "access_revoked"
    UNKNOWN: Final = "unknown"


# --- errors ---------------------------------------------------------------------------------


class ErrorInfo(WireModel):
    """A `google.rpc.ErrorInfo` in an error's `details`: `reason` is a stable, machine-readable
    cause (e.g. `OUT_OF_STOCK`), unlike the message, which is for people."""

    type: str = Field(default="", alias="@type")
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)


class ErrorReason:
    """Known `ErrorInfo.reason` values (the simulator's; see its Deviations)."""

    OUT_OF_STOCK: Final = "OUT_OF_STOCK"


ERROR_INFO_TYPE: Final = "type.googleapis.com/google.rpc.ErrorInfo"


class ErrorBody(WireModel):
    """An error body in grpc-gateway's `google.rpc.Status` shape:
    `{"code": <grpc code>, "message": "...", "details": [ErrorInfo, ...]}`. The contract
    documents no error body at all; clients read it leniently."""

    code: int | None = None
    message: str = ""
    details: list[ErrorInfo] = Field(default_factory=list)


# --- cluster configuration ------------------------------------------------------------------


class OIDCConfig(WireModel):
    """OIDC authentication for the tenant cluster's API server."""

    issuer_url: str
    client_id: str
    username_claim: str
    username_prefix: str
    group_claim: str
    group_prefix: str
    ca_cert: str | None = None


class SlurmStartupScripts(WireModel):
    """Optional Slurm lifecycle scripts."""

    worker_prolog: str | None = None
    worker_epilog: str | None = None
    controller_prolog: str | None = None
    controller_epilog: str | None = None
    login_init_script: str | None = None
    nodeset_init_script: str | None = None
    extra_slurm_conf: str | None = None


class Toggle(WireModel):
    """The `{enabled: bool}` shape shared by several configuration objects."""

    enabled: bool | None = None


class InstanceClusterConfig(WireModel):
    """Cluster-level configuration (`cluster_config`)."""

    # Read as free text: a value newer than this contract must not make a List unreadable.
    load_balancer: str = "NONE"
    kubernetes_dashboard_enabled: bool | None = None
    jumphost_enabled: bool | None = None
    slurm_startup_scripts: SlurmStartupScripts | None = None
    ingress: Toggle | None = None
    observability: Toggle | None = None
    gpu_operator_version: str | None = None
    network_operator_version: str | None = None
    ssh_ca_enabled: bool | None = None


class AcceptanceTestsParams(WireModel):
    """GPU acceptance test options for cluster bring-up."""

    enabled: bool | None = None
    dcgm_diag_level: DcgmDiagLevel | None = None
    gpu_burn_duration: int | None = None
    nccl_single_node_skipped: bool | None = None
    gpu_burn_skipped: bool | None = None
    dcgm_diag_skipped: bool | None = None
    nccl_multi_node_skipped: bool | None = None
    storage_skipped: bool | None = None


class AddOnConfig(WireModel):
    """Configuration of one add-on; only the member for its type is set."""

    dashboard: Toggle | None = None
    ingress: Toggle | None = None
    torchpass: Toggle | None = None
    slurm_web: Toggle | None = None
    headlamp: Toggle | None = None


class AddOnState(WireModel):
    """Runtime state of one add-on (each member is an empty object today)."""

    dashboard: dict[str, Any] | None = None
    ingress: dict[str, Any] | None = None
    torchpass: dict[str, Any] | None = None
    slurm_web: dict[str, Any] | None = None
    headlamp: dict[str, Any] | None = None


class AddOnCreateRequest(WireModel):
    """An add-on to enable at cluster creation (`GPUClusterCreateRequest.add_ons`)."""

    name: str
    add_on_type: AddOnType
    config: AddOnConfig | None = None


class ClusterAddOnCreateRequest(AddOnCreateRequest):
    """The body of `POST /v1/compute/clusters/{cluster_id}/addons`."""


class AddOnUpdateRequest(WireModel):
    """A change to an existing add-on, found by name; `config` is merged into its config."""

    name: str
    config: AddOnConfig | None = None


class ClusterAddOnUpdateRequest(WireModel):
    """The body of `PUT .../addons/{addon_id}`: `config` is merged into the add-on's config."""

    config: AddOnConfig | None = None


class AddOnInfo(WireModel):
    """An add-on: in a cluster's `add_ons` (enabled ones only), or from the add-on endpoints."""

    name: str
    add_on_type: str
    config: AddOnConfig = Field(default_factory=AddOnConfig)
    state: AddOnState = Field(default_factory=AddOnState)

    @property
    def enabled(self) -> bool:
        """Whether its config's member for its own type says `enabled: true` (the contract:
        only such add-ons are listed in a cluster's `add_ons`)."""
        member = getattr(self.config, self.add_on_type, None)
        return bool(isinstance(member, Toggle) and member.enabled)

    @property
    def running(self) -> bool:
        """Whether Together reports its state: the member of its type is set once it runs."""
        return getattr(self.state, self.add_on_type, None) is not None


class ClusterAddOnsListResponse(WireModel):
    """The body of `GET /v1/compute/clusters/{cluster_id}/addons`."""

    add_ons: list[AddOnInfo] = Field(default_factory=list)


class ClusterAddOnDeleteResponse(WireModel):
    """The body of `DELETE .../addons/{addon_id}`: an empty object."""


# --- shared volumes --------------------------------------------------------------------------


class GPUClustersSharedVolume(WireModel):
    """A shared volume (`status` is a `SharedVolumeStatus` value)."""

    volume_id: str
    volume_name: str
    size_tib: int
    status: str


class GPUClustersSharedVolumeCreateRequest(WireModel):
    """The body of `POST /v1/compute/clusters/storage/volumes`, also inline in cluster create."""

    volume_name: str
    size_tib: int
    region: str
    is_lifecycle_independent: bool | None = None
    project_id: str | None = None


class GPUClustersSharedVolumeUpdateRequest(WireModel):
    """The body of `PUT /v1/compute/clusters/storage/volumes` (the collection path)."""

    volume_id: str
    size_tib: int | None = None


class GPUClustersSharedVolumes(WireModel):
    """The body of `GET /v1/compute/clusters/storage/volumes`."""

    volumes: list[GPUClustersSharedVolume] = Field(default_factory=list)


class GPUClustersSharedVolumeDeleteResponse(WireModel):
    """The body of `DELETE /v1/compute/clusters/storage/volumes/{volume_id}`."""

    success: bool


# --- cluster ---------------------------------------------------------------------------------


class ClusterPhaseTransition(WireModel):
    """One entry of a cluster's phase history (`phase` is a `ClusterPhase` value)."""

    phase: str
    transition_time: datetime


class NodePhaseTransition(WireModel):
    """One entry of a node's phase history (`phase` is a `NodePhase` value)."""

    phase: str
    transition_time: datetime


class GPUClusterControlPlaneNode(WireModel):
    """A control-plane node of the tenant cluster."""

    node_id: str
    status: str
    host_name: str
    num_cpu_cores: int = 0
    memory_gib: float = 0
    network: str = ""
    phase_transitions: list[NodePhaseTransition] = Field(default_factory=list)
    public_ipv4: str | None = None


class GPUClusterGPUWorkerNode(WireModel):
    """A GPU worker node (live in `gpu_worker_nodes`, gone in `deleted_gpu_worker_nodes`)."""

    node_id: str
    status: str
    host_name: str
    num_cpu_cores: int = 0
    num_gpus: int = 0
    memory_gib: float = 0
    networks: list[str] = Field(default_factory=list)
    phase_transitions: list[NodePhaseTransition] = Field(default_factory=list)
    instance_id: str | None = None
    latest_remediation: Remediation | None = None
    slurm_worker_hostname: str | None = None
    marked_for_deletion: bool | None = None
    public_ipv4: str | None = None
    ib_hca_type: str | None = None
    ib_hca_count: int | None = None
    nvswitch_count: int | None = None
    nvswitch_type: str | None = None
    ephemeral_storage: str | None = None
    auto_remediation_enabled: bool | None = None
    deleted_at: datetime | None = None


class GPUClusterVolume(WireModel):
    """A shared volume as attached to a cluster."""

    volume_id: str
    volume_name: str
    size_tib: int
    status: str


class GPUClusterNodeLifecycleEvent(WireModel):
    """A node scale-up, scale-down or preemption (`reason` is a `NodeLifecycleReason` value)."""

    node_id: str
    reason: str
    message: str
    timestamp: datetime


class GPUClusterInfo(WireModel):
    """A GPU cluster as `GET /v1/compute/clusters/{cluster_id}` returns it.

    `kube_config` is base64-encoded kubeconfig YAML, empty until the control plane exists.
    `status` is free text: see `ClusterStatus` for the known values.
    """

    cluster_id: str
    cluster_name: str
    region: str
    status: str
    cluster_type: str = "KUBERNETES"
    gpu_type: str = ""
    billing_type: str = ""
    num_gpus: int = 0
    cuda_version: str = ""
    nvidia_driver_version: str = ""
    project_id: str = ""
    kube_config: str = ""
    num_cpu_workers: int = 0
    desired_preemptible_gpus: int = 0
    allocated_preemptible_gpus: int = 0
    num_capacity_pool_gpus: int = 0
    num_reserved_gpus: int = 0
    volumes: list[GPUClusterVolume] = Field(default_factory=list)
    control_plane_nodes: list[GPUClusterControlPlaneNode] = Field(default_factory=list)
    gpu_worker_nodes: list[GPUClusterGPUWorkerNode] = Field(default_factory=list)
    phase_transitions: list[ClusterPhaseTransition] = Field(default_factory=list)
    add_ons: list[AddOnInfo] = Field(default_factory=list)
    duration_hours: int | None = None
    slurm_shm_size_gib: int | None = None
    capacity_pool_id: str | None = None
    reservation_start_time: datetime | None = None
    reservation_end_time: datetime | None = None
    install_traefik: bool | None = None
    created_at: datetime | None = None
    oidc_config: OIDCConfig | None = None
    cluster_config: InstanceClusterConfig | None = None
    machine_cluster_id: str | None = None
    first_ready_at: datetime | None = None
    is_in_substrate: bool | None = None
    control_plane_ready: bool | None = None
    ums_project_id: str | None = None
    ums_org_id: str | None = None
    os_image: str | None = None
    nvidia_driver_version_id: str | None = None
    deleted_gpu_worker_nodes: list[GPUClusterGPUWorkerNode] | None = None
    node_lifecycle_events: list[GPUClusterNodeLifecycleEvent] | None = None


class GPUClusters(WireModel):
    """The body of `GET /v1/compute/clusters`."""

    clusters: list[GPUClusterInfo] = Field(default_factory=list)


class GPUClusterCreateRequest(WireModel):
    """The body of `POST /v1/compute/clusters`.

    Give either `nvidia_version_id` (from `RegionListResponse`), or both `cuda_version` and
    `nvidia_driver_version` (the legacy selector).
    """

    region: str
    gpu_type: GpuType
    num_gpus: int
    cluster_name: str
    billing_type: BillingType
    cluster_type: ClusterType | None = None
    duration_days: int | None = None
    shared_volume: GPUClustersSharedVolumeCreateRequest | None = None
    volume_id: str | None = None
    auto_scaled: bool | None = None
    auto_scale_max_gpus: int | None = None
    slurm_shm_size_gib: int | None = None
    capacity_pool_id: str | None = None
    reservation_start_time: datetime | None = None
    reservation_end_time: datetime | None = None
    install_traefik: bool | None = None
    cuda_version: str | None = None
    nvidia_driver_version: str | None = None
    nvidia_version_id: str | None = None
    slurm_image: str | None = None
    oidc_config: OIDCConfig | None = None
    project_id: str | None = None
    acceptance_tests_params: AcceptanceTestsParams | None = None
    cluster_config: InstanceClusterConfig | None = None
    num_capacity_pool_gpus: int | None = None
    auto_scale: bool | None = None
    num_preemptible_gpus: int | None = None
    num_reserved_gpus: int | None = None
    add_ons: list[AddOnCreateRequest] | None = None


class GPUClusterUpdateRequest(WireModel):
    """The body of `PUT /v1/compute/clusters/{cluster_id}`: omitted fields keep their value."""

    cluster_type: ClusterType | None = None
    num_gpus: int | None = None
    reservation_end_time: datetime | None = None
    cluster_config: InstanceClusterConfig | None = None
    num_reserved_gpus: int | None = None
    num_preemptible_gpus: int | None = None
    num_capacity_pool_gpus: int | None = None
    add_ons: list[AddOnUpdateRequest] | None = None


class GPUClusterDeleteResponse(WireModel):
    """The body of `DELETE /v1/compute/clusters/{cluster_id}`."""

    cluster_id: str


# --- regions ---------------------------------------------------------------------------------


class ClusterDriverVersionInfo(WireModel):
    """A CUDA / NVIDIA driver combination offered in a region; `id` is its `nvidia_version_id`."""

    cuda_version: str
    nvidia_driver_version: str
    id: str
    os: str = ""


class Region(WireModel):
    """A region with its GPU types (`supported_instance_types`) and driver versions."""

    name: str
    supported_instance_types: list[str] = Field(default_factory=list)
    driver_versions: list[ClusterDriverVersionInfo] = Field(default_factory=list)


class RegionListResponse(WireModel):
    """The body of `GET /v1/compute/regions`."""

    regions: list[Region] = Field(default_factory=list)


# --- a List, read tolerantly ----------------------------------------------------------------


class UnreadableCluster(WireModel):
    """An entry of a List that does not fit ``GPUClusterInfo``, named as far as it can be."""

    cluster_id: str = ""
    cluster_name: str = ""


class ClusterListing(WireModel):
    """A List: the clusters that could be read, and the entries set aside."""

    clusters: list[GPUClusterInfo] = Field(default_factory=list)
    unreadable: list[UnreadableCluster] = Field(default_factory=list)
