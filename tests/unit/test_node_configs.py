"""The one-node cluster's settings: NODE.md's measured fixes, and nothing that reaches off the
machine (every address in 10.200.0.0/16, no DNS forwarding, no masquerading)."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import yaml

from together_operator.devenv.node import hostnet
from together_operator.devenv.node.configs import (
    POD_CGROUP_ROOT,
    NodeLayout,
    cni_conflist,
    containerd_config,
    corefile,
    dns_service_manifests,
    kube_proxy_config,
    kubelet_config,
)

LAYOUT = NodeLayout(Path("/state/node"))


def test_every_node_address_is_inside_the_node_range() -> None:
    node_range = ipaddress.ip_network(hostnet.NODE_RANGE)
    for address in (
        hostnet.NODE_ADDRESS,
        hostnet.POD_GATEWAY,
        hostnet.KUBERNETES_SERVICE_IP,
        hostnet.DNS_SERVICE_IP,
    ):
        assert ipaddress.ip_address(address) in node_range
    for network in (hostnet.POD_CIDR, hostnet.SERVICE_CIDR):
        assert ipaddress.ip_network(network).subnet_of(node_range)  # type: ignore[arg-type]
    assert not ipaddress.ip_network(hostnet.POD_CIDR).overlaps(
        ipaddress.ip_network(hostnet.SERVICE_CIDR)
    )


def test_containerd_runs_apart_from_any_other_containerd() -> None:
    config = tomllib.loads(containerd_config(LAYOUT, "registry.k8s.io/pause:3.10.2"))
    assert config["root"].startswith("/state/node/")
    assert config["state"].startswith("/state/node/")
    assert config["grpc"]["address"] == str(LAYOUT.containerd_socket)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.2"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(LAYOUT.cni_conf_dir)


def test_pod_network_is_our_bridge_without_masquerading() -> None:
    document = json.loads(cni_conflist(LAYOUT))
    [bridge] = document["plugins"]
    assert bridge["bridge"] == hostnet.BRIDGE
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": hostnet.POD_CIDR}]]
    assert bridge["ipam"]["dataDir"].startswith("/state/node/")


def test_kubelet_works_on_cgroups_v1_and_keeps_to_the_state_dir() -> None:
    config = kubelet_config(
        LAYOUT, client_ca=Path("/ca.crt"), tls_cert=Path("/k.crt"), tls_key=Path("/k.key")
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == POD_CGROUP_ROOT
    assert config["address"] == hostnet.NODE_ADDRESS
    assert config["clusterDNS"] == [hostnet.DNS_SERVICE_IP]
    assert config["resolvConf"].startswith("/state/node/")
    assert config["podLogsDir"].startswith("/state/node/")
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["imageGCHighThresholdPercent"] == 100  # imported images cannot be pulled


def test_kube_proxy_leaves_sysctls_and_real_interfaces_alone() -> None:
    config = kube_proxy_config(Path("/kp.kubeconfig"), 1, 2)
    assert config["mode"] == "iptables"
    assert config["nodePortAddresses"] == [f"{hostnet.NODE_ADDRESS}/32"]
    assert config["iptables"]["localhostNodePorts"] is False  # would set route_localnet
    assert set(config["conntrack"].values()) <= {0, "0s"}
    assert config["healthzBindAddress"].startswith("127.0.0.1:")


def test_cluster_dns_answers_cluster_names_and_forwards_nothing() -> None:
    text = corefile(Path("/dns.kubeconfig"), "ctx", 9153)
    assert f"bind {hostnet.NODE_ADDRESS}" in text
    assert "kubernetes cluster.local" in text
    assert "forward" not in text
    service, endpoints = yaml.safe_load_all(dns_service_manifests())
    assert service["spec"]["clusterIP"] == hostnet.DNS_SERVICE_IP
    assert "selector" not in service["spec"]
    assert endpoints["endpoints"][0]["addresses"] == [hostnet.NODE_ADDRESS]
