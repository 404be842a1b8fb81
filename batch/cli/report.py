"""`jogg-batch report`: a results file summarised as a table, JSON or a self-contained page."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from batch import files
from batch.cli.common import logging_options, reports_errors
from batch.report import build_report, render_json, render_table
from batch.report_page import render_html
from batch.results import read_results

log = logging.getLogger(__name__)
RENDERERS = {"table": render_table, "json": render_json, "html": render_html}


@click.command()
@click.argument("results", type=click.Path(path_type=Path, dir_okay=False))
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
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write here instead of stdout.",
)
@logging_options
@reports_errors
def report(results: Path, output_format: str, key: str | None, output: Path | None) -> None:
    """Summarise RESULTS: outcomes, failures by reason with their rows, credits, render times."""
    summary = build_report(read_results(results), source=results.name, key=key)
    text = RENDERERS[output_format](summary)
    if output is None:
        click.echo(text, nl=False)
        return
    files.write_text(output, text)  # atomic, 0600 when new, never through a symlink
    log.info("report written to %s", output)
