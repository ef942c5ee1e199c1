"""Chaos: SIGKILLs, injected faults, a second operator instance and a key rotation, over many
objects in several namespaces being created, scaled and deleted. Afterwards no cluster is
doubled, leaked, or deleted for an object that still wants it, and every object converged.

Bounded: a fixed plan (seeded), a fixed number of kills, a deadline for every wait. The
figures are printed (run with ``-s`` to see them) and checked.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    API_KEY,
    ROTATED_KEY,
    GPUClusters,
    OperatorProcess,
    Simulator,
    scratch_namespace,
)
from tests.support import KubeTarget, wait_for
from together_operator.gpucluster.plan import incarnation_tag, name_tag
from together_operator.together import operations

REGION, GPU_TYPE, DEFAULT_STOCK = "us-central-8", "H100_SXM", 256
KILLS = 20
PER_NAMESPACE = 12
SCALED, DELETED = 12, 9
SEED = 20261123
CONVERGE_SECONDS = 240.0
#: A short Lease, so that a killed instance's successor acts within seconds.
CHAOS_ENV = {"TOGETHER_OPERATOR_LEASE_SECONDS": "3"}


@dataclass
class Fleet:
    """The objects of the run: where they are, their UIDs, what they should end as."""

    gpuclusters: GPUClusters
    uids: dict[tuple[str, str], str] = field(default_factory=dict)
    wanted_gpus: dict[tuple[str, str], int] = field(default_factory=dict)
    deleted: set[tuple[str, str]] = field(default_factory=set)

    def create(self, namespace: str, name: str, **spec: Any) -> None:
        made = self.gpuclusters.create(namespace, name, annotations=None, **spec)
        self.uids[(namespace, name)] = made["metadata"]["uid"]
        self.wanted_gpus[(namespace, name)] = 8

    @property
    def kept(self) -> list[tuple[str, str]]:
        return [key for key in self.uids if key not in self.deleted]

    def laggards(self) -> dict[str, str]:
        """Objects not (yet) where they should end, with what their status says."""
        behind: dict[str, str] = {}
        for namespace, name in self.deleted:
            obj = self.gpuclusters.get(namespace, name)
            if obj is not None:
                behind[f"{namespace}/{name}"] = f"not deleted: {_ready(obj)}"
        for key in self.kept:
            obj = self.gpuclusters.get(*key) or {}
            gpus = obj.get("status", {}).get("numGpus")
            if not _ready(obj).startswith("True") or gpus != self.wanted_gpus[key]:
                behind["/".join(key)] = f"{gpus} GPUs of {self.wanted_gpus[key]}: {_ready(obj)}"
        return behind

    def converged(self) -> bool:
        return not self.laggards()


def _ready(obj: dict[str, Any]) -> str:
    ready = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
    return f"{ready[0]['status']} {ready[0]['reason']}: {ready[0]['message']}" if ready else "-"


@contextlib.contextmanager
def faults(simulator: Simulator) -> Iterator[None]:
    admin = simulator.admin
    admin.fail(500, operations.CREATE_CLUSTER, probability=0.2)
    admin.fail(503, operations.LIST_CLUSTERS, probability=0.1, retry_after=0.5)
    admin.fail(429, operations.UPDATE_CLUSTER, probability=0.3, retry_after=0.5)
    admin.fail(500, operations.DELETE_CLUSTER, probability=0.2)
    admin.delay(operations.CREATE_CLUSTER, 1.0, after_commit=True)
    admin.drop(operations.CREATE_CLUSTER, count=4)
    try:
        yield
    finally:
        admin.reset_faults()


@pytest.mark.timeout(900)
def test_chaos_never_doubles_leaks_or_wrongly_deletes_a_cluster(
    operator: OperatorProcess,
    simulator: Simulator,
    gpuclusters: GPUClusters,
    kube: KubeTarget,
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    fleet = Fleet(gpuclusters)
    primary = OperatorProcess(
        operator.kubeconfig, operator.base_url, tmp_path / "primary", extra_env=CHAOS_ENV
    )
    second = OperatorProcess(
        operator.kubeconfig, operator.base_url, tmp_path / "second", extra_env=CHAOS_ENV
    )
    for process in (primary, second):
        process.log_dir.mkdir()
    kills = 0

    def kill_and_restart() -> None:
        nonlocal kills
        primary.kill()
        primary.start()
        kills += 1

    simulator.admin.set_stock(REGION, GPU_TYPE, gpus=4096)  # room for every object, scaled
    operator.stop()  # the session's operator sits this one out (the Lease is one)
    requests_before = Counter(
        {(r["operation"], r["status"]): r["count"] for r in simulator.admin.request_counts()}
    )
    try:
        with (
            scratch_namespace(kube) as team_a,
            scratch_namespace(kube) as team_b,
            scratch_namespace(kube) as team_c,
        ):
            gpuclusters.core.create_namespaced_secret(
                team_c, {"metadata": {"name": "team-key"}, "stringData": {"apiKey": API_KEY}}
            )
            primary.start()
            with faults(simulator):
                # 1. Creates, a kill every few objects; then every create lands (still under
                #    faults and kills), so that what follows acts on real clusters.
                for index in range(PER_NAMESPACE):
                    for namespace in (team_a, team_b):
                        fleet.create(namespace, f"chaos-{index}")
                    own_key = {"name": "team-key"}
                    fleet.create(team_c, f"chaos-{index}", credentialsSecretRef=own_key)
                    if index % 3 == 2:
                        time.sleep(rng.uniform(0.5, 1.5))
                        kill_and_restart()
                _converge(fleet, "every object to be created", kill_and_restart, rng)
                # 2. A second instance joins; team-c's key is rotated; scale and delete.
                second.start()
                gpuclusters.core.patch_namespaced_secret(
                    "team-key", team_c, {"stringData": {"apiKey": ROTATED_KEY}}
                )
                keys = sorted(fleet.uids)
                rng.shuffle(keys)
                for key in keys[:SCALED]:
                    gpuclusters.patch_spec(*key, {"numGpus": 16})
                    fleet.wanted_gpus[key] = 16
                for key in keys[SCALED : SCALED + DELETED]:
                    gpuclusters.delete(*key)
                    fleet.deleted.add(key)
                # 3. Kills while all of that is under way; the second instance leaves.
                while kills < KILLS:
                    time.sleep(rng.uniform(2.0, 4.0))
                    kill_and_restart()
                    if kills == KILLS - 3:
                        second.stop()
            try:
                wait_for(
                    fleet.converged,
                    timeout=CONVERGE_SECONDS,
                    interval=1.0,
                    what="every object to converge (Ready at its size) or be gone",
                )
            except AssertionError as timeout:
                laggards = json.dumps(fleet.laggards(), indent=1)
                raise AssertionError(f"{timeout}; still behind: {laggards}") from None
            figures = judge(fleet, simulator)
            for key in fleet.kept:
                gpuclusters.delete(*key)
            wait_for(
                lambda: all(gpuclusters.get(*key) is None for key in fleet.kept),
                timeout=120,
                interval=1.0,
                what="every object to be deleted",
            )
            leaked = live_clusters_of(fleet, simulator)
            figures.update(
                {
                    "kills": kills,
                    "seconds": round(time.monotonic() - started),
                    "leaked_after_deleting_everything": len(leaked),
                    "faults_answered": faults_answered(simulator, requests_before),
                }
            )
            print("chaos figures:", json.dumps(figures, sort_keys=True))
            assert figures["duplicates"] == 0, figures
            assert figures["leaks"] == 0, figures
            assert figures["wrong_deletions"] == 0, figures
            assert figures["strays"] == 0, figures
            assert leaked == [], figures
            assert kills >= KILLS
    finally:
        for process in (primary, second):
            process.stop()
        simulator.admin.set_stock(REGION, GPU_TYPE, gpus=DEFAULT_STOCK)
        operator.start()


def _converge(
    fleet: Fleet, what: str, kill: Callable[[], None], rng: random.Random, rounds: int = 6
) -> None:
    """Wait (bounded) for every object to be where it should be, killing the operator now
    and then meanwhile."""
    for _ in range(rounds):
        with contextlib.suppress(AssertionError):
            wait_for(fleet.converged, timeout=rng.uniform(4.0, 8.0), interval=1.0, what=what)
            return
        kill()
    wait_for(fleet.converged, timeout=CONVERGE_SECONDS, interval=1.0, what=what)


def judge(fleet: Fleet, simulator: Simulator) -> dict[str, object]:
    """Duplicates, leaks, wrong deletions and strays, read from Together's own record."""
    by_tag: dict[str, list[tuple[str, bool]]] = {}
    for row in simulator.admin.clusters():
        tag = name_tag(row.cluster.cluster_name)
        if tag is not None:
            by_tag.setdefault(tag, []).append((row.cluster.cluster_id, row.deleted))
    tags = {key: incarnation_tag(uid) for key, uid in fleet.uids.items()}
    namespaces = {namespace for namespace, _ in fleet.uids}
    duplicates = sum(max(0, len(by_tag.get(tag, [])) - 1) for tag in tags.values())
    live = {
        key: [c for c, deleted in by_tag.get(tag, []) if not deleted] for key, tag in tags.items()
    }
    leaks = sum(len(live[key]) for key in fleet.deleted)
    wrong_deletions = sum(1 for key in fleet.kept if len(live[key]) != 1)
    ours = set(tags.values())
    strays = sum(
        1
        for row in simulator.admin.clusters()
        if row.cluster.cluster_name.startswith(tuple(namespaces))
        and name_tag(row.cluster.cluster_name) not in ours
    )
    return {
        "objects": len(fleet.uids),
        "namespaces": len(namespaces),
        "scaled": sum(1 for gpus in fleet.wanted_gpus.values() if gpus == 16),
        "deleted_during_run": len(fleet.deleted),
        "clusters_created": sum(len(by_tag.get(tag, [])) for tag in tags.values()),
        "duplicates": duplicates,
        "leaks": leaks,
        "wrong_deletions": wrong_deletions,
        "strays": strays,
    }


def live_clusters_of(fleet: Fleet, simulator: Simulator) -> list[str]:
    tags = {incarnation_tag(uid) for uid in fleet.uids.values()}
    return [
        c.cluster_id for c in simulator.admin.live_clusters() if name_tag(c.cluster_name) in tags
    ]


def faults_answered(simulator: Simulator, before: Counter[tuple[str, str]]) -> dict[str, int]:
    """Answers other than 200 during the run, by operation and status."""
    now = Counter(
        {(r["operation"], r["status"]): r["count"] for r in simulator.admin.request_counts()}
    )
    now.subtract(before)
    return {f"{op} {status}": n for (op, status), n in sorted(now.items()) if status != "200" and n}
