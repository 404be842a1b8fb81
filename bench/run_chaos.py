"""`make chaos`: the sample catalog scaled to a few thousand rows, run against a faulty sandbox
in its own process until done; counts from the sandbox's own record what was paid for twice and
from the results file what was lost. Writes reports/chaos.md and reports/chaos.json.

Scenarios (seeded; the same seed replays the same faults and kill moments):
  a. 20% of POSTs answered 50000
  b. 5% connection resets before commit and 5% commit-then-stall (answer never comes)
  c. 429 bursts: a second client with the same key burns the window with invalid POSTs
  d. 30 SIGKILLs of the client at random moments, resumed until done
  e. 20% of creates committed, then answered 50000 or an HTTP 5xx
  f. 20% of creates committed late (1.5 s), after the client's read timeout (1 s) gave up
  g. the listing shows new videos only after 5 s, plus 20% resets
  h. the listing cuts titles to 30 characters, plus 20% resets
  i. the listing shows the product's name, not the tag (absence unprovable), plus 20% resets
  j. half of all answers lost: commit-then-error, late commits, resets, a lagging listing

Every scenario's settle period (run.settle_seconds, batch.reconcile) is 8 s: longer than the
late commits and the listing lag, as a real account's must be.

Rate and backoff are scaled (50/s both sides instead of 20/min; backoff 0.1-2 s instead of 2-60 s)
so each scenario takes under a minute; the code paths are the same.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from common import (
    API_KEY,
    JOGG,
    ROOT,
    TAG,
    Report,
    command_line,
    duplicates,
    inspect,
    run_env,
    sandbox,
)

from batch.results import read_results

SEED = int(os.environ.get("CHAOS_SEED", "20240607"))
COPIES = 30  # the 50-row sample catalog becomes 1,500 rows
RATE = "50/s"
CONCURRENCY = 8
MAX_RUNS = 6  # resumes after the scenario's own runs, until nothing is left to retry
STATUSES = (
    "submitted",
    "already_submitted",
    "duplicate",
    "invalid",
    "failed",
    "unknown",
    "not_attempted",
)
UNSETTLED = ("failed", "unknown", "not_attempted", "pending", "sending", "reconciling", "")


def scaled_catalog(path: Path) -> int:
    """Copies of sample_data/catalog.csv with distinct SKUs and titles, so every copy of a valid
    row is its own request (names are templates over the title)."""
    with (ROOT / "sample_data" / "catalog.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for copy in range(COPIES):
            for row in rows:
                name = row["video_name"]
                if "{title}" not in name:
                    name = f"{name} {{title}}".strip()
                writer.writerow(
                    row
                    | {
                        "sku": f"{row['sku']}-{copy}",
                        "title": f"{row['title']} #{copy}",
                        "video_name": name,
                    }
                )
    return len(rows) * COPIES


SETTLE_SECONDS = 8


def write_config(path: Path, read_timeout: float) -> Path:
    path.write_text(
        f"[api]\nread_timeout = {read_timeout}\n\n"
        "[retry]\nbase_delay = 0.1\nmax_delay = 2.0\n\n"
        f"[run]\nresults_interval = 5\nsettle_seconds = {SETTLE_SECONDS}\n"
    )
    return path


class Scenario:
    def __init__(self, folder: Path, catalog: Path, config: Path, url: str) -> None:
        self.folder, self.catalog, self.config, self.url = folder, catalog, config, url
        self.runs = 0
        self.log = (folder / "client.log").open("ab")

    def command(self) -> list[str]:
        return [
            JOGG,
            "run",
            str(self.catalog),
            "--config",
            str(self.config),
            "--base-url",
            self.url,
            "--rate-limit",
            RATE,
            "--concurrency",
            str(CONCURRENCY),
            "--results",
            str(self.folder / "results.csv"),
            "--state",
            str(self.folder / "state.db"),
            "-q",
        ]

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        return subprocess.Popen(self.command(), env=run_env(), stdout=self.log, stderr=self.log)

    def run(self) -> int:
        return self.start().wait()

    def statuses(self) -> list[str]:
        path = self.folder / "results.csv"
        if not path.exists():  # every run so far was killed before its first results write
            return [""]
        return [str(s) for s in read_results(path)["status"].fillna("")]

    def finish(self) -> None:
        """Resume until no row is left to retry (or MAX_RUNS more runs)."""
        for _ in range(MAX_RUNS):
            if self.runs and not set(self.statuses()) & set(UNSETTLED):
                return
            self.run()


def hammer(url: str, stop: threading.Event, counts: dict[str, int]) -> None:
    """A second client on the same key: every 3 s a burst of 50 POSTs that the server admits
    (burning the window) and then rejects (unknown product), so none becomes a video."""
    junk = {
        "product_id": "bm90LWEtcHJvZHVjdA",
        "video_spec": {"length": "15"},
        "avatar": {"id": 127, "type": 0},
        "voice": {"id": "en-US-ChristopherNeural"},
        "audio": {},
        "script": {"style": "Storytime", "language": "english"},
    }
    with httpx.Client(base_url=url, headers={"x-api-key": API_KEY}, timeout=30) as client:
        while not stop.is_set():
            for _ in range(50):
                code = client.post("/v2/create_video_from_product", json=junk).json()["code"]
                counts["sent"] += 1
                counts["429"] += code == 429
            stop.wait(3.0)


def scenario_a(s: Scenario) -> dict[str, Any]:
    s.finish()
    return {}


def scenario_c(s: Scenario) -> dict[str, Any]:
    stop = threading.Event()
    counts = {"sent": 0, "429": 0}
    thread = threading.Thread(target=hammer, args=(s.url, stop, counts))
    thread.start()
    try:
        s.run()
    finally:
        stop.set()
        thread.join()
    s.finish()
    return {"hammer POSTs": counts["sent"], "429s to the hammer": counts["429"]}


def scenario_d(s: Scenario) -> dict[str, Any]:
    rng = random.Random(SEED)
    kills = 0
    while kills < 30:
        child = s.start()
        try:
            child.wait(timeout=rng.uniform(0.3, 2.5))
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            kills += 1
            continue
        if not set(s.statuses()) & set(UNSETTLED):
            break  # finished before the kills ran out
    s.finish()
    return {"SIGKILLs delivered": kills}


SCENARIOS: list[tuple[str, str, tuple[str, ...], float, Callable[[Scenario], dict[str, Any]]]] = [
    ("a", "20% of POSTs answered 50000", ("--fail-rate", "0.2"), 60, scenario_a),
    (
        "b",
        "5% resets + 5% commit-then-stall (stall 2 s, client read timeout 1 s)",
        ("--reset-rate", "0.05", "--stall-rate", "0.05", "--stall-seconds", "2"),
        1,
        scenario_a,
    ),
    ("c", "429 bursts from a second client on the same key", (), 60, scenario_c),
    (
        "d",
        "30 SIGKILLs at seeded random moments, resumed until done (latency 20-200 ms)",
        ("--latency-ms", "20-200"),
        60,
        scenario_d,
    ),
    (
        "e",
        "20% of creates committed, then answered 50000 or HTTP 500/502/503",
        ("--commit-then-error-rate", "0.2"),
        60,
        scenario_a,
    ),
    (
        "f",
        "20% of creates committed 1.5 s late, after the client (read timeout 1 s) gave up",
        ("--late-commit-rate", "0.2", "--late-commit-seconds", "1.5"),
        1,
        scenario_a,
    ),
    (
        "g",
        "the listing shows new videos 5 s late + 20% resets",
        ("--listing-lag-seconds", "5", "--reset-rate", "0.2"),
        60,
        scenario_a,
    ),
    (
        "h",
        "the listing cuts titles to 30 characters + 20% resets",
        ("--listing-title", "cut:30", "--reset-rate", "0.2"),
        60,
        scenario_a,
    ),
    (
        "i",
        "the listing shows the product's name, not the tag + 20% resets (lost answers unknown)",
        ("--listing-title", "product-name", "--reset-rate", "0.2"),
        60,
        scenario_a,
    ),
    (
        "j",
        "half of all answers lost: 20% commit-then-error, 15% late (1.5 s), 15% resets, lag 5 s",
        (
            "--commit-then-error-rate",
            "0.2",
            "--late-commit-rate",
            "0.15",
            "--late-commit-seconds",
            "1.5",
            "--reset-rate",
            "0.15",
            "--listing-lag-seconds",
            "5",
        ),
        1,
        scenario_a,
    ),
]


def measure_scenario(
    report: Report,
    tmp: Path,
    rows: int,
    catalog: Path,
    spec: tuple[str, str, tuple[str, ...], float, Callable[[Scenario], dict[str, Any]]],
) -> None:
    key, title, options, read_timeout, body = spec
    folder = tmp / key
    folder.mkdir()
    config = write_config(folder / "config.toml", read_timeout)
    print(f"scenario {key}: {title}", flush=True)
    started = time.perf_counter()
    with sandbox(
        "--rate-limit", RATE, "--seed", str(SEED), *options, log_path=folder / "sandbox.log"
    ) as url:
        scenario = Scenario(folder, catalog, config, url)
        extra = body(scenario)
        wall = time.perf_counter() - started
        seen = inspect(url)
    results = read_results(folder / "results.csv")
    statuses = results["status"].fillna("")
    numbers = [int(n) for n in results["row"]]
    missing = len(set(range(1, rows + 1)) - set(numbers)) + int((statuses == "").sum())
    repeated = len(numbers) - len(set(numbers))
    accepted = {s["video_id"] for s in seen["submissions"]}
    recorded = set(results["video_id"].dropna()) - {""}
    valid_jobs = int(statuses.isin(["submitted", "already_submitted"]).sum())
    by_tag, by_body = duplicates(seen["submissions"])
    tags = {m.group(1) for s in seen["submissions"] if (m := TAG.search(s["name"]))}
    section = f"({key}) {title}"
    report.add(section, "catalog rows", rows)
    report.add(
        section,
        "accepted creates per distinct job",
        round(len(seen["submissions"]) / max(1, len(tags)), 3),
        "",
        "==",
        1.0,
    )
    report.add(
        section,
        "jobs accepted by the sandbox",
        len(seen["submissions"]),
        "",
        "==",
        valid_jobs,
        "target: one per valid distinct row",
    )
    report.add(section, "duplicates (same [jb-] tag accepted twice)", by_tag, "", "==", 0)
    report.add(
        section, "duplicates (same product and payload accepted twice)", by_body, "", "==", 0
    )
    report.add(section, "rows missing from the results file", missing + repeated, "", "==", 0)
    report.add(
        section, "accepted videos the results do not carry", len(accepted - recorded), "", "==", 0
    )
    unknowns = int((statuses == "unknown").sum())
    if key == "i":  # nothing can prove absence here: unknown is the honest answer
        report.add(section, "unknowns left (absence unprovable by design)", unknowns)
    else:
        report.add(section, "unknowns left", unknowns, "", "==", 0)
    report.add(section, "rows failed (retries exhausted)", int((statuses == "failed").sum()))
    report.add(section, "runs of jogg-batch", scenario.runs)
    report.add(section, "wall time", round(wall, 1), "s")
    for name, value in extra.items():
        report.add(section, name, value)
    counts = seen["counts"]
    report.add(
        section,
        "429s the sandbox sent",
        counts["rate_limited"],
        note=str({k: v for k, v in counts["faulted"].items() if v} or ""),
    )
    found = statuses.value_counts()
    report.tables.setdefault("Final row statuses", []).append(
        {"scenario": key, **{s: int(found.get(s, 0)) for s in STATUSES}}
    )


def main() -> None:
    report = Report("chaos", "jogg-batch chaos suite", command_line())
    report.notes.append(
        f"Seed {SEED} (CHAOS_SEED); sandbox and client both at {RATE}, "
        f"concurrency {CONCURRENCY}; retry backoff 0.1-2 s; each scenario in a "
        f"fresh sandbox process and a fresh state."
    )
    report.notes.append(
        "The sample catalog has invalid rows (kept: they must be reported, "
        "never sent); 'rows failed' counts rows still failed after the resumes."
    )
    with tempfile.TemporaryDirectory(prefix="jogg-chaos-") as name:
        tmp = Path(name)
        catalog = tmp / "catalog.csv"
        rows = scaled_catalog(catalog)
        for spec in SCENARIOS:
            measure_scenario(report, tmp, rows, catalog, spec)
    report.write(ROOT / "reports")
    print(f"wrote {ROOT / 'reports' / 'chaos.md'}")


if __name__ == "__main__":
    main()
