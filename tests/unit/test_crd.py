"""The committed CRD is exactly what the models generate, and is a structural schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from together_operator.gpucluster.crd import crd_manifest, crd_yaml
from together_operator.gpucluster.spec import IMMUTABLE_FIELDS

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "gpuclusters.compute.together.ai.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/ drifted from the models: run `together-operator crd > "
        "crds/gpuclusters.compute.together.ai.yaml`"
    )


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        nodes += walk(child, f"{path}.{name}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    return nodes


def test_schema_is_structural_and_every_spec_and_status_field_is_described() -> None:
    root = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "additionalProperties"} & set(node), path
        if path.startswith((".spec.", ".status.")):
            assert node.get("description"), f"{path} has no description"


def test_every_immutable_field_has_a_transition_rule() -> None:
    spec = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    for field in IMMUTABLE_FIELDS:
        assert any(f"oldSelf.{field}" in rule for rule in rules), field
    assert set(IMMUTABLE_FIELDS) <= set(spec["properties"])


def test_printer_columns_match_the_brief() -> None:
    columns = [
        c["name"]
        for c in crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
        if not c.get("priority")
    ]
    assert columns == ["Region", "GPU Type", "GPUs", "Preemptible", "State", "Ready", "Age"]


def test_crd_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == crd_manifest()
