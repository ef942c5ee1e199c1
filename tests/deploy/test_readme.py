"""deploy/README.md documents every operator flag, environment variable and chart value."""

from __future__ import annotations

from typing import Any

import click
import yaml

from tests.deploy.manifests import CHART, DEPLOY
from together_operator.cli import run
from together_operator.settings import OperatorSettings

README = (DEPLOY / "README.md").read_text()
#: Values handed to Kubernetes verbatim (toYaml): documented as a whole, not key by key.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext"}


def value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in PASSTHROUGH:
            paths += value_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_every_run_flag_is_documented() -> None:
    flags = [
        opt
        for param in run.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if opt.startswith("--")
    ]
    assert "--all-namespaces" in flags
    assert [f for f in flags if f"`{f}" not in README] == []


def test_every_environment_variable_is_documented() -> None:
    names = [
        str(field.validation_alias)
        for field in OperatorSettings.model_fields.values()
        if field.validation_alias
    ]
    assert "TOGETHER_API_KEY" in names
    assert [n for n in names if f"`{n}`" not in README] == []


def test_every_chart_value_is_documented() -> None:
    paths = value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert "metrics.serviceMonitor.enabled" in paths
    assert [p for p in paths if f"`{p}`" not in README] == []
