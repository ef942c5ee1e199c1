"""The cluster lifecycle as data: a record of one cluster, its planned phases, and the pure
functions that move it forward at given instants.

Nothing here reads a clock. A cluster carries a plan (phases to enter at stated times); the
store applies each due step at the step's own time, so the result is the same whether the
cluster was polled every millisecond or not at all.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import yaml
from pydantic import BaseModel, Field

from together_operator.simulator import remediations
from together_operator.simulator.addons import AddOnRecord
from together_operator.simulator.remediations import RemediationRecord
from together_operator.together.health import PassiveHealthCheckAlert
from together_operator.together.models import (
    ClusterPhase,
    ClusterPhaseTransition,
    ClusterStatus,
    GPUClusterControlPlaneNode,
    GPUClusterGPUWorkerNode,
    GPUClusterInfo,
    GPUClusterNodeLifecycleEvent,
    NodeLifecycleReason,
    NodePhase,
    NodePhaseTransition,
)

GPUS_PER_NODE: Final = 8
CONTROL_PLANE_NODES: Final = 3
# The API returns "recent" lifecycle events; keep the timeline bounded.
MAX_LIFECYCLE_EVENTS: Final = 200

# The status a cluster reports in each phase. The status enum is coarser than the phases:
# see the package's Deviations for the choices where a phase has no status of its own.
STATUS_FOR_PHASE: Final[dict[str, str]] = {
    ClusterPhase.QUEUED: ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
    # Outside the status enum, as real servers send it for a reservation not yet started.
    ClusterPhase.SCHEDULED: ClusterStatus.SCHEDULED,
    ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES: ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
    ClusterPhase.WAITING_FOR_DATA_PLANE_NODES: ClusterStatus.WAITING_FOR_DATA_PLANE_NODES,
    ClusterPhase.WAITING_FOR_SUBNET: ClusterStatus.WAITING_FOR_SUBNET,
    ClusterPhase.WAITING_FOR_SHARED_VOLUME: ClusterStatus.WAITING_FOR_SHARED_VOLUME,
    ClusterPhase.WAITING_FOR_AUTO_SCALER: ClusterStatus.WAITING_FOR_DATA_PLANE_NODES,
    ClusterPhase.INSTALLING_DRIVERS: ClusterStatus.INSTALLING_DRIVERS,
    ClusterPhase.RUNNING_ACCEPTANCE_TESTS: ClusterStatus.RUNNING_ACCEPTANCE_TESTS,
    ClusterPhase.RUNNING_NCCL_TESTS: ClusterStatus.RUNNING_ACCEPTANCE_TESTS,
    # The status enum has no "tests failed" value: the cluster is reported as Degraded, and
    # the phase history says why.
    ClusterPhase.ACCEPTANCE_TESTS_FAILED: ClusterStatus.DEGRADED,
    ClusterPhase.NCCL_TESTS_FAILED: ClusterStatus.DEGRADED,
    ClusterPhase.READY: ClusterStatus.READY,
    ClusterPhase.PAUSED: ClusterStatus.PAUSED,
    ClusterPhase.ON_DEMAND_COMPUTE_PAUSED: ClusterStatus.ON_DEMAND_COMPUTE_PAUSED,
    ClusterPhase.DEGRADED: ClusterStatus.DEGRADED,
    ClusterPhase.DELETING: ClusterStatus.DELETING,
}
# Every phase but Deleting (which only the API's delete starts) can be forced by the admin API.
FORCEABLE_PHASES: Final = tuple(p for p in STATUS_FOR_PHASE if p != ClusterPhase.DELETING)
PAUSED_STATUSES: Final = (ClusterStatus.PAUSED, ClusterStatus.ON_DEMAND_COMPUTE_PAUSED)
# The latest instant the simulated cloud can represent; a step due later never comes.
END_OF_TIME: Final = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Timings:
    """How long each step takes, in simulated seconds at speed 1 (about a minute to Ready).

    A speed factor `s` makes every step `s` times shorter; a reservation start time is a real
    instant and is never scaled.
    """

    speed: float = 1.0
    queued: float = 5.0  # a reservation whose window opened, until provisioning starts
    control_plane: float = 15.0
    data_plane: float = 15.0
    subnet: float = 5.0
    shared_volume: float = 10.0  # only clusters with a shared volume wait for it
    drivers: float = 15.0
    acceptance_tests: float = 10.0
    scaling: float = 15.0
    deleting: float = 10.0
    preemptible_step: float = 5.0
    remediation_step: float = 10.0

    def after(self, start: datetime, seconds: float) -> datetime:
        """The instant `seconds` of simulated time after `start` (never past the end of
        representable time: a reservation in year 9999 must not crash the clock)."""
        try:
            return min(start + timedelta(seconds=seconds / self.speed), END_OF_TIME)
        except OverflowError:
            return END_OF_TIME

    @property
    def create_to_ready(self) -> float:
        """Simulated seconds from create to Ready, for a cluster without a shared volume."""
        return (
            self.control_plane
            + self.data_plane
            + self.subnet
            + self.drivers
            + self.acceptance_tests
        )


class PlannedPhase(BaseModel):
    """A phase the cluster will enter at `at`."""

    at: datetime
    phase: str


class ClusterRecord(BaseModel):
    """Everything the simulator knows of one cluster; `info` is its current wire view."""

    info: GPUClusterInfo
    sequence: int
    #: The account the cluster belongs to: only keys of that account see it.
    account: str = "default"
    plan: list[PlannedPhase] = Field(default_factory=list)
    preemptible_node_ids: list[str] = Field(default_factory=list)
    next_preemptible_step_at: datetime | None = None
    gone_at: datetime | None = None
    deleted: bool = False
    volume_ids: list[str] = Field(default_factory=list)
    kube_config_on_ready: str = ""
    nodes_made: int = 0
    # Every add-on, disabled ones included (the wire view shows enabled ones only).
    add_ons: list[AddOnRecord] = Field(default_factory=list)
    remediations: list[RemediationRecord] = Field(default_factory=list)
    alerts: list[PassiveHealthCheckAlert] = Field(default_factory=list)

    @property
    def cluster_id(self) -> str:
        """The cluster's ID."""
        return self.info.cluster_id

    def next_due(self) -> datetime | None:
        """The earliest instant at which something is scheduled to happen to this cluster."""
        if self.deleted:
            return None
        times = [
            t
            for t in (self.next_preemptible_step_at, self.gone_at, remediations.next_due(self))
            if t is not None
        ]
        if self.plan:
            times.append(self.plan[0].at)
        return min(times, default=None)


def generated_kubeconfig(cluster_id: str, cluster_name: str) -> str:
    """A syntactically valid kubeconfig for a simulated cluster; it holds no real secret."""
    server = f"https://{cluster_id}.clusters.simulator.invalid:6443"
    user = f"{cluster_name}-admin"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": user, "user": {"token": f"simulated-token-{cluster_id}"}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }
    return yaml.safe_dump(document, sort_keys=False)


def encode_kubeconfig(kubeconfig_yaml: str) -> str:
    """Kubeconfig YAML as `kube_config` carries it: base64."""
    return base64.b64encode(kubeconfig_yaml.encode()).decode()


def plan_creation(
    start: datetime,
    timings: Timings,
    reservation_start: datetime | None,
    *,
    shared_volume: bool = False,
) -> list[PlannedPhase]:
    """The phases of a new cluster: Scheduled then Queued while a reservation waits for its
    window, then control plane, data plane, subnet, the shared volume (if it has one),
    drivers, acceptance tests, Ready: the order of the contract's phase enum."""
    plan: list[PlannedPhase] = []
    begin = start
    if reservation_start is not None and reservation_start > start:
        plan.append(PlannedPhase(at=start, phase=ClusterPhase.SCHEDULED))
        plan.append(PlannedPhase(at=reservation_start, phase=ClusterPhase.QUEUED))
        begin = timings.after(reservation_start, timings.queued)
    steps = [
        (ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES, timings.control_plane),
        (ClusterPhase.WAITING_FOR_DATA_PLANE_NODES, timings.data_plane),
        (ClusterPhase.WAITING_FOR_SUBNET, timings.subnet),
    ]
    if shared_volume:
        steps.append((ClusterPhase.WAITING_FOR_SHARED_VOLUME, timings.shared_volume))
    steps += [
        (ClusterPhase.INSTALLING_DRIVERS, timings.drivers),
        (ClusterPhase.RUNNING_ACCEPTANCE_TESTS, timings.acceptance_tests),
    ]
    elapsed = 0.0
    for phase, duration in steps:
        plan.append(PlannedPhase(at=timings.after(begin, elapsed), phase=phase))
        elapsed += duration
    plan.append(PlannedPhase(at=timings.after(begin, elapsed), phase=ClusterPhase.READY))
    return plan


def plan_scaling(start: datetime, timings: Timings) -> list[PlannedPhase]:
    """The phases of a worker-count change on a settled cluster: data plane, then Ready."""
    return [
        PlannedPhase(at=start, phase=ClusterPhase.WAITING_FOR_DATA_PLANE_NODES),
        PlannedPhase(at=timings.after(start, timings.scaling), phase=ClusterPhase.READY),
    ]


def enter_phase(record: ClusterRecord, phase: str, at: datetime) -> None:
    """Record that the cluster entered `phase` at `at`, with what that phase brings along."""
    info = record.info
    info.phase_transitions.append(ClusterPhaseTransition(phase=phase, transition_time=at))
    info.status = STATUS_FOR_PHASE.get(phase, info.status)
    if phase == ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES and not info.control_plane_nodes:
        info.control_plane_nodes = [
            _control_plane_node(record, index, at) for index in range(CONTROL_PLANE_NODES)
        ]
    elif phase == ClusterPhase.WAITING_FOR_DATA_PLANE_NODES:
        for node in info.control_plane_nodes:
            _set_node_phase(node, NodePhase.RUNNING, at)
        info.control_plane_ready = True
        if not info.kube_config:
            info.kube_config = record.kube_config_on_ready
        start_worker_changes(record, at)
    elif phase == ClusterPhase.INSTALLING_DRIVERS:
        finish_worker_changes(record, at)
    elif phase == ClusterPhase.READY:
        # Converge on the latest target: num_gpus may have changed while provisioning.
        start_worker_changes(record, at)
        finish_worker_changes(record, at)
        for worker in info.gpu_worker_nodes:  # resumes paused preemptible nodes too
            _set_node_phase(worker, NodePhase.RUNNING, at)
        if info.first_ready_at is None:
            info.first_ready_at = at
    elif phase in (ClusterPhase.PAUSED, ClusterPhase.ON_DEMAND_COMPUTE_PAUSED):
        paused = info.gpu_worker_nodes if phase == ClusterPhase.PAUSED else on_demand_nodes(record)
        for worker in paused:
            _set_node_phase(worker, NodePhase.PAUSED, at)


def _set_node_phase(
    node: GPUClusterControlPlaneNode | GPUClusterGPUWorkerNode, phase: str, at: datetime
) -> None:
    if node.phase_transitions and node.phase_transitions[-1].phase == phase:
        return
    node.phase_transitions.append(NodePhaseTransition(phase=phase, transition_time=at))
    node.status = _NODE_STATUS[phase]


_NODE_STATUS: Final = {
    NodePhase.BOOTING: "Booting",
    NodePhase.RUNNING: "Running",
    NodePhase.SUCCEEDED: "Deleted",
    NodePhase.FAILED: "Failed",
    NodePhase.PAUSED: "Paused",
}


def _control_plane_node(
    record: ClusterRecord, index: int, at: datetime
) -> GPUClusterControlPlaneNode:
    info = record.info
    node = GPUClusterControlPlaneNode(
        node_id=f"{info.cluster_id}-cp-{index}",
        status="",
        host_name=f"{info.cluster_name}-control-plane-{index}",
        num_cpu_cores=16,
        memory_gib=64,
        network="10.0.0.0/24",
        public_ipv4=f"203.0.113.{10 + index}",
    )
    _set_node_phase(node, NodePhase.BOOTING, at)
    return node


def _worker_node(
    record: ClusterRecord, at: datetime, *, preemptible: bool
) -> GPUClusterGPUWorkerNode:
    record.nodes_made += 1
    number = record.nodes_made
    info = record.info
    kind = "preemptible" if preemptible else "gpu"
    host_name = f"{info.cluster_name}-{kind}-{number}"
    node = GPUClusterGPUWorkerNode(
        node_id=f"{info.cluster_id}-node-{number}",
        status="",
        host_name=host_name,
        num_cpu_cores=208,
        num_gpus=GPUS_PER_NODE,
        memory_gib=1800,
        networks=[f"ib{port}" for port in range(GPUS_PER_NODE)],
        instance_id=f"i-{info.cluster_id[:8]}{number:04d}",
        slurm_worker_hostname=host_name if info.cluster_type == "SLURM" else None,
        marked_for_deletion=False,
        public_ipv4=f"198.51.100.{number % 250 + 1}",
        ib_hca_type="ConnectX-7",
        ib_hca_count=GPUS_PER_NODE,
        nvswitch_count=4,
        nvswitch_type="NVSwitch",
        ephemeral_storage="28Ti",
        auto_remediation_enabled=True,
    )
    _set_node_phase(node, NodePhase.BOOTING, at)
    if preemptible:
        record.preemptible_node_ids.append(node.node_id)
    return node


def _record_event(
    record: ClusterRecord, node: GPUClusterGPUWorkerNode, reason: str, message: str, at: datetime
) -> None:
    events = record.info.node_lifecycle_events
    if events is None:
        events = record.info.node_lifecycle_events = []
    events.append(
        GPUClusterNodeLifecycleEvent(
            node_id=node.host_name, reason=reason, message=message, timestamp=at
        )
    )
    del events[:-MAX_LIFECYCLE_EVENTS]


def _remove_node(
    record: ClusterRecord, node: GPUClusterGPUWorkerNode, reason: str, message: str, at: datetime
) -> None:
    info = record.info
    info.gpu_worker_nodes = [n for n in info.gpu_worker_nodes if n.node_id != node.node_id]
    if node.node_id in record.preemptible_node_ids:
        record.preemptible_node_ids.remove(node.node_id)
    _set_node_phase(node, NodePhase.SUCCEEDED, at)
    node.deleted_at = at
    if info.deleted_gpu_worker_nodes is None:
        info.deleted_gpu_worker_nodes = []
    info.deleted_gpu_worker_nodes.append(node)
    _record_event(record, node, reason, message, at)


def on_demand_nodes(record: ClusterRecord) -> list[GPUClusterGPUWorkerNode]:
    """The live worker nodes that carry the cluster's `num_gpus` (not preemptible ones)."""
    preemptible = set(record.preemptible_node_ids)
    return [n for n in record.info.gpu_worker_nodes if n.node_id not in preemptible]


def start_worker_changes(record: ClusterRecord, at: datetime) -> None:
    """Begin moving the on-demand workers to `num_gpus`: add booting nodes, or mark extra ones
    for deletion."""
    nodes = [n for n in on_demand_nodes(record) if not n.marked_for_deletion]
    target = record.info.num_gpus // GPUS_PER_NODE
    for _ in range(target - len(nodes)):
        node = _worker_node(record, at, preemptible=False)
        record.info.gpu_worker_nodes.append(node)
        _record_event(record, node, NodeLifecycleReason.SCALED_UP, "GPU worker node added", at)
    for node in nodes[target:]:
        node.marked_for_deletion = True


def finish_worker_changes(record: ClusterRecord, at: datetime) -> None:
    """Complete the changes `start_worker_changes` began: booted nodes run, marked ones go."""
    for node in on_demand_nodes(record):
        if node.marked_for_deletion:
            _remove_node(
                record, node, NodeLifecycleReason.SCALED_DOWN, "GPU worker node removed", at
            )
        else:
            _set_node_phase(node, NodePhase.RUNNING, at)


def step_preemptible(record: ClusterRecord, at: datetime, free_preemptible_gpus: int) -> None:
    """Move `allocated_preemptible_gpus` one node (8 GPUs) toward the desired count, when
    stock allows; the store schedules the next step."""
    info = record.info
    if info.allocated_preemptible_gpus > info.desired_preemptible_gpus:
        node = _preemptible_nodes(record)[-1]
        _remove_node(
            record, node, NodeLifecycleReason.SCALED_DOWN, "preemptible GPU node released", at
        )
        info.allocated_preemptible_gpus -= GPUS_PER_NODE
    elif (
        info.allocated_preemptible_gpus < info.desired_preemptible_gpus
        and free_preemptible_gpus >= GPUS_PER_NODE
    ):
        node = _worker_node(record, at, preemptible=True)
        _set_node_phase(node, NodePhase.RUNNING, at)
        info.gpu_worker_nodes.append(node)
        _record_event(
            record, node, NodeLifecycleReason.SCALED_UP, "preemptible GPU node allocated", at
        )
        info.allocated_preemptible_gpus += GPUS_PER_NODE


def preempt(record: ClusterRecord, gpus: int, at: datetime) -> int:
    """Reclaim up to `gpus` allocated preemptible GPUs (whole nodes, newest first); returns how
    many GPUs were reclaimed."""
    reclaimed = 0
    while reclaimed < gpus and record.info.allocated_preemptible_gpus > 0:
        node = _preemptible_nodes(record)[-1]
        _remove_node(
            record, node, NodeLifecycleReason.PREEMPTED, "preemptible GPU node reclaimed", at
        )
        record.info.allocated_preemptible_gpus -= GPUS_PER_NODE
        reclaimed += GPUS_PER_NODE
    return reclaimed


def _preemptible_nodes(record: ClusterRecord) -> list[GPUClusterGPUWorkerNode]:
    ids = set(record.preemptible_node_ids)
    return [n for n in record.info.gpu_worker_nodes if n.node_id in ids]


def wants_preemptible_step(record: ClusterRecord) -> bool:
    """Whether preemptible allocation should move: the cluster has been Ready, is not being
    deleted, and allocated differs from desired."""
    info = record.info
    return (
        not record.deleted
        and info.first_ready_at is not None
        and info.status != ClusterStatus.DELETING
        and info.status not in PAUSED_STATUSES
        and info.allocated_preemptible_gpus != info.desired_preemptible_gpus
    )
