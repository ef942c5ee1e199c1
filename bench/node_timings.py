"""Time the one-node cluster: binaries, stand-in base image, image build, node up, dev down,
and (with --e2e) the e2e tier. Prints its own figures; run as root from the checkout:

    .venv/bin/python bench/node_timings.py           # warm: the caches as they are
    .venv/bin/python bench/node_timings.py --cold    # empty caches (Go, binaries, images)

--cold points TOGETHER_OPERATOR_CACHE, GOCACHE and GOMODCACHE at empty temporary
directories, so every binary is built from the Go module proxy and the stand-in base image
is built again; the Debian packages are whatever the machine has.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "together_operator.cli"]


def timed(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    started = time.monotonic()
    completed = subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        sys.exit(f"`{' '.join(argv)}` failed:\n{completed.stderr[-3000:]}")
    return elapsed, completed.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold", action="store_true", help="empty Go, binary and image caches")
    parser.add_argument("--e2e", action="store_true", help="also time `pytest tests/e2e`")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="together-bench-"))
    env = dict(os.environ, TOGETHER_OPERATOR_DEV_DIR=str(scratch / "dev"))
    if args.cold:
        env.update(
            TOGETHER_OPERATOR_CACHE=str(scratch / "cache"),
            GOCACHE=str(scratch / "gocache"),
            GOMODCACHE=str(scratch / "gomod"),
        )
    figures: list[tuple[str, str]] = []
    seconds, _ = timed([*CLI, "dev", "tools", "--with-node"], env, 3600)
    figures.append(("node binaries (dev tools --with-node)", f"{seconds:.0f} s"))
    seconds, progress = timed([*CLI, "dev", "up", "--in-cluster"], env, 1800)
    figures.append(("dev up --in-cluster, whole", f"{seconds:.0f} s"))
    for label, pattern in (
        ("stand-in base image", r"stand-in base image built in (\d+)s"),
        ("image build from the Dockerfile", r"image built in (\d+)s"),
        ("node up (to Ready)", r"Ready (\d+)s after start"),
    ):
        match = re.search(pattern, progress)
        figures.append((label, f"{match.group(1)} s" if match else "cached"))
    seconds, _ = timed([*CLI, "dev", "down"], env, 600)
    figures.append(("dev down", f"{seconds:.0f} s"))
    if args.e2e:
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/e2e"]
        seconds, _ = timed(pytest, env, 3600)
        figures.append(("e2e tier (pytest tests/e2e)", f"{seconds:.0f} s"))
    width = max(len(label) for label, _ in figures)
    caches = env.get("TOGETHER_OPERATOR_CACHE", "~/.cache/together-operator")
    print(f"{'cold' if args.cold else 'warm'} run, caches in {caches}")
    for label, value in figures:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
