"""What the bench and chaos scripts share: machine facts, the sandbox as its own process, catalog
generation, per-child peak memory, sandbox submission analysis and the report files.

A figure is one measured number with its target; the report renders each as a row with PASS or
MISS and the margin, and the JSON carries the same numbers for machines to read.
"""

from __future__ import annotations

import bisect
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
JOGG = str(BIN / "jogg-batch")
API_KEY = "sk-sandbox"
PRODUCTS = ROOT / "sample_data" / "sandbox_products.csv"
TAG = re.compile(r"\[jb-([0-9a-f]+)\]")
# The figures the README shows (`make bench` refreshes it; `bench/readme_table.py` renders it):
# each new figure is reported beside the one measured before it.
PUBLISHED = ROOT / "docs" / "bench-figures.json"


# --- machine and report --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python and OS, as the report states them."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        kib = int(handle.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(kib / 1024**2, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
    }


@dataclass
class Figure:
    """One measured number; `target` is (op, bound) with op one of >=, <=, ==, or None."""

    section: str
    name: str
    value: float
    unit: str = ""
    op: str | None = None
    bound: float | None = None
    note: str = ""
    previous: float | None = None  # the same figure in the last published report
    previous_date: str = ""

    @property
    def passed(self) -> bool | None:
        if self.op is None or self.bound is None:
            return None
        return {
            ">=": self.value >= self.bound,
            "<=": self.value <= self.bound,
            "==": self.value == self.bound,
        }[self.op]

    def verdict(self) -> str:
        if self.passed is None:
            return "-"
        if self.passed:
            return "PASS"
        assert self.bound is not None
        gap = self.value - self.bound
        amount = f"{abs(gap):.4g} {self.unit}".strip()
        relative = f" ({abs(gap) / abs(self.bound):.1%})" if self.bound else ""
        return f"MISS by {amount}{relative}"

    def shown(self) -> str:
        return f"{self.value:g} {self.unit}".strip()

    def target(self) -> str:
        return "-" if self.op is None else f"{self.op} {self.bound:g} {self.unit}".strip()

    def before(self) -> str:
        if self.previous is None:
            return "-"
        return f"{self.previous:g} {self.unit}".strip() + f" ({self.previous_date[:10]})"


def published(path: Path | None) -> list[dict[str, Any]]:
    """The figures published in `path` (docs/bench-figures.json), or none yet."""
    if path is None or not path.exists():
        return []
    figures: list[dict[str, Any]] = json.loads(path.read_text())["figures"]
    return figures


@dataclass
class Report:
    name: str
    title: str
    command: str
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures_file: Path | None = None  # published figures: read for `before`, merged by publish()

    def add(
        self,
        section: str,
        name: str,
        value: float,
        unit: str = "",
        op: str | None = None,
        bound: float | None = None,
        note: str = "",
    ) -> Figure:
        figure = Figure(section, name, value, unit, op, bound, note)
        for old in published(self.figures_file):
            if (old["section"], old["name"]) == (section, name):
                figure.previous, figure.previous_date = old["value"], old.get("date", "")
        self.figures.append(figure)
        print(
            f"  {section} | {name}: {value:g} {unit} (target {figure.target()}: "
            f"{figure.verdict()}; before: {figure.before()}) {note}",
            flush=True,
        )
        return figure

    def publish(self, *, complete: bool = False) -> None:
        """Merges this run's figures into docs/bench-figures.json (a figure not measured this
        time keeps its older value and date; a `complete` run replaces them all, so a figure
        renamed or dropped goes), machine named; `make cog` puts it in the README."""
        assert self.figures_file is not None
        info = machine()
        ours = {(f.section, f.name) for f in self.figures}
        kept = [
            f
            for f in published(self.figures_file)
            if (f["section"], f["name"]) not in ours and not complete
        ]
        fresh = [
            asdict(f) | {"passed": f.passed, "date": self.started, "machine": info["cpu"]}
            for f in self.figures
        ]
        figures = sorted(kept + fresh, key=lambda f: f["section"].split(".")[0].zfill(3))
        self.figures_file.write_text(json.dumps({"figures": figures}, indent=2) + "\n")

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        info = machine()
        data = {
            "title": self.title,
            "date": self.started,
            "command": self.command,
            "machine": info,
            "figures": [asdict(f) | {"passed": f.passed} for f in self.figures],
            "tables": self.tables,
            "notes": self.notes,
        }
        (folder / f"{self.name}.json").write_text(json.dumps(data, indent=2) + "\n")
        lines = [
            f"# {self.title}",
            "",
            f"- Date: {self.started}",
            f"- Command: `{self.command}`",
            f"- Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
            f"Python {info['python']}, {info['os']}",
            "",
        ]
        missed = [f for f in self.figures if f.passed is False]
        lines.append(
            f"**{len(self.figures) - len(missed)} of {len(self.figures)} figures without "
            f"a miss; {len(missed)} missed.**"
            if missed
            else "**Every target met.**"
        )
        lines.append("")
        section = None
        for figure in self.figures:
            if figure.section != section:
                section = figure.section
                lines += [
                    "",
                    f"## {section}",
                    "",
                    "| figure | value | before | target | verdict | note |",
                    "|---|---|---|---|---|---|",
                ]
            lines.append(
                f"| {figure.name} | {figure.shown()} | {figure.before()} | {figure.target()} "
                f"| {figure.verdict()} | {figure.note} |"
            )
        for title, rows in self.tables.items():
            if rows:
                lines += [
                    "",
                    f"## {title}",
                    "",
                    "| " + " | ".join(rows[0]) + " |",
                    "|" + "---|" * len(rows[0]),
                ]
                lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in rows]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        (folder / f"{self.name}.md").write_text("\n".join(lines) + "\n")


def command_line() -> str:
    return shlex.join([Path(sys.executable).name, *sys.argv])


# --- the sandbox in its own process ---------------------------------------------------------


@contextmanager
def sandbox(*options: str, log_path: Path | None = None) -> Iterator[str]:
    """`jogg-batch sandbox --port 0 OPTIONS` as a child process; yields its base URL."""
    log = open(log_path or os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [JOGG, "sandbox", "--port", "0", "--credits", "100000000", "-q", *options],
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().decode().strip()
        if not first.startswith("sandbox listening on "):
            raise RuntimeError(f"sandbox did not start: {first!r}")
        url = first.removeprefix("sandbox listening on ")
        _wait_until_serving(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_until_serving(url: str) -> None:
    """The URL line comes once the socket is bound, a moment before uvicorn accepts on it."""
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{url}/_sandbox/submissions", timeout=1)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def inspect(url: str) -> dict[str, Any]:
    """The sandbox's `/_sandbox/submissions` (accepted creates and refused-request counts),
    once creates it commits late have landed (they are charges too)."""
    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{url}/_sandbox/submissions", timeout=60)
        response.raise_for_status()
        seen: dict[str, Any] = response.json()
        if not seen.get("pending") or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def max_in_window(times: Sequence[float], window: float) -> int:
    """Most events in any half-open window (t - window, t], as the sandbox's limiter counts."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        best = max(best, i + 1 - bisect.bisect_right(ordered, t - window))
    return best


def duplicates(submissions: list[dict[str, Any]]) -> tuple[int, int]:
    """(accepts beyond the first per reconciliation tag, same by product and payload sans tag)."""
    by_tag = Counter(m.group(1) for s in submissions if (m := TAG.search(s["name"])))
    by_body = Counter(TAG.sub("", json.dumps(s["payload"], sort_keys=True)) for s in submissions)
    return (sum(n - 1 for n in by_tag.values()), sum(n - 1 for n in by_body.values()))


# --- child processes --------------------------------------------------------------------------


@dataclass
class ChildRun:
    seconds: float
    max_rss_mib: float
    returncode: int


# Linux carries a process's peak RSS across exec, and a child spawned from this (large) process
# starts inside its memory, so the child's figure would include ours. A small launcher process
# forks the child instead and reports the child's own peak (os.wait4).
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    json.dump([time.perf_counter() - started, usage.ru_maxrss, code], out)
"""


def measure(args: Sequence[str], env: dict[str, str] | None = None) -> ChildRun:
    """Runs a child to the end; wall time and the child's own peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        process = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, report.name, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds, max_rss_kib, returncode = json.loads(Path(report.name).read_text())
    if returncode not in (0, 1):
        raise RuntimeError(f"{shlex.join(args)} exited {returncode}: {process.stderr[-2000:]!r}")
    return ChildRun(seconds, max_rss_kib / 1024, returncode)


def run_env() -> dict[str, str]:
    return {**os.environ, "JOGG_API_KEY": API_KEY}


# --- catalogs --------------------------------------------------------------------------------


def product_ids() -> list[str]:
    lines = PRODUCTS.read_text().splitlines()[1:]
    return [line.split(",", 1)[0] for line in lines]


def generate_catalog(path: Path, rows: int, *, seed: int = 7, night: int = 0) -> Path:
    """A catalog shaped like sample_data/catalog.csv: sandbox products, mixed spellings of the
    overrides, empty cells that fall back to defaults, name templates, ~0.5% invalid lengths.
    Every valid row is a distinct request (titles carry the row number).

    `night` N > 0: the same catalog with 1% of its titles changed (rows N, N + 100, ...: another
    1% each night), as a shop's feed changes; every name template uses the title, so each
    changed row is a new request under the same key."""
    rng = np.random.default_rng(seed)
    index = np.arange(1, rows + 1)

    def pick(choices: list[str], weights: list[float]) -> pa.Array:
        chosen = rng.choice(len(choices), size=rows, p=np.array(weights) / sum(weights))
        return pa.array(np.array(choices, dtype=object)[chosen], pa.string())

    words = np.array(["Classic", "Eco", "Compact", "Travel", "Pro", "Smart", "Deluxe", "Cozy"])
    things = np.array(["Water Bottle", "Speaker", "Wall Clock", "Mug", "Backpack", "Desk Lamp"])
    titles = np.char.add(
        np.char.add(
            np.char.add(words[rng.integers(0, 8, rows)], " "), things[rng.integers(0, 6, rows)]
        ),
        np.char.add(" ", index.astype(str)),
    )
    if night:
        titles = np.where(index % 100 == night % 100, np.char.add(titles, f" v{night}"), titles)
    products = np.array(product_ids(), dtype=object)[rng.integers(0, 200, rows)]
    table = pa.table(
        {
            "sku": pa.array(np.char.add("SKU-", index.astype(str)).astype(object), pa.string()),
            "title": pa.array(titles.astype(object), pa.string()),
            "brand": pick(["Acme", "Globex", "Initech", "Umbrella"], [1, 1, 1, 1]),
            "price": pa.array(np.round(rng.uniform(5, 150, rows), 2).astype(str).astype(object)),
            "product_id": pa.array(products, pa.string()),
            "length": pick(["", "15", "30s", "30.0", "60", "45"], [40, 15, 20, 10, 14.5, 0.5]),
            "aspect_ratio": pick(
                ["", "9:16", "portrait", "Square", "1:1", "landscape"], [40, 15, 15, 10, 10, 10]
            ),
            "caption": pick(["", "TRUE", "no", "yes", "0"], [50, 15, 15, 10, 10]),
            "avatar_id": pick(["", "1", "127"], [80, 10, 10]),
            "voice_id": pick(["", "en-US-ChristopherNeural"], [85, 15]),
            "script_style": pick(["", "Storytime", "top 3 reasons", "Discovery"], [70, 10, 10, 10]),
            "language": pick(["", "english"], [90, 10]),
            "video_name": pick(
                ["{title}", "Spring sale: {title}", "{title} - {sku}"], [60, 20, 20]
            ),
        }
    )
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=50_000)
    else:
        pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))
    return path
