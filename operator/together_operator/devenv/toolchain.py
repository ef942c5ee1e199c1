"""Find or build the Kubernetes binaries: the control plane (etcd, kube-apiserver, kubectl),
helm, and the node (kubelet, kube-controller-manager, kube-scheduler, kube-proxy, CoreDNS).

Resolution order, first hit wins:
  1. explicit paths: ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER``), then
     ``$KUBEBUILDER_ASSETS/<name>`` (the envtest conventions);
  2. ``PATH``;
  3. the project's cache, ``~/.cache/together-operator/`` (or ``$TOGETHER_OPERATOR_CACHE``);
  4. built once from the Go module proxy with the machine's ``go``, then cached; tools of one
     module (the Kubernetes binaries) build together in one ``go build``, which schedules
     their packages over every core, and different modules build side by side;
  5. otherwise a :class:`ToolchainError` that says what to install.

Versions are pinned here and nowhere else.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
COREDNS_VERSION = "v1.14.7"

ProgressFn = Callable[[str], None]


class ToolchainError(RuntimeError):
    """A binary could not be found or built; the message says what to install."""


@dataclass(frozen=True)
class GoTool:
    """A binary that can be built from a Go module at a pinned version."""

    name: str
    module: str
    version: str
    package: str
    # k8s.io/kubernetes points its staging modules at ./staging, which `go build` of a
    # dependency cannot follow; those get replaced by their published v0.X.Y twins.
    replace_kubernetes_staging: bool = False
    #: -X settings so that the binary reports its real version (e.g. in `/version`).
    version_variables: tuple[tuple[str, str], ...] = ()

    @property
    def env_var(self) -> str:
        return "TEST_ASSET_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


def _kubernetes_tool(name: str) -> GoTool:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    variables = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    return GoTool(
        name=name,
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        package=f"k8s.io/kubernetes/cmd/{name}",
        replace_kubernetes_staging=True,
        version_variables=tuple(
            (f"{package}.{key}", value)
            for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
            for key, value in variables.items()
        ),
    )


ETCD = GoTool("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, "go.etcd.io/etcd/server/v3")
KUBE_APISERVER = _kubernetes_tool("kube-apiserver")
KUBECTL = _kubernetes_tool("kubectl")
HELM = GoTool("helm", "helm.sh/helm/v3", HELM_VERSION, "helm.sh/helm/v3/cmd/helm")
KUBELET = _kubernetes_tool("kubelet")
KUBE_CONTROLLER_MANAGER = _kubernetes_tool("kube-controller-manager")
KUBE_SCHEDULER = _kubernetes_tool("kube-scheduler")
KUBE_PROXY = _kubernetes_tool("kube-proxy")
COREDNS = GoTool(
    "coredns",
    "github.com/coredns/coredns",
    COREDNS_VERSION,
    "github.com/coredns/coredns",
    version_variables=(("github.com/coredns/coredns/coremain.GitCommit", COREDNS_VERSION),),
)

CONTROL_PLANE_TOOLS = (ETCD, KUBE_APISERVER, KUBECTL)
#: What a one-node cluster adds to the control plane (`dev up --in-cluster`, the e2e tier).
NODE_TOOLS = (KUBELET, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBE_PROXY, COREDNS)
ALL_TOOLS = (*CONTROL_PLANE_TOOLS, HELM, *NODE_TOOLS)


def cache_root() -> Path:
    """Where built binaries live: ``$TOGETHER_OPERATOR_CACHE`` or ``~/.cache/together-operator``."""
    override = os.environ.get("TOGETHER_OPERATOR_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "together-operator"


def cached_binary_path(tool: GoTool) -> Path:
    """The cache slot of one tool at its pinned version."""
    return cache_root() / "bin" / f"{tool.name}-{tool.version}" / tool.name


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_binary(tool: GoTool) -> Path | None:
    """Steps 1-3 of the resolution order; None when the tool must be built."""
    explicit = os.environ.get(tool.env_var)
    if explicit:
        path = Path(explicit)
        if not _is_executable(path):
            raise ToolchainError(
                f"{tool.env_var}={explicit} is not an executable file; "
                f"point it at a {tool.name} binary or unset it"
            )
        return path
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and _is_executable(Path(assets) / tool.name):
        return Path(assets) / tool.name
    on_path = shutil.which(tool.name)
    if on_path:
        return Path(on_path)
    cached = cached_binary_path(tool)
    if _is_executable(cached):
        return cached
    return None


def resolve_binary(tool: GoTool, progress: ProgressFn | None = None) -> Path:
    """Find ``tool`` or build it from the Go module proxy (steps 1-5)."""
    found = find_binary(tool)
    if found is not None:
        return found
    return build_and_cache(tool, progress or _stderr)


def ensure_binaries(
    tools: tuple[GoTool, ...] = CONTROL_PLANE_TOOLS, progress: ProgressFn | None = None
) -> dict[str, Path]:
    """Resolve every tool, building what is missing; returns name -> path.

    Missing tools of one module at one version build together (one ``go build`` of several
    packages shares the dependency graph); up to two such groups build at the same time, so
    one group's downloads and link steps overlap the other's compiling.
    """
    report = progress or _stderr
    found = {tool.name: find_binary(tool) for tool in tools}
    groups: dict[tuple[str, str], list[GoTool]] = {}
    for tool in tools:
        if found[tool.name] is None:
            groups.setdefault((tool.module, tool.version), []).append(tool)
    if groups:
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(build_group_and_cache, tuple(g), report) for g in groups.values()]
            for job in jobs:
                found.update(job.result())
    return {tool.name: path for tool in tools if (path := found[tool.name]) is not None}


def asset_environment(binaries: dict[str, Path]) -> dict[str, str]:
    """``TEST_ASSET_*`` variables that make a child process use exactly these binaries."""
    by_name = {tool.name: tool for tool in ALL_TOOLS}
    return {by_name[name].env_var: str(path) for name, path in binaries.items()}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


GroupBuilder = Callable[[tuple[GoTool, ...], Path, Path], None]


def build_and_cache(
    tool: GoTool,
    progress: ProgressFn,
    builder: Callable[[GoTool, Path, Path], None] | None = None,
) -> Path:
    """Build one ``tool`` into the cache (see :func:`build_group_and_cache`)."""

    def build_one(tools: tuple[GoTool, ...], outdir: Path, log_path: Path) -> None:
        (builder or _go_build_one)(tools[0], outdir / tools[0].name, log_path)

    return build_group_and_cache((tool,), progress, build_one)[tool.name]


def _go_build_one(tool: GoTool, output: Path, log_path: Path) -> None:
    _go_build((tool,), output.parent, log_path)


def build_group_and_cache(
    tools: tuple[GoTool, ...], progress: ProgressFn, builder: GroupBuilder | None = None
) -> dict[str, Path]:
    """Build ``tools`` (one module, one version) into the cache, safely when processes race.

    One process builds under exclusive locks (taken in name order, so two groups that share
    a tool cannot deadlock); the others wait and then find the finished binaries. Binaries
    are built into a scratch directory beside their slots and renamed into place, so a
    cache slot is either absent or complete, never half-written.
    """
    with ExitStack() as locks:
        for tool in sorted(tools, key=lambda t: t.name):
            locks.enter_context(
                _exclusive_lock(cache_root() / "locks" / f"{tool.name}-{tool.version}.lock")
            )
        done = {
            t.name: cached_binary_path(t) for t in tools if _is_executable(cached_binary_path(t))
        }
        missing = tuple(t for t in tools if t.name not in done)
        if not missing:
            return done
        names = ", ".join(t.name for t in missing)
        version = missing[0].version
        slug = "-".join(t.name for t in missing)
        log_path = cache_root() / "logs" / f"build-{slug}-{version}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Beside the first slot: the same filesystem, so the renames below are atomic.
        scratch_parent = cached_binary_path(missing[0]).parent
        scratch_parent.mkdir(parents=True, exist_ok=True)
        progress(
            f"building {names} {version} from the Go module proxy "
            f"(once; cached in {cache_root() / 'bin'}); log: {log_path}"
        )
        with tempfile.TemporaryDirectory(dir=scratch_parent, prefix=".build-") as scratch:
            (builder or _go_build)(missing, Path(scratch), log_path)
            for tool in missing:
                partial = Path(scratch) / tool.name
                if not _is_executable(partial):
                    raise ToolchainError(f"building {tool.name} produced no binary; see {log_path}")
                target = cached_binary_path(tool)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, target)
                done[tool.name] = target
        progress(f"built {names} -> {cache_root() / 'bin'}")
        return done


def _go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolchainError(
            "etcd / kube-apiserver / kubectl (or another Kubernetes binary) were not found "
            f"(TEST_ASSET_*, KUBEBUILDER_ASSETS, PATH, {cache_root() / 'bin'}) and there is no "
            "`go` to build them. Install Go 1.24+ (https://go.dev/dl) or point "
            "KUBEBUILDER_ASSETS at a directory holding etcd, kube-apiserver and kubectl (e.g. "
            "from `setup-envtest use`) and the node binaries."
        )
    return go


def _run_go(args: list[str], cwd: Path, log_path: Path) -> str:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOWORK="off")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"$ go {' '.join(args)}\n")
        log.flush()
        completed = subprocess.run(
            [_go_executable(), *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=False,
        )
        log.write(completed.stdout)
    if completed.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise ToolchainError(f"`go {args[0]}` failed (exit {completed.returncode}):\n{tail}")
    return completed.stdout


def kubernetes_staging_replacements(kubernetes_gomod: str, version: str) -> dict[str, str]:
    """Map each staging module that k8s.io/kubernetes replaces with ``./staging/...``
    to its published ``v0.X.Y`` twin (kubernetes v1.X.Y publishes staging at v0.X.Y)."""
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not match:
        raise ToolchainError(f"unexpected Kubernetes version {version!r}; expected v1.X.Y")
    twin = f"v0.{match.group(1)}.{match.group(2)}"
    staged = re.findall(r"^\s*(\S+)\s+=>\s+\./staging/\S+\s*$", kubernetes_gomod, re.MULTILINE)
    return dict.fromkeys(staged, twin)


def wrapper_gomod(tool: GoTool, replacements: dict[str, str]) -> str:
    """go.mod of the throw-away module that builds ``tool``."""
    lines = ["module together-operator.local/toolbuild", "", "go 1.24", ""]
    lines.append(f"require {tool.module} {tool.version}")
    if replacements:
        lines += ["", "replace ("]
        lines += [f"\t{module} => {module} {version}" for module, version in replacements.items()]
        lines.append(")")
    return "\n".join(lines) + "\n"


def _download_module(module: str, version: str, log_path: Path) -> dict[str, str]:
    """``go mod download -json``: where the module's source and go.mod are in the cache."""
    with tempfile.TemporaryDirectory(prefix="module-download-") as workdir:
        info: dict[str, str] = json.loads(
            _run_go(["mod", "download", "-json", f"{module}@{version}"], Path(workdir), log_path)
        )
    return info


def module_source_dir(module: str, version: str, log_path: Path) -> Path:
    """Download ``module@version`` into the Go module cache; the directory of its source."""
    return Path(_download_module(module, version, log_path)["Dir"])


def _go_build(tools: tuple[GoTool, ...], outdir: Path, log_path: Path) -> None:
    """One wrapper module requiring the tools' module; one ``go build`` of all their packages."""
    first = tools[0]
    with tempfile.TemporaryDirectory(prefix=f"build-{first.name}-") as workdir_name:
        workdir = Path(workdir_name)
        replacements: dict[str, str] = {}
        if first.replace_kubernetes_staging:
            gomod = Path(_download_module(first.module, first.version, log_path)["GoMod"])
            replacements = kubernetes_staging_replacements(gomod.read_text(), first.version)
        (workdir / "go.mod").write_text(wrapper_gomod(first, replacements))
        # Build-tagged imports make `go mod tidy` resolve every package's whole graph.
        imports = "".join(f'import _ "{tool.package}"\n' for tool in tools)
        (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\n{imports}")
        _run_go(["mod", "tidy"], workdir, log_path)
        ldflags = " ".join(f"-X {name}={value}" for name, value in first.version_variables)
        packages = [tool.package for tool in tools]
        # With one package `-o` names the file; with several, a directory ending in a slash.
        output = str(outdir / first.name) if len(tools) == 1 else f"{outdir}/"
        _run_go(
            ["build", "-trimpath", f"-ldflags={ldflags}", "-o", output, *packages],
            workdir,
            log_path,
        )
