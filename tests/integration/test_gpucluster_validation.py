"""Bad manifests fail at `kubectl apply`, with a message that says what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.integration.conftest import GPUClusters


def rejection_message(error: ApiException) -> str:
    """The API server's human message (what `kubectl apply` prints)."""
    return str(json.loads(error.body)["message"])


INVALID_MANIFESTS: list[tuple[str, dict[str, Any], str]] = [
    ("gpus-not-multiple-of-8", {"numGpus": 12}, "multiple of 8"),
    ("gpus-below-8", {"numGpus": 0}, "greater than or equal to 8"),
    ("unknown-gpu-type", {"gpuType": "A100_PCIE"}, 'Unsupported value: "A100_PCIE"'),
    ("unknown-billing-type", {"billingType": "FREE"}, 'Unsupported value: "FREE"'),
    ("unknown-deletion-policy", {"deletionPolicy": "Keep"}, 'Unsupported value: "Keep"'),
    # A name the API server would refuse for a Secret: refused here, not in a write loop.
    ("kubeconfig-secret-name", {"kubeconfigSecretName": "My_Kubeconfig"}, "should match"),
    (
        "slurm-without-shm",
        {"clusterType": "SLURM"},
        "spec.slurmShmSizeGib is required when clusterType is SLURM",
    ),
    ("slurm-image-on-kubernetes", {"slurmImage": "my/slurm:1"}, "apply only to SLURM clusters"),
    (
        "scheduled-without-times",
        {"billingType": "SCHEDULED_CAPACITY"},
        "SCHEDULED_CAPACITY billing needs both spec.reservationStartTime",
    ),
    (
        "reservation-ends-before-start",
        {
            "billingType": "SCHEDULED_CAPACITY",
            "reservationStartTime": "2027-01-02T00:00:00Z",
            "reservationEndTime": "2027-01-01T00:00:00Z",
        },
        "spec.reservationEndTime must be after spec.reservationStartTime",
    ),
    (
        # Kubernetes's date-time would take it; Together's RFC 3339 would not.
        "reservation-time-without-zone",
        {
            "billingType": "SCHEDULED_CAPACITY",
            "reservationStartTime": "2027-01-01T00:00:00",
            "reservationEndTime": "2027-01-02T00:00:00Z",
        },
        "spec.reservationStartTime in body should match",
    ),
    ("preemptible-not-multiple-of-8", {"numPreemptibleGpus": 4}, "multiple of 8"),
    (
        "capacity-pool-gpus-without-pool",
        {"numCapacityPoolGpus": 8},
        "spec.numCapacityPoolGpus needs spec.capacityPoolId",
    ),
    (
        "capacity-pool-gpus-above-total",
        {"numCapacityPoolGpus": 16, "capacityPoolId": "p"},
        "spec.numCapacityPoolGpus must not exceed spec.numGpus",
    ),
    (
        "no-driver-selection",
        {"cudaVersion": None, "nvidiaDriverVersion": None},
        "set spec.nvidiaVersionId, or both spec.cudaVersion and spec.nvidiaDriverVersion",
    ),
    (
        "cuda-without-driver",
        {"nvidiaDriverVersion": None, "nvidiaVersionId": "x"},
        "spec.cudaVersion and spec.nvidiaDriverVersion must be set together",
    ),
    (
        "volume-and-shared-volume",
        {"volumeId": "v", "sharedVolume": {"volumeName": "d", "sizeTib": 1}},
        "spec.sharedVolume and spec.volumeId are mutually exclusive",
    ),
    (
        "autoscale-without-max",
        {"autoScale": True},
        "spec.autoScale needs spec.autoScaleMaxGpus of at least spec.numGpus",
    ),
    (
        "duplicate-add-on-names",
        {
            "addOns": [
                {"name": "a", "addOnType": "dashboard"},
                {"name": "a", "addOnType": "ingress"},
            ]
        },
        "spec.addOns names must be unique",
    ),
    ("missing-region", {"region": None}, "spec.region: Required value"),
    (
        "unknown-add-on-type",
        {"addOns": [{"name": "g", "addOnType": "grafana"}]},
        'Unsupported value: "grafana"',
    ),
]


@pytest.mark.parametrize(
    ("case", "overrides", "message"), INVALID_MANIFESTS, ids=[c[0] for c in INVALID_MANIFESTS]
)
def test_invalid_manifest_is_rejected_with_its_message(
    gpuclusters: GPUClusters, namespace: str, case: str, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        gpuclusters.create(namespace, case, **overrides)
    assert rejected.value.status == 422
    assert message in rejection_message(rejected.value)


def test_the_minimal_manifest_is_accepted_with_defaults(
    gpuclusters: GPUClusters, namespace: str
) -> None:
    created = gpuclusters.create(namespace, "ok")
    assert created["spec"]["clusterType"] == "KUBERNETES"
    assert created["spec"]["billingType"] == "ON_DEMAND"
    assert created["spec"]["deletionPolicy"] == "Delete"


# Rules the contract does not state are not the CRD's to enforce: Together may accept these.
UNSTATED_RULES: list[tuple[str, dict[str, Any]]] = [
    ("reserved-without-duration", {"billingType": "RESERVED"}),
    ("preemptible-above-total", {"numPreemptibleGpus": 16}),
    ("reserved-above-total", {"billingType": "RESERVED", "numReservedGpus": 16}),
]


@pytest.mark.parametrize(("case", "overrides"), UNSTATED_RULES, ids=[c[0] for c in UNSTATED_RULES])
def test_manifest_breaking_no_rule_of_the_contract_is_accepted(
    gpuclusters: GPUClusters, namespace: str, case: str, overrides: dict[str, Any]
) -> None:
    created = gpuclusters.create(namespace, case, **overrides)
    assert {k: created["spec"][k] for k in overrides} == overrides


IMMUTABLE_EDITS = [
    ("region", "us-central-4"),
    ("gpuType", "H200_SXM"),
    ("clusterName", "renamed"),
    ("clusterType", "SLURM"),
    ("cudaVersion", "12.6"),
    ("volumeId", "vol-added-later"),
]


@pytest.mark.parametrize(("field", "value"), IMMUTABLE_EDITS, ids=[f for f, _ in IMMUTABLE_EDITS])
def test_immutable_field_edit_is_rejected(
    gpuclusters: GPUClusters, namespace: str, field: str, value: Any
) -> None:
    gpuclusters.create(namespace, "fixed", clusterName="original")
    change = {field: value}
    if field == "clusterType":
        change["slurmShmSizeGib"] = 64  # keep the object otherwise valid
    with pytest.raises(ApiException) as rejected:
        gpuclusters.patch_spec(namespace, "fixed", change)
    assert rejected.value.status == 422
    message = rejection_message(rejected.value)
    assert f"spec.{field} " in message
    assert "immutable: Together cannot change" in message


def test_every_immutable_field_changed_at_once_is_named(
    gpuclusters: GPUClusters, namespace: str
) -> None:
    gpuclusters.create(namespace, "fixed")
    with pytest.raises(ApiException) as rejected:
        gpuclusters.patch_spec(
            namespace, "fixed", {"region": "us-central-4", "numGpus": 16, "gpuType": "H200_SXM"}
        )
    assert rejected.value.status == 422
    message = rejection_message(rejected.value)
    assert "spec.region spec.gpuType are immutable" in message
    assert "numGpus" not in message  # mutable: changing it is fine


def test_mutable_fields_can_change(gpuclusters: GPUClusters, namespace: str) -> None:
    gpuclusters.create(namespace, "grows")
    gpuclusters.patch_spec(
        namespace,
        "grows",
        {
            "numGpus": 32,
            "numPreemptibleGpus": 16,
            "deletionPolicy": "Orphan",
            "clusterConfig": {"loadBalancer": "TRAEFIK"},
            "kubeconfigSecretName": "kc",
        },
    )
    obj = gpuclusters.get(namespace, "grows")
    assert obj is not None
    assert obj["spec"]["numGpus"] == 32
    assert obj["metadata"]["generation"] == 2


def test_an_add_on_keeps_its_type_and_add_ons_can_otherwise_change(
    gpuclusters: GPUClusters, namespace: str
) -> None:
    lamp = {"name": "lamp", "addOnType": "headlamp", "config": {"headlamp": {"enabled": True}}}
    gpuclusters.create(namespace, "addons", addOns=[lamp])
    with pytest.raises(ApiException) as rejected:
        gpuclusters.patch_spec(namespace, "addons", {"addOns": [{**lamp, "addOnType": "ingress"}]})
    assert rejected.value.status == 422
    assert "the addOnType of an add-on cannot change" in rejection_message(rejected.value)

    # Another name is another add-on; disabling, removing and adding all pass.
    renamed = {"name": "gate", "addOnType": "ingress"}
    off = {**lamp, "config": {"headlamp": {"enabled": False}}}
    for add_ons in ([off, renamed], [renamed], []):
        gpuclusters.patch_spec(namespace, "addons", {"addOns": add_ons})
    obj = gpuclusters.get(namespace, "addons")
    assert obj is not None
    assert obj["spec"]["addOns"] == []
    assert obj["metadata"]["generation"] == 4
