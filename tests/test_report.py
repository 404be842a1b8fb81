"""The report on a results file: exact counts, failures by reason, a safe page that works."""

from __future__ import annotations

import base64
import csv
import hashlib
import itertools
import json
import re
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from batch.cli.report import report as report_command
from batch.cli.run import render_summary
from batch.errors import CatalogError
from batch.follow.report import (
    REASONS_PER_CODE,
    FailureGroup,
    RenderTimes,
    build_report,
    reason_of,
    render_json,
    render_table,
    row_ranges,
    thumbnail_url,
    web_url,
)
from batch.follow.report_page import render_html, rows_json
from batch.planner import PlanCounts
from batch.runner import RunSummary
from batch.store.results import read_results
from tests import chromium

COLUMNS = [
    "sku", "name", "video_name", "row", "status", "video_id", "code", "message", "attempts",
    "submitted_at", "video_status", "video_url", "cover_url", "duration", "deducted_credit",
    "error", "completed_at", "local_path",
]  # fmt: skip
EVIL_MESSAGE = "see https://evil.example/<b>"
SCRIPT_BREAK = "</script><script>window.pwned = 1</script>"
RETRY_HINT = "`jogg-batch retry results.csv`"


def result(row: int, status: str, **cells: str) -> dict[str, str]:
    values = dict.fromkeys(COLUMNS, "")
    values.update(sku=f"SKU-{row:03d}", name=f"product {row}", row=str(row), status=status)
    values.update(cells)
    return values


ROWS = [
    result(1, "submitted", video_id="v1", submitted_at="2026-01-31T22:05:10Z",
           video_status="completed", completed_at="2026-01-31T22:06:10Z", deducted_credit="1",
           video_url="https://res.jogg.ai/v1.mp4", cover_url="https://res.jogg.ai/v1.jpg",
           duration="31.0", video_name="Sale: {name} ({sku})"),
    result(2, "submitted", video_id="v2", submitted_at="2026-01-31T22:05:40Z",
           video_status="completed", completed_at="2026-01-31T22:07:40Z", deducted_credit="1.0",
           name="<script>alert(1)</script>", video_url="javascript:alert(1)"),
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


def write_results(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def results_csv(tmp_path: Path) -> Path:
    return write_results(tmp_path / "results.csv", ROWS)


def report_of(rows: list[dict[str, str]], **options: Any) -> Any:
    return build_report(pd.DataFrame(rows, dtype=str), source="results.csv", **options)


def test_a_video_two_pasted_files_both_show_is_counted_once() -> None:
    """Two hand-offs pasted into one file show each paid row twice, with its video: it was
    paid for once, so the credits count it once (they were 2x)."""
    frame = pd.DataFrame(ROWS + ROWS, dtype=str)
    report = build_report(frame, source="merged.csv")
    assert (report.credits, report.credits_estimated) == (4.0, 2)


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
    """Counts by status and render status, failures by reason, credits, times and rate."""
    report = build_report(read_results(results_csv), source="results.csv")
    assert report.rows == 8
    assert report.by_status == {"submitted": 4, "already_submitted": 1, "failed": 2, "invalid": 1}
    assert report.by_video_status == {"completed": 3, "failed": 1, "processing": 1}
    assert (report.submitted, report.failed) == (5, 3)
    assert [(g.stage, g.code, g.reason, g.rows) for g in report.failures] == [
        ("submission", "40000", "Parameter error: avatar_id is required", (4, 5)),
        ("submission", "invalid", EVIL_MESSAGE, (6,)),
        ("render", "50000", "render crashed", (3,)),
    ]
    # rows 1 and 2 report 1 credit each; 3 and 8 have no figure yet and count 1; 7 is not new.
    assert (report.credits, report.credits_estimated) == (4.0, 2)
    assert report.render_times == RenderTimes(3, 120.0, 180.0, 180.0)
    assert report.per_minute == (  # row 7 was submitted by an earlier run: not counted
        ("2026-01-31T22:05Z", 2),
        ("2026-01-31T22:06Z", 0),
        ("2026-01-31T22:07Z", 2),
    )


def test_statuses_a_person_retyped_count_as_the_ones_they_spell(results_csv: Path) -> None:
    """`Submitted`, `FAILED ` and `Already submitted`, as a colleague types them back: counted
    with the statuses they spell, not as outcomes of their own."""
    frame = read_results(results_csv)
    frame["status"] = (
        frame["status"]
        .map(
            {
                "submitted": "Submitted",
                "failed": "FAILED ",
                "already_submitted": "Already submitted",
            }
        )
        .fillna(frame["status"])
    )
    report = build_report(frame, source="results.csv")
    assert report.by_status == {"submitted": 4, "already_submitted": 1, "failed": 2, "invalid": 1}


def _respelled(text: str, shape: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime(shape) if text else ""


@pytest.mark.parametrize(
    "shape", ["%d/%m/%Y %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%d.%m.%Y %H:%M:%S"]
)
def test_times_a_spreadsheet_wrote_back_in_its_own_form_are_read(shape: str) -> None:
    """Excel saves the ISO times back as `31/01/2026 22:05:10` (or month first, or with dots):
    render times and the timeline read them, the column deciding day-first or month-first;
    they were left out in silence ("0 videos")."""
    rows = [
        {**row, "submitted_at": _respelled(row["submitted_at"], shape),
         "completed_at": _respelled(row["completed_at"], shape)}
        for row in ROWS
    ]  # fmt: skip
    report = report_of(rows)
    assert report.render_times == RenderTimes(3, 120.0, 180.0, 180.0)
    assert report.per_minute[0] == ("2026-01-31T22:05Z", 2)


def test_time_cells_no_form_reads_are_left_out_saying_so(caplog: pytest.LogCaptureFixture) -> None:
    """Cells no form reads are left out of the render times, with a warning, not in silence."""
    rows = [{**row, "completed_at": "soon" if row["completed_at"] else ""} for row in ROWS]
    assert report_of(rows).render_times == RenderTimes(0, None, None, None)
    assert "3 time cell(s) are no time the report reads ('soon')" in caplog.text


def test_submissions_a_minute_fill_in_at_most_a_week() -> None:
    """Submissions years apart (a spreadsheet's zero date, a retry months later) list only the
    minutes that had some: a minute-by-minute series over them would not fit in memory."""
    rows = [
        result(1, "submitted", video_id="v1", submitted_at="1899-12-30T00:00:00Z"),
        result(2, "submitted", video_id="v2", submitted_at="2026-01-31T22:05:00Z"),
        result(3, "submitted", video_id="v3", submitted_at="9999-12-31T23:59:00Z"),
        result(4, "already_submitted", video_id="v4", submitted_at="2025-01-31T22:05:00Z"),
    ]
    assert report_of(rows).per_minute == (
        ("1899-12-30T00:00Z", 1),
        ("2026-01-31T22:05Z", 1),
        ("9999-12-31T23:59Z", 1),
    )


def test_rows_with_the_same_problem_share_a_group_whatever_their_values() -> None:
    """Invalid rows group by column and problem, not by the value; each group lists its rows."""
    rows = [
        result(2, "invalid", message="length: '45' is not a video length; use 15, 30 or 60"),
        result(3, "invalid", message="avatar_id: 'abc' is not a whole-number id"),
        result(4, "invalid", message="length: '90' is not a video length; use 15, 30 or 60"),
        result(5, "invalid", message='length: "Don\'t" is not a video length; use 15, 30 or 60'),
        result(9, "invalid", message="length: '45' is not a video length; use 15, 30 or 60"),
    ]
    (lengths, avatar) = report_of(rows).failures
    assert lengths == FailureGroup(
        stage="submission",
        code="invalid",
        reason="length: … is not a video length; use 15, 30 or 60",
        count=4,
        rows=(2, 4, 5, 9),
        examples=(
            "length: '45' is not a video length; use 15, 30 or 60",
            "length: '90' is not a video length; use 15, 30 or 60",
            'length: "Don\'t" is not a video length; use 15, 30 or 60',
        ),
        next_step="Checked before sending, never sent: correct these cells in the catalog and "
        "run it again (rows already accepted are not sent twice).",
    )
    assert (avatar.reason, avatar.rows) == ("avatar_id: … is not a whole-number id", (3,))


def test_each_kind_of_failure_says_what_to_do_next() -> None:
    """Retryable, refused, unknown, unsent and render failures each name their next command."""
    rows = [
        result(1, "failed", code="50000", message="system busy"),
        result(2, "failed", code="40000", message="Parameter error: bad avatar"),
        result(3, "unknown", message="no answer"),
        result(4, "not_attempted"),
        result(5, "submitted", video_status="failed", error="render crashed"),
        result(6, "failed", code="18020", message="no credit"),
    ]
    steps = {g.code: g.next_step for g in report_of(rows).failures}
    assert steps["50000"] == f"Worth another try: {RETRY_HINT}."
    assert "correct the cells the message names in the catalog and run it again" in steps["40000"]
    assert steps["unknown"] == (
        f"Possibly accepted: {RETRY_HINT} looks them up before sending anything again."
    )
    assert steps["not_attempted"] == f"The run stopped before these rows: {RETRY_HINT} sends them."
    assert steps["render failed"].startswith("The API accepted these rows (the credit is spent)")
    assert steps["18020"] == (
        f"An account problem (key, credit or permission): fix it, then {RETRY_HINT}."
    )


def test_messages_carrying_their_own_ids_fold_into_one_other_group() -> None:
    """A code with more distinct reasons than REASONS_PER_CODE keeps the biggest, folds the rest."""
    rows = [result(1, "failed", code="40000", message="product 1 not found")] * 3
    rows += [
        result(n, "failed", code="40000", message=f"product {n} not found") for n in range(2, 20)
    ]
    groups = report_of(rows).failures
    assert len(groups) == REASONS_PER_CODE + 1
    assert groups[0].reason == "product 1 not found"
    other = groups[-1]
    assert other.reason == f"{18 - (REASONS_PER_CODE - 1)} other messages"
    assert other.count == 18 - (REASONS_PER_CODE - 1)
    assert sum(g.count for g in groups) == len(rows)


def test_row_ranges_join_neighbours_and_stop_at_a_limit() -> None:
    """Consecutive rows read as a range; past the limit, a count of the rest."""
    assert row_ranges([5, 4, 9, 12, 13, 14]) == "4-5, 9, 12-14"
    assert row_ranges([1, 3, 5, 7, 8], limit=2) == "1, 3 and 3 more"


def test_reason_of_elides_quoted_values_only() -> None:
    """Quoted values after a colon go; apostrophes elsewhere stay."""
    assert reason_of("script_style: 'Funny' is not one of Don't Worry, Data") == (
        "script_style: … is not one of Don't Worry, Data"
    )


def test_timeline_is_cumulative_over_this_run_only(results_csv: Path) -> None:
    """Both lines only rise, end at this run's totals, and span first submission to last render."""
    timeline = build_report(read_results(results_csv)).timeline
    assert timeline is not None
    assert timeline.start == "2026-01-31T22:05:10Z"
    # Row 7 (already_submitted) is an earlier run's: it is neither a submission nor a render here.
    assert (timeline.submitted[-1], timeline.completed[-1]) == (4, 2)
    assert timeline.seconds[-1] == 150.0  # 22:05:10 to row 2's render at 22:07:40
    for line in (timeline.submitted, timeline.completed):
        assert all(a <= b for a, b in itertools.pairwise(line))


def test_table_rows_name_the_key_product_and_video(results_csv: Path) -> None:
    """sku is the key, name the product; a video_name template is filled from the row."""
    first, second = build_report(read_results(results_csv)).table[:2]
    assert (first.row, first.key, first.product) == (1, "SKU-001", "product 1")
    assert first.video_name == "Sale: product 1 (SKU-001)"
    assert (first.duration, first.video_url) == (31.0, "https://res.jogg.ai/v1.mp4")
    assert second.video_url == ""  # javascript: is never a link


def test_key_option_chooses_the_key_column(results_csv: Path) -> None:
    """--key names the column shown as the row's key."""
    report = build_report(read_results(results_csv), key="video_id")
    assert report.table[0].key == "v1"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://res.jogg.ai/a.mp4", True),
        ("HTTP://127.0.0.1:8/a.jpg", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<b>", False),
        ("//evil.example/a", False),
        ("https://res.jogg.ai/a b.mp4", False),
        ("http:///no-host", False),
    ],
)
def test_only_absolute_http_urls_become_links(url: str, kept: bool) -> None:
    """Links and thumbnails keep http(s) URLs with a host; anything else is dropped."""
    assert web_url(url) == (url if kept else "")


@pytest.mark.parametrize(
    ("url", "kept"),
    [("https://res.jogg.ai/v1.jpg", True), ("https://203.0.113.7.nip.io/c.jpg", True),
     ("https://8.8.8.8/c.jpg", True), ("http://res.jogg.ai/v1.jpg", False),
     ("https://127.0.0.1:8787/c.jpg", False), ("https://localhost/c.jpg", False),
     ("https://app.localhost./c.jpg", False), ("https://192.168.1.1/admin?reset=1", False),
     ("https://10.0.0.8/c.jpg", False), ("https://169.254.169.254/latest", False),
     ("https://2130706433/c.jpg", False), ("https://0x7f.1/c.jpg", False),
     ("https://[::1]/c.jpg", False), ("https://[::ffff:192.168.0.1]/c.jpg", False),
     ("https://[not-v6]/c.jpg", False), ("javascript:alert(1)", False)],
)  # fmt: skip
def test_a_thumbnail_is_fetched_only_over_https_from_no_private_address(
    url: str, kept: bool
) -> None:
    """The reader's browser fetches a cover each time the report opens: never from a loopback,
    private or link-local address a server named (in any form a browser reads), nor over http."""
    assert thumbnail_url(url) == (url if kept else "")


def test_row_data_cannot_close_its_script_element(results_csv: Path) -> None:
    """</script>, <!-- and & in values are escaped in the JSON blob, which still parses back."""
    rows = [*ROWS, result(9, "invalid", message=SCRIPT_BREAK, name="<!-- \u2028 &")]
    blob = rows_json(report_of(rows).table)
    assert "<" not in blob
    assert ">" not in blob
    assert "&" not in blob
    data = json.loads(blob)
    assert SCRIPT_BREAK in data["s"]
    assert data["r"][-1][2] == "<!-- \u2028 &"


def test_json_rendering_round_trips(results_csv: Path) -> None:
    """The JSON carries the same numbers, and no per-row table."""
    data = json.loads(render_json(build_report(read_results(results_csv), source="results.csv")))
    assert data["by_status"]["failed"] == 2
    assert data["credits"] == 4.0
    assert data["render_times"]["p90"] == 180.0
    assert "table" not in data
    assert data["failures"][0] == {
        "stage": "submission",
        "code": "40000",
        "reason": "Parameter error: avatar_id is required",
        "count": 2,
        "rows": [4, 5],
        "examples": ["Parameter error: avatar_id is required"],
        "next_step": "The API refused the request: correct the cells the message names in the "
        "catalog and run it again (rows already accepted are not sent twice); "
        "`jogg-batch retry results.csv --retry-permanent` sends them again unchanged.",
    }


def test_table_rendering_groups_failures_by_reason_with_row_numbers(results_csv: Path) -> None:
    """Each stage and code, its reasons with their rows and values, then the next step."""
    rows = [
        *ROWS,
        result(9, "invalid", message="length: '45' is not a video length"),
        result(10, "invalid", message="length: '90' is not a video length"),
    ]
    text = render_table(report_of(rows))
    lines = text.splitlines()
    assert lines[0] == "Results: results.csv  (10 rows)"
    assert "  submitted                  4" in lines
    start = lines.index("Failures by reason")
    assert lines[start + 1 : start + 13] == [
        "  submission invalid (3 rows)",
        "    length: … is not a video length",
        "        rows 9-10   ('45', '90')",
        f"    {EVIL_MESSAGE}",
        "        row 6",
        "    next: Checked before sending, never sent: correct these cells in the catalog and "
        "run it again (rows already accepted are not sent twice).",
        "  submission 40000 (2 rows)",
        "    Parameter error: avatar_id is required",
        "        rows 4-5",
        "    next: The API refused the request: correct the cells the message names in the "
        "catalog and run it again (rows already accepted are not sent twice); "
        "`jogg-batch retry results.csv --retry-permanent` sends them again unchanged.",
        "  render 50000 (1 row)",
        "    render crashed",
    ]
    assert "Credits spent        4 (2 estimated)" in lines
    assert "Render time          median 120 s, p90 180 s, longest 180 s (3 videos)" in lines


def test_html_is_one_file_whose_own_style_and_script_alone_may_run(results_csv: Path) -> None:
    """The policy admits exactly the inline style and script by hash; nothing else is fetched."""
    page = render_html(build_report(read_results(results_csv), source="results.csv"))
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    style = re.search(r"<style>(.*?)</style>", page, flags=re.DOTALL)
    script = re.search(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    assert style is not None
    assert script is not None
    assert f"style-src '{sha256(style.group(1))}'" in policy.group(1)
    assert f"script-src '{sha256(script.group(1))}'" in policy.group(1)
    assert "default-src 'none'" in policy.group(1)
    markup = page.replace(script.group(1), "")
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', markup)
    assert blob is not None
    outside = markup.replace(blob.group(0), "").replace(html_escaped(EVIL_MESSAGE), "")
    assert not re.search(r"https?://|src=|href=|@import|url\(", outside)


def sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_html_escapes_every_value_in_the_markup(results_csv: Path) -> None:
    """The source name, messages and reasons appear escaped; no value opens a tag."""
    rows = [*ROWS, result(9, "invalid", message=SCRIPT_BREAK)]
    page = render_html(build_report(pd.DataFrame(rows, dtype=str), source="<results>.csv"))
    assert "&lt;results&gt;.csv" in page
    assert html_escaped(EVIL_MESSAGE) in page
    assert html_escaped(SCRIPT_BREAK) in page  # in the failures table
    assert page.count("<script") == page.count("</script>") == 2  # data block, own script


def test_html_timeline_is_well_formed_svg_with_both_lines(results_csv: Path) -> None:
    """One SVG, two polylines, labelled with this run's totals."""
    page = render_html(build_report(read_results(results_csv)))
    charts = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(charts) == 1
    svg = ET.fromstring(charts[0])  # noqa: S314 (our own markup) raises unless well-formed
    lines = svg.findall("polyline")
    assert [line.get("class") for line in lines] == ["sent", "done"]
    assert ">4 submitted<" in charts[0]
    assert ">2 rendered<" in charts[0]
    assert "started 2026-01-31 22:05:10 UTC" in charts[0]


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


def test_cli_key_option_reaches_the_page(results_csv: Path) -> None:
    """--key COLUMN puts that column's values in the page's rows."""
    outcome = CliRunner().invoke(
        report_command, [str(results_csv), "--format", "html", "--key", "video_id"]
    )
    assert outcome.exit_code == 0
    assert '[1,"v1","product 1"' in outcome.stdout


def test_cli_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    """A missing results file exits 2 with the path in the message."""
    outcome = CliRunner().invoke(report_command, [str(tmp_path / "gone.csv")])
    assert outcome.exit_code == 2
    assert (
        outcome.stderr.strip()
        == f"jogg-batch: error: {tmp_path / 'gone.csv'}: no such results file"
    )


def test_cli_help() -> None:
    """--help names the formats and the key option."""
    outcome = CliRunner().invoke(report_command, ["--help"])
    assert outcome.exit_code == 0
    assert "[html|json|table]" in outcome.stdout
    assert "--key COLUMN" in outcome.stdout


# The browser tests. `make test` installs Chromium through apt when it runs as root (CI does).
needs_chromium = pytest.mark.skipif(
    chromium.EXECUTABLE is None,
    reason="no chromium on this machine; `make test` installs it when run as root "
    "(apt-get install chromium)",
)
SCREENSHOT = Path(__file__).resolve().parents[1] / "reports" / "report.png"


class _Media(BaseHTTPRequestHandler):
    """Covers as small SVG pictures (a colour per row) and stand-in videos."""

    def do_GET(self) -> None:
        if self.path.startswith("/gone/"):
            self.send_error(404)
            return
        number = int(re.sub(r"\D", "", self.path) or 0)
        if self.path.startswith("/covers/"):
            body = (
                '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="90">'
                f'<rect width="160" height="90" fill="hsl({number * 47 % 360},55%,62%)"/>'
                f'<circle cx="80" cy="45" r="22" fill="hsl({number * 47 % 360},60%,38%)"/>'
                '<path d="M73 33 L93 45 L73 57 Z" fill="#fff"/></svg>'
            ).encode()
            kind = "image/svg+xml"
        else:
            body, kind = b"\0" * 64, "video/mp4"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host`, signed by its own key, valid for a day: the files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert, key_file = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An https server for the thumbnails the page loads, on loopback under a public-looking
    name (`chromium.MEDIA_HOST`), as a report fetches covers only so."""
    cert, key = self_signed(tmp_path_factory.mktemp("media"), chromium.MEDIA_HOST)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://{chromium.MEDIA_HOST}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[chromium.Browser]:
    with chromium.Browser(tmp_path_factory.mktemp("chromium")) as running:
        yield running


def completed(row: int, media: str, start: datetime, **cells: str) -> dict[str, str]:
    at = start + timedelta(seconds=3 * row)
    done = at + timedelta(seconds=240 + row * 37 % 300)
    values = {
        "video_id": f"v{row}",
        "submitted_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "video_status": "completed",
        "completed_at": done.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "deducted_credit": "1",
        "video_url": f"{media}/videos/{row}.mp4",
        "cover_url": f"{media}/covers/{row}.svg",
        "duration": str(28 + row % 5),
    }
    values.update(cells)
    return result(row, "submitted", **values)


def shown_rows(page: chromium.Page) -> list[dict[str, Any]]:
    """The table rows on screen: number, status, link and thumbnail."""
    return page.evaluate(  # type: ignore[no-any-return]
        """[...document.querySelectorAll("#rows tbody tr")].map((tr) => ({
            row: Number(tr.cells[0].textContent), status: tr.cells[3].textContent,
            text: tr.textContent, href: tr.querySelector("a")?.getAttribute("href") ?? null,
            src: tr.querySelector("img")?.getAttribute("src") ?? null}))"""
    )


def set_control(page: chromium.Page, selector: str, value: str, event: str) -> None:
    page.evaluate(
        f"(() => {{ const c = document.querySelector({json.dumps(selector)}); "
        f"c.value = {json.dumps(value)}; c.dispatchEvent(new Event({json.dumps(event)})); }})()"
    )


@needs_chromium
def test_page_filters_pages_and_links_rows_in_chromium(
    browser: chromium.Browser, media: str, tmp_path: Path
) -> None:
    """No console error; filters by status, text and reason and paging work; links are right."""
    start = datetime(2026, 1, 31, 22, 0, tzinfo=UTC)
    hostile = result(9, "invalid", message=SCRIPT_BREAK, name='<img src="x" id="pwned">')
    local = {"video_url": f"{media}/videos/1.mp4", "cover_url": f"{media}/covers/1.svg"}
    rows = [{**ROWS[0], **local}, *ROWS[1:], hostile]
    rows += [completed(n, media, start) for n in range(10, 131)]
    path = tmp_path / "report.html"
    path.write_text(render_html(report_of(rows)), encoding="utf-8")
    page = browser.open(path.as_uri())
    page.evaluate('document.getElementById("rows").scrollIntoView()')
    page.evaluate(LOADED_IMAGES)

    first = shown_rows(page)
    assert [r["row"] for r in first] == list(range(1, 101))
    assert page.evaluate('document.getElementById("f-count").textContent') == "rows 1-100 of 130"
    by_row = {r["row"]: r for r in first}
    assert (by_row[1]["href"], by_row[1]["src"]) == (local["video_url"], local["cover_url"])
    assert by_row[2]["href"] is None  # javascript: never became a link
    assert by_row[42]["href"] == f"{media}/videos/42.mp4"
    assert by_row[42]["src"] == f"{media}/covers/42.svg"
    # The covers in view were fetched from where the results say, and are pictures.
    loaded = page.evaluate(
        "[...document.images].filter((i) => i.getBoundingClientRect().top < innerHeight)"
        ".map((i) => [i.currentSrc, i.naturalWidth])"
    )
    assert len(loaded) >= 5
    assert all(src.startswith(f"{media}/covers/") and width == 160 for src, width in loaded)
    # Hostile values are text: no element from them, no script run.
    assert '<img src="x" id="pwned">' in by_row[9]["text"]
    assert SCRIPT_BREAK in by_row[9]["text"]
    assert page.evaluate('[document.getElementById("pwned"), window.pwned]') == [None, None]

    page.evaluate('document.getElementById("next").click()')
    assert [r["row"] for r in shown_rows(page)] == list(range(101, 131))

    set_control(page, "#f-status", "status:failed", "change")
    assert [(r["row"], r["status"]) for r in shown_rows(page)] == [(4, "failed"), (5, "failed")]
    set_control(page, "#f-status", "render:processing", "change")
    assert [r["row"] for r in shown_rows(page)] == [8]
    set_control(page, "#f-status", "", "change")
    set_control(page, "#f-search", "SKU-12", "input")
    assert [r["row"] for r in shown_rows(page)] == list(range(120, 130))
    set_control(page, "#f-search", "", "input")

    page.evaluate('document.querySelector("button[data-group=\\"0\\"]").click()')
    assert [r["row"] for r in shown_rows(page)] == [4, 5]
    page.evaluate('document.getElementById("f-clear").click()')
    assert len(shown_rows(page)) == 100
    assert page.errors() == []


LOADED_IMAGES = """Promise.all([...document.images].filter((i) => i.getBoundingClientRect().top
    < innerHeight).map((i) => i.complete ? 0 : new Promise((done) => {
      i.addEventListener("load", done); i.addEventListener("error", done); })))"""


def showcase(media: str) -> list[dict[str, str]]:
    """A run of 160 rows as a night would leave it: renders done, a few failures, some waiting."""
    start = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    goods = ("Water Bottle", "Bluetooth Speaker", "Wall Clock", "Desk Lamp", "Travel Mug",
             "Yoga Mat", "Phone Stand", "Throw Blanket")  # fmt: skip
    refused = {"code": "40000", "message": "Parameter error: avatar not found"}
    problems = {
        7: ("invalid", {"message": "length: '45' is not a video length; use 15, 30 or 60"}),
        19: ("invalid", {"message": "length: '90' is not a video length; use 15, 30 or 60"}),
        23: ("invalid", {"message": "script_style: 'Funny' is not a script style"}),
        55: ("failed", refused),
        56: ("failed", refused),
    }
    unfinished = {"completed_at": "", "video_url": "", "cover_url": ""}
    rows = []
    for n in range(1, 161):
        title = f"{('Classic', 'Eco', 'Compact', 'Smart')[n % 4]} {goods[n % len(goods)]}"
        cells = {"sku": f"SKU-{n:04d}", "name": title, "video_name": "Spring sale: {name}"}
        if n in problems:
            status, outcome = problems[n]
            rows.append(result(n, status, **cells, **outcome))
        elif n == 90:
            failure = {"video_status": "failed", "error": "50000: render crashed"}
            rows.append(completed(n, media, start, **cells, **unfinished, **failure))
        elif n > 150:
            rows.append(
                completed(n, media, start, **cells, **unfinished, video_status="processing")
            )
        else:
            rows.append(completed(n, media, start, **cells))
    return rows


@needs_chromium
def test_screenshot_of_a_night_is_kept_under_reports(
    browser: chromium.Browser, media: str, tmp_path: Path
) -> None:
    """The page of a realistic run loads cleanly and its screenshot lands in reports/."""
    path = tmp_path / "report.html"
    frame = pd.DataFrame(showcase(media), dtype=str)
    path.write_text(
        render_html(build_report(frame, source="catalog.results.csv")), encoding="utf-8"
    )
    page = browser.open(path.as_uri(), width=1200, height=1300)
    page.evaluate(LOADED_IMAGES)
    assert page.errors() == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(SCREENSHOT)
    png = SCREENSHOT.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20]), int.from_bytes(png[20:24])) == (1200, 1300)


@needs_chromium
def test_page_of_an_empty_results_file_loads_cleanly(
    browser: chromium.Browser, tmp_path: Path
) -> None:
    """A results file with a header and no rows still gives a page without errors."""
    path = tmp_path / "report.html"
    empty = build_report(pd.DataFrame(columns=COLUMNS, dtype=str), source="empty.csv")
    path.write_text(render_html(empty), encoding="utf-8")
    page = browser.open(path.as_uri())
    assert page.evaluate('document.getElementById("f-count").textContent') == "no rows match"
    assert page.errors() == []


@needs_chromium
def test_a_cover_that_fails_to_load_leaves_a_video_link(
    browser: chromium.Browser, media: str, tmp_path: Path
) -> None:
    """Offline or expired covers: the video link stays, as the word "video"."""
    start = datetime(2026, 1, 31, 22, 0, tzinfo=UTC)
    row = completed(1, media, start, cover_url=f"{media}/gone/1.jpg")
    path = tmp_path / "report.html"
    path.write_text(render_html(report_of([row])), encoding="utf-8")
    page = browser.open(path.as_uri())
    page.evaluate('document.getElementById("rows").scrollIntoView()')
    page.evaluate(LOADED_IMAGES)
    cell = page.evaluate(
        '(() => { const a = document.querySelector("#rows tbody a");'
        " return [a.getAttribute('href'), a.textContent, document.images.length]; })()"
    )
    assert cell == [f"{media}/videos/1.mp4", "video", 0]
    assert [e for e in page.errors() if "/gone/1.jpg" not in e] == []


def test_names_and_messages_cannot_forge_lines_or_move_the_terminal() -> None:
    """A file name or a server's message holding a line break or an escape sequence is written
    out visibly in the table report and the run summary: one line stays one line."""
    evil = 'x\n{"level":"ERROR","msg":"forged"}\n\x1b]0;pwned\x07'
    rows = [result(1, "failed", code="50000", message=evil)]
    table = build_report(pd.DataFrame(rows, dtype=str), source=f"{evil}.csv")
    text = render_table(table)
    assert "\x1b" not in text
    assert not any(line.startswith('{"level"') for line in text.splitlines())
    assert '\\n{"level":"ERROR","msg":"forged"}\\n\\x1b]0;pwned\\x07' in text
    summary = RunSummary(f"{evil}.csv", f"{evil}.results.csv", "s.db", False, PlanCounts())
    rendered = render_summary(summary)
    assert "\x1b" not in rendered
    assert not any(line.startswith('{"level"') for line in rendered.splitlines())


def test_the_next_step_quotes_a_file_name_a_shell_would_split() -> None:
    """The command a person copies works for a name with a space."""
    rows = [result(1, "not_attempted")]
    report = build_report(pd.DataFrame(rows, dtype=str), source="night run.results.csv")
    assert "`jogg-batch retry 'night run.results.csv'` sends them" in report.failures[0].next_step
