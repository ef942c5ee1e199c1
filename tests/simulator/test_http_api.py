"""The HTTP API's behaviour: auth, paths, filters, merge semantics, deletion, stock, volumes,
introspection. Every answer is also checked against the contract by the `api` fixture."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.simulator.conftest import API_KEY, REGION, create_body
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.server import SimulatorConfig, start_in_thread
from together_operator.together import operations

TIMINGS = Timings()
CreateCluster = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong key"),
        pytest.param({"Authorization": "Basic dGVzdC1rZXk="}, id="not bearer"),
    ],
)
def test_requests_without_a_valid_key_get_401(sim_base: str, headers: dict[str, str]) -> None:
    response = httpx.get(f"{sim_base}/v1/compute/clusters", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == 16
    assert "wrong-key" not in body["message"]


@pytest.fixture
def sim_base(api: httpx.Client) -> str:
    return str(api.base_url).rstrip("/")


def test_every_contract_operation_is_served(api: httpx.Client) -> None:
    for operation in operations.ALL_OPERATIONS:
        path = operation.url(
            cluster_id="no-such-cluster",
            instance_id="-",
            remediation_id="r-1",
            addon_id="a-1",
            volume_id="v-1",
        )
        response = api.request(operation.method, "/v1" + path, json={})
        assert response.status_code not in (405, 500, 501), (operation.id, response.text)
        assert response.status_code < 500, operation.id


def test_paths_and_methods_outside_the_contract_are_404_and_405(api: httpx.Client) -> None:
    assert api.get("/v1/compute/clusters/some-id/nothing").status_code == 404
    wrong_method = api.request("PATCH", "/v1/compute/clusters")
    assert wrong_method.status_code == 405
    assert "PATCH" in wrong_method.json()["message"]


def test_unknown_paths_answer_404_json(api: httpx.Client) -> None:
    for path in ["/v1/chat/completions", "/nothing-here"]:
        response = api.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == 5


def test_list_filters_by_project_under_both_spellings(
    api: httpx.Client, create_cluster: CreateCluster
) -> None:
    mine = create_cluster(cluster_name="mine", project_id="proj-a")
    create_cluster(cluster_name="theirs", project_id="proj-b")
    for parameter in ("projectId", "project_id"):
        listed = api.get("/v1/compute/clusters", params={parameter: "proj-a"}).json()
        assert [c["cluster_id"] for c in listed["clusters"]] == [mine["cluster_id"]]
    assert len(api.get("/v1/compute/clusters").json()["clusters"]) == 2


def test_put_keeps_every_omitted_field(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster(
        num_gpus=16,
        num_preemptible_gpus=8,
        cluster_config={"load_balancer": "TRAEFIK", "jumphost_enabled": True},
        add_ons=[
            {"name": "dash", "add_on_type": "dashboard", "config": {"dashboard": {"enabled": True}}}
        ],
    )
    clock.advance(TIMINGS.create_to_ready)
    path = f"/v1/compute/clusters/{cluster['cluster_id']}"
    updated = api.put(path, json={"num_preemptible_gpus": 16, "unknown_field": 1}).json()
    assert updated["num_gpus"] == 16
    assert updated["desired_preemptible_gpus"] == 16
    assert updated["cluster_config"] == {"load_balancer": "TRAEFIK", "jumphost_enabled": True}
    assert updated["cluster_name"] == cluster["cluster_name"]

    config_only = api.put(path, json={"cluster_config": {"load_balancer": "NGINX"}}).json()
    assert config_only["cluster_config"] == {"load_balancer": "NGINX", "jumphost_enabled": True}
    assert config_only["desired_preemptible_gpus"] == 16
    assert config_only["status"] == "Ready"

    add_on = api.put(
        path, json={"add_ons": [{"name": "dash", "config": {"ingress": {"enabled": True}}}]}
    ).json()
    assert add_on["add_ons"][0]["config"] == {
        "dashboard": {"enabled": True},
        "ingress": {"enabled": True},
    }


def test_delete_answers_at_once_then_404_after_the_delay(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster()
    path = f"/v1/compute/clusters/{cluster['cluster_id']}"
    assert api.delete(path).json() == {"cluster_id": cluster["cluster_id"]}
    assert api.get(path).json()["status"] == "Deleting"
    assert api.delete(path).status_code == 200
    clock.advance(TIMINGS.deleting)
    gone = api.get(path)
    assert gone.status_code == 404
    assert cluster["cluster_id"] in gone.json()["message"]
    assert api.delete(path).status_code == 404
    assert api.get("/v1/compute/clusters").json() == {"clusters": []}


def test_create_beyond_stock_is_409_out_of_stock(
    api: httpx.Client, admin: httpx.Client, create_cluster: CreateCluster
) -> None:
    assert admin.put(
        "/stock", json={"region": REGION, "gpu_type": "H100_SXM", "gpus": 16}
    ).is_success
    cluster = create_cluster(num_gpus=16)
    refused = api.post("/v1/compute/clusters", json=create_body(num_gpus=8))
    assert refused.status_code == 409
    assert "Out of stock" in refused.json()["message"]
    scale = api.put(f"/v1/compute/clusters/{cluster['cluster_id']}", json={"num_gpus": 24})
    assert scale.status_code == 409
    assert "Out of stock" in scale.json()["message"]


def test_volume_attached_to_a_live_cluster_cannot_be_deleted(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    volume = api.post(
        "/v1/compute/clusters/storage/volumes",
        json={"volume_name": "data", "size_tib": 1, "region": REGION},
    ).json()
    cluster = create_cluster(volume_id=volume["volume_id"])
    assert cluster["volumes"][0]["volume_id"] == volume["volume_id"]
    volume_path = f"/v1/compute/clusters/storage/volumes/{volume['volume_id']}"
    assert api.get(volume_path).json()["status"] == "bound"
    refused = api.delete(volume_path)
    assert refused.status_code == 409
    assert cluster["cluster_id"] in refused.json()["message"]

    api.delete(f"/v1/compute/clusters/{cluster['cluster_id']}")
    clock.advance(TIMINGS.deleting)
    assert api.delete(volume_path).json() == {"success": True}


def test_inline_shared_volume_is_created_with_the_cluster(
    api: httpx.Client, create_cluster: CreateCluster
) -> None:
    cluster = create_cluster(shared_volume={"volume_name": "home", "size_tib": 3, "region": REGION})
    [volume] = cluster["volumes"]
    assert (volume["volume_name"], volume["size_tib"]) == ("home", 3)
    listed = api.get("/v1/compute/clusters/storage/volumes").json()["volumes"]
    assert [v["volume_id"] for v in listed] == [volume["volume_id"]]


def test_volume_updates_go_to_the_collection_path_and_never_shrink(api: httpx.Client) -> None:
    volume = api.post(
        "/v1/compute/clusters/storage/volumes",
        json={"volume_name": "data", "size_tib": 4, "region": REGION},
    ).json()
    shrink = api.put(
        "/v1/compute/clusters/storage/volumes",
        json={"volume_id": volume["volume_id"], "size_tib": 2},
    )
    assert shrink.status_code == 400
    assert "`size_tib`" in shrink.json()["message"]
    missing = api.put("/v1/compute/clusters/storage/volumes", json={"volume_id": "nope"})
    assert missing.status_code == 404


def test_admin_counts_requests_per_operation_and_status(
    api: httpx.Client, admin: httpx.Client
) -> None:
    api.get("/v1/compute/regions")
    api.get("/v1/compute/regions")
    api.get("/v1/compute/clusters/missing")
    counts = admin.get("/requests").json()["requests"]
    assert {"operation": "RegionService_List", "status": "200", "count": 2} in counts
    assert {"operation": "GPUClusterService_Get", "status": "404", "count": 1} in counts
    assert admin.delete("/requests").json() == {"requests": []}


def test_admin_lists_every_cluster_including_deleted_ones(
    api: httpx.Client, admin: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    kept = create_cluster(cluster_name="kept")
    gone = create_cluster(cluster_name="gone")
    api.delete(f"/v1/compute/clusters/{gone['cluster_id']}")
    clock.advance(TIMINGS.deleting)
    summaries = {s["cluster"]["cluster_id"]: s for s in admin.get("/clusters").json()["clusters"]}
    assert summaries[kept["cluster_id"]]["deleted"] is False
    assert summaries[gone["cluster_id"]]["deleted"] is True
    assert "deleted_at" in summaries[gone["cluster_id"]]


def test_generated_kube_config_is_a_base64_kubeconfig(
    api: httpx.Client, create_cluster: CreateCluster, clock: FakeClock
) -> None:
    cluster = create_cluster()
    clock.advance(TIMINGS.control_plane)
    encoded = api.get(f"/v1/compute/clusters/{cluster['cluster_id']}").json()["kube_config"]
    kubeconfig = yaml.safe_load(base64.b64decode(encoded))
    assert kubeconfig["kind"] == "Config"
    assert kubeconfig["current-context"] == cluster["cluster_name"]


def test_tenant_kubeconfig_is_handed_out_for_new_clusters(tmp_path: Path) -> None:
    tenant = tmp_path / "tenant.yaml"
    tenant.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    clock = FakeClock()
    running = start_in_thread(
        SimulatorConfig(api_keys=(API_KEY,), tenant_kubeconfig=tenant), clock=clock
    )
    try:
        with httpx.Client(
            base_url=running.base_url, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as client:
            cluster_id = client.post("/v1/compute/clusters", json=create_body()).json()[
                "cluster_id"
            ]
            clock.advance(TIMINGS.control_plane)
            body = client.get(f"/v1/compute/clusters/{cluster_id}").json()
        assert base64.b64decode(body["kube_config"]).decode() == tenant.read_text()
    finally:
        running.stop()
