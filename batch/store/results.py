"""The results file people open: one row per catalog row, in catalog order, CSV, Parquet or xlsx.

It carries the catalog's own columns untouched, then the outcome columns below (in CSV and xlsx,
a column of lists, structs, maps or bytes as text: `batch.store.cells`). It is streamed
batch by batch (memory stays flat for million-row catalogs) into a temporary file in the same
folder, then renamed into place, so a reader never sees half a file and a killed run leaves the
last complete one.

CSV cells and header names that a spreadsheet would run as a formula (starting with = + - @,
tab or CR) get a leading `'`, the usual neutralisation; `read_results` strips it again. A plain
number (`-30`, `+1.5`, `-2e3`) is no formula and is left as it is; a cell that already starts
with quotes and then one of those characters gets one more, so that it reads back as it was. A new
results file is created 0600; rewriting one keeps its mode (see `batch.files`). A `.xlsx`
results file is a workbook (`batch.store.xlsx`); a results file in an object store (`s3://...`) is
written whole or not at all too (`batch.storage`).
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import python_calamine as calamine

from batch import storage
from batch.catalog import excel
from batch.catalog.readers import declared_delimiter
from batch.errors import CatalogError, LocalIOError
from batch.statuses import CODED_ROWS
from batch.storage import Location
from batch.store import OUTCOME_FIELDS, cells, xlsx

log = logging.getLogger(__name__)

OUTCOME_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("status", pa.string()),
        ("video_id", pa.string()),
        ("code", pa.int64()),
        ("message", pa.string()),
        ("attempts", pa.int64()),
        ("submitted_at", pa.string()),  # ISO-8601 UTC
        ("video_status", pa.string()),
        ("video_url", pa.string()),
        ("cover_url", pa.string()),
        ("duration", pa.float64()),
        ("deducted_credit", pa.float64()),
        ("error", pa.string()),
        ("completed_at", pa.string()),  # ISO-8601 UTC
        ("created_product_id", pa.string()),
        ("local_path", pa.string()),
    ]
)
RESULT_COLUMNS = tuple(OUTCOME_SCHEMA.names)
# Why `download` did not fetch a row's file: a column it adds to the results file when needed.
DOWNLOAD_ERROR = "download_error"
# The names jogg-batch writes: what a retry drops from a results file, and what a catalog
# column of the same name is renamed away from.
WRITTEN_COLUMNS = (*RESULT_COLUMNS, DOWNLOAD_ERROR)
# A catalog column named like an outcome column (`status`), or like one renamed so
# (`input_status`), is written with one more of this prefix: `results_name`, `catalog_name`.
INPUT_PREFIX = "input_"
# CSV cells quoted: a spreadsheet would run them (= + - @ tab CR first), or read_results would
# take a quote off them (a quote then one of those), unless they are a plain number (-30, +1.5e3,
# or -2,5 with a decimal comma as a `;` catalog from Excel writes it).
_QUOTED_START = r"^'*[=+\-@\t\r]"
_PLAIN_NUMBER = r"^[+-]?(\d+[.,]?\d*|[.,]\d+)([eE][+-]?\d+)?$"
_RISKY_BYTES = pa.array([b"=", b"+", b"-", b"@", b"\t", b"\r", b"'"], pa.binary())
_NEUTRALISED = r"^'(?='*[=+\-@\t\r])"
# A results file saved back by a spreadsheet in a European locale separates cells with `;`.
_DELIMITERS = (",", ";", "\t")

# A state row (`OUTCOME_FIELDS`) as it comes: times are unix seconds.
_STATE_ROW = pa.struct(
    [
        (name, pa.float64() if name.endswith("_at") else OUTCOME_SCHEMA.field(name).type)
        for name in OUTCOME_FIELDS
    ]
)

# (first row, last row) -> the outcome table of those rows (OUTCOME_SCHEMA)
OutcomeLookup = Callable[[int, int], pa.Table]


def results_format(path: Location) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv"):
        return "csv"
    if suffix == ".xlsx":
        return "xlsx"
    raise CatalogError(f"{path}: results must end in .csv, .parquet or .xlsx")


def state_outcomes(rows: list[tuple[object, ...]], first: int, last: int) -> pa.Table:
    """The outcome table of rows first..last from the state's tuples (`OUTCOME_FIELDS`).

    Rows a stopped run never planned are there too, as not_attempted: one row per catalog row.
    """
    if len(rows) != last - first + 1:
        known = {row[0]: row for row in rows}
        filler = (None,) * (len(OUTCOME_FIELDS) - 2)
        rows = [known.get(n) or (n, "not_attempted", *filler) for n in range(first, last + 1)]
    # The tuples go to Arrow as one struct array: half the time of a list per column.
    columns = dict(zip(OUTCOME_FIELDS, pa.array(rows, _STATE_ROW).flatten(), strict=True))
    for name in ("submitted_at", "completed_at"):
        columns[name] = _iso(columns[name])
    columns["local_path"] = pa.nulls(len(rows), pa.string())
    return pa.table(columns, schema=OUTCOME_SCHEMA)


class OutcomeCounts:
    """The rows of the outcome tables it is shown, by status, and the failed, unknown and invalid
    ones by code (or status): what `StateStore.count_rows` answers, counted on the way to the
    results file instead of by a second pass over a million rows (1-2 s)."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()

    def add(self, outcomes: pa.Table) -> pa.Table:
        status = outcomes.column("status")
        self.statuses.update(_counted(status))
        coded = pc.is_in(status, value_set=pa.array(CODED_ROWS))
        code = pc.coalesce(pc.cast(outcomes.column("code"), pa.string()), status)
        self.codes.update(_counted(pc.filter(code, coded)))
        return outcomes

    def totals(self) -> tuple[dict[str, int], dict[str, int]]:
        """(statuses, codes), each sorted by name, as `StateStore.count_rows` returns them."""
        return dict(sorted(self.statuses.items())), dict(sorted(self.codes.items()))


def _counted(values: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    return {item["values"]: item["counts"] for item in pc.value_counts(values).to_pylist()}


def _iso(seconds: pa.Array) -> pa.Array:
    """Unix seconds -> `2026-11-26T23:30:07Z` text, vectorised (a cast to text writes
    `2026-11-26 23:30:07`, ten times faster than strftime)."""
    whole = pc.cast(pc.floor(seconds), pa.int64())
    text = pc.replace_substring(pc.cast(pc.cast(whole, pa.timestamp("s")), pa.string()), " ", "T")
    return pc.binary_join_element_wise(text, "Z", "")


def _frame_outcomes(frame: pd.DataFrame) -> pa.Table:
    """The outcome columns of a results frame (text cells), typed; missing ones are empty."""
    arrays: dict[str, pa.Array] = {}
    for field in OUTCOME_SCHEMA:
        if field.name not in frame.columns:
            arrays[field.name] = pa.nulls(len(frame), field.type)
            continue
        text = pa.array(
            [None if v in ("", None) else str(v) for v in frame[field.name]], pa.string()
        )
        if pa.types.is_integer(field.type):  # "3.0" as well as "3"
            arrays[field.name] = pc.cast(pc.cast(text, pa.float64()), field.type)
        else:
            arrays[field.name] = pc.cast(text, field.type)
    return pa.table(arrays, schema=OUTCOME_SCHEMA)


def results_name(catalog_column: str) -> str:
    """A catalog column's name in the results file: `status` is `input_status`, and the catalog's
    own `input_status` is `input_input_status` then, so no column is lost; others keep theirs."""
    return INPUT_PREFIX + catalog_column if _is_outcome_name(catalog_column) else catalog_column


def catalog_name(results_column: str) -> str:
    """The catalog's name for a column of the results file (`results_name` undone)."""
    bare = results_column.removeprefix(INPUT_PREFIX)
    return bare if bare != results_column and _is_outcome_name(bare) else results_column


def _is_outcome_name(name: str) -> bool:
    """An outcome column's name, under any number of `input_` prefixes."""
    while name.startswith(INPUT_PREFIX):
        name = name.removeprefix(INPUT_PREFIX)
    return name in WRITTEN_COLUMNS


def _joined(inputs: pa.Table, outcomes: pa.Table) -> pa.Table:
    columns = {results_name(name): inputs.column(name) for name in inputs.column_names}
    for name in outcomes.column_names:
        columns[name] = outcomes.column(name)
    return pa.table(columns)


def _neutralised(table: pa.Table) -> pa.Table:
    """Formula-looking text cells and column names get a leading quote (CSV only)."""
    names = [f"'{name}" if _needs_quote(name) else name for name in table.column_names]
    if names != table.column_names:
        table = table.rename_columns(names)
    for index, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(index)
            risky = _risky_cells(column)
            if risky is not None:
                quoted = pc.binary_join_element_wise("'", column, "")
                table = table.set_column(index, field, pc.if_else(risky, quoted, column))
    return table


def _needs_quote(text: str) -> bool:
    return bool(re.match(_QUOTED_START, text)) and not re.fullmatch(_PLAIN_NUMBER, text)


def _risky_cells(column: pa.ChunkedArray) -> pa.Array | None:
    """Where the column's cells need a quote (`_QUOTED_START`, not `_PLAIN_NUMBER`); None: none."""
    # The first byte against a set: far cheaper than a regular expression, or than slicing
    # characters (every risky character is one byte in UTF-8). Only those cells see one.
    as_bytes = pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary()
    first = pc.binary_slice(column.cast(as_bytes), 0, 1)
    candidates = pc.fill_null(pc.is_in(first, value_set=_RISKY_BYTES), False)
    if not pc.any(candidates).as_py():
        return None
    text = pc.filter(column, candidates)
    formula = pc.match_substring_regex(text, _QUOTED_START)
    number = pc.match_substring_regex(text, _PLAIN_NUMBER)
    risky = pc.and_(formula, pc.invert(number))
    if not pc.any(risky).as_py():
        return None
    # Each candidate's answer back in its place.
    mask = candidates.combine_chunks()
    return pc.replace_with_mask(mask, mask, risky.combine_chunks())


def write_results(
    destination: Location,
    input_batches: Iterable[pa.Table],
    lookup: OutcomeLookup,
) -> None:
    """Streams the results file: each catalog batch joined with its rows' outcomes.

    Rows are numbered continuously across batches.
    """

    def joined() -> Iterator[pa.Table]:
        written = 0
        for inputs in input_batches:
            yield _joined(inputs, lookup(written + 1, written + inputs.num_rows))
            written += inputs.num_rows

    with _collector_paused():
        _write_tables(destination, joined())


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while the outcomes are read.

    A batch's outcomes arrive as 50,000 tuples, which live long enough to reach the oldest
    generation: each batch set off a full collection, about 2 s of a million-row results file
    (measured with `gc.callbacks`). Tuples of plain values form no cycle; a cycle made meanwhile
    elsewhere is collected once the collector is back.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _write_tables(
    destination: Location,
    tables: Iterable[pa.Table],
    delimiter: str = ",",
    *,
    encoding: str = "utf-8",
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Temporary file in the same folder, then a rename: a reader never sees half a file.
    `encoding` of a CSV file: "utf-8", "utf-8-sig" (with UTF-8's byte order mark) or "utf-16"
    (with its own), as the file it replaces was. `before_replace`: as `storage.writing`'s."""
    csv_options = pacsv.WriteOptions(quoting_style="needed", delimiter=delimiter)
    fmt = results_format(destination)
    writer: pacsv.CSVWriter | pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    with (
        storage.writing(destination, before_replace) as temporary,
        contextlib.ExitStack() as stack,
    ):
        if fmt == "xlsx":
            beside = xlsx.sheets_beside(destination)
            xlsx.write_xlsx(temporary, map(_spreadsheet_cells, tables), RESULT_COLUMNS, beside)
            return
        sink: str | IO[bytes] | pa.BufferOutputStream = storage.arrow_name(temporary)
        if fmt == "csv" and encoding == "utf-8-sig":
            sink = stack.enter_context(open(temporary, "wb"))
            sink.write(codecs.BOM_UTF8)
        elif fmt == "csv" and encoding == "utf-16":
            sink = pa.BufferOutputStream()  # Arrow writes UTF-8 only: put in UTF-16 below
        try:
            # The empty table at the end is written only when no batch came (an empty
            # catalog): the file still has its format and the outcome columns.
            for table in itertools.chain(tables, [OUTCOME_SCHEMA.empty_table()]):
                if writer is not None and table.num_rows == 0:
                    continue
                if fmt == "csv":
                    table = _neutralised(_as_text(table))
                if writer is None:
                    schema = table.schema
                    writer = (
                        pacsv.CSVWriter(sink, schema, write_options=csv_options)
                        if fmt == "csv"
                        else pq.ParquetWriter(storage.arrow_name(temporary), schema)
                    )
                writer.write_table(table if table.schema == schema else table.cast(schema))
        finally:
            if writer is not None:
                writer.close()
        if isinstance(sink, pa.BufferOutputStream):
            temporary.write_bytes(sink.getvalue().to_pybytes().decode().encode("utf-16"))


def _as_text(table: pa.Table) -> pa.Table:
    """CSV batches must share one schema whatever each batch's inferred types: write text."""
    return pa.table({name: cells.as_text(table.column(name)) for name in table.column_names})


def _spreadsheet_cells(table: pa.Table) -> pa.Table:
    """Lists, structs, maps and bytes as the text a CSV cell holds; other values stay typed
    (an xlsx file written, a Parquet one read)."""
    for index, field in enumerate(table.schema):
        if not cells.is_plain(field.type):
            text = cells.as_text(table.column(index))
            table = table.set_column(index, pa.field(field.name, pa.string()), text)
    return table


def read_results(path: Location) -> pd.DataFrame:
    """A results file (CSV, Parquet or xlsx, by extension) with every cell as a string; CSV cells
    neutralised against spreadsheet formulas get their value back."""
    fmt = results_format(path)
    if not storage.is_file(path):
        raise CatalogError(f"{path}: no such results file")
    try:
        with storage.open_read(path) as handle:
            if fmt == "parquet":
                # Text made by Arrow: through pandas, an int column with a null is a float
                # column, and an id past 2**53 would come back with other digits.
                table = pq.read_table(handle, page_checksum_verification=True)
                texts = pa.table({name: cells.as_text(table[name]) for name in table.column_names})
                frame_: pd.DataFrame = texts.to_pandas().fillna("")
                return _tidied(frame_.astype(object))
            if fmt == "xlsx":
                book = xlsx.read_xlsx(handle, path)
                hidden = excel.hidden_rows(path, book.attrs["sheet"])
                frame = _tidied(book)
                frame.attrs["hidden_rows"] = hidden
                return frame
            encoding, delimiter, skip = _csv_dialect(handle)
            frame = pd.read_csv(
                handle,
                dtype=str,
                keep_default_na=False,
                sep=delimiter,
                # Through Python's codec, which names a bad byte by its place in the file
                # (pandas' own UTF-8 decoder names it within a block).
                encoding="utf-8-sig" if encoding == "utf-8" else encoding,
                skiprows=skip,
            )
            # `write_table` writes it back the same way: Excel reads accents in a UTF-8 file
            # right only after a byte order mark, which its "CSV UTF-8" writes.
            frame.attrs["delimiter"] = delimiter
            frame.attrs["encoding"] = encoding
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such results file") from None
    except UnicodeDecodeError:
        line, offset = _first_not_utf8(path)
        raise CatalogError(
            f"{path}: is not UTF-8 text (line {line}, byte {offset}: a spreadsheet saved it in "
            'its own code page); save it as "CSV UTF-8" and try again'
        ) from None
    except storage.store_errors(calamine.CalamineError) as error:
        raise CatalogError(f"{path}: cannot read this results file: {error}") from error
    frame.columns = [
        name[1:] if re.match(_NEUTRALISED, name) else name for name in frame.columns.astype(str)
    ]
    for column in frame.columns:
        values = frame[column]
        quoted = values.str.match(_NEUTRALISED)
        if quoted.any():
            frame.loc[quoted, column] = values[quoted].str.slice(1)
    return _plain_numbers(_tidied(frame), path)


def _tidied(frame: pd.DataFrame) -> pd.DataFrame:
    """The file as a person may have saved it back, read as written: an outcome column's header
    retyped in another case or spacing (`Status`, `Video ID`) has its name again, and the empty
    lines a spreadsheet leaves below the rows are left out."""
    present = set(frame.columns)
    names: dict[object, str] = {}
    for column in frame.columns:
        name = _SPACING.sub("_", str(column).strip().lower())
        if name in WRITTEN_COLUMNS and name not in present and name not in names.values():
            names[column] = name
    frame = frame.rename(columns=names)
    if frame.empty:
        return frame
    for name in _TRIMMED.intersection(frame.columns):  # `completed ` from a spreadsheet's cell
        frame[name] = frame[name].str.strip()
    # Only the rows whose first cell is empty are looked at whole: a million rows stay cheap.
    first = frame.iloc[:, 0].astype(str).str.strip().eq("")
    if not first.any():
        return frame
    maybe = frame[first]
    blank = maybe.apply(lambda cells: cells.astype(str).str.strip().eq("")).all(axis=1)
    return frame.drop(index=maybe.index[blank]) if blank.any() else frame


_SPACING: Final = re.compile(r"[\s_-]+")
# The outcome columns whose spaces around the text mean nothing (a video id, a status, a URL):
# read without them, as a person who typed or pasted them meant them.
_TRIMMED: Final = frozenset(
    ("status", "video_id", "video_status", "video_url", "cover_url", "created_product_id")
)

# A number as a spreadsheet may save it back: digits grouped by thousands (1,001 / 1.001 /
# 1 001 / 1'001), a whole number with a zero fraction (3.0, 3,0), a decimal comma (18,5).
_GROUPED = re.compile(r"[+-]?\d{1,3}([,.' \u00a0\u202f])\d{3}(\1\d{3})*")
_ZERO_FRACTION = re.compile(r"([+-]?\d+)[.,]0+")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


def _plain_numbers(frame: pd.DataFrame, path: Location) -> pd.DataFrame:
    """The outcome columns holding numbers, as plain digits again; CatalogError naming the row,
    column and value for a cell that is no number. Read before anything is sent, so a file a
    spreadsheet reformatted never fails after paying, when its outcomes are written back."""
    for field in OUTCOME_SCHEMA:
        whole = pa.types.is_integer(field.type)
        if field.name not in frame.columns or not (whole or pa.types.is_floating(field.type)):
            continue
        cells = frame[field.name]
        stripped = pc.utf8_trim_whitespace(pa.array(cells.astype(str), pa.string()))
        # Cells as jogg-batch wrote them are matched in C; only the others are read one by one
        # (a million-row file took seconds per column in Python).
        as_written = pc.match_substring_regex(stripped, _WRITTEN_WHOLE if whole else _WRITTEN)
        plain = stripped.to_pylist()
        for position in np.flatnonzero(~as_written.to_numpy(zero_copy_only=False)):
            number = _plain_number(plain[position], whole=whole)
            if number is None:
                line = [str(cell).strip() for cell in frame.iloc[int(position)]]
                if line == [str(column).strip() for column in frame.columns]:
                    raise CatalogError(
                        f"{path}: line {position + 2} repeats the header line (two files "
                        "pasted together?); delete it"
                    )
                kind = "a whole number" if whole else "a number"
                row = str(frame["row"].iat[int(position)]) if "row" in frame.columns else ""
                raise CatalogError(
                    f"{path}: line {position + 2}{f' (row {row})' if row.isdigit() else ''}, "
                    f"column {field.name!r}: "
                    f"{cells.iat[position]!r} is not {kind}; jogg-batch wrote it as one: put "
                    "back the value it wrote, or empty the cell"
                )
            plain[position] = number
        frame[field.name] = pd.Series(plain, index=frame.index, dtype=object)
    return frame


# Empty, or a number as jogg-batch writes one.
_WRITTEN_WHOLE = r"^([+-]?\d+)?$"
_WRITTEN = r"^([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)?$"


def _plain_number(text: str, *, whole: bool) -> str | None:
    """`text` as plain digits (whole) or a number Python reads; None when it is neither."""
    if whole:
        if _GROUPED.fullmatch(text):
            return re.sub(r"[^0-9+-]", "", text)
        if re.fullmatch(r"[+-]?\d+", text):
            return text
        zero = _ZERO_FRACTION.fullmatch(text)
        return zero.group(1) if zero else None
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        return None
    return text if math.isfinite(number) else None


def _csv_dialect(handle: IO[bytes]) -> tuple[str, str, int]:
    """(encoding, delimiter, lines to skip) of a CSV results file: UTF-16 when it starts with
    that byte order mark (Excel's "Unicode Text"), else UTF-8 ("utf-8-sig" after UTF-8's byte
    order mark: a file written back keeps it); the delimiter a `sep=;` first line
    names (Excel writes and reads one; it is skipped), else the one under which the header line
    names the most outcome columns (`,` when no other names more). The handle is put back at
    its start."""
    head = handle.read(1 << 20)
    handle.seek(0)
    encoding = (
        "utf-16"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        else "utf-8-sig"
        if head.startswith(codecs.BOM_UTF8)
        else "utf-8"
    )
    line = head.decode(encoding, "replace").split("\n", 1)[0]
    if (declared := declared_delimiter(line)) is not None:
        return encoding, declared, 1

    def outcome_names(delimiter: str) -> int:
        names = (name.strip().strip('"').removeprefix("'") for name in line.split(delimiter))
        return sum(name in RESULT_COLUMNS for name in names)

    return encoding, max(_DELIMITERS, key=outcome_names), 0  # the first of equals: `,`


def require_columns(frame: pd.DataFrame, path: Location, needed: Iterable[str], use: str) -> None:
    """CatalogError when the results file lacks one of the outcome columns `needed` for `use`
    (the command): it is not a file a run wrote, or it was cut down too far."""
    missing = [f"'{name}'" for name in needed if name not in frame.columns]
    if missing:
        raise CatalogError(
            f"{path}: not a results file of jogg-batch: no {', '.join(missing)} "
            f"column{'s' if len(missing) > 1 else ''} in its first line; {use} takes the file a "
            "run wrote (CATALOG.results.csv), with its outcome columns, its header the first "
            "line (of the first sheet): delete any lines or sheets added above or before it"
        )


def _typed_as_before(inputs: pa.Table, path: Location) -> pa.Table:
    """The catalog columns of a Parquet results file being rewritten, in the types the file had:
    `read_results` made text of them. A column whose text no longer casts (edited by a person)
    and a list, struct or binary column (JSON or base64 text now) stay text."""
    try:
        with storage.open_read(path) as handle:
            before = pq.read_schema(handle)
    except (OSError, pa.ArrowException):
        return inputs  # a new file: nothing to keep
    for index, name in enumerate(inputs.column_names):
        kind = before.field(name).type if name in before.names else pa.string()
        if pa.types.is_string(kind) or not cells.is_plain(kind):
            continue
        text = inputs.column(index).cast(pa.string())
        empty_as_null = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            typed = pc.cast(empty_as_null, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
        inputs = inputs.set_column(index, pa.field(name, kind), typed)
    return inputs


def _first_not_utf8(path: Location) -> tuple[int, int]:
    """(line from 1, offset) of the file's first byte that is not UTF-8 text: the decoder's
    error names its place within the block pandas gave it, not within the file."""
    line, offset, carry = 1, 0, b""
    with storage.open_read(path) as handle:
        while block := handle.read(1 << 20):
            data = carry + block
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as exc:
                if exc.reason != "unexpected end of data":
                    return line + data.count(b"\n", 0, exc.start), offset + exc.start
                good = exc.start  # a character the block's end cut: decoded with the next
            line += data.count(b"\n", 0, good)
            offset += good
            carry = data[good:]
    return line, offset


class ResultsChanged(LocalIOError):
    """The results file changed after it was read, so the frame read from it is not written over
    it (a run rewrote it meanwhile: its rows would go back to what they were)."""


T = TypeVar("T")


def read_again_if_rewritten(results: Location, rewrite: Callable[[], T]) -> T:
    """`rewrite()`, which reads `results` and writes it back with `write_table(read_as=...)`,
    done again while the file changes in between (a run rewriting it beside `status` or
    `download`), `_READS` times at most: never written over with its rows as they were."""
    for _ in range(_READS - 1):
        try:
            return rewrite()
        except ResultsChanged:
            log.info("%s: rewritten while it was read (a run?); reading it again", results)
    return rewrite()


# How often a results file that keeps changing is read before the command gives up (what it
# learned is kept: the state has every status, the files are in place).
_READS: Final = 5


def write_table(
    frame: pd.DataFrame,
    path: Location,
    *,
    kept: str = "what was learned is kept in the state",
    read_as: str | None = None,
) -> None:
    """Rewrites a whole results frame atomically (status, download and retry use this). `kept`
    says, when it cannot be written, where what the command learned is. `read_as`: the file's
    `storage.version` when the frame was read; ResultsChanged, the file left as it is, when it
    is another just before the rename (status and download then read it again)."""

    def unchanged() -> None:
        if read_as is not None and storage.version(path) != read_as:
            raise ResultsChanged(
                f"{path}: changed while this command went on (a run rewrote it, or a person), "
                f"so it was not written over; {kept}"
            )

    inputs = pa.Table.from_pandas(
        frame.drop(columns=[c for c in WRITTEN_COLUMNS if c in frame.columns]), preserve_index=False
    )
    if results_format(path) == "parquet":
        inputs = _typed_as_before(inputs, path)
    inputs = inputs.rename_columns([catalog_name(name) for name in inputs.column_names])
    table = _joined(inputs, _frame_outcomes(frame))
    if DOWNLOAD_ERROR in frame.columns:
        reasons = pa.array(frame[DOWNLOAD_ERROR], pa.string(), from_pandas=True)
        table = table.append_column(DOWNLOAD_ERROR, reasons)
    # The file's own order: a column a person added after the outcome columns stays there.
    order = [name for name in frame.columns if name in table.column_names]
    table = table.select(order + [name for name in table.column_names if name not in order])
    try:
        _write_tables(
            path,
            [table],
            frame.attrs.get("delimiter", ","),
            encoding=frame.attrs.get("encoding", "utf-8"),
            before_replace=unchanged,
        )
    except OSError as exc:  # a full disk, a file size limit: exit 7, not a traceback
        raise LocalIOError(
            f"cannot write the results file {path} ({exc.strerror or exc}); it is left as it "
            f"was, and {kept}: run the command again once the problem is fixed"
        ) from None
    except CatalogError as exc:  # a store's refusal (access denied, no bucket): as a disk's
        raise LocalIOError(
            f"cannot write the results file: {exc}; it is left as it was, and {kept}: run the "
            "command again once the problem is fixed"
        ) from None
