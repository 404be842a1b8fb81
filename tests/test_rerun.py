"""`jogg-batch retry` (batch.rerun): the rows a results file left undone, sent as the run planned
them, against the sandbox over a real socket."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batch.cli import main
from batch.sandbox import SandboxConfig, running_sandbox
from batch.store.results import read_results
from tests.helpers import settle_past_runs, simple_rows, submissions, write_catalog

SANDBOX = {"rate_limit": None, "render_seconds": 0.0}  # the `sandbox_url` of tests/conftest.py
ENV = {"JOGG_API_KEY": "sk-sandbox"}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=ENV)
    return result.exit_code, result.stderr


def _sent(url: str) -> list[dict[str, Any]]:
    return submissions(url)["submissions"]  # type: ignore[no-any-return]


def _no_length_catalog(path: Path, count: int) -> Path:
    """`count` valid rows whose length cell is empty: the run's default decides it."""
    return write_catalog(path, [{**row, "length": ""} for row in simple_rows(count)])


@pytest.fixture
def half_run(tmp_path: Path, sandbox_url: str) -> tuple[Path, tuple[str, ...]]:
    """`run --length 15 --max-videos 1` of 5 rows: 1 submitted, 4 not_attempted."""
    catalog = _no_length_catalog(tmp_path / "c.csv", 5)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--length", "15", "--max-videos", "1", *state, *args)
    assert code == 1, err
    assert len(_sent(sandbox_url)) == 1
    return catalog, args


def test_retry_names_the_rows_left_out_of_the_file_it_does_not_send(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """Rows a person deleted from the results file (or filtered out) that were never paid
    for: the retry sent the rest and said nothing of them, exit 0. It names them; a retry of
    the whole file again names none."""
    _, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    results = tmp_path / "c.results.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(line for n, line in enumerate(lines) if n not in (1, 3)))
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 0, err
    assert "1 row(s) of the run that wrote it are no longer in it and not paid for (rows 3)" in err
    assert len(_sent(sandbox_url)) == 4  # row 1 was paid before; rows 2, 4 and 5 now


def test_retry_sends_the_requests_the_run_planned(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """Retried rows carry the run's `--length`, and the same run again sends nothing."""
    catalog, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    sent = _sent(sandbox_url)
    assert len(sent) == 5
    assert {s["payload"]["video_spec"]["length"] for s in sent} == {"15"}
    code, err = invoke("run", str(catalog), "--length", "15", *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5  # nothing was paid twice
    assert list(read_results(tmp_path / "c.results.csv")["status"]) == ["already_submitted"] * 5


def test_retry_of_a_results_file_no_run_wrote_warns_and_uses_the_settings(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A results file no run in the state wrote: a warning naming it, then the settings."""
    _, args = half_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results = elsewhere / "c.results.csv"
    shutil.copy(tmp_path / "c.results.csv", results)
    settle_past_runs()  # another ledger, later on
    code, err = invoke("retry", str(results), "--state", str(elsewhere / "s.db"), *args)
    assert code == 0, err
    assert f"{results}: no run in the state" in " ".join(err.split())
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)[1:]] == ["30"] * 4


def test_a_renamed_copy_of_a_results_file_is_retried_with_its_runs_defaults(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """`c.results (1).csv`, as a mail attachment comes back, retried without the run's
    `--length 15`: the run is found by the video the file lists at its row, so the rows are
    the requests it planned (15 s), never new ones the next run would pay for again."""
    catalog, args = half_run
    copy = tmp_path / "c.results (1).csv"
    shutil.copy(tmp_path / "c.results.csv", copy)
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("retry", str(copy), *state, *args)
    assert code == 0, err
    assert "no run in the state" not in err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)] == ["15"] * 5
    code, err = invoke("run", str(catalog), "--length", "15", *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5  # nothing paid twice


def test_retry_without_a_status_column_is_a_usage_error(tmp_path: Path, sandbox_url: str) -> None:
    """A results file lacking `status`: exit 2 naming the file and the column, nothing sent."""
    results = write_catalog(tmp_path / "c.results.csv", simple_rows(2))
    code, err = invoke(
        "retry", str(results), "--state", str(tmp_path / "s.db"), "--base-url", sandbox_url
    )
    assert code == 2, err
    message = f"{results}: not a results file of jogg-batch: no 'status', 'code' columns"
    assert message in " ".join(err.split())
    assert _sent(sandbox_url) == []


def test_retry_summary_names_the_results_file(
    tmp_path: Path, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """The summary (and --summary-json) names the results file retried, not a temporary one."""
    _, args = half_run
    results, summary = tmp_path / "c.results.csv", tmp_path / "summary.json"
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("retry", str(results), *state, "--summary-json", str(summary), *args)
    assert code == 0, err
    assert f"run finished: {results}\n" in err
    written = json.loads(summary.read_text())
    assert (written["catalog"], written["results"]) == (str(results), str(results))


def _first_row_unknown(results: Path, **cells: str) -> None:
    """Row 1 of the results file says its answer was lost (and holds `cells` besides)."""
    frame = read_results(results)
    for column, value in {"status": "unknown", "video_id": "", **cells}.items():
        frame.at[0, column] = value
    frame.to_csv(results, index=False)


def _state_from_before_the_request(state: Path) -> list[tuple[str, str]]:
    """The state as restored from a backup taken before its submitted job was sent; returns
    that job's (fingerprint, tag)."""
    with sqlite3.connect(state) as db:
        sent = db.execute("SELECT fingerprint, tag FROM jobs WHERE status = 'submitted'").fetchall()
        db.execute("DELETE FROM attempts")
        db.execute("DELETE FROM jobs WHERE status = 'submitted'")
    db.close()
    return sent


def test_an_unknown_row_the_state_lost_is_entered_as_the_runs_request(
    tmp_path: Path, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """An `unknown` row entered from the results file gets the run's fingerprint (and tag)."""
    _, args = half_run
    results = tmp_path / "c.results.csv"
    _first_row_unknown(results)
    sent = _state_from_before_the_request(tmp_path / "s.db")
    invoke("retry", str(results), "--state", str(tmp_path / "s.db"), *args)
    with sqlite3.connect(tmp_path / "s.db") as db:
        entered = db.execute("SELECT fingerprint, tag FROM jobs WHERE status = 'unknown'")
        assert entered.fetchall() == sent
    db.close()


def test_an_unknown_row_the_file_now_gives_another_request_is_refused(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """The state holds the row's lost request; the file's row rebuilds another (here a length
    written in): retry sends nothing (exit 2) naming the row, since the first may have been
    made, and says to run the catalog again."""
    _, args = half_run
    results = tmp_path / "c.results.csv"
    _first_row_unknown(results, length="60")
    with sqlite3.connect(tmp_path / "s.db") as db:  # its answer was lost
        db.execute("UPDATE jobs SET status = 'unknown', video_id = NULL WHERE status = 'submitted'")
    db.close()
    code, err = invoke("retry", str(results), "--state", str(tmp_path / "s.db"), *args)
    assert code == 2
    assert "otherwise than it was sent: row 1." in " ".join(err.split())
    assert "Run the catalog again" in err
    assert len(_sent(sandbox_url)) == 1


def test_a_dry_run_retry_enters_nothing_in_the_ledger(
    tmp_path: Path, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """An `unknown` row the state lost is not entered as a job by a dry run."""
    _, args = half_run
    results = tmp_path / "c.results.csv"
    _first_row_unknown(results)
    _state_from_before_the_request(tmp_path / "s.db")
    with sqlite3.connect(tmp_path / "s.db") as db:
        before = db.execute("SELECT count(*) FROM jobs").fetchone()
    db.close()
    code, err = invoke("retry", str(results), "--dry-run", "--state", str(tmp_path / "s.db"), *args)
    assert code in (0, 1), err
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == before
    db.close()


def test_a_dry_run_retry_leaves_the_rows_for_the_real_one(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """`retry --dry-run` marks the rows `planned`; the real retry after it still sends them."""
    _, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    results = str(tmp_path / "c.results.csv")
    code, err = invoke("retry", results, "--dry-run", *state, *args)
    assert code == 0, err
    assert list(read_results(Path(results))["status"]).count("planned") == 4
    assert len(_sent(sandbox_url)) == 1
    code, err = invoke("retry", results, *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5
    assert set(read_results(Path(results))["status"]) == {"submitted"}


def test_a_retry_from_a_workbook_that_cut_a_cell_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Excel holds 32,767 characters a cell: a row rebuilt from a cut script would be another
    paid video, so retry from that workbook stops (exit 2, nothing sent) and says what to do."""
    rows = [{**row, "override_script": "x" * 40_000} for row in simple_rows(2)]
    catalog = write_catalog(tmp_path / "c.csv", rows)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    results = tmp_path / "c.results.xlsx"
    code, err = invoke("run", str(catalog), "--max-videos", "1", "--results", str(results),
                       *state, *args)  # fmt: skip
    assert code == 1, err
    assert "2 cell(s) are longer than Excel's 32767 characters and were cut" in err
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    assert "row 2, column 'override_script' holds 32,767 characters, Excel's most" in err
    assert len(_sent(sandbox_url)) == 1


def _hide_rows(book: Path, numbers: list[int]) -> None:
    """Hides rows of the workbook's first sheet, as a filter in Excel does (`hidden="1"`)."""
    with zipfile.ZipFile(book) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    for number in numbers:
        opening = f'<row r="{number}"'.encode()
        assert opening in parts[sheet]
        parts[sheet] = parts[sheet].replace(opening, opening + b' hidden="1"')
    with zipfile.ZipFile(book, "w") as package:
        for name, data in parts.items():
            package.writestr(name, data)


def test_a_retry_of_a_filtered_results_workbook_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A results workbook a person filtered to look at some rows: its hidden rows are rows of
    the file, and retry sent them with the others. It stops before sending (exit 2), naming
    them; hidden rows it would not send (the row already sent, the header) do not stop it."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(4))
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    results = tmp_path / "c.results.xlsx"
    code, err = invoke("run", str(catalog), "--max-videos", "1", "--results", str(results),
                       *state, *args)  # fmt: skip
    assert code == 1, err
    _hide_rows(results, [1, 2, 3, 4])  # the header, the row sent, two rows left to send
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    assert "rows 3, 4 are hidden in the workbook (by a filter, or by hand)" in " ".join(err.split())
    assert len(_sent(sandbox_url)) == 1
    shown = tmp_path / "shown.xlsx"
    code, err = invoke("run", str(catalog), "--max-videos", "1", "--results", str(shown),
                       *state, *args)  # fmt: skip
    _hide_rows(shown, [2])  # the row sent: a filter showing the rows left to send
    code, err = invoke("retry", str(shown), *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 4


def _custom_columns_run(tmp_path: Path, url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`run --config custom_columns.toml --max-videos 1` of the sample with its own header
    names (Duration, Format, Avatar...): one row sent, the rest not_attempted. Returns the
    --config and the other options."""
    root = Path(__file__).parents[1]
    shutil.copy(root / "sample_data" / "catalog_custom_columns.csv", tmp_path / "c.csv")
    args = ("--base-url", url, "--rate-limit", "none", "--offline")
    config = ("--config", str(root / "configs" / "custom_columns.toml"))
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(tmp_path / "c.csv"), "--max-videos", "1", *config, *state, *args)
    assert code == 1, err
    return config, args


def test_a_retry_rebuilds_rows_with_the_runs_column_names(tmp_path: Path, sandbox_url: str) -> None:
    """A run that mapped its headers with --config: retry without it sends the requests that
    run planned (its mapping is in the state), so the run again sends nothing more."""
    config, args = _custom_columns_run(tmp_path, sandbox_url)
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code in (0, 1), err
    sent = len(_sent(sandbox_url))
    assert sent > 1
    assert {s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)} != {"30"}
    code, err = invoke("run", str(tmp_path / "c.csv"), *config, *state, *args)
    assert "submitted 0" not in err
    assert len(_sent(sandbox_url)) == sent  # every retried row was the request the run planned


def test_a_retry_of_a_file_no_run_wrote_says_to_pass_the_runs_config(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Another state knows neither the run nor its mapping: retry without the --config stops
    (exit 2), naming the results file (never the temporary catalog of its rows) and the
    --config to pass."""
    config, args = _custom_columns_run(tmp_path, sandbox_url)
    settle_past_runs()  # another ledger, later on
    state = ("--state", str(tmp_path / "other.db"))
    results = str(tmp_path / "c.results.csv")
    code, err = invoke("retry", results, *state, *args)
    assert code == 2
    # Its headers are the catalog's own (`Duration`, `Subtitles`): unmapped, they stop it.
    assert f"{results} (its rows to retry): column 'Duration' is not a request column" in err
    assert "retry with the same --config" in err
    assert "jogg-retry-" not in err
    code, err = invoke("retry", results, *config, *state, *args)
    assert code in (0, 1), err


def test_a_retry_given_other_defaults_keeps_the_runs_and_says_so(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """Settings whose defaults differ from the run's are not what the run planned: the run's
    are used, with a warning that says so."""
    _, args = half_run
    settings = tmp_path / "len60.toml"
    settings.write_text('[defaults]\nlength = "60"\n')
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke(
        "retry", str(tmp_path / "c.results.csv"), "--config", str(settings), *state, *args
    )
    assert code == 0, err
    assert "not the settings' (which differ)" in " ".join(err.split())
    assert {s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)} == {"15"}


def test_after_a_retry_duplicate_rows_show_the_video_and_row_of_the_file(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A duplicate left out of the retry shows the video its first row now has; two retried rows
    that turn out to be one request name each other by the file's row numbers."""
    rows = simple_rows(3)
    catalog = write_catalog(tmp_path / "c.csv", [rows[0], rows[1], rows[0], rows[2]])
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--dry-run", *state, *args)
    assert code == 0, err
    results = tmp_path / "c.results.csv"
    before = read_results(results)
    assert list(before["status"]) == ["planned", "planned", "duplicate", "planned"]
    assert list(before["video_id"]) == ["", "", "", ""]
    # The person makes row 4 the request of row 2 (say, a fixed typo) before retrying.
    catalog_columns = [c for c in before.columns if c in rows[1]]
    before.loc[3, catalog_columns] = before.loc[1, catalog_columns]
    before.to_csv(results, index=False)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 0, err
    after = read_results(results)
    assert list(after["status"]) == ["submitted", "submitted", "duplicate", "duplicate"]
    videos = list(after["video_id"])
    assert videos[2] == videos[0] != ""
    assert videos[3] == videos[1] != ""
    assert list(after["message"][2:]) == ["same request as row 1", "same request as row 2"]
    assert len(_sent(sandbox_url)) == 2


def test_a_retry_of_rows_refused_for_good_names_them_and_the_flag(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A file whose only row to retry failed with a code the API gives for good (40000): the
    retry said the file had no failed rows, beside the failed row. It names them, and the flag
    that sends them."""
    results = tmp_path / "c.results.csv"
    write_catalog(results, [{**simple_rows(1)[0], "status": "failed", "code": "40000"}])
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    code, err = invoke("retry", str(results), "--state", str(tmp_path / "s.db"), *args)
    assert code == 1
    assert (
        "no other rows to retry (1 row(s) the API refused for good, by their codes: sent again "
        "only with --retry-permanent"
    ) in " ".join(err.split())
    assert len(_sent(sandbox_url)) == 0


def test_a_retry_sending_other_rows_says_which_it_leaves_and_where_they_are_fixed(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Rows refused for good and invalid rows beside rows retried: a cell corrected in this
    file on them is not sent, and the retry says so and where a correction goes (it said so
    only when nothing else was retried)."""
    results = tmp_path / "c.results.csv"
    first, second, third = simple_rows(3)
    write_catalog(
        results,
        [
            {**first, "status": "failed", "code": "40000"},
            {**second, "status": "invalid", "code": ""},
            {**third, "status": "failed", "code": "50000"},
        ],
    )
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    code, err = invoke("retry", str(results), "--state", str(tmp_path / "s.db"), *args)
    told = " ".join(err.split())
    assert "not retried: 1 row(s) the API refused for good" in told
    assert "a correction goes in the catalog, which `run` sends" in told
    assert "1 invalid row(s): they are fixed in the catalog" in told
    assert [s["product_id"] for s in _sent(sandbox_url)] == [third["product_id"]]
    assert code == 1


def test_a_retry_with_nothing_to_retry_sends_nothing_and_keeps_the_files_verdict(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Only an invalid row left (retry does not guess at fixes): nothing is sent, the file is
    left as it was, the exit says a row still needs a person, and the line where it is fixed
    (a fix typed into the results file was passed over in silence); no temporary file is
    named."""
    rows = simple_rows(2)
    catalog = write_catalog(tmp_path / "c.csv", [rows[0], {**rows[1], "length": "99"}])
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), *state, *args)
    assert code == 1, err
    results = tmp_path / "c.results.csv"
    written = results.read_bytes()
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 1
    assert (
        "no failed, not-attempted, unknown or planned rows to retry (1 invalid row(s): they "
        "are fixed in the catalog, which `run` sends, not in this file)"
    ) in err.replace("\n", " ")
    assert "jogg-retry" not in err
    assert results.read_bytes() == written
    assert len(_sent(sandbox_url)) == 1


def test_a_retry_of_a_dry_runs_file_sends_the_requests_it_planned(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`run --dry-run --length 15` plans 15-second videos; `retry` of its results file sends
    those, not the settings' 30 (the dry run records which defaults wrote the file), and says
    nothing about the file coming from another state."""
    catalog = _no_length_catalog(tmp_path / "c.csv", 2)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--dry-run", "--length", "15", *state, *args)
    assert code == 0, err
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    assert "no run in the state" not in err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)] == ["15", "15"]


def test_a_dry_runs_file_of_products_run_before_with_other_settings_is_retried(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Last night's run made 30-second videos of these products; today's `run --dry-run
    --length 15` plans 15-second ones, and `retry` of its file sends them: a dry run records no
    requests, so a planned row is not held to one (only rows a run recorded are)."""
    catalog = _no_length_catalog(tmp_path / "c.csv", 2)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), *state, *args)
    assert code == 0, err
    code, err = invoke("run", str(catalog), "--dry-run", "--length", "15", *state, *args)
    assert code == 0, err
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)] == [
        "30", "30", "15", "15"
    ]  # fmt: skip


def test_a_cell_holding_a_lone_carriage_return_is_retried_as_written(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A cell `a<CR>b` (an old Mac line end pasted into a cell) reaches the retried request
    and the results file unchanged; the rows to retry are no longer cut at it."""
    rows = simple_rows(2)
    catalog = write_catalog(tmp_path / "c.csv", [{**row, "title": "a\rb"} for row in rows])
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--dry-run", *state, *args)
    assert code == 0, err
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    after = read_results(tmp_path / "c.results.csv")
    assert list(after["title"]) == ["a\rb", "a\rb"]
    assert list(after["status"]) == ["submitted", "submitted"]


def test_a_results_file_cut_down_to_its_status_and_code_is_still_retried(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Retry needs only `status` and `code` of the outcome columns: a file a person cut down
    (no `row`, no `message`, no `video_id`) is retried, and gets its outcome columns back; a
    retry of it as a first retry wrote it back (its `row` column empty) was refused."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--dry-run", *state, *args)
    assert code == 0, err
    results = tmp_path / "c.results.csv"
    read_results(results)[["sku", "product_id", "title", "length", "status", "code"]].to_csv(
        results, index=False
    )
    code, err = invoke("retry", str(results), *state, *args, "--max-videos", "1")
    assert code == 1, err
    code, err = invoke("retry", str(results), *state, *args)  # the file as retry wrote it
    assert code == 0, err
    assert list(read_results(results)["status"]) == ["submitted", "submitted"]
    assert all(video != "" for video in read_results(results)["video_id"])


def test_a_results_file_changed_while_the_retry_runs_is_not_overwritten(tmp_path: Path) -> None:
    """Someone saves the file again while its rows are being sent: the retry does not write
    its view over theirs (exit 7); what was sent is in the state, and a retry of the file as
    it now is sends nothing again."""
    config = SandboxConfig(rate_limit=None, render_seconds=0.0, latency_ms=(300, 300))
    with running_sandbox(config) as url:
        args = ("--base-url", url, "--rate-limit", "none", "--offline", "--concurrency", "1")
        state = ("--state", str(tmp_path / "s.db"))
        catalog = _no_length_catalog(tmp_path / "c.csv", 4)
        code, err = invoke("run", str(catalog), "--max-videos", "1", *state, *args)
        assert code == 1, err
        results = tmp_path / "c.results.csv"
        edited = results.read_text().replace("SKU3", "SKU3-edited")
        outcome: list[tuple[int, str]] = []
        retry = threading.Thread(
            target=lambda: outcome.append(invoke("retry", str(results), *state, *args))
        )
        retry.start()
        while len(_sent(url)) < 2:  # the retry's first request is in
            time.sleep(0.05)
        results.write_text(edited)
        retry.join(timeout=60)
        assert outcome[0][0] == 7, outcome[0][1]
        assert "changed while the retry went on" in " ".join(outcome[0][1].split())
        assert results.read_text() == edited
        sent = len(_sent(url))
        code, err = invoke("retry", str(results), *state, *args)
        assert code == 0, err
        assert len(_sent(url)) == sent
        assert set(read_results(results)["status"]) == {"submitted", "already_submitted"}


def _rewrite(results: Path, change: Any) -> None:
    """The results file opened, changed by `change(rows)` (a list of dicts) and saved, as a
    spreadsheet or a person would."""
    import csv

    with results.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    change(rows)
    with results.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_row_the_file_now_gives_otherwise_than_its_run_planned_is_never_sent(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A not_attempted row whose cell was rewritten (here its length written in) is another request
    than the one its run planned: sending it, then running the catalog, paid the row twice.
    retry sends nothing (exit 2), naming the row; the file as the run wrote it retries."""
    catalog, args = half_run
    results, state = tmp_path / "c.results.csv", ("--state", str(tmp_path / "s.db"))
    written = results.read_bytes()

    def lengthen_fourth(rows: list[dict[str, str]]) -> None:
        rows[3]["length"] = "60"

    _rewrite(results, lengthen_fourth)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    said = " ".join(err.split())
    assert "otherwise than their run planned: row 4 (length: '60' in the file, '15' as its " in said
    assert len(_sent(sandbox_url)) == 1
    results.write_bytes(written)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 0, err
    code, err = invoke("run", str(catalog), "--length", "15", *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5  # each row paid once


def test_a_column_deleted_from_a_results_file_is_named_with_its_values(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A request column deleted from the results file changes every row to retry: retry names
    the column and what the run planned, and lists ten rows, not every one; nothing is sent."""
    rows = [{**row, "video_name": f"Spot {i}"} for i, row in enumerate(simple_rows(14))]
    catalog = write_catalog(tmp_path / "c.csv", rows)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--max-videos", "1", *state, *args)
    assert code == 1, err
    results = tmp_path / "c.results.csv"
    _rewrite(results, lambda rows: [row.pop("video_name") for row in rows])
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    said = " ".join(err.split())
    assert "run planned: row 2 (video_name: empty in the file, 'Spot 1' as its run planned)" in said
    assert (
        "row 11 (video_name: empty in the file, 'Spot 10' as its run planned) and 3 more." in said
    )
    assert "row 12" not in said
    assert len(_sent(sandbox_url)) == 1


def test_rows_added_to_a_results_file_by_hand_are_refused_before_sending(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A row with no row number was not written by a run: retry names its line and sends
    nothing (it crashed after paying, merging the outcome back)."""
    _, args = half_run
    results = tmp_path / "c.results.csv"
    _rewrite(results, lambda rows: rows.append({**rows[4], "row": ""}))
    code, err = invoke("retry", str(results), "--state", str(tmp_path / "s.db"), *args)
    assert code == 2
    assert "line 7 to retry has no row number" in err
    assert len(_sent(sandbox_url)) == 1


def test_a_line_copied_then_edited_is_refused_and_a_repeated_one_is_a_duplicate(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A line copied below itself with another product, keeping its row number, was added by
    hand: retry names it and sends nothing (it paid for a product no run planned). The same
    line repeated unchanged, as two files merged have it, is retried once."""
    _, args = half_run
    results, state = tmp_path / "c.results.csv", ("--state", str(tmp_path / "s.db"))
    written = results.read_bytes()
    other = simple_rows(6)[5]["product_id"]
    _rewrite(results, lambda rows: rows.append({**rows[4], "product_id": other}))
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    said = " ".join(err.split())
    assert "line 6 (row 5), line 7 (row 5) to retry share their row number with" in said
    assert len(_sent(sandbox_url)) == 1
    results.write_bytes(written)
    _rewrite(results, lambda rows: rows.append(dict(rows[4])))
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5


def test_a_paid_row_edited_to_another_request_is_never_sent_again(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A submitted row whose product a person changed, retyping its status `failed`: its video
    id is the ledger's for another request, so retry refuses it (it paid for a request no run
    planned, and wrote the row back without the video it had)."""
    _, args = half_run
    results, state = tmp_path / "c.results.csv", ("--state", str(tmp_path / "s.db"))
    first, other = simple_rows(6)[0]["product_id"], simple_rows(6)[5]["product_id"]

    def edit_paid(rows: list[dict[str, str]]) -> None:
        assert (rows[0]["status"], bool(rows[0]["video_id"])) == ("submitted", True)
        rows[0]["product_id"], rows[0]["status"] = other, "failed"

    _rewrite(results, edit_paid)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    said = " ".join(err.split())
    assert f"run planned: row 1 (product_id: '{other}' in the file, '{first}' as its run " in said
    assert len(_sent(sandbox_url)) == 1


def test_statuses_retyped_by_a_person_are_read_and_unknown_ones_refused(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """`Not attempted`, `NOT_ATTEMPTED ` are not_attempted and retried; a status jogg-batch
    never writes stops the retry, naming it and its line, rather than passing it over."""
    _, args = half_run
    results, state = tmp_path / "c.results.csv", ("--state", str(tmp_path / "s.db"))

    def retype(rows: list[dict[str, str]]) -> None:
        rows[1]["status"], rows[2]["status"] = "Not attempted", "NOT_ATTEMPTED "
        rows[3]["status"], rows[4]["status"] = "to do", ""

    _rewrite(results, retype)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 2
    assert "status 'to do', '' of line 5 (row 4), line 6 (row 5) is none" in " ".join(err.split())
    assert len(_sent(sandbox_url)) == 1

    def put_back(rows: list[dict[str, str]]) -> None:
        rows[3]["status"], rows[4]["status"] = "not_attempted", "Not-Attempted"

    _rewrite(results, put_back)
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5


def test_a_retry_exits_as_a_run_of_the_whole_file_would(tmp_path: Path, sandbox_url: str) -> None:
    """An invalid row no retry can fix keeps the exit at 1 whether or not the retry sent
    anything (it was 0 when rows were sent, 1 when none were), and a line says so."""
    rows = simple_rows(3)
    catalog = write_catalog(tmp_path / "c.csv", [*rows[:2], {**rows[2], "length": "99"}])
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--max-videos", "1", *state, *args)
    assert code == 1, err
    results = tmp_path / "c.results.csv"
    code, err = invoke("retry", str(results), *state, *args)
    assert code == 1, err
    assert len(_sent(sandbox_url)) == 2
    assert list(read_results(results)["status"]) == ["submitted", "submitted", "invalid"]
    # Its summary counts the row it sent; a line says which rows make the exit 1.
    told = " ".join(err.split())
    assert (
        f"the file still holds 1 row(s) not finished (invalid 1): `jogg-batch report {results}`"
        in told
    )


@pytest.mark.parametrize("pruned", [False, True], ids=["kept", "pruned"])
def test_a_stale_results_file_never_pays_again_for_rows_corrected_since(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]], pruned: bool
) -> None:
    """Night 1 stops early and its file is mailed; rows 4 and 5 are corrected in the catalog and
    night 2 sends them as corrected. A retry of night 1's file would have sent their old requests
    (two more paid videos of the same rows): it sends nothing (exit 2), naming them. So too a
    week later, night 1's run pruned (`run.keep_runs`) and night 2's kept: the retry could no
    longer tell night 2 was a run of the same catalog; the pruned run's results file keeps it."""
    catalog, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    inbox, night2 = tmp_path / "c.results.csv", ("--results", str(tmp_path / "night2.csv"))
    rows = [{**row, "length": ""} for row in simple_rows(5)]
    rows[3]["length"] = rows[4]["length"] = "30"
    write_catalog(catalog, rows)
    code, err = invoke("run", str(catalog), "--length", "15", *night2, *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5
    if pruned:
        code, err = invoke("state", "prune", "--keep-runs", "1", *state)
        assert code == 0, err
    code, err = invoke("retry", str(inbox), *state, *args)
    assert code == 2
    told = " ".join(err.split())
    assert "a later run of the catalog no longer made: row 4, row 5 (" in told
    assert len(_sent(sandbox_url)) == 5


def test_a_variant_row_its_catalog_still_asks_for_is_retried_beside_a_corrected_one(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Two rows of one product (two videos). The second failed for good, and the next run
    carried it over while it sent the first as corrected: the second is still the catalog's
    request, and retrying the first night's file with --retry-permanent sends it."""
    product = simple_rows(1)[0]
    rows = [{**product, "title": "Square"}, {**product, "title": "Tall", "length": "30"}]
    catalog = write_catalog(tmp_path / "c.csv", rows)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--max-videos", "1", *state, *args)
    assert code == 1, err
    with sqlite3.connect(tmp_path / "s.db") as db:  # as if the API had refused it for good
        db.execute("UPDATE jobs SET status = 'failed', permanent = 1 WHERE status <> 'submitted'")
    rows[0]["length"] = "60"
    write_catalog(catalog, rows)
    night2 = ("--results", str(tmp_path / "night2.csv"))
    code, err = invoke("run", str(catalog), *night2, *state, *args)
    assert code == 1, err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)] == ["15", "60"]
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), "--retry-permanent", *state, *args)
    assert code == 0, err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)][2:] == ["30"]


def test_a_row_another_catalog_asks_otherwise_for_is_retried(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A later run of another catalog file (another team's, with the same products) is no sign
    that this file's rows were corrected: they are retried."""
    _, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    other = write_catalog(tmp_path / "other.csv", [{**r, "length": "60"} for r in simple_rows(5)])
    code, err = invoke("run", str(other), *state, *args)  # its own results file
    assert code == 0, err
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 1 + 5 + 4


def test_a_file_retried_before_never_pays_again_for_rows_a_renamed_catalog_corrected(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """Night 1's file was retried once (stopped after a row); then rows 4 and 5 were corrected
    in the catalog, exported under a new name each night, and night 2 sent them so. Retrying
    night 1's file again would have sent their old requests: it sends nothing (exit 2)."""
    _, args = half_run
    state, inbox = ("--state", str(tmp_path / "s.db")), tmp_path / "c.results.csv"
    code, err = invoke("retry", str(inbox), "--max-videos", "1", *state, *args)
    assert code == 1, err
    assert len(_sent(sandbox_url)) == 2
    rows = [{**row, "length": ""} for row in simple_rows(5)]
    rows[3]["length"] = rows[4]["length"] = "30"
    renamed = write_catalog(tmp_path / "c-2026-11-28.csv", rows)
    code, err = invoke("run", str(renamed), "--length", "15", *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5
    code, err = invoke("retry", str(inbox), *state, *args)
    assert code == 2
    assert "a later run of the catalog no longer made: row 4, row 5 (" in " ".join(err.split())
    assert len(_sent(sandbox_url)) == 5


def test_a_dry_runs_planned_rows_corrected_since_are_never_sent(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A dry run's file is mailed for approval; rows 4 and 5 are corrected before the real run
    sends the catalog. Retrying the dry run's file would have sent their old requests as well:
    it sends nothing (exit 2), naming them."""
    catalog = _no_length_catalog(tmp_path / "c.csv", 5)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    code, err = invoke("run", str(catalog), "--dry-run", "--length", "15", *state, *args)
    assert code == 0, err
    rows = [{**row, "length": ""} for row in simple_rows(5)]
    rows[3]["length"] = rows[4]["length"] = "30"
    write_catalog(catalog, rows)
    night = ("--length", "15", "--results", str(tmp_path / "n.csv"))
    code, err = invoke("run", str(catalog), *night, *state, *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 5
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 2
    assert "a later run of the catalog no longer made: row 4, row 5 (" in " ".join(err.split())
    assert len(_sent(sandbox_url)) == 5


def test_two_folders_catalogs_of_one_name_are_two_catalogs(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two teams' `catalog.csv`, each run from its own folder as `catalog.csv` on one ledger,
    with the same products: the second's run is no correction of the first, whose file is
    retried (the two were taken for one file, and the retry refused)."""
    state = ("--state", str(tmp_path / "s.db"))
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline", *state)
    for team, length, cap in (("a", "15", ("--max-videos", "1")), ("b", "30", ())):
        (tmp_path / team).mkdir()
        rows = [{**row, "length": length} for row in simple_rows(3)]
        write_catalog(tmp_path / team / "catalog.csv", rows)
        monkeypatch.chdir(tmp_path / team)
        code, err = invoke("run", "catalog.csv", *cap, *args)
        assert code == (1 if cap else 0), err
    monkeypatch.chdir(tmp_path / "a")
    code, err = invoke("retry", "catalog.results.csv", *args)
    assert code == 0, err
    assert len(_sent(sandbox_url)) == 1 + 3 + 2


def test_a_run_refused_before_planning_is_not_the_writer_of_the_file_it_left(
    tmp_path: Path, sandbox_url: str, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A run of the catalog with `--length 30` and a key the account refuses (exit 3) stops
    before planning and leaves the results file as it was: retrying the file sends the rows
    as their run planned them (15 s), not rebuilt with the refused run's defaults and then
    refused as changed."""
    catalog, args = half_run
    state = ("--state", str(tmp_path / "s.db"))
    online = [a for a in args if a != "--offline"]
    refused = CliRunner().invoke(
        main,
        ["run", str(catalog), "--length", "30", *state, *online],
        env={"JOGG_API_KEY": "sk-not-this-account"},
    )
    assert refused.exit_code == 3, refused.output
    code, err = invoke("retry", str(tmp_path / "c.results.csv"), *state, *args)
    assert code == 0, err
    assert [s["payload"]["video_spec"]["length"] for s in _sent(sandbox_url)] == ["15"] * 5


def test_a_retry_of_a_parquet_catalogs_float_ids_sends_them(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A Parquet catalog's float64 ids (whole, below 2**53) are sent as their digits; the
    results file writes them so (not `1.234567890123e+12`), and its retry sends the row that
    was not attempted (the sandbox has no such product) rather than finding an id Excel
    rewrote."""
    catalog = tmp_path / "c.parquet"
    ids = pa.array([42.0, 1234567890123.0], pa.float64())
    pq.write_table(pa.table({"sku": ["G1", "G2"], "product_id": ids}), catalog)
    args = ("--base-url", sandbox_url, "--rate-limit", "none", "--offline")
    state = ("--state", str(tmp_path / "s.db"))
    invoke("run", str(catalog), "--max-videos", "1", *state, *args)
    results = tmp_path / "c.results.csv"
    assert list(read_results(results)["product_id"]) == ["42", "1234567890123"]

    invoke("retry", str(results), *state, *args)

    retried = read_results(results)
    assert list(retried["status"]) == ["failed", "failed"]  # sent: no such product here
    assert list(retried["code"]) == ["10104", "10104"]


def test_a_retry_refused_before_planning_leaves_the_file_as_it_was(
    tmp_path: Path, half_run: tuple[Path, tuple[str, ...]]
) -> None:
    """A retry with a key the account refuses (exit 3) stops before planning: the results file
    keeps every row's outcome (an `unknown` row stays `unknown`, its attempt and message with
    it), not rewritten as never tried."""
    _, args = half_run
    results = tmp_path / "c.results.csv"
    _first_row_unknown(results)
    before = results.read_bytes()
    online = [a for a in args if a != "--offline"]
    refused = CliRunner().invoke(
        main,
        ["retry", str(results), "--state", str(tmp_path / "s.db"), *online],
        env={"JOGG_API_KEY": "sk-not-this-account"},
    )
    assert refused.exit_code == 3, refused.output
    assert results.read_bytes() == before
    assert "left as it was: the retry stopped before planning any row" in refused.stderr
