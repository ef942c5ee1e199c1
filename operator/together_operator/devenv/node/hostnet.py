"""The node's network on this machine, kept off every real network.

Every address is in 10.200.0.0/16, which this machine does not otherwise use:

- the node's address, a /32 on ``lo`` (API server, kubelet, CoreDNS, the simulator);
- the Pod network on a bridge of our own (the CNI bridge plugin attaches Pods to it);
- the Service range, which exists only as kube-proxy's iptables rules.

Two guards keep traffic on the machine: an ``unreachable`` route for the whole /16 (a Service
address without rules, or a typo, fails at once instead of leaving through the default route)
and a FORWARD rule that drops anything from the Pod network that would leave by another
interface than the bridge. CoreDNS answers cluster names only and forwards nothing.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from together_operator.devenv.node.record import NodeRecord

NODE_NAME = "together-node"
NODE_ADDRESS = "10.200.0.1"
NODE_RANGE = "10.200.0.0/16"
POD_CIDR = "10.200.1.0/24"
POD_GATEWAY = "10.200.1.1"
SERVICE_CIDR = "10.200.2.0/24"
KUBERNETES_SERVICE_IP = "10.200.2.1"
DNS_SERVICE_IP = "10.200.2.10"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "together0"
GUARD_CHAIN = "TOGETHER-NODE-GUARD"

#: Chains the node's components create: kube-proxy and the kubelet (KUBE-), CNI plugins
#: (CNI-), and ours. Removed with every rule that jumps to them.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "TOGETHER-")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
#: Counters kube-proxy's iptables rules account into (`-m nfacct`); they outlive the rules.
KUBE_PROXY_NFACCT = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")

#: Every sysctl a component of the node is known to change: the kubelet's kernel tunables,
#: the CNI bridge plugin's forwarding, kube-proxy's (with conntrack and localhost NodePorts
#: off it should leave these alone, but a node must not leave the machine changed if a
#: default moves).
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/default/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal",
)

SYSCTL_ROOT = Path("/proc/sys")


class HostNetworkError(RuntimeError):
    """A change to the machine's network failed; the message has the command and its error."""


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and completed.returncode != 0:
        raise HostNetworkError(
            f"`{' '.join(argv)}` failed (exit {completed.returncode}): {completed.stderr.strip()}"
        )
    return completed


def read_sysctl(name: str) -> str | None:
    try:
        return (SYSCTL_ROOT / name).read_text().strip()
    except (FileNotFoundError, PermissionError, OSError):
        return None


def record_sysctls(record: NodeRecord) -> None:
    """Remember each sysctl's value once (a second `up` after a crash keeps the first)."""
    for name in SYSCTLS:
        value = read_sysctl(name)
        if value is not None and name not in record.sysctls:
            record.sysctls[name] = value
    record.save()


def restore_sysctls(record: NodeRecord) -> list[str]:
    """Write back every recorded value that changed; returns the names restored."""
    restored = []
    # ip_forward resets every conf/*/forwarding: restore it first, the per-interface ones after.
    for name in sorted(record.sysctls, key=lambda n: n != "net/ipv4/ip_forward"):
        original = record.sysctls[name]
        if read_sysctl(name) not in (None, original):
            (SYSCTL_ROOT / name).write_text(original + "\n")
            restored.append(name)
    return restored


def _has_address(cidr: str, device: str) -> bool:
    shown = _run(["ip", "-o", "addr", "show", "dev", device], check=False).stdout
    return f" {cidr} " in shown


def _link_exists(name: str) -> bool:
    return _run(["ip", "link", "show", "dev", name], check=False).returncode == 0


@dataclass(frozen=True)
class Route:
    """An `ip route` specification, e.g. ("unreachable", "10.200.0.0/16")."""

    kind: str
    prefix: str

    def spec(self) -> list[str]:
        return [self.kind, self.prefix]


GUARD_ROUTE = Route("unreachable", NODE_RANGE)


def set_up(record: NodeRecord) -> None:
    """Address on lo, the Pod bridge, the guard route and the FORWARD guard (recorded first)."""
    address = (f"{NODE_ADDRESS}/32", "lo")
    if address not in record.addresses:
        record.addresses.append(address)
    if BRIDGE not in record.links:
        record.links.append(BRIDGE)
    route = " ".join(GUARD_ROUTE.spec())
    if route not in record.routes:
        record.routes.append(route)
    record.chain_prefixes = list(CHAIN_PREFIXES)
    existing = nfacct_names()
    for name in KUBE_PROXY_NFACCT:
        if name not in existing and name not in record.nfacct_objects:
            record.nfacct_objects.append(name)
    record.save()

    if not _has_address(address[0], "lo"):
        _run(["ip", "addr", "add", address[0], "dev", "lo"])
    if not _link_exists(BRIDGE):
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    if not _has_address(f"{POD_GATEWAY}/24", BRIDGE):
        _run(["ip", "addr", "add", f"{POD_GATEWAY}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    _run(["ip", "route", "replace", *GUARD_ROUTE.spec()])
    _install_forward_guard()


def _install_forward_guard() -> None:
    if _run(["iptables", "-t", "filter", "-S", GUARD_CHAIN], check=False).returncode != 0:
        _run(["iptables", "-t", "filter", "-N", GUARD_CHAIN])
    _run(["iptables", "-t", "filter", "-F", GUARD_CHAIN])
    _run(
        [
            "iptables",
            "-t",
            "filter",
            "-A",
            GUARD_CHAIN,
            "-s",
            POD_CIDR,
            "!",
            "-o",
            BRIDGE,
            "-m",
            "comment",
            "--comment",
            "together-node: Pods never reach a real network",
            "-j",
            "DROP",
        ]
    )
    jump = ["FORWARD", "-j", GUARD_CHAIN]
    if _run(["iptables", "-t", "filter", "-C", *jump], check=False).returncode != 0:
        _run(["iptables", "-t", "filter", "-I", *jump])


def nfacct_names() -> set[str]:
    """Names of the netfilter accounting objects that exist now."""
    listed = _run(["nfacct", "list"], check=False).stdout
    return {line.rsplit("=", 1)[1].strip(" ;") for line in listed.splitlines() if "=" in line}


def tear_down(record: NodeRecord) -> None:
    """Undo every network change in ``record``: iptables, routes, bridge, addresses."""
    remove_chains(tuple(record.chain_prefixes) or CHAIN_PREFIXES)
    present = nfacct_names()
    for name in record.nfacct_objects:
        if name in present:
            _run(["nfacct", "del", name], check=False)
    for route in record.routes:
        _run(["ip", "route", "del", *route.split()], check=False)
    for link in record.links:
        if _link_exists(link):
            _run(["ip", "link", "del", link])
    for cidr, device in record.addresses:
        if _has_address(cidr, device):
            _run(["ip", "addr", "del", cidr, "dev", device])


def remove_chains(prefixes: tuple[str, ...]) -> None:
    """Delete, in both families and every table, each rule that jumps to a chain named with
    one of ``prefixes``, then those chains (kube-proxy's own --cleanup leaves KUBE-FIREWALL
    and the canaries behind)."""
    for command in ("iptables", "ip6tables"):
        for table in IPTABLES_TABLES:
            listed = _run([command, "-t", table, "-S"], check=False)
            if listed.returncode != 0:
                continue
            for args in chain_cleanup(listed.stdout, prefixes):
                _run([command, "-t", table, *args], check=False)


def chain_cleanup(listing: str, prefixes: tuple[str, ...]) -> list[list[str]]:
    """From `iptables -S` output, the arguments that remove the chains named with
    ``prefixes``: delete each rule elsewhere that jumps to one, then flush, then delete them."""
    rules = [shlex.split(line) for line in listing.splitlines() if line.strip()]
    chains = [w[1] for w in rules if w[0] == "-N" and w[1].startswith(prefixes)]
    commands = [
        ["-D", *words[1:]]
        for words in rules
        if words[0] == "-A" and words[1] not in chains and _jump_target(words) in chains
    ]
    commands += [["-F", chain] for chain in chains]
    commands += [["-X", chain] for chain in chains]
    return commands


def _jump_target(words: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in words:
            index = words.index(flag)
            if index + 1 < len(words):
                return words[index + 1]
    return None
