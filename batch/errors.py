"""The one error hierarchy of jogg-batch, and the exit codes a caller (cron, a person) sees.

Library code raises these; the CLI catches `BatchError` in one place and exits with
`error.exit_code`. Messages name the file, row, column and value where there is one, and say
what to do next. They never contain the API key.
"""

from __future__ import annotations

import signal
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented in `jogg-batch --help` and the README."""

    OK = 0  # every row submitted (or already done); for `status`: every video completed
    ROWS_FAILED = 1  # some rows failed or were invalid; for `status`: some renders failed
    USAGE = 2  # usage, config or catalog error: nothing was sent
    ACCOUNT = 3  # run aborted by an account-level error (key, permission, credit)
    LOCKED = 4  # another run holds the state lock
    TIMED_OUT = 5  # `status --wait` gave up with videos still rendering
    DOUBLE_CHARGED = 6  # the account's listing shows a row rendered twice (raise it with JoggAI)
    LOCAL_IO = 7  # a local file (state, results) could not be written after sending began
    HUNG_UP = 129  # SIGHUP: the terminal or SSH session closed
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM


# The signals a command stops gracefully on, and its exit code for each. SIGHUP: an SSH session
# or terminal that closes must not kill a run like SIGKILL (no summary, no results file).
SIGNAL_EXITS: dict[int, ExitCode] = {
    signal.SIGINT: ExitCode.INTERRUPTED,
    signal.SIGTERM: ExitCode.TERMINATED,
    signal.SIGHUP: ExitCode.HUNG_UP,
}


# What each code means to the person or the cron job that sees it: `jogg-batch --help` and the
# README's table are generated from this (cog), so they cannot drift from the code.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "every row submitted or already done (`status`: no render failed, and with "
    "`--wait` every one completed)",
    ExitCode.ROWS_FAILED: (
        "some rows failed, were invalid, not attempted or unknown (`status`: some renders "
        "failed, the API did not tell their status or its listing could not be read, or the "
        "file's video ids could not be checked)"
    ),
    ExitCode.USAGE: "usage, config or catalog error: nothing was sent",
    ExitCode.ACCOUNT: (
        "aborted by an account error: bad key (10105), no API permission (18025), no credit (18020)"
    ),
    ExitCode.LOCKED: (
        "another run holds the state database, or sends for the same account from another "
        "ledger (`download`: another download writes into --dest)"
    ),
    ExitCode.TIMED_OUT: "`status` / `run --wait` timed out: renders still going, or not checked",
    ExitCode.DOUBLE_CHARGED: (
        "the account's listing shows a row rendered twice: a double charge (raise it with JoggAI)"
    ),
    ExitCode.LOCAL_IO: (
        "a local file (state, results) could not be written after sending began; what was "
        "sent is kept (also: a command's output could not be written to stdout: a full disk, "
        "a closed pipe; or its log lines to stderr for want of room, where it would exit 0)"
    ),
    ExitCode.HUNG_UP: (
        "hung up by SIGHUP: the terminal or SSH session closed (everything recorded; run again "
        "to continue)"
    ),
    ExitCode.INTERRUPTED: "interrupted by SIGINT (everything recorded; run again to continue)",
    ExitCode.TERMINATED: "terminated by SIGTERM (everything recorded; run again to continue)",
}


class BatchError(Exception):
    """Base of every error jogg-batch reports to its user. `problems`: where it found several
    (a catalog's bad lines), each of them, which the message heads."""

    exit_code: ExitCode = ExitCode.USAGE
    problems: tuple[str, ...] = ()


class ConfigError(BatchError):
    """A setting is unknown, malformed or contradictory."""


class CatalogError(BatchError):
    """The catalog file cannot be read at all (a bad row is a row problem, not this)."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = problems


class StateError(BatchError):
    """The state database is unusable."""


class LockedError(StateError):
    """Another run holds the lock on this state database."""

    exit_code = ExitCode.LOCKED


class LocalIOError(BatchError):
    """Disk full, file size limit or permissions, after sending began: what was sent is kept."""

    exit_code = ExitCode.LOCAL_IO


class ApiError(BatchError):
    """The JoggAI API answered with an error that the caller must see."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.http_status = http_status


class AccountError(ApiError):
    """Key, permission or credit problem: no further request can succeed, so the run stops."""

    exit_code = ExitCode.ACCOUNT
