"""The report on a small results CSV: exact counts, credits, render times, and safe HTML."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch.cli.report import report as report_command
from batch.errors import CatalogError
from batch.report import (
    FailureGroup,
    RenderTimes,
    build_report,
    render_html,
    render_json,
    render_table,
)
from batch.results import read_results

COLUMNS = [
    "name", "row", "status", "video_id", "code", "message", "attempts", "submitted_at",
    "video_status", "video_url", "cover_url", "duration", "deducted_credit", "error",
    "completed_at", "local_path",
]  # fmt: skip
EVIL_MESSAGE = "see https://evil.example/<b>"


def result(row: int, status: str, **cells: str) -> dict[str, str]:
    values = dict.fromkeys(COLUMNS, "")
    values.update(name=f"product {row}", row=str(row), status=status)
    values.update(cells)
    return values


ROWS = [
    result(1, "submitted", video_id="v1", submitted_at="2026-01-31T22:05:10Z",
           video_status="completed", completed_at="2026-01-31T22:06:10Z", deducted_credit="1",
           video_url="https://res.jogg.ai/v1.mp4"),
    result(2, "submitted", video_id="v2", submitted_at="2026-01-31T22:05:40Z",
           video_status="completed", completed_at="2026-01-31T22:07:40Z", deducted_credit="1.0",
           name="<script>alert(1)</script>"),
    result(3, "submitted", video_id="v3", submitted_at="2026-01-31T22:07:05Z",
           video_status="failed", error="50000: render crashed"),
    result(4, "failed", code="40000", message="Parameter error: avatar_id is required"),
    result(5, "failed", code="40000", message="Parameter error: avatar_id is required"),
    result(6, "invalid", message=EVIL_MESSAGE, name="'=HYPERLINK(\"x\")"),
    result(7, "already_submitted", video_id="v7", submitted_at="2026-01-31T22:05:20Z",
           video_status="completed", completed_at="2026-01-31T22:08:20Z", deducted_credit="1"),
    result(8, "submitted", video_id="v8", submitted_at="2026-01-31T22:07:30Z",
           video_status="processing"),
]  # fmt: skip


@pytest.fixture
def results_csv(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(ROWS)
    return path


def test_read_results_undoes_formula_neutralisation(results_csv: Path) -> None:
    """A cell written as '=... reads back as =...; everything is a string."""
    frame = read_results(results_csv)
    assert frame.loc[5, "name"] == '=HYPERLINK("x")'
    assert frame.loc[0, "row"] == "1"


def test_read_results_names_a_missing_file(tmp_path: Path) -> None:
    """A missing results file is a CatalogError naming the path."""
    with pytest.raises(CatalogError, match=r"nope\.csv: no such results file"):
        read_results(tmp_path / "nope.csv")


def test_report_counts_exactly(results_csv: Path) -> None:
    """Counts by status and render status, failures by code, credits, times and rate."""
    report = build_report(read_results(results_csv), source="results.csv")
    assert report.rows == 8
    assert report.by_status == {"submitted": 4, "already_submitted": 1, "failed": 2, "invalid": 1}
    assert report.by_video_status == {"completed": 3, "failed": 1, "processing": 1}
    assert report.failures == (
        FailureGroup("submission", "40000", 2, ("Parameter error: avatar_id is required",)),
        FailureGroup("submission", "invalid", 1, (EVIL_MESSAGE,)),
        FailureGroup("render", "50000", 1, ("50000: render crashed",)),
    )
    # rows 1 and 2 report 1 credit each; 3 and 8 have no figure yet and count 1; 7 is not new.
    assert (report.credits, report.credits_estimated) == (4.0, 2)
    assert report.render_times == RenderTimes(3, 120.0, 180.0, 180.0)
    assert report.per_minute == (
        ("2026-01-31T22:05Z", 3),
        ("2026-01-31T22:06Z", 0),
        ("2026-01-31T22:07Z", 2),
    )


def test_json_rendering_round_trips(results_csv: Path) -> None:
    """The JSON carries the same numbers."""
    data = json.loads(render_json(build_report(read_results(results_csv))))
    assert data["by_status"]["failed"] == 2
    assert data["credits"] == 4.0
    assert data["render_times"]["p90"] == 180.0
    assert data["failures"][0] == {
        "stage": "submission",
        "code": "40000",
        "count": 2,
        "examples": ["Parameter error: avatar_id is required"],
    }


def test_table_rendering_shows_the_lines_a_person_reads(results_csv: Path) -> None:
    """Outcome lines, failure examples, credits and render times appear as written."""
    text = render_table(build_report(read_results(results_csv), source="results.csv"))
    lines = text.splitlines()
    assert lines[0] == "Results: results.csv  (8 rows)"
    assert "  submitted                  4" in lines
    assert "      Parameter error: avatar_id is required" in lines
    assert "Credits spent        4 (2 estimated)" in lines
    assert "Render time          median 120 s, p90 180 s, longest 180 s (3 videos)" in lines


def test_html_is_self_contained_and_escaped(results_csv: Path) -> None:
    """Inline SVG charts, no script, no external reference; result values are escaped."""
    page = render_html(build_report(read_results(results_csv), source="<results>.csv"))
    assert "<script" not in page.lower()
    assert "&lt;results&gt;.csv" in page
    assert html_escaped(EVIL_MESSAGE) in page
    without_data = page.replace(html_escaped(EVIL_MESSAGE), "")
    assert not re.search(r"https?://|src=|href=|@import|url\(", without_data)
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(charts) == 2
    for chart in charts:
        ET.fromstring(chart)  # noqa: S314 (our own markup) raises unless well-formed
    assert chart.count('class="bar"') == 3


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_cli_writes_html_to_a_file(results_csv: Path, tmp_path: Path) -> None:
    """report --format html --output writes the page and prints nothing on stdout."""
    out = tmp_path / "report.html"
    outcome = CliRunner().invoke(
        report_command, [str(results_csv), "--format", "html", "--output", str(out)]
    )
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_prints_the_table(results_csv: Path) -> None:
    """The default format is the terminal table on stdout."""
    outcome = CliRunner().invoke(report_command, [str(results_csv)])
    assert outcome.exit_code == 0
    assert outcome.stdout.splitlines()[0] == "Results: results.csv  (8 rows)"


def test_cli_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A missing results file exits 2 with the path in the message."""
    outcome = CliRunner().invoke(report_command, [str(tmp_path / "gone.csv")])
    assert outcome.exit_code == 2
    assert (
        outcome.stderr.strip()
        == f"jogg-batch: error: {tmp_path / 'gone.csv'}: no such results file"
    )


def test_cli_help() -> None:
    """--help names the formats."""
    outcome = CliRunner().invoke(report_command, ["--help"])
    assert outcome.exit_code == 0
    assert "[html|json|table]" in outcome.stdout


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a closed network: no background fetches, no first-run work, no GPU.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0"]  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt install chromium)")
def test_html_report_renders_its_charts_in_chromium(results_csv: Path, tmp_path: Path) -> None:
    """Headless Chromium loads the page with no console error; the DOM holds both SVG charts."""
    assert CHROMIUM is not None
    page = tmp_path / "report.html"
    page.write_text(render_html(build_report(read_results(results_csv))), encoding="utf-8")
    browser = [CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert dom.stdout.count("<svg") == 2
    assert "<rect" in dom.stdout
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line] == []
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1000,1200", page.as_uri()],
                   capture_output=True, timeout=60, check=True)  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
