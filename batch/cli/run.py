"""`jogg-batch run`, `plan` and `validate`: the main job and its two read-only previews."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from batch import catalog as catalog_module
from batch import runner, tracking
from batch import validate as validation
from batch.cli.common import logging_options, reports_errors
from batch.config import (
    CliOverrides,
    RunConfig,
    Secret,
    build_run_config,
    parse_duration,
    parse_until,
)
from batch.embedded import DEMO_KEY, DEMO_RATE, embedded_sandbox
from batch.errors import CatalogError, ExitCode
from batch.lookup import LookupConfig
from batch.outputs import check_outputs
from batch.preflight import load_preflight
from batch.rerun import rerun
from batch.runner import RunSummary
from batch.storage import Location, parse_location


class LocationType(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A local path, or a URL in a store (`s3://bucket/catalog.xlsx`, see batch.storage)."""

    name = "path|url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            location = parse_location(value)
        except CatalogError as exc:
            self.fail(str(exc), param, ctx)
        if isinstance(location, Path) and location.is_dir():
            self.fail(f"{location} is a directory, not a file", param, ctx)
        return location


LOCATION = LocationType()


def catalog_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that reads a catalog."""
    options = [
        click.argument("catalog", type=LOCATION),
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Settings file (default: configs/default.toml).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["csv", "parquet", "jsonl", "excel"]),
            help="Catalog format (default: by extension).",
        ),
        click.option("--sheet", help="Sheet of a spreadsheet catalog (default: the first)."),
        click.option("--delimiter", help="CSV delimiter (default: sniffed among , ; tab)."),
        click.option(
            "--state",
            type=click.Path(path_type=Path, dir_okay=False),
            help="State database (default: beside the results file).",
        ),
        click.option(
            "--results",
            type=LOCATION,
            help="Results file, .csv, .parquet or .xlsx (default: <catalog>.results.csv).",
        ),
        click.option("--rate-limit", help="POSTs per API key: N/s, N/min, N/h (default 20/min)."),
        click.option("--length", help="Default video length: 15, 30 or 60."),
        click.option("--aspect-ratio", help="Default aspect ratio: portrait, landscape, square."),
        click.option("--language", help="Default script language, e.g. english."),
        click.option("--script-style", help="Default script style, e.g. Storytime."),
        click.option("--avatar-id", help="Default avatar id."),
        click.option("--voice-id", help="Default voice id."),
        click.option("--visual-style", help="Default visual style name."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


_FIELD_OPTIONS = (
    "length",
    "aspect_ratio",
    "language",
    "script_style",
    "avatar_id",
    "voice_id",
    "visual_style",
)


def _overrides(options: dict[str, Any], **extra: Any) -> CliOverrides:
    fields = {name: options.pop(name) for name in _FIELD_OPTIONS if options.get(name) is not None}
    for name in _FIELD_OPTIONS:
        options.pop(name, None)
    return CliOverrides(fields=fields, **options, **extra)


def sending_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that send (`run` and `retry`)."""
    options = [
        click.option("--base-url", help="API base URL (default: JOGG_BASE_URL or the real API)."),
        click.option("--concurrency", type=click.IntRange(1, 256), help="Requests in flight."),
        click.option("--sandbox", is_flag=True, help="Use a local sandbox: no account needed."),
        click.option(
            "--dry-run", is_flag=True, help="Plan, write results as 'planned', send nothing."
        ),
        click.option(
            "--offline", is_flag=True, help="Skip the account check and look-up pre-flight."
        ),
        click.option("--refresh-lookups", is_flag=True, help="Ignore cached look-ups."),
        click.option("--max-videos", type=click.IntRange(1), help="Stop after this many videos."),
        click.option("--max-duration", help="Stop sending after this long, e.g. 6h or 90m."),
        click.option("--until", help="Stop sending at this local time, e.g. 06:30."),
        click.option("--force", is_flag=True, help="Render submitted rows again (costs credits)."),
        click.option(
            "--retry-permanent", is_flag=True, help="Resend rows failed with 40000/10104."
        ),
        click.option("--resubmit-unknown", is_flag=True, help="Resend rows of unknown outcome."),
        click.option("--wait", is_flag=True, help="Then poll until every render is final."),
        click.option("--timeout", default="30m", show_default=True, help="Limit of --wait."),
        click.option(
            "--summary-json",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Also write the summary as JSON here.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return logging_options(reports_errors(command))


_RUN_FLAGS = (
    "dry_run",
    "offline",
    "refresh_lookups",
    "max_videos",
    "force",
    "retry_permanent",
    "resubmit_unknown",
    "summary_json",
)


@click.command()
@catalog_options
@sending_options
def run(catalog: Location, **options: Any) -> None:
    """Submit one video per catalog row, rate-limited; write a results file.

    Exit codes: 0 every row submitted or already done; 1 some rows failed, invalid or not
    attempted; 2 usage, config or catalog error; 3 aborted by an account error (key, permission,
    credit); 4 another run holds the state; 5 --wait timed out; 130/143 interrupted by
    SIGINT/SIGTERM.
    """
    _send(catalog, runner.run, options)


@click.command()
@click.argument("results_file", type=LOCATION)
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--state",
    type=click.Path(path_type=Path, dir_okay=False),
    help="State database (default: beside RESULTS_FILE; a fresh one elsewhere).",
)
@click.option("--rate-limit", help="POSTs per API key: N/s, N/min, N/h (default 20/min).")
@sending_options
def retry(results_file: Location, **options: Any) -> None:
    """Run again the failed, not-attempted and unknown rows of a results file, and update it.

    Needs nothing but the results file: it carries the catalog's columns. Exit codes as `run`.
    """
    options.update(results=results_file, fmt=None, delimiter=None)
    options.update({name: None for name in _FIELD_OPTIONS})
    _send(results_file, rerun, options)


def _send(
    catalog: Location, action: Callable[[RunConfig], RunSummary], options: dict[str, Any]
) -> None:
    sandbox, wait = options.pop("sandbox"), options.pop("wait")
    wait_limit = _duration_option(options.pop("timeout"), "--timeout")
    flags = {name: options.pop(name) for name in _RUN_FLAGS}
    flags["deadline"] = _deadline(options.pop("max_duration"), options.pop("until"))
    with ExitStack() as stack:
        sandbox_url = stack.enter_context(embedded_sandbox()) if sandbox else None
        if sandbox_url is not None:
            options.update(base_url=sandbox_url, rate_limit=str(DEMO_RATE))
            if (
                options.get("state") is None
            ):  # the embedded account ends with the run: so does its ledger
                ledger = stack.enter_context(tempfile.TemporaryDirectory(prefix="jogg-sandbox-"))
                options["state"] = Path(ledger) / "ledger.db"
        config = build_run_config(
            catalog,
            _overrides(options),
            api_key=DEMO_KEY if sandbox else None,
            progress_bar=sys.stderr.isatty(),
            **flags,
        )
        summary = action(config)
        click.echo(render_summary(summary), err=True)
        if wait and summary.exit_code in (ExitCode.OK, ExitCode.ROWS_FAILED):
            polled = tracking.track(
                config.state,
                config.base_url,
                config.api_key,
                wait=True,
                timeout=wait_limit,
                results=config.results,
            )
            click.echo(
                f"renders: completed {polled.completed}   failed {polled.failed}   "
                f"still rendering {polled.processing}",
                err=True,
            )
            raise SystemExit(summary.exit_code or polled.exit_code)
    raise SystemExit(summary.exit_code)


def _duration_option(text: str, name: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _deadline(max_duration: str | None, until: str | None) -> float | None:
    limits = []
    if max_duration:
        limits.append(time.time() + _duration_option(max_duration, "--max-duration"))
    if until:
        try:
            limits.append(parse_until(until, datetime.now().astimezone()))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from None
    return min(limits) if limits else None


@click.command()
@catalog_options
@logging_options
@reports_errors
def plan(catalog: Location, **options: Any) -> None:
    """Show what `run` would do: new, changed, retry, unknown, already submitted, duplicate,
    invalid rows, and how many POSTs, credits and how long that is. Sends and writes nothing."""
    config = build_run_config(catalog, _overrides(options), api_key=Secret(""))
    catalog_module.check_structure(config.catalog, config.catalog_options)
    click.echo(render_plan(runner.plan_only(config), config.rate))


@click.command()
@catalog_options
@click.option("--online", is_flag=True, help="Also check ids and names against the account.")
@click.option("--base-url", help="API base URL, with --online.")
@click.option("--sandbox", is_flag=True, help="With --online: check against a local sandbox.")
@logging_options
@reports_errors
def validate(catalog: Location, online: bool, sandbox: bool, **options: Any) -> None:
    """Check every row; print each problem by row and column. Exit 0 clean, 1 not.

    Exit 2 for whatever `run` would refuse before sending: a file it cannot read to the end
    (named by line and row), a bad header, or an output path it could not write."""
    with embedded_sandbox() if sandbox else nullcontext(None) as sandbox_url:
        options["base_url"] = sandbox_url or options["base_url"]
        key = DEMO_KEY if sandbox else None if online else Secret("")
        config = build_run_config(catalog, _overrides(options), api_key=key)
        preflight = (
            load_preflight(LookupConfig(config.base_url, config.api_key)) if online else None
        )
    check_outputs(config, create=False)
    problems = 0
    for line in validation.problems(config.catalog, config.catalog_options, preflight):
        problems += 1
        click.echo(line)
    click.echo(
        f"{catalog}: {'no problems' if not problems else f'{problems} problem(s)'}", err=True
    )
    raise SystemExit(int(ExitCode.ROWS_FAILED if problems else ExitCode.OK))


def render_plan(summary: RunSummary, rate: Any) -> str:
    counts = summary.plan
    lines = [f"plan for {summary.catalog} ({counts.rows} rows):"]
    for name, value in vars(counts).items():
        lines.append(f"  {name.replace('_', ' '):<18} {value:>8}")
    posts = counts.to_send + summary.product_posts
    if summary.product_posts:
        lines.append(f"  {'products to create':<18} {summary.product_posts:>8}")
    lines.append(f"  {'POSTs to send':<18} {posts:>8}   (credits: up to {counts.to_send})")
    if rate is not None and posts:
        minutes = posts / rate.count * rate.window / 60
        lines.append(f"  {'time at ' + str(rate):<18} {_duration(minutes * 60):>8}")
    if counts.unknown:
        lines.append(f"  ({counts.unknown} unknown outcome(s) are looked up before any resend)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render_summary(summary: RunSummary) -> str:
    head = "dry run (nothing sent)" if summary.dry_run else "run finished"
    if summary.stopped:
        head = f"run stopped early: {summary.stopped}"
    lines = [f"{head}: {summary.catalog}"]
    for status, count in sorted(summary.statuses.items()):
        lines.append(f"  {status:<18} {count:>8}")
    if summary.codes:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(summary.codes.items()))
        lines.append(f"  failures by code    {codes}")
    if not summary.dry_run:
        lines.append(
            f"  requests sent       {summary.requests_sent}   credits spent "
            f"{summary.credits_spent}   elapsed {_duration(summary.elapsed_seconds)}"
            f"   rate {summary.post_rate_per_minute}/min"
        )
    lines.append(f"  results: {summary.results}")
    return "\n".join(lines)
