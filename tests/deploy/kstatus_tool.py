"""Build (once) and run tests/deploy/kstatus: kstatus's `status.Compute` as a filter.

It is cached like the control-plane binaries (toolchain's lock and atomic rename), in a slot
named after the pinned cli-utils version and a digest of the program's sources, so an edit
to the program or its go.mod builds a fresh binary.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from together_operator.devenv import toolchain

SOURCE = Path(__file__).parent / "kstatus"
SOURCE_FILES = ("go.mod", "go.sum", "main.go")


def cli_utils_version() -> str:
    """The sigs.k8s.io/cli-utils version pinned in the program's go.mod."""
    match = re.search(r"sigs\.k8s\.io/cli-utils (v\S+)", (SOURCE / "go.mod").read_text())
    assert match, "tests/deploy/kstatus/go.mod does not require sigs.k8s.io/cli-utils"
    return match.group(1)


def kstatus_tool() -> toolchain.GoTool:
    digest = hashlib.sha256()
    for name in SOURCE_FILES:
        digest.update((SOURCE / name).read_bytes())
    return toolchain.GoTool(
        name="kstatus",
        module="sigs.k8s.io/cli-utils",
        version=f"{cli_utils_version()}-{digest.hexdigest()[:12]}",
        package="together-operator.local/kstatus",
    )


def _build(tool: toolchain.GoTool, output: Path, log_path: Path) -> None:
    # Build from a copy: `go` must not touch the checked-in go.mod / go.sum.
    with tempfile.TemporaryDirectory(prefix="build-kstatus-") as workdir_name:
        workdir = Path(workdir_name)
        for name in SOURCE_FILES:
            shutil.copy2(SOURCE / name, workdir / name)
        toolchain._run_go(["build", "-trimpath", "-o", str(output), "."], workdir, log_path)


def kstatus_binary() -> Path:
    """The built program, building it first when the cache has no binary for these sources."""
    return toolchain.build_and_cache(
        kstatus_tool(), lambda message: print(message, file=sys.stderr), builder=_build
    )


def compute(binary: Path, objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """kstatus's result for each object: status, message, and the conditions it synthesized."""
    lines = "".join(json.dumps(o) + "\n" for o in objects)
    completed = subprocess.run(
        [str(binary)], input=lines, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]
