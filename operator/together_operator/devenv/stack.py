"""`together-operator dev up / dev down`: the local stack, in the background.

`dev up` resolves the binaries in the foreground (so a first-time build shows its progress),
then starts a detached *supervisor* process that owns every component and writes the shell
export lines once all of them are ready. The components carry a parent-death signal bound to
the supervisor, so stopping (or killing) the supervisor stops everything it started.

With ``--in-cluster`` the supervisor runs a one-node cluster instead of the bare control
plane, and the operator as a Pod (see incluster.py). What the node changed on the machine is
recorded, so `dev down` undoes it even when the supervisor died without cleaning up.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from together_operator.devenv.controlplane import ControlPlane, free_loopback_port
from together_operator.devenv.kubeconfig import write_private_file
from together_operator.devenv.processes import ManagedProcess, spawn
from together_operator.devenv.toolchain import (
    CONTROL_PLANE_TOOLS,
    KUBECTL,
    asset_environment,
    ensure_binaries,
    resolve_binary,
)

SUPERVISOR_MODULE = "together_operator.devenv.stack"
CRD_NAME = "gpuclusters.compute.together.ai"
ProgressFn = Callable[[str], None]


class DevStackError(RuntimeError):
    """The local stack could not be started or stopped; the message says why."""


def default_state_dir() -> Path:
    """``$TOGETHER_OPERATOR_DEV_DIR`` or ``~/.local/state/together-operator/dev``."""
    override = os.environ.get("TOGETHER_OPERATOR_DEV_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "together-operator" / "dev"


@dataclass(frozen=True)
class StackFiles:
    """The files through which `dev up`, `dev down` and the supervisor talk."""

    root: Path

    @property
    def pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def env(self) -> Path:
        return self.root / "env.sh"

    @property
    def log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def control_plane(self) -> Path:
        return self.root / "control-plane"

    @property
    def node(self) -> Path:
        return self.root / "node"

    @property
    def prepared_images(self) -> Path:
        return self.root / "images" / "prepared.json"


def export_lines(variables: dict[str, str]) -> str:
    """Shell lines that `eval` turns into environment variables."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())


def _supervisor_pid(files: StackFiles) -> int | None:
    """The pid of a live supervisor of this state directory, if any."""
    try:
        pid = int(files.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    # A recycled pid belongs to someone else: only trust a process running our module.
    return pid if SUPERVISOR_MODULE.encode() in cmdline else None


def up(
    state_dir: Path,
    progress: ProgressFn,
    options: StackOptions | None = None,
    timeout: float | None = None,
) -> str:
    """Start the stack (or find it running) and return its export lines."""
    options = options or StackOptions()
    files = StackFiles(state_dir)
    if _supervisor_pid(files) is not None and files.env.exists():
        progress(f"the local stack is already running (state in {state_dir})")
        return files.env.read_text()
    binaries = ensure_binaries(CONTROL_PLANE_TOOLS, progress)
    state_dir.mkdir(parents=True, exist_ok=True)
    files.env.unlink(missing_ok=True)
    if options.in_cluster:
        from together_operator.devenv import incluster

        incluster.prepare(state_dir, progress, with_operator=options.with_operator)
        progress(
            "starting the one-node cluster (etcd, kube-apiserver, kube-controller-manager, "
            "kube-scheduler, CoreDNS, containerd, kubelet, kube-proxy) ..."
        )
    else:
        progress("starting etcd, kube-apiserver, the Together simulator and the operator ...")
    log_offset = files.log.stat().st_size if files.log.exists() else 0
    with files.log.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR_MODULE, str(state_dir), *options.argv()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, **asset_environment(binaries)),
        )
    limit = timeout if timeout is not None else (420.0 if options.in_cluster else 120.0)
    deadline = time.monotonic() + limit
    relay = _LogRelay(files.log, log_offset, progress if options.in_cluster else None)
    while time.monotonic() < deadline:
        relay.poll()
        if files.env.exists():
            progress(
                f"local stack ready (state and logs in {state_dir}); "
                "stop it with `together-operator dev down`"
            )
            return files.env.read_text()
        if supervisor.poll() is not None:
            relay.poll()
            shown = "see above" if relay.progress else f"last lines:\n{_tail(files.log)}"
            raise DevStackError(
                f"the local stack failed to start (exit {supervisor.returncode}); "
                f"its log is {files.log}; {shown}"
            )
        time.sleep(0.2)
    supervisor.terminate()
    try:
        supervisor.wait(timeout=120)
    except subprocess.TimeoutExpired:
        supervisor.kill()
    _undo_node(files, progress)
    raise DevStackError(f"the local stack was not ready after {limit:.0f}s; see {files.log}")


class _LogRelay:
    """Passes the supervisor's new log lines on to ``progress`` (the node's start-up steps)."""

    def __init__(self, path: Path, offset: int, progress: ProgressFn | None) -> None:
        self.path, self.offset, self.progress = path, offset, progress

    def poll(self) -> None:
        if self.progress is None or not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            self.progress(line)


def down(state_dir: Path, progress: ProgressFn, timeout: float = 150.0) -> bool:
    """Stop the stack; returns False when nothing was running."""
    files = StackFiles(state_dir)
    pid = _supervisor_pid(files)
    if pid is None:
        left_behind = _undo_node(files, progress)
        if not left_behind:
            progress(f"no local stack is running (state dir {state_dir})")
        files.env.unlink(missing_ok=True)
        return left_behind
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.1)
    if _running(pid):
        # The components die with the supervisor (parent-death signal).
        os.kill(pid, signal.SIGKILL)
        progress("the supervisor did not stop in time and was killed")
    _undo_node(files, progress)
    files.env.unlink(missing_ok=True)
    files.pid.unlink(missing_ok=True)
    progress("local stack stopped")
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie (reaped here when it is our own child: tests start it so)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _undo_node(files: StackFiles, progress: ProgressFn) -> bool:
    """Undo what a node left on the machine (a supervisor that died cleaned nothing)."""
    from together_operator.devenv.node.cleanup import tear_down
    from together_operator.devenv.node.configs import NodeLayout
    from together_operator.devenv.node.record import NodeRecord

    record = NodeRecord.load(NodeLayout(files.node).record)
    if record is None:
        return False
    progress(f"undoing what the node left on this machine ({record.path})")
    tear_down(record, progress)
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return "(no log written)"


@dataclass(frozen=True)
class StackOptions:
    """Knobs of the local stack (passed to the supervisor on its command line)."""

    speed: float = 1.0
    with_operator: bool = True
    in_cluster: bool = False

    def argv(self) -> list[str]:
        return (
            [f"--speed={self.speed}"]
            + ([] if self.with_operator else ["--no-operator"])
            + (["--in-cluster"] if self.in_cluster else [])
        )

    @classmethod
    def parse(cls, argv: list[str]) -> StackOptions:
        speed = next((float(a.split("=", 1)[1]) for a in argv if a.startswith("--speed=")), 1.0)
        return cls(
            speed=speed,
            with_operator="--no-operator" not in argv,
            in_cluster="--in-cluster" in argv,
        )


DEV_API_KEY = "sim-key"


def _cli(*args: str) -> list[str]:
    """Run our own CLI as a child (by module, so it works from any virtualenv)."""
    return [sys.executable, "-m", "together_operator.cli", *args]


def _wait_http_ok(url: str, process: ManagedProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.running():
            raise DevStackError(
                f"{process.name} exited with code {process.popen.returncode}; last lines of "
                f"{process.log_path}:\n{process.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DevStackError(f"{process.name} did not answer {url} within {timeout:.0f}s")


def _install_crd(kubeconfig: Path, log_dir: Path) -> None:
    """`together-operator crd | kubectl apply -f -` (by command: devenv imports no operator)."""
    crd = subprocess.run(_cli("crd"), capture_output=True, check=True).stdout
    kubectl = resolve_binary(KUBECTL)
    applied = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", "apply", "--server-side", "-f", "-"],
        input=crd,
        capture_output=True,
        check=False,
    )
    (log_dir / "crd-apply.log").write_bytes(applied.stdout + applied.stderr)
    if applied.returncode != 0:
        raise DevStackError(f"installing the GPUCluster CRD failed: {applied.stderr.decode()}")
    if not crd_established(kubectl, kubeconfig):
        raise DevStackError("the GPUCluster CRD was not Established within 60s")


def crd_established(
    kubectl: Path, kubeconfig: Path, name: str = CRD_NAME, timeout: float = 60.0
) -> bool:
    """Wait (bounded) until the CRD ``name`` is Established. Not `kubectl wait`: on a CRD
    the API server has not given conditions yet, it fails at once ("<nil> is of the type
    <nil>") instead of waiting."""
    deadline = time.monotonic() + timeout
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
    while True:
        shown = subprocess.run(
            [
                str(kubectl),
                f"--kubeconfig={kubeconfig}",
                "get",
                f"crd/{name}",
                "-o",
                f"jsonpath={jsonpath}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if shown.returncode == 0 and shown.stdout.strip() == "True":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _start_simulator(
    files: StackFiles, options: StackOptions, tenant: Path, host: str, port: int
) -> tuple[ManagedProcess, str]:
    """The Together simulator, handing out ``tenant`` as every cluster's kubeconfig."""
    base_url = f"http://{host}:{port}"
    simulator = spawn(
        "simulator",
        _cli(
            "simulator",
            f"--host={host}",
            f"--port={port}",
            f"--api-key={DEV_API_KEY}",
            f"--speed={options.speed}",
            f"--state-file={files.root / 'simulator-state.json'}",
            f"--tenant-kubeconfig={tenant}",
        ),
        files.root / "logs" / "simulator.log",
    )
    _wait_http_ok(f"{base_url}/_sim/health", simulator)
    return simulator, base_url


def _start_components(
    plane: ControlPlane, files: StackFiles, options: StackOptions
) -> tuple[list[ManagedProcess], dict[str, str]]:
    logs = files.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _install_crd(plane.kubeconfig, logs)
    # The simulator hands out a kubeconfig for this very control plane, so the Secret the
    # operator writes is one that really works.
    tenant = plane.mint_user("tenant-admin", ["system:masters"], name="tenant")
    simulator, base_url = _start_simulator(
        files, options, tenant, "127.0.0.1", free_loopback_port()
    )
    components = [simulator]
    variables = {
        "KUBECONFIG": str(plane.kubeconfig),
        "TOGETHER_BASE_URL": base_url,
        "TOGETHER_API_KEY": DEV_API_KEY,
    }
    if options.with_operator:
        liveness = free_loopback_port()
        operator = spawn(
            "operator",
            _cli(
                "run",
                f"--liveness-port={liveness}",
                "--fast-poll-seconds=2",
                "--slow-poll-seconds=15",
                # The only operator of a disposable control plane: no Lease to share.
                "--no-leader-election",
            ),
            logs / "operator.log",
            env={**os.environ, **variables},
        )
        components.append(operator)
        _wait_http_ok(f"http://127.0.0.1:{liveness}/healthz", operator)
    return components, variables


def supervise(state_dir: Path, options: StackOptions) -> None:
    """Run every component until SIGTERM / SIGINT, then stop them in reverse order."""
    files = StackFiles(state_dir)
    write_private_file(files.pid, f"{os.getpid()}\n".encode())
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Each `dev up` starts from an empty etcd and an empty Together: a dev stack is disposable.
    shutil.rmtree(files.control_plane, ignore_errors=True)
    (files.root / "simulator-state.json").unlink(missing_ok=True)
    components: list[ManagedProcess] = []
    stop_cluster: Callable[[], None] | None = None
    try:
        if options.in_cluster:
            from together_operator.devenv import incluster

            node, components, variables = incluster.start(files, options, _start_simulator)
            stop_cluster = lambda: node.stop(_announce)  # noqa: E731
        else:
            control_plane = ControlPlane.start(files.control_plane)
            stop_cluster = control_plane.stop
            print(f"kube-apiserver {control_plane.server}", flush=True)
            components, variables = _start_components(control_plane, files, options)
        write_private_file(files.env, export_lines(variables).encode())
        print(f"ready: Together simulator {variables['TOGETHER_BASE_URL']}", flush=True)
        while not stopping:
            time.sleep(0.5)  # a signal interrupts the sleep; the flag is re-checked
            for component in components:
                if not component.running():
                    print(f"{component.name} exited; see {component.log_path}", flush=True)
                    stopping = True
    finally:
        files.env.unlink(missing_ok=True)
        for component in reversed(components):
            component.stop()
        if stop_cluster is not None:
            stop_cluster()
        files.pid.unlink(missing_ok=True)
        print("stopped", flush=True)


def _announce(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    supervise(Path(sys.argv[1]), StackOptions.parse(sys.argv[2:]))
