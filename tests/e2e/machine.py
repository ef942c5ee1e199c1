"""What a one-node cluster could leave on this machine, captured so two captures can be compared.

Processes (by what they run), mounts, iptables rules and chains in both families, netfilter
accounting objects, addresses, links, routes, every writable sysctl, and the node's cgroups.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The cgroup under which the kubelet runs every container (configs.POD_CGROUP_ROOT).
POD_CGROUP = "/together-node"
#: Sysctls that change on their own.
VOLATILE_SYSCTLS = frozenset({"kernel/ns_last_pid"})
BUILTIN_CHAINS = frozenset({"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"})


def _lines(argv: list[str]) -> list[str]:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return completed.stdout.splitlines()


def node_processes(markers: tuple[str, ...]) -> set[str]:
    """'PID program' of every live process of the node: its daemons and shims name its state
    directory (a marker) on their command line, its containers run in its Pod cgroup."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(") ", 1)[1][0]
            cgroups = (proc / "cgroup").read_text()
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        if state == "Z":
            continue
        program = os.path.basename(cmdline[0].decode(errors="replace"))
        text = b" ".join(cmdline).decode(errors="replace")
        if any(marker in text for marker in markers) or f":{POD_CGROUP}/" in cgroups:
            found.add(f"{proc.name} {program}")
    return found


def iptables_rules() -> set[str]:
    """Rules and user chains of every table in both families (policies of built-in chains
    only when not ACCEPT: an empty table that merely got listed counts as absent)."""
    rules = set()
    for command in ("iptables-save", "ip6tables-save"):
        table = ""
        for line in _lines([command]):
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                name, policy = line[1:].split()[:2]
                if name not in BUILTIN_CHAINS or policy != "ACCEPT":
                    rules.add(f"{command} {table} chain {name} {policy}")
            elif line.startswith("-A"):
                rules.add(f"{command} {table} {line}")
    return rules


def writable_sysctls() -> dict[str, str]:
    values = {}
    for directory, _, files in os.walk("/proc/sys"):
        for name in files:
            path = os.path.join(directory, name)
            key = path[len("/proc/sys/") :]
            if key in VOLATILE_SYSCTLS:
                continue
            try:
                if os.stat(path).st_mode & stat.S_IWUSR:
                    values[key] = Path(path).read_text().strip()
            except OSError:
                continue
    return values


@dataclass(frozen=True)
class MachineState:
    processes: frozenset[str]
    mounts: frozenset[str]
    iptables: frozenset[str]
    nfacct: frozenset[str]
    addresses: frozenset[str]
    links: frozenset[str]
    routes: frozenset[str]
    sysctls: dict[str, str]
    cgroups: frozenset[str]

    @classmethod
    def capture(cls, markers: tuple[str, ...]) -> MachineState:
        mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
        addresses = set()
        for line in _lines(["ip", "-o", "addr", "show"]):
            words = line.split()
            addresses.add(f"{words[1]} {words[3]}")
        links = {line.split(":")[1].strip().split("@")[0] for line in _lines(["ip", "-o", "link"])}
        routes = set(_lines(["ip", "route", "show", "table", "all"]))
        routes |= set(_lines(["ip", "-6", "route", "show", "table", "all"]))
        nfacct = {
            shlex.split(line.replace("=", " "))[-1].rstrip(";")
            for line in _lines(["nfacct", "list"])
            if "=" in line
        }
        cgroups = {str(path) for path in Path("/sys/fs/cgroup").glob("*/together-node")}
        return cls(
            processes=frozenset(node_processes(markers)),
            mounts=frozenset(mounts),
            iptables=frozenset(iptables_rules()),
            nfacct=frozenset(nfacct),
            addresses=frozenset(addresses),
            links=frozenset(links),
            routes=frozenset(routes),
            sysctls=writable_sysctls(),
            cgroups=frozenset(cgroups),
        )

    def left_behind(self, later: MachineState) -> list[str]:
        """What ``later`` has that this (earlier) capture had not, or changed, one line each."""
        found = []
        for kind in ("processes", "mounts", "iptables", "nfacct", "addresses", "links", "cgroups"):
            before, after = getattr(self, kind), getattr(later, kind)
            found += [f"{kind}: new {item}" for item in sorted(after - before)]
        # A route through an interface that came and went is gone with it: compare all.
        found += [f"routes: new {r}" for r in sorted(later.routes - self.routes)]
        found += [f"routes: gone {r}" for r in sorted(self.routes - later.routes)]
        found += [f"addresses: gone {a}" for a in sorted(self.addresses - later.addresses)]
        for key, value in sorted(later.sysctls.items()):
            if key in self.sysctls and self.sysctls[key] != value:
                found.append(f"sysctl {key}: {self.sysctls[key]!r} -> {value!r}")
        return found
