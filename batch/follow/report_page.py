"""The HTML report: one self-contained file to hand over, which opens offline and stays fast.

The page holds the summary, a cumulative timeline (inline SVG), the failures grouped by reason
with the next step, and a table of every row. The rows travel as one JSON blob in a
`<script type="application/json">` element; a few lines of plain JavaScript show 100 of them at a
time, filtered by status and a text search, so 100,000 rows load as fast as 100.

Values from the results file (server messages, names, URLs) never become markup: they are HTML
escaped in the markup, `<`, `>` and `&` are escaped inside the JSON blob so no `</script>` can end
it early, and the script writes them with `textContent`. Links keep only absolute http(s) URLs,
thumbnails only https ones on no loopback or private address (`report.thumbnail_url`). A
Content-Security-Policy admits only this page's own style and script (by hash), and images only
over https, so even a value that slipped through could not run. Nothing is fetched but the
thumbnails.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Iterator
from datetime import datetime

from batch.follow.report import (
    Report,
    ReportRow,
    Timeline,
    elided_values,
    failure_sections,
    row_ranges,
)

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 76em; color: #1d232a;
  padding: 0 1em; }
h1 { font-size: 1.35em; margin: 0 0 .3em; } h1 small { font-weight: normal; color: #5b6570; }
h2 { font-size: 1.05em; margin: 1.8em 0 .5em; }
.summary { font-size: 1.15em; margin: .2em 0; } .summary b { font-variant-numeric: tabular-nums; }
.muted, small { color: #5b6570; }
table { border-collapse: collapse; width: 100%; }
td, th { padding: .3em .6em; text-align: left; vertical-align: top;
  border-bottom: 1px solid #e3e7eb; }
th { font-weight: 600; background: #f3f5f7; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.pill { display: inline-block; padding: 0 .5em; border-radius: .8em; background: #e3e7eb;
  white-space: nowrap; font-size: .92em; }
.pill.ok { background: #d7f0dc; color: #1b5e20; } .pill.bad { background: #fbdcdc; color: #8e1b1b; }
.pill.warn { background: #fff0c2; color: #6d4c00; }
code { background: #f3f5f7; padding: 0 .25em; border-radius: 3px; }
.controls { display: flex; flex-wrap: wrap; gap: .6em; align-items: center; margin-bottom: .6em; }
.controls input { min-width: 18em; } .controls .grow { flex: 1; }
#rows img { display: block; width: 96px; height: 54px; object-fit: cover; border-radius: 3px;
  background: #e3e7eb; }
svg text { font: 11px system-ui, sans-serif; fill: #1d232a; }
svg .grid { stroke: #e3e7eb; } svg .axis { stroke: #9aa4ad; }
svg .sent { stroke: #1565c0; } svg .done { stroke: #2e7d32; }
svg polyline { fill: none; stroke-width: 2; stroke-linejoin: round; }
svg .key-sent { fill: #1565c0; } svg .key-done { fill: #2e7d32; }
"""

_JS = """
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("report-data").textContent);
  const S = data.s, rows = data.r, PAGE = 100, body = $("rows").tBodies[0];
  const TONE = {submitted: "ok", already_submitted: "ok", completed: "ok", failed: "bad",
    invalid: "bad", unknown: "warn", processing: "warn", not_attempted: "warn"};
  let shown = rows, page = 0, group = -1, hay = null;
  const cell = (text, cls) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  };
  const pill = (value) => {
    const td = cell(""), span = document.createElement("span");
    span.textContent = value.replace(/_/g, " ");
    span.className = "pill " + (TONE[value] || "");
    if (value) td.append(span);
    return td;
  };
  const web = (prefix, rest) => {
    const url = S[prefix] + rest;
    return /^https?:\\/\\//i.test(url) ? url : "";
  };
  const video = (r) => {
    const td = cell(""), href = web(r[9], r[10]), src = web(r[11], r[12]);
    let inner = document.createTextNode(href ? "video" : "");
    if (src) {
      inner = Object.assign(document.createElement("img"),
        {src, alt: "cover of row " + r[0], loading: "lazy", width: 96, height: 54});
      // Offline, or the link expired: the link stays usable as a word.
      inner.addEventListener("error", () => inner.replaceWith(href ? "video" : ""));
    }
    if (!href) return td.append(inner), td;
    const a = Object.assign(document.createElement("a"),
      {href, target: "_blank", rel: "noopener noreferrer", title: "open the video"});
    a.append(inner);
    td.append(a);
    return td;
  };
  const line = (r) => {
    const tr = document.createElement("tr"), key = cell(r[1]);
    if (r[2]) {
      key.append(document.createElement("br"),
        Object.assign(document.createElement("small"), {textContent: r[2]}));
    }
    tr.append(cell(r[0], "n"), key, cell(r[3]), pill(S[r[4]]),
      cell([S[r[5]], S[r[6]]].filter(Boolean).join(": ")), pill(S[r[7]]),
      cell(r[8] === null ? "" : r[8] + " s", "n"), video(r));
    return tr;
  };
  const draw = () => {
    const first = page * PAGE, slice = shown.slice(first, first + PAGE);
    body.replaceChildren(...slice.map(line));
    $("f-count").textContent = shown.length ? `rows ${first + 1}-${first + slice.length} of ` +
      `${shown.length.toLocaleString("en")}` : "no rows match";
    $("prev").disabled = page === 0;
    $("next").disabled = first + PAGE >= shown.length;
  };
  const filter = () => {
    const choice = $("f-status").value, at = choice.indexOf(":");
    const field = choice.slice(0, at) === "render" ? 7 : 4, value = choice.slice(at + 1);
    const q = $("f-search").value.trim().toLowerCase();
    if (q && !hay) hay = rows.map((r) => [r[0], r[1], r[2], r[3], S[r[5]], S[r[6]]]
      .join("\\n").toLowerCase());
    shown = rows.filter((r, i) => (!choice || S[r[field]] === value) &&
      (group < 0 || r[13] === group) && (!q || hay[i].includes(q)));
    page = 0;
    draw();
  };
  $("f-status").addEventListener("change", filter);
  $("f-search").addEventListener("input", filter);
  $("prev").addEventListener("click", () => { page -= 1; draw(); });
  $("next").addEventListener("click", () => { page += 1; draw(); });
  for (const button of document.querySelectorAll("button[data-group]")) {
    button.addEventListener("click", () => {
      group = Number(button.dataset.group);
      $("f-group-name").textContent = button.dataset.label;
      $("f-group").hidden = false;
      filter();
      $("rows-title").scrollIntoView();
    });
  }
  $("f-clear").addEventListener("click", () => {
    group = -1;
    $("f-group").hidden = true;
    filter();
  });
  draw();
})();
"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# Only this page's own style and script run; thumbnails (https only) are the one thing fetched.
_POLICY = (
    f"default-src 'none'; img-src https:; style-src '{_sha256(_CSS)}'; "
    f"script-src '{_sha256(_JS)}'; base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(report: Report) -> str:
    """The page: summary, timeline, failures by reason, and the row table."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>jogg-batch report: {_e(report.source)}</title>
<style>{_CSS}</style></head>
<body>
<h1>jogg-batch report <small>{_e(report.source)}</small></h1>
{_summary(report)}
<h2>Timeline</h2>
{_timeline_chart(report.timeline)}
<h2>Failures by reason</h2>
{_failures(report)}
<h2 id="rows-title">Rows</h2>
<div class="controls">
<label>Show <select id="f-status">{_status_options(report)}</select></label>
<input id="f-search" type="search" placeholder="Search key, product, video name, reason"
 aria-label="Search rows">
<span id="f-group" hidden>reason: <b id="f-group-name"></b>
<button id="f-clear" type="button" aria-label="show every reason">&#215;</button></span>
<span class="grow"></span><span id="f-count" class="muted"></span>
<button id="prev" type="button">&#8249; Previous</button>
<button id="next" type="button">Next &#8250;</button>
</div>
<table id="rows"><thead><tr><th>Row</th><th>Key / product</th><th>Video name</th><th>Status</th>
<th>Code and reason</th><th>Render</th><th>Duration</th><th>Video</th></tr></thead><tbody></tbody>
</table>
<noscript><p>The row table needs JavaScript; the results file holds every row too.</p></noscript>
<script type="application/json" id="report-data">{rows_json(report.table)}</script>
<script>{_JS}</script>
</body></html>
"""


def _summary(report: Report) -> str:
    by_status, by_video = report.by_status, report.by_video_status
    parts = [
        f"<b>{report.rows:,}</b> rows",
        f"<b>{report.submitted:,}</b> submitted",
        f"<b>{report.failed:,}</b> failed",
    ]
    for status, label in (("unknown", "unknown"), ("not_attempted", "not sent")):
        if by_status.get(status):
            parts.append(f"<b>{by_status[status]:,}</b> {label}")
    estimate = f" ({report.credits_estimated:,} estimated)" if report.credits_estimated else ""
    parts.append(f"<b>{report.credits:,g}</b> credits{estimate}")
    parts.append(f"<b>{by_video.get('completed', 0):,}</b> of {report.submitted:,} renders done")
    if by_video.get("failed"):
        failed = by_video["failed"]
        parts.append(f"<b>{failed:,}</b> {'render' if failed == 1 else 'renders'} failed")
    times = report.render_times
    detail = (
        f"Render time: median {_duration(times.median)}, p90 {_duration(times.p90)}, longest "
        f"{_duration(times.longest)} ({times.count:,} videos)."
        if times.count
        else "No completed render yet."
    )
    return f'<p class="summary">{" · ".join(parts)}</p>\n<p class="muted">{detail}</p>'


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else _elapsed(seconds, seconds)


def _elapsed(seconds: float, span: float) -> str:
    """A time on an axis `span` long, in the unit that axis reads best in."""
    if span < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if span < 120:
        return f"{seconds:.0f} s"
    if span < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def _timeline_chart(timeline: Timeline | None) -> str:
    """Two cumulative lines over the elapsed time; the SVG holds numbers and our labels only."""
    if timeline is None:
        return '<p class="muted">No submissions recorded in this run.</p>'
    width, height, left, right, top, bottom = 760, 230, 52, 120, 12, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    span = timeline.seconds[-1] or 1.0
    peak = max(timeline.submitted[-1], 1)

    def x(seconds: float) -> float:
        return left + plot_w * seconds / span

    def y(count: int) -> float:
        return top + plot_h - plot_h * count / peak

    def line(values: tuple[int, ...], cls: str) -> str:
        points = " ".join(
            f"{x(s):.1f},{y(v):.1f}" for s, v in zip(timeline.seconds, values, strict=True)
        )
        return f'<polyline class="{cls}" points="{points}"/>'

    parts = [
        f'<svg role="img" aria-label="submissions and completed renders over the run" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        at = x(span * fraction)
        parts.append(
            f'<line class="grid" x1="{at:.1f}" y1="{top}" x2="{at:.1f}" y2="{top + plot_h}"/>'
            f'<text x="{at:.1f}" y="{top + plot_h + 15}" text-anchor="middle">'
            f"{_e(_elapsed(span * fraction, span))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" '
        f'y2="{top + plot_h}"/>'
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak:,}</text>'
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 6}">time since the first submission, '
        f"{_e(_started(timeline.start))}</text>"
    )
    parts += [line(timeline.submitted, "sent"), line(timeline.completed, "done")]
    sent, done = timeline.submitted[-1], timeline.completed[-1]
    sent_y, done_y = y(sent), y(done)
    if abs(sent_y - done_y) < 14:  # keep the two end labels apart
        done_y = sent_y + 14
    parts.append(
        f'<text class="key-sent" x="{left + plot_w + 8}" y="{sent_y + 4:.1f}">'
        f"{sent:,} submitted</text>"
        f'<text class="key-done" x="{left + plot_w + 8}" y="{done_y + 4:.1f}">'
        f"{done:,} rendered</text></svg>"
    )
    return "".join(parts)


def _started(iso: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return "started " + moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _failures(report: Report) -> str:
    if not report.failures:
        return '<p class="muted">No failures: every row was sent, and no render failed.</p>'
    lines = [
        "<table><thead><tr><th>Failure</th><th>Reason</th><th>Rows affected</th>"
        "<th>What to do next</th></tr></thead><tbody>"
    ]
    for section in failure_sections(report.failures):
        span = len(section.groups)
        for position, (index, group) in enumerate(section.groups):
            values = elided_values(group.examples)
            values_html = f"<br><small>{_e(', '.join(values))}</small>" if values else ""
            label = f"{section.title}: {group.reason}" if group.reason else section.title
            noun = "row" if group.count == 1 else "rows"
            head = (
                f'<td rowspan="{span}">{_e(section.title)}<br>'
                f"<small>{section.count:,} {'row' if section.count == 1 else 'rows'}</small></td>"
                if position == 0
                else ""
            )
            tail = (
                f'<td rowspan="{span}">{_code_spans(section.next_step)}</td>'
                if position == 0
                else ""
            )
            lines.append(
                f"<tr>{head}<td>{_e(group.reason or '(no message)')}{values_html}</td>"
                f"<td><b>{group.count:,}</b> {noun}: {_e(row_ranges(group.rows))} "
                f'<button type="button" data-group="{index}" data-label="{_e(label)}">'
                f"show</button></td>{tail}</tr>"
            )
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _code_spans(text: str) -> str:
    """`command` spans become <code>; everything is escaped first."""
    pieces = _e(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _status_options(report: Report) -> str:
    options = [f'<option value="">all rows ({report.rows:,})</option>']
    options += [
        f'<option value="status:{_e(name)}">{_e(name.replace("_", " "))} ({count:,})</option>'
        for name, count in report.by_status.items()
    ]
    options += [
        f'<option value="render:{_e(name)}">render {_e(name)} ({count:,})</option>'
        for name, count in report.by_video_status.items()
    ]
    return "".join(options)


def rows_json(rows: tuple[ReportRow, ...]) -> str:
    """The rows as compact JSON that is safe inside a <script> element.

    Each row is `[row, key, product, video name, status, code, reason, render status, duration,
    video URL prefix, video URL rest, cover URL prefix, cover URL rest, failure group]`; the
    repeated texts (status, code, reason, URL folders) are indices into one list of strings.
    """
    strings: dict[str, int] = {"": 0}

    def intern(text: str) -> int:
        return strings.setdefault(text, len(strings))

    def url(text: str) -> Iterator[object]:
        folder, slash, rest = text.rpartition("/")
        yield intern(folder + slash)
        yield rest

    def packed(r: ReportRow) -> list[object]:
        return [
            r.row,
            r.key,
            r.product,
            r.video_name,
            intern(r.status),
            intern(r.code),
            intern(r.reason),
            intern(r.video_status),
            _compact(r.duration),
            *url(r.video_url),
            *url(r.cover_url),
            -1 if r.group is None else r.group,
        ]

    table = [packed(r) for r in rows]
    text = json.dumps({"s": list(strings), "r": table}, ensure_ascii=False, separators=(",", ":"))
    # Inside JSON these characters only occur in strings, where the escapes mean the same.
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _compact(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if value.is_integer() else round(value, 1)
