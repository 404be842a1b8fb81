"""Opening a catalog file: format by extension, CSV dialect sniffing, streamed record batches.

Every reader yields pyarrow tables of exactly `batch_rows` rows (the last may be shorter; CSV and
Parquet make the first one at most `FIRST_BATCH_ROWS`, so that a run's first request does not wait
for a large first batch), so memory stays flat whatever the file size, and batch boundaries are
the same on every read.
CSV columns are read as strings exactly as typed ("00123" stays "00123"); Parquet keeps its types.
A JSON Lines column has one type in every batch, from a pass over the whole file (text when its
values are of several kinds).
pyarrow and decoding errors become `CatalogError`s that name the file, here and nowhere else.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import PurePosixPath
from typing import IO, Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from batch import payload, storage
from batch.catalog import excel
from batch.catalog.rows import CatalogFormat, CatalogOptions, nameless_fix, row_place
from batch.errors import CatalogError
from batch.storage import Location

logger = logging.getLogger(__name__)

_EXTENSIONS: Final[dict[str, CatalogFormat]] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    **dict.fromkeys(excel.EXTENSIONS, "excel"),
}
# What a `.gz` catalog may hold: text read as a stream (`storage.open_read` decompresses).
_COMPRESSED_FORMATS: Final = ("csv", "jsonl")
_DELIMITERS: Final = (",", ";", "\t")
_SNIFF_BYTES: Final = 64 * 1024
# A header line longer than this (about 500,000 columns) is refused rather than cut short.
_HEAD_LIMIT: Final = 16 << 20
_LINE_END: Final = re.compile(rb"\r\n?|\n")  # a lone CR too: Excel for Mac's "CSV (Macintosh)"
_TEXT_LINE_END: Final = re.compile(r"\r\n?|\n")
# Small enough that the first batch is planned, and its first request sent, right away (the
# planner's slice is this size too).
FIRST_BATCH_ROWS: Final = 5_000
_CSV_BLOCK_BYTES: Final = 1 << 20
# pyarrow needs a block to hold more than half of the longest row, or it fails with "straddling
# object straddles two block boundaries". Blocks start small (memory stays flat) and grow when a
# row is too long for them, up to this: a 16 MiB cell of 4-byte characters still fits.
MAX_BLOCK_BYTES: Final = 256 << 20
_KEY_SCAN_ROWS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Source:
    """An opened catalog: its headers in file order, its tables, read lazily, and where data row
    N is for people (`row 7`; `sheet 'Products' row 8` in a workbook)."""

    headers: list[str]
    tables: Iterator[pa.Table]
    place: Callable[[int], str] = field(default=row_place)
    schema: pa.Schema | None = None  # the columns' types, when the file says (Parquet, JSON Lines)
    reading: str | None = None  # which part of the file is read, for people (a workbook's sheet)
    caveat: str | None = None  # what its format keeps from being checked, for people

    @property
    def structs(self) -> list[str]:
        """The headers of struct columns (`normalize.plan_columns`)."""
        return [f.name for f in self.schema or () if pa.types.is_struct(f.type)]

    def empty_table(self) -> pa.Table:
        """No rows, the catalog's columns: typed as the file says, else as text."""
        schema = self.schema or pa.schema([(name, pa.string()) for name in self.headers])
        return schema.empty_table()


def open_source(path: Location, options: CatalogOptions) -> Source:
    """Check the file and read its header now; the rows are read as the tables are consumed."""
    fmt = catalog_format(path, options)
    if not storage.is_file(path):
        raise CatalogError(f"{path}: no such catalog file; check the path")
    if options.batch_rows < 1:
        raise CatalogError(f"batch_rows must be 1 or more, not {options.batch_rows}")
    if fmt == "excel":
        sheet = excel.open_sheet(path, options.sheet, options.batch_rows)
        return Source(
            sheet.headers, sheet.tables, sheet.place, reading=sheet.reading, caveat=sheet.caveat
        )
    if options.sheet is not None:
        raise CatalogError(f"{path}: --sheet is for spreadsheets (.xlsx, .xls, .ods) only")
    if fmt == "parquet":
        return _open_parquet(path, options.batch_rows)
    if fmt == "jsonl":
        return _open_jsonl(path, options.batch_rows)
    return _open_csv(path, options)


def catalog_format(path: Location, options: CatalogOptions) -> CatalogFormat:
    """The format given in the options, or the one the file extension names (the one before
    `.gz` for a compressed file: `catalog.csv.gz` is CSV)."""
    if options.format is not None:
        if options.format not in ("csv", "parquet", "jsonl", "excel"):
            raise CatalogError(
                f"unknown catalog format {options.format!r}; use csv, parquet, jsonl or excel"
            )
        fmt = options.format
    else:
        suffix = PurePosixPath(storage.inner_name(path)).suffix
        found = _EXTENSIONS.get(suffix.lower())
        if found is None:
            raise CatalogError(
                f"{path}: cannot tell the catalog format from the extension {suffix!r}; "
                "name it .csv, .tsv, .parquet, .jsonl or .xlsx (.csv.gz, .tsv.gz or .jsonl.gz "
                "compressed), or pass --format"
            )
        fmt = found
    if storage.is_gzip(path) and fmt not in _COMPRESSED_FORMATS:
        # Parquet and workbooks compress their own contents, and are read by seeking.
        what = "Parquet file" if fmt == "parquet" else "spreadsheet"
        raise CatalogError(
            f"{path}: a gzip-compressed {what} is not read; decompress it first "
            "(CSV and JSON Lines are read compressed)"
        )
    return fmt


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    rows = min(size, FIRST_BATCH_ROWS)
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch = batch.slice(take)
            count += take
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count, rows = [], 0, size
    if count:
        yield pa.Table.from_batches(pending)


def _arrow_errors(
    path: Location, what: str, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    except storage.store_errors(pa.ArrowException) as exc:
        raise CatalogError(f"{path}: cannot read it as {what}: {exc}") from exc


# ---- CSV ----


def read_head(path: Location, handle: IO[bytes]) -> bytes:
    """The first bytes of a text catalog: 64 KiB, or on until they hold its first two lines
    (a `sep=` line and the header, or the header and a row), so that a pivoted export's header
    of thousands of columns is read whole, never cut at a column."""
    head = handle.read(_SNIFF_BYTES)
    while len(_LINE_END.findall(head, 0, _HEAD_LIMIT)) < 2 and (more := handle.read(len(head))):
        if len(head) >= _HEAD_LIMIT and not _LINE_END.search(head):
            raise CatalogError(
                f"{path}: its first line is longer than {_HEAD_LIMIT >> 20} MiB, with no line "
                "end; is it a CSV file?"
            )
        head += more
    return head


def _open_csv(path: Location, options: CatalogOptions) -> Source:
    with storage.open_read(path) as handle:
        sample = read_head(path, handle)
    encoding = text_encoding(sample)
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"{path}: is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV, "
            "or pass --format if it is Parquet or JSON Lines"
        ) from exc
    layout = csv_layout(path, text, options, encoding)
    batches = csv_batches(
        path, layout.delimiter, layout.cells, skip_lines=layout.skip_lines, encoding=encoding
    )
    if layout.nameless:
        batches = _without_nameless(path, layout, batches)
    return Source(layout.headers, _rebatch(_arrow_errors(path, "CSV", batches), options.batch_rows))


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """A CSV file's delimiter, header cells, and the lines above the header (1 after `sep=;`).

    A column with no name (a trailing delimiter on every line, as some exports write) is not a
    catalog column while it holds nothing: `headers` are the named cells, `nameless` the
    positions (0-based) of the others, whose cells must all be empty (`nameless_value`).
    """

    delimiter: str
    cells: list[str]
    skip_lines: int = 0
    encoding: str = "utf-8-sig"

    @property
    def headers(self) -> list[str]:
        return [cell for cell in self.cells if cell.strip()]

    @property
    def nameless(self) -> list[int]:
        return [position for position, cell in enumerate(self.cells) if not cell.strip()]


def nameless_value(layout: CsvLayout, where: str, position: int, value: str) -> CatalogError:
    """The error for a value in a column with no name: it could not be matched, nor kept."""
    before = layout.cells[position - 1] if position else ""
    after = f" (after {before!r})" if before.strip() else ""
    return CatalogError(
        f"{where}: column {position + 1}{after} has no name in the header, yet holds "
        f"{value[:40]!r}; {nameless_fix(position, value)}"
    )


def _without_nameless(
    path: Location, layout: CsvLayout, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """The batches without their nameless columns, each checked to hold only empty cells."""
    nameless = layout.nameless
    named = [position for position in range(len(layout.cells)) if position not in nameless]
    rows = 0
    for batch in batches:
        for position in nameless:
            column = batch.column(position)
            filled = pc.not_equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
            if pc.any(filled).as_py():
                index = pc.index(filled, True).as_py()
                value = column[index].as_py()
                raise nameless_value(layout, f"{path} row {rows + index + 1}", position, value)
        rows += batch.num_rows
        yield batch.select(named)


def text_encoding(head: bytes) -> str:
    """UTF-16 when the file opens with its byte order mark (Excel's "Unicode Text" export, a
    tab-separated .txt), else UTF-8 (with or without one): the only encodings a byte order mark
    makes certain; any other is refused, never guessed."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(
        codecs.BOM_UTF32_LE
    ):
        return "utf-16"
    return "utf-8-sig"


def csv_layout(
    path: Location, text: str, options: CatalogOptions, encoding: str = "utf-8-sig"
) -> CsvLayout:
    """The delimiter (given, declared or sniffed) and the header cells, from the first bytes.

    Excel writes and reads a first line `sep=;` that declares the delimiter; it is skipped.
    """
    if options.delimiter is not None and len(options.delimiter) != 1:
        raise CatalogError(f"the CSV delimiter must be one character, not {options.delimiter!r}")
    allow_long_cells()  # a long header is one cell while the delimiter is sniffed
    declared = declared_delimiter(text)
    if declared is not None and options.delimiter not in (None, declared):
        raise CatalogError(
            f"{path}: line 1 declares the delimiter {declared!r} (sep={declared}), "
            f"but {options.delimiter!r} was given; drop the option or the line"
        )
    skip_lines = 0 if declared is None else 1
    if declared is not None:
        text = _TEXT_LINE_END.split(text, 1)[1] if _TEXT_LINE_END.search(text) else ""
    delimiter = options.delimiter or declared or _sniff_delimiter(text)
    cells = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
    if not any(cell.strip() for cell in cells):
        raise CatalogError(f"{path}: has no header row; the first line must name the columns")
    return CsvLayout(delimiter, cells, skip_lines, encoding)


def allow_long_cells() -> None:
    """Raises the csv module's limit (128 KiB a cell, far below what a catalog may hold)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))


def declared_delimiter(text: str) -> str | None:
    """The delimiter of a first line `sep=X` (Excel's), or None."""
    first = _TEXT_LINE_END.split(text, 1)[0]
    if len(first) == 5 and first[:4].lower() == "sep=":
        return first[4]
    return None


def is_straddling(error: BaseException) -> bool:
    """pyarrow's way of saying a row is longer than its block (or a quote never closes)."""
    return "straddling object" in str(error)


def csv_batches(
    path: Location,
    delimiter: str,
    headers: list[str],
    *,
    columns: list[str] | None = None,
    block_size: int = _CSV_BLOCK_BYTES,
    max_block: int = MAX_BLOCK_BYTES,
    skip_lines: int = 0,
    encoding: str = "utf-8-sig",
) -> Iterator[pa.RecordBatch]:
    """The rows as record batches of string columns (`columns`: only these, as raw bytes),
    the header being the line after `skip_lines` lines.

    A row too long for the block restarts the read with blocks four times larger, skipping the
    rows already given, so a file of ordinary rows never pays for one long cell.
    """
    given = 0
    while True:
        skip = given
        try:
            reader = _csv_reader(
                path, delimiter, headers, columns, block_size, skip_lines, encoding
            )
            for batch in reader:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                given += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            if given == 0 and "Empty CSV file" in str(exc):
                return  # a header line with no line end (an empty export): no rows
            if not is_straddling(exc) or block_size >= max_block:
                raise
            block_size *= 4
            logger.debug("%s: a row is longer than a block; reading again", path)


def _csv_reader(
    path: Location,
    delimiter: str,
    headers: list[str],
    columns: list[str] | None,
    block_size: int,
    skip_lines: int,
    encoding: str,
) -> pa_csv.CSVStreamingReader:
    kind = pa.string() if columns is None else pa.binary()
    # pyarrow reads UTF-8 itself (a byte order mark skipped); other text through a decoder.
    utf8 = encoding == "utf-8-sig"
    return pa_csv.open_csv(
        storage.arrow_source(path),
        read_options=pa_csv.ReadOptions(
            block_size=block_size, skip_rows=skip_lines, encoding="utf8" if utf8 else encoding
        ),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(columns or headers, kind),
            include_columns=columns,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _sniff_delimiter(text: str) -> str:
    """The candidate that splits the header line into the most fields (`,` on a tie)."""
    counts = {
        delimiter: len(next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), []))
        for delimiter in _DELIMITERS
    }
    return max(_DELIMITERS, key=lambda delimiter: counts[delimiter])


# ---- Parquet ----


def _open_parquet(path: Location, rows: int) -> Source:
    try:
        # Spark and parquet-mr write a CRC of each page: a page damaged on disk or in transit
        # is then refused, not read as other text or another product id, and paid for.
        parquet = pq.ParquetFile(storage.arrow_source(path), page_checksum_verification=True)
    except storage.store_errors(pa.ArrowException) as exc:
        raise CatalogError(
            f"{path}: is not a Parquet file ({exc}); check the file or pass --format"
        ) from exc
    batches = _arrow_errors(path, "Parquet", parquet.iter_batches(batch_size=rows))
    schema = parquet.schema_arrow
    return Source(list(schema.names), _rebatch(_utf8_checked(path, batches), rows), schema=schema)


def _utf8_checked(path: Location, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Parquet batches whose text is UTF-8, as a STRING column promises: Hive, Impala and other
    writers that do not check put Latin-1 bytes there, and pyarrow reads them as they are (Python
    fails on them later, once rows were paid for). CatalogError naming the first bad cell."""
    first = 1
    for batch in batches:
        try:
            batch.validate(full=True)
        except pa.ArrowInvalid:
            raise CatalogError(_not_utf8(path, batch, first)) from None
        first += batch.num_rows
        yield batch


def _not_utf8(path: Location, batch: pa.RecordBatch, first: int) -> str:
    """What `_utf8_checked` says of a batch that fails Arrow's full validation."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        for offset, value in enumerate(column.cast(pa.binary()).to_pylist()):
            try:
                (value or b"").decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{path}: row {first + offset}, column {name!r}: {value[:40]!r} is not "
                    f"UTF-8 text (byte {exc.start}), though the column says it is; write the "
                    "file again with its text as UTF-8"
                )
    last = first + batch.num_rows - 1
    return (
        f"{path}: rows {first} to {last} do not hold what their columns' types say; write it again"
    )


# ---- JSON Lines ----


class _WideInt(int):
    """An int past 2**53, which no float64 holds exactly (pyarrow refuses it in a float column)."""


class _HugeInt(int):
    """An int past int64, which no Arrow integer column holds."""


_INT64_END: Final = 2**63


def _marked_int(text: str) -> int:
    """json's `parse_int` for the key pass: the int, of a marker type when it is wide or huge."""
    value = int(text)
    if len(text) < 16:  # below 10**15: no comparison needed
        return value
    if not -_INT64_END <= value < _INT64_END:
        return _HugeInt(value)
    return _WideInt(value) if abs(value) > payload.FLOAT_EXACT else value


class _RepeatedKey(ValueError):
    """A key twice in one JSON object: json keeps the last value, silently."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) < len(pairs):
        keys = [key for key, _ in pairs]
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise _RepeatedKey(f"the key {repeated!r} appears twice in one object")
    return record


# The key pass (before anything is sent) also refuses repeated keys; the batches' pass need not.
_SCAN_DECODER: Final = json.JSONDecoder(parse_int=_marked_int, object_pairs_hook=_unique_keys)
# A `\ud83d` escape with no partner (an emoji cut in half by a program) is text no request holds.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _scan_loads(line: bytes) -> Any:
    """`json.loads`, ints marked (`_marked_int`)."""
    return _SCAN_DECODER.decode(line.decode(json.detect_encoding(line), "surrogatepass"))


def _open_jsonl(path: Location, rows: int) -> Source:
    # pyarrow's JSON reader fails when a column holds 30 in one line and "30s" in the next, which
    # is exactly what people write, so lines are parsed here and mixed columns become strings.
    schema = jsonl_columns(path)
    types = dict(zip(schema.names, schema.types, strict=True))
    return Source(schema.names, _jsonl_tables(path, types, rows), schema=schema)


# The metadata of a JSON Lines text column some of whose values are lists or objects, which it
# holds as JSON text: `normalize` refuses those where one value goes, as in a list column.
JSON_IN_TEXT: Final = {b"jogg-batch": b"json lists or objects in text"}


def jsonl_columns(path: Location) -> pa.Schema:
    """Every key of every record, in order of first appearance, with the one Arrow type its
    column has in every batch: one streamed pass that keeps the kinds of values seen per key,
    never the values. A text column that holds lists or objects too is marked `JSON_IN_TEXT`.

    Sparse exports (MongoDB's leave out a key whose value is null) may name a column first in
    their millionth record; the columns are known only at the end of the file. A column's type
    is the one pyarrow infers for the whole file at once (`_column_type`), so a file read in one
    batch gets what it always got, and batches of a `.parquet` results file agree.
    """
    seen: dict[tuple[str, type], None] = {}
    nested: dict[str, pa.DataType] = {}
    unshared: set[str] = set()
    with storage.open_read(path) as handle:
        line_number = 0
        while True:
            records, line_number = _read_records(
                path, handle, line_number, _KEY_SCAN_ROWS, _scan_loads
            )
            if not records:
                break
            # Records of one export mostly share their keys and kinds: one entry per shape.
            shapes: dict[tuple[tuple[str, ...], tuple[type, ...]], None] = {}
            for record in records:
                shapes[tuple(record), tuple(map(type, record.values()))] = None
            chunk: dict[tuple[str, type], None] = {}
            for keys, types in shapes:
                chunk.update(dict.fromkeys(zip(keys, types, strict=True)))
            seen.update(chunk)
            _scan_nested(records, chunk, nested, unshared)
    kinds: dict[str, set[type]] = {}
    for key, kind in seen:
        kinds.setdefault(key, set()).add(kind)
    fields = []
    for key, found in kinds.items():
        kind = _column_type(found, None if key in unshared else nested.get(key))
        mixed = pa.types.is_string(kind) and bool(found & {list, dict})
        fields.append(pa.field(key, kind, metadata=JSON_IN_TEXT if mixed else None))
    return pa.schema(fields)


def _scan_nested(
    records: list[dict[str, Any]],
    chunk: dict[tuple[str, type], None],
    nested: dict[str, pa.DataType],
    unshared: set[str],
) -> None:
    """The type of each column holding only lists, or only objects, in these records, merged
    into `nested` (nulls give way; struct fields add up); a key whose types differ goes to
    `unshared`, for JSON text."""
    kinds: dict[str, set[type]] = {}
    for key, kind in chunk:
        if kind is not type(None):
            kinds.setdefault(key, set()).add(kind)
    for key, found in kinds.items():
        if key in unshared or found not in ({list}, {dict}):
            continue
        try:
            inferred = pa.array(list(map(dict.get, records, repeat(key)))).type
            known = nested.get(key, inferred)
            nested[key] = (
                pa.unify_schemas([pa.schema([("v", known)]), pa.schema([("v", inferred)])])
                .field("v")
                .type
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            unshared.add(key)


def _column_type(kinds: set[type], nested: pa.DataType | None) -> pa.DataType:
    """The type pyarrow infers for values of these kinds, or string (JSON text for non-strings)
    where it would fail: mixed kinds, an int past int64, or past 2**53 beside floats."""
    kinds = kinds - {type(None)}
    if not kinds:
        return pa.null()
    if kinds == {bool}:
        return pa.bool_()
    if kinds <= {int, _WideInt}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds in ({list}, {dict}) and nested is not None:
        return nested
    return pa.string()


def _jsonl_tables(path: Location, types: dict[str, pa.DataType], rows: int) -> Iterator[pa.Table]:
    line_number = 0
    with storage.open_read(path) as handle:
        while True:
            records, line_number = _read_records(path, handle, line_number, rows)
            if not records:
                return
            yield pa.table(
                {
                    header: _json_column([record.get(header) for record in records], kind)
                    for header, kind in types.items()
                }
            )


def _read_records(
    path: Location,
    handle: IO[bytes],
    line_number: int,
    rows: int,
    loads: Callable[[bytes], Any] = json.loads,
) -> tuple[list[dict[str, Any]], int]:
    """Up to `rows` objects from the next lines, and the number of the last line read."""
    records: list[dict[str, Any]] = []
    while len(records) < rows and (line := handle.readline()):
        line_number += 1
        if not line.strip():
            continue
        try:
            record = loads(line)
        except _RepeatedKey as exc:
            raise CatalogError(
                f"{path} line {line_number}: {exc}; keep the one value meant"
            ) from None
        except ValueError as exc:
            raise CatalogError(
                f"{path} line {line_number}: is not JSON ({exc}); fix the line"
            ) from exc
        if not isinstance(record, dict):
            raise CatalogError(
                f"{path} line {line_number}: is not a JSON object; write one object a line"
            )
        if _SURROGATE_ESCAPE.search(line) and not _encodes(record):
            raise CatalogError(
                f"{path} line {line_number}: holds half of a character (a \\ud800-\\udfff "
                "escape without its partner, as a program that cut an emoji in two writes it); "
                "fix the text"
            )
        records.append(record)
    return records, line_number


def _encodes(record: dict[str, Any]) -> bool:
    """Whether every text of the record is text UTF-8 can hold (json joins escaped pairs)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_column(values: list[Any], kind: pa.DataType) -> pa.Array:
    """The values as an array of the column's type; a string column holds non-strings as JSON."""
    try:
        return pa.array(values, type=kind)
    except pa.ArrowTypeError:
        if not pa.types.is_string(kind):
            raise
    texts = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
    return pa.array(texts, type=pa.string())
