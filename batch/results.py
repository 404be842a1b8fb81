"""The results file people open: one row per catalog row, in catalog order, CSV or Parquet.

It carries the catalog's own columns untouched, then the outcome columns below. It is streamed
batch by batch (memory stays flat for million-row catalogs) into a temporary file in the same
folder, then renamed into place, so a reader never sees half a file and a killed run leaves the
last complete one.

CSV cells that a spreadsheet would run as a formula (starting with = + - @, tab or CR) get a
leading `'`, the usual neutralisation; `read_results` strips it again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batch.errors import CatalogError
from batch.state import ResultRow

# What `status` and webhooks fill in once a render is final.
VIDEO_COLUMNS = (
    "video_status",
    "video_url",
    "cover_url",
    "duration",
    "deducted_credit",
    "error",
    "completed_at",
)
RESULT_COLUMNS = (
    "row",
    "status",
    "video_id",
    "code",
    "message",
    "attempts",
    "submitted_at",
    *VIDEO_COLUMNS,
    "created_product_id",
    "local_path",
)
# Catalog columns that share a name with an outcome column keep their data under this prefix.
INPUT_PREFIX = "input_"
_FORMULA_START = r"^[=+\-@\t\r]"
_CSV_OPTIONS = pacsv.WriteOptions(quoting_style="needed")

ResultLookup = Callable[[int, int], list[ResultRow]]


def results_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    raise CatalogError(f"{path}: results must end in .csv or .parquet")


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_table(results: list[ResultRow], local_paths: dict[int, str] | None = None) -> pa.Table:
    """The outcome columns for a run of rows, typed for Parquet (CSV writes them as text)."""
    paths = local_paths or {}
    return pa.table(
        {
            "row": pa.array([r.row for r in results], pa.int64()),
            "status": pa.array([r.status for r in results], pa.string()),
            "video_id": pa.array([r.video_id for r in results], pa.string()),
            "code": pa.array([r.code for r in results], pa.int64()),
            "message": pa.array([r.message for r in results], pa.string()),
            "attempts": pa.array([r.attempts for r in results], pa.int64()),
            "submitted_at": pa.array([_iso(r.submitted_at) for r in results], pa.string()),
            "video_status": pa.array([r.video_status for r in results], pa.string()),
            "video_url": pa.array([r.video_url for r in results], pa.string()),
            "cover_url": pa.array([r.cover_url for r in results], pa.string()),
            "duration": pa.array([r.duration for r in results], pa.float64()),
            "deducted_credit": pa.array([r.deducted_credit for r in results], pa.float64()),
            "error": pa.array([r.error for r in results], pa.string()),
            "completed_at": pa.array([_iso(r.completed_at) for r in results], pa.string()),
            "created_product_id": pa.array([r.created_product_id for r in results], pa.string()),
            "local_path": pa.array([paths.get(r.row) for r in results], pa.string()),
        }
    )


def _complete(results: list[ResultRow], first: int, last: int) -> list[ResultRow]:
    """Rows a stopped run never planned are there too, as not_attempted: one row per row."""
    if len(results) == last - first + 1:
        return results
    known = {result.row: result for result in results}
    return [known.get(row) or _not_attempted(row) for row in range(first, last + 1)]


def _not_attempted(row: int) -> ResultRow:
    return ResultRow(row, "not_attempted", *(None,) * 12)  # the rest of the fields: unknown


def _joined(inputs: pa.Table, outcomes: pa.Table) -> pa.Table:
    columns = {
        (INPUT_PREFIX + name if name in RESULT_COLUMNS else name): inputs.column(name)
        for name in inputs.column_names
    }
    for name in outcomes.column_names:
        columns[name] = outcomes.column(name)
    return pa.table(columns)


def _neutralised(table: pa.Table) -> pa.Table:
    """Formula-looking text cells get a leading quote (CSV only)."""
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(index)
            risky = pc.fill_null(pc.match_substring_regex(column, _FORMULA_START), False)
            if pc.any(risky).as_py():
                quoted = pc.binary_join_element_wise("'", column, "")
                table = table.set_column(index, field, pc.if_else(risky, quoted, column))
    return table


def write_results(
    destination: Path,
    input_batches: Iterable[pa.Table],
    lookup: ResultLookup,
    *,
    local_paths: dict[int, str] | None = None,
) -> int:
    """Streams the results file: each catalog batch joined with its rows' outcomes.

    Returns the number of rows written. Rows are numbered continuously across batches.
    """
    fmt = results_format(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    written = 0
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    try:
        for inputs in input_batches:
            first = written + 1
            last = written + inputs.num_rows
            outcomes = outcome_table(_complete(lookup(first, last), first, last), local_paths)
            table = _joined(inputs, outcomes)
            if fmt == "csv":
                table = _neutralised(_as_text(table))
            if writer is None:
                schema = table.schema
                writer = (
                    pacsv.CSVWriter(temporary, schema, write_options=_CSV_OPTIONS)
                    if fmt == "csv"
                    else pq.ParquetWriter(temporary, schema)
                )
            writer.write_table(table if table.schema == schema else table.cast(schema))
            written += inputs.num_rows
        if writer is None:  # an empty catalog still gets a header
            pd.DataFrame(columns=list(RESULT_COLUMNS)).to_csv(temporary, index=False)
        else:
            writer.close()
            writer = None
        os.replace(temporary, destination)
    finally:
        if writer is not None:
            writer.close()
        if os.path.exists(temporary):
            os.unlink(temporary)
    return written


def _as_text(table: pa.Table) -> pa.Table:
    """CSV batches must share one schema whatever each batch's inferred types: write text."""
    return pa.table({name: pc.cast(table.column(name), pa.string()) for name in table.column_names})


def read_results(path: Path) -> pd.DataFrame:
    """A results file (CSV or Parquet, by extension) with every cell as a string; CSV cells
    neutralised against spreadsheet formulas get their value back."""
    try:
        if results_format(path) == "parquet":
            return pd.read_parquet(path).astype("string").fillna("").astype(object)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such results file") from None
    except (OSError, ValueError) as error:
        raise CatalogError(f"{path}: cannot read this results file: {error}") from error
    for column in frame.columns:
        values = frame[column]
        quoted = values.str.match(r"^'[=+\-@\t\r]")
        if quoted.any():
            frame.loc[quoted, column] = values[quoted].str.slice(1)
    return frame


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Rewrites a whole results frame atomically (status, download and listen use this)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)

    def batches() -> Iterator[pa.Table]:
        yield table.drop_columns([c for c in RESULT_COLUMNS if c in table.column_names])

    records: list[dict[str, object]] = [
        {str(key): value for key, value in record.items()} for record in frame.to_dict("records")
    ]
    rows = [_row_from_frame(record) for record in records]
    local = {
        row.row: str(record["local_path"])
        for row, record in zip(rows, records, strict=True)
        if record.get("local_path")
    }
    write_results(path, batches(), lambda first, last: rows[first - 1 : last], local_paths=local)


def _row_from_frame(record: dict[str, object]) -> ResultRow:
    def text(name: str) -> str | None:
        value = record.get(name)
        return None if value is None or value == "" or value is pd.NA else str(value)

    def number(name: str) -> float | None:
        value = text(name)
        return None if value is None else float(value)

    def when(name: str) -> float | None:
        value = text(name)
        return None if value is None else datetime.fromisoformat(value).timestamp()

    code = text("code")
    attempts = text("attempts")
    return ResultRow(
        row=int(str(record["row"])),
        status=str(record.get("status") or ""),
        video_id=text("video_id"),
        code=None if code is None else int(float(code)),
        message=text("message"),
        attempts=None if attempts is None else int(float(attempts)),
        submitted_at=when("submitted_at"),
        video_status=text("video_status"),
        video_url=text("video_url"),
        cover_url=text("cover_url"),
        duration=number("duration"),
        deducted_credit=number("deducted_credit"),
        error=text("error"),
        completed_at=when("completed_at"),
        created_product_id=text("created_product_id"),
    )
