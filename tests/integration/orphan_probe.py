"""Not collected by default: run by test_orphans.py as a pytest session that gets SIGKILLed.

It takes the suite's own control-plane fixture, reports its pid and the control plane's
work directory, then waits to be killed (bounded, in case nobody does).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support import KubeTarget


def test_hold_control_plane_until_killed(kube: KubeTarget) -> None:
    report = Path(os.environ["ORPHAN_PROBE_REPORT"])
    partial = report.with_suffix(".partial")
    workdir = kube.workdir  # type: ignore[attr-defined]  # the local ControlPlane
    partial.write_text(f"{os.getpid()}\n{workdir}\n")
    partial.rename(report)
    time.sleep(120)
    raise AssertionError("the orphan probe was supposed to be killed before now")
