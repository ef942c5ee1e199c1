"""The clock-driven cluster lifecycle, on the store directly with a fake clock (no sleeping)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from tests.simulator.conftest import create_body
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.errors import Conflict, NotFound
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.state import CloudState
from together_operator.together.models import ClusterPhase, ClusterStatus, GPUClusterInfo

TIMINGS = Timings()
REGION_NAME = "us-central-8"
PROVISIONING_PHASES = [
    ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES,
    ClusterPhase.WAITING_FOR_DATA_PLANE_NODES,
    ClusterPhase.WAITING_FOR_SUBNET,
    ClusterPhase.INSTALLING_DRIVERS,
    ClusterPhase.RUNNING_ACCEPTANCE_TESTS,
    ClusterPhase.READY,
]


def new_state(clock: FakeClock, catalog: Catalog | None = None) -> CloudState:
    ids = (f"cluster-{n:04d}" for n in itertools.count())
    return CloudState(catalog=catalog or Catalog(), clock=clock, new_id=lambda: next(ids))


def phases(cluster: GPUClusterInfo) -> list[str]:
    return [transition.phase for transition in cluster.phase_transitions]


def ready_cluster(state: CloudState, clock: FakeClock, **overrides: Any) -> GPUClusterInfo:
    cluster = state.create_cluster(create_body(**overrides))
    clock.advance(TIMINGS.create_to_ready)
    ready = state.get_cluster(cluster.cluster_id)
    assert ready.status == ClusterStatus.READY
    return ready


def test_speed_one_takes_about_a_minute_from_create_to_ready() -> None:
    assert 45 <= TIMINGS.create_to_ready <= 90
    fast = Timings(speed=100)
    start = FakeClock().now()
    assert fast.after(start, fast.create_to_ready) - start == timedelta(seconds=0.6)


def test_new_cluster_walks_the_phases_in_order_to_ready() -> None:
    clock = FakeClock()
    state = new_state(clock)
    created = state.create_cluster(create_body(num_gpus=16))
    assert created.status == ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES
    seen = [created.status]
    for _ in range(int(TIMINGS.create_to_ready)):
        clock.advance(1)
        status = state.get_cluster(created.cluster_id).status
        if status != seen[-1]:
            seen.append(status)
    assert seen == [
        "WaitingForControlPlaneNodes",
        "WaitingForDataPlaneNodes",
        "WaitingForSubnet",
        "InstallingDrivers",
        "RunningAcceptanceTests",
        "Ready",
    ]
    ready = state.get_cluster(created.cluster_id)
    assert phases(ready) == PROVISIONING_PHASES
    times = [t.transition_time for t in ready.phase_transitions]
    assert times == sorted(times)
    assert ready.first_ready_at == times[-1]
    assert ready.control_plane_ready is True
    assert len(ready.control_plane_nodes) == 3
    assert [n.num_gpus for n in ready.gpu_worker_nodes] == [8, 8]
    assert all(n.status == "Running" for n in ready.gpu_worker_nodes)


def test_kube_config_is_empty_until_the_control_plane_is_ready() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = state.create_cluster(create_body())
    clock.advance(TIMINGS.control_plane - 1)
    waiting = state.get_cluster(cluster.cluster_id)
    assert waiting.kube_config == ""
    assert waiting.control_plane_ready is False
    clock.advance(1)
    assert state.get_cluster(cluster.cluster_id).kube_config != ""


def test_state_is_the_same_whether_polled_or_not() -> None:
    polled_clock, idle_clock = FakeClock(), FakeClock()
    polled, idle = new_state(polled_clock), new_state(idle_clock)
    body = create_body(num_gpus=16, num_preemptible_gpus=16)
    polled_id = polled.create_cluster(body).cluster_id
    idle_id = idle.create_cluster(body).cluster_id
    for _ in range(200):
        polled_clock.advance(0.5)
        polled.get_cluster(polled_id)
    idle_clock.advance(100)
    assert polled.get_cluster(polled_id) == idle.get_cluster(idle_id)


def test_scheduled_capacity_waits_for_its_reservation_then_is_queued() -> None:
    clock = FakeClock()
    state = new_state(clock)
    start = clock.now() + timedelta(hours=1)
    cluster = state.create_cluster(
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time=start.isoformat(),
            reservation_end_time=(start + timedelta(days=1)).isoformat(),
        )
    )
    assert cluster.status == ClusterStatus.SCHEDULED
    clock.advance(3599)
    assert state.get_cluster(cluster.cluster_id).status == ClusterStatus.SCHEDULED
    clock.advance(1)
    queued = state.get_cluster(cluster.cluster_id)
    assert queued.phase_transitions[-1].phase == ClusterPhase.QUEUED
    assert queued.status == ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES
    clock.advance(TIMINGS.queued + TIMINGS.create_to_ready)
    ready = state.get_cluster(cluster.cluster_id)
    assert phases(ready) == [ClusterPhase.SCHEDULED, ClusterPhase.QUEUED, *PROVISIONING_PHASES]
    assert ready.phase_transitions[1].transition_time == start


def test_scaling_up_passes_through_data_plane_and_adds_workers() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock)
    scaling = state.update_cluster(cluster.cluster_id, {"num_gpus": 24})
    assert scaling.status == ClusterStatus.WAITING_FOR_DATA_PLANE_NODES
    assert [n.status for n in scaling.gpu_worker_nodes] == ["Running", "Booting", "Booting"]
    clock.advance(TIMINGS.scaling)
    scaled = state.get_cluster(cluster.cluster_id)
    assert scaled.status == ClusterStatus.READY
    assert len(scaled.gpu_worker_nodes) == 3
    assert phases(scaled)[-2:] == [ClusterPhase.WAITING_FOR_DATA_PLANE_NODES, ClusterPhase.READY]


def test_scaling_down_retires_workers_into_deleted_nodes() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock, num_gpus=24)
    scaling = state.update_cluster(cluster.cluster_id, {"num_gpus": 8})
    assert [n.marked_for_deletion for n in scaling.gpu_worker_nodes] == [False, True, True]
    clock.advance(TIMINGS.scaling)
    scaled = state.get_cluster(cluster.cluster_id)
    assert len(scaled.gpu_worker_nodes) == 1
    assert scaled.deleted_gpu_worker_nodes is not None
    assert len(scaled.deleted_gpu_worker_nodes) == 2
    assert all(n.deleted_at is not None for n in scaled.deleted_gpu_worker_nodes)
    assert scaled.node_lifecycle_events is not None
    assert [e.reason for e in scaled.node_lifecycle_events].count("TogetherScaledDown") == 2


def test_scaling_while_provisioning_converges_when_ready() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = state.create_cluster(create_body(num_gpus=8))
    clock.advance(TIMINGS.control_plane + 1)
    state.update_cluster(cluster.cluster_id, {"num_gpus": 16})
    clock.advance(TIMINGS.create_to_ready)
    ready = state.get_cluster(cluster.cluster_id)
    assert ready.status == ClusterStatus.READY
    assert len(ready.gpu_worker_nodes) == 2


def test_preemptible_allocation_lags_desired_in_steps_of_eight() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock, num_gpus=32)
    updated = state.update_cluster(cluster.cluster_id, {"num_preemptible_gpus": 24})
    assert (updated.desired_preemptible_gpus, updated.allocated_preemptible_gpus) == (24, 0)
    allocated = []
    for _ in range(4):
        clock.advance(TIMINGS.preemptible_step)
        allocated.append(state.get_cluster(cluster.cluster_id).allocated_preemptible_gpus)
    assert allocated == [8, 16, 24, 24]
    final = state.get_cluster(cluster.cluster_id)
    assert len(final.gpu_worker_nodes) == 4 + 3
    assert final.node_lifecycle_events is not None
    scale_ups = [e for e in final.node_lifecycle_events if "preemptible" in e.message]
    assert [e.reason for e in scale_ups] == ["TogetherScaledUp"] * 3
    stamps = [e.timestamp for e in scale_ups]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3

    state.update_cluster(cluster.cluster_id, {"num_preemptible_gpus": 8})
    clock.advance(TIMINGS.preemptible_step * 3)
    shrunk = state.get_cluster(cluster.cluster_id)
    assert shrunk.allocated_preemptible_gpus == 8
    assert shrunk.node_lifecycle_events is not None
    assert shrunk.node_lifecycle_events[-1].reason == "TogetherScaledDown"


def test_preemptible_allocation_is_capped_by_stock_until_more_arrives() -> None:
    clock = FakeClock()
    catalog = Catalog()
    catalog.set_stock(REGION_NAME, "H100_SXM", gpus=None, preemptible_gpus=16)
    state = new_state(clock, catalog)
    cluster = ready_cluster(state, clock, num_gpus=32, num_preemptible_gpus=32)
    clock.advance(TIMINGS.preemptible_step * 10)
    capped = state.get_cluster(cluster.cluster_id)
    assert (capped.desired_preemptible_gpus, capped.allocated_preemptible_gpus) == (32, 16)
    state.set_stock(REGION_NAME, "H100_SXM", gpus=None, preemptible_gpus=64)
    clock.advance(TIMINGS.preemptible_step * 2)
    assert state.get_cluster(cluster.cluster_id).allocated_preemptible_gpus == 32


def test_lowering_preemptible_stock_preempts_allocated_gpus() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock, num_gpus=16, num_preemptible_gpus=16)
    clock.advance(TIMINGS.preemptible_step * 2)
    assert state.get_cluster(cluster.cluster_id).allocated_preemptible_gpus == 16
    state.set_stock(REGION_NAME, "H100_SXM", gpus=None, preemptible_gpus=8)
    reclaimed = state.get_cluster(cluster.cluster_id)
    assert reclaimed.allocated_preemptible_gpus == 8
    assert reclaimed.node_lifecycle_events is not None
    assert reclaimed.node_lifecycle_events[-1].reason == "TogetherPreempted"


def test_preempted_gpus_are_won_back_over_time() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock, num_gpus=16, num_preemptible_gpus=16)
    clock.advance(TIMINGS.preemptible_step * 2)
    preempted = state.preempt(cluster.cluster_id, None)
    assert preempted.allocated_preemptible_gpus == 0
    assert preempted.node_lifecycle_events is not None
    assert [e.reason for e in preempted.node_lifecycle_events[-2:]] == ["TogetherPreempted"] * 2
    clock.advance(TIMINGS.preemptible_step * 2)
    assert state.get_cluster(cluster.cluster_id).allocated_preemptible_gpus == 16


def test_delete_reports_deleting_then_the_cluster_is_gone() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = ready_cluster(state, clock)
    assert state.delete_cluster(cluster.cluster_id).cluster_id == cluster.cluster_id
    deleting = state.get_cluster(cluster.cluster_id)
    assert deleting.status == ClusterStatus.DELETING
    assert phases(deleting)[-1] == ClusterPhase.DELETING
    clock.advance(TIMINGS.deleting)
    with pytest.raises(NotFound):
        state.get_cluster(cluster.cluster_id)
    assert state.list_clusters().clusters == []
    summary = state.all_clusters()[0]
    assert summary.deleted
    assert summary.deleted_at is not None


def test_out_of_stock_refuses_creates_and_scale_ups() -> None:
    clock = FakeClock()
    catalog = Catalog()
    catalog.set_stock(REGION_NAME, "H100_SXM", gpus=16, preemptible_gpus=None)
    state = new_state(clock, catalog)
    cluster = state.create_cluster(create_body(num_gpus=16))
    with pytest.raises(Conflict, match="Out of stock"):
        state.create_cluster(create_body(num_gpus=8))
    with pytest.raises(Conflict, match="Out of stock"):
        state.update_cluster(cluster.cluster_id, {"num_gpus": 24})
    state.delete_cluster(cluster.cluster_id)
    clock.advance(TIMINGS.deleting)
    assert state.create_cluster(create_body(num_gpus=16)).num_gpus == 16


def test_forced_phases_replace_the_plan() -> None:
    clock = FakeClock()
    state = new_state(clock)
    cluster = state.create_cluster(create_body())
    clock.advance(TIMINGS.control_plane + TIMINGS.data_plane + TIMINGS.drivers + 1)
    failed = state.force_phase(cluster.cluster_id, ClusterPhase.ACCEPTANCE_TESTS_FAILED)
    assert failed.status == ClusterStatus.DEGRADED
    clock.advance(TIMINGS.create_to_ready)
    still = state.get_cluster(cluster.cluster_id)
    assert phases(still)[-1] == ClusterPhase.ACCEPTANCE_TESTS_FAILED
    assert state.force_phase(cluster.cluster_id, ClusterPhase.READY).status == "Ready"
