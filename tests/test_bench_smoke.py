"""The bench helpers that turn sandbox records into figures: windows, duplicates, verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

from common import Figure, Report, duplicates, generate_catalog, max_in_window


def test_max_in_window_counts_half_open_windows_like_the_sandbox() -> None:
    """Events exactly one window apart never share a window; closer ones do."""
    assert max_in_window([0.0, 60.0, 120.0], 60.0) == 1
    assert max_in_window([0.0, 59.9, 60.0, 60.1], 60.0) == 3
    assert max_in_window([], 60.0) == 0


def test_duplicates_are_counted_by_tag_and_by_payload() -> None:
    """A tag accepted twice is one duplicate; the same body under two tags is one too."""
    body = {"product_id": "P", "video_spec": {"name": "A [jb-aaa]"}}
    other = {"product_id": "P", "video_spec": {"name": "A [jb-bbb]"}}
    seen = [
        {"name": "A [jb-aaa]", "payload": body},
        {"name": "A [jb-aaa]", "payload": body},
        {"name": "A [jb-bbb]", "payload": other},
    ]
    assert duplicates(seen) == (1, 2)
    assert duplicates(seen[1:]) == (0, 1)


def test_a_missed_target_says_by_how_much() -> None:
    """MISS names the gap in the figure's unit and as a share of the target."""
    assert Figure("s", "first POST", 3.0, "s", "<=", 2.0).verdict() == "MISS by 1 s (50.0%)"
    assert Figure("s", "ratio", 0.99, "", ">=", 0.99).verdict() == "PASS"
    assert Figure("s", "rows", 5).verdict() == "-"


def test_report_files_state_machine_command_and_verdicts(tmp_path: Path) -> None:
    """The Markdown names the CPU and the command; the JSON carries each figure's verdict."""
    report = Report("x", "title", "make x")
    report.add("part", "duplicates", 1, "", "==", 0)
    report.write(tmp_path)
    text = (tmp_path / "x.md").read_text()
    assert "- Command: `make x`" in text
    assert "cores" in text
    assert "Python" in text
    assert "| duplicates | 1 | == 0 | MISS by 1 |  |" in text
    assert '"passed": false' in (tmp_path / "x.json").read_text()


def test_generated_catalog_rows_are_distinct_requests(tmp_path: Path) -> None:
    """Every generated row names its own video, so no two rows are one job."""
    table = pacsv.read_csv(generate_catalog(tmp_path / "c.csv", 500))
    assert table.num_rows == 500
    titles = table.column("title").to_pylist()
    assert len(set(titles)) == 500
    assert all("{title}" in name for name in table.column("video_name").to_pylist())
