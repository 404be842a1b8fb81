"""`jogg-batch status`: final render status of every submitted video, into state and results."""

from __future__ import annotations

from pathlib import Path

import click

from batch import tracking
from batch.cli.common import logging_options, reports_errors
from batch.config import load_settings, parse_duration, read_api_key
from batch.errors import StateError
from batch.ledgers import choose_state


@click.command()
@click.argument("results", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--state",
    type=click.Path(path_type=Path, dir_okay=False),
    help="State database (default: the account's ledger).",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--base-url", envvar="JOGG_BASE_URL", help="API base URL.")
@click.option("--wait", is_flag=True, help="Keep polling until every video is final.")
@click.option(
    "--timeout", default="30m", show_default=True, help="With --wait: give up after this."
)
@logging_options
@reports_errors
def status(
    results: Path | None,
    state: Path | None,
    config_path: Path | None,
    base_url: str | None,
    wait: bool,
    timeout: str,
) -> None:
    """Poll GET /v2/product_video/{id} for submitted videos that are not final yet.

    Exit codes: 0 all completed, 1 some renders failed, 5 --wait timed out, 2 usage error.
    """
    if results is None and state is None:
        raise click.UsageError("give a RESULTS file or --state")
    if results is not None and not results.is_file():
        raise StateError(f"{results}: no such results file; check the path")
    if state is not None and not state.is_file():
        raise StateError(f"{state}: no state database here; check the path")
    settings = load_settings(config_path, {"api.base_url": base_url})
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from None
    key = read_api_key(settings)
    chosen = choose_state(state, results, settings.api.base_url, key.reveal())
    if not chosen.path.is_file() and chosen.legacy is None:
        raise StateError(
            f"no ledger of this account at {chosen.path}: nothing was run with this key and "
            "base URL on this machine; pass --state PATH for a state kept elsewhere"
        )
    summary = tracking.track(
        chosen.path,
        settings.api.base_url.rstrip("/"),
        key,
        legacy=chosen.legacy,
        wait=wait,
        timeout=seconds,
        results=results,
    )
    click.echo(
        f"completed {summary.completed}   failed {summary.failed}   still rendering "
        f"{summary.processing}" + ("   (timed out)" if summary.timed_out else ""),
        err=True,
    )
    raise SystemExit(int(summary.exit_code))
