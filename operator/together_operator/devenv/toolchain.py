"""Find or build the control-plane binaries (etcd, kube-apiserver, kubectl).

Resolution order, first hit wins:
  1. explicit paths: ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_APISERVER``), then
     ``$KUBEBUILDER_ASSETS/<name>`` (the envtest conventions);
  2. ``PATH``;
  3. the project's cache, ``~/.cache/together-operator/`` (or ``$TOGETHER_OPERATOR_CACHE``);
  4. built once from the Go module proxy with the machine's ``go``, then cached;
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"

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

CONTROL_PLANE_TOOLS = (ETCD, KUBE_APISERVER, KUBECTL)


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
    """Resolve every tool, building what is missing; returns name -> path."""
    return {tool.name: resolve_binary(tool, progress) for tool in tools}


def asset_environment(binaries: dict[str, Path]) -> dict[str, str]:
    """``TEST_ASSET_*`` variables that make a child process use exactly these binaries."""
    by_name = {tool.name: tool for tool in (*CONTROL_PLANE_TOOLS, HELM)}
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


def build_and_cache(
    tool: GoTool,
    progress: ProgressFn,
    builder: Callable[[GoTool, Path, Path], None] | None = None,
) -> Path:
    """Build ``tool`` into the cache, safely when several processes race.

    One process builds under an exclusive lock; the others wait on the lock and then find
    the finished binary. The binary is written to a temporary name in the same directory and
    renamed into place, so the cache slot is either absent or complete, never half-written.
    """
    target = cached_binary_path(tool)
    with _exclusive_lock(cache_root() / "locks" / f"{tool.name}-{tool.version}.lock"):
        if _is_executable(target):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        log_path = cache_root() / "logs" / f"build-{tool.name}-{tool.version}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        progress(
            f"building {tool.name} {tool.version} from the Go module proxy "
            f"(once; cached in {target.parent}); log: {log_path}"
        )
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as scratch:
            partial = Path(scratch) / tool.name
            (builder or _go_build)(tool, partial, log_path)
            if not _is_executable(partial):
                raise ToolchainError(f"building {tool.name} produced no binary; see {log_path}")
            os.replace(partial, target)
        progress(f"built {tool.name} -> {target}")
        return target


def _go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolchainError(
            "etcd / kube-apiserver / kubectl were not found (TEST_ASSET_*, KUBEBUILDER_ASSETS, "
            f"PATH, {cache_root() / 'bin'}) and there is no `go` to build them. Install Go "
            "1.24+ (https://go.dev/dl) or point KUBEBUILDER_ASSETS at a directory holding "
            "etcd, kube-apiserver and kubectl (e.g. from `setup-envtest use`)."
        )
    return go


def _run_go(args: list[str], cwd: Path, log_path: Path) -> str:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOWORK="off")
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


def _go_build(tool: GoTool, output: Path, log_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"build-{tool.name}-") as workdir_name:
        workdir = Path(workdir_name)
        replacements: dict[str, str] = {}
        if tool.replace_kubernetes_staging:
            info = json.loads(
                _run_go(
                    ["mod", "download", "-json", f"{tool.module}@{tool.version}"], workdir, log_path
                )
            )
            replacements = kubernetes_staging_replacements(
                Path(info["GoMod"]).read_text(), tool.version
            )
        (workdir / "go.mod").write_text(wrapper_gomod(tool, replacements))
        # A build-tagged import makes `go mod tidy` resolve the package's whole graph.
        (workdir / "tools.go").write_text(
            f'//go:build tools\n\npackage tools\n\nimport _ "{tool.package}"\n'
        )
        _run_go(["mod", "tidy"], workdir, log_path)
        ldflags = " ".join(f"-X {name}={value}" for name, value in tool.version_variables)
        _run_go(
            ["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(output), tool.package],
            workdir,
            log_path,
        )
