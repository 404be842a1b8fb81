"""The library's face: what `import batch` offers, and the one call each CLI command makes.

Each entry point takes one config object and returns a typed result. Each is an `async def`
(`run_async`, `plan_async`, ...) that can be awaited from a running event loop (an async Airflow
or Dagster task, a notebook); the plain name is `asyncio.run` over it, for everyone else.

Signals: `run` and `retry` stop gracefully on SIGINT/SIGTERM/SIGHUP only with `handle_signals=True`
(the CLI passes it). Off by default, so a host process (an Airflow worker) keeps its own
handlers; a host that wants a graceful stop cancels the task instead (what was sent is recorded,
and the next run looks up requests cut off in flight).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

from batch import rerun, runner
from batch.catalog import check_structure
from batch.config import (
    Overrides,
    RunConfig,
    Secret,
    TrackConfig,
    build_run_config,
    build_track_config,
    read_api_key,
    resolve,
)
from batch.embedded import Sandbox
from batch.errors import ConfigError, ExitCode
from batch.follow import tracking
from batch.follow.polling import PollSummary
from batch.joggai.lookup import LookupConfig
from batch.outputs import check_outputs
from batch.preflight import load_preflight_async
from batch.runner import RunSummary
from batch.storage import Location, ObjectURL, parse_location
from batch.validation import Problem
from batch.validation import problems as row_problems

log = logging.getLogger(__name__)
T = TypeVar("T")
NO_KEY = Secret("")  # for what never talks to the API (plan, validate offline)


def configure(
    catalog: str | os.PathLike[str] | Location,
    overrides: Overrides | None = None,
    *,
    sandbox: Sandbox | None = None,
    key_required: bool = True,
    env: Mapping[str, str] | None = None,
) -> RunConfig:
    """One run's settings: built-in defaults < config file < JOGG_BASE_URL < `overrides`.

    The key comes from JOGG_API_KEY or `api.key_file`; with `sandbox`, the embedded sandbox's URL,
    key and rate, and its ledger unless `overrides.state` names one. `key_required=False`: no key
    is an empty key (enough to plan or validate offline)."""
    env = os.environ if env is None else env
    if overrides is not None and not isinstance(overrides, Overrides):
        raise ConfigError(
            f"overrides: takes batch.Overrides(...), not a {type(overrides).__name__} "
            "(Overrides(**that) if it holds option names)"
        )
    given = overrides or Overrides()
    key: Secret | None = None
    if sandbox is not None:
        key = sandbox.api_key
        given = replace(
            given,
            base_url=sandbox.url,
            rate_limit=str(sandbox.rate),
            state=given.state or sandbox.ledger,
        )
    elif not key_required:
        try:
            key = read_api_key(resolve(given, env), env)
        except ConfigError:
            key = NO_KEY
    location = catalog if isinstance(catalog, ObjectURL) else parse_location(_path_of(catalog))
    return build_run_config(location, given, env=env, api_key=key)


def _path_of(file: str | os.PathLike[str], what: str = "catalog") -> str:
    """The path of a catalog or results file (`~` expanded, as a shell does); ConfigError for
    anything else a caller passed (a DataFrame: save it first), which the types do not stop
    at run time."""
    try:
        path = os.fspath(file)
        if not isinstance(path, str):  # bytes: a name to decode first
            raise TypeError
        return os.path.expanduser(path)
    except TypeError:
        raise ConfigError(
            f"the {what} is a {type(file).__name__}, not a file's path or URL: "
            + (
                "save it first (a DataFrame: frame.to_parquet('catalog.parquet')) and pass "
                "that path"
                if what == "catalog"
                else "pass the path of the results file a run wrote"
            )
        ) from None


async def run_async(
    config: RunConfig,
    *,
    wait: float | None = None,
    handle_signals: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """Submits one video per catalog row (`config.dry_run`: plans and writes the bodies instead).

    `wait`: then poll the renders until final, for at most this many seconds; the summary's
    `renders` holds what was seen and its `exit_code` merges both (the run's own code first)."""
    _check_config("run", config, RunConfig)
    _check_seconds("wait", wait)
    summary = await runner.run_async(config, transport=transport, handle_signals=handle_signals)
    return await _then_wait(summary, config, wait, transport)


def run(
    config: RunConfig,
    *,
    wait: float | None = None,
    handle_signals: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """`run_async` on an event loop of its own."""
    return _on_own_loop(
        "run",
        lambda: run_async(config, wait=wait, handle_signals=handle_signals, transport=transport),
    )


async def retry_async(
    config: RunConfig,
    *,
    wait: float | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Runs again the failed, not-attempted, unknown and dry-run planned rows of the results file
    `config.catalog`, and merges their outcomes into `config.results`. `wait` as in `run`."""
    _check_config("retry", config, RunConfig)
    _check_seconds("wait", wait)
    summary = await rerun.rerun_async(config, handle_signals=handle_signals)
    return await _then_wait(summary, config, wait, None)


def retry(
    config: RunConfig, *, wait: float | None = None, handle_signals: bool = False
) -> RunSummary:
    """`retry_async` on an event loop of its own."""
    return _on_own_loop(
        "retry", lambda: retry_async(config, wait=wait, handle_signals=handle_signals)
    )


def _on_own_loop(name: str, start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run` of `start()`; where an event loop already runs (Jupyter, an async web
    app), a ConfigError naming the twin to await, rather than asyncio's RuntimeError (and a
    coroutine never awaited: it is not made)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # none: run one here, outside this block (its errors are not "during" this one)
    else:
        raise ConfigError(
            f"batch.{name}() runs an event loop of its own, and one is running here (a "
            f"notebook?): write `await batch.{name}_async(...)`"
        )
    return asyncio.run(start())


def _check_config(name: str, config: object, kinds: type | tuple[type, ...]) -> None:
    """A ConfigError naming what to pass, for a caller the types did not stop (a notebook): a
    path or a dict where the config goes failed deep in a run as an AttributeError."""
    if not isinstance(config, kinds):
        raise ConfigError(
            f"batch.{name}() takes the config batch.configure(...) returns, not a "
            f"{type(config).__name__}"
        )


def _check_seconds(name: str, value: object) -> None:
    """ConfigError for a number of seconds that is none (`"60"`, -1, nan): a wait of -1 s
    polled nothing and said the renders timed out."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}={value!r}: takes seconds, a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={value!r}: takes seconds, 0 or more")


async def _then_wait(
    summary: RunSummary,
    config: RunConfig,
    wait: float | None,
    transport: httpx.AsyncBaseTransport | None,
) -> RunSummary:
    if wait is None:
        return summary
    # A double charge found in the listing (maybe an old one) leaves tonight's renders to follow.
    if summary.exit_code not in (ExitCode.OK, ExitCode.ROWS_FAILED, ExitCode.DOUBLE_CHARGED):
        log.warning("not polling the renders: the run ended with exit %d", summary.exit_code)
        return summary
    log.info("sending done; polling the renders for up to %.0f s", wait)
    renders = await track_async(config, wait=wait, transport=transport)
    summary.renders = renders
    summary.exit_code = summary.exit_code or int(renders.exit_code)
    runner.write_summary_json(config, summary)  # the run's, written before the wait, said 0
    return summary


async def plan_async(config: RunConfig) -> RunSummary:
    """What `run` would do, counted; sends and writes nothing. Local work only, so it runs in a
    worker thread (the event loop stays free)."""
    return await asyncio.to_thread(plan, config)


def plan(config: RunConfig) -> RunSummary:
    """`plan_async` without a thread: reads the catalog and plans it against the state."""
    _check_config("plan", config, RunConfig)
    check_structure(config.catalog, config.catalog_options)
    return runner.plan_only(config)


@dataclass(frozen=True)
class Validation:
    """Every problem of every row of one catalog."""

    catalog: Location
    problems: list[Problem]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.ROWS_FAILED if self.problems else ExitCode.OK

    def to_json(self) -> dict[str, object]:
        return {
            "catalog": str(self.catalog),
            "problems": [problem._asdict() for problem in self.problems],
            "exit_code": int(self.exit_code),
        }


async def validate_async(
    config: RunConfig, *, online: bool = False, transport: httpx.AsyncBaseTransport | None = None
) -> Validation:
    """Checks every row, sending nothing; raises for what `run` would refuse as a whole (an
    unreadable file, a bad header, an output path it cannot write). `online`: ids and names are
    also checked against the account's look-ups (GET requests only)."""
    _check_config("validate", config, RunConfig)
    preflight = None
    if online:
        lookups = LookupConfig(config.base_url, config.api_key, timeouts=config.timeouts)
        preflight = await load_preflight_async(lookups, transport=transport)

    def check() -> Validation:
        check_outputs(config, create=False)
        found = row_problems(config.catalog, config.catalog_options, preflight)
        return Validation(config.catalog, list(found))

    return await asyncio.to_thread(check)


def validate(
    config: RunConfig, *, online: bool = False, transport: httpx.AsyncBaseTransport | None = None
) -> Validation:
    """`validate_async` on an event loop of its own."""
    return _on_own_loop(
        "validate", lambda: validate_async(config, online=online, transport=transport)
    )


def track_config(
    results: str | os.PathLike[str] | Location | None,
    overrides: Overrides | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> TrackConfig:
    """What `track` polls without a catalog: the state of `overrides.state`, else the ledger of
    the account (which must exist), and the results file to update (a path or a store's URL)."""
    env = os.environ if env is None else env
    location: Location | None
    if results is None or isinstance(results, Path | ObjectURL):
        location = results
    else:
        location = parse_location(_path_of(results, "results file"))
    return build_track_config(location, overrides, env=env)


async def track_async(
    config: TrackConfig | RunConfig,
    *,
    wait: float | None = None,
    timeout: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PollSummary:
    """Polls the final status of every submitted video that is not final yet, into the state and
    the results file: once, or with `wait` until all are final or that many seconds passed.
    `timeout` bounds the one pass the same way (`timed_out`, with the videos `unchecked`)."""
    _check_config("track", config, (TrackConfig, RunConfig))
    _check_seconds("wait", wait)
    _check_seconds("timeout", timeout)
    return await tracking.track_async(
        config.state,
        config.base_url,
        config.api_key,
        wait=wait is not None,
        timeout=wait if wait is not None else timeout,
        results=config.results,
        legacy=config.legacy_state,
        timeouts=config.timeouts,
        transport=transport,
    )


def track(
    config: TrackConfig | RunConfig,
    *,
    wait: float | None = None,
    timeout: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PollSummary:
    """`track_async` on an event loop of its own."""
    return _on_own_loop(
        "track", lambda: track_async(config, wait=wait, timeout=timeout, transport=transport)
    )
