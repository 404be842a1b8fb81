"""The command line as a user meets it: help, exit codes and the lines printed."""

from __future__ import annotations

import asyncio
import csv
import functools
import gzip
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import click
import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import uvicorn
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batch.cli import main
from batch.cli.common import render_renders, reports_errors
from batch.cli.run import render_summary
from batch.config import Overrides
from batch.errors import BatchError
from batch.follow.polling import PollSummary
from batch.planner import PlanCounts
from batch.runner import RunSummary
from batch.sandbox import SandboxConfig, running_sandbox
from batch.sandbox.server import bind_socket, url_of
from batch.store import AttemptRecord, NewJob, RowPlan, StateStore
from batch.store.ledgers import account_url, ledger_path
from batch.store.results import read_results
from tests.helpers import python_output, simple_rows, submissions, write_catalog

COMMANDS = ["run", "plan", "validate", "retry", "status", "listen", "report", "download",
            "lookup", "sandbox"]  # fmt: skip


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


def wait_for_submissions(url: str, count: int, timeout: float = 30.0) -> None:
    """Polls the sandbox until it has accepted `count` creates."""
    deadline = time.monotonic() + timeout
    while len(submissions(url)["submissions"]) < count:
        assert time.monotonic() < deadline, f"the sandbox never saw {count} submissions"
        time.sleep(0.05)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    """`jogg-batch COMMAND --help` exits 0 and shows usage."""
    code, out, _ = invoke(command, "--help")
    assert code == 0
    assert out.startswith(f"Usage: main {command}")


def test_top_level_help_documents_exit_codes() -> None:
    """The exit codes a cron job needs are in --help."""
    code, out, _ = invoke("--help")
    assert code == 0
    for text in ("3 aborted by an account error", "4 another", "130 interrupted"):
        assert text in " ".join(out.split())


def test_missing_catalog_is_a_usage_error(tmp_path: Path) -> None:
    """A catalog that does not exist: exit 2 and the path in the message."""
    code, _, err = invoke("validate", str(tmp_path / "nope.csv"))
    assert code == 2
    assert "nope.csv" in err


def test_a_relative_path_from_a_deleted_working_folder_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cron job's shell in a folder deleted since (a release directory swapped): a relative
    catalog or results path was a FileNotFoundError traceback and exit 1 ("rows failed").
    Exit 2 naming the path; absolute paths still work from there."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    code, _, err = invoke("validate", "../c.csv")
    assert code == 2
    assert "../c.csv: the path is relative, and the working folder it is relative to was " in err
    assert invoke("validate", str(catalog))[0] == 0


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    """A typo in the config file is an error naming the key, not a silent default."""
    config = tmp_path / "c.toml"
    config.write_text('[api]\nrate_limt = "10/min"\n')
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    code, _, err = invoke("validate", str(catalog), "--config", str(config))
    assert code == 2
    assert "unknown setting 'api.rate_limt'" in err


def test_run_without_a_key_says_where_to_put_it(tmp_path: Path) -> None:
    """No JOGG_API_KEY: exit 2 and a hint, never a request."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    code, _, err = invoke("run", str(catalog), "--offline", env={"JOGG_API_KEY": ""})
    assert code == 2
    assert "set JOGG_API_KEY" in err


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    """Each problem on its own line with file, row, column and value."""
    rows = simple_rows(3)
    rows[1]["length"] = "45"
    rows[2]["length"] = "abc"
    catalog = write_catalog(tmp_path / "c.csv", rows)
    code, out, err = invoke("validate", str(catalog))
    assert code == 1
    assert out.splitlines() == [
        "c.csv row 2, column 'length': '45' is not a video length; use 15, 30 or 60",
        "c.csv row 3, column 'length': 'abc' is not a video length; use 15, 30 or 60",
    ]
    assert err.strip().endswith("2 problem(s)")


def test_plan_counts_posts_and_time_without_a_key(tmp_path: Path) -> None:
    """plan needs no key and says how long the POSTs take at the rate."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(40))
    code, out, _ = invoke("plan", str(catalog))
    assert code == 0
    assert "  new                      40" in out
    assert "  POSTs to send            40   (credits: up to 40)" in out
    assert "  time at 20/min        2m00s" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]  # plan writes nothing


def test_plan_waits_for_no_one_while_a_run_holds_the_state(tmp_path: Path) -> None:
    """plan refuses (exit 4) rather than hold up a running job with its own writes. The message
    no longer offers another --state: for the same account, that run is refused as well."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    holder = StateStore(tmp_path / "c.jogg-state.db")
    holder.lock()
    try:
        code, _, err = invoke("plan", str(catalog))
    finally:
        holder.close()
    assert code == 4
    assert "in use by a running jogg-batch" in err
    assert "another --state" not in err


def test_locked_state_exits_4(tmp_path: Path) -> None:
    """An overlapping cron run exits at once with its own code."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    holder = StateStore(tmp_path / "s.db")
    holder.lock()
    try:
        code, _, err = invoke(
            "run", str(catalog), "--offline", "--state", str(tmp_path / "s.db"),
            env={"JOGG_API_KEY": "k"},
        )  # fmt: skip
    finally:
        holder.close()
    assert code == 4
    assert "in use by a running jogg-batch" in err


@pytest.mark.parametrize(
    "args",
    [["run", "c.csv", "--max-videos", "0"], ["state", "prune", "--keep-runs", "0"],
     ["download", "r.csv"], ["run", "c.csv", "--until", "25:99"]],
)  # fmt: skip
def test_a_usage_error_is_a_json_record_with_log_format_json(args: list[str]) -> None:
    """A bad option value or a missing option: exit 2, and with --log-format json one JSON
    record on stderr instead of click's usage block (the cron line's log stays parseable)."""
    code, _, err = invoke(*args, "--log-format", "json", env={"JOGG_API_KEY": "k"})
    assert code == 2
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert (record["level"], record["event"]) == ("error", "error")
    assert record["message"].startswith("jogg-batch: error: ")
    code, _, err = invoke(*args, env={"JOGG_API_KEY": "k"})
    assert code == 2
    assert "Usage: " in err  # without it, click's usage block as ever


@pytest.mark.parametrize(
    "args",
    [["run", "ftp://host/c.csv"], ["plan"], ["validate", "c.csv", "--bogus"],
     ["status", "r.csv", "--timeout", "soon"]],
)  # fmt: skip
def test_a_usage_error_is_the_json_document_with_json(args: list[str]) -> None:
    """With --json, a usage error is the command's one document on stdout (error and exit 2),
    as every other error is; stderr keeps click's usage block."""
    code, out, err = invoke(*args, "--json", env={"JOGG_API_KEY": "k"})
    assert code == 2
    document = json.loads(out)
    assert document["exit_code"] == 2
    assert document["error"]
    assert document["error"] in err
    assert "Usage: " in err


def test_a_path_too_long_for_the_file_system_is_a_usage_error() -> None:
    """A --state or catalog path past the file system's name limit: exit 2 naming the reason,
    not an OSError traceback (exit 1)."""
    code, _, err = invoke("plan", "c.csv", "--state", "/tmp/" + "a" * 5000 + ".db")
    assert code == 2
    assert "File name too long" in err


def test_a_ledger_busy_past_its_wait_is_exit_4_not_a_traceback() -> None:
    """SQLite's "database is locked" after its 30 s wait (another process holds a write) is the
    state in use: its message and exit 4, as for an overlapping run; other errors keep theirs."""

    @click.command()
    @reports_errors
    def busy() -> None:
        raise sqlite3.OperationalError("database is locked")

    result = CliRunner().invoke(busy, [])
    assert result.exit_code == 4
    assert "the state is busy: another process held it for over 30 s" in result.stderr

    @click.command()
    @reports_errors
    def broken() -> None:
        raise sqlite3.OperationalError("no such table: jobs")

    assert isinstance(CliRunner().invoke(broken, []).exception, sqlite3.OperationalError)


@pytest.mark.parametrize(
    "error", ["database or disk is full", "disk I/O error", "attempt to write a readonly database"]
)
def test_a_state_a_disk_cannot_take_is_exit_7_not_a_traceback(error: str) -> None:
    """SQLite's full disk (or I/O error) while a command writes the state (`run --wait`
    polling the renders on a disk that filled): one line and exit 7, not a traceback and 1."""

    @click.command()
    @reports_errors
    def full() -> None:
        raise sqlite3.OperationalError(error)

    result = CliRunner().invoke(full, [])
    assert result.exit_code == 7
    assert f"the state could not be written ({error})" in result.stderr


def test_ctrl_c_as_the_event_loop_starts_is_exit_130_not_a_cancelled_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Ctrl-C landing just as a command's event loop starts (`asyncio.run` installs its
    handler, then resets its count of them) stops as any Ctrl-C: exit 130 and the line, not a
    CancelledError traceback and exit 1 (seen in CI for `status --wait`)."""
    install = signal.signal

    def in_the_window(signum: int, handler: object) -> object:
        before = install(signum, handler)  # type: ignore[arg-type]
        if signum == signal.SIGINT and isinstance(handler, functools.partial):
            os.kill(os.getpid(), signal.SIGINT)  # asyncio's own handler: the window
        return before

    monkeypatch.setattr(signal, "signal", in_the_window)

    async def polls() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(5)

    @click.command()
    @reports_errors
    def waits() -> None:
        asyncio.run(polls())

    result = CliRunner().invoke(waits, [])
    assert result.exit_code == 130, result.exception
    assert "jogg-batch: interrupted (SIGINT); what was done is recorded" in result.stderr


# `python -m batch ARGS...` with `signal` sent to itself as `module` is first imported.
SIGNALLED_ON_IMPORT = """
import importlib.abc, os, sys
module, signum = sys.argv[1], int(sys.argv[2])

class Signals(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == module:
            os.kill(os.getpid(), signum)
        return None

sys.meta_path.insert(0, Signals())
sys.argv = ["jogg-batch", *sys.argv[3:]]
import runpy
runpy.run_module("batch", run_name="__main__")  # as `python -m batch`
"""


@pytest.mark.parametrize("module", ["importlib.metadata", "click", "pyarrow", "httpx"])
@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_line_starts_is_its_exit_code_and_a_line(
    tmp_path: Path, module: str, sig: int, expected: int
) -> None:
    """A Ctrl-C or SIGTERM in a command's first half second, while it imports (the command
    line's own modules, the package's metadata among them, then its command's), stops as at
    any later moment: its exit code and line, not a traceback and a death by the signal, nor
    click's "Aborted!" and exit 1."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    command = [sys.executable, "-c", SIGNALLED_ON_IMPORT, module, str(int(sig))]
    command += ["validate", str(catalog), "--log-format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == expected, done.stderr
    name = signal.Signals(sig).name
    assert [json.loads(line)["message"] for line in done.stderr.splitlines()] == [
        f"jogg-batch: interrupted ({name}); what was done is recorded"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["report", "{results}", "--format", "html", "--output", "s3://out/report.html"],
        ["run", "{catalog}", "--offline", "--dry-run", "--summary-json", "s3://out/s.json"],
    ],
)
def test_a_store_url_for_a_local_only_file_is_refused_not_written_to_a_folder_named_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """`--output` and `--summary-json` write on this machine only: a store's URL was taken for
    a path, written to `./s3:/out/...` and reported as written. Refused (exit 2), naming it."""
    monkeypatch.chdir(tmp_path)
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    results = tmp_path / "c.results.csv"
    results.write_text("row,status\n1,submitted\n")
    args = [part.format(catalog=catalog, results=results) for part in command]
    code, _, err = invoke(*args, env={"JOGG_API_KEY": "k"})
    assert code == 2, err
    assert "is written on this machine only; name a local file" in err
    assert not (tmp_path / "s3:").exists()
    with pytest.raises(BatchError, match="is written on this machine only"):
        Overrides(summary_json="s3://out/s.json")  # type: ignore[arg-type]


def test_sandbox_run_prints_summary_and_never_the_key(tmp_path: Path) -> None:
    """run --sandbox: exit 1 for an invalid row, a summary on stderr (with --log-format json,
    one JSON record like every other line), no key anywhere."""
    rows = simple_rows(3)
    rows[2]["length"] = "45"
    catalog = write_catalog(tmp_path / "c.csv", rows)
    code, out, err = invoke("run", str(catalog), "--sandbox", "-v", "--log-format", "json")
    assert code == 1
    assert "run finished" in err
    assert "  submitted                 2" in err
    assert "sk-sandbox" not in err + out
    events = [json.loads(line) for line in err.splitlines()]  # every line, the summary too
    assert [e["event"] for e in events if e.get("event") == "summary"] == ["summary"]
    changes = [(e["row_key"], e["status"]) for e in events if e.get("event") == "job"]
    assert sorted(changes) == sorted((row["product_id"], "submitted") for row in rows[:2])
    assert "sk-sandbox" not in (tmp_path / "c.results.csv").read_text()


def test_an_error_is_a_json_record_with_log_format_json(tmp_path: Path) -> None:
    """The cron line's log stays JSON on every line when the run stops at once (exit 2)."""
    code, _, err = invoke(
        "run", str(tmp_path / "missing.csv"), "--log-format", "json", env={"JOGG_API_KEY": "k"}
    )
    assert code == 2
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert (record["level"], record["event"]) == ("error", "error")
    assert "no such catalog file" in record["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_stops_sending_and_keeps_every_row(
    tmp_path: Path, sig: int, expected: int
) -> None:
    """SIGINT/SIGTERM/SIGHUP (an SSH session closed): exit 130/143/129, a complete results file,
    and a resume finishes the job."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(30))
    env = {**os.environ, "JOGG_API_KEY": "sk-sandbox"}
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        command = [sys.executable, "-m", "batch", "run", str(catalog), "--base-url", url,
                   "--rate-limit", "5/s", "--offline"]  # fmt: skip
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        wait_for_submissions(url, 3)  # mid-run: some rows sent, most not
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        assert process.returncode == expected, err
        statuses = list(read_results(tmp_path / "c.results.csv")["status"])
        assert len(statuses) == 30
        assert 0 < statuses.count("submitted") < 30
        assert set(statuses) == {"submitted", "not_attempted"}
        assert "run stopped early: signal" in err
        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert resumed.returncode == 0
        assert len(submissions(url)["submissions"]) == 30


@pytest.mark.slow
def test_a_run_started_under_nohup_goes_on_when_its_terminal_hangs_up(tmp_path: Path) -> None:
    """`nohup jogg-batch run ...`: SIGHUP was ignored when it started, and stays so; the session
    that closes does not stop the run (it stopped with 129)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(12))
    env = {**os.environ, "JOGG_API_KEY": "sk-sandbox"}

    def as_nohup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        command = [sys.executable, "-m", "batch", "run", str(catalog), "--base-url", url,
                   "--rate-limit", "10/s", "--offline"]  # fmt: skip
        process = subprocess.Popen(
            command, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=as_nohup
        )
        wait_for_submissions(url, 3)
        process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert set(read_results(tmp_path / "c.results.csv")["status"]) == {"submitted"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "expected", "waiting"),
    [
        (signal.SIGINT, 130, "status"),
        (signal.SIGTERM, 143, "status"),
        (signal.SIGHUP, 129, "status"),
        (signal.SIGTERM, 143, "run"),
    ],
)
def test_a_signal_while_renders_are_awaited_is_its_exit_code_and_a_line(
    tmp_path: Path, sig: int, expected: int, waiting: str
) -> None:
    """A signal while `status --wait` or `run --wait` polls renders (no run handles it there):
    its exit code and a line saying so, not click's "Aborted!" and exit 1 (the code of failed
    rows), nor a silent death (SIGTERM, SIGHUP: killed by default once a run's loop ended)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    env = {**os.environ, "JOGG_API_KEY": "sk-sandbox"}
    with running_sandbox(SandboxConfig(rate_limit=None, render_seconds=600)) as url:
        args = ["--base-url", url]
        waits = [str(catalog), "--rate-limit", "none", "--offline"]
        if waiting == "status":
            code, _, err = invoke("run", *waits, *args, env={"JOGG_API_KEY": "sk-sandbox"})
            assert code == 0, err
            waits = [str(tmp_path / "c.results.csv")]
        if waiting == "run":  # the summary file the run wrote before the wait said exit 0
            args += ["--summary-json", str(tmp_path / "summary.json")]
        command = [sys.executable, "-m", "batch", waiting, *waits, "--wait", "-v", *args]
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        # Polling has begun once it logs a round (a run logs GETs of its own before).
        began = ("polling the renders",) if waiting == "run" else ("GET", "poll")
        for line in process.stderr:
            if any(mark in line or mark in line.lower() for mark in began):
                break
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    assert process.returncode == expected, err
    name = signal.Signals(sig).name
    assert f"jogg-batch: interrupted ({name}); what was done is recorded" in err
    assert "Aborted!" not in err
    if waiting == "run":
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert (summary["exit_code"], summary["signal"]) == (expected, name)


def test_a_wait_that_times_out_says_so_in_the_summary_file(tmp_path: Path) -> None:
    """`run --wait --timeout` ending with renders still going: the summary file has the
    renders and exit 5, as the exit and `--json` do; it kept the run's exit 0 and no renders,
    written before the wait."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    summary = tmp_path / "summary.json"
    with running_sandbox(SandboxConfig(rate_limit=None, render_seconds=600)) as url:
        code, out, err = invoke(
            "run", str(catalog), "--base-url", url, "--rate-limit", "none", "--offline",
            "--wait", "--timeout", "1s", "--summary-json", str(summary), "--json",
            env={"JOGG_API_KEY": "sk-sandbox"},
        )  # fmt: skip
    assert code == 5, err
    written = json.loads(summary.read_text())
    assert written == json.loads(out)
    assert (written["exit_code"], written["renders"]["processing"]) == (5, 2)


@pytest.mark.parametrize("option", ["--until", "--max-duration"])
def test_an_empty_time_limit_is_refused_not_ignored(tmp_path: Path, option: str) -> None:
    """`--until "$STOP"` with STOP unset in the cron line: refused (exit 2, nothing read or
    sent), as `--until " "` was, where the run went on with no limit at all."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    code, _, err = invoke("run", str(catalog), "--dry-run", "--offline", option, "",
                          env={"JOGG_API_KEY": "sk-sandbox"})  # fmt: skip
    assert code == 2
    assert f"Invalid value for {option}: '' is not a" in err
    assert not (tmp_path / "c.results.csv").exists()


def test_an_until_already_past_today_says_which_time_it_takes(tmp_path: Path) -> None:
    """A cron job that starts after its `--until` (06:31 for 06:30) runs until tomorrow's, and
    says so with the date and time, rather than keeping the lock for a day without a word."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    past = datetime.now() - timedelta(minutes=2)
    args = ["--dry-run", "--offline", "--until", past.strftime("%H:%M")]
    code, _, err = invoke("run", str(catalog), *args, env={"JOGG_API_KEY": "sk-sandbox"})
    assert code == 0, err
    tomorrow = (past + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    assert f"that time is past today; sending until {tomorrow}" in err


def test_retry_from_a_results_file_alone(tmp_path: Path) -> None:
    """The hand-off: on another machine (no state), retry sends only the rows left undone."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(6))
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        env = {"JOGG_API_KEY": "sk-sandbox"}
        args = ("--base-url", url, "--rate-limit", "none", "--offline")
        code, _, _ = invoke("run", str(catalog), "--max-videos", "2", *args, env=env)
        assert code == 1
        handoff = tmp_path / "elsewhere"
        handoff.mkdir()
        results = handoff / "c.results.csv"
        results.write_bytes((tmp_path / "c.results.csv").read_bytes())
        code, _, err = invoke("retry", str(results), *args, env=env)
        assert code == 0, err
        accepted = submissions(url)["submissions"]
    frame = read_results(results)
    assert len(accepted) == 6  # the 2 done rows were not sent again
    assert list(frame["status"]) == ["submitted"] * 6
    assert list(frame["sku"]) == [f"SKU{i}" for i in range(6)]
    assert set(frame["video_id"]) == {s["video_id"] for s in accepted}
    assert not (handoff / "c.jogg-state.db").exists()  # the account's ledger served the retry


def test_csv_results_neutralise_formulas(tmp_path: Path) -> None:
    """A cell a spreadsheet would execute gets a leading quote; reading it back strips it."""
    rows = simple_rows(1)
    rows[0]["title"] = '=HYPERLINK("http://evil")'
    catalog = write_catalog(tmp_path / "c.csv", rows)
    invoke("run", str(catalog), "--dry-run", "--offline", env={"JOGG_API_KEY": "k"})
    with (tmp_path / "c.results.csv").open() as handle:
        raw = next(csv.DictReader(handle))
    assert raw["title"] == '\'=HYPERLINK("http://evil")'
    assert read_results(tmp_path / "c.results.csv")["title"][0] == rows[0]["title"]


@pytest.mark.slow
def test_a_second_signal_exits_at_once_with_consistent_state(tmp_path: Path) -> None:
    """While answers are stalled, a second SIGINT stops at once; a resume pays nothing twice."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(6))
    env = {**os.environ, "JOGG_API_KEY": "sk-sandbox"}
    stalling = SandboxConfig(rate_limit=None, stall_rate=1.0, stall_seconds=20)
    with running_sandbox(stalling) as url:
        command = [sys.executable, "-m", "batch", "run", str(catalog), "--base-url", url,
                   "--rate-limit", "none", "--offline", "--concurrency", "2",
                   "--state", str(tmp_path / "c.jogg-state.db")]  # fmt: skip
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        wait_for_submissions(url, 2)  # both requests in flight are stalled now
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        second = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert time.monotonic() - second < 5  # not the 20 s stall, nor the 30 s grace
        assert process.returncode == 130, err
        with StateStore(tmp_path / "c.jogg-state.db") as state:
            sending = state._db.execute("SELECT count(*) FROM jobs WHERE status = 'sending'")
            assert sending.fetchone() == (2,)  # exactly the two that may have been accepted
        assert len(submissions(url)["submissions"]) == 2


ROOT = Path(__file__).parents[1]


def test_a_signal_again_while_the_first_unwinds_the_command_exits_without_a_traceback() -> None:
    """`timeout` signals the process and then its group: the second SIGTERM came while the
    first unwound the command (a ledger closing after the wait for a cut-off run) and left
    a traceback. It stops at once, with the signal's exit code."""
    script = (
        "import os, signal, time\n"
        "from batch.cli.common import stops_on_signals\n"
        "with stops_on_signals():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "    finally:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert (done.returncode, done.stderr) == (143, "")


@pytest.mark.parametrize(
    ("catalog", "config", "bad_rows"),
    [
        ("catalog.csv", None, [7, 19, 26, 31, 42]),
        ("catalog.parquet", None, [7, 19, 26, 31, 42]),
        ("catalog_custom_columns.csv", "custom_columns.toml", [7, 19]),
    ],
)
def test_bundled_samples_have_exactly_their_deliberate_problems(
    catalog: str, config: str | None, bad_rows: list[int]
) -> None:
    """The sample catalogs (and the mapping config) stay in step with what the README says."""
    args = ["validate", str(ROOT / "sample_data" / catalog)]
    if config:
        args += ["--config", str(ROOT / "configs" / config)]
    code, out, _ = invoke(*args)
    assert code == 1
    assert [int(line.split(" row ")[1].split(",")[0]) for line in out.splitlines()] == bad_rows


# ---- refused before sending: output paths, missing inputs, config values ----


def sandbox_run(catalog: Path, url: str, *args: str) -> tuple[int, str, str]:
    env = {"JOGG_API_KEY": "sk-sandbox"}
    return invoke("run", str(catalog), "--offline", "--base-url", url, "--rate-limit", "none",
                  *args, env=env)  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_results_on_the_catalog_are_refused_before_sending(tmp_path: Path, suffix: str) -> None:
    """--results naming the catalog (however spelled, or a hard link to it): exit 2, nothing
    sent, the catalog intact."""
    csv_catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    catalog = csv_catalog
    if suffix == ".parquet":
        catalog = tmp_path / "c.parquet"
        pq.write_table(pacsv.read_csv(csv_catalog), catalog)
    os.link(catalog, tmp_path / f"link{suffix}")
    original = catalog.read_bytes()
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        for spelling in (
            catalog,
            tmp_path / "sub" / ".." / catalog.name,
            tmp_path / f"link{suffix}",
        ):
            code, _, err = sandbox_run(catalog, url, "--results", str(spelling))
            assert code == 2
            assert f"--results {spelling}: is also the catalog" in err
        assert submissions(url)["submissions"] == []
    assert catalog.read_bytes() == original
    assert not (tmp_path / "sub").exists()


def test_a_gzip_catalog_runs_end_to_end_and_a_cut_short_one_sends_nothing(
    tmp_path: Path,
) -> None:
    """`run c.csv.gz`: every row sent, the results beside it as `c.csv.results.csv` with the
    catalog's own columns. The same export cut short (an interrupted download), most of its
    rows readable: exit 2 naming the file, and no POST at all."""
    plain = write_catalog(tmp_path / "plain.csv", simple_rows(3))
    catalog = tmp_path / "c.csv.gz"
    catalog.write_bytes(gzip.compress(plain.read_bytes()))
    long = write_catalog(tmp_path / "long.csv", simple_rows(2) * 3000)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(long.read_bytes())[:-100])
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        code, _, err = sandbox_run(cut, url)
        assert code == 2
        assert f"{cut}: the gzip data ends before its end marker, so the file is cut" in err
        assert submissions(url)["submissions"] == []
        code, _, err = sandbox_run(catalog, url)
        assert code == 0, err
        assert len(submissions(url)["submissions"]) == 3
    results = read_results(tmp_path / "c.csv.results.csv")
    assert list(results["sku"]) == ["SKU0", "SKU1", "SKU2"]
    assert list(results["title"]) == ["Item 0", "Item 1", "Item 2"]
    assert list(results["status"]) == ["submitted"] * 3


def test_dry_run_requests_file_may_not_overwrite_the_catalog(tmp_path: Path) -> None:
    """The dry run's `.requests.jsonl` is an output too: it may not land on a catalog."""
    catalog = tmp_path / "c.requests.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in simple_rows(2)))
    original = catalog.read_bytes()
    code, _, err = invoke("run", str(catalog), "--dry-run", "--offline", "--results",
                          str(tmp_path / "c.results.csv"), env={"JOGG_API_KEY": "k"})  # fmt: skip
    assert code == 2
    assert f"{catalog}: is also the catalog; writing the dry-run requests file there" in err
    assert catalog.read_bytes() == original


def test_summary_json_and_state_may_not_share_a_file(tmp_path: Path) -> None:
    """Two outputs on one path are refused, naming both."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    state = tmp_path / "s.db"
    code, _, err = invoke("run", str(catalog), "--offline", "--state", str(state),
                          "--summary-json", str(state), env={"JOGG_API_KEY": "k"})  # fmt: skip
    assert code == 2
    assert f"--summary-json {state}: is also the state database" in err


def test_missing_results_folder_is_created_before_sending(tmp_path: Path) -> None:
    """A results path in folders that do not exist yet: they are made, and the run works."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    results = tmp_path / "out" / "today" / "c.results.csv"
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        code, _, err = sandbox_run(catalog, url, "--results", str(results))
        assert code == 0, err
        assert len(submissions(url)["submissions"]) == 2
    assert list(read_results(results)["status"]) == ["submitted", "submitted"]


@pytest.mark.parametrize(
    ("option", "path", "says"),
    [
        ("--results", "plain.txt/c.results.csv", "plain.txt is not a folder"),
        ("--results", "folder", "is a directory"),
        ("--results", "c.results.ods", "results must end in .csv, .parquet or .xlsx"),
        ("--state", "plain.txt/s.db", "plain.txt is not a folder"),
        ("--summary-json", "plain.txt/summary.json", "plain.txt is not a folder"),
        # A folder whose permissions allow writing but that takes no file (tmp_path / an
        # absolute path is that path).
        ("--results", "/proc/out.csv", "cannot create a file in /proc"),
    ],
)
def test_unwritable_outputs_are_refused_before_sending(
    tmp_path: Path, option: str, path: str, says: str
) -> None:
    """An output that could not be written is exit 2 with the path, before any request."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        code, _, err = sandbox_run(catalog, url, option, str(tmp_path / path))
        assert submissions(url)["submissions"] == []
    assert code == 2
    assert says in err
    assert "Traceback" not in err
    if option != "--summary-json":  # validate writes no summary
        code, _, err = invoke("validate", str(catalog), option, str(tmp_path / path))
        assert (code, says in err) == (2, True)  # validate refuses it too


def test_a_broken_catalog_keeps_the_earlier_results_and_state(tmp_path: Path) -> None:
    """A rerun on a catalog broken since: exit 2, results and state byte for byte as they were;
    once fixed, only the rows never accepted are sent."""
    rows = simple_rows(5)
    catalog = write_catalog(tmp_path / "c.csv", rows[:3])
    results, state = tmp_path / "c.results.csv", tmp_path / "c.jogg-state.db"
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        assert sandbox_run(catalog, url, "--state", str(state))[0] == 0
        before = results.read_bytes(), state.read_bytes()
        with catalog.open("a") as handle:
            handle.write(
                f'SKU3,{rows[3]["product_id"]},"Item 3,15\nSKU4,{rows[4]["product_id"]},x,15\n'
            )
        code, _, err = sandbox_run(catalog, url, "--state", str(state))
        assert code == 2
        assert "c.csv line 5 (row 4): a cell opens with a quote that never closes" in err
        assert (results.read_bytes(), state.read_bytes()) == before
        assert len(submissions(url)["submissions"]) == 3
        write_catalog(catalog, rows)
        assert sandbox_run(catalog, url, "--state", str(state))[0] == 0
        assert len(submissions(url)["submissions"]) == 5


def test_plan_refuses_a_broken_catalog(tmp_path: Path) -> None:
    """plan reads the whole file first, as run does: exit 2 naming line and row."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(3))
    with catalog.open("a") as handle:
        handle.write("SKU9,P9,x,15,extra\n")
    code, _, err = invoke("plan", str(catalog))
    assert code == 2
    assert "c.csv line 5 (row 4): has 5 cells where the header has 4" in err


def test_status_of_a_mistyped_results_file_creates_nothing(tmp_path: Path) -> None:
    """status on a results file that does not exist: exit 2 naming it, no state created."""
    code, _, err = invoke("status", str(tmp_path / "catalog.result.csv"), env={"JOGG_API_KEY": "k"})
    assert code == 2
    assert "catalog.result.csv: no such results file" in err
    assert list(tmp_path.iterdir()) == []


@contextmanager
def trickling_api() -> Iterator[str]:
    """A loopback API whose video status answers come a byte at a time and never end (no read
    timeout ever fires); its listing is empty."""

    async def trickle() -> AsyncIterator[bytes]:
        while True:
            yield b" "
            await asyncio.sleep(0.05)

    async def answer(request: Request) -> Response:
        if request.url.path.startswith("/v2/product_video/"):
            return StreamingResponse(trickle(), media_type="application/json")
        return JSONResponse({"code": 0, "msg": "ok", "data": {"videos": []}})

    app = Starlette(routes=[Route("/{path:path}", answer)])
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = server.force_exit = True
        thread.join(timeout=10)
        sock.close()


def test_status_without_wait_ends_at_its_timeout(tmp_path: Path) -> None:
    """A plain `status` against an API that trickles its answers ends at --timeout with exit 5,
    saying how many videos were not checked (a cron job is never held for ever)."""
    state = tmp_path / "s.db"
    with StateStore(state) as store:
        store.record_plan(
            1, [NewJob("f" * 64, "k", "[]", "0" * 12)], [], [RowPlan(1, "f" * 64, "job", None)]
        )
        store.settle(1, "submitted", AttemptRecord("ok", video_id="v1"), run_id=1)
    with trickling_api() as url:
        started = time.monotonic()
        code, _, err = invoke(
            "status", "--state", str(state), "--base-url", url, "--timeout", "1s",
            env={"JOGG_API_KEY": "sk-test"},
        )  # fmt: skip
    assert time.monotonic() - started < 10
    assert code == 5
    assert "still rendering 1   (timed out: 1 not checked)" in err


def test_status_without_a_state_creates_nothing(tmp_path: Path) -> None:
    """A results file whose account has no ledger here: exit 2 saying to pass --state; nothing
    made beside it."""
    results = tmp_path / "c.results.csv"
    results.write_text("row,status\n1,submitted\n")
    code, _, err = invoke("status", str(results), env={"JOGG_API_KEY": "k"})
    assert code == 2
    assert "no ledger of this account" in err
    assert "--state" in err
    assert [p.name for p in tmp_path.iterdir()] == ["c.results.csv"]


def test_state_info_of_an_emptied_account_ledger_says_so_and_makes_nothing() -> None:
    """The account's ledger truncated to nothing (a full disk, a bad copy): `state info` made it
    a new, empty ledger in silence ("runs kept 0"). It says what happened; the file is left."""
    url, key = "https://api.jogg.ai", "sk-emptied"
    ledger = ledger_path(account_url(url), key)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.write_bytes(b"")
    code, _, err = invoke("state", "info", env={"JOGG_API_KEY": key, "JOGG_BASE_URL": url})
    assert code == 2
    assert "the account's ledger holds no tables (emptied or damaged)" in err
    assert ledger.read_bytes() == b""


def test_status_and_report_refuse_a_file_without_their_outcome_columns(tmp_path: Path) -> None:
    """A catalog (or a file cut down too far) given as RESULTS: exit 2 naming the file and the
    column, never a traceback nor a report that says nothing was submitted."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    StateStore(tmp_path / "s.db").close()
    state = ("--state", str(tmp_path / "s.db"))
    code, _, err = invoke("status", str(catalog), *state, env={"JOGG_API_KEY": "k"})
    assert code == 2
    assert f"{catalog}: not a results file of jogg-batch: no 'video_id' column" in err
    code, out, err = invoke("report", str(catalog))
    assert (code, out) == (2, "")
    assert f"{catalog}: not a results file of jogg-batch: no 'status' column" in err


def test_report_refuses_a_missing_results_file_and_its_own_input_as_output(tmp_path: Path) -> None:
    """report: a missing RESULTS is exit 2 and creates nothing; -o RESULTS is refused."""
    code, _, err = invoke(
        "report", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "x" / "r.html")
    )
    assert code == 2
    assert "nope.csv: no such results file" in err
    assert list(tmp_path.iterdir()) == []
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    invoke("run", str(catalog), "--dry-run", "--offline", env={"JOGG_API_KEY": "k"})
    results = tmp_path / "c.results.csv"
    original = results.read_bytes()
    code, _, err = invoke("report", str(results), "-o", str(results))
    assert code == 2
    assert "is RESULTS itself" in err
    assert results.read_bytes() == original


def test_a_bad_rate_in_a_config_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    """`rate_limit = "20 per minute"`: the file, the key, the value and the accepted forms."""
    config = tmp_path / "c.toml"
    config.write_text('[api]\nrate_limit = "20 per minute"\n')
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    code, _, err = invoke("validate", str(catalog), "--config", str(config))
    assert code == 2
    assert (
        f"{config}: api.rate_limit = '20 per minute' is not a rate; write N/s, N/min or N/h "
        "with N above 0 (e.g. 20/min), or none"
    ) in err
    code, _, err = invoke("validate", str(catalog), "--rate-limit", "fast")
    assert code == 2
    assert "--rate-limit 'fast' is not a rate" in err


def test_dash_h_is_help_everywhere() -> None:
    """`-h` works like `--help` on the group and on a command."""
    assert invoke("-h")[:2] == invoke("--help")[:2]
    assert invoke("run", "-h")[:2] == invoke("run", "--help")[:2]


def test_group_help_opens_with_what_the_tool_is_and_an_example() -> None:
    """The first lines say what jogg-batch does, then one command that works without an account."""
    code, out, _ = invoke("--help")
    description = out.split("\n\n")[1]
    assert code == 0
    assert " ".join(description.split()).startswith("Turn a product catalog (CSV, Parquet, JSON")
    assert "jogg-batch run sample_data/catalog.csv --sandbox --wait" in out


@pytest.mark.parametrize(
    "command", [*COMMANDS, "state", "state info", "state prune", "state vacuum"]
)
def test_every_command_help_has_an_example(command: str) -> None:
    """Each command's help ends its description with an example of itself."""
    _, out, _ = invoke(*command.split(), "--help")
    example = out.split("Example", 1)[1].split("Options:", 1)[0]
    assert f"jogg-batch {command}" in example


@pytest.mark.parametrize("command", [*COMMANDS, "state info", "state prune", "state vacuum"])
def test_every_option_of_every_command_says_what_it_is(command: str) -> None:
    """No option is listed bare in a command's help (`--config FILE` said nothing in retry,
    status and download); a command that reads the API key takes --config for api.key_file."""
    _, out, _ = invoke(*command.split(), "--help")
    options = out.split("Options:", 1)[1]
    bare = re.findall(r"^  (-[-\w]+(?: [A-Z|:-]+)?)\n", options, re.M)
    assert bare == [], f"{command}: {bare}"
    if command in ("listen", "status", "download", "retry", "run"):
        assert "--config FILE" in options


def test_an_option_that_does_nothing_without_another_says_so(tmp_path: Path) -> None:
    """`run --timeout` without --wait and `validate --base-url` without --online were taken in
    silence; each now says it does nothing. `--sandbox --base-url` name two APIs: refused."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    code, _, err = invoke("validate", str(catalog), "--base-url", "http://127.0.0.1:9")
    assert code == 0
    assert "--base-url does nothing without --online" in err
    code, _, err = invoke("run", str(catalog), "--sandbox", "--dry-run", "--timeout", "5m")
    assert code == 0, err
    assert "--timeout does nothing without --wait" in err
    code, _, err = invoke("run", str(catalog), "--sandbox", "--dry-run")
    assert "does nothing" not in err  # --timeout's default is no option given
    code, _, err = invoke("run", str(catalog), "--sandbox", "--base-url", "http://127.0.0.1:9")
    assert code == 2
    assert "--sandbox and --base-url name two APIs; give one" in err


def test_format_is_the_output_format_and_the_old_catalog_spelling_still_works(
    tmp_path: Path,
) -> None:
    """--input-format names the catalog's format; the 0.2 `--format` still does, unlisted."""
    catalog = tmp_path / "c.txt"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in simple_rows(2)))
    _, help_text, _ = invoke("validate", "--help")
    assert "--input-format [csv|parquet|jsonl|excel]" in help_text
    assert "--format" not in help_text
    assert invoke("validate", str(catalog), "--input-format", "jsonl")[0] == 0
    assert invoke("validate", str(catalog), "--format", "jsonl")[0] == 0
    assert invoke("validate", str(catalog), "--input-format", "csv")[0] != 0


def test_plan_and_validate_json_is_one_document_on_stdout(tmp_path: Path) -> None:
    """--json: stdout parses as one JSON document; the human lines stay on stderr."""
    rows = simple_rows(3)
    rows[1]["length"] = "45"
    catalog = write_catalog(tmp_path / "c.csv", rows)
    code, out, _ = invoke("plan", str(catalog), "--json")
    planned = json.loads(out)
    assert code == 0
    assert (planned["new"], planned["invalid"], planned["posts"]) == (2, 1, 2)
    assert planned["seconds"] == 6.0  # 2 POSTs at 20/min
    code, out, err = invoke("validate", str(catalog), "--json")
    checked = json.loads(out)
    assert code == checked["exit_code"] == 1
    assert [(p["row"], p["column"], p["value"]) for p in checked["problems"]] == [
        (2, "length", "45")
    ]
    assert err.strip().endswith("1 problem(s)")


def test_run_status_and_download_json(tmp_path: Path, sandbox_url: str) -> None:
    """run, status and download print their summaries as JSON documents on stdout."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    state, results = tmp_path / "s.db", tmp_path / "c.results.csv"
    env = {"JOGG_API_KEY": "sk-sandbox", "JOGG_BASE_URL": sandbox_url}
    code, out, _ = invoke("run", str(catalog), "--state", str(state), "--json", env=env)
    ran = json.loads(out)
    assert (code, ran["exit_code"], ran["statuses"]) == (0, 0, {"submitted": 2})
    code, out, _ = invoke(
        "status", str(results), "--state", str(state), "--wait", "--timeout", "30s", "--json",
        env=env,
    )  # fmt: skip
    polled = json.loads(out)
    assert (code, polled["completed"], polled["exit_code"]) == (0, 2, 0)
    code, out, err = invoke("download", str(results), "--dest", str(tmp_path / "v"), "--json",
                            env=env)  # fmt: skip
    fetched = json.loads(out)
    assert (code, fetched["downloaded"], fetched["failed"]) == (0, 2, 0), err
    assert "2 downloaded" in err


def test_status_without_results_polls_the_accounts_ledger(tmp_path: Path, sandbox_url: str) -> None:
    """`status` alone polls every video of the account's ledger, as its --help says (it was a
    usage error); with no ledger of the account yet, it says so."""
    env = {
        "JOGG_API_KEY": "sk-sandbox",
        "JOGG_BASE_URL": sandbox_url,
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    code, _, err = invoke("status", env=env)
    assert code == 2
    assert "no ledger of this account at" in err
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    assert invoke("run", str(catalog), env=env)[0] == 0
    code, out, err = invoke("status", "--json", env=env)
    polled = json.loads(out)
    assert (code, polled["completed"] + polled["processing"], polled["checks"]) == (0, 2, 2), err


def test_status_of_videos_the_api_does_not_know_says_so_not_that_it_did_not_answer(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Every GET answered 10104 (the key of another account, another API's base URL): the
    renders line said the API did not answer, pointing at the network; it says the API does
    not know them."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    state, results = tmp_path / "s.db", tmp_path / "c.results.csv"
    env = {"JOGG_API_KEY": "sk-sandbox", "JOGG_BASE_URL": sandbox_url}
    assert invoke("run", str(catalog), "--state", str(state), env=env)[0] == 0
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    code, _, err = invoke("status", str(results), "--state", str(state), env=env)
    assert code == 1
    told = " ".join(err.split())
    assert "(the API does not know 2 of them: accepted moments ago, or the key is another " in told
    assert "did not answer" not in told


def test_every_command_keeps_its_log_json_with_log_format_json(
    tmp_path: Path, sandbox_url: str
) -> None:
    """With --log-format json, the summaries of validate, status, download and state prune are
    JSON records like every other line on stderr."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    state, results = tmp_path / "s.db", tmp_path / "c.results.csv"
    env = {"JOGG_API_KEY": "sk-sandbox", "JOGG_BASE_URL": sandbox_url}
    assert invoke("run", str(catalog), "--state", str(state), env=env)[0] == 0
    commands = [
        ("validate", str(catalog)),
        ("status", str(results), "--state", str(state), "--wait", "--timeout", "30s"),
        ("download", str(results), "--dest", str(tmp_path / "v"), "--json"),
        ("state", "prune", "--keep-runs", "1", "--state", str(state)),
    ]
    summaries = []
    for command in commands:
        code, _, err = invoke(*command, "--log-format", "json", env=env)
        assert code == 0, err
        records = [json.loads(line) for line in err.splitlines()]
        summaries += [r["message"] for r in records if r.get("event") == "summary"]
    assert summaries[0].endswith("no problems")
    assert "completed" in summaries[1]
    assert summaries[2:] == ["2 downloaded, 0 already there, 0 failed", "pruned 0 run(s)"]


def test_readme_tables_are_generated_from_the_code() -> None:
    """The README's command table and exit codes are what cog makes of the code now."""
    from cogapp import Cog

    assert Cog().main(["cog", "--check", str(Path(__file__).parents[1] / "README.md")]) == 0


def test_a_run_starts_without_the_other_commands_web_servers_and_writers() -> None:
    """`run` loads neither the sandbox's nor the listener's web server, nor the downloader, the
    report or the xlsx writer: its first request does not wait for them."""
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from batch.cli import main\n"
        "assert CliRunner().invoke(main, ['run', '--help']).exit_code == 0\n"
        "heavy = ('starlette', 'uvicorn', 'xlsxwriter', 'batch.sandbox', 'batch.follow.webhook',\n"
        "         'batch.follow.download', 'batch.follow.report')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    assert python_output(probe) == "[]\n"


def test_a_misspelt_command_is_refused_with_the_close_names() -> None:
    """An unknown command exits 2 and names the commands it may have meant."""
    result = CliRunner().invoke(main, ["stat"])
    assert result.exit_code == 2
    assert "No such command 'stat'. (Did you mean one of: 'state', 'status'?)" in result.stderr


def test_blank_rows_an_export_leaves_are_not_failures(tmp_path: Path) -> None:
    """Rows whose every cell is empty (an Excel export's trailing `,,` lines, or spaces) are
    `blank`: nothing is sent for them, validate lists no problem, and the run exits 0."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    with catalog.open("a") as handle:
        handle.write(",,,\n ,  ,,\n,,,\n")
    code, _, err = invoke("validate", str(catalog), env={"JOGG_API_KEY": "k"})
    assert (code, err) == (0, f"{catalog}: no problems\n")
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        code, _, err = sandbox_run(catalog, url)
        assert len(submissions(url)["submissions"]) == 2
    assert code == 0
    assert "  blank                     3" in err
    results = read_results(tmp_path / "c.results.csv")
    assert list(results["status"]) == ["submitted", "submitted", "blank", "blank", "blank"]


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_sandbox_refuses_a_port_no_socket_has(port: str) -> None:
    """A port outside 0-65535 is a usage error (exit 2) naming the option, not a traceback."""
    result = CliRunner().invoke(main, ["sandbox", "--port", port])
    assert result.exit_code == 2
    assert "--port" in result.stderr
    assert "0<=x<=65535" in result.stderr


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_plan_and_validate_print_their_json_document_on_an_error_too(
    tmp_path: Path, command: str
) -> None:
    """A catalog refused as a whole (exit 2): the one --json document still comes, with the
    error and the exit code."""
    code, out, err = invoke(command, str(tmp_path / "missing.csv"), "--json")
    assert code == 2
    assert "no such catalog file" in err
    assert json.loads(out)["exit_code"] == 2


def test_a_run_that_stops_with_an_error_still_leaves_its_json(tmp_path: Path) -> None:
    """Exit 2 (here a catalog that is not there): --json prints one document with the exit
    code, and --summary-json replaces last night's file, which said all went well."""
    summary = tmp_path / "summary.json"
    summary.write_text('{"exit_code": 0}\n')
    missing = tmp_path / "missing.csv"
    code, out, err = invoke(
        "run", str(missing), "--summary-json", str(summary), "--json", "--offline",
        env={"JOGG_API_KEY": "sk-sandbox"},
    )  # fmt: skip
    assert code == 2
    assert "no such catalog file" in err
    document = json.loads(out)
    assert document["exit_code"] == 2
    assert "no such catalog file" in document["error"]
    written = json.loads(summary.read_text())
    assert (written["exit_code"], written["error"]) == (2, document["error"])
    other = tmp_path / "notes.txt"  # not a summary: never written over
    other.write_text("keep me\n")
    code, _, _ = invoke("run", str(missing), "--summary-json", str(other), "--offline")
    assert code == 2
    assert other.read_text() == "keep me\n"


def test_a_folder_of_parquet_parts_says_how_to_make_it_one_file(tmp_path: Path) -> None:
    """Spark writes a table as a folder of part files: the refusal (exit 2, nothing read or
    sent) says how to make it the one file a catalog is."""
    folder = tmp_path / "catalog.parquet"
    folder.mkdir()
    table = pacsv.read_csv(write_catalog(tmp_path / "c.csv", simple_rows(2)))
    pq.write_table(table, folder / "part-00000-1b2c.snappy.parquet")
    code, _, err = invoke("validate", str(folder))
    assert code == 2
    assert "is a directory, not a file (a table Spark or Hive wrote in parts)" in err
    assert f"pyarrow.parquet.read_table({str(folder)!r})" in err


def test_a_folder_of_csv_parts_gets_advice_for_text_not_parquet(tmp_path: Path) -> None:
    """Spark's CSV output is a folder of `part-*.csv` files: the hint says to run or join the
    parts, not to read them with pyarrow.parquet."""
    folder = tmp_path / "catalog.csv"
    folder.mkdir()
    write_catalog(folder / "part-00000-1b2c.csv", simple_rows(2))
    (folder / "_SUCCESS").touch()
    code, _, err = invoke("validate", str(folder))
    assert code == 2
    said = " ".join(err.split())
    assert "(a table Spark or Hive wrote in parts): run each part file on its own, or join" in said
    assert "pyarrow.parquet" not in said


def test_a_folder_partitioned_by_a_request_column_is_never_run_part_by_part(
    tmp_path: Path,
) -> None:
    """A table partitioned by folder (`language=spanish/`): its parts lack the column their
    folder names, so the hint says to write it as one file, never to run the parts, and a part
    run alone is refused (exit 2) rather than sent with the default language."""
    folder = tmp_path / "catalog"
    table = pacsv.read_csv(write_catalog(tmp_path / "c.csv", simple_rows(2)))
    pq.write_to_dataset(
        table.append_column("language", pa.array(["spanish", "english"])),
        folder,
        partition_cols=["language"],
    )
    code, _, err = invoke("validate", str(folder))
    assert code == 2
    assert "(a table partitioned by folder, such as language=spanish/)" in err
    assert "run each part file" not in err
    part = next((folder / "language=spanish").glob("*.parquet"))
    code, _, err = invoke("validate", str(part))
    assert code == 2
    said = " ".join(err.split())
    assert "lies in the folder 'language=spanish', which gives its rows' language" in said


@pytest.mark.parametrize("suffix", ["/api", "/v2"])
def test_a_base_url_that_is_not_the_apis_is_a_config_error(
    tmp_path: Path, sandbox_url: str, suffix: str
) -> None:
    """A base URL with a path answers 404 for the account check: exit 2 saying to fix the base
    URL (it said "run again later", exit 1, which no retry can fix); nothing sent."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    env = {"JOGG_API_KEY": "sk-sandbox"}
    code, _, err = invoke(
        "run", str(catalog), "--base-url", sandbox_url + suffix, "--rate-limit", "none", env=env
    )
    assert code == 2, err
    assert f"{sandbox_url}{suffix} is not JoggAI's API: GET /v2/user/whoami answered 404" in err
    assert "run again later" not in err
    assert submissions(sandbox_url)["submissions"] == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_json_on_an_ascii_stdout_is_escaped_not_lossy(tmp_path: Path) -> None:
    """PYTHONIOENCODING=ascii (a CI runner's): `--json` wrote `caf?.csv` for `café.csv`, a path
    a script could not open. JSON escapes it (`\\u00e9`), and reads back whole."""
    catalog = write_catalog(tmp_path / "café.csv", simple_rows(1))
    done = subprocess.run(
        [sys.executable, "-m", "batch", "validate", str(catalog), "--json"],
        capture_output=True, check=False, env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.isascii()
    assert json.loads(done.stdout)["catalog"] == str(catalog)


def test_a_json_document_stdout_cannot_take_is_exit_7_without_a_traceback(tmp_path: Path) -> None:
    """`--json` into a full disk (a cron job's log): one error line and exit 7, never a
    traceback and exit 1 (which says rows failed)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "batch", "plan", str(catalog), "--json",
             "--state", str(tmp_path / "s.db")],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False,
            env={**os.environ, "JOGG_API_KEY": "sk-sandbox"},
        )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "cannot write to standard output" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
@pytest.mark.parametrize("command", ["plan", "validate"])
def test_text_output_stdout_cannot_take_is_exit_7_without_a_traceback(
    tmp_path: Path, command: str
) -> None:
    """A command's text output into a full disk: exit 7 and one line, not a traceback."""
    catalog = write_catalog(tmp_path / "c.csv", [{**simple_rows(1)[0], "length": "7"}])
    state = ["--state", str(tmp_path / "s.db")] if command == "plan" else []
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "batch", command, str(catalog), *state],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "cannot write to standard output: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_log_lines_a_full_disk_cannot_take_make_a_clean_run_exit_7(tmp_path: Path) -> None:
    """A cron line's `2>> jogg.log` on a full disk: every line, the summary too, was lost and
    the run exited 0. It still runs to its end (what it sent is recorded) and exits 7."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "batch", "run", str(catalog), "--sandbox",
             "--state", str(tmp_path / "s.db")],
            stdout=subprocess.PIPE, stderr=full, text=True, check=False,
        )  # fmt: skip
    assert done.returncode == 7
    outcomes = read_results(tmp_path / "c.results.csv")
    assert list(outcomes["status"]) == ["submitted", "submitted"]


def test_a_json_document_a_pipe_cuts_short_is_exit_7(tmp_path: Path) -> None:
    """`validate --json` of a large document into a reader that stops after its first line:
    exit 7, said, where the document was cut in silence (Python drops what a closed pipe did
    not take) and the exit was validate's own 1."""
    rows = [{**row, "product_id": f"bad id {n}"} for n, row in enumerate(simple_rows(1) * 3000)]
    catalog = write_catalog(tmp_path / "c.csv", rows)
    validate = subprocess.Popen(
        [sys.executable, "-m", "batch", "validate", str(catalog), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert validate.stdout is not None
    assert validate.stdout.readline() == "{\n"
    validate.stdout.close()
    _, err = validate.communicate()
    assert validate.returncode == 7, err
    assert "cannot write to standard output: Broken pipe" in err


def test_a_json_document_into_a_non_blocking_pipe_is_written_whole(tmp_path: Path) -> None:
    """A reader that set its pipe non-blocking (as an event loop's subprocess does) and reads
    slowly: the document is written whole as the pipe drains, not cut off as a failed write."""
    rows = [{**row, "product_id": f"bad id {n}"} for n, row in enumerate(simple_rows(1) * 3000)]
    catalog = write_catalog(tmp_path / "c.csv", rows)
    read, write = os.pipe()
    os.set_blocking(write, False)
    validate = subprocess.Popen(
        [sys.executable, "-m", "batch", "validate", str(catalog), "--json"],
        stdout=write, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(write)
    chunks = []
    with os.fdopen(read, "rb") as reader:
        time.sleep(1.0)  # the writer fills the pipe and finds it full
        while chunk := reader.read1(1 << 16):
            chunks.append(chunk)
    _, err = validate.communicate()
    assert validate.returncode == 1, err  # rows invalid: validate's own verdict
    assert len(json.loads(b"".join(chunks))["problems"]) == 3000


def test_a_closed_stdout_is_exit_7(tmp_path: Path) -> None:
    """Started with stdout closed (`>&-`): exit 7 naming it, not an AttributeError."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m batch validate "$1" --json >&-', sys.executable, catalog],
        stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "cannot write to standard output: it is closed" in done.stderr


def test_a_results_file_the_run_could_not_write_at_the_end_is_not_called_an_earlier_runs(
    tmp_path: Path,
) -> None:
    """The summary's results line when the final write failed: the file there may be this run's
    own mid-run copy (rows paid since shown unsent), so the line says it is not the run's final
    results, and never that another run wrote it; with no file there, that none was written."""
    results = tmp_path / "c.results.csv"
    summary = RunSummary("c.csv", str(results), "s.db", False, PlanCounts())
    summary.results_written = False
    shown = render_summary(summary).splitlines()[-1]
    assert shown == f"  results: {results} (none written: see above)"
    results.write_text("row,status\n")
    shown = render_summary(summary).splitlines()[-1]
    assert shown == f"  results: {results} (not this run's final results: see above)"


def test_renders_the_state_does_not_know_are_named_as_such_not_as_unanswered() -> None:
    """The renders line names videos no check asked about (ids a spreadsheet rewrote, another
    ledger's file) for what they are, with the way out, instead of blaming the API."""
    summary = PollSummary(completed=1, failed=0, processing=0, timed_out=False, checks=1)
    line = render_renders(replace(summary, untracked=2))
    assert line.endswith(
        "still rendering 0   (not in the state: 2, so not checked: video ids a spreadsheet "
        "rewrote, or a file of another ledger; give its --state)"
    )
    assert "API did not answer" not in line
    line = render_renders(replace(summary, unnamed=1))
    assert line.endswith(
        "still rendering 0   (no video id: 1 row(s) the file says were accepted, so not checked: "
        "a cleared cell? run the catalog again to write the ids back)"
    )
