"""`jogg-batch download`: fetch the finished videos of a results file into a folder."""

from __future__ import annotations

from pathlib import Path

import click

from batch.cli.common import logging_options, reports_errors
from batch.download import DEFAULT_NAME_TEMPLATE, DownloadConfig, run_download
from batch.errors import ExitCode


@click.command()
@click.argument("results", type=click.Path(path_type=Path, dir_okay=False))
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
@logging_options
@reports_errors
def download(results: Path, dest: Path, covers: bool, name_template: str, concurrency: int) -> None:
    """Download the completed videos listed in RESULTS and record their local_path.

    Resumable: files already complete are skipped, interrupted ones fetched again.
    Exits 1 when some files could not be fetched.
    """
    config = DownloadConfig(results, dest, covers, name_template, concurrency)
    summary = run_download(config)
    click.echo(
        f"{summary.downloaded} downloaded, {summary.skipped} already there, {summary.failed} failed"
    )
    if summary.failed:
        raise SystemExit(int(ExitCode.ROWS_FAILED))
