"""Container images for the node, built here with buildah (no registry, no Docker engine).

- the operator's image, from the project's ``Dockerfile`` exactly as it is;
- a stand-in for the Dockerfile's base image when that cannot be pulled: Debian's own
  Python, from ``mmdebstrap``, tagged with the ``FROM`` name. Only the stand-in gets the
  machine's CA bundle (pip inside the build must trust an intercepting proxy's CA);
- the pause image, compiled from the ``pause.c`` that ships in the pinned Kubernetes module.

buildah's storage lives in the project's cache (so a warm run reuses the stand-in and the
pause image); its settings are files of our own, pointed at by environment variables, so
the machine's /etc/containers is never changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from together_operator.devenv.toolchain import KUBERNETES_VERSION, cache_root, module_source_dir

ProgressFn = Callable[[str], None]

STAND_IN_LABEL = "together-operator.stand-in"
STAND_IN_SUITE = "bookworm"
#: What the official python:3.x-slim image offers that the build uses: python (as `python`),
#: pip and venv, CA certificates, and useradd/groupadd.
STAND_IN_PACKAGES = (
    "ca-certificates",
    "python3",
    "python3-pip",
    "python3-venv",
    "python-is-python3",
    "passwd",
)
#: The official image's environment; `ENV PATH=...:$PATH` in a Dockerfile expands this PATH.
STAND_IN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PAUSE_REPOSITORY = "registry.k8s.io/pause"

CONTAINERS_CONF = """\
# together-operator's own settings for buildah (NODE.md: runc, not crun, on cgroups v1
# hybrid; containers may only lower their rlimits here).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

REGISTRIES_CONF = """\
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
"""


class ImageError(RuntimeError):
    """An image could not be built; the message has the command and the tail of its log."""


def normalized_name(reference: str) -> str:
    """``python:3.11`` -> ``docker.io/library/python:3.11``, as containerd and buildah name it."""
    name = reference if ":" in reference.rsplit("/", 1)[-1] else f"{reference}:latest"
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def dockerfile_base_images(text: str) -> list[str]:
    """The images a Dockerfile's FROM lines pull (ARG defaults expanded; stages, scratch out)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.upper().startswith("ARG ") and "=" in line:
            name, _, default = line[4:].strip().partition("=")
            args.setdefault(name.strip(), default.strip())
        elif line.upper().startswith("FROM "):
            words = line.split()[1:]
            words = [w for w in words if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), words[0])
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            if image != "scratch" and image not in stages and image not in bases:
                bases.append(image)
    return bases


@dataclass(frozen=True)
class Buildah:
    """buildah with the project's storage and settings; every call logged to ``log_path``."""

    storage: Path
    run_root: Path
    config_dir: Path
    log_path: Path

    @classmethod
    def for_cache(cls, log_path: Path) -> Buildah:
        root = cache_root() / "containers"
        config_dir = root / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "containers.conf").write_text(CONTAINERS_CONF)
        (config_dir / "registries.conf").write_text(REGISTRIES_CONF)
        storage = root / "storage"
        # Run-time state belongs to one storage: a second cache gets a run root of its own.
        digest = hashlib.sha256(str(storage).encode()).hexdigest()[:12]
        run_root = Path(f"/run/together-operator/buildah-{digest}")
        (config_dir / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{storage}"\nrunroot = "{run_root}"\n'
        )
        return cls(storage, run_root, config_dir, log_path)

    def environment(self) -> dict[str, str]:
        return dict(
            os.environ,
            CONTAINERS_CONF=str(self.config_dir / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.config_dir / "storage.conf"),
            CONTAINERS_REGISTRIES_CONF=str(self.config_dir / "registries.conf"),
        )

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 900) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            log.write(f"$ buildah {' '.join(args)}\n")
            log.flush()
            completed = subprocess.run(
                ["buildah", *args],
                cwd=cwd,
                env=self.environment(),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=timeout,
                check=False,
            )
            log.write(completed.stdout)
        if completed.returncode != 0:
            raise ImageError(
                f"`buildah {' '.join(args[:3])} ...` failed (exit {completed.returncode}); "
                f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
            )
        return completed.stdout

    def has_image(self, name: str) -> bool:
        completed = subprocess.run(
            ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", name],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return completed.returncode == 0

    def label(self, image: str, key: str) -> str | None:
        if not self.has_image(image):
            return None
        value = self.run(
            "inspect",
            "--type",
            "image",
            "--format",
            f'{{{{index .OCIv1.Config.Labels "{key}"}}}}',
            image,
        ).strip()
        return value or None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def host_debian_sources(suite: str = STAND_IN_SUITE) -> list[Path]:
    """The machine's own apt source files for ``suite`` (its mirror, whatever it is)."""
    candidates = [Path("/etc/apt/sources.list")]
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    candidates += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    found = []
    for path in candidates:
        try:
            if re.search(rf"\b{suite}\b", path.read_text()):
                found.append(path)
        except (FileNotFoundError, PermissionError):
            continue
    return found


def ensure_stand_in_base(buildah: Buildah, reference: str, progress: ProgressFn) -> None:
    """Make ``reference`` (a FROM name) exist in buildah's storage as a Debian stand-in."""
    name = normalized_name(reference)
    stand_in = buildah.label(name, STAND_IN_LABEL)
    if stand_in is not None:
        progress(
            f"base image {reference}: using the stand-in built from Debian {STAND_IN_SUITE}'s "
            f"packages ({stand_in}), not the official image (no registry reachable here)"
        )
        return
    if buildah.has_image(name):
        progress(f"base image {reference}: found in buildah's storage")
        return
    progress(
        f"base image {reference} cannot be pulled here (no container registry): building a "
        f"stand-in from Debian {STAND_IN_SUITE}'s packages with mmdebstrap (once, about a "
        "minute) and tagging it with that name. The image will run Debian's Python, not the "
        "official image's; the machine's CA bundle is added to the stand-in only."
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="together-stand-in-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(STAND_IN_PACKAGES)}",
            STAND_IN_SUITE,
            str(rootfs),
            *map(str, host_debian_sources()),
        ]
        _run_logged(argv, buildah.log_path, timeout=900)
        container = buildah.run("from", "scratch").strip()
        try:
            buildah.run("add", container, str(rootfs), "/")
            if HOST_CA_BUNDLE.is_file():
                buildah.run("copy", container, str(HOST_CA_BUNDLE), str(HOST_CA_BUNDLE))
            # Debian marks its Python externally managed; the official image does not.
            buildah.run(
                "run",
                "--network=none",
                container,
                "--",
                "sh",
                "-c",
                "rm -f /usr/lib/python3*/EXTERNALLY-MANAGED && rm -rf /var/lib/apt/lists/*",
            )
            config = ["config", "--cmd", "python3"]
            for key, value in STAND_IN_ENV.items():
                config += ["--env", f"{key}={value}"]
            config += ["--label", f"{STAND_IN_LABEL}=debian-{STAND_IN_SUITE}-python3", container]
            buildah.run(*config)
            buildah.run("commit", "--rm", container, name)
        except BaseException:
            subprocess.run(
                ["buildah", "rm", container],
                env=buildah.environment(),
                check=False,
                capture_output=True,
            )
            raise
    progress(f"stand-in base image built in {time.monotonic() - started:.0f}s")


def _run_logged(argv: list[str], log_path: Path, timeout: float) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        completed = subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    if completed.returncode != 0:
        raise ImageError(
            f"`{argv[0]}` failed (exit {completed.returncode}); last lines of {log_path}:\n"
            f"{_tail(log_path)}"
        )


def pause_tag(kubernetes_source: Path) -> str:
    """The pause image's tag the pinned Kubernetes expects (its build/pause/Makefile's TAG)."""
    makefile = (kubernetes_source / "build" / "pause" / "Makefile").read_text()
    match = re.search(r"^TAG\s*\?=\s*(\S+)", makefile, re.MULTILINE)
    if not match:
        raise ImageError("no TAG in build/pause/Makefile of the Kubernetes module")
    return match.group(1)


def ensure_pause_image(buildah: Buildah, progress: ProgressFn) -> str:
    """The pause image, compiled from the pinned Kubernetes' pause.c; returns its name."""
    source = module_source_dir("k8s.io/kubernetes", KUBERNETES_VERSION, buildah.log_path)
    name = f"{PAUSE_REPOSITORY}:{pause_tag(source)}"
    if buildah.has_image(name):
        return name
    progress(f"building {name} from Kubernetes {KUBERNETES_VERSION}'s pause.c (once)")
    with tempfile.TemporaryDirectory(prefix="together-pause-") as scratch:
        binary = Path(scratch) / "pause"
        version = name.rsplit(":", 1)[1]
        _run_logged(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{version}-together",
                "-o",
                str(binary),
                str(source / "build" / "pause" / "linux" / "pause.c"),
            ],
            buildah.log_path,
            timeout=120,
        )
        container = buildah.run("from", "scratch").strip()
        try:
            buildah.run("copy", "--chmod", "0755", container, str(binary), "/pause")
            buildah.run("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container)
            buildah.run("commit", "--rm", container, name)
        except BaseException:
            subprocess.run(
                ["buildah", "rm", container],
                env=buildah.environment(),
                check=False,
                capture_output=True,
            )
            raise
    return name


def build_from_dockerfile(buildah: Buildah, context: Path, name: str) -> None:
    """`buildah bud` of ``context``'s Dockerfile, unchanged. No layer cache: buildah 1.28 with
    --layers cannot bind-mount from a cached builder stage (NODE.md)."""
    buildah.run(
        "bud",
        "--pull=never",
        "--layers=false",
        # RUN steps share the machine's network (pip reaches the package index as the machine
        # does): buildah's default would add a bridge, iptables chains and turn on forwarding.
        "--network=host",
        "-f",
        str(context / "Dockerfile"),
        "-t",
        name,
        str(context),
        cwd=context,
        timeout=1800,
    )


def export_archive(buildah: Buildah, name: str, archive: Path) -> Path:
    """A docker-archive of ``name`` (what `ctr images import` reads)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    buildah.run("push", name, f"docker-archive:{archive}:{name}")
    return archive
