"""Running the simulator: in the foreground (the CLI), or in a background thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web

from together_operator.simulator.app import build_app
from together_operator.simulator.catalog import Catalog
from together_operator.simulator.clock import Clock, SystemClock
from together_operator.simulator.faults import Faults
from together_operator.simulator.lifecycle import Timings
from together_operator.simulator.state import CloudState

logger = logging.getLogger(__name__)

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8090
DEFAULT_API_KEY: Final = "sim-key"
_STARTUP_TIMEOUT_SECONDS: Final = 10.0


@dataclass
class SimulatorConfig:
    """Everything the simulator is started with."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    speed: float = 1.0
    state_file: Path | None = None
    tenant_kubeconfig: Path | None = None
    faults: Faults = field(default_factory=Faults)
    catalog: Catalog = field(default_factory=Catalog)
    # How IDs are made (random UUIDs); a test may count instead, to be repeatable.
    new_id: Callable[[], str] = field(default=lambda: str(uuid.uuid4()))
    #: API key -> account: a key sees only its account's clusters (unnamed keys share one).
    accounts: dict[str, str] = field(default_factory=dict)
    #: "account" (every project of the key's account) or "default-project" (an unfiltered
    #: List shows only the key's default project): see the deviations.
    list_scope: str = "account"


def build_simulator_app(config: SimulatorConfig, clock: Clock | None = None) -> web.Application:
    """The application for `config`, its state loaded from the state file if there is one."""
    if config.speed <= 0:
        raise ValueError(f"--speed must be positive (got {config.speed})")
    tenant_kubeconfig = (
        config.tenant_kubeconfig.read_text() if config.tenant_kubeconfig is not None else None
    )
    state = CloudState(
        catalog=config.catalog,
        clock=clock or SystemClock(),
        timings=Timings(speed=config.speed),
        state_file=config.state_file,
        tenant_kubeconfig=tenant_kubeconfig,
        new_id=config.new_id,
        list_scope=config.list_scope,
    )
    return build_app(
        state=state, faults=config.faults, api_keys=config.api_keys, accounts=config.accounts
    )


def run(config: SimulatorConfig, announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted."""
    app = build_simulator_app(config)
    url = f"http://{config.host}:{config.port}"
    timings = Timings(speed=config.speed)
    announce(
        f"Together API simulator on {url} (API under /v1, admin under /_sim/); "
        f"create to Ready takes {timings.create_to_ready / config.speed:.1f}s"
    )
    web.run_app(app, host=config.host, port=config.port, access_log=None, print=None)


@dataclass
class RunningSimulator:
    """A simulator serving in a background thread."""

    base_url: str
    stop: Callable[[], None]

    @property
    def admin_url(self) -> str:
        """Where the admin API is: `{base_url}/_sim`."""
        return f"{self.base_url}/_sim"


def start_in_thread(
    config: SimulatorConfig | None = None, *, clock: Clock | None = None
) -> RunningSimulator:
    """Serve the simulator on a free loopback port in a daemon thread.

    `config.host` and `config.port` are ignored: it always binds 127.0.0.1 on a port the
    kernel picks. Returns its base URL (the host, without `/v1`) and a `stop` function.
    """
    app = build_simulator_app(config or SimulatorConfig(), clock)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    bound: list[str] = []
    failure: list[BaseException] = []

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, DEFAULT_HOST, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        bound.append(f"http://{host}:{port}")

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as error:
            failure.append(error)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="together-simulator", daemon=True)
    thread.start()
    if not ready.wait(_STARTUP_TIMEOUT_SECONDS) or failure:
        raise RuntimeError("the simulator did not start") from (failure[0] if failure else None)

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STARTUP_TIMEOUT_SECONDS)

    return RunningSimulator(base_url=bound[0], stop=stop)


def start_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The API keys to accept: those given, or the default `sim-key`."""
    return tuple(keys) or (DEFAULT_API_KEY,)
