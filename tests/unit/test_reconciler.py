"""The reconciler against the in-thread Together simulator and an in-memory Kubernetes.

Kubernetes is a small fake of ``KubeApi`` that keeps annotations, status and Secrets and logs
every write; each visit builds the next ``GPUClusterObject`` from what the fake holds, the way
kopf would hand over the stored object. Together is the real simulator on 127.0.0.1, driven by
a ``FakeClock`` that the reconciler shares, so provisioning, deletion and the create grace
period move only when a test advances the clock. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from together_operator.controller.fleet import Fleet, PollPolicy, key_fingerprint
from together_operator.controller.kube import KubeApi
from together_operator.controller.kubeconfig_secret import KUBECONFIG_KEY
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.reconciler import (
    CLUSTER_ID_ANNOTATION,
    INTENT_ANNOTATION,
    KEY_ANNOTATION,
    GPUClusterObject,
    ObjectMemory,
    Reconciler,
)
from together_operator.gpucluster.plan import MAX_IDENTICAL_UPDATES
from together_operator.gpucluster.status import rfc3339
from together_operator.settings import OperatorSettings
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.together.client import RetryPolicy, TogetherClient
from together_operator.together.models import (
    BillingType,
    GPUClusterCreateRequest,
    GPUClusterInfo,
    GPUClusterUpdateRequest,
    GpuType,
)

KEY = "tgp_v1_RECONCILER-TEST-3f9c1e27-not-a-real-key"
OTHER_KEY = "tgp_v1_RECONCILER-TEST-8d04b6a1-the-old-key"
NAMESPACE, NAME, UID = "team-a", "train", "uid-6a1f"
CLUSTER_NAME = f"{NAMESPACE}-{NAME}"
SPEC: dict[str, Any] = {
    "region": "us-central-8",
    "gpuType": "H100_SXM",
    "numGpus": 8,
    "cudaVersion": "12.5",
    "nvidiaDriverVersion": "555",
}
CREATE, UPDATE, DELETE = (
    "GPUClusterService_Create",
    "GPUClusterService_Update",
    "GPUClusterService_Delete",
)
FAST_POLL_SECONDS, SLOW_POLL_SECONDS = 0.05, 0.5
CREATE_GRACE_SECONDS = 30.0  # on the fake clock: elapses only when a test advances it
TO_READY_SECONDS = 120.0  # simulated create-to-Ready is about a minute at speed 1
TO_GONE_SECONDS = 30.0  # simulated Deleting-to-gone is 10 s at speed 1
SCENARIO_TIMEOUT_SECONDS = 15.0
# Closing is bounded so that a hang fails the test: on Python 3.11 Fleet.close() never returns
# when an observer's wake-up (hurry) and its cancellation land in the same loop iteration.
CLOSE_TIMEOUT_SECONDS = 5.0


def spec(**overrides: Any) -> dict[str, Any]:
    return {**SPEC, **overrides}


# --- Together: the simulator and its admin API ----------------------------------------------


@dataclass
class Simulator:
    running: RunningSimulator
    clock: FakeClock
    admin: httpx.Client

    def requests(self, operation: str, status: str | None = None) -> int:
        """How many requests to ``operation`` (with ``status``: "200", "dropped", ...)."""
        rows = self.admin.get("/requests").raise_for_status().json()["requests"]
        return sum(
            row["count"]
            for row in rows
            if row["operation"] == operation and status in (None, row["status"])
        )

    def live_clusters(self) -> list[dict[str, Any]]:
        rows = self.admin.get("/clusters").raise_for_status().json()["clusters"]
        return [row["cluster"] for row in rows if not row["deleted"]]

    def fault(self, kind: str, **payload: Any) -> None:
        self.admin.post(f"/faults/{kind}", json=payload).raise_for_status()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    clock = FakeClock()
    running = start_in_thread(SimulatorConfig(api_keys=(KEY,)), clock=clock)
    with httpx.Client(base_url=running.admin_url, timeout=5) as admin:
        yield Simulator(running, clock, admin)
    running.stop()


# --- Kubernetes: an in-memory KubeApi --------------------------------------------------------


@dataclass
class OwnerReference:
    uid: str


@dataclass
class SecretMetadata:
    owner_references: list[OwnerReference]
    resource_version: str


@dataclass
class StoredSecret:
    """The attributes of a V1Secret that the controller reads."""

    data: dict[str, str]
    metadata: SecretMetadata


@dataclass(frozen=True)
class KubeWrite:
    method: str
    body: Mapping[str, Any]


class FakeKube(KubeApi):
    """Holds one namespace's GPUCluster annotations and status, and its Secrets; logs writes."""

    def __init__(self) -> None:  # no API client: nothing here talks to a server
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.status: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], StoredSecret] = {}
        self.writes: list[KubeWrite] = []
        #: Called with every write as it happens (to look at Together at that moment).
        self.on_write: Callable[[KubeWrite], None] | None = None

    async def _log(self, method: str, body: Mapping[str, Any]) -> None:
        # Like the real KubeApi (a worker thread per call), every write suspends the caller.
        await asyncio.sleep(0)
        write = KubeWrite(method, dict(body))
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)

    def put_secret(self, namespace: str, name: str, data: dict[str, str], owner: str = "") -> None:
        """A Secret as a person (or another controller) would create it; values in clear."""
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        references = [OwnerReference(owner)] if owner else []
        self.secrets[(namespace, name)] = StoredSecret(encoded, SecretMetadata(references, "1"))

    async def read_secret(self, namespace: str, name: str) -> Any | None:
        await asyncio.sleep(0)
        return self.secrets.get((namespace, name))

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = await self.read_secret(namespace, name)
        if secret is None or key not in secret.data:
            return None
        return base64.b64decode(secret.data[key]).decode().strip()

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        assert (namespace, name) not in self.secrets, f"Secret {name} exists: 409"
        self._store_secret(namespace, body)
        await self._log("create_secret", body)

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self._store_secret(namespace, body)
        await self._log("replace_secret", body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)
        await self._log("delete_secret", {"name": name})

    def _store_secret(self, namespace: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        references = [OwnerReference(ref["uid"]) for ref in meta.get("ownerReferences", [])]
        version = str(int(meta.get("resourceVersion", "0")) + 1)
        self.secrets[(namespace, meta["name"])] = StoredSecret(
            dict(body["data"]), SecretMetadata(references, version)
        )

    async def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        stored = self.annotations.setdefault((namespace, name), {})
        for key, value in annotations.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        await self._log("patch_annotations", annotations)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        stored = self.status.setdefault((namespace, name), {})
        for key, value in status.items():  # a JSON merge patch, one level deep
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        await self._log("patch_status", status)

    def gpucluster(
        self, spec: Mapping[str, Any], generation: int, namespace: str = NAMESPACE
    ) -> GPUClusterObject:
        """The object as stored now: what kopf would hand to the next visit."""
        return GPUClusterObject(
            namespace=namespace,
            name=NAME,
            uid=UID,
            generation=generation,
            spec=dict(spec),
            status=dict(self.status.get((namespace, NAME), {})),
            annotations=dict(self.annotations.get((namespace, NAME), {})),
        )


# --- the reconciler, wired to both -----------------------------------------------------------


class UpdateIgnoringClient(TogetherClient):
    """A Together that answers every PUT 200 and applies nothing: the client sends an empty
    merge-PUT in place of the planned one, so the simulator accepts the request and the
    cluster keeps its values (the simulator itself applies every field it accepts)."""

    async def update_cluster(
        self, cluster_id: str, request: GPUClusterUpdateRequest
    ) -> GPUClusterInfo:
        return await super().update_cluster(cluster_id, GPUClusterUpdateRequest())


@dataclass
class Harness:
    sim: Simulator
    kube: FakeKube = field(default_factory=FakeKube)
    memory: ObjectMemory = field(default_factory=ObjectMemory)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    client_type: type[TogetherClient] = TogetherClient
    _reconciler: Reconciler | None = None
    _fleet: Fleet | None = None

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    def run(self, scenario: Callable[[], Awaitable[None]]) -> None:
        """Run ``scenario`` in a fresh event loop with a new reconciler, bounded in time; the
        fleet (its pollers and HTTP clients) is closed whatever happens."""

        async def main() -> None:
            self._fleet = Fleet(
                # One attempt per call: these tests are about the reconciler's handling of a
                # failure, not about the client retrying it away (test_together_client does).
                client_factory=lambda key: self.client_type(
                    key, base_url=self.sim.running.base_url, timeout=5, retry=RetryPolicy(1)
                ),
                policy=PollPolicy(fast_seconds=FAST_POLL_SECONDS, slow_seconds=SLOW_POLL_SECONDS),
            )
            settings = OperatorSettings(
                together_api_key=SecretStr(KEY),
                fast_poll_seconds=FAST_POLL_SECONDS,
                slow_poll_seconds=SLOW_POLL_SECONDS,
                create_grace_seconds=CREATE_GRACE_SECONDS,
                credentials_ttl_seconds=0,
                request_timeout_seconds=5,
            )
            self._reconciler = Reconciler(
                self.kube, self._fleet, settings, OperatorMetrics(), clock=self.sim.clock.now
            )
            try:
                await asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_SECONDS)
            finally:
                await asyncio.wait_for(self._reconciler.close(), CLOSE_TIMEOUT_SECONDS)

        asyncio.run(main())

    @property
    def reconciler(self) -> Reconciler:
        assert self._reconciler is not None, "only inside Harness.run"
        return self._reconciler

    async def visit(self, spec: Mapping[str, Any] = SPEC, generation: int = 1) -> None:
        obj = self.kube.gpucluster(spec, generation)
        await self.reconciler.reconcile(obj, self.memory, self.event)

    async def finalize(self, spec: Mapping[str, Any] = SPEC, generation: int = 1) -> float | None:
        obj = self.kube.gpucluster(spec, generation)
        return await self.reconciler.finalize(obj, self.memory, self.event)

    async def visit_until(
        self,
        done: Callable[[], bool],
        what: str,
        spec: Mapping[str, Any] = SPEC,
        within: float = 5.0,
    ) -> None:
        """Visit every 50 ms (as resyncs would) until ``done()``; fail after ``within``."""
        deadline = time.monotonic() + within
        while True:
            await self.visit(spec)
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {within}s of visits; events: {self.events}")
            await asyncio.sleep(0.05)

    async def fresh_list(self) -> None:
        """Make the fleet list Together now (after the fake clock moved)."""
        assert self._fleet is not None, "only inside Harness.run"
        await self._fleet.observer_for(KEY).refresh()

    async def create_ready_cluster(self) -> str:
        """Let the reconciler create the cluster, then bring it to Ready; its ID."""
        await self.visit()
        cluster_id = self.annotations()[CLUSTER_ID_ANNOTATION]
        self.sim.advance(TO_READY_SECONDS)
        await self.fresh_list()
        await self.visit()
        assert self.condition("Ready")["status"] == "True", self.status()
        return cluster_id

    def annotations(self) -> dict[str, str]:
        return self.kube.annotations.get((NAMESPACE, NAME), {})

    def status(self) -> dict[str, Any]:
        return self.kube.status.get((NAMESPACE, NAME), {})

    def condition(self, kind: str) -> dict[str, Any]:
        conditions = self.status().get("conditions") or []
        found = [c for c in conditions if c["type"] == kind]
        assert len(found) == 1, f"expected one {kind} condition in {conditions}"
        result: dict[str, Any] = found[0]
        return result


@pytest.fixture
def harness(sim: Simulator) -> Harness:
    return Harness(sim)


# --- creating --------------------------------------------------------------------------------


def test_first_visit_records_the_intent_before_posting_then_the_cluster_id(
    harness: Harness, sim: Simulator
) -> None:
    # Every annotation patch is paired with the number of creates Together had seen by then.
    annotation_patches: list[tuple[Mapping[str, Any], int]] = []

    def witness(write: KubeWrite) -> None:
        if write.method == "patch_annotations":
            annotation_patches.append((write.body, sim.requests(CREATE)))

    harness.kube.on_write = witness

    async def scenario() -> None:
        await harness.visit(generation=3)

    harness.run(scenario)

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    intent_patch, creates_before = annotation_patches[0]
    assert set(intent_patch) == {INTENT_ANNOTATION}
    assert intent_patch[INTENT_ANNOTATION] == rfc3339(sim.clock.now())
    assert creates_before == 0, "the intent must be stored before the POST"
    recorded_patch, creates_after = annotation_patches[1]
    assert creates_after == 1
    assert recorded_patch == {
        CLUSTER_ID_ANNOTATION: cluster["cluster_id"],
        KEY_ANNOTATION: key_fingerprint(KEY),
        INTENT_ANNOTATION: None,
    }
    assert len(annotation_patches) == 2
    assert harness.annotations() == {
        CLUSTER_ID_ANNOTATION: cluster["cluster_id"],
        KEY_ANNOTATION: key_fingerprint(KEY),
    }
    status = harness.status()
    assert status["clusterId"] == cluster["cluster_id"]
    assert status["observedGeneration"] == 3
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Synced",
        "Reconciling",
        "Stalled",
    }
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert harness.condition("Ready")["status"] == "False"
    assert harness.condition("Reconciling")["status"] == "True"
    assert harness.condition("Synced")["status"] == "True"
    assert ("Normal", "Created") in {(kind, reason) for kind, reason, _ in harness.events}


def test_create_whose_answer_is_lost_keeps_the_intent_and_adopts_the_committed_cluster(
    harness: Harness, sim: Simulator
) -> None:
    sim.fault("drops", operation=CREATE, count=1)

    async def scenario() -> None:
        await harness.visit()
        assert INTENT_ANNOTATION in harness.annotations(), "intent kept: the outcome is unknown"
        assert CLUSTER_ID_ANNOTATION not in harness.annotations()
        assert harness.condition("Synced")["status"] == "False"
        await harness.visit_until(lambda: "Adopted" in harness.reasons(), "adoption")

    harness.run(scenario)

    [cluster] = sim.live_clusters()
    assert sim.requests(CREATE) == 1
    assert sim.requests(CREATE, "dropped") == 1
    assert harness.reasons().count("Adopted") == 1
    assert harness.annotations()[CLUSTER_ID_ANNOTATION] == cluster["cluster_id"]
    assert INTENT_ANNOTATION not in harness.annotations()
    assert harness.status()["clusterId"] == cluster["cluster_id"]


def test_rejected_create_clears_the_intent_stalls_and_does_not_post_again_during_backoff(
    harness: Harness, sim: Simulator
) -> None:
    # A CUDA/driver pair the region does not offer: Together answers 400 to the POST.
    unoffered = spec(cudaVersion="12.9", nvidiaDriverVersion="575")

    async def scenario() -> None:
        for _ in range(3):
            await harness.visit(unoffered)

    harness.run(scenario)

    assert sim.requests(CREATE) == 1
    assert sim.requests(CREATE, "400") == 1
    assert sim.live_clusters() == []
    intents = [w.body for w in harness.kube.writes if INTENT_ANNOTATION in w.body]
    assert len(intents) == 2
    assert intents[0][INTENT_ANNOTATION] is not None
    assert intents[1] == {INTENT_ANNOTATION: None}, "a definite no clears the intent"
    assert INTENT_ANNOTATION not in harness.annotations()
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "InvalidRequest"
    assert "not offered" in stalled["message"]
    assert harness.condition("Ready")["status"] == "False"
    assert harness.reasons().count("InvalidRequest") == 1


# --- updating --------------------------------------------------------------------------------


def test_transient_503_on_update_of_a_ready_cluster_keeps_ready_and_reports_not_synced(
    harness: Harness, sim: Simulator
) -> None:
    async def scenario() -> None:
        await harness.create_ready_cluster()
        ready_since = harness.condition("Ready")["lastTransitionTime"]
        sim.fault("failures", operation=UPDATE, status=503, count=1)
        await harness.visit(spec(numGpus=16), generation=2)
        ready = harness.condition("Ready")
        assert ready["status"] == "True"
        assert ready["lastTransitionTime"] == ready_since
        assert ready["observedGeneration"] == 2

    harness.run(scenario)

    assert sim.requests(UPDATE) == 1
    assert sim.requests(UPDATE, "503") == 1
    synced = harness.condition("Synced")
    assert synced["status"] == "False"
    assert synced["reason"] == "TogetherUnavailable"
    assert harness.condition("Reconciling")["status"] == "True"
    assert harness.condition("Stalled")["status"] == "False"
    assert harness.status()["state"] == "Ready"


def test_update_accepted_but_never_reflected_stalls_after_the_identical_update_limit(
    sim: Simulator,
) -> None:
    harness = Harness(sim, client_type=UpdateIgnoringClient)
    wanted = spec(numGpus=16)

    async def scenario() -> None:
        await harness.create_ready_cluster()
        for attempt in range(1, MAX_IDENTICAL_UPDATES + 1):
            await harness.visit(wanted, generation=2)
            assert sim.requests(UPDATE, "200") == attempt
            assert harness.condition("Stalled")["status"] == "False"
        await harness.visit(wanted, generation=2)
        await harness.visit(wanted, generation=2)

    harness.run(scenario)

    assert sim.requests(UPDATE) == MAX_IDENTICAL_UPDATES
    assert [c["num_gpus"] for c in sim.live_clusters()] == [8]
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "UpdateNotApplied"
    assert "numGpus" in stalled["message"]
    assert harness.condition("Reconciling")["status"] == "False"


def test_spec_cluster_id_other_than_the_recorded_one_stalls_without_writing_to_together(
    harness: Harness, sim: Simulator
) -> None:
    async def scenario() -> None:
        await harness.visit()
        recorded = harness.annotations()[CLUSTER_ID_ANNOTATION]
        # Another cluster, with a different size: taking it over would PUT numGpus 8 to it.
        together = TogetherClient(KEY, base_url=sim.running.base_url, timeout=5)
        try:
            other = await together.create_cluster(
                GPUClusterCreateRequest(
                    cluster_name="someone-else",
                    region="us-central-8",
                    gpu_type=GpuType.H100_SXM,
                    num_gpus=16,
                    billing_type=BillingType.ON_DEMAND,
                    cuda_version="12.5",
                    nvidia_driver_version="555",
                )
            )
        finally:
            await together.aclose()
        sim.advance(TO_READY_SECONDS)
        await harness.fresh_list()
        before = {op: sim.requests(op) for op in (CREATE, UPDATE, DELETE)}
        for _ in range(2):
            await harness.visit(spec(clusterId=other.cluster_id), generation=2)
        assert {op: sim.requests(op) for op in (CREATE, UPDATE, DELETE)} == before
        assert harness.annotations()[CLUSTER_ID_ANNOTATION] == recorded
        # Nothing of the other cluster is mirrored or published into this object.
        assert harness.status()["clusterId"] == recorded
        secrets = [s.data.get("kubeconfig", "") for s in harness.kube.secrets.values()]
        assert not any(
            other.cluster_id in base64.b64decode(data).decode() for data in secrets if data
        )

    harness.run(scenario)

    assert sorted(c["num_gpus"] for c in sim.live_clusters()) == [8, 16]
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "ClusterIdConflict"
    assert harness.condition("Ready")["status"] == "False"


# --- finalizing ------------------------------------------------------------------------------


def test_finalize_with_orphan_policy_releases_without_deleting_at_together(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []

    async def scenario() -> None:
        await harness.visit()
        results.append(await harness.finalize(spec(deletionPolicy="Orphan")))

    harness.run(scenario)

    assert results == [None]
    assert sim.requests(DELETE) == 0
    assert len(sim.live_clusters()) == 1
    assert "Orphaned" in harness.reasons()


def test_finalize_deletes_once_waits_while_deleting_and_releases_when_gone(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []
    kubeconfig_secret = (NAMESPACE, f"{NAME}-kubeconfig")

    async def scenario() -> None:
        await harness.create_ready_cluster()
        assert KUBECONFIG_KEY in harness.kube.secrets[kubeconfig_secret].data
        results.append(await harness.finalize())
        assert harness.condition("Reconciling")["reason"] == "Deleting"
        results.append(await harness.finalize())
        sim.advance(TO_GONE_SECONDS)
        results.append(await harness.finalize())

    harness.run(scenario)

    deleting_first, deleting_again, released = results
    assert deleting_first == FAST_POLL_SECONDS, "checked again at the fast cadence"
    assert deleting_again == FAST_POLL_SECONDS
    assert released is None
    assert sim.requests(DELETE) == 1
    assert sim.live_clusters() == []
    assert harness.reasons().count("Deleting") == 1
    assert "Deleted" in harness.reasons()
    assert kubeconfig_secret not in harness.kube.secrets, "the owned kubeconfig Secret goes too"


def test_finalize_with_an_unresolved_intent_waits_out_the_create_grace_before_releasing(
    harness: Harness, sim: Simulator
) -> None:
    results: list[float | None] = []
    # A create was started (intent recorded) and its answer lost; nothing is listed yet.
    harness.kube.annotations[(NAMESPACE, NAME)] = {INTENT_ANNOTATION: rfc3339(sim.clock.now())}

    async def scenario() -> None:
        results.append(await harness.finalize())
        assert harness.condition("Reconciling")["reason"] == "ConfirmingCreate"
        sim.advance(CREATE_GRACE_SECONDS / 2)
        results.append(await harness.finalize())
        sim.advance(CREATE_GRACE_SECONDS / 2 + 1)
        results.append(await harness.finalize())

    harness.run(scenario)

    at_start, halfway, after_grace = results
    assert at_start == pytest.approx(CREATE_GRACE_SECONDS)
    assert halfway == pytest.approx(CREATE_GRACE_SECONDS / 2)
    assert after_grace is None
    assert sim.requests(CREATE) == 0
    assert sim.requests(DELETE) == 0


def test_finalize_does_not_release_on_404_seen_with_a_different_key(
    harness: Harness, sim: Simulator
) -> None:
    # The credentials Secret now holds KEY; the cluster was created with OTHER_KEY, so
    # Together's 404 may only mean "not visible to this key", not "gone".
    harness.kube.put_secret(NAMESPACE, "together-credentials", {"apiKey": KEY})
    harness.kube.annotations[(NAMESPACE, NAME)] = {
        CLUSTER_ID_ANNOTATION: "c-created-with-the-old-key",
        KEY_ANNOTATION: key_fingerprint(OTHER_KEY),
    }
    with_secret = spec(credentialsSecretRef={"name": "together-credentials"})
    results: list[float | None] = []

    async def scenario() -> None:
        results.append(await harness.finalize(with_secret))
        results.append(await harness.finalize(with_secret))

    harness.run(scenario)

    assert all(result is not None and result > 0 for result in results), results
    assert sim.requests("GPUClusterService_Get", "404") == 2
    assert sim.requests(DELETE) == 0
    stalled = harness.condition("Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "CredentialsChanged"
    assert key_fingerprint(OTHER_KEY) in stalled["message"]
    assert KEY not in stalled["message"]
