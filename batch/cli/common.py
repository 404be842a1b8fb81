"""Options and error handling shared by every command."""

from __future__ import annotations

import codecs
import contextlib
import functools
import json
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from batch import logs
from batch.errors import SIGNAL_EXITS, BatchError, LocalIOError
from batch.follow.polling import PollSummary
from batch.storage import parse_location
from batch.store.backend import as_local_error, database_errors, state_location

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("batch")


def logging_options(command: Callable[P, R]) -> Callable[P, R]:
    """Adds -v/-q and --log-format, and configures logging before the command runs."""

    @click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json: one structured line per event, for cron and log shippers.",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, verbose: int, quiet: bool, log_format: str, **kwargs: Any) -> R:
        logs.configure(-1 if quiet else verbose, "json" if log_format == "json" else "text")
        return command(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class Signalled(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP where no run handles it: the command stops as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stops_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Signalled` for the command's time (a run handles them
    on its own loop, and gives these back): killed by default, `--wait` polling, `status` and
    `download` ended without a word or an exit code of their own. SIGINT is taken too because
    `asyncio.run` resets its count of them just after installing its own handler: a Ctrl-C in
    between cancelled the command's task and left a CancelledError traceback and exit 1."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set on the main thread
        return

    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if stopping:
            # Again while the first unwinds the command (`timeout` signals the process and its
            # group): raised there, it left a traceback. Stop at once; the ledger is whole.
            os._exit(int(SIGNAL_EXITS[signum]))
        stopping.append(signum)
        raise Signalled(signum)

    before = {
        sig: signal.signal(sig, stop)
        for sig in SIGNAL_EXITS
        if signal.getsignal(sig) is not signal.SIG_IGN  # `nohup`: it stays ignored
    }
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A BatchError becomes its message on stderr and its exit code (with `--json`, also the
    command's one document on stdout: the error and the code); others keep tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            try:
                with stops_on_signals():
                    return command(*args, **kwargs)
            except database_errors() as error:
                if (local := as_local_error(error)) is None:
                    raise
                raise local from error
        except BatchError as error:
            # Messages may quote a server; control characters must not reach the terminal.
            lines = [f"jogg-batch: error: {error!s}", *(f"  {p}" for p in error.problems)]
            message = "\n".join(map(logs.escape_controls, lines))
            logs.say(message, event="error", level=logging.ERROR)
            if kwargs.get("as_json"):
                with contextlib.suppress(LocalIOError):  # stdout itself failed: said above
                    emit_json(error_document(error))
            raise SystemExit(int(error.exit_code)) from None
        except KeyboardInterrupt as stop:
            # Ctrl-C (or SIGTERM, SIGHUP) where no run handles it (`--wait` polling, `status`,
            # `download`): what was done is recorded as it went. Click would say "Aborted!" and
            # exit 1, the code of failed rows.
            document = interrupted_document(stop)
            message = f"jogg-batch: interrupted ({document['signal']}); what was done is recorded"
            logs.say(message, event="interrupted", level=logging.WARNING)
            if kwargs.get("as_json"):
                emit_json(document)
            raise SystemExit(document["exit_code"]) from None

    return wrapper


class LocalFile(click.Path):
    """A file written on this machine only (a report, a summary): an object store's URL is
    refused, where a plain path type would write to a folder named `s3:` and say it had."""

    def __init__(self) -> None:
        super().__init__(path_type=Path, dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "://" in value:
            self.fail(
                f"{value!r} is written on this machine only; name a local file, then "
                "copy it to the store",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


def listening_options(command: Callable[P, R]) -> Callable[P, R]:
    """`--host` and `--port` of a command that serves HTTP (the sandbox, the webhook listener)."""
    command = click.option(
        "--port",
        default=8787,
        show_default=True,
        type=click.IntRange(0, 65535),
        help="Port to listen on (0: any free one, logged).",
    )(command)
    return click.option(
        "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
    )(command)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Settings file (default: the built-in one, as in configs/default.toml).",
)

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout; diagnostics stay on stderr.",
)


def render_renders(summary: PollSummary) -> str:
    """The renders line of `status` and `run --wait`."""
    line = (
        f"completed {summary.completed}   failed {summary.failed}   "
        f"still rendering {summary.processing}"
    )
    if summary.unread:
        not_known = min(summary.not_known, summary.unread)
        why = []
        if silent := summary.unread - not_known:
            why.append(f"status unread for {silent}: the API did not answer; check again")
        if not_known:
            why.append(
                f"the API does not know {not_known} of them: accepted moments ago, or the key "
                "is another account's, or the base URL another API's"
            )
        line += f" ({'; '.join(why)})"
    if summary.untracked:
        line += (
            f"   (not in the state: {summary.untracked}, so not checked: video ids a "
            "spreadsheet rewrote, or a file of another ledger; give its --state)"
        )
    if summary.unnamed:
        line += (
            f"   (no video id: {summary.unnamed} row(s) the file says were accepted, so not "
            "checked: a cleared cell? run the catalog again to write the ids back)"
        )
    if summary.listing_unread:
        line += "   (the account's listing could not be read: double charges not checked)"
    if summary.unchecked:
        line += f"   (timed out: {summary.unchecked} not checked)"
    return line + ("   (timed out)" if summary.timed_out and not summary.unchecked else "")


def interrupted_document(stop: KeyboardInterrupt) -> dict[str, Any]:
    """What a `--json` document (or a summary file) says of a signal that stopped a command."""
    signum = stop.signum if isinstance(stop, Signalled) else signal.SIGINT
    code = int(SIGNAL_EXITS[signum])
    return {"error": "interrupted", "signal": signal.Signals(signum).name, "exit_code": code}


def error_document(error: BatchError) -> dict[str, Any]:
    """What a `--json` document (or a summary file) says of an error that stopped a command."""
    document: dict[str, Any] = {"error": str(error), "exit_code": int(error.exit_code)}
    return document | ({"problems": list(error.problems)} if error.problems else {})


def emit_json(document: object) -> None:
    """The one machine-readable document of a command, on stdout (`emit`): escaped to ASCII
    (`\\u00e9`) where stdout's encoding is not UTF-8 (PYTHONIOENCODING=ascii), not `?`: a script
    reading `.results` must get a path that exists."""
    emit(json.dumps(document, indent=2, ensure_ascii=not stdout_is_utf8(), default=str))


def stdout_is_utf8() -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return codecs.lookup(encoding).name == "utf-8"


def emit(text: str, *, nl: bool = True) -> None:
    """A command's output (data, not diagnostics) on stdout; LocalIOError (exit 7) when stdout
    takes no more (a full disk under a cron job's log, a closed pipe) or was closed.

    Written straight to the descriptor: a write a closed pipe cuts short returns what it took,
    and Python's buffered stream drops the rest without an error."""
    stream = sys.stdout
    if stream is None:  # started with `>&-`
        raise LocalIOError("cannot write to standard output: it is closed")
    data = (text + "\n" if nl else text).encode(stream.encoding or "utf-8", "replace")
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stream of the host's (a test runner's)
        fd = None
    try:
        stream.flush()
        if fd is None:
            click.echo(text, nl=nl)
            stream.flush()
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # a non-blocking pipe its reader has not emptied yet
                select.select([], [fd], [])
    except OSError as exc:
        # What stays buffered would fail again, with a traceback, as the interpreter exits.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        raise LocalIOError(f"cannot write to standard output: {exc.strerror or exc}") from None


class FileOrURL(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A local file (never a directory), or a URL that `parse` understands; a BatchError from
    `parse` is the usage error click prints."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            location = self.parse(value)
        except BatchError as exc:
            self.fail(str(exc), param, ctx)
        try:
            is_dir = isinstance(location, Path) and location.is_dir()
        except OSError as exc:  # a name too long for the file system
            self.fail(f"{str(location)[:200]}...: {exc.strerror}", param, ctx)
        if is_dir:
            self.fail(
                f"{location} is a directory, not a file{_directory_hint(location)}", param, ctx
            )
        return location


def _directory_hint(folder: Path) -> str:
    """For a folder of Parquet parts (how Spark, Hive and pandas' partitioned writes save a
    table): how to get the one file a catalog is."""
    one_file = (
        f"`pyarrow.parquet.write_table(pyarrow.parquet.read_table({str(folder)!r}), "
        "'catalog.parquet')`"
    )
    if any(child.is_dir() and "=" in child.name for child in folder.iterdir()):
        # Its parts lack the columns their folders name (`language=spanish`): never run alone.
        return (
            " (a table partitioned by folder, such as language=spanish/): write it as one "
            f"file, which reads the folders' values back as columns: {one_file}"
        )
    if any(folder.glob("*.parquet")):
        return (
            f" (a table Spark or Hive wrote in parts): write it as one file ({one_file}), or "
            "run each part file on its own"
        )
    if any(folder.glob("part-*")):  # text parts (CSV, JSON Lines), each with its own header
        return (
            " (a table Spark or Hive wrote in parts): run each part file on its own, or join "
            "them into one file with the header line once"
        )
    return ""


# `--state`: a SQLite file, or a `postgresql://` URL (batch.store.backend).
STATE = FileOrURL("path|postgresql-url", state_location)
# A catalog or results file: a local path, or `s3://bucket/catalog.xlsx` (batch.storage).
LOCATION = FileOrURL("path|url", parse_location)
