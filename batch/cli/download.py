"""`jogg-batch download`: fetch the finished videos of a results file into a folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from batch import logs
from batch.cli.common import (
    LOCATION,
    config_option,
    emit,
    emit_json,
    json_option,
    logging_options,
    reports_errors,
)
from batch.config import Overrides, known_api_key, resolve
from batch.errors import ConfigError, ExitCode
from batch.follow.download import (
    DEFAULT_FILE_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_NAME_TEMPLATE,
    DownloadConfig,
    MiB,
    run_download,
)
from batch.storage import Location


@click.command()
@click.argument("results", type=LOCATION)
@click.option(
    "--dest",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the files (created if missing).",
)
@click.option("--covers", is_flag=True, help="Also fetch each video's cover image.")
@click.option(
    "--name-template",
    default=DEFAULT_NAME_TEMPLATE,
    show_default=True,
    help="File name from the results columns; {row} is a number.",
)
@click.option(
    "--concurrency", default=4, show_default=True, type=click.IntRange(1, 32), help="Transfers."
)
@click.option(
    "--max-size",
    default=DEFAULT_MAX_BYTES // MiB,
    show_default=True,
    type=click.IntRange(1),
    help="Largest file accepted, in MiB.",
)
@click.option(
    "--deadline",
    default=DEFAULT_FILE_DEADLINE,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds one file may take in all.",
)
@config_option
@click.option(
    "--base-url",
    help="API base URL (default: JOGG_BASE_URL or the real API); a loopback one (the sandbox) "
    "may serve its own media over http.",
)
@json_option
@logging_options
@reports_errors
def download(
    results: Location,
    dest: Path,
    covers: bool,
    name_template: str,
    concurrency: int,
    max_size: int,
    deadline: float,
    config_path: Path | None,
    base_url: str | None,
    as_json: bool,
) -> None:
    """Download the completed videos listed in RESULTS and record their local_path.

    Resumable: files already complete are skipped, interrupted ones fetched again. Only https
    URLs to public addresses are fetched; why a file was not is in the download_error column.
    Exits 1 when some files could not be fetched.

    \b
    Example:
      jogg-batch download catalog.results.csv --dest videos/ --covers
    """
    if not isinstance(results, Path):
        raise ConfigError(
            f"{results}: download records each file's local_path in RESULTS, so it takes a "
            "results file on this machine: copy the object here, download, and copy it back"
        )
    settings = resolve(Overrides(config_path=config_path, base_url=base_url))
    config = DownloadConfig(
        results,
        dest,
        covers,
        name_template,
        concurrency,
        base_url=settings.api.base_url,
        max_bytes=max_size * MiB,
        file_deadline=deadline,
        api_key=known_api_key(settings),
    )
    summary = run_download(config)
    line = (
        f"{summary.downloaded} downloaded, {summary.skipped} already there, {summary.failed} failed"
    )
    if as_json:
        logs.say(line, event="summary")
        emit_json(dataclasses.asdict(summary))
    else:
        emit(line)
    if summary.failed:
        raise SystemExit(int(ExitCode.ROWS_FAILED))
