"""Child processes that cannot outlive their parent.

Each child runs in its own process group (so a terminal's Ctrl-C reaches the parent, which
then stops the children in order) and carries a parent-death signal: if the parent dies,
even by SIGKILL, the kernel sends the child SIGKILL. PR_SET_PDEATHSIG follows the *thread*
that forked the child, so children must be spawned from a long-lived thread (the main one).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(0)

    return preexec


@dataclass
class ManagedProcess:
    """A running child with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            content = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "".join(content.splitlines(keepends=True)[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; waits for the exit."""
        if not self.running():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


def spawn(
    name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """Start ``argv`` with stdout and stderr going to ``log_path``; it dies with us."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)
