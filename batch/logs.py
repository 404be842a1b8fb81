"""Logging setup: human lines or one JSON object per line (for cron), always on stderr.

Messages carry text from servers (error messages, ids): a text line escapes control characters
(`\\n`, `\\x1b`, ...), so no message can start a forged line or send a terminal escape that
retitles the window or hides what came before. JSON lines are escaped by JSON itself.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Final, Literal

LogFormat = Literal["text", "json"]

# Attributes every LogRecord has; anything else was passed through `extra=` and is data.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# C0 and C1 controls, DEL, line and paragraph separators, and bidirectional overrides (which
# reorder what a terminal shows); each becomes a visible escape such as \x1b or \u202e.
_UNSAFE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_UNSAFE += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: chr(code).encode("unicode_escape").decode("ascii") for code in _UNSAFE}
_ESCAPES_KEEPING_NEWLINES = {code: text for code, text in _ESCAPES.items() if code != 0x0A}


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with every control character written out (`\\n`, `\\x1b`, `\\u202e`)."""
    return text.translate(_ESCAPES_KEEPING_NEWLINES if keep_newlines else _ESCAPES)


class TextFormatter(logging.Formatter):
    """`12:00:00 INFO    message`; the message escaped, a traceback keeps its own line breaks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return escape_controls(super().formatException(ei), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields given with `extra=` become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _stderr_gone() -> Any:
    """Points stderr (fd 2 and `sys.stderr`) at the null device and returns it: its reader went
    away (`2>&1 | head -1`, a closed terminal) or it was never open (`2>&-`, some daemons). The
    rest of the lines go nowhere; the command goes on, and its exit code still says how it
    went (a write failing on a broken pipe made it exit 1 after every row was sent). Taking fd 2
    also keeps a file opened later (the state) from becoming "stderr"."""
    null = os.open(os.devnull, os.O_WRONLY)
    if null != 2:
        os.dup2(null, 2)
        os.close(null)
    # Never closed: fd 2 lives as long as the process.
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    return sys.stderr


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr's handler: a line that cannot be written (the reader went away) sends the rest to
    the null device instead of a "--- Logging error ---" block into the same broken pipe."""

    def __init__(self) -> None:
        super().__init__(sys.stderr if sys.stderr is not None else _stderr_gone())

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            if error.errno in _NO_ROOM:
                _lines_lost.set()
            self.setStream(_stderr_gone())
            return
        super().handleError(record)


# A log file with no room left (`2>> cron.log` on a full disk): unlike a reader gone away, the
# lines were meant to be kept, and the command's exit says they were not (`lines_lost`).
_NO_ROOM: Final = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO})
_lines_lost = threading.Event()


def lines_lost() -> bool:
    """Whether a log line could not be written to stderr for want of room."""
    return _lines_lost.is_set()


def configure(verbosity: int = 0, log_format: LogFormat = "text") -> None:
    """verbosity: -1 quiet (warnings), 0 normal (info), 1 and more verbose (debug)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = _StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(_ours_or_warnings)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _ours_or_warnings(record: logging.LogRecord) -> bool:
    """Every record of jogg-batch and of its servers (uvicorn); other libraries' only from
    warnings up, whatever `-v` says. Their chatter is not ours to decide: httpx logs every
    request at INFO, and botocore (under s3fs) logs each signed request at DEBUG, its session
    token with it, which a cron job's `-v --log-format json` would ship."""
    return record.levelno >= logging.WARNING or record.name.partition(".")[0] in _OURS


_OURS = frozenset({"batch", "uvicorn"})


def asks_json(argv: list[str]) -> bool:
    """Whether a command line asks for JSON logs (`--log-format json` or `=json`)."""
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return "--log-format=json" in argv or ("--log-format", "json") in pairs


def say(text: str, *, event: str, level: int = logging.INFO) -> None:
    """What a command tells its reader on stderr whatever the verbosity (its summary, its error):
    the text as it is, or with `--log-format json` one JSON record like every other line, so
    that a log shipper reading the cron line's output parses every line."""
    handlers = logging.getLogger().handlers
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in handlers):
        stream = sys.stderr if sys.stderr is not None else _stderr_gone()
        try:
            stream.write(text + "\n")
            stream.flush()
        except OSError:
            _stderr_gone()
        return
    record = logging.makeLogRecord(
        {"name": "batch", "levelno": level, "levelname": logging.getLevelName(level),
         "msg": text, "event": event}
    )  # fmt: skip
    for handler in handlers:
        handler.handle(record)
