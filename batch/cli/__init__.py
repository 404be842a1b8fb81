"""The `jogg-batch` command line: a thin shell of click commands over the library (`batch.api`).

Each command lives in its own module in this package, named here (`COMMANDS`) and imported
when it runs. The group's help ends with the exit codes, from `batch.errors.EXIT_CODE_MEANINGS`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from batch import logs
from batch.errors import EXIT_CODE_MEANINGS
from batch.version import __version__

# Each command's module, loaded when the command runs: the listener's and the sandbox's web
# server, the report's renderer and the downloader add about 0.2 s to a start, and a run's
# first request waits for its start. `--help` loads them all. In the README's order.
COMMANDS = {
    "run": "batch.cli.run:run",
    "plan": "batch.cli.run:plan",
    "validate": "batch.cli.run:validate",
    "retry": "batch.cli.run:retry",
    "status": "batch.cli.status:status",
    "listen": "batch.cli.listen:listen",
    "report": "batch.cli.report:report",
    "download": "batch.cli.download:download",
    "lookup": "batch.cli.lookup:lookup",
    "state": "batch.cli.state:state",
    "sandbox": "batch.cli.sandbox:sandbox",
}

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


class LazyGroup(click.Group):
    """A group whose commands are imported by name when used (`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command

    def main(self, args: Sequence[str] | None = None, *positional: Any, **options: Any) -> Any:
        """With `--log-format json`, a usage error (a bad option value, a missing argument) is
        one JSON record on stderr like every other line, not click's usage block: the cron
        line's log stays parseable. With `--json`, it is also the command's one document on
        stdout, as every other error is."""
        argv = list(sys.argv[1:] if args is None else args)
        json_logs, json_document = logs.asks_json(argv), "--json" in argv
        if not options.get("standalone_mode", True) or not (json_logs or json_document):
            return super().main(argv, *positional, **options)
        try:
            return super().main(argv, *positional, **{**options, "standalone_mode": False})
        except click.ClickException as error:
            if json_logs:
                logs.configure(0, "json")
                message = f"jogg-batch: error: {logs.escape_controls(error.format_message())}"
                logs.say(message, event="error", level=logging.ERROR)
            else:
                error.show()
            if json_document:
                from batch.cli.common import emit_json  # as the command itself would
                from batch.errors import LocalIOError

                with contextlib.suppress(LocalIOError):  # stdout itself failed: said above
                    emit_json({"error": error.format_message(), "exit_code": error.exit_code})
            sys.exit(error.exit_code)
        except click.Abort:
            sys.exit(1)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.NoSuchCommand as error:  # click suggests from the commands it holds: none
            raise click.NoSuchCommand(error.command_name, possibilities=COMMANDS, ctx=ctx) from None


@click.group(
    cls=LazyGroup,
    help=HELP,
    epilog="\b\nExit codes:\n" + exit_code_lines(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="jogg-batch")
def main() -> None:
    """jogg-batch: product catalogs in, JoggAI videos out."""
