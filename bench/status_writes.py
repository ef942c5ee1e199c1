"""Status writes per second the API server takes on GPUClusters, by the CRD's CEL rules.

The API server evaluates a CRD's spec rules on every write, status writes included. This
measures, side by side on one control plane each: the project's CRD (one immutability rule,
opened by ``self == oldSelf``), the same CRD with one transition rule per create-only field
(as before issue 11), and the CRD without any rule (the floor).

    .venv/bin/python bench/status_writes.py                  # --objects 300 --threads 8 16
"""

from __future__ import annotations

import argparse
import copy
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fleet import NAMESPACE, manifest
from fleet_probes import Kube
from kubernetes import client, config

from together_operator.devenv import ControlPlane
from together_operator.gpucluster.crd import crd_manifest
from together_operator.gpucluster.spec import GROUP, PLURAL, VERSION

Variant = Callable[[dict[str, Any]], dict[str, Any]]


def _spec_rules(crd: dict[str, Any]) -> list[dict[str, Any]]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules: list[dict[str, Any]] = schema["properties"]["spec"]["x-kubernetes-validations"]
    return rules


def as_shipped(crd: dict[str, Any]) -> dict[str, Any]:
    return crd


def one_rule_per_field(crd: dict[str, Any]) -> dict[str, Any]:
    """The combined immutability rule split back into one transition rule per field."""
    rules = _spec_rules(crd)
    combined = next(r for r in rules if "messageExpression" in r)
    fields = list(
        dict.fromkeys(re.findall(r"has\(self\.(\w+)\) == has\(oldSelf", combined["rule"]))
    )
    split = [
        {
            "rule": f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || "
            f"self.{f} == oldSelf.{f})",
            "message": f"spec.{f} is immutable",
        }
        for f in fields
    ]
    index = rules.index(combined)
    rules[index : index + 1] = split
    return crd


def without_rules(crd: dict[str, Any]) -> dict[str, Any]:
    _spec_rules(crd).clear()
    return crd


VARIANTS: dict[str, Variant] = {
    "as shipped (one immutability rule)": as_shipped,
    "one rule per create-only field": one_rule_per_field,
    "no CEL rules (floor)": without_rules,
}


def measure(variant: Variant, objects: int, threads: list[int], workdir: Path) -> list[float]:
    with ExitStack() as stack:
        plane = stack.enter_context(ControlPlane.start(workdir / "control-plane"))
        kube = Kube(plane.kubeconfig, workdir)
        stack.callback(kube.close)
        crd = variant(copy.deepcopy(crd_manifest()))
        kube.send("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        kube.send("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        deadline = time.monotonic() + 60
        while True:  # the CRD is served a moment after it is created
            try:
                kube.send("POST", path, manifest("c0000"))
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for index in range(1, objects):
            kube.send("POST", path, manifest(f"c{index:04d}"))
        api = client.CustomObjectsApi(config.new_client_from_config(str(plane.kubeconfig)))

        def write(index: int, round_: int) -> None:
            status = {
                "state": f"Round{round_}",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": f"Round{round_}",
                        "message": "a status write of the size the operator makes",
                        "lastTransitionTime": "2026-11-23T00:00:00Z",
                        "observedGeneration": 1,
                    }
                ],
            }
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, NAMESPACE, PLURAL, f"c{index:04d}", {"status": status}
            )

        rates = []
        for round_, count in enumerate(threads):
            started = time.monotonic()
            with ThreadPoolExecutor(count) as pool:
                list(pool.map(write, range(objects), [round_] * objects))
            rates.append(objects / (time.monotonic() - started))
        return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()
    results = {}
    for name, variant in VARIANTS.items():
        with tempfile.TemporaryDirectory(prefix="status-writes-") as scratch:
            results[name] = measure(variant, args.objects, args.threads, Path(scratch))
            print(f"measured: {name}", flush=True)
    header = " | ".join(f"{t} threads" for t in args.threads)
    print(f"\n| CRD ({args.objects} GPUClusters, status PATCH/s) | {header} |")
    print("|---|" + "---:|" * len(args.threads))
    shipped = results["as shipped (one immutability rule)"]
    for name, rates in results.items():
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    per_field = results["one rule per create-only field"]
    ratios = ", ".join(f"{s / p:.2f}x" for s, p in zip(shipped, per_field, strict=True))
    print(f"\nas shipped vs one rule per field: {ratios}")


if __name__ == "__main__":
    main()
