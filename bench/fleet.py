"""`make bench`, part 7: workers sharing a PostgreSQL ledger (a real server on loopback, started as
the tests start it): three workers on one key and one catalog, and planning on PostgreSQL beside
SQLite in the same run."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common import JOGG, ROOT, Report, generate_catalog, inspect, measure, run_env, sandbox

sys.path.insert(0, str(ROOT))  # tests/postgres.py: the server the tests start

from tests.postgres import running_server

SECTION = "7. A fleet on PostgreSQL"
QuotaFigures = Callable[[Report, str, str, int, float, int], None]


def bench_fleet_workers(
    report: Report, tmp: Path, quota_figures: QuotaFigures, windows: int
) -> None:
    """Three workers on one key and one catalog: light (20 POSTs a minute), so it runs beside
    the other parts; each half of the part starts its own server."""
    with running_server() as server:
        bench_three_workers(report, tmp, server.database(), quota_figures, windows)
    report.notes.append(
        "Part 7 starts PostgreSQL from Debian's package in a temporary folder (fsync off, as in "
        "the tests); the three workers are three `jogg-batch run` processes on one catalog with "
        "`--state postgresql://…`, each with its own results file."
    )


def bench_fleet_planning(report: Report, tmp: Path) -> None:
    with running_server() as server:
        bench_planning(report, tmp, server.database())


def bench_three_workers(
    report: Report, tmp: Path, state: str, quota_figures: QuotaFigures, windows: int
) -> None:
    folder = tmp / "fleet"
    folder.mkdir()
    catalog = generate_catalog(folder / "catalog.csv", 20 * (windows + 1), seed=3)
    with sandbox("--rate-limit", "20/min") as url:
        workers = [
            subprocess.Popen(
                worker(catalog, url, state, folder / f"results-{n}.csv"),
                env=run_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n in range(3)
        ]
        for process in workers:
            process.wait()
        quota_figures(report, "3 workers, one key, 20/min", url, 20, 60.0, windows)
        seen = inspect(url)
        names = Counter(s["product_id"] + s["name"].split("] ", 1)[-1] for s in seen["submissions"])
        report.add(
            SECTION,
            "3 workers: rows accepted more than once",
            sum(n - 1 for n in names.values()),
            "",
            "==",
            0,
        )


def worker(catalog: Path, url: str, state: str, results: Path) -> list[str]:
    return [
        JOGG, "run", str(catalog), "--base-url", url, "--rate-limit", "20/min",
        "--concurrency", "4", "--state", state, "--results", str(results), "-q",
    ]  # fmt: skip


def bench_planning(report: Report, tmp: Path, state: str) -> None:
    """`jogg-batch plan` of the same 100k-row catalog against a new state of each kind."""
    catalog = generate_catalog(tmp / "fleet-plan.csv", 100_000, seed=11)
    timings = {}
    for kind, where in (("SQLite", str(tmp / "fleet-plan.db")), ("PostgreSQL", state)):
        run = measure(
            [JOGG, "plan", str(catalog), "--state", where, "--results", str(tmp / "p.csv"), "-q"],
            env=run_env(),
        )
        timings[kind] = run.seconds
        report.add(SECTION, f"plan 100,000 rows on {kind}", round(100_000 / run.seconds), "rows/s")
    report.add(
        SECTION,
        "plan on PostgreSQL / on SQLite (wall time)",
        round(timings["PostgreSQL"] / timings["SQLite"], 2),
        "x",
        note="process start included; PostgreSQL on loopback",
    )
