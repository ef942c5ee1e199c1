"""Tools for the install tests: kubectl (kustomize) and helm, found or built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from together_operator.devenv.toolchain import HELM, KUBECTL, resolve_binary


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return resolve_binary(KUBECTL)


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm at the pinned version; built from the Go module proxy on first use (minutes)."""
    return resolve_binary(HELM)
