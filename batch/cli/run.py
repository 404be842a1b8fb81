"""`jogg-batch run`, `retry`, `plan` and `validate`: the main job, its second chance and its two
read-only previews. Each parses its options, makes one library call (`batch.api`), prints."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from batch import api, files, logs
from batch.cli.common import (
    LOCATION,
    STATE,
    LocalFile,
    config_option,
    emit,
    emit_json,
    error_document,
    interrupted_document,
    json_option,
    logging_options,
    render_renders,
    reports_errors,
)
from batch.config import Overrides, parse_duration, parse_until
from batch.embedded import Sandbox, local_sandbox
from batch.errors import BatchError
from batch.joggai.quota import RateLimit
from batch.runner import RunSummary
from batch.storage import Location

INPUT_FORMATS = click.Choice(["csv", "parquet", "jsonl", "excel"])


def catalog_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by every command that reads a catalog."""
    options = [
        click.argument("catalog", type=LOCATION),
        config_option,
        click.option(
            "--input-format", type=INPUT_FORMATS, help="Catalog format (default: by extension)."
        ),
        # The 0.2 spelling: `--format` now means an output format everywhere.
        click.option("--format", "input_format_alias", type=INPUT_FORMATS, hidden=True),
        click.option("--sheet", help="Sheet of a spreadsheet catalog (default: the first)."),
        click.option(
            "--delimiter",
            help="CSV delimiter (default: sniffed among , ; tab); tab or an escape such as \\001 "
            "for a control character.",
        ),
        click.option(
            "--state",
            type=STATE,
            help="State database (default: the account's ledger).",
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


def _overrides(options: dict[str, Any], **flags: Any) -> Overrides:
    """The command's options as Overrides; `options` keeps what is not one."""
    fields = {name: value for name in _FIELD_OPTIONS if (value := options.pop(name)) is not None}
    alias = options.pop("input_format_alias", None)
    options["input_format"] = options.get("input_format") or alias
    return Overrides(fields=fields, **options, **flags)


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
            type=LocalFile(),
            help="Also write the summary as JSON here.",
        ),
        json_option,
    ]
    for option in reversed(options):
        command = option(command)
    return logging_options(reports_errors(command))


@click.command()
@catalog_options
@sending_options
def run(catalog: Location, **options: Any) -> None:
    """Submit one video per catalog row, rate-limited; write a results file.

    Exit 0 when every row is submitted or already done, 1 when some failed, were invalid or not
    attempted; the other codes are in `jogg-batch --help`.

    \b
    Example:
      jogg-batch run catalog.csv --until 06:30 --wait
    """
    _send(catalog, api.run, options)


@click.command()
@click.argument(
    "results_file",
    metavar="RESULTS",
    type=LOCATION,
)
@config_option
@click.option(
    "--state",
    type=STATE,
    help="State database (default: the account's ledger).",
)
@click.option("--rate-limit", help="POSTs per API key: N/s, N/min, N/h (default 20/min).")
@sending_options
def retry(results_file: Location, **options: Any) -> None:
    """Run again a results file's failed, not-attempted, unknown and planned rows; update it.

    Needs nothing but the results file: it carries the catalog's columns. Exit codes as `run`.

    \b
    Example:
      jogg-batch retry catalog.results.csv --resubmit-unknown
    """
    options.update({name: None for name in _FIELD_OPTIONS}, results=results_file, delimiter=None)
    _send(results_file, api.retry, options)


def _send(catalog: Location, action: Callable[..., RunSummary], options: dict[str, Any]) -> None:
    sandbox, as_json = options.pop("sandbox"), options.pop("as_json")
    if sandbox and options.get("base_url") is not None:
        raise click.UsageError("--sandbox and --base-url name two APIs; give one")
    wait_limit = _duration_option(options.pop("timeout"), "--timeout")
    wait = wait_limit if options.pop("wait") else None
    if wait is None:
        _does_nothing_without("--wait", "timeout")
    deadline = _deadline(options.pop("max_duration"), options.pop("until"))
    overrides = _overrides(options, deadline=deadline, progress_bar=sys.stderr.isatty())
    try:
        with local_sandbox() if sandbox else contextlib.nullcontext() as box:
            config = api.configure(catalog, overrides, sandbox=box)
            summary = action(config, wait=wait, handle_signals=True)
    except BatchError as exc:
        _replace_summary(catalog, error_document(exc), overrides.summary_json)
        raise  # `reports_errors` says it, and prints the --json document
    except KeyboardInterrupt as stop:  # a signal while `--wait` polled the renders
        _replace_summary(catalog, interrupted_document(stop), overrides.summary_json)
        raise
    logs.say(render_summary(summary), event="summary")
    if as_json:
        emit_json(summary.to_json())
    raise SystemExit(summary.exit_code)


def _does_nothing_without(needed: str, *names: str) -> None:
    """A warning for each option given on the command line that only `needed` uses: taken in
    silence, it looked as if it had done its part."""
    context = click.get_current_context()
    for name in names:
        if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            option = "--" + name.replace("_", "-")
            logging.getLogger("batch").warning("%s does nothing without %s", option, needed)


def _replace_summary(catalog: Location, stopped: dict[str, Any], summary_json: Path | None) -> None:
    """A run that stopped with an error (exit 2, 4...) or a signal replaces last night's
    summary file (or the run's own, written before `--wait`), which would otherwise say all
    went well; none there yet, one is written. Only a summary is replaced: the error may be that
    --summary-json names another file (the state)."""
    document = {"catalog": str(catalog), **stopped}
    if summary_json is not None and (not summary_json.exists() or _is_summary(summary_json)):
        with contextlib.suppress(OSError):  # the error itself is what is reported
            files.write_text(summary_json, json.dumps(document, indent=2) + "\n")


def _is_summary(path: Path) -> bool:
    try:
        document = json.loads(path.read_bytes()[:1_000_000])
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and "exit_code" in document


def _duration_option(text: str, name: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _deadline(max_duration: str | None, until: str | None) -> float | None:
    limits = []
    # An empty value (a cron line's `--until "$STOP"` with STOP unset) is refused as any bad
    # one is: ignored, the run went on with no limit at all.
    if max_duration is not None:
        limits.append(time.time() + _duration_option(max_duration, "--max-duration"))
    if until is not None:
        try:
            limits.append(parse_until(until, datetime.now()))  # local wall time
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from None
        if limits[-1] - time.time() > _FAR_UNTIL:  # a cron job that started late, say
            at = datetime.fromtimestamp(limits[-1]).strftime("%Y-%m-%d %H:%M")
            logging.getLogger("batch").warning(
                "--until %s: that time is past today; sending until %s", until.strip(), at
            )
    return min(limits) if limits else None


# An --until this far away was most likely meant for today, and today's is past.
_FAR_UNTIL = 12 * 3600


@click.command()
@catalog_options
@json_option
@logging_options
@reports_errors
def plan(catalog: Location, as_json: bool, **options: Any) -> None:
    """Show what `run` would do: new, changed, retry, unknown, already submitted, duplicate,
    invalid rows, and how many POSTs, credits and how long that is. Sends and writes nothing.

    \b
    Example:
      jogg-batch plan catalog.parquet --rate-limit 20/min
    """
    config = api.configure(catalog, _overrides(options), key_required=False)
    summary = api.plan(config)
    if as_json:
        emit_json(plan_document(summary, config.rate))
    else:
        emit(render_plan(summary, config.rate))


@click.command()
@catalog_options
@click.option("--online", is_flag=True, help="Also check ids and names against the account.")
@click.option("--base-url", help="API base URL, with --online.")
@click.option("--sandbox", is_flag=True, help="With --online: check against a local sandbox.")
@json_option
@logging_options
@reports_errors
def validate(catalog: Location, online: bool, sandbox: bool, as_json: bool, **options: Any) -> None:
    """Check every row; print each problem by row and column. Exit 0 clean, 1 not.

    Exit 2 for whatever `run` would refuse before sending: a file it cannot read to the end
    (named by line and row), a bad header, or an output path it could not write.

    \b
    Example:
      jogg-batch validate catalog.csv --online
    """
    if not online:
        _does_nothing_without("--online", "base_url", "sandbox", "rate_limit")
    box: Sandbox | None
    with local_sandbox() if sandbox else contextlib.nullcontext() as box:
        config = api.configure(catalog, _overrides(options), sandbox=box, key_required=online)
        checked = api.validate(config, online=online)
    if as_json:
        emit_json(checked.to_json())
    elif checked.problems:
        emit("\n".join(problem.message for problem in checked.problems))
    count = len(checked.problems)
    logs.say(f"{catalog}: {f'{count} problem(s)' if count else 'no problems'}", event="summary")
    raise SystemExit(int(checked.exit_code))


def plan_document(summary: RunSummary, rate: RateLimit | None) -> dict[str, Any]:
    """The plan as `plan --json` prints it: counts, POSTs, credits and seconds at the rate."""
    counts = summary.plan
    posts = counts.to_send + summary.product_posts
    return {
        "catalog": summary.catalog,
        "state": summary.state,
        **vars(counts),
        "to_send": counts.to_send,
        "product_posts": summary.product_posts,
        "posts": posts,
        "credits_up_to": counts.to_send,
        "rate": None if rate is None else str(rate),
        "seconds": None if rate is None else round(posts / rate.count * rate.window, 1),
    }


def render_plan(summary: RunSummary, rate: RateLimit | None) -> str:
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
    return "\n".join(map(logs.escape_controls, lines))  # a name or a reason is one line


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
    stale = ""
    if not summary.results_written:
        local = "://" not in summary.results
        missing = local and not Path(summary.results).exists()
        stale = (
            " (none written: see above)"
            if missing
            else " (not this run's final results: see above)"
        )
    lines.append(f"  results: {summary.results}{stale}")
    if (renders := summary.renders) is not None:
        lines.append(f"renders: {render_renders(renders)}")
    return "\n".join(map(logs.escape_controls, lines))  # a name or a reason is one line
