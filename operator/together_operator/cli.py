"""Entry point `together-operator`: run | simulator | dev | crd (see the brief's CLI contract)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from together_operator import __version__


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="together-operator")
def main() -> None:
    """Manage Together AI GPU clusters from Kubernetes."""


@main.group()
def dev() -> None:
    """The local stack: a real etcd + kube-apiserver on 127.0.0.1, in the background."""


_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the stack keeps its files and logs "
    "[default: $TOGETHER_OPERATOR_DEV_DIR or ~/.local/state/together-operator/dev].",
)


@dev.command("up")
@_STATE_DIR
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulator lifecycle speed: 1 takes about a minute from create to Ready.",
)
@click.option("--no-operator", is_flag=True, help="Leave the operator out (run it yourself).")
@click.option(
    "--in-cluster",
    is_flag=True,
    help="A one-node cluster (kubelet on containerd; needs root) with the operator as a Pod "
    "from the image built from the Dockerfile, installed from deploy/.",
)
def dev_up(state_dir: Path | None, speed: float, no_operator: bool, in_cluster: bool) -> None:
    """Start the local stack (control plane, Together simulator, operator) in the background.

    Prints `export` lines for `eval "$(together-operator dev up)"`.
    """
    from together_operator.devenv import stack

    options = stack.StackOptions(speed=speed, with_operator=not no_operator, in_cluster=in_cluster)
    try:
        click.echo(stack.up(state_dir or stack.default_state_dir(), _progress, options), nl=False)
    except (stack.DevStackError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error


@dev.command("down")
@_STATE_DIR
def dev_down(state_dir: Path | None) -> None:
    """Stop everything `dev up` started."""
    from together_operator.devenv import stack

    stack.down(state_dir or stack.default_state_dir(), _progress)


@dev.command("tools")
@click.option(
    "--with-helm", is_flag=True, help="Also find or build helm (the deploy tests use it)."
)
@click.option(
    "--with-node",
    is_flag=True,
    help="Also the one-node cluster's binaries (kubelet, kube-controller-manager, "
    "kube-scheduler, kube-proxy, CoreDNS) and, as root, its Debian packages.",
)
def dev_tools(with_helm: bool, with_node: bool) -> None:
    """Find or build etcd, kube-apiserver and kubectl; print where each one is."""
    from together_operator.devenv.system import SystemPackagesError, ensure_system_packages
    from together_operator.devenv.toolchain import (
        CONTROL_PLANE_TOOLS,
        HELM,
        NODE_TOOLS,
        ToolchainError,
        ensure_binaries,
    )

    tools = (
        *CONTROL_PLANE_TOOLS,
        *((HELM,) if with_helm else ()),
        *(NODE_TOOLS if with_node else ()),
    )
    try:
        if with_node:
            try:
                ensure_system_packages(_progress)
            except SystemPackagesError as error:
                if os.geteuid() == 0:
                    raise
                # Not root: the binaries still build; the e2e tier then says what is missing.
                _progress(f"warning: {error}")
        for name, path in ensure_binaries(tools, progress=_progress).items():
            click.echo(f"{name}\t{path}")
    except (ToolchainError, SystemPackagesError) as error:
        raise click.ClickException(str(error)) from error


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="An accepted API key (repeatable) [default: sim-key].",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Lifecycle speed factor: 1 takes about a minute from create to Ready, 60 one second.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep clusters and volumes in this JSON file across restarts.",
)
@click.option(
    "--tenant-kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Hand out this kubeconfig (base64) for new clusters instead of a generated one.",
)
@click.option(
    "--fail",
    "failure_bursts",
    multiple=True,
    metavar="OPERATION:STATUS:COUNT",
    help="The next COUNT requests to OPERATION (an operationId, or *) fail with STATUS.",
)
@click.option(
    "--fail-rate",
    "failure_rates",
    multiple=True,
    metavar="OPERATION:STATUS:PROBABILITY",
    help="Each request to OPERATION fails with STATUS with PROBABILITY (429/503 carry "
    "Retry-After).",
)
@click.option(
    "--latency",
    "latencies",
    multiple=True,
    metavar="OPERATION:SECONDS",
    help="Delay every request to OPERATION.",
)
@click.option(
    "--drop-after-commit",
    "drops",
    multiple=True,
    metavar="OPERATION:COUNT",
    help="Close the connection without answering after COUNT committed requests to OPERATION.",
)
@click.option(
    "--stock",
    "stock",
    multiple=True,
    metavar="REGION/GPU_TYPE=GPUS[:PREEMPTIBLE_GPUS]",
    help="GPUs in stock for a region and GPU type (default 256 on-demand, 64 preemptible).",
)
@click.option("--fault-seed", type=int, help="Seed for probabilistic faults (reproducible runs).")
@click.option(
    "--key-account",
    "key_accounts",
    multiple=True,
    metavar="KEY=ACCOUNT",
    help="Put an API key in an account (repeatable): a key sees only its account's clusters. "
    "Keys not named share the default account.",
)
@click.option(
    "--list-scope",
    type=click.Choice(["account", "default-project"]),
    default="account",
    show_default=True,
    help="What a List without projectId shows: the key's whole account, or only its default "
    "project (the contract allows either).",
)
def simulator(
    host: str,
    port: int,
    api_keys: tuple[str, ...],
    speed: float,
    state_file: Path | None,
    tenant_kubeconfig: Path | None,
    failure_bursts: tuple[str, ...],
    failure_rates: tuple[str, ...],
    latencies: tuple[str, ...],
    drops: tuple[str, ...],
    stock: tuple[str, ...],
    fault_seed: int | None,
    key_accounts: tuple[str, ...],
    list_scope: str,
) -> None:
    """Serve a simulated Together GPU cluster API (under /v1) and its admin API (/_sim/)."""
    import logging

    from together_operator.simulator import catalog, faults, server

    try:
        injected = faults.Faults(seed=fault_seed)
        for failure in map(faults.parse_failure_burst, failure_bursts):
            injected.add_failure(failure)
        for failure in map(faults.parse_failure_rate, failure_rates):
            injected.add_failure(failure)
        for latency in map(faults.parse_latency, latencies):
            injected.set_latency(latency)
        for drop in map(faults.parse_drop, drops):
            injected.add_drops(drop)
        offer = catalog.Catalog()
        for region, gpu_type, gpus, preemptible in map(catalog.parse_stock, stock):
            offer.set_stock(region, gpu_type, gpus=gpus, preemptible_gpus=preemptible)
        accounts = dict(_key_account(pair) for pair in key_accounts)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = server.SimulatorConfig(
        host=host,
        port=port,
        api_keys=server.start_keys(api_keys),
        speed=speed,
        state_file=state_file,
        tenant_kubeconfig=tenant_kubeconfig,
        faults=injected,
        catalog=offer,
        accounts=accounts,
        list_scope=list_scope,
    )
    server.run(config, announce=_progress)


def _key_account(pair: str) -> tuple[str, str]:
    key, _, account = pair.rpartition("=")
    if not key or not account:
        raise ValueError(f"--key-account wants KEY=ACCOUNT, got {pair!r}")
    return key, account


@main.command()
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch this namespace (repeatable). Default: all namespaces.",
)
@click.option("--all-namespaces", is_flag=True, help="Watch every namespace (the default).")
@click.option(
    "--adoption-namespace",
    "adoption_namespaces",
    multiple=True,
    help="Allow GPUClusters in this namespace ('*': all) to adopt an existing cluster with "
    "the operator's own key (repeatable) [env TOGETHER_OPERATOR_ADOPTION_NAMESPACES, "
    "comma-separated; default none].",
)
@click.option(
    "--lease-namespace",
    default=None,
    help="Namespace of the Lease that lets one instance act at a time [env "
    "TOGETHER_OPERATOR_LEASE_NAMESPACE; default: the Pod's, else together-operator-system].",
)
@click.option(
    "--lease-name",
    default=None,
    help="Name of that Lease [env TOGETHER_OPERATOR_LEASE_NAME; default together-operator].",
)
@click.option(
    "--no-leader-election",
    is_flag=True,
    help="Act without holding the Lease (one operator on a development machine).",
)
@click.option(
    "--together-base-url",
    envvar="TOGETHER_BASE_URL",
    default=None,
    help="Together host; paths add /v1 [env TOGETHER_BASE_URL; default https://api.together.ai].",
)
@click.option(
    "--fast-poll-seconds",
    type=float,
    default=None,
    help="List interval while a cluster is changing [default 5].",
)
@click.option(
    "--slow-poll-seconds",
    type=float,
    default=None,
    help="List interval when all clusters are stable, jittered +-20% [default 60].",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    default=None,
    help="Log line format [default plain].",
)
@click.option(
    "--liveness-port",
    type=int,
    default=None,
    help="Serve kopf's /healthz liveness endpoint on this port.",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve Prometheus /metrics on this port [env TOGETHER_OPERATOR_METRICS_PORT].",
)
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    adoption_namespaces: tuple[str, ...],
    lease_namespace: str | None,
    lease_name: str | None,
    no_leader_election: bool,
    together_base_url: str | None,
    fast_poll_seconds: float | None,
    slow_poll_seconds: float | None,
    log_format: str | None,
    liveness_port: int | None,
    metrics_port: int | None,
) -> None:
    """Run the operator (reads KUBECONFIG or the in-cluster config, TOGETHER_API_KEY)."""
    from together_operator.controller.runner import run_operator
    from together_operator.settings import OperatorSettings

    if namespaces and all_namespaces:
        raise click.UsageError("--namespace and --all-namespaces exclude each other")
    overrides: dict[str, Any] = {
        "together_base_url": together_base_url,
        "fast_poll_seconds": fast_poll_seconds,
        "slow_poll_seconds": slow_poll_seconds,
        "log_format": log_format,
        "metrics_port": metrics_port,
        "adoption_namespaces": list(adoption_namespaces) or None,
        "lease_namespace": lease_namespace,
        "lease_name": lease_name,
        "leader_election": False if no_leader_election else None,
    }
    settings = OperatorSettings(
        namespaces=list(namespaces),
        **{key: value for key, value in overrides.items() if value is not None},
    )
    run_operator(settings, liveness_port=liveness_port)


@main.command()
def crd() -> None:
    """Print the GPUCluster CustomResourceDefinition (YAML)."""
    from together_operator.gpucluster.crd import crd_yaml

    click.echo(crd_yaml(), nl=False)


if __name__ == "__main__":
    sys.exit(main())
