"""Undo what a node did to the machine, from its record alone (works after any crash).

Order matters: first every process (recorded daemons, then Pods' processes found by their
cgroup, then containerd's shims found by the socket path on their command line), then the
mounts they held, then the network, sysctls and cgroups. Everything is found by PID, path or
name that the node itself chose; nothing is matched by a broad pattern.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from together_operator.devenv.node import hostnet
from together_operator.devenv.node.record import NodeRecord, process_start_time

CGROUP_MOUNT = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
_MNT_DETACH = 2

ProgressFn = Callable[[str], None]


def tear_down(record: NodeRecord, progress: ProgressFn) -> None:
    """Undo everything in ``record`` and forget it."""
    _stop_pids(_recorded_pids(record))
    if record.cgroup:
        _stop_pids(cgroup_pids(record.cgroup))
    _stop_pids(pids_with_markers(record.process_markers))
    if record.cgroup:
        _stop_pids(cgroup_pids(record.cgroup))  # anything a dying shim started meanwhile
    unmounted = unmount_under(record.mount_roots)
    hostnet.tear_down(record)
    restored = hostnet.restore_sysctls(record)
    if record.cgroup:
        remove_cgroups(record.cgroup)
    remove_container_log_links(record.mount_roots)
    progress(
        f"node removed: {unmounted} mounts, {len(record.addresses)} address(es), "
        f"{len(record.links)} bridge(s), iptables chains {'/'.join(record.chain_prefixes)}*, "
        f"sysctls restored: {', '.join(restored) or 'none changed'}"
    )
    record.discard()


def _recorded_pids(record: NodeRecord) -> list[int]:
    pids = []
    for process in reversed(record.processes):
        # A PID whose start time differs was reused by someone else: leave it alone.
        if process_start_time(process.pid) == process.start_time:
            pids.append(process.pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _stop_pids(pids: Iterable[int], timeout: float = 10.0) -> None:
    """SIGTERM each, wait up to ``timeout``, then SIGKILL what is left."""
    targets = [pid for pid in pids if pid != os.getpid()]
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in targets):
        time.sleep(0.1)
    for pid in targets:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in targets):
        time.sleep(0.1)


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def cgroup_pids(cgroup: str) -> list[int]:
    """Every process in ``cgroup`` or below it, in any hierarchy."""
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        base = hierarchy / cgroup.lstrip("/")
        if not base.is_dir():
            continue
        for directory, _, _ in os.walk(base):
            try:
                text = (Path(directory) / "cgroup.procs").read_text()
            except (FileNotFoundError, OSError):
                continue
            pids.update(int(line) for line in text.split())
    return sorted(pids)


def pids_with_markers(markers: list[str]) -> list[int]:
    """Processes whose command line contains one of ``markers`` (the node's socket path)."""
    if not markers:
        return []
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(marker.encode() in cmdline for marker in markers):
            found.append(int(proc.name))
    return found


def mounts_under(roots: list[str]) -> list[str]:
    """Mount points at or below ``roots``, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if any(point == root or point.startswith(root.rstrip("/") + "/") for root in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def unmount_under(roots: list[str]) -> int:
    """Detach every mount below ``roots``; returns how many. Repeats while new ones appear
    (a mount may hide another at the same point)."""
    libc = ctypes.CDLL(None, use_errno=True)
    count = 0
    for _ in range(10):
        points = mounts_under(roots)
        if not points:
            break
        for point in points:
            if libc.umount2(point.encode(), _MNT_DETACH) == 0:
                count += 1
    return count


def _hierarchies() -> list[Path]:
    try:
        return [p for p in CGROUP_MOUNT.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def remove_cgroups(cgroup: str, timeout: float = 10.0) -> None:
    """rmdir ``cgroup`` and everything below it, deepest first, in every hierarchy."""
    deadline = time.monotonic() + timeout
    for hierarchy in _hierarchies():
        base = hierarchy / cgroup.lstrip("/")
        while base.is_dir():
            for directory, _, _ in os.walk(base, topdown=False):
                with contextlib.suppress(OSError):
                    Path(directory).rmdir()
            if not base.is_dir() or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a cgroup is busy until its last process has been reaped


def remove_container_log_links(roots: list[str]) -> None:
    """The kubelet links every container's log into /var/log/containers (a fixed path):
    remove the links that point into the node's state directory."""
    try:
        links = list(CONTAINER_LOG_LINKS.iterdir())
    except FileNotFoundError:
        return
    for link in links:
        if not link.is_symlink():
            continue
        target = os.readlink(link)
        if any(target.startswith(root.rstrip("/") + "/") for root in roots):
            link.unlink(missing_ok=True)
