"""`together-operator dev up` / `dev down` as a person uses them from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import use_existing_cluster
from tests.support import pids_whose_cmdline_contains
from together_operator.devenv.toolchain import KUBECTL, resolve_binary

pytestmark = pytest.mark.skipif(
    use_existing_cluster(), reason="`dev up` starts the local control plane"
)


def test_dev_up_then_kubectl_then_dev_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    kubectl = resolve_binary(KUBECTL)
    venv_bin = Path(sys.executable).parent  # where `together-operator` is installed
    env = dict(
        os.environ,
        TOGETHER_OPERATOR_DEV_DIR=str(state_dir),
        KUBECTL=str(kubectl),
        PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
    )
    script = """
        set -eu
        eval "$(together-operator dev up)"
        "$KUBECTL" get --raw /readyz
        echo
        echo "kubeconfig=$KUBECONFIG"
    """
    try:
        up = subprocess.run(
            ["bash", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert up.returncode == 0, up.stderr
        lines = up.stdout.splitlines()
        assert lines[0] == "ok"
        assert (
            lines[1] == f"kubeconfig={state_dir / 'control-plane' / 'users' / 'admin.kubeconfig'}"
        )
        assert len(pids_whose_cmdline_contains(str(state_dir))) == 3  # supervisor, etcd, apiserver
        # Progress went to stderr: on stdout it would have broken the `eval` above.
        assert "starting etcd" in up.stderr
    finally:
        down = subprocess.run(
            ["together-operator", "dev", "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert pids_whose_cmdline_contains(str(state_dir)) == []
    assert not (state_dir / "env.sh").exists()
