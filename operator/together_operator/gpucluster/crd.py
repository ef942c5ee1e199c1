"""Render the GPUCluster CRD from the pydantic models (our controller-gen).

pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: every node
typed, no ``$ref``, no ``anyOf`` for optional fields, ``x-kubernetes-*`` extensions instead of
``additionalProperties: true``. This module does exactly that translation and nothing else.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from together_operator.gpucluster.spec import (
    CATEGORIES,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    GPUClusterSpec,
    GPUClusterStatus,
)

# Keywords that survive translation; anything else pydantic emits (title, ...) is dropped.
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "format",
    "minimum",
    "maximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "minItems",
    "required",
    "pattern",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}


def _structural(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_structural(target, definitions)}
        if "description" in node:  # the field's own words beat the type's docstring
            merged["description"] = node["description"]
        if "default" in node:
            merged["default"] = node["default"]
        return merged
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express a union in a structural schema: {node}")
        collapsed = {**_structural(variants[0], definitions)}
        for key in ("description", "pattern"):  # the field's own, set beside the union
            if key in node:
                collapsed[key] = node[key]
        if node.get("default") is not None:
            collapsed["default"] = node["default"]
        return collapsed
    result = {key: value for key, value in node.items() if key in _KEPT}
    if result.get("default", "") is None:
        del result["default"]
    if node.get("type") == "object":
        if "properties" in node:
            result["properties"] = {
                name: _structural(child, definitions) for name, child in node["properties"].items()
            }
        elif node.get("additionalProperties") not in (None, False):
            result["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("type") == "array" and "items" in node:
        result["items"] = _structural(node["items"], definitions)
    return result


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase, as users write it)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(raw, raw.get("$defs", {}))


PRINTER_COLUMNS = [
    {"name": "Region", "type": "string", "jsonPath": ".spec.region"},
    {"name": "GPU Type", "type": "string", "jsonPath": ".spec.gpuType"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.numGpus"},
    {
        "name": "Preemptible",
        "type": "string",
        "jsonPath": ".status.preemptible",
        "description": "Allocated/desired preemptible GPUs",
    },
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Cluster ID", "type": "string", "jsonPath": ".status.clusterId", "priority": 1},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        "priority": 1,
    },
]


def crd_manifest() -> dict[str, Any]:
    """The GPUCluster CustomResourceDefinition."""
    spec_schema = model_schema(GPUClusterSpec)
    spec_schema["description"] = GPUClusterSpec.__doc__
    status_schema = model_schema(GPUClusterStatus)
    status_schema["description"] = GPUClusterStatus.__doc__
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Together AI GPU cluster, managed declaratively.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version."},
                                "kind": {"type": "string", "description": "Kind."},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML document committed under ``crds/``."""
    header = (
        "# Generated by `together-operator crd` from the pydantic models in\n"
        "# operator/together_operator/gpucluster/spec.py. Do not edit by hand.\n"
    )
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=100)
