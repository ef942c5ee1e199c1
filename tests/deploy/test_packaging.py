"""The package as a user installs it: only its declared dependencies, every module importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, together_operator
names = [m.name for m in pkgutil.walk_packages(together_operator.__path__, "together_operator.")]
for name in names:
    importlib.import_module(name)
print(len(names), together_operator.__version__)
"""


@pytest.mark.timeout(600)
def test_a_fresh_install_with_only_declared_dependencies_imports_every_module(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    # From a neutral directory, so that the source tree cannot stand in for the install.
    imported = subprocess.run(
        [str(python), "-c", IMPORT_EVERY_MODULE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    count, version = imported.stdout.split()
    assert int(count) > 40
    assert f'\nversion = "{version}"\n' in (REPO / "pyproject.toml").read_text()
