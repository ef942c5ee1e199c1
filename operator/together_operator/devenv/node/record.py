"""What the node changed on this machine, written down before each change.

A JSON file in the node's state directory. `dev down`, the supervisor's own shutdown and the
test teardown all undo what it lists, so a crash between two steps never strands a change:
the change was recorded before it was made, and undoing something that is not there is a
no-op.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class RecordedProcess:
    """A process the node started; ``start_time`` (from /proc/PID/stat) tells a reused PID."""

    name: str
    pid: int
    start_time: int


@dataclass
class NodeRecord:
    """Everything to undo. Persisted at ``path`` on every change."""

    path: Path
    #: sysctl name (a path under /proc/sys) -> its value before the node started.
    sysctls: dict[str, str] = field(default_factory=dict)
    #: (address/prefix, device) pairs added with `ip addr add`.
    addresses: list[tuple[str, str]] = field(default_factory=list)
    #: `ip route` specifications added, e.g. "unreachable 10.200.0.0/16".
    routes: list[str] = field(default_factory=list)
    #: Network links created (the bridge).
    links: list[str] = field(default_factory=list)
    #: Directories under which every mount is the node's (its state directory).
    mount_roots: list[str] = field(default_factory=list)
    #: The cgroup (relative to each hierarchy) under which the kubelet puts every Pod.
    cgroup: str | None = None
    #: Prefixes of the iptables chains the node's components create.
    chain_prefixes: list[str] = field(default_factory=list)
    #: Netfilter accounting objects (nfacct) a component will create and teardown deletes.
    nfacct_objects: list[str] = field(default_factory=list)
    #: Substrings of command lines that only the node's processes carry (its socket path).
    process_markers: list[str] = field(default_factory=list)
    processes: list[RecordedProcess] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> NodeRecord | None:
        """The record at ``path``, or None when the node left nothing to undo."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(
            path=path,
            sysctls=dict(data["sysctls"]),
            addresses=[(a, d) for a, d in data["addresses"]],
            routes=list(data["routes"]),
            links=list(data["links"]),
            mount_roots=list(data["mount_roots"]),
            cgroup=data["cgroup"],
            chain_prefixes=list(data["chain_prefixes"]),
            nfacct_objects=list(data["nfacct_objects"]),
            process_markers=list(data["process_markers"]),
            processes=[RecordedProcess(**p) for p in data["processes"]],
        )

    def save(self) -> None:
        data = asdict(self)
        data.pop("path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(partial, self.path)

    def note_process(self, name: str, pid: int) -> None:
        self.processes.append(RecordedProcess(name, pid, process_start_time(pid) or 0))
        self.save()

    def discard(self) -> None:
        """Everything is undone: forget it."""
        self.path.unlink(missing_ok=True)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None when PID is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(") ", 1)[1].split()[19])
