"""`jogg-batch status`: final render status of every submitted video, into state and results."""

from __future__ import annotations

from pathlib import Path

import click

from batch import api, logs
from batch.cli.common import (
    LOCATION,
    STATE,
    config_option,
    emit_json,
    json_option,
    logging_options,
    render_renders,
    reports_errors,
)
from batch.config import Overrides, parse_duration
from batch.storage import Location


@click.command()
@click.argument("results", required=False, type=LOCATION)
@click.option(
    "--state",
    type=STATE,
    envvar="JOGG_STATE_URL",
    help="State file or postgresql:// URL (default: JOGG_STATE_URL, else the account's ledger).",
)
@config_option
@click.option("--base-url", help="API base URL (default: JOGG_BASE_URL or the real API).")
@click.option("--wait", is_flag=True, help="Keep polling until every video is final.")
@click.option(
    "--timeout",
    default="30m",
    show_default=True,
    help="Give up after this, with or without --wait (exit 5).",
)
@json_option
@logging_options
@reports_errors
def status(
    results: Location | None,
    state: Path | None,
    config_path: Path | None,
    base_url: str | None,
    wait: bool,
    timeout: str,
    as_json: bool,
) -> None:
    """Poll GET /v2/product_video/{id} for submitted videos that are not final yet.

    Those of RESULTS, written back into it; without RESULTS, every one the ledger holds.

    Exit 0 when none failed (all completed, with --wait), 1 when some renders failed or their
    status could not be read, 5 when --timeout passed first, with or without --wait: renders
    still going, videos not checked (the summary line counts them), or the account's listing
    not read to its end for double charges (a warning says so).

    \b
    Example:
      jogg-batch status catalog.results.csv --wait --timeout 2h
    """
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from None
    overrides = Overrides(config_path=config_path, state=state, base_url=base_url)
    config = api.track_config(results, overrides)
    summary = api.track(config, wait=seconds if wait else None, timeout=seconds)
    logs.say(render_renders(summary), event="summary")
    if as_json:
        emit_json(summary.to_json())
    raise SystemExit(int(summary.exit_code))
