"""`together-operator dev up / dev down`: the local stack, in the background.

`dev up` resolves the binaries in the foreground (so a first-time build shows its progress),
then starts a detached *supervisor* process that owns every component and writes the shell
export lines once all of them are ready. The components carry a parent-death signal bound to
the supervisor, so stopping (or killing) the supervisor stops everything it started.
"""

from __future__ import annotations

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

from together_operator.devenv.controlplane import ControlPlane
from together_operator.devenv.kubeconfig import write_private_file
from together_operator.devenv.toolchain import (
    CONTROL_PLANE_TOOLS,
    asset_environment,
    ensure_binaries,
)

SUPERVISOR_MODULE = "together_operator.devenv.stack"
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


def up(state_dir: Path, progress: ProgressFn, timeout: float = 120.0) -> str:
    """Start the stack (or find it running) and return its export lines."""
    files = StackFiles(state_dir)
    if _supervisor_pid(files) is not None and files.env.exists():
        progress(f"the local stack is already running (state in {state_dir})")
        return files.env.read_text()
    binaries = ensure_binaries(CONTROL_PLANE_TOOLS, progress)
    state_dir.mkdir(parents=True, exist_ok=True)
    files.env.unlink(missing_ok=True)
    progress("starting etcd and kube-apiserver on 127.0.0.1 ...")
    with files.log.open("ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR_MODULE, str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, **asset_environment(binaries)),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if files.env.exists():
            progress(
                f"local stack ready (state and logs in {state_dir}); "
                "stop it with `together-operator dev down`"
            )
            return files.env.read_text()
        if supervisor.poll() is not None:
            raise DevStackError(
                f"the local stack failed to start (exit {supervisor.returncode}); "
                f"last lines of {files.log}:\n{_tail(files.log)}"
            )
        time.sleep(0.2)
    supervisor.kill()
    raise DevStackError(f"the local stack was not ready after {timeout:.0f}s; see {files.log}")


def down(state_dir: Path, progress: ProgressFn, timeout: float = 30.0) -> bool:
    """Stop the stack; returns False when nothing was running."""
    files = StackFiles(state_dir)
    pid = _supervisor_pid(files)
    if pid is None:
        progress(f"no local stack is running (state dir {state_dir})")
        files.env.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        # The components die with the supervisor (parent-death signal).
        os.kill(pid, signal.SIGKILL)
        progress("the supervisor did not stop in time and was killed")
    files.env.unlink(missing_ok=True)
    files.pid.unlink(missing_ok=True)
    progress("local stack stopped")
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def supervise(state_dir: Path) -> None:
    """Run every component until SIGTERM / SIGINT, then stop them in reverse order."""
    files = StackFiles(state_dir)
    write_private_file(files.pid, f"{os.getpid()}\n".encode())
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # Each `dev up` starts from an empty etcd: a dev stack is disposable.
    shutil.rmtree(files.control_plane, ignore_errors=True)
    try:
        control_plane = ControlPlane.start(files.control_plane)
    except BaseException:
        files.pid.unlink(missing_ok=True)
        raise
    try:
        variables = {"KUBECONFIG": str(control_plane.kubeconfig)}
        write_private_file(files.env, export_lines(variables).encode())
        print(f"ready: kube-apiserver {control_plane.server}", flush=True)
        while not stopping:
            time.sleep(0.5)  # a signal interrupts the sleep; the flag is re-checked
    finally:
        files.env.unlink(missing_ok=True)
        control_plane.stop()
        files.pid.unlink(missing_ok=True)
        print("stopped", flush=True)


if __name__ == "__main__":
    supervise(Path(sys.argv[1]))
