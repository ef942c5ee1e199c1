"""Tools for the install tests: kubectl (kustomize) and helm, found or built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from together_operator.devenv.toolchain import HELM, KUBECTL, resolve_binary

#: Fixtures that may build or download for minutes on a cold machine (helm and the kstatus
#: program from the Go module proxy, the image's wheels from the package index).
SLOW_SETUP = {"helm", "kstatus", "replayed_image"}
SLOW_SETUP_TIMEOUT = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if here in Path(str(item.fspath)).parents and uses & SLOW_SETUP:
            # pytest-timeout counts fixture setup: give the first user of a cold tool room.
            item.add_marker(pytest.mark.timeout(SLOW_SETUP_TIMEOUT))


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return resolve_binary(KUBECTL)


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm at the pinned version; built from the Go module proxy on first use (minutes)."""
    return resolve_binary(HELM)
