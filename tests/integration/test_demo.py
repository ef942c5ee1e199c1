"""`make demo`'s script, run to the end without a terminal (fast simulator, no Ctrl-C wait)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import use_existing_cluster
from tests.support import pids_whose_cmdline_contains

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    use_existing_cluster(), reason="the demo starts its own local stack"
)


def test_demo_reaches_ready_shows_a_working_kubeconfig_and_cleans_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo"
    env = dict(
        os.environ,
        TOGETHER_OPERATOR_DEV_DIR=str(state_dir),
        DEMO_SPEED="20",
        DEMO_HOLD="no",
        DEMO_WAIT="120",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    env.pop("KUBECONFIG", None)
    demo = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert "CLUSTER_PHASE_READY" in out  # mirrored phase transitions
    assert "kube-system" in out  # the kubeconfig from the Secret listed namespaces
    assert "KubeconfigWritten" in out
    assert 'gpucluster.compute.together.ai "training" deleted' in out
    assert pids_whose_cmdline_contains(str(state_dir)) == []
