"""Suite-wide fixtures: look-up caches and account ledgers in temporary folders, logging restored
after each test, the anyio backend, and the sandbox over a real loopback socket."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from batch.sandbox import SandboxConfig, running_sandbox
from batch.store import StateStore
from batch.store.backend import DatabaseURL, StateLocation
from tests.postgres import PostgresServer, running_server


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture(autouse=True)
def private_data(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where account ledgers live by default (batch.store.ledgers)."""
    data = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """CLI commands point the root logger at their own stream; later tests must not inherit it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SandboxPool:
    """Sandboxes shared by the session, one per configuration, started on first use."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._urls: dict[SandboxConfig, str] = {}

    def reset(self, config: SandboxConfig) -> str:
        """The shared sandbox of `config`, with no submissions, products, counts or windows."""
        if config not in self._urls:
            self._urls[config] = self._stack.enter_context(running_sandbox(config))
        url = self._urls[config]
        httpx.post(f"{url}/_sandbox/reset").raise_for_status()
        return url


@pytest.fixture(scope="session")
def sandbox_pool() -> Iterator[SandboxPool]:
    with ExitStack() as stack:
        yield SandboxPool(stack)


def _draws_faults(config: SandboxConfig) -> bool:
    """Seeded fault draws go on from where the last test left them: a reset does not rewind."""
    return any(
        getattr(config, spec.name) > 0
        for spec in dataclasses.fields(config)
        if spec.name.endswith("_rate") and spec.name != "rate_limit"
    )


@pytest.fixture
def sandbox_url(request: pytest.FixtureRequest, sandbox_pool: SandboxPool) -> Iterator[str]:
    """The sandbox's base URL, configured by the test module's `SANDBOX` dict, then the test's
    indirect parameter (both SandboxConfig fields). Without faults it is shared by the session
    and reset first (a start and stop costs 0.25 s, a reset 0.05 s); with faults it is the
    test's own, so a seed replays the same faults whatever ran before."""
    options = {**getattr(request.module, "SANDBOX", {}), **getattr(request, "param", {})}
    config = SandboxConfig(**options)
    if _draws_faults(config):
        with running_sandbox(config) as url:
            yield url
    else:
        yield sandbox_pool.reset(config)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/postgres.py)."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """An empty database of its own on the session's PostgreSQL server."""
    return postgres_server.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_at(request: pytest.FixtureRequest, tmp_path: Path) -> StateLocation:
    """Where a store test keeps its state: each such test runs on both backends."""
    if request.param == "sqlite":
        return tmp_path / "s.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return DatabaseURL(server.database())


@pytest.fixture
def state(state_at: StateLocation) -> Iterator[StateStore]:
    """An empty state on each backend, closed after the test."""
    with StateStore(state_at) as store:
        yield store
