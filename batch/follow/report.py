"""The report on a results file: what happened to every row, what it cost, what to do next.

`build_report` reads a results frame into a `Report`: outcome counts, failures grouped by reason
(with the rows affected and the next step), credits, render times, the run's timeline, and one
`ReportRow` per catalog row. `render_table` and `render_json` give the summary (no per-row data:
the results file is that); `batch.follow.report_page.render_html` turns it into the hand-off page.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import shlex
import statistics
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import pandas as pd

from batch import statuses, untrusted
from batch.follow.addresses import literal_address, refusal
from batch.logs import escape_controls
from batch.statuses import ROW_ORDER
from batch.vocabulary import ACCOUNT_CODES, PERMANENT_CODES

log = logging.getLogger(__name__)

VIDEO_STATUS_ORDER = ("completed", "failed", "processing")
EXAMPLES_PER_GROUP = 3
# Beyond this many distinct reasons for one code, the rarest share one "other messages" group.
REASONS_PER_CODE = 10
TIMELINE_POINTS = 240
# Columns that name a row for people, best first; compared without case, spaces or underscores.
KEY_COLUMNS = ("sku", "product_id", "product_url", "product_name")
PRODUCT_COLUMNS = ("title", "product_title", "product_name", "name")
VIDEO_NAME_COLUMNS = ("video_name", "video_title")


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Rows that did not get a video for the same reason, and what to do about them.

    `stage` is "submission" (the API or validation refused the row), "not sent" (the run
    stopped first) or "render" (accepted, then the render failed). `reason` is the message with
    the row's own values elided, so rows with the same problem share a group; `examples` keep
    a few messages as written.
    """

    stage: str
    code: str
    reason: str
    count: int
    rows: tuple[int, ...]
    examples: tuple[str, ...]
    next_step: str


@dataclass(frozen=True, slots=True)
class RenderTimes:
    """Seconds from submission to the first sight of the final status, completed videos only."""

    count: int
    median: float | None
    p90: float | None  # nearest rank: the value at position ceil(0.9 n) of the sorted times
    longest: float | None


@dataclass(frozen=True, slots=True)
class Timeline:
    """Cumulative submissions and completed renders of this run, sampled at even steps.

    `seconds[i]` is the time since `start`; `submitted[i]` and `completed[i]` count the events
    at or before it, so a 9-second demo and a 20-hour night draw the same way.
    """

    start: str  # ISO-8601 UTC of the first submission
    seconds: tuple[float, ...]
    submitted: tuple[int, ...]
    completed: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One catalog row as the page's table shows it; `group` indexes `Report.failures`."""

    row: int
    key: str
    product: str
    video_name: str
    status: str
    code: str
    reason: str
    video_status: str
    duration: float | None
    video_url: str  # http(s) only; anything else is dropped
    cover_url: str
    group: int | None


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the three renderings show. `rows` is for the page only (not in `to_dict`)."""

    source: str
    rows: int
    by_status: dict[str, int]
    by_video_status: dict[str, int]
    failures: tuple[FailureGroup, ...]
    credits: float
    credits_estimated: int  # submitted rows without deducted_credit, counted as 1 credit each
    render_times: RenderTimes
    per_minute: tuple[tuple[str, int], ...]  # ("2026-01-31T22:05Z", submissions), gaps filled
    timeline: Timeline | None
    table: tuple[ReportRow, ...] = field(default=(), repr=False, compare=False)

    @property
    def submitted(self) -> int:
        return self.by_status.get("submitted", 0) + self.by_status.get("already_submitted", 0)

    @property
    def failed(self) -> int:
        return self.by_status.get("failed", 0) + self.by_status.get("invalid", 0)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        del data["table"]
        return data


def build_report(frame: pd.DataFrame, source: str = "", key: str | None = None) -> Report:
    """Summarises a results frame read with `read_results` (every cell a string).

    `key` names the column that identifies a row for people; by default the first of
    `KEY_COLUMNS` the file has.
    """
    column = _columns(frame)
    # A status a person retyped (`Submitted`, `Not attempted`) counts as the one it spells.
    status = [statuses.row_status(text) or text for text in column("status")]
    video_status = column("video_status")
    message, error = column("message"), column("error")
    credits, estimated = _credits(status, column("deducted_credit"), column("video_id"))
    submitted_at, completed_at = _epoch(column("submitted_at")), _epoch(column("completed_at"))
    failures, membership = _failures(
        status, column("code"), message, video_status, error, column("row"), source
    )
    return Report(
        source=source,
        rows=len(frame),
        by_status=_ordered(Counter(status), ROW_ORDER),
        by_video_status=_ordered(Counter(v for v in video_status if v), VIDEO_STATUS_ORDER),
        failures=failures,
        credits=credits,
        credits_estimated=estimated,
        render_times=_render_times(video_status, submitted_at, completed_at),
        per_minute=_per_minute(status, submitted_at),
        timeline=_timeline(status, video_status, submitted_at, completed_at),
        table=_table_rows(frame, column, key, membership),
    )


def _columns(frame: pd.DataFrame) -> Callable[[str], list[str]]:
    """Column values as stripped strings, each column read once; a missing one is empty cells."""

    @functools.cache
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


# `column: 'value' is ...`: the quoted value (a repr) is the row's own; the rest is the reason.
_QUOTED_VALUE = re.compile(r"""(: )(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def reason_of(message: str) -> str:
    """The message with the row's own values elided: what rows with the same problem share."""
    return _QUOTED_VALUE.sub(r"\1…", message)


def elided_values(examples: Iterable[str]) -> list[str]:
    """The values `reason_of` took out of these messages, each once: `'45'`, `'abc'`."""
    found = (m.group(0)[2:] for text in examples for m in _QUOTED_VALUE.finditer(text))
    return list(dict.fromkeys(found))


def _failures(
    status: list[str],
    code: list[str],
    message: list[str],
    video: list[str],
    error: list[str],
    numbers: list[str],
    source: str,
) -> tuple[tuple[FailureGroup, ...], list[int | None]]:
    """The groups, and for each row the index of its group (None when it has none)."""
    members: dict[tuple[str, str, str], list[int]] = {}
    for i, row_status in enumerate(status):
        if row_status in ("failed", "invalid", "unknown"):
            row_code = code[i] if code[i] not in ("", "0") else row_status
            members.setdefault(("submission", row_code, reason_of(message[i])), []).append(i)
        elif row_status == "not_attempted":
            members.setdefault(("not sent", "not_attempted", ""), []).append(i)
        elif video[i] == "failed":
            # Render errors read "<code>: <message>" when the API gave a code.
            head, colon, rest = error[i].partition(":")
            if colon and head.strip().isdigit():
                key = ("render", head.strip(), reason_of(rest.strip()))
            else:
                key = ("render", "render failed", reason_of(error[i]))
            members.setdefault(key, []).append(i)
    members = _fold_rare_reasons(members)
    per_code: Counter[tuple[str, str]] = Counter()
    for (stage, group_code, _), indices in members.items():
        per_code[stage, group_code] += len(indices)
    # Stage, then the biggest code first, then its biggest reason: a code's groups stay together.
    order = sorted(
        members,
        key=lambda k: (
            _STAGES.index(k[0]),
            -per_code[k[:2]],
            k[1],
            k[2].endswith(_OTHER),  # the folded rest comes last in its code
            -len(members[k]),
            k[2],
        ),
    )
    groups: list[FailureGroup] = []
    membership: list[int | None] = [None] * len(status)
    retry = f"jogg-batch retry {shlex.quote(source) if source else 'RESULTS'}"
    for index, (stage, group_code, reason) in enumerate(order):
        indices = members[(stage, group_code, reason)]
        texts = (error[i] if stage == "render" else message[i] for i in indices)
        for i in indices:
            membership[i] = index
        groups.append(
            FailureGroup(
                stage=stage,
                code=group_code,
                reason=reason,
                count=len(indices),
                rows=tuple(_row_number(numbers[i], i) for i in indices),
                examples=tuple(dict.fromkeys(t for t in texts if t))[:EXAMPLES_PER_GROUP],
                next_step=_next_step(stage, group_code, retry),
            )
        )
    return tuple(groups), membership


_STAGES = ("submission", "not sent", "render")
_OTHER = " other messages"


def _fold_rare_reasons(
    members: dict[tuple[str, str, str], list[int]],
) -> dict[tuple[str, str, str], list[int]]:
    """Messages that carry unquoted ids would make a group per row: keep the common ones."""
    by_code: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for key in members:
        by_code.setdefault(key[:2], []).append(key)
    folded: dict[tuple[str, str, str], list[int]] = {}
    for (stage, group_code), keys in by_code.items():
        keys.sort(key=lambda k: -len(members[k]))
        for key in keys[:REASONS_PER_CODE]:
            folded[key] = members[key]
        if len(keys) > REASONS_PER_CODE:
            rest = sorted(i for key in keys[REASONS_PER_CODE:] for i in members[key])
            other = f"{len(keys) - REASONS_PER_CODE}{_OTHER}"
            folded[(stage, group_code, other)] = rest
    return folded


def _next_step(stage: str, code: str, retry: str) -> str:
    """What a person does about the group, in the words of the commands they have."""
    if stage == "render":
        return (
            "The API accepted these rows (the credit is spent) but the render failed; "
            f"`{retry}` does not resend them. Ask JoggAI support with the video ids, "
            "or send the rows again in a new catalog."
        )
    if stage == "not sent":
        return f"The run stopped before these rows: `{retry}` sends them."
    if code == "invalid":
        return (
            "Checked before sending, never sent: correct these cells in the catalog and run it "
            "again (rows already accepted are not sent twice)."
        )
    if code == "unknown":
        return f"Possibly accepted: `{retry}` looks them up before sending anything again."
    if code.isdigit() and int(code) in ACCOUNT_CODES:
        return f"An account problem (key, credit or permission): fix it, then `{retry}`."
    if code.isdigit() and int(code) in PERMANENT_CODES:
        # A retry sends a row's request as its run planned it (a cell edited in the results
        # file is refused): a correction goes through the catalog.
        return (
            "The API refused the request: correct the cells the message names in the catalog "
            "and run it again (rows already accepted are not sent twice); "
            f"`{retry} --retry-permanent` sends them again unchanged."
        )
    return f"Worth another try: `{retry}`."


def _row_number(text: str, index: int) -> int:
    try:
        return int(float(text))
    except ValueError:
        return index + 1


def row_ranges(rows: Sequence[int], limit: int = 8) -> str:
    """`4-5, 9, 12-40`, at most `limit` ranges, then how many rows more."""
    ranges: list[tuple[int, int]] = []
    for number in sorted(rows):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges[:limit])
    if len(ranges) > limit:
        rest = sum(b - a + 1 for a, b in ranges[limit:])
        text += f" and {rest:,} more"
    return text


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _credits(status: list[str], deducted: list[str], videos: list[str]) -> tuple[float, int]:
    """Credits are taken on acceptance, so a submitted row without a figure yet counts as 1.

    `already_submitted` rows were paid for by an earlier run and are not counted again; nor is
    a video a second line shows (two results files pasted together): it was paid for once.
    """
    total, estimated = 0.0, 0
    counted: set[str] = set()
    for row_status, text, video in zip(status, deducted, videos, strict=True):
        if row_status != "submitted" or video in counted:
            continue
        if video:
            counted.add(video)
        value = _number(text)
        if value is None:
            estimated += 1
            total += 1.0
        else:
            total += value
    return total, estimated


# How spreadsheets write back the ISO times jogg-batch wrote (`28/11/2026 01:20`, `11/28/2026
# 1:20:07 AM`): a column's cells are read with the first of these that reads all of them, so
# day-first and month-first are told apart by the column, never guessed cell by cell.
_SPREADSHEET_TIMES: Final = tuple(
    f"{day} {time}"
    for day in ("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y")
    for time in ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")
)


def _epoch(texts: list[str]) -> list[float | None]:
    """Time cells as Unix seconds (naive ones read as UTC, as jogg-batch wrote them): ISO 8601,
    or the form a spreadsheet saved them in (`_SPREADSHEET_TIMES`); empty or unreadable as
    None, with a warning when cells were left unread."""
    moments = [_iso(text) for text in texts]
    rest = [text for text, moment in zip(texts, moments, strict=True) if text and moment is None]
    if rest:
        shape = next((f for f in _SPREADSHEET_TIMES if all(_reads(t, f) for t in rest)), None)
        if shape is not None:
            moments = [m if m or not t else datetime.strptime(t.strip(), shape)
                       for t, m in zip(texts, moments, strict=True)]  # fmt: skip
        else:
            log.warning(
                "%d time cell(s) are no time the report reads (%r): left out of render times",
                len(rest),
                rest[0],
            )
    return [None if m is None else m.replace(tzinfo=m.tzinfo or UTC).timestamp() for m in moments]


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _reads(text: str, shape: str) -> bool:
    try:
        datetime.strptime(text.strip(), shape)
    except ValueError:
        return False
    return True


def _render_times(
    video: list[str], submitted: list[float | None], completed: list[float | None]
) -> RenderTimes:
    seconds = []
    for row_video, start, end in zip(video, submitted, completed, strict=True):
        if row_video == "completed" and start is not None and end is not None and end >= start:
            seconds.append(end - start)
    if not seconds:
        return RenderTimes(0, None, None, None)
    seconds.sort()
    p90 = seconds[math.ceil(0.9 * len(seconds)) - 1]
    return RenderTimes(len(seconds), statistics.median(seconds), p90, seconds[-1])


def _per_minute(status: list[str], submitted: list[float | None]) -> tuple[tuple[str, int], ...]:
    """Submissions a minute, of the rows the file's runs submitted (an `already_submitted` row's
    date is another night's). Minutes without any are filled in over at most a week: the rows of
    retries months apart, or a date a spreadsheet made up, list only the minutes that had some."""
    minutes = Counter(
        int(moment // 60)
        for row_status, moment in zip(status, submitted, strict=True)
        if row_status == "submitted" and moment is not None
    )
    if not minutes:
        return ()
    first, last = min(minutes), max(minutes)
    shown = range(first, last + 1) if last - first <= _FILLED_MINUTES else sorted(minutes)
    return tuple(
        (datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ"), minutes[minute])
        for minute in shown
    )


_FILLED_MINUTES = 7 * 24 * 60


def _timeline(
    status: list[str],
    video: list[str],
    submitted: list[float | None],
    completed: list[float | None],
) -> Timeline | None:
    """This run's rows only: an `already_submitted` row's date would stretch the axis by days."""
    sent, done = [], []
    for row_status, row_video, start, end in zip(status, video, submitted, completed, strict=True):
        if row_status != "submitted" or start is None:
            continue
        sent.append(start)
        if row_video == "completed" and end is not None:
            done.append(end)
    if not sent:
        return None
    sent.sort()
    done.sort()
    origin = sent[0]
    span = max(sent[-1], done[-1] if done else origin) - origin or 1.0
    steps = [span * i / (TIMELINE_POINTS - 1) for i in range(TIMELINE_POINTS)]
    return Timeline(
        start=datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        seconds=tuple(steps),
        submitted=tuple(bisect_right(sent, origin + s) for s in steps),
        completed=tuple(bisect_right(done, origin + s) for s in steps),
    )


def _table_rows(
    frame: pd.DataFrame,
    column: Callable[[str], list[str]],
    key: str | None,
    membership: list[int | None],
) -> tuple[ReportRow, ...]:
    headers = [str(name) for name in frame.columns]
    key_header = key if key in headers else _find(headers, KEY_COLUMNS)
    product_header = _find([h for h in headers if h != key_header], PRODUCT_COLUMNS)
    keys = column(key_header) if key_header else [""] * len(frame)
    products = column(product_header) if product_header else [""] * len(frame)
    names = _video_names(frame, _find(headers, VIDEO_NAME_COLUMNS))
    numbers, status, code = column("row"), column("status"), column("code")
    message, error, video = column("message"), column("error"), column("video_status")
    duration, video_url, cover_url = column("duration"), column("video_url"), column("cover_url")
    return tuple(
        ReportRow(
            row=_row_number(numbers[i], i),
            key=keys[i],
            product=products[i],
            video_name=names[i],
            status=status[i],
            code="" if code[i] in ("0", "0.0") else code[i],
            reason=message[i] or error[i],
            video_status=video[i],
            duration=_number(duration[i]),
            video_url=web_url(video_url[i]),
            cover_url=thumbnail_url(cover_url[i]),
            group=membership[i],
        )
        for i in range(len(frame))
    )


def _squashed(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _find(headers: Sequence[str], wanted: Sequence[str]) -> str | None:
    squashed = {_squashed(h): h for h in reversed(headers)}
    for name in wanted:
        header = squashed.get(_squashed(name))
        if header is not None:
            return header
    return None


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _video_names(frame: pd.DataFrame, header: str | None) -> list[str]:
    """The catalog's video_name cells, `{column}` placeholders filled from the same row.

    A name set only in the config's defaults is not in the results file, so it shows empty.
    """
    if header is None:
        return [""] * len(frame)
    columns = {str(name): frame[name].tolist() for name in frame.columns}
    names = []
    for i, template in enumerate(frame[header].tolist()):
        text = str(template)

        def fill(match: re.Match[str], i: int = i) -> str:
            values = columns.get(match.group(1).strip())
            return match.group(0) if values is None else str(values[i])

        names.append(_PLACEHOLDER.sub(fill, text) if "{" in text else text)
    return names


def web_url(text: str) -> str:
    """The URL when it is an absolute http(s) one, else empty: a link must never run script."""
    return untrusted.web_url(text) or ""


def thumbnail_url(text: str) -> str:
    """A cover the page may fetch when it opens, else empty: an https URL (`web_url`) on a
    host that is a name or a public address. The reader's browser fetches it each time the
    report is opened, so a server's URL on a loopback or private address (a router's admin
    page, a service on the reader's machine) would be a request from there, and plain http one
    any network between could read or change."""
    url = web_url(text)
    try:
        host = urlsplit(url).hostname
    except ValueError:  # a bracketed host that is no IPv6 address
        return ""
    name = (host or "").rstrip(".")
    if url[:8].lower() != "https://" or not name or f".{name}".endswith(".localhost"):
        return ""
    address = literal_address(name)
    return url if address is None or refusal(address) is None else ""


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
        lines += ["", "Failures by reason"]
        for section in failure_sections(report.failures):
            lines.append(f"  {section.title} ({_rows_label(section.count)})")
            for _, group in section.groups:
                lines.append(f"    {group.reason or '(no message)'}")
                values = elided_values(group.examples)
                lines.append(
                    f"        {'row' if group.count == 1 else 'rows'} {row_ranges(group.rows)}"
                    + (f"   ({', '.join(values)})" if values else "")
                )
            lines.append(f"    next: {section.next_step}")
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
    # A file name or a server's message is one line: it cannot forge others, nor move the
    # terminal.
    return "\n".join(map(escape_controls, lines)) + "\n"


@dataclass(frozen=True, slots=True)
class FailureSection:
    """The groups of one stage and code: they share a title and a next step."""

    title: str
    count: int
    next_step: str
    groups: tuple[tuple[int, FailureGroup], ...]  # (index in Report.failures, group)


def failure_sections(failures: Sequence[FailureGroup]) -> list[FailureSection]:
    """Consecutive groups of the same stage and code (`build_report` keeps them together)."""
    runs: dict[tuple[str, str], list[tuple[int, FailureGroup]]] = {}
    for index, group in enumerate(failures):
        runs.setdefault((group.stage, group.code), []).append((index, group))
    sections = []
    for (stage, code), groups in runs.items():
        title = {"not_attempted": "not attempted", "render failed": "render failed"}.get(
            code, f"{stage} {code}"
        )
        count = sum(group.count for _, group in groups)
        sections.append(FailureSection(title, count, groups[0][1].next_step, tuple(groups)))
    return sections


def _rows_label(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def render_json(report: Report) -> str:
    """The report's summary as one JSON document (the per-row data is the results file)."""
    return json.dumps(report.to_dict(), indent=2) + "\n"
