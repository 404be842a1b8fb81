"""The report on a results file: what happened to every row, what it cost, how fast it went.

`build_report` summarises a results file (outcome counts, failures by code with example messages,
credits, render times, submissions per minute); `render_table`, `render_json` and `render_html`
turn the summary into a terminal table, JSON, or one self-contained HTML file (inline CSS and SVG,
no script, nothing fetched from the network) to hand to someone else.

The tests check that the page has no script and no external reference and that both charts are
well-formed SVG; no browser runs in CI. To look at it headless:
`chromium --headless --screenshot=report.png --window-size=1000,1200 report.html`.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

STATUS_ORDER = (
    "submitted",
    "already_submitted",
    "failed",
    "invalid",
    "unknown",
    "duplicate",
    "not_attempted",
    "planned",
)
VIDEO_STATUS_ORDER = ("completed", "failed", "processing")
EXAMPLES_PER_CODE = 3


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Rows that failed the same way: at submission (`code`) or at render (`error`)."""

    stage: str  # "submission" | "render"
    code: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RenderTimes:
    """Seconds from submission to the first sight of the final status, completed videos only."""

    count: int
    median: float | None
    p90: float | None  # nearest rank: the value at position ceil(0.9 n) of the sorted times
    longest: float | None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the three renderings show."""

    source: str
    rows: int
    by_status: dict[str, int]
    by_video_status: dict[str, int]
    failures: tuple[FailureGroup, ...]
    credits: float
    credits_estimated: int  # submitted rows without deducted_credit, counted as 1 credit each
    render_times: RenderTimes
    per_minute: tuple[tuple[str, int], ...]  # ("2026-01-31T22:05Z", submissions), gaps filled

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def build_report(frame: pd.DataFrame, source: str = "") -> Report:
    """Summarises a results frame read with `read_results` (every cell a string)."""
    column = _columns(frame)
    status = column("status")
    video_status = column("video_status")
    credits, estimated = _credits(status, column("deducted_credit"))
    return Report(
        source=source,
        rows=len(frame),
        by_status=_ordered(Counter(status), STATUS_ORDER),
        by_video_status=_ordered(Counter(v for v in video_status if v), VIDEO_STATUS_ORDER),
        failures=_failures(
            status, column("code"), column("message"), video_status, column("error")
        ),
        credits=credits,
        credits_estimated=estimated,
        render_times=_render_times(video_status, column("submitted_at"), column("completed_at")),
        per_minute=_per_minute(column("submitted_at")),
    )


def _columns(frame: pd.DataFrame) -> Callable[[str], list[str]]:
    """Column values as stripped strings; a missing column reads as empty cells."""

    def get(name: str) -> list[str]:
        if name not in frame.columns:
            return [""] * len(frame)
        return [str(value).strip() for value in frame[name].tolist()]

    return get


def _ordered(counts: Mapping[str, int], order: Iterable[str]) -> dict[str, int]:
    """Known keys in their usual order, then anything unexpected, most frequent first."""
    known = [key for key in order if counts.get(key)]
    rest = sorted((key for key in counts if key not in known), key=lambda k: (-counts[k], k))
    return {key: counts[key] for key in [*known, *rest]}


def _failures(
    status: list[str], code: list[str], message: list[str], video: list[str], error: list[str]
) -> tuple[FailureGroup, ...]:
    groups: dict[tuple[str, str], list[str]] = {}
    for i, row_status in enumerate(status):
        if row_status in ("failed", "invalid", "unknown"):
            key = ("submission", code[i] or row_status)
            groups.setdefault(key, []).append(message[i])
        if video[i] == "failed":
            # Render errors read "<code>: <message>" when the API gave a code.
            head = error[i].split(":", 1)[0].strip()
            key = ("render", head if ":" in error[i] and head.isdigit() else "render failed")
            groups.setdefault(key, []).append(error[i])
    result = []
    for (stage, group_code), messages in groups.items():
        examples = tuple(dict.fromkeys(m for m in messages if m))[:EXAMPLES_PER_CODE]
        result.append(FailureGroup(stage, group_code, len(messages), examples))
    return tuple(sorted(result, key=lambda g: (g.stage != "submission", -g.count, g.code)))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _credits(status: list[str], deducted: list[str]) -> tuple[float, int]:
    """Credits are taken on acceptance, so a submitted row without a figure yet counts as 1.

    `already_submitted` rows were paid for by an earlier run and are not counted again.
    """
    total, estimated = 0.0, 0
    for row_status, text in zip(status, deducted, strict=True):
        if row_status != "submitted":
            continue
        value = _number(text)
        if value is None:
            estimated += 1
            total += 1.0
        else:
            total += value
    return total, estimated


def _when(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _render_times(video: list[str], submitted: list[str], completed: list[str]) -> RenderTimes:
    seconds = []
    for row_video, start_text, end_text in zip(video, submitted, completed, strict=True):
        start, end = _when(start_text), _when(end_text)
        if row_video == "completed" and start and end and end >= start:
            seconds.append((end - start).total_seconds())
    if not seconds:
        return RenderTimes(0, None, None, None)
    seconds.sort()
    p90 = seconds[math.ceil(0.9 * len(seconds)) - 1]
    return RenderTimes(len(seconds), statistics.median(seconds), p90, seconds[-1])


def _per_minute(submitted: list[str]) -> tuple[tuple[str, int], ...]:
    minutes = Counter(
        moment.astimezone(UTC).replace(second=0, microsecond=0)
        for moment in map(_when, submitted)
        if moment is not None
    )
    if not minutes:
        return ()
    first, last = min(minutes), max(minutes)
    buckets = []
    at = first
    while at <= last:
        buckets.append((at.strftime("%Y-%m-%dT%H:%MZ"), minutes.get(at, 0)))
        at += timedelta(minutes=1)
    return tuple(buckets)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def render_table(report: Report) -> str:
    """Plain text for a terminal."""
    lines = [f"Results: {report.source}  ({report.rows} rows)", "", "Outcome"]
    lines += [f"  {name:<20}{count:>8}" for name, count in report.by_status.items()]
    if report.by_video_status:
        lines += ["", "Render"]
        lines += [f"  {name:<20}{count:>8}" for name, count in report.by_video_status.items()]
    if report.failures:
        lines += ["", "Failures"]
        for group in report.failures:
            lines.append(f"  {group.stage:<11}{group.code:<16}{group.count:>6}")
            lines += [f"      {example}" for example in group.examples]
    estimate = f" ({report.credits_estimated} estimated)" if report.credits_estimated else ""
    times = report.render_times
    lines += [
        "",
        f"Credits spent        {report.credits:g}{estimate}",
        f"Render time          median {_seconds(times.median)}, p90 {_seconds(times.p90)}, "
        f"longest {_seconds(times.longest)} ({times.count} videos)",
    ]
    if report.per_minute:
        peak = max(count for _, count in report.per_minute)
        lines.append(
            f"Submissions          {report.per_minute[0][0]} to {report.per_minute[-1][0]}, "
            f"peak {peak}/min"
        )
    return "\n".join(lines) + "\n"


def render_json(report: Report) -> str:
    """The report as one JSON document."""
    return json.dumps(report.to_dict(), indent=2) + "\n"


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) { background: #f4f4f4; }
.ok { fill: #2e7d32; } .bad { fill: #c62828; } .wait { fill: #f9a825; } .other { fill: #78909c; }
.bar { fill: #1565c0; } svg text { font: 11px system-ui, sans-serif; fill: #222; }
"""
_BAR_CLASS = {
    "submitted": "ok",
    "already_submitted": "ok",
    "completed": "ok",
    "failed": "bad",
    "invalid": "bad",
    "unknown": "wait",
    "processing": "wait",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _outcome_chart(counts: Mapping[str, int]) -> str:
    """Horizontal bars, one per outcome."""
    width, row_height, label = 560, 22, 150
    peak = max(counts.values(), default=0) or 1
    parts = [
        f'<svg role="img" aria-label="outcomes" width="{width}" '
        f'height="{row_height * len(counts) + 4}" viewBox="0 0 {width} '
        f'{row_height * len(counts) + 4}">'
    ]
    for i, (name, count) in enumerate(counts.items()):
        y = i * row_height + 2
        bar = (width - label - 60) * count / peak
        parts.append(
            f'<text x="0" y="{y + 15}">{_e(name)}</text>'
            f'<rect class="{_BAR_CLASS.get(name, "other")}" x="{label}" y="{y + 3}" '
            f'width="{bar:.1f}" height="{row_height - 6}"/>'
            f'<text x="{label + bar + 6:.1f}" y="{y + 15}">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _throughput_chart(per_minute: tuple[tuple[str, int], ...]) -> str:
    """Vertical bars, one per minute of the run."""
    if not per_minute:
        return "<p>No submissions recorded.</p>"
    width, height, bottom = 640, 180, 20
    peak = max(count for _, count in per_minute) or 1
    step = width / len(per_minute)
    parts = [
        f'<svg role="img" aria-label="submissions per minute" width="{width}" '
        f'height="{height + bottom}" viewBox="0 0 {width} {height + bottom}">'
    ]
    for i, (minute, count) in enumerate(per_minute):
        bar = (height - 14) * count / peak
        parts.append(
            f'<rect class="bar" x="{i * step + 1:.1f}" y="{height - bar:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{bar:.1f}"><title>{_e(minute)}: {count}'
            "</title></rect>"
        )
    parts.append(
        f'<text x="0" y="{height + 15}">{_e(per_minute[0][0])}</text>'
        f'<text x="{width}" y="{height + 15}" text-anchor="end">{_e(per_minute[-1][0])}</text>'
        f'<text x="0" y="11">peak {peak}/min</text></svg>'
    )
    return "".join(parts)


def _table(header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(cell)}</td>'
            if isinstance(cell, int | float)
            else f"<td>{_e(cell)}</td>"
            for cell in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, no script, no external reference."""
    times = report.render_times
    outcomes = {**report.by_status, **{f"render {k}": v for k, v in report.by_video_status.items()}}
    failures = (
        _table(
            ("stage", "code", "rows", "examples"),
            ((g.stage, g.code, g.count, " | ".join(g.examples)) for g in report.failures),
        )
        if report.failures
        else "<p>No failures.</p>"
    )
    estimate = f" ({report.credits_estimated} estimated)" if report.credits_estimated else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>jogg-batch report: {_e(report.source)}</title>
<style>{_CSS}</style></head>
<body>
<h1>jogg-batch report</h1>
<p>{_e(report.source)}: {report.rows} rows. Credits spent: {report.credits:g}{_e(estimate)}.
Render time: median {_e(_seconds(times.median))}, p90 {_e(_seconds(times.p90))},
longest {_e(_seconds(times.longest))} ({times.count} videos).</p>
<h2>Outcomes</h2>
{_outcome_chart(outcomes)}
<h2>Submissions per minute</h2>
{_throughput_chart(report.per_minute)}
<h2>Failures</h2>
{failures}
</body></html>
"""
