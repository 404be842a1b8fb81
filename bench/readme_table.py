"""The README's benchmark table, rendered from the published figures (docs/bench-figures.json,
which `make bench` refreshes): `make cog` runs this inside README.md, so the table is never
edited by hand and `cog --check` keeps it in step with the file."""

from __future__ import annotations

import json
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "bench-figures.json"


def _number(value: float | None, unit: str) -> str:
    return "–" if value is None else f"{value:g} {unit}".strip()


def table(path: Path = FIGURES) -> str:
    """One line per figure: what it measures, now and before (with dates), target, verdict."""
    figures = json.loads(path.read_text())["figures"]
    lines = [
        "| figure | now | before | target | verdict | measured on |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        unit = f["unit"]
        before = _number(f["previous"], unit)
        if f["previous"] is not None and f.get("previous_date"):
            before += f" ({f['previous_date'][:10]})"
        target = "–" if f["op"] is None else f"{f['op']} {f['bound']:g} {unit}".strip()
        verdict = {True: "PASS", False: "**MISS**", None: "–"}[f["passed"]]
        lines.append(
            f"| {f['section'].split('. ', 1)[-1]}: {f['name']} | {_number(f['value'], unit)} "
            f"| {before} | {target} | {verdict} | {f['date'][:10]}, {f['machine']} |"
        )
    return "\n".join(lines) + "\n"
