"""The e2e tier's leak check: two captures of the machine, and what the later one adds."""

from __future__ import annotations

import dataclasses

from tests.e2e.machine import MachineState

EMPTY = MachineState(
    processes=frozenset(),
    mounts=frozenset({"/"}),
    iptables=frozenset(),
    nfacct=frozenset(),
    addresses=frozenset({"lo 127.0.0.1/8"}),
    links=frozenset({"lo"}),
    routes=frozenset({"default via 192.0.2.1 dev eth0"}),
    sysctls={"vm/overcommit_memory": "0", "net/ipv4/ip_forward": "0"},
    cgroups=frozenset(),
)


def test_an_unchanged_machine_has_nothing_left_behind() -> None:
    assert EMPTY.left_behind(dataclasses.replace(EMPTY, sysctls=dict(EMPTY.sysctls))) == []


def test_every_kind_of_leftover_is_reported() -> None:
    later = dataclasses.replace(
        EMPTY,
        processes=frozenset({"4242 kubelet"}),
        mounts=frozenset({"/", "/state/node/kubelet/root"}),
        iptables=frozenset({"iptables-save filter -A INPUT -j KUBE-FIREWALL"}),
        nfacct=frozenset({"ct_state_invalid_dropped_pkts"}),
        addresses=frozenset({"lo 127.0.0.1/8", "lo 10.200.0.1/32"}),
        links=frozenset({"lo", "together0"}),
        routes=frozenset({"default via 192.0.2.1 dev eth0", "unreachable 10.200.0.0/16"}),
        sysctls={"vm/overcommit_memory": "1", "net/ipv4/ip_forward": "0", "new/one": "1"},
        cgroups=frozenset({"/sys/fs/cgroup/memory/together-node"}),
    )
    assert EMPTY.left_behind(later) == [
        "processes: new 4242 kubelet",
        "mounts: new /state/node/kubelet/root",
        "iptables: new iptables-save filter -A INPUT -j KUBE-FIREWALL",
        "nfacct: new ct_state_invalid_dropped_pkts",
        "addresses: new lo 10.200.0.1/32",
        "links: new together0",
        "cgroups: new /sys/fs/cgroup/memory/together-node",
        "routes: new unreachable 10.200.0.0/16",
        "sysctl vm/overcommit_memory: '0' -> '1'",
    ]


def test_something_removed_is_reported_too() -> None:
    later = dataclasses.replace(EMPTY, addresses=frozenset(), routes=frozenset())
    assert EMPTY.left_behind(later) == [
        "routes: gone default via 192.0.2.1 dev eth0",
        "addresses: gone lo 127.0.0.1/8",
    ]
