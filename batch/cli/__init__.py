"""The `jogg-batch` command line: a thin shell of click commands over the library (`batch.api`).

Each command lives in its own module in this package and is registered here. The group's help
ends with the exit codes, from `batch.errors.EXIT_CODE_MEANINGS`.
"""

from __future__ import annotations

import click

from batch.cli.download import download
from batch.cli.listen import listen
from batch.cli.lookup import lookup
from batch.cli.report import report
from batch.cli.run import plan, retry, run, validate
from batch.cli.sandbox import sandbox
from batch.cli.state import state
from batch.cli.status import status
from batch.errors import EXIT_CODE_MEANINGS
from batch.version import __version__

HELP = """Turn a product catalog (CSV, Parquet, JSON Lines) into JoggAI videos: one request per
row, rate-limited, resumable after any crash, never paying twice for a row.

\b
Example (no account needed: a local sandbox stands in for JoggAI):
  jogg-batch run sample_data/catalog.csv --sandbox --wait

Commands print a JSON document on stdout with --json; diagnostics go to stderr.
"""


def exit_code_lines() -> str:
    width = max(len(str(int(code))) for code in EXIT_CODE_MEANINGS)
    return "\n".join(
        f"  {int(code):>{width}}  {meaning.replace('`', '')}"
        for code, meaning in EXIT_CODE_MEANINGS.items()
    )


@click.group(
    help=HELP,
    epilog="\b\nExit codes:\n" + exit_code_lines(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="jogg-batch")
def main() -> None:
    """jogg-batch: product catalogs in, JoggAI videos out."""


for command in (
    run, plan, validate, retry, status, listen, report, download, lookup, state, sandbox
):  # fmt: skip
    main.add_command(command)
