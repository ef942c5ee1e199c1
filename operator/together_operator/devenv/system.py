"""The machine's own parts of a one-node cluster: container runtime, CNI, image tools, iptables.

These come from Debian's packages, not from the Go module proxy: containerd and runc as
Debian ships them are what NODE.md measured. As root the project installs what is missing
with apt-get; otherwise it stops with the exact command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ProgressFn = Callable[[str], None]


class SystemPackagesError(RuntimeError):
    """A program the node needs is missing and cannot be installed here; says what to do."""


@dataclass(frozen=True)
class Requirement:
    """A program the node runs, and the Debian package that provides it."""

    package: str
    program: str


#: The CNI plugins are not on PATH: containerd runs them from CNI_BIN_DIR.
CNI_BIN_DIR = Path("/usr/lib/cni")

REQUIREMENTS = (
    Requirement("containerd", "containerd"),
    Requirement("containerd", "ctr"),
    Requirement("containerd", "containerd-shim-runc-v2"),
    Requirement("runc", "runc"),
    Requirement("containernetworking-plugins", str(CNI_BIN_DIR / "bridge")),
    Requirement("containernetworking-plugins", str(CNI_BIN_DIR / "host-local")),
    Requirement("containernetworking-plugins", str(CNI_BIN_DIR / "loopback")),
    Requirement("buildah", "buildah"),
    Requirement("mmdebstrap", "mmdebstrap"),
    Requirement("iptables", "iptables"),
    Requirement("iptables", "ip6tables"),
    Requirement("iproute2", "ip"),
    Requirement("conntrack", "conntrack"),
    # kube-proxy leaves netfilter accounting objects behind; teardown deletes them with it.
    Requirement("nfacct", "nfacct"),
    # The pause image is compiled from Kubernetes' pause.c, statically.
    Requirement("gcc", "gcc"),
    Requirement("libc6-dev", "/usr/lib/x86_64-linux-gnu/libc.a"),
)


def _present(program: str) -> bool:
    if program.startswith("/"):
        return Path(program).exists()
    return shutil.which(program) is not None


def missing_packages(requirements: tuple[Requirement, ...] = REQUIREMENTS) -> list[str]:
    """Debian packages whose programs are not on this machine, in a stable order."""
    missing: list[str] = []
    for requirement in requirements:
        if not _present(requirement.program) and requirement.package not in missing:
            missing.append(requirement.package)
    return missing


def install_command(packages: list[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def ensure_system_packages(
    progress: ProgressFn,
    requirements: tuple[Requirement, ...] = REQUIREMENTS,
    is_root: bool | None = None,
    runner: Callable[[list[str]], None] | None = None,
) -> None:
    """Install the missing Debian packages when root; otherwise fail saying what to install."""
    missing = missing_packages(requirements)
    if not missing:
        return
    root = os.geteuid() == 0 if is_root is None else is_root
    if not root or (shutil.which("apt-get") is None and runner is None):
        raise SystemPackagesError(
            "a one-node cluster needs these Debian packages, which are missing: "
            f"{' '.join(missing)}. Install them as root: "
            f"`apt-get update && {' '.join(install_command(missing))}` "
            "(the node also needs root itself: it adds an address, a bridge and iptables rules)"
        )
    run = runner or _run_apt
    progress(f"installing Debian packages for the node: {' '.join(missing)}")
    run(["apt-get", "update", "-qq"])
    run(install_command(missing))
    still = missing_packages(requirements)
    if still:
        raise SystemPackagesError(f"apt-get installed, yet still missing: {' '.join(still)}")


def _run_apt(argv: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    completed = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if completed.returncode != 0:
        raise SystemPackagesError(
            f"`{' '.join(argv)}` failed (exit {completed.returncode}):\n{completed.stderr[-2000:]}"
        )
