"""The command line as a user meets it: help, exit codes and the lines printed."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch.cli import main
from batch.results import read_results
from batch.sandbox import SandboxConfig, running_sandbox
from batch.state import StateStore
from tests.helpers import submissions, write_catalog
from tests.test_runner import simple_rows

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
    """plan refuses (exit 4) rather than hold up a running job with its own writes."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    holder = StateStore(tmp_path / "c.jogg-state.db")
    holder.lock()
    try:
        code, _, err = invoke("plan", str(catalog))
    finally:
        holder.close()
    assert code == 4
    assert "in use by a running jogg-batch" in err


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


def test_sandbox_run_prints_summary_and_never_the_key(tmp_path: Path) -> None:
    """run --sandbox: exit 1 for an invalid row, a summary on stderr, no key anywhere."""
    rows = simple_rows(3)
    rows[2]["length"] = "45"
    catalog = write_catalog(tmp_path / "c.csv", rows)
    code, out, err = invoke("run", str(catalog), "--sandbox", "-v", "--log-format", "json")
    assert code == 1
    assert "run finished" in err
    assert "  submitted                 2" in err
    assert "sk-sandbox" not in err + out
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    changes = [(e["row_key"], e["status"]) for e in events if e.get("event") == "job"]
    assert sorted(changes) == sorted((row["product_id"], "submitted") for row in rows[:2])
    assert "sk-sandbox" not in (tmp_path / "c.results.csv").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_sending_and_keeps_every_row(
    tmp_path: Path, sig: int, expected: int
) -> None:
    """SIGINT/SIGTERM: exit 130/143, a complete results file, and a resume finishes the job."""
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
    with (handoff / "c.jogg-state.db").open("rb"):
        pass  # the retry kept its own state beside the results file


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
                   "--rate-limit", "none", "--offline", "--concurrency", "2"]  # fmt: skip
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
