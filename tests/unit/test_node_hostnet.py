"""Removing the node's iptables chains from `iptables -S` output, as kube-proxy leaves it."""

from __future__ import annotations

from together_operator.devenv.node.hostnet import CHAIN_PREFIXES, chain_cleanup

LISTING = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-N KUBE-FIREWALL
-N KUBE-FORWARD
-N TOGETHER-NODE-GUARD
-N DOCKER-USER
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -j TOGETHER-NODE-GUARD
-A FORWARD -j DOCKER-USER
-A INPUT -s 192.0.2.0/24 -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block localnet" -j DROP
-A KUBE-FORWARD -j KUBE-FIREWALL
"""


def test_jumps_to_node_chains_are_deleted_then_the_chains() -> None:
    commands = chain_cleanup(LISTING, CHAIN_PREFIXES)
    assert commands == [
        ["-D", "INPUT", "-j", "KUBE-FIREWALL"],
        # The quoted comment stays one argument, so the delete matches the rule exactly.
        [
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "kubernetes forwarding rules",
            "-j",
            "KUBE-FORWARD",
        ],
        ["-D", "FORWARD", "-j", "TOGETHER-NODE-GUARD"],
        ["-F", "KUBE-FIREWALL"],
        ["-F", "KUBE-FORWARD"],
        ["-F", "TOGETHER-NODE-GUARD"],
        ["-X", "KUBE-FIREWALL"],
        ["-X", "KUBE-FORWARD"],
        ["-X", "TOGETHER-NODE-GUARD"],
    ]


def test_other_chains_and_rules_are_left_alone() -> None:
    commands = chain_cleanup(LISTING, CHAIN_PREFIXES)
    touched = " ".join(" ".join(c) for c in commands)
    assert "DOCKER-USER" not in touched
    assert "192.0.2.0/24" not in touched
