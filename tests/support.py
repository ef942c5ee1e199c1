"""Helpers shared by the tests: the cluster protocol, API clients, bounded waiting."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")


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
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


async def wait_for_async(
    condition: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    timeout: float,  # noqa: ASYNC109 - the same bounded-wait contract as wait_for()
    interval: float = 0.005,
    what: str,
) -> T:
    """:func:`wait_for` inside an event loop: the loop keeps running between checks, and
    ``condition`` may be a coroutine function (one that acts, then checks)."""
    deadline = time.monotonic() + timeout
    while True:
        checked = condition()
        result = await checked if inspect.isawaitable(checked) else checked
        if result:
            return cast(T, result)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


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
