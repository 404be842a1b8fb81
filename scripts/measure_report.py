"""Figures for the HTML report of a big run: file size, build time, and load time in Chromium.

    python scripts/measure_report.py [ROWS]     (default 100,000; needs chromium on PATH)

Writes a synthetic results file shaped like a real night's (catalog columns, 32-hex video ids,
res.jogg.ai media URLs, a few failures of each kind) to a temporary folder, builds the report
with `jogg-batch report --format html`, opens it in headless Chromium, and prints the figures.
"""

from __future__ import annotations

import csv
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import chromium  # the repository root is on the path now

HEADER = [
    "sku", "title", "brand", "price", "product_id", "video_name", "row", "status", "video_id",
    "code", "message", "attempts", "submitted_at", "video_status", "video_url", "cover_url",
    "duration", "deducted_credit", "error", "completed_at", "created_product_id", "local_path",
]  # fmt: skip


def results_rows(count: int) -> list[list[str]]:
    start = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    rows = []
    for n in range(1, count + 1):
        video = hashlib.md5(str(n).encode(), usedforsecurity=False).hexdigest()
        sent = start + timedelta(seconds=3 * n)
        done = sent + timedelta(seconds=240 + n * 37 % 300)
        base = [f"SKU-{n:06d}", f"Classic Water Bottle {n}", "Globex", "14.99", f"P{n}", "",
                str(n)]  # fmt: skip
        media = f"https://res.jogg.ai/videos/{video}"
        if n % 100 == 7:
            rows.append([*base, "invalid", "", "", f"length: '{n % 50}' is not a video length",
                         "0", "", "", "", "", "", "", "", "", "", ""])  # fmt: skip
        elif n % 100 == 55:
            rows.append([*base, "failed", "", "40000", "Parameter error: avatar not found", "1",
                         "", "", "", "", "", "", "", "", "", ""])  # fmt: skip
        else:
            status = "failed" if n % 200 == 90 else "completed"
            rows.append([*base, "submitted", video, "0", "", "1", _iso(sent), status,
                         f"{media}.mp4", f"{media}.jpg", "31", "1",
                         "50000: render crashed" if status == "failed" else "", _iso(done), "",
                         ""])  # fmt: skip
    return rows


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    folder = Path(tempfile.mkdtemp(prefix="jogg-report-"))
    results, page = folder / "night.results.csv", folder / "report.html"
    with results.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(results_rows(count))
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "batch", "report", str(results), "--format", "html",
         "--output", str(page), "-q"],
        check=True,
    )  # fmt: skip
    build = time.perf_counter() - began
    build_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    with chromium.Browser(folder / "profile", timeout=120) as browser:
        began = time.perf_counter()
        tab = browser.open(page.as_uri(), width=1200, height=900)
        opened = time.perf_counter() - began
        timing = tab.evaluate(
            """(() => { const nav = performance.getEntriesByType("navigation")[0];
            const paint = performance.getEntriesByName("first-contentful-paint")[0];
            return {fcp: paint && paint.startTime, dom: nav.domContentLoadedEventEnd,
                    load: nav.loadEventEnd,
                    rows: document.querySelectorAll("#rows tbody tr").length}; })()"""
        )
        search = tab.evaluate(
            """(() => { const box = document.getElementById("f-search"), t = performance.now();
            box.value = "bottle 4242"; box.dispatchEvent(new Event("input"));
            return [performance.now() - t, document.getElementById("f-count").textContent]; })()"""
        )
        status = tab.evaluate(
            """(() => { const s = document.getElementById("f-search");
            s.value = ""; s.dispatchEvent(new Event("input"));
            const box = document.getElementById("f-status"), t = performance.now();
            box.value = "status:invalid"; box.dispatchEvent(new Event("change"));
            return [performance.now() - t, document.getElementById("f-count").textContent]; })()"""
        )
    figures = {
        "rows": count,
        "results_csv_mb": round(results.stat().st_size / 1e6, 1),
        "report_html_mb": round(page.stat().st_size / 1e6, 1),
        "build_wall_s (jogg-batch report --format html, with imports)": round(build, 2),
        "build_cpu_s": round(build_cpu.ru_utime + build_cpu.ru_stime, 2),
        "build_peak_rss_mb": round(build_cpu.ru_maxrss / 1024),
        "chromium_first_contentful_paint_ms": round(timing["fcp"] or 0),
        "chromium_dom_content_loaded_ms": round(timing["dom"]),
        "chromium_load_event_ms": round(timing["load"]),
        "navigate_to_load_wall_s": round(opened, 2),
        "table_rows_drawn": timing["rows"],
        "first_search_ms (builds the search index)": [round(search[0]), search[1]],
        "status_filter_ms": [round(status[0]), status[1]],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
