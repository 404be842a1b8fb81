"""The bench helpers that turn sandbox records into figures: windows, duplicates, verdicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))

from common import Figure, Report, duplicates, generate_catalog, max_in_window
from readme_table import table


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
    assert "| duplicates | 1 | - | == 0 | MISS by 1 |  |" in text
    assert '"passed": false' in (tmp_path / "x.json").read_text()


def test_generated_catalog_rows_are_distinct_requests(tmp_path: Path) -> None:
    """Every generated row names its own video, so no two rows are one job."""
    table = pacsv.read_csv(generate_catalog(tmp_path / "c.csv", 500))
    assert table.num_rows == 500
    titles = table.column("title").to_pylist()
    assert len(set(titles)) == 500
    assert all("{title}" in name for name in table.column("video_name").to_pylist())


def test_each_figure_is_reported_beside_the_one_it_replaces(tmp_path: Path) -> None:
    """A published figure of the same name is the `before` column; publishing merges the new
    figures in and keeps the ones this run did not measure."""
    published = tmp_path / "figures.json"
    first = Report(
        "bench", "t", "make bench", started="2026-11-20T00:00:00", figures_file=published
    )
    first.add("4. Resume", "resume wall time", 21.4, "s", "<=", 10)
    first.add("3. Planning", "plan ratio", 3.1, "x", ">=", 10)
    published.write_text('{"figures": []}')
    first.publish()
    second = Report(
        "bench", "t", "make bench", started="2026-11-27T00:00:00", figures_file=published
    )
    second.add("4. Resume", "resume wall time", 9.5, "s", "<=", 10)
    second.write(tmp_path)
    second.publish()
    assert (
        "| resume wall time | 9.5 s | 21.4 s (2026-11-20) | <= 10 s | PASS |"
        in (tmp_path / "bench.md").read_text()
    )
    lines = table(published).splitlines()
    assert lines[2].startswith(
        "| Planning: plan ratio | 3.1 x | – | >= 10 x | **MISS** | 2026-11-20"
    )
    assert lines[3].startswith("| Resume: resume wall time | 9.5 s | 21.4 s (2026-11-20) | <= 10 s")


def test_a_complete_bench_replaces_every_published_figure(tmp_path: Path) -> None:
    """After the whole bench, a figure it no longer measures (renamed, dropped) is gone, and a
    figure it measured again still shows the value it replaced."""
    published = tmp_path / "figures.json"
    published.write_text('{"figures": []}')
    first = Report("bench", "t", "make bench", started="2026-11-20", figures_file=published)
    first.add("1. Quota", "sent over 1 x 60 s", 1.0, "", ">=", 0.99)
    first.add("4. Resume", "resume wall time", 21.4, "s", "<=", 10)
    first.publish()
    second = Report("bench", "t", "make bench", started="2026-11-27", figures_file=published)
    second.add("1. Quota", "sent over 3 x 60 s", 1.0, "", ">=", 0.99)
    second.add("4. Resume", "resume wall time", 9.5, "s", "<=", 10)
    second.publish(complete=True)
    lines = table(published).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == [
        "| Quota: sent over 3 x 60 s",
        "| Resume: resume wall time",
    ]
    assert "21.4 s (2026-11-20)" in lines[1]


def test_a_generated_catalog_night_changes_one_title_in_a_hundred(tmp_path: Path) -> None:
    """Night N changes 1% of the titles (another 1% each night) and nothing else."""
    base = pacsv.read_csv(generate_catalog(tmp_path / "a.csv", 1000, seed=3)).to_pylist()
    night = pacsv.read_csv(generate_catalog(tmp_path / "b.csv", 1000, seed=3, night=7)).to_pylist()
    changed = [i for i, (a, b) in enumerate(zip(base, night, strict=True)) if a != b]
    assert changed == list(range(6, 1000, 100))
    assert all(night[i]["title"] == base[i]["title"] + " v7" for i in changed)
