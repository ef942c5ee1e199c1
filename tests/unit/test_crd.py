"""The committed CRD is exactly what the models generate, and is a structural schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from together_operator import __version__
from together_operator.gpucluster.crd import crd_manifest, crd_yaml
from together_operator.gpucluster.spec import (
    ADD_ON_TYPE_RULE,
    IMMUTABLE_FIELDS,
    GPUClusterSpec,
    operator_fields,
    updatable_fields,
)
from together_operator.manifests import generated_files

REPO = Path(__file__).resolve().parents[2]
GENERATED = generated_files(REPO)


@pytest.mark.parametrize("path", sorted(GENERATED), ids=str)
def test_generated_files_are_what_make_manifests_writes(path: Path) -> None:
    assert (REPO / path).read_text() == GENERATED[path], (
        f"{path} is not what the generator writes (the CRD from the models, the version from "
        "pyproject.toml): run `make manifests` and commit the result"
    )


def test_the_version_comes_from_pyproject() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'\nversion = "{__version__}"\n' in pyproject
    assert (
        f'appVersion: "{__version__}"'
        in GENERATED[Path("deploy/helm/together-operator/Chart.yaml")]
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


def test_mutability_is_declared_once_and_drives_rules_diff_and_create() -> None:
    """The field markers are the one declaration: the CEL rules name exactly the
    create-only fields, the update diff covers exactly the updatable ones, and the create
    request carries every Together field but no operator field."""
    rules = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]["x-kubernetes-validations"]
    immutable = {
        field
        for r in rules
        if r != ADD_ON_TYPE_RULE
        for field in re.findall(r"oldSelf\.(\w+)", r["rule"])
    }
    assert immutable == {*IMMUTABLE_FIELDS, "clusterId"}
    assert set(updatable_fields()) == {
        "num_gpus",
        "num_preemptible_gpus",
        "num_reserved_gpus",
        "num_capacity_pool_gpus",
        "reservation_end_time",
        "cluster_config",
        "add_ons",
    }
    assert operator_fields() == {
        "credentials_secret_ref",
        "kubeconfig_secret_name",
        "deletion_policy",
        "cluster_id",
    }
    every = {info.alias for info in GPUClusterSpec.model_fields.values()}
    camel_updatable = {GPUClusterSpec.model_fields[n].alias for n in updatable_fields()}
    camel_operator = {GPUClusterSpec.model_fields[n].alias for n in operator_fields()}
    assert every == set(IMMUTABLE_FIELDS) | camel_updatable | camel_operator
