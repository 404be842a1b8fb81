"""`jogg-batch report`: a results file summarised as a table, JSON or a self-contained page."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from batch import files
from batch.cli.common import LOCATION, LocalFile, emit, logging_options, reports_errors
from batch.errors import ConfigError
from batch.follow.report import build_report, render_json, render_table
from batch.follow.report_page import render_html
from batch.outputs import check_writable, same_file
from batch.storage import Location
from batch.store.results import read_results, require_columns

log = logging.getLogger(__name__)
RENDERERS = {"table": render_table, "json": render_json, "html": render_html}


@click.command()
@click.argument("results", type=LOCATION)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(RENDERERS)),
    default="table",
    show_default=True,
    help="html: one page with every row, filters and a timeline; opens without a network.",
)
@click.option(
    "--key",
    metavar="COLUMN",
    help="The column that names a row for people (default: sku, else product_id, ...).",
)
@click.option(
    "-o",
    "--output",
    type=LocalFile(),
    help="Write here instead of stdout.",
)
@logging_options
@reports_errors
def report(results: Location, output_format: str, key: str | None, output: Path | None) -> None:
    """Summarise RESULTS: outcomes, failures by reason with their rows, credits, render times.

    \b
    Example:
      jogg-batch report catalog.results.csv --format html --output report.html
    """
    frame = read_results(results)
    require_columns(frame, results, ("status",), "report")
    if output is not None:
        if same_file(output, results):
            raise ConfigError(f"--output {output}: is RESULTS itself; name another file")
        check_writable(output, "report", "--output")
    text = RENDERERS[output_format](build_report(frame, source=results.name, key=key))
    if output is None:
        emit(text, nl=False)
        return
    try:
        files.write_text(output, text)  # atomic, 0600 when new, never through a symlink
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write it ({exc.strerror})") from None
    log.info("report written to %s", output)
