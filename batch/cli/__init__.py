"""The `jogg-batch` command line: a thin shell of click commands over the library.

Each command lives in its own module in this package and is registered here.

Exit codes: 0 done, 1 some rows failed or invalid, 2 usage/config/catalog error,
3 aborted by an account error (key, permission, credit), 4 another run holds the lock,
5 `status --wait` timed out, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import click

from batch import __version__
from batch.cli.download import download
from batch.cli.listen import listen
from batch.cli.lookup import lookup
from batch.cli.report import report
from batch.cli.run import plan, retry, run, validate
from batch.cli.sandbox import sandbox
from batch.cli.state import state
from batch.cli.status import status


@click.group(help=__doc__.split("\n\n", 2)[2] if __doc__ else None)
@click.version_option(__version__, prog_name="jogg-batch")
def main() -> None:
    """jogg-batch: product catalogs in, JoggAI videos out."""


for command in (
    run, plan, validate, retry, status, listen, report, download, lookup, state, sandbox
):  # fmt: skip
    main.add_command(command)
