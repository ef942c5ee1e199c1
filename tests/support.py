"""Helpers shared by the tests: the cluster protocol, API clients, bounded waiting."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class KubeTarget(Protocol):
    """What the tests need of a cluster: an admin kubeconfig and a way to mint users."""

    kubeconfig: Path

    def mint_user(
        self, user: str, groups: Sequence[str] = (), *, name: str | None = None
    ) -> Path: ...


def api_client(kubeconfig: Path) -> Any:
    """A kubernetes ApiClient for ``kubeconfig``."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def wait_for(
    condition: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pids_whose_cmdline_contains(fragment: str) -> list[int]:
    """Live processes whose command line mentions ``fragment`` (a unique temp path, say)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if fragment.encode() in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def child_pids(parent: int) -> list[int]:
    """Live direct children of ``parent``."""
    children = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().split(") ", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children.append(int(proc.name))
    return children


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def async_test(
    seconds: float,
) -> Callable[[Callable[P, Coroutine[Any, Any, None]]], Callable[P, None]]:
    """Run an async test body in a fresh event loop, bounded by ``seconds``."""

    def decorate(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
        @functools.wraps(test)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            asyncio.run(asyncio.wait_for(test(*args, **kwargs), seconds))

        return run

    return decorate
