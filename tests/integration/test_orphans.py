"""No control-plane process outlives its owner, however the owner dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import use_existing_cluster
from tests.support import pids_whose_cmdline_contains, wait_for

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    use_existing_cluster(), reason="orphan checks concern the local control plane only"
)


def test_sigkill_of_pytest_leaves_no_orphan_control_plane(tmp_path: Path) -> None:
    report = tmp_path / "probe-report"
    env = dict(os.environ, ORPHAN_PROBE_REPORT=str(report))
    env.pop("USE_EXISTING_CLUSTER", None)
    probe = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "probe-tmp"),
            str(REPO / "tests" / "integration" / "orphan_probe.py"),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: report.exists() or probe.poll() is not None,
            timeout=120,
            what="the probe session to start its control plane",
        )
        assert report.exists(), probe.communicate()[0].decode(errors="replace")
        pid, workdir = report.read_text().split("\n")[:2]
        assert int(pid) == probe.pid
        children = pids_whose_cmdline_contains(workdir)
        assert len(children) == 2, f"expected etcd and kube-apiserver, found {children}"

        probe.send_signal(signal.SIGKILL)
        probe.wait(timeout=10)

        wait_for(
            lambda: not pids_whose_cmdline_contains(workdir),
            timeout=5,
            what=f"etcd and kube-apiserver of {workdir} to exit",
        )
    finally:
        probe.kill()
        probe.wait(timeout=10)
