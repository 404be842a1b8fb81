"""The `jogg-batch` console script: the command line, its signals taken before it is imported.

A command imports pandas, pyarrow and httpx (about half a second) before its own handlers are
set (`batch.cli.common.stops_on_signals`). A signal then gave a traceback and a death by the
signal (-2, -15 to the process that started it), or click's "Aborted!" and exit 1: not the
line and the exit code (130, 143, 129) a signal gives at any later moment. So they are taken
here first, as an exception that nothing between here and the command catches.
"""

from __future__ import annotations

import logging
import signal
import sys

from batch import logs
from batch.errors import SIGNAL_EXITS, ExitCode


class _Stopped(BaseException):
    """A signal before the command set its handlers (not a KeyboardInterrupt: click would take
    that for its "Aborted!")."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def main() -> None:
    """`jogg-batch`: click's command line, stopping on a signal with its code from the start."""
    for sig in SIGNAL_EXITS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # `nohup`: it stays ignored
            signal.signal(sig, _stop)
    try:
        from batch.cli import main as command_line  # after the handlers are set

        command_line()
    except SystemExit as done:
        if logs.lines_lost() and done.code in (0, None):
            raise SystemExit(int(ExitCode.LOCAL_IO)) from None  # the log lost the run's lines
        raise
    except _Stopped as stopped:
        if logs.asks_json(sys.argv[1:]):
            logs.configure(0, "json")
        name = signal.Signals(stopped.signum).name
        message = f"jogg-batch: interrupted ({name}); what was done is recorded"
        logs.say(message, event="interrupted", level=logging.WARNING)
        raise SystemExit(int(SIGNAL_EXITS[stopped.signum])) from None
