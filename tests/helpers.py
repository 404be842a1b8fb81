"""Small helpers shared by the end-to-end tests: catalogs of valid sandbox products."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

PRODUCTS = Path(__file__).parents[1] / "sample_data" / "sandbox_products.csv"


def python_output(code: str) -> str:
    """What a fresh interpreter running `code` prints: imports and module state measured
    apart from the suite's own process."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def product_ids(count: int) -> list[str]:
    """The first `count` product ids the sandbox knows."""
    with PRODUCTS.open() as handle:
        return [row["product_id"] for row in csv.DictReader(handle)][:count]


def simple_rows(count: int, start: int = 0) -> list[dict[str, str]]:
    """`count` valid rows (sku, product_id, title, length 15) from the sandbox's products."""
    return [
        {"sku": f"SKU{i}", "product_id": pid, "title": f"Item {i}", "length": "15"}
        for i, pid in enumerate(product_ids(start + count)[start:], start)
    ]


def write_catalog(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def submissions(url: str) -> dict[str, Any]:
    """The sandbox's record of what it accepted, rejected and faulted."""
    return httpx.get(f"{url}/_sandbox/submissions").json()  # type: ignore[no-any-return]
