"""The fleet bench's figures and their report: what was measured per operator and size, the
table (a column per operator and their ratio), and the raw numbers as JSON."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OPERATORS = ("operator", "baseline")
TITLES = {"operator": "together-operator", "baseline": "per-object polling"}
BUSY_LOAD = 1.5

ROW_DEFINITIONS = {
    "apply -> POST reaches Together, p50 / p95": (
        "per object: the simulator's created_at of the first cluster whose name starts with "
        "<namespace>-<name>, minus the wall time just before the bench sent that object's "
        "create to the API server"
    ),
    "status lag behind Together's phase, p50 / p95": (
        "per phase transition Together recorded up to all-Ready: the time the bench's watch "
        "first saw that phase's status value in status.state, minus the transition_time"
    ),
    "phases never shown in status": (
        "phase transitions (all clusters, create to Ready) whose status value never appeared "
        "in the object's status.state, of all such transitions"
    ),
    "operator memory, peak / steady": (
        "VmHWM of the operator process (summed sampled VmRSS if it forks) at the end of the "
        "run / VmRSS at the end of the steady window"
    ),
    "operator CPU in steady state": "utime+stime delta over the steady window / window, cores",
    "Kubernetes API requests on gpuclusters per minute, steady": (
        "kube-apiserver apiserver_request_total{resource=gpuclusters} delta (every verb and "
        "subresource) over the steady window, minus the bench's own watch restarts"
    ),
    "MODIFIED events on gpuclusters per minute, steady": "the bench's watch, steady window",
    "Together calls per minute, steady": "simulator request counts delta, steady window",
    "Together calls from apply to all Ready": (
        "simulator request counts delta from just before the first create to all Ready"
    ),
    "duplicates / leaks": (
        "clusters beyond the first per object, deleted ones included (at all Ready) / "
        "clusters neither deleted nor Deleting once every object is gone"
    ),
    "first apply -> all Ready (extra)": "wall time from the first create to the last Ready",
}


@dataclass
class Figures:
    """Everything measured for one operator at one fleet size (raw numbers, for --json)."""

    operator: str
    size: int
    error: str | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    apply_seconds: float | None = None
    apply_to_all_ready_seconds: float | None = None
    apply_to_post_seconds: list[float] = field(default_factory=list)
    posts_missing: int = 0
    status_lag_seconds: list[float] = field(default_factory=list)
    phases_total: int = 0
    phases_never_shown: int = 0
    never_shown_by_state: dict[str, int] = field(default_factory=dict)
    together_calls_to_ready: dict[str, int] = field(default_factory=dict)
    duplicates: int | None = None
    stray_clusters: int | None = None
    window_seconds: float | None = None
    cpu_steady_cores: float | None = None
    context_cpu_steady_cores: dict[str, float] = field(default_factory=dict)
    memory_steady_mib: float | None = None
    memory_peak_mib: float | None = None
    kube_requests_steady: dict[str, float] = field(default_factory=dict)
    bench_watch_restarts_in_window: int = 0
    modified_events_steady: int | None = None
    together_calls_steady: dict[str, int] = field(default_factory=dict)
    delete_seconds: float | None = None
    #: seconds per step of the create path the bench's watch saw ("finalizer -> intent")
    create_path_seconds: dict[str, list[float]] = field(default_factory=dict)
    #: Kubernetes API writes (every resource: events, leases too) from apply to all Ready
    kube_writes_to_ready: dict[str, float] = field(default_factory=dict)
    #: CPU of each process from the first create to all Ready, cores
    cpu_to_ready_cores: dict[str, float] = field(default_factory=dict)
    leaks: int | None = None
    still_deleting: int | None = None

    def per_minute(self, count: float | None) -> float | None:
        if count is None or not self.window_seconds:
            return None
        return count * 60.0 / self.window_seconds


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return text + unit


def ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None:
        return "n/a"
    if theirs == 0:
        return "0/0" if mine == 0 else "inf"
    value = mine / theirs
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def total(counts: dict[str, Any]) -> float:
    return float(sum(counts.values()))


def kube_per_minute(f: Figures) -> float | None:
    return f.per_minute(total(f.kube_requests_steady) - f.bench_watch_restarts_in_window)


def when_measured(value: float, measured: float | None) -> float | None:
    return None if measured is None else value


@dataclass(frozen=True)
class Row:
    """One figure of the table: its values per operator, how to show them, and whether a
    ratio of the two operators means something."""

    label: str
    values: Callable[[Figures], list[float | None]]
    unit: str = ""
    with_ratio: bool = True

    def show(self, values: list[float | None]) -> str:
        if self.label == "phases never shown in status":
            return f"{number(values[0])} of {number(values[1])}"
        if self.unit == " core":
            return "n/a" if values[0] is None else f"{values[0]:.3f} core"
        return " / ".join(number(v) for v in values) + self.unit

    def ratio(self, mine: list[float | None], theirs: list[float | None]) -> str:
        if not self.with_ratio:
            return "-"
        if self.label == "phases never shown in status":
            return ratio(mine[0], theirs[0])
        return " / ".join(ratio(m, t) for m, t in zip(mine, theirs, strict=True))


ROWS = [
    Row(
        "apply -> POST reaches Together, p50 / p95",
        lambda f: [percentile(f.apply_to_post_seconds, q) for q in (50, 95)],
        " s",
    ),
    Row(
        "status lag behind Together's phase, p50 / p95",
        lambda f: [percentile(f.status_lag_seconds, q) for q in (50, 95)],
        " s",
    ),
    Row(
        "phases never shown in status",
        lambda f: [float(f.phases_never_shown), float(f.phases_total)],
    ),
    Row(
        "operator memory, peak / steady",
        lambda f: [f.memory_peak_mib, f.memory_steady_mib],
        " MiB",
    ),
    Row("operator CPU in steady state", lambda f: [f.cpu_steady_cores], " core"),
    Row(
        "Kubernetes API requests on gpuclusters per minute, steady",
        lambda f: [kube_per_minute(f)],
    ),
    Row(
        "MODIFIED events on gpuclusters per minute, steady",
        lambda f: [f.per_minute(f.modified_events_steady)],
    ),
    Row(
        "Together calls per minute, steady",
        lambda f: [f.per_minute(total(f.together_calls_steady))],
    ),
    Row(
        "Together calls from apply to all Ready",
        lambda f: [when_measured(total(f.together_calls_to_ready), f.apply_to_all_ready_seconds)],
    ),
    Row(
        "duplicates / leaks",
        lambda f: [
            None if f.duplicates is None else float(f.duplicates),
            None if f.leaks is None else float(f.leaks),
        ],
        with_ratio=False,
    ),
    Row("first apply -> all Ready (extra)", lambda f: [f.apply_to_all_ready_seconds], " s"),
]


def table(results: dict[str, Figures]) -> str:
    """One Markdown table: a column per operator, and their ratio when both ran."""
    kinds = [kind for kind in OPERATORS if kind in results]
    paired = kinds == list(OPERATORS)
    header = ["figure", *(TITLES[k] for k in kinds)] + (["operator / baseline"] if paired else [])
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in ROWS:
        values = {kind: row.values(results[kind]) for kind in kinds}
        cells = [row.label, *(row.show(values[kind]) for kind in kinds)]
        if paired:
            cells.append(row.ratio(values["operator"], values["baseline"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def breakdown(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {value:g}" for key, value in counts.items()) or "none"


def notes(f: Figures) -> str:
    """What the table leaves out: loads, durations, where the counts came from, failures."""
    lines = [
        f"- {TITLES[f.operator]}: load {f.load_before[0]:.2f} -> {f.load_after[0]:.2f}; "
        f"apply burst {number(f.apply_seconds, ' s')}; delete to all gone "
        f"{number(f.delete_seconds, ' s')}",
        f"  steady Kubernetes requests on gpuclusters: {breakdown(f.kube_requests_steady)}"
        f" (bench watch restarts subtracted: {f.bench_watch_restarts_in_window})",
        f"  steady Together calls: {breakdown(f.together_calls_steady)}; apply to all Ready: "
        f"{breakdown(f.together_calls_to_ready)}",
        f"  phases never shown, by state: {breakdown(f.never_shown_by_state)}; steady CPU "
        "elsewhere (cores): "
        + ", ".join(f"{k} {v:.3f}" for k, v in f.context_cpu_steady_cores.items()),
    ]
    if f.create_path_seconds:
        lines.append(
            "  create path p50/p95 (s): "
            + ", ".join(
                f"{step} {number(percentile(v, 50))}/{number(percentile(v, 95))}"
                for step, v in f.create_path_seconds.items()
            )
        )
    if f.kube_writes_to_ready:
        lines.append(
            f"  Kubernetes writes from apply to all Ready: {breakdown(f.kube_writes_to_ready)}"
        )
    if f.cpu_to_ready_cores:
        lines.append(
            "  CPU from apply to all Ready (cores): "
            + ", ".join(f"{k} {v:.2f}" for k, v in f.cpu_to_ready_cores.items())
        )
    if f.error:
        lines.append(f"  FAILED: {f.error}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
    }


@dataclass
class Run:
    """A whole run: where and when it ran, with what settings, and every measurement."""

    machine: dict[str, Any]
    date: str
    settings: dict[str, Any]
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    results: list[Figures] = field(default_factory=list)

    @classmethod
    def from_json(cls, path: Path) -> Run:
        document = json.loads(path.read_text())
        document.pop("definitions", None)
        results = [Figures(**figures) for figures in document.pop("results")]
        return cls(**document, results=results)

    def to_json(self, path: Path) -> None:
        document = {**asdict(self), "definitions": ROW_DEFINITIONS}
        for figures in document["results"]:
            for samples in ("apply_to_post_seconds", "status_lag_seconds"):
                # Milliseconds are plenty (the watch's own delivery is coarser), and the
                # file stays small enough to keep next to the figures it backs.
                figures[samples] = [round(value, 3) for value in figures[samples]]
            figures["create_path_seconds"] = {
                step: [round(value, 3) for value in values]
                for step, values in figures["create_path_seconds"].items()
            }
        path.write_text(json.dumps(document, indent=1) + "\n")


def report(run: Run) -> None:
    """The tables, to stdout."""
    info, settings, started, ended = run.machine, run.settings, run.load_start, run.load_end
    print(f"# Fleet bench: together-operator vs per-object polling ({run.date})\n")
    print(
        f"machine: {info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB; "
        f"load average (1/5/15 min) at start {started[0]:.2f} {started[1]:.2f} "
        f"{started[2]:.2f}, at end {ended[0]:.2f} {ended[1]:.2f} {ended[2]:.2f}"
    )
    if started[0] > BUSY_LOAD:
        print(f"NOTE: the machine was busy at start (1-min load {started[0]:.2f} > {BUSY_LOAD})")
    patched = "every poll" if settings["baseline_patch_every_poll"] else "on change"
    print(
        f"simulator speed 1, default poll settings, {settings['threads']} apply threads, "
        f"settle {settings['settle']:.0f}s, steady window {settings['window']:.0f}s, "
        f"baseline timer {settings['baseline_poll']:.0f}s (status patched {patched}); "
        f"operator: {' '.join(settings['operator_command'])}"
        f"{' as a ServiceAccount' if settings.get('as_service_account') else ' as admin'}; "
        f"whole run {run.seconds / 60:.1f} min\n"
    )
    for size in dict.fromkeys(f.size for f in run.results):
        at_size = {f.operator: f for f in run.results if f.size == size}
        print(f"## {size} GPUClusters\n")
        print(table(at_size))
        print()
        for f in at_size.values():
            print(notes(f))
        print()
