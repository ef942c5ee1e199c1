"""What bench/fleet.py measures with: a small Kubernetes HTTP client, a recording watch on
GPUClusters, the kube-apiserver's metrics, and per-process CPU and memory from /proc.

Only public interfaces: the Kubernetes REST API with the local control plane's admin client
certificate, and /proc. Nothing here imports the operator.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

GROUP, VERSION, PLURAL = "compute.together.ai", "v1alpha1", "gpuclusters"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress goes to stderr with a wall-clock stamp; the figures go to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Kubernetes ----------------------------------------------------------------------------


def _ssl_context(kubeconfig: Path, scratch: Path) -> tuple[str, ssl.SSLContext]:
    """The server and an SSL context with the kubeconfig's CA and client certificate."""
    document = yaml.safe_load(kubeconfig.read_text())
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    scratch.mkdir(parents=True, exist_ok=True)
    cert, key = scratch / "bench-client.crt", scratch / "bench-client.key"
    for path, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
        path.touch(mode=0o600)
        path.write_bytes(base64.b64decode(data))
    context.load_cert_chain(cert, key)
    return str(cluster["server"]), context


class Kube:
    """Plain REST calls to the API server as its admin (thread-safe: httpx's pool locks)."""

    def __init__(self, kubeconfig: Path, scratch: Path) -> None:
        self.server, self._context = _ssl_context(kubeconfig, scratch)
        self.http = httpx.Client(
            base_url=self.server,
            verify=self._context,
            timeout=30.0,
            limits=httpx.Limits(max_connections=40, max_keepalive_connections=40),
        )

    def streaming_client(self) -> httpx.Client:
        """A client without a read timeout, for one watch."""
        return httpx.Client(
            base_url=self.server, verify=self._context, timeout=httpx.Timeout(10.0, read=None)
        )

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, path: str, body: Any = None, ok: Iterable[int] = ()) -> Any:
        response = self.http.request(method, path, json=body)
        if not response.is_success and response.status_code not in tuple(ok):
            raise RuntimeError(
                f"{method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def metrics(self) -> str:
        response = self.http.get("/metrics")
        response.raise_for_status()
        return response.text


def objects_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str, name: str, **wanted: str) -> list[tuple[dict[str, str], float]]:
    """Samples of metric `name` whose labels include `wanted`, from Prometheus text format."""
    samples = []
    prefix = name + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_text, _, value = line[len(prefix) :].rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        if all(labels.get(key) == expected for key, expected in wanted.items()):
            samples.append((labels, float(value)))
    return samples


def gpucluster_requests(kube: Kube) -> dict[str, float]:
    """`apiserver_request_total` on gpuclusters since start, by "VERB[/subresource] code"."""
    counts: dict[str, float] = {}
    for labels, value in metric_samples(kube.metrics(), "apiserver_request_total", resource=PLURAL):
        verb = labels.get("verb", "?") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        key = f"{verb} {labels.get('code', '?')}"
        counts[key] = counts.get(key, 0.0) + value
    return counts


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})


def writes_by_resource(kube: Kube) -> dict[str, float]:
    """`apiserver_request_total` of writes since start, by "VERB resource[/subresource]"."""
    counts: dict[str, float] = {}
    for labels, value in metric_samples(kube.metrics(), "apiserver_request_total"):
        if labels.get("verb") not in WRITE_VERBS:
            continue
        resource = labels.get("resource", "?") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        key = f"{labels['verb']} {resource}"
        counts[key] = counts.get(key, 0.0) + value
    return counts


def gpucluster_watches(kube: Kube) -> int:
    """Watches on gpuclusters open right now (every client's, this bench's included)."""
    samples = metric_samples(
        kube.metrics(), "apiserver_longrunning_requests", resource=PLURAL, verb="WATCH"
    )
    return int(sum(value for _, value in samples))


# --- the recording watch -------------------------------------------------------------------


@dataclass
class Timeline:
    """What the watch saw of one GPUCluster, in wall-clock seconds."""

    first_seen_state: dict[str, float] = field(default_factory=dict)
    ready_at: float | None = None
    cluster_id: str | None = None
    deleted_at: float | None = None
    # The create path as the watch saw it: the object, its finalizer, the operator's create
    # intent (status.ownership.createIntentAt), and the cluster ID it recorded.
    added_at: float | None = None
    finalizer_at: float | None = None
    intent_at: float | None = None
    cluster_id_at: float | None = None


def _first(timeline: Timeline, moment: str, at: float) -> None:
    if getattr(timeline, moment) is None:
        setattr(timeline, moment, at)


def _is_ready(status: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


class FleetWatch:
    """A watch on the namespace's GPUClusters in a thread, recording per object when each
    `status.state` value and the Ready condition first showed, and when every MODIFIED
    event arrived. It also notes its own requests, so that they can be taken out of the API
    server's counts."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._lock = threading.Lock()
        self._timelines: dict[str, Timeline] = {}
        self._modified: list[float] = []
        self._own_requests: list[float] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-watch", daemon=True)
        self._client = kube.streaming_client()
        self._resource_version = ""
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._relist()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._client.close()
        # A blocked read may outlive the close; it ends when the API server stops, and the
        # thread (a daemon) then notices `_stopping`. No point waiting long for it here.
        self._thread.join(timeout=1)

    # queries (copies under the lock; the watch thread keeps running)

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for t in self._timelines.values() if t.ready_at and t.deleted_at is None)

    def present_count(self) -> int:
        with self._lock:
            return sum(1 for t in self._timelines.values() if t.deleted_at is None)

    def modified_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for at in self._modified if start <= at <= end)

    def own_requests_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for at in self._own_requests if start <= at <= end)

    def timelines(self) -> dict[str, Timeline]:
        with self._lock:
            return {
                name: replace(t, first_seen_state=dict(t.first_seen_state))
                for name, t in self._timelines.items()
            }

    # the thread

    def _record(self, kind: str, item: dict[str, Any], at: float) -> None:
        name = item["metadata"]["name"]
        status = item.get("status") or {}
        with self._lock:
            timeline = self._timelines.setdefault(name, Timeline())
            if kind == "MODIFIED":
                self._modified.append(at)
            if kind == "DELETED":
                timeline.deleted_at = at
                return
            _first(timeline, "added_at", at)
            if item["metadata"].get("finalizers"):
                _first(timeline, "finalizer_at", at)
            if (status.get("ownership") or {}).get("createIntentAt"):
                _first(timeline, "intent_at", at)
            if status.get("clusterId"):
                _first(timeline, "cluster_id_at", at)
            state = status.get("state")
            if state and state not in timeline.first_seen_state:
                timeline.first_seen_state[state] = at
            if timeline.ready_at is None and _is_ready(status):
                timeline.ready_at = at
            if status.get("clusterId"):
                timeline.cluster_id = status["clusterId"]

    def _relist(self) -> None:
        with self._lock:
            self._own_requests.append(time.time())
        listed = self._kube.send("GET", objects_path(self._namespace))
        at = time.time()
        for item in listed["items"]:
            self._record("ADDED", item, at)
        # Objects deleted while the watch was down: their DELETED events are lost.
        present = {item["metadata"]["name"] for item in listed["items"]}
        with self._lock:
            for name, timeline in self._timelines.items():
                if name not in present and timeline.deleted_at is None:
                    timeline.deleted_at = at
        self._resource_version = listed["metadata"]["resourceVersion"]

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._watch_once()
            except Exception as error:
                if self._stopping.is_set():
                    return
                log(f"watch interrupted ({type(error).__name__}: {error}); resuming")
                time.sleep(1.0)
                try:
                    self._relist()
                except Exception as relist_error:
                    self.failure = relist_error
                    return

    def _watch_once(self) -> None:
        params = {
            "watch": "1",
            "resourceVersion": self._resource_version,
            "allowWatchBookmarks": "true",
            # Long, so that the watch does not restart inside a measuring window (a restart
            # is a request of ours, noted and subtracted anyway).
            "timeoutSeconds": "3600",
        }
        with self._lock:
            self._own_requests.append(time.time())
        path = objects_path(self._namespace)
        with self._client.stream("GET", path, params=params) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line:
                    continue
                at = time.time()
                event = json.loads(line)
                kind, item = event["type"], event["object"]
                if kind == "ERROR":
                    # 410 Gone: our resourceVersion is too old; list again and carry on.
                    self._relist()
                    return
                self._resource_version = item["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    self._record(kind, item, at)


# --- processes -----------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def memory_bytes(pids: Iterable[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) summed over the processes."""
    rss = hwm = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                rss += int(value.split()[0]) * 1024
            elif key == "VmHWM":
                hwm += int(value.split()[0]) * 1024
    return rss, hwm


class MemorySampler:
    """Samples a process tree's resident memory every second, for the peak of a tree (the
    kernel's VmHWM is per process)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_sampled_rss = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def read(self) -> tuple[int, int]:
        """(RSS now, peak RSS so far). For one process the peak is the kernel's VmHWM; for a
        tree (VmHWM is per process, and peaks need not coincide) it is the largest sum of
        RSS sampled once a second, which can miss a spike shorter than that."""
        pids = process_tree(self.root)
        rss, hwm = memory_bytes(pids)
        peak = hwm if len(pids) == 1 else self.peak_sampled_rss
        return rss, max(peak, rss)

    def _run(self) -> None:
        while not self._stopping.wait(1.0):
            rss, _ = memory_bytes(process_tree(self.root))
            self.peak_sampled_rss = max(self.peak_sampled_rss, rss)
