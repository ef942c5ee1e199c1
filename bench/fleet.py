"""Fleet scale: the project's operator and a per-object polling baseline, measured side by side.

For each fleet size and each operator, on a fresh local control plane (etcd + kube-apiserver)
and a fresh simulator process (speed 1), with the operator's default poll settings:

1. start the operator (`together-operator run`, or `bench/baseline_operator.py`) and wait until
   it watches GPUClusters;
2. apply N GPUClusters at once from 16 client threads;
3. wait (bounded) until every object's Ready condition is True, then read Together's view;
4. let the operator settle, then count everything over a steady window;
5. delete every object, wait (bounded) until all are gone, and look for leaked clusters.

Then it prints one table per size with both operators and their ratios, the machine and its
load, and with `--json FILE` the raw numbers. Progress goes to stderr.

    .venv/bin/python bench/fleet.py                       # --sizes 100 1000
    .venv/bin/python bench/fleet.py --sizes 20 --settle 30 --window 60   # a quick check

Each row's definition is in bench/README.md and in ROW_DEFINITIONS below.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml
from fleet_probes import (
    FleetWatch,
    Kube,
    MemorySampler,
    Timeline,
    cpu_seconds,
    gpucluster_requests,
    gpucluster_watches,
    log,
    objects_path,
    process_tree,
    writes_by_resource,
)
from fleet_report import BUSY_LOAD, OPERATORS, Figures, Run, machine, report

from together_operator.devenv import ControlPlane
from together_operator.devenv.controlplane import free_loopback_port
from together_operator.devenv.kubeconfig import kubeconfig_document, write_kubeconfig
from together_operator.devenv.processes import ManagedProcess, spawn
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.state import ClusterSummary

BENCH_DIR = Path(__file__).resolve().parent
NAMESPACE = "fleet"
API_KEY = "bench-key"
REGION, GPU_TYPE, GPUS_PER_CLUSTER = "us-central-8", "H100_SXM", 8
MIB = 1024 * 1024


class BenchFailure(RuntimeError):
    """A bounded wait ran out, or a process under test died: the measurement is void."""


@dataclass
class Options:
    sizes: list[int]
    operators: list[str]
    settle: float
    window: float
    ready_timeout: float | None
    delete_timeout: float | None
    threads: int
    operator_command: list[str]
    cli: str
    baseline_poll: float
    baseline_patch_every_poll: bool
    as_service_account: bool
    workdir: Path | None
    keep: bool
    json_path: Path | None
    from_json: Path | None


# --- small helpers -------------------------------------------------------------------------


def state_of_phase(phase: str) -> str:
    """The `status` value Together shows in a phase: CLUSTER_PHASE_INSTALLING_DRIVERS ->
    InstallingDrivers (failed acceptance tests show as Degraded)."""
    if phase == "CLUSTER_PHASE_ACCEPTANCE_TESTS_FAILED":
        return "Degraded"
    words = phase.removeprefix("CLUSTER_PHASE_").split("_")
    return "".join(word.capitalize() for word in words)


def counts_by_operation(admin: SimulatorAdmin) -> dict[str, int]:
    return {f"{r['operation']} {r['status']}": int(r["count"]) for r in admin.request_counts()}


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    changed = {key: after[key] - before.get(key, 0) for key in after}
    return {key: value for key, value in sorted(changed.items()) if value}


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "compute.together.ai/v1alpha1",
        "kind": "GPUCluster",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "region": REGION,
            "gpuType": GPU_TYPE,
            "numGpus": GPUS_PER_CLUSTER,
            "cudaVersion": "12.5",
            "nvidiaDriverVersion": "555",
        },
    }


def object_names(size: int) -> list[str]:
    # Fixed width, so that no object's "<namespace>-<name>" is a prefix of another's.
    width = max(4, len(str(size - 1)))
    return [f"c{index:0{width}d}" for index in range(size)]


def wait_until(
    what: str,
    progress: Callable[[], int],
    target: int,
    timeout: float,
    alive: Sequence[ManagedProcess],
    watch: FleetWatch,
) -> float:
    """Wait until `progress()` reaches `target`; the seconds it took. Fails clearly on a
    deadline, a dead process under test, or a broken watch."""
    started = time.monotonic()
    last_report = started
    while (done := progress()) < target:
        now = time.monotonic()
        for process in alive:
            if not process.running():
                raise BenchFailure(
                    f"{process.name} exited (code {process.popen.returncode}) while waiting "
                    f"for {what}; last lines of {process.log_path}:\n{process.log_tail()}"
                )
        if watch.failure is not None:
            raise BenchFailure(f"the bench's watch failed: {watch.failure}")
        if now - started > timeout:
            raise BenchFailure(
                f"gave up after {timeout:.0f}s waiting for {what}: {done} of {target}"
            )
        if now - last_report >= 15.0:
            log(f"  {what}: {done}/{target} after {now - started:.0f}s")
            last_report = now
        time.sleep(0.5)
    return time.monotonic() - started


def sleep_watching(seconds: float, what: str, alive: Sequence[ManagedProcess]) -> None:
    """Sleep, but fail at once if a process under test dies meanwhile."""
    log(f"  {what}: {seconds:.0f}s")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for process in alive:
            if not process.running():
                raise BenchFailure(f"{process.name} exited during {what}: {process.log_tail()}")
        time.sleep(min(1.0, left))


def in_parallel(
    threads: int, work: Callable[[str], float], names: Iterable[str]
) -> dict[str, float]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(names, pool.map(work, names), strict=True))


# --- the stack -----------------------------------------------------------------------------


def install_crd(kube: Kube, cli: str) -> None:
    """The CRD exactly as the operator under test prints it (`together-operator crd`)."""
    document = yaml.safe_load(subprocess.run([cli, "crd"], check=True, capture_output=True).stdout)
    kube.send("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)
    name = document["metadata"]["name"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        crd = kube.send("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        established = any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )
        if established and kube.http.get(objects_path(NAMESPACE)).status_code == 200:
            return
        time.sleep(0.5)
    raise BenchFailure("the GPUCluster CRD was not served within 60s")


def start_simulator(cli: str, workdir: Path) -> tuple[ManagedProcess, str]:
    """The simulator in its own process, so its CPU is not the bench's or the operator's;
    returns the process and the simulator's base URL (the host; the API is under /v1)."""
    port = free_loopback_port()
    process = spawn(
        "simulator",
        [cli, "simulator", "--port", str(port), "--api-key", API_KEY, "--speed", "1"],
        workdir / "simulator.log",
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not process.running():
            raise BenchFailure(f"the simulator exited: {process.log_tail()}")
        try:
            if httpx.get(f"{base_url}/_sim/health", timeout=2).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.stop()
    raise BenchFailure("the simulator did not answer within 30s")


def service_account_kubeconfig(kube: Kube, plane: ControlPlane, workdir: Path) -> Path:
    """A kubeconfig for a ServiceAccount bound to cluster-admin. Unlike the admin (in
    system:masters, exempt), its requests go through API Priority and Fairness and can be
    throttled, as an operator's are when it runs in a cluster."""
    namespace, name = "fleet-system", "fleet-operator"
    kube.send("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    kube.send(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
    )
    kube.send(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    request: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 86400},
    }
    token = kube.send(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", request
    )["status"]["token"]
    document = kubeconfig_document(
        server=plane.server, ca_pem=plane.serving_ca.cert_pem, user=name, token=token
    )
    return write_kubeconfig(workdir / "operator.kubeconfig", document)


def operator_argv(kind: str, options: Options) -> list[str]:
    if kind == "operator":
        return list(options.operator_command)
    return [sys.executable, str(BENCH_DIR / "baseline_operator.py")]


def operator_env(kind: str, kubeconfig: Path, base_url: str, options: Options) -> dict[str, str]:
    # Default poll settings: no TOGETHER_OPERATOR_* inherited from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOGETHER_", "BASELINE_"))}
    env.update(KUBECONFIG=str(kubeconfig), TOGETHER_BASE_URL=base_url, TOGETHER_API_KEY=API_KEY)
    if kind == "operator":
        # Leader election on, as deployed: its Lease in the fleet's namespace (which exists;
        # the default, together-operator-system, would not). Older operators ignore it.
        env["TOGETHER_OPERATOR_LEASE_NAMESPACE"] = NAMESPACE
    if kind == "baseline":
        env["BASELINE_POLL_SECONDS"] = str(options.baseline_poll)
        env["BASELINE_PATCH_EVERY_POLL"] = "1" if options.baseline_patch_every_poll else "0"
    return env


def wait_for_operator_watch(kube: Kube, operator: ManagedProcess) -> None:
    """Apply only once the operator watches GPUClusters, so that its start-up is not counted
    as apply latency: the API server's open-watch gauge counts ours and the operator's."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not operator.running():
            raise BenchFailure(f"{operator.name} exited at start-up: {operator.log_tail()}")
        if gpucluster_watches(kube) >= 2:
            time.sleep(2.0)  # its first List has been answered; let it finish start-up work
            return
        time.sleep(0.5)
    raise BenchFailure(f"{operator.name} did not watch gpuclusters within 120s")


# --- one measurement -----------------------------------------------------------------------


def match_clusters(
    names: Iterable[str], clusters: Iterable[ClusterSummary]
) -> tuple[dict[str, list[ClusterSummary]], int]:
    """Clusters per object by name prefix `<namespace>-<name>` (a suffix may follow), and
    how many clusters matched no object."""
    by_base = {f"{NAMESPACE}-{name}": name for name in names}
    widths = sorted({len(base) for base in by_base}, reverse=True)
    matched: dict[str, list[ClusterSummary]] = {name: [] for name in by_base.values()}
    stray = 0
    for summary in clusters:
        cluster_name = summary.cluster.cluster_name or ""
        owner = next((by_base[p] for w in widths if (p := cluster_name[:w]) in by_base), None)
        if owner is None:
            stray += 1
        else:
            matched[owner].append(summary)
    for found in matched.values():
        found.sort(key=lambda s: s.cluster.created_at.timestamp() if s.cluster.created_at else 0)
    return matched, stray


def read_together_view(
    figures: Figures,
    applied: dict[str, float],
    timelines: dict[str, Timeline],
    clusters: list[ClusterSummary],
) -> None:
    """Apply -> POST latency, status lag, phases never shown and duplicates, at all Ready."""
    matched, figures.stray_clusters = match_clusters(applied, clusters)
    figures.duplicates = sum(max(0, len(found) - 1) for found in matched.values())
    for name, applied_at in applied.items():
        found = matched[name]
        if not found or found[0].cluster.created_at is None:
            figures.posts_missing += 1
            continue
        posted_at = found[0].cluster.created_at.timestamp()
        figures.apply_to_post_seconds.append(posted_at - applied_at)
        timeline = timelines.get(name, Timeline())
        record_create_path(figures, applied_at, posted_at, timeline)
        # The cluster the object points at, if a duplicate exists.
        cluster = next(
            (s.cluster for s in found if s.cluster.cluster_id == timeline.cluster_id),
            found[0].cluster,
        )
        for transition in cluster.phase_transitions:
            state = state_of_phase(transition.phase)
            figures.phases_total += 1
            seen = timeline.first_seen_state.get(state)
            if seen is None:
                figures.phases_never_shown += 1
                figures.never_shown_by_state[state] = figures.never_shown_by_state.get(state, 0) + 1
            else:
                figures.status_lag_seconds.append(seen - transition.transition_time.timestamp())


def record_create_path(
    figures: Figures, applied_at: float, posted_at: float, timeline: Timeline
) -> None:
    """Where apply -> POST went, per step the watch saw (a step it did not see is skipped:
    the baseline writes no intent)."""
    moments = [
        ("apply", applied_at),
        ("object seen", timeline.added_at),
        ("finalizer", timeline.finalizer_at),
        ("intent", timeline.intent_at),
        ("POST", posted_at),
        ("cluster ID shown", timeline.cluster_id_at),
    ]
    seen = [(step, at) for step, at in moments if at is not None]
    for (before, start), (after, end) in itertools.pairwise(seen):
        figures.create_path_seconds.setdefault(f"{before} -> {after}", []).append(end - start)


def keep_timelines(
    path: Path,
    applied: dict[str, float],
    timelines: dict[str, Timeline],
    clusters: list[ClusterSummary],
) -> None:
    """Per object, what the watch saw and when its clusters were created (with --keep)."""
    matched, _ = match_clusters(applied, clusters)
    document = {
        name: {
            "applied_at": applied_at,
            **asdict(timelines.get(name, Timeline())),
            "created_at": [
                s.cluster.created_at.timestamp() for s in matched[name] if s.cluster.created_at
            ],
        }
        for name, applied_at in applied.items()
    }
    path.write_text(json.dumps(document) + "\n")


def measure(
    kind: str, size: int, options: Options, workdir: Path, figures: Figures, stack: ExitStack
) -> None:
    timeout_ready = options.ready_timeout or 300.0 + 1.5 * size
    timeout_delete = options.delete_timeout or 300.0 + 0.5 * size
    names = object_names(size)

    log(f"{kind} at {size}: starting the control plane, simulator and operator in {workdir}")
    plane = stack.enter_context(ControlPlane.start(workdir / "control-plane"))
    kube = Kube(plane.kubeconfig, workdir)
    stack.callback(kube.close)
    install_crd(kube, options.cli)
    kube.send("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    simulator, base_url = start_simulator(options.cli, workdir)
    stack.callback(simulator.stop)
    admin = SimulatorAdmin(f"{base_url}/_sim", timeout=60)
    stack.callback(admin.close)
    # Twice the fleet's GPUs, so that a duplicate would show as a duplicate, not a 409.
    admin.set_stock(REGION, GPU_TYPE, gpus=GPUS_PER_CLUSTER * size * 2)
    watch = FleetWatch(kube, NAMESPACE)
    watch.start()
    stack.callback(watch.stop)
    operator_kubeconfig = plane.kubeconfig
    if options.as_service_account:
        operator_kubeconfig = service_account_kubeconfig(kube, plane, workdir)
    operator = spawn(
        kind,
        operator_argv(kind, options),
        workdir / f"{kind}.log",
        operator_env(kind, operator_kubeconfig, base_url, options),
    )
    stack.callback(operator.stop, 30.0)
    sampler = MemorySampler(operator.pid)
    sampler.start()
    stack.callback(sampler.stop)
    alive = [operator, simulator, *plane.processes]
    wait_for_operator_watch(kube, operator)

    # 1. apply from many client threads at once
    log(f"{kind} at {size}: applying {size} GPUClusters from {options.threads} threads")
    calls_before = counts_by_operation(admin)
    burst_pids: dict[str, Callable[[], list[int]]] = {
        "operator": lambda: process_tree(operator.pid),
        "kube-apiserver": lambda: [plane.processes[-1].pid],
        "etcd": lambda: [plane.processes[0].pid],
        "simulator": lambda: process_tree(simulator.pid),
        "bench": lambda: [os.getpid()],
    }
    burst_cpu_before = {name: cpu_seconds(pids()) for name, pids in burst_pids.items()}
    writes_before = writes_by_resource(kube)
    first_apply = time.time()

    def create(name: str) -> float:
        sent_at = time.time()
        kube.send("POST", objects_path(NAMESPACE), manifest(name))
        return sent_at

    applied = in_parallel(options.threads, create, names)
    figures.apply_seconds = time.time() - first_apply

    # 2. all Ready
    wait_until("Ready", watch.ready_count, size, timeout_ready, alive, watch)
    figures.apply_to_all_ready_seconds = time.time() - first_apply
    figures.cpu_to_ready_cores = {
        name: round((cpu_seconds(pids()) - burst_cpu_before[name]) / elapsed, 3)
        for name, pids in burst_pids.items()
        if (elapsed := figures.apply_to_all_ready_seconds) > 0
    }
    figures.together_calls_to_ready = delta(counts_by_operation(admin), calls_before)
    figures.kube_writes_to_ready = delta(writes_by_resource(kube), writes_before)
    log(f"{kind} at {size}: all Ready {figures.apply_to_all_ready_seconds:.0f}s after apply")
    timelines, clusters = watch.timelines(), admin.clusters()
    read_together_view(figures, applied, timelines, clusters)
    if options.keep:
        keep_timelines(workdir / "timelines.json", applied, timelines, clusters)

    # 3. steady state
    sleep_watching(options.settle, "settling", alive)
    log(f"  steady window: {options.window:.0f}s")
    context_pids = {
        "kube-apiserver": [plane.processes[-1].pid],
        "etcd": [plane.processes[0].pid],
        "simulator": process_tree(simulator.pid),
        "bench": [os.getpid()],
    }
    kube_before = gpucluster_requests(kube)
    calls_before = counts_by_operation(admin)
    context_before = {name: cpu_seconds(pids) for name, pids in context_pids.items()}
    cpu_before = cpu_seconds(process_tree(operator.pid))
    window_start = time.time()
    sleep_watching(options.window, "measuring", alive)
    window_end = time.time()
    cpu_after = cpu_seconds(process_tree(operator.pid))
    context_after = {name: cpu_seconds(pids) for name, pids in context_pids.items()}
    calls_after = counts_by_operation(admin)
    kube_after = gpucluster_requests(kube)
    window = window_end - window_start
    figures.window_seconds = window
    figures.cpu_steady_cores = (cpu_after - cpu_before) / window
    figures.context_cpu_steady_cores = {
        name: round((context_after[name] - context_before[name]) / window, 4)
        for name in context_pids
    }
    figures.memory_steady_mib, figures.memory_peak_mib = (v / MIB for v in sampler.read())
    figures.kube_requests_steady = delta(kube_after, kube_before)
    figures.bench_watch_restarts_in_window = watch.own_requests_between(window_start, window_end)
    figures.modified_events_steady = watch.modified_between(window_start, window_end)
    figures.together_calls_steady = delta(calls_after, calls_before)

    # 4. delete everything; nothing may be left at Together
    log(f"{kind} at {size}: deleting {size} GPUClusters")
    delete_started = time.time()

    def delete(name: str) -> float:
        kube.send("DELETE", objects_path(NAMESPACE, name))
        return time.time()

    in_parallel(options.threads, delete, names)
    wait_until("gone", lambda: size - watch.present_count(), size, timeout_delete, alive, watch)
    figures.delete_seconds = time.time() - delete_started
    live = admin.live_clusters()
    figures.leaks = sum(1 for cluster in live if cluster.status != "Deleting")
    figures.still_deleting = len(live) - figures.leaks
    figures.memory_peak_mib = sampler.read()[1] / MIB  # now with deletion's peak, if higher
    log(f"{kind} at {size}: done ({figures.delete_seconds:.0f}s to delete)")


def run_one(kind: str, size: int, options: Options, workdir: Path) -> Figures:
    figures = Figures(operator=kind, size=size, load_before=load())
    try:
        with ExitStack() as stack:
            try:
                measure(kind, size, options, workdir / f"{kind}-{size}", figures, stack)
            except BenchFailure as failure:
                figures.error = str(failure)
                log(f"{kind} at {size}: FAILED: {failure}")
            except Exception as error:
                # A bug or an API error: this measurement is void, the others may still run.
                figures.error = f"{type(error).__name__}: {error}"
                log(f"{kind} at {size}: FAILED:\n{traceback.format_exc()}")
            log(f"{kind} at {size}: stopping everything")
    finally:
        figures.load_after = load()
    return figures


# --- the report ----------------------------------------------------------------------------


# --- entry point ---------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    cli = shutil.which("together-operator", path=str(Path(sys.executable).parent)) or shutil.which(
        "together-operator"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--operators", nargs="+", choices=OPERATORS, default=list(OPERATORS))
    parser.add_argument(
        "--settle",
        type=float,
        default=90.0,
        help="seconds from all Ready to the steady window (post-action fast polling ends)",
    )
    parser.add_argument("--window", type=float, default=120.0, help="steady window, seconds")
    parser.add_argument(
        "--ready-timeout", type=float, help="seconds to wait for all Ready [300 + 1.5 per object]"
    )
    parser.add_argument(
        "--delete-timeout", type=float, help="seconds to wait for all gone [300 + 0.5/object]"
    )
    parser.add_argument("--threads", type=int, default=16, help="apply and delete threads")
    parser.add_argument(
        "--operator-command",
        help="the operator under test [together-operator run, next to this Python]",
    )
    parser.add_argument("--baseline-poll", type=float, default=60.0, help="baseline timer")
    parser.add_argument(
        "--baseline-patch-every-poll",
        action="store_true",
        help="the baseline writes status.lastSyncTime on every poll (as many operators do)",
    )
    parser.add_argument(
        "--as-service-account",
        action="store_true",
        help="run the operators as a ServiceAccount bound to cluster-admin (subject to API "
        "Priority and Fairness) instead of the exempt admin",
    )
    parser.add_argument("--workdir", type=Path, help="logs and data [a new temporary directory]")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, dest="json_path", help="write raw numbers here")
    parser.add_argument(
        "--from-json", type=Path, help="only print the tables of an earlier run's --json file"
    )
    args = parser.parse_args(argv)
    if cli is None:
        parser.error("together-operator not found next to this Python nor on PATH")
    if min(args.sizes) < 1:
        parser.error("sizes must be positive")
    return Options(
        sizes=args.sizes,
        operators=args.operators,
        settle=args.settle,
        window=args.window,
        ready_timeout=args.ready_timeout,
        delete_timeout=args.delete_timeout,
        threads=args.threads,
        operator_command=shlex.split(args.operator_command)
        if args.operator_command
        else [cli, "run"],
        cli=cli,
        baseline_poll=args.baseline_poll,
        baseline_patch_every_poll=args.baseline_patch_every_poll,
        as_service_account=args.as_service_account,
        workdir=args.workdir,
        keep=args.keep,
        json_path=args.json_path,
        from_json=args.from_json,
    )


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    options = parse()
    if options.from_json is not None:
        report(Run.from_json(options.from_json))
        return 0
    signal.signal(signal.SIGTERM, interrupt)  # `kill <pid>` cleans up like Ctrl-C does
    # Only a directory the bench made is removed at the end; a --workdir is the caller's.
    made_workdir = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="together-fleet-"))
    started = time.monotonic()
    run = Run(
        machine=machine(),
        date=time.strftime("%Y-%m-%d %H:%M %Z"),
        settings={
            "sizes": options.sizes,
            "threads": options.threads,
            "settle": options.settle,
            "window": options.window,
            "baseline_poll": options.baseline_poll,
            "baseline_patch_every_poll": options.baseline_patch_every_poll,
            "operator_command": options.operator_command,
            "as_service_account": options.as_service_account,
        },
        load_start=load(),
    )
    log(
        f"fleet bench: sizes {options.sizes}, operators {options.operators}, "
        f"{os.cpu_count()} cores, load {run.load_start[0]:.2f}; work directory {workdir}"
    )
    if run.load_start[0] > BUSY_LOAD:
        log(f"NOTE: the machine is busy (1-min load {run.load_start[0]:.2f})")
    interrupted = False
    try:
        for size in options.sizes:
            for kind in options.operators:
                run.results.append(run_one(kind, size, options, workdir))
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: everything started was stopped; reporting what was measured")
    run.load_end, run.seconds = load(), time.monotonic() - started
    report(run)
    if options.json_path is not None:
        run.to_json(options.json_path)
        print(f"raw numbers: {options.json_path}")
    failed = interrupted or any(f.error for f in run.results)
    if options.keep or failed or not made_workdir:
        log(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
