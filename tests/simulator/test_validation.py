"""Requests the real service rejects are rejected with a 400 naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.simulator.conftest import create_body
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.errors import Conflict, InvalidRequest
from together_operator.simulator.validation import validate_create, validate_update
from together_operator.together.models import GPUClusterInfo

START = "2026-03-01T00:00:00Z"
END = "2026-03-08T00:00:00Z"

# (what is wrong, overrides of a valid request, text the message must contain)
CREATE_REJECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("missing region", {"region": None}, "`region` is required"),
    ("missing gpu_type", {"gpu_type": None}, "`gpu_type` is required"),
    ("missing num_gpus", {"num_gpus": None}, "`num_gpus` is required"),
    ("missing cluster_name", {"cluster_name": None}, "`cluster_name` is required"),
    ("missing billing_type", {"billing_type": None}, "`billing_type` is required"),
    ("no driver selector", {"nvidia_version_id": None}, "`nvidia_version_id` is required"),
    (
        "cuda_version without nvidia_driver_version",
        {"nvidia_version_id": None, "cuda_version": "12.6"},
        "`nvidia_driver_version` must be given together",
    ),
    (
        "nvidia_version_id contradicted by the legacy pair",
        {"cuda_version": "12.5", "nvidia_driver_version": "555"},
        "do not match `nvidia_version_id`",
    ),
    ("bad gpu_type enum", {"gpu_type": "A100"}, "`gpu_type`"),
    ("bad billing_type enum", {"billing_type": "FREE"}, "`billing_type`"),
    ("bad cluster_type enum", {"cluster_type": "NOMAD"}, "`cluster_type`"),
    (
        "bad load_balancer enum",
        {"cluster_config": {"load_balancer": "HAPROXY"}},
        "`cluster_config.load_balancer`",
    ),
    ("num_gpus not a multiple of 8", {"num_gpus": 12}, "`num_gpus` must be a positive multiple"),
    ("num_gpus zero", {"num_gpus": 0}, "`num_gpus` must be a positive multiple"),
    ("num_gpus negative", {"num_gpus": -8}, "`num_gpus` must be a positive multiple"),
    ("num_gpus not a number", {"num_gpus": "eight"}, "`num_gpus`"),
    ("preemptible not a multiple of 8", {"num_preemptible_gpus": 4}, "`num_preemptible_gpus`"),
    (
        "capacity pool not a multiple of 8",
        {"capacity_pool_id": "pool-1", "num_capacity_pool_gpus": 3},
        "`num_capacity_pool_gpus` must be a multiple of 8",
    ),
    (
        "capacity pool above num_gpus",
        {"capacity_pool_id": "pool-1", "num_capacity_pool_gpus": 16},
        "`num_capacity_pool_gpus` (16) must not exceed",
    ),
    (
        "capacity pool GPUs without a pool",
        {"num_capacity_pool_gpus": 8},
        "requires `capacity_pool_id`",
    ),
    ("unknown region", {"region": "mars-1"}, "`region` 'mars-1' is unknown"),
    ("GPU type not in region", {"gpu_type": "L40_PCIE"}, "`gpu_type` L40_PCIE is not offered"),
    (
        "driver id from another region",
        {"nvidia_version_id": "us-central-4-cuda12.6-nv565"},
        "`nvidia_version_id` 'us-central-4-cuda12.6-nv565' is not offered",
    ),
    (
        "legacy driver pair not in region",
        {"nvidia_version_id": None, "cuda_version": "11.8", "nvidia_driver_version": "520"},
        "`cuda_version` '11.8' with `nvidia_driver_version` '520' is not offered",
    ),
    ("SLURM without shm size", {"cluster_type": "SLURM"}, "`slurm_shm_size_gib`"),
    (
        "SCHEDULED_CAPACITY without reservation times",
        {"billing_type": "SCHEDULED_CAPACITY"},
        "`reservation_start_time` and `reservation_end_time`",
    ),
    (
        "SCHEDULED_CAPACITY without end time",
        {"billing_type": "SCHEDULED_CAPACITY", "reservation_start_time": START},
        "`reservation_end_time`",
    ),
    (
        "reservation ending before it starts",
        {
            "billing_type": "SCHEDULED_CAPACITY",
            "reservation_start_time": END,
            "reservation_end_time": START,
        },
        "`reservation_end_time` must be after",
    ),
    ("non-positive duration", {"billing_type": "RESERVED", "duration_days": 0}, "`duration_days`"),
    ("empty cluster name", {"cluster_name": "  "}, "`cluster_name` must not be empty"),
    (
        "unknown add-on type",
        {"add_ons": [{"name": "x", "add_on_type": "grafana"}]},
        "`add_ons.0.add_on_type`: Input should be 'dashboard'",
    ),
    (
        "inline volume in another region",
        {"shared_volume": {"volume_name": "data", "size_tib": 1, "region": "us-central-4"}},
        "`shared_volume.region`",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [pytest.param(o, e, id=name) for name, o, e in CREATE_REJECTIONS],
)
def test_create_rejects_what_the_service_rejects(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate_create(create_body(**overrides), Catalog())
    assert expected in raised.value.message


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="nvidia_version_id"),
        pytest.param(
            {"nvidia_version_id": None, "cuda_version": "12.6", "nvidia_driver_version": "560"},
            id="legacy pair",
        ),
        pytest.param({"cluster_type": "SLURM", "slurm_shm_size_gib": 64}, id="slurm"),
        pytest.param(
            {
                "billing_type": "SCHEDULED_CAPACITY",
                "reservation_start_time": START,
                "reservation_end_time": END,
            },
            id="scheduled capacity",
        ),
        pytest.param({"billing_type": "RESERVED", "duration_days": 30}, id="reserved"),
        pytest.param({"num_gpus": 16, "num_preemptible_gpus": 16}, id="preemptible"),
        pytest.param({"some_future_field": True}, id="unknown fields ignored"),
    ],
)
def test_create_accepts_valid_requests(overrides: dict[str, Any]) -> None:
    request, driver = validate_create(create_body(**overrides), Catalog())
    assert driver.cuda_version == "12.6"
    assert request.cluster_name == "train"


def _cluster(**fields: Any) -> GPUClusterInfo:
    base: dict[str, Any] = {
        "cluster_id": "c-1",
        "cluster_name": "train",
        "region": "us-central-8",
        "status": "Ready",
        "num_gpus": 16,
        "billing_type": "ON_DEMAND",
    }
    return GPUClusterInfo.model_validate(base | fields)


UPDATE_REJECTIONS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("num_gpus not a multiple of 8", {}, {"num_gpus": 20}, "`num_gpus` must be a positive"),
    ("num_gpus zero", {}, {"num_gpus": 0}, "`num_gpus` must be a positive"),
    ("preemptible odd", {}, {"num_preemptible_gpus": 9}, "`num_preemptible_gpus` must be"),
    (
        "capacity pool without a pool",
        {},
        {"num_capacity_pool_gpus": 8},
        "created with a `capacity_pool_id`",
    ),
    ("reserved GPUs on on-demand", {}, {"num_reserved_gpus": 8}, "only applies to RESERVED"),
    (
        "decommission time on on-demand",
        {},
        {"reservation_end_time": END},
        "only accepted for prepaid clusters",
    ),
    ("changing the cluster type", {}, {"cluster_type": "SLURM"}, "cannot be changed"),
    ("unknown add-on", {}, {"add_ons": [{"name": "nope"}]}, "'nope' is not an add-on"),
    ("bad num_gpus type", {}, {"num_gpus": "many"}, "`num_gpus`"),
]


@pytest.mark.parametrize(
    ("cluster_fields", "update", "expected"),
    [pytest.param(c, u, e, id=name) for name, c, u, e in UPDATE_REJECTIONS],
)
def test_update_rejects_what_the_service_rejects(
    cluster_fields: dict[str, Any], update: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        validate_update(update, _cluster(**cluster_fields), add_on_names=set())
    assert expected in raised.value.message


def test_update_of_a_deleting_cluster_is_a_conflict_that_says_why() -> None:
    with pytest.raises(Conflict, match="being deleted"):
        validate_update({"num_gpus": 8}, _cluster(status="Deleting"), add_on_names=set())


def test_rejections_reach_the_client_as_400_json(
    api: httpx.Client, create_cluster: Callable[..., dict[str, Any]]
) -> None:
    response = api.post("/v1/compute/clusters", json=create_body(num_gpus=12))
    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert "`num_gpus`" in response.json()["message"]

    not_json = api.post("/v1/compute/clusters", content=b"{not json")
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["message"]

    cluster = create_cluster()
    api.delete(f"/v1/compute/clusters/{cluster['cluster_id']}")
    deleting = api.put(f"/v1/compute/clusters/{cluster['cluster_id']}", json={"num_gpus": 16})
    assert deleting.status_code == 409
    assert "being deleted" in deleting.json()["message"]
