"""The harness of the reconciler tests: the in-thread Together simulator and an in-memory
Kubernetes, wired to a real Reconciler.

Kubernetes is a small fake of ``KubeApi`` that keeps annotations, status and Secrets and logs
every write; each visit builds the next ``GPUClusterObject`` from what the fake holds, the way
kopf would hand over the stored object. Together is the real simulator on 127.0.0.1, driven by
a ``FakeClock`` that the reconciler shares, so provisioning, deletion and the create grace
period move only when a test advances the clock. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client.rest import ApiException
from pydantic import SecretStr

from tests.support import wait_for_async
from together_operator.controller.fleet import Fleet, PollPolicy
from together_operator.controller.kube import KubeApi
from together_operator.controller.metrics import OperatorMetrics
from together_operator.controller.reconciler import (
    GPUClusterObject,
    ObjectMemory,
    Reconciler,
)
from together_operator.settings import OperatorSettings
from together_operator.simulator.admin import SimulatorAdmin
from together_operator.simulator.clock import FakeClock
from together_operator.simulator.server import RunningSimulator, SimulatorConfig, start_in_thread
from together_operator.together import operations
from together_operator.together.client import RetryPolicy, TogetherClient
from together_operator.together.models import (
    GPUClusterInfo,
    GPUClusterUpdateRequest,
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
CREATE, UPDATE, DELETE, GET = (
    operations.CREATE_CLUSTER.id,
    operations.UPDATE_CLUSTER.id,
    operations.DELETE_CLUSTER.id,
    operations.GET_CLUSTER.id,
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
    admin: SimulatorAdmin

    def requests(self, operation: str, status: str | None = None) -> int:
        """How many requests to ``operation`` (with ``status``: "200", "dropped", ...)."""
        return self.admin.request_count(operation, status)

    def live_clusters(self) -> list[GPUClusterInfo]:
        return self.admin.live_clusters()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    clock = FakeClock()
    running = start_in_thread(SimulatorConfig(api_keys=(KEY,)), clock=clock)
    try:
        with SimulatorAdmin(running.admin_url, timeout=5) as admin:
            yield Simulator(running, clock, admin)
    finally:
        running.stop()


# --- Kubernetes: an in-memory KubeApi --------------------------------------------------------


@dataclass(frozen=True)
class KubeWrite:
    method: str
    body: Mapping[str, Any]


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """A JSON merge patch (RFC 7386): nested objects merge, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeKube(KubeApi):
    """Holds one namespace's GPUCluster annotations and status, and its Secrets; logs writes."""

    def __init__(self) -> None:  # no API client: nothing here talks to a server
        self.annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.status: dict[tuple[str, str], dict[str, Any]] = {}
        #: The resourceVersion of each object: every write moves it on.
        self.versions: dict[tuple[str, str], int] = {}
        #: Secrets as the API server returns them (JSON).
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[KubeWrite] = []
        #: Secret creates refused because the name was taken (as the API server does: 409).
        self.refused_creates: list[str] = []
        #: The name of every Secret read.
        self.secret_reads: list[str] = []
        #: Called with every write as it happens (to look at Together at that moment).
        self.on_write: Callable[[KubeWrite], None] | None = None

    async def _log(self, method: str, body: Mapping[str, Any]) -> None:
        # Like the real KubeApi (a request per call), every write suspends the caller.
        await asyncio.sleep(0)
        write = KubeWrite(method, dict(body))
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)

    def put_secret(self, namespace: str, name: str, data: dict[str, str], owner: str = "") -> None:
        """A Secret as a person (or another controller) would create it; values in clear."""
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-of-{name}",
            "resourceVersion": "1",
        }
        if owner:
            meta["ownerReferences"] = [{"uid": owner}]
        self.secrets[(namespace, name)] = {"metadata": meta, "data": encoded}

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        self.secret_reads.append(name)
        return copy.deepcopy(self.secrets.get((namespace, name)))  # a copy, as from the API

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = await self.read_secret(namespace, name)
        if secret is None or key not in secret["data"]:
            return None
        return base64.b64decode(secret["data"][key]).decode().strip()

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        await asyncio.sleep(0)
        if (namespace, name) in self.secrets:
            self.refused_creates.append(name)
            raise ApiException(status=409, reason="AlreadyExists")
        self._store_secret(namespace, body)
        await self._log("create_secret", body)

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        if "uid" in body["metadata"]:  # as read, changed (the credentials guard does)
            self._store_secret(namespace, body)
            finalizers = body["metadata"].get("finalizers")
            await self._log("replace_secret", {"name": name, "finalizers": finalizers})
            return
        self._store_secret(namespace, body)
        await self._log("replace_secret", body)

    async def delete_secret(self, namespace: str, name: str) -> None:
        self.secrets.pop((namespace, name), None)
        await self._log("delete_secret", {"name": name})

    def _store_secret(self, namespace: str, body: dict[str, Any]) -> None:
        stored = copy.deepcopy(body)
        meta = stored["metadata"]
        meta["namespace"] = namespace
        meta["uid"] = meta.get("uid") or f"uid-of-{meta['name']}"
        meta["resourceVersion"] = str(int(meta.get("resourceVersion") or "0") + 1)
        self.secrets[(namespace, meta["name"])] = stored

    async def patch_annotations(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None:
        stored = self.annotations.setdefault((namespace, name), {})
        for key, value in annotations.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        self.versions[(namespace, name)] = self.versions.get((namespace, name), 0) + 1
        await self._log("patch_annotations", annotations)

    async def close(self) -> None:
        pass  # no connections to close

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
        *,
        urgent: bool = False,
    ) -> None:
        key = (namespace, name)
        if resource_version is not None and resource_version != str(self.versions.get(key, 0)):
            raise ApiException(status=409, reason="Conflict")
        _merge(self.status.setdefault(key, {}), status)
        self.versions[key] = self.versions.get(key, 0) + 1
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
            status=copy.deepcopy(self.status.get((namespace, NAME), {})),
            annotations=dict(self.annotations.get((namespace, NAME), {})),
            resource_version=str(self.versions.get((namespace, NAME), 0)),
        )

    def records(self, namespace: str = NAMESPACE) -> dict[str, Any]:
        """status.ownership as stored."""
        ownership: dict[str, Any] = self.status.get((namespace, NAME), {}).get("ownership", {})
        return ownership


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
    #: TOGETHER_OPERATOR_HEALTH_CHECK_SECONDS (0: alerts read only on trouble).
    health_check_seconds: float = 0.0
    _reconciler: Reconciler | None = None
    _fleet: Fleet | None = None

    def event(self, kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]

    async def start(self) -> None:
        """A new reconciler and fleet on this harness's fake Kubernetes and the simulator."""
        self._fleet = Fleet(
            # One attempt per call: these tests are about the reconciler's handling of a
            # failure, not about the client retrying it away (the client tests do that).
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
            health_check_seconds=self.health_check_seconds,
        )
        self._reconciler = Reconciler(
            self.kube, self._fleet, settings, OperatorMetrics(), clock=self.sim.clock.now
        )

    async def close(self) -> None:
        """Close the fleet (its pollers and HTTP clients), bounded so that a hang fails."""
        if self._reconciler is not None:
            await asyncio.wait_for(self._reconciler.close(), CLOSE_TIMEOUT_SECONDS)

    @property
    def reconciler(self) -> Reconciler:
        assert self._reconciler is not None, "only after Harness.start"
        return self._reconciler

    async def visit(self, spec: Mapping[str, Any] = SPEC, generation: int = 1) -> float | None:
        """One visit; the seconds until the reconciler wants the next one (None: on a change)."""
        obj = self.kube.gpucluster(spec, generation)
        return await self.reconciler.reconcile(obj, self.memory, self.event)

    async def finalize(self, spec: Mapping[str, Any] = SPEC, generation: int = 1) -> float | None:
        obj = self.kube.gpucluster(spec, generation)
        return await self.reconciler.finalize(obj, self.memory, self.event)

    async def visit_until(
        self,
        done: Callable[[], bool],
        what: str,
        spec: Mapping[str, Any] = SPEC,
        within: float = 5.0,
        generation: int = 1,
    ) -> None:
        """Visit every 50 ms (as resyncs would) until ``done()``; fail after ``within``."""

        async def visited() -> bool:
            await self.visit(spec, generation)
            return done()

        reached: bool = await wait_for_async(visited, timeout=within, interval=0.05, what=what)
        assert reached

    async def fresh_list(self) -> None:
        """Make the fleet list Together now (after the fake clock moved)."""
        assert self._fleet is not None, "only after Harness.start"
        await self._fleet.observer_for(KEY).refresh()

    async def create_ready_cluster(self, spec: Mapping[str, Any] = SPEC) -> str:
        """Let the reconciler create the cluster, then bring it to Ready; its ID."""
        await self.visit(spec)
        cluster_id: str = self.status()["clusterId"]
        await self.bring_to_ready(spec)
        assert self.condition("Ready")["status"] == "True", self.status()
        return cluster_id

    async def bring_to_ready(self, spec: Mapping[str, Any] = SPEC) -> None:
        """Let Together finish the cluster, and visit once it lists it Ready."""
        self.sim.advance(TO_READY_SECONDS)
        await self.fresh_list()
        await self.visit(spec)

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


@contextlib.asynccontextmanager
async def running(
    sim: Simulator,
    client_type: type[TogetherClient] = TogetherClient,
    *,
    health_check_seconds: float = 0.0,
) -> AsyncIterator[Harness]:
    """A started harness, closed whatever happens."""
    harness = Harness(sim, client_type=client_type, health_check_seconds=health_check_seconds)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def harness(sim: Simulator) -> AsyncIterator[Harness]:
    async with running(sim) as started:
        yield started


@pytest.fixture
async def harness_ignoring_updates(sim: Simulator) -> AsyncIterator[Harness]:
    """A harness whose Together accepts every PUT and applies none of it."""
    async with running(sim, UpdateIgnoringClient) as started:
        yield started
