"""`jogg-batch state`: what the account's ledger holds, and keeping it small."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from batch import logs
from batch.cli.common import STATE, config_option, emit, logging_options, reports_errors
from batch.config import Overrides, ledger_location
from batch.store import StateStore
from batch.store.backend import StateLocation

P = ParamSpec("P")
R = TypeVar("R")


def _ledger(state: StateLocation | None, config_path: Path | None) -> StateLocation:
    return ledger_location(Overrides(config_path=config_path, state=state))


def _ledger_options(command: Callable[P, R]) -> Callable[P, R]:
    for option in (
        click.option(
            "--state",
            type=STATE,
            help="State database (default: JOGG_STATE_URL, else run.state, else the ledger of the "
            "account behind JOGG_API_KEY).",
        ),
        config_option,
    ):
        command = option(command)
    return command


@click.group()
def state() -> None:
    """The account's ledger: `info`, `prune --keep-runs N`, `vacuum`.

    Example: jogg-batch state info
    """


@state.command()
@_ledger_options
@logging_options
@reports_errors
def info(state: StateLocation | None, config_path: Path | None) -> None:
    """Where the ledger is, its size, runs, and jobs by status.

    \b
    Example:
      jogg-batch state info --state nightly.db
    """
    path = _ledger(state, config_path)
    with StateStore(path) as store:
        facts = store.info()
    emit(
        "\n".join(
            [
                f"ledger          {path}",
                f"size            {facts.bytes_on_disk / 1e6:.1f} MB",
                f"runs kept       {facts.runs}  ({facts.row_outcomes} row outcomes)",
                f"attempts        {facts.attempts}",
                *(f"jobs {status:<10} {count}" for status, count in facts.jobs_by_status.items()),
                f"listed videos   {facts.listed_videos}",
                f"double charges  {facts.double_charges}",
            ]
        )
    )


@state.command()
@click.option("--keep-runs", type=click.IntRange(1), required=True, help="Runs to keep.")
@_ledger_options
@logging_options
@reports_errors
def prune(keep_runs: int, state: StateLocation | None, config_path: Path | None) -> None:
    """Forget the row outcomes of all but the newest runs (jobs and attempts stay forever).

    \b
    Example:
      jogg-batch state prune --keep-runs 7
    """
    with StateStore(_ledger(state, config_path)) as store:
        store.lock()
        pruned = store.prune(keep_runs)
    logs.say(f"pruned {pruned} run(s)", event="summary")


@state.command()
@_ledger_options
@logging_options
@reports_errors
def vacuum(state: StateLocation | None, config_path: Path | None) -> None:
    """Give freed space back to the disk (rewrites the file; slow for a big ledger).

    \b
    Example:
      jogg-batch state vacuum
    """
    path = _ledger(state, config_path)
    with StateStore(path) as store:
        store.lock()
        store.vacuum()
    logs.say(f"vacuumed {path}", event="summary")
