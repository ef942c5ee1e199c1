"""Together API calls in steady state, at 5 and at 50 Ready GPUClusters, measured side by side.

Runs everything locally: a real kube-apiserver + etcd, the Together simulator (in this
process, on 127.0.0.1) and `together-operator run` as a child process. For each fleet size it
creates the GPUClusters, waits until all are Ready and the operator has settled, resets the
simulator's request counts, and counts every Together call during a fixed window.

    .venv/bin/python bench/observation_cost.py [--window 60] [--slow-poll 10] [--sizes 5 50]

The claim under test: calls per poll interval do not grow with the number of objects.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config

from together_operator.devenv import ControlPlane
from together_operator.gpucluster.crd import crd_manifest
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.server import SimulatorConfig, start_in_thread

API_KEY = "bench-key"
GROUP, VERSION, PLURAL = "compute.together.ai", "v1alpha1", "gpuclusters"


def bounded_wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(1.0)


def ready_count(custom: Any, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return sum(
        1
        for item in items
        for c in item.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    )


def measure(
    size: int, custom: Any, core: Any, admin: SimulatorAdmin, window: float, settle: float
) -> dict[str, int]:
    namespace = f"bench-{size}"
    core.create_namespace({"metadata": {"name": namespace}})
    for index in range(size):
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "GPUCluster",
                "metadata": {"name": f"c{index:03d}"},
                "spec": {
                    "region": "us-central-8",
                    "gpuType": "H100_SXM",
                    "numGpus": 8,
                    "cudaVersion": "12.5",
                    "nvidiaDriverVersion": "555",
                },
            },
        )
    bounded_wait(
        lambda: ready_count(custom, namespace) == size, 300, f"{size} GPUClusters to be Ready"
    )
    time.sleep(settle)  # let the observer leave its post-action fast polling
    admin.reset_requests()
    time.sleep(window)
    rows = admin.request_counts()
    counts = {f"{r['operation']} {r['status']}": int(r["count"]) for r in rows}
    for index in range(size):
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, f"c{index:03d}")
    bounded_wait(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        ),
        300,
        f"{size} GPUClusters to be deleted",
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds counted per size")
    parser.add_argument("--fast-poll", type=float, default=1.0)
    parser.add_argument("--slow-poll", type=float, default=10.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50])
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="seconds between all-Ready and the window (post-action fast polls)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="together-bench-"))
    with ControlPlane.start(workdir / "control-plane") as plane:
        config.load_kube_config(config_file=str(plane.kubeconfig))
        api = client.ApiClient()
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd_manifest())
        time.sleep(2)
        simulator = start_in_thread(SimulatorConfig(api_keys=(API_KEY,), speed=60.0))
        admin = SimulatorAdmin(simulator.admin_url)
        admin.set_stock("us-central-8", "H100_SXM", gpus=8 * max(args.sizes) * 2)
        env = dict(
            os.environ,
            KUBECONFIG=str(plane.kubeconfig),
            TOGETHER_BASE_URL=simulator.base_url,
            TOGETHER_API_KEY=API_KEY,
            TOGETHER_OPERATOR_FAST_POLL_SECONDS=str(args.fast_poll),
            TOGETHER_OPERATOR_SLOW_POLL_SECONDS=str(args.slow_poll),
            TOGETHER_OPERATOR_LEADER_ELECTION="false",
        )
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "together_operator.cli", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            results = {
                size: measure(size, custom, core, admin, args.window, args.settle)
                for size in args.sizes
            }
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            simulator.stop()

    print(
        f"window {args.window:.0f}s, slow poll {args.slow_poll:.0f}s (+-20% jitter), "
        f"fast poll {args.fast_poll:.0f}s"
    )
    print(f"{'GPUClusters':>12} {'Together calls':>15} {'calls/minute':>13}  by operation")
    per_minute = {}
    for size, counts in results.items():
        total = sum(counts.values())
        per_minute[size] = total * 60.0 / args.window
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        print(f"{size:>12} {total:>15} {per_minute[size]:>13.1f}  {detail}")
    smallest, largest = min(results), max(results)
    if per_minute[smallest]:
        print(
            f"ratio calls/minute at {largest} vs {smallest} objects: "
            f"{per_minute[largest] / per_minute[smallest]:.2f} "
            f"(objects grew {largest / smallest:.0f}x)"
        )


if __name__ == "__main__":
    main()
