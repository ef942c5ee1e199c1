"""The overlay the contract fuzz test puts on Together's contract, all of it, documented.

The contract file is never edited: each function returns a changed deep copy. Three things:

1. Error answers. The contract documents only `200`s; every operation gains a `default`
   response whose body is the simulator's error shape (grpc-gateway's `google.rpc.Status`,
   see the simulator's Deviations), so that a refusal is checked like any answer.
2. Out-of-enum statuses. `GPUClusterInfo.status` may also be `Scheduled`, which real servers
   send for a reservation that has not started (the brief) and the simulator therefore sends
   too. Nothing else outside the enum is tolerated.
3. Catalogue values, for positive cases only (negative cases use the contract with 1 and 2
   alone, so that "invalid" means invalid by the contract). Plain strings whose valid values
   live in a catalogue get that catalogue: the region, GPU type and driver versions the
   simulator offers, the add-on types the prose lists; path parameters get the IDs of seeded
   resources, so that generated requests reach something; GPU counts are multiples of 8 (as
   the prose says) within the stock; the alert list gets its `cluster_id`, which the prose
   requires of non-admin callers. Without these nearly every generated request is refused
   and no answer body would be checked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

TOLERATED_STATUSES: Final = ("Scheduled",)
ERROR_BODY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["code", "message"],
    "additionalProperties": False,
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string", "minLength": 1},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["@type", "reason"],
                "properties": {
                    "@type": {"const": "type.googleapis.com/google.rpc.ErrorInfo"},
                    "reason": {"type": "string"},
                    "domain": {"type": "string"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    },
}
_GPU_COUNT: Final = {"type": "integer", "enum": [0, 8, 16]}


@dataclass(frozen=True)
class Seed:
    """What the fuzz test created before fuzzing, for the positive cases to reach."""

    region: str
    gpu_type: str
    driver_id: str
    cuda_version: str
    driver_version: str
    cluster_id: str
    instance_id: str
    add_on_name: str
    volume_id: str
    # Remediation IDs by the path's last word ("approve", "cancel", "reject"; "" for the
    # rest), so that each review operation has remediations of its own to act on.
    remediation_ids: dict[str, tuple[str, ...]]


def for_negative_cases(contract: dict[str, Any]) -> dict[str, Any]:
    """The contract with error answers and the tolerated statuses (overlay 1 and 2)."""
    spec = copy.deepcopy(contract)
    for operation in _operations(spec):
        operation["responses"]["default"] = {
            "description": "An error (the simulator's documented shape)",
            "content": {"application/json": {"schema": ERROR_BODY_SCHEMA}},
        }
    status = spec["components"]["schemas"]["GPUClusterInfo"]["properties"]["status"]
    status["enum"] = [*status["enum"], *TOLERATED_STATUSES]
    return spec


def for_positive_cases(contract: dict[str, Any], seed: Seed) -> dict[str, Any]:
    """The negative-case contract plus catalogue values (overlay 3)."""
    spec = for_negative_cases(contract)
    schemas = spec["components"]["schemas"]
    create = schemas["GPUClusterCreateRequest"]["properties"]
    create["region"]["enum"] = [seed.region]
    create["gpu_type"]["enum"] = [seed.gpu_type]
    create["num_gpus"] = {"type": "integer", "enum": [8, 16]}
    create["nvidia_version_id"]["enum"] = [seed.driver_id]
    create["cuda_version"]["enum"] = [seed.cuda_version]
    create["nvidia_driver_version"]["enum"] = [seed.driver_version]
    for counts in (create, schemas["GPUClusterUpdateRequest"]["properties"]):
        for field in ("num_preemptible_gpus", "num_reserved_gpus", "num_capacity_pool_gpus"):
            counts[field] = dict(_GPU_COUNT)
    schemas["GPUClusterUpdateRequest"]["properties"]["num_gpus"] = {
        "type": "integer",
        "enum": [8, 16],
    }
    schemas["GPUClustersSharedVolumeCreateRequest"]["properties"]["region"]["enum"] = [seed.region]
    for volume in ("GPUClustersSharedVolumeCreateRequest", "GPUClustersSharedVolumeUpdateRequest"):
        schemas[volume]["properties"]["size_tib"] = {"type": "integer", "minimum": 1, "maximum": 64}
    schemas["GPUClustersSharedVolumeUpdateRequest"]["properties"]["volume_id"]["enum"] = [
        seed.volume_id
    ]
    add_on_types = ["dashboard", "ingress", "torchpass", "headlamp", "slurm_web"]
    for request in ("AddOnCreateRequest", "ClusterAddOnCreateRequest"):
        schemas[request]["properties"]["add_on_type"]["enum"] = add_on_types
    schemas["AddOnUpdateRequest"]["properties"]["name"]["enum"] = [seed.add_on_name]
    path_values = {
        "cluster_id": [seed.cluster_id],
        "instance_id": [seed.instance_id, "-"],
        "addon_id": [seed.add_on_name],
        "volume_id": [seed.volume_id],
    }
    for path, methods in spec["paths"].items():
        action = path.rsplit("/", 1)[-1]
        remediation_ids = seed.remediation_ids.get(action, seed.remediation_ids[""])
        for operation in methods.values():
            _set_parameters(operation, {**path_values, "remediation_id": list(remediation_ids)})
    return spec


def _set_parameters(operation: dict[str, Any], path_values: dict[str, list[str]]) -> None:
    """Path parameters take the seeded IDs; the alert list its required `cluster_id`."""
    for parameter in operation.get("parameters", []):
        values = path_values.get(parameter["name"])
        if parameter["in"] == "path" and values is not None:
            parameter["schema"] = {**parameter["schema"], "enum": values}
        if parameter["in"] == "query" and parameter["name"] == "cluster_id":
            parameter["required"] = True
            parameter["schema"] = {**parameter["schema"], "enum": path_values["cluster_id"]}


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for methods in spec["paths"].values()
        for operation in methods.values()
        if isinstance(operation, dict) and "responses" in operation
    ]
