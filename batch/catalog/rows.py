"""The shapes the catalog hands to the rest of jogg-batch: options in, batches of rows out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import pyarrow as pa

from batch.payload import RequestDefaults, ResolvedFields
from batch.storage import Location

CatalogFormat = Literal["csv", "parquet", "jsonl", "excel"]


def row_place(number: int) -> str:
    """Where data row N is for people reading a CSV, Parquet or JSON Lines catalog."""
    return f"row {number}"


@dataclass(frozen=True)
class CatalogOptions:
    """How to read one catalog file.

    `format` None picks by extension; `delimiter` None sniffs `,` `;` or tab; `columns` maps catalog
    headers to canonical column names (headers match ignoring case and surrounding spaces);
    `row_key` names the column that identifies a row for people (default: the product_id column);
    `sheet` names a spreadsheet's sheet (default: the first visible one).
    """

    format: CatalogFormat | None = None
    delimiter: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    defaults: RequestDefaults = field(default_factory=RequestDefaults)
    row_key: str | None = None
    batch_rows: int = 50_000
    sheet: str | None = None


class RowProblem(NamedTuple):
    """Why one value of one row cannot be sent; `column` is the header as the catalog spells it."""

    column: str
    value: str
    reason: str

    def message(self, path: Location, number: int, place: str | None = None) -> str:
        """`catalog.csv row 7, column 'length': '45' is not a video length; use 15, 30 or 60`.

        `place` says where the row is when that is not `row N` (`sheet 'Products' row 8`)."""
        return f"{path.name} {place or row_place(number)}, column {self.column!r}: {self.reason}"


class CatalogRow(NamedTuple):
    """One data row: its 1-based number, its request values (None when invalid) and identity."""

    number: int
    fields: ResolvedFields | None
    problems: tuple[RowProblem, ...]
    key: str
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class CatalogBatch:
    """Consecutive rows, and the same rows' original columns untouched (for the results file)."""

    rows: list[CatalogRow]
    source: pa.Table
    place: Callable[[int], str] = field(default=row_place)
