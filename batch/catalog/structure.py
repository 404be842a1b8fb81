"""The structural pass: a whole catalog checked for shape before the first request is sent.

A run reads its catalog behind the first POSTs, so a file that breaks at row 150,000 would
otherwise fail after rows were paid for. This pass reads every byte first, and cheaply:

- the first bytes (decompressed, for a `.csv.gz`: a cut-short gzip stream is refused at the
  byte scan): not empty, not a workbook, archive or Parquet file named .csv; UTF-16 text
  (with its byte order mark, as Excel writes "Unicode Text") goes through Python's csv module;
- the header: every column named once, and the request columns found (`plan_columns`);
- a byte scan in large chunks: UTF-8 (an ASCII chunk is one call), NUL bytes, the parity of
  quote characters (odd: a quoted cell may never close, which pyarrow would silently accept),
  and whether a line break falls between quotes (a quoted cell holds lines: it may be a quote
  opened in one row's text and closed by one in a later row's, the rows between taken into it);
- pyarrow's CSV parser over the whole file, converting a single column: row widths and quoting.

Only when one of these fails does a slower scan with Python's `csv` module look for the first
bad line, so that the message names file, line and row; it has the last word (a lone quote
inside an unquoted cell makes the parity odd, yet the file is fine). JSON Lines goes the same
way with pyarrow's JSON parser; Parquet is read whole, every page decoded and its text checked
as UTF-8.

Choices: text must be UTF-8 (a BOM is fine), or UTF-16 that opens with its byte order mark (a
certainty, not a guess); latin-1 or cp1252 is refused at its first bad byte rather than
guessed, since a wrong guess would put mojibake into paid videos. Rows are numbered
as everywhere else (the first row below the header is row 1; blank lines are not rows).
"""

from __future__ import annotations

import base64
import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from batch import storage
from batch.catalog.normalize import (
    MULTI_LINE_COLUMNS,
    ColumnPlan,
    header_again,
    header_spellings,
    plan_columns,
    refuse_doubtful_columns,
    refuse_nested_requests,
)
from batch.catalog.readers import (
    CsvLayout,
    allow_long_cells,
    catalog_format,
    csv_batches,
    csv_layout,
    is_straddling,
    nameless_value,
    open_source,
    read_head,
    text_encoding,
)
from batch.catalog.rows import CatalogOptions
from batch.errors import CatalogError
from batch.storage import Location

logger = logging.getLogger(__name__)

_CHUNK_BYTES: Final = 16 << 20
_SNIFF_BYTES: Final = 64 << 10
# NULs in a file's first 8 KiB, below its header, that are a text file's stray bytes (reported
# with their row and column) rather than a binary file's.
_STRAY_NULS: Final = 4
_FIRST_BLOCK: Final = 4 << 20
_LAST_BLOCK: Final = 64 << 20  # rows longer than this are left to the Python scan
_LISTED_PROBLEMS: Final = 20  # of a CSV file's lines that are not rows; the rest are counted
_SAVE_AS: Final = "export it from the spreadsheet as CSV UTF-8"
_ZIP: Final = b"PK\x03\x04"
# The first files of an Office package's archive (Excel's .xlsx, LibreOffice's .ods).
_OFFICE_ENTRIES: Final = (b"[Content_Types].xml", b"mimetype", b"xl/", b"docProps/", b"_rels/")
_SIGNATURES: Final = (
    (_ZIP, f"a ZIP archive, not text (an Excel .xlsx workbook?); {_SAVE_AS}"),
    (
        b"\xd0\xcf\x11\xe0",
        f"an Excel .xls workbook (or one a password protects), not text; {_SAVE_AS}",
    ),
    (b"PAR1", "a Parquet file; name it .parquet or pass --format parquet"),
    (b"\x1f\x8b", "gzip-compressed; end its name in .gz (catalog.csv.gz) to have it read so"),
    (b"\xff\xfe\x00\x00", "UTF-32 text; save it as UTF-8"),
    (b"\x00\x00\xfe\xff", "UTF-32 text; save it as UTF-8"),
    # Compressions read only as gzip: each is named, with the way to a file that is read.
    (b"BZh91AY&SY", "bzip2-compressed; decompress it (bunzip2), or recompress it with gzip (.gz)"),
    (b"\xfd7zXZ\x00", "xz-compressed; decompress it (unxz), or recompress it with gzip (.gz)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed; decompress it (unzstd), or recompress it with gzip"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive, not text; extract the catalog inside"),
)
# What Python's csv module says, and what it means for the person fixing the file.
_QUOTE_HINT: Final = 'close the quote where the cell ends, and write a quote inside a cell as ""'
_TAB_QUOTE_HINT: Final = (
    "a quote in the text took the rows below into one cell (tab-separated exports do not "
    'quote); remove the quote, or quote the whole cell and write the quote inside it as ""'
)
_SWALLOW_HINT: Final = (
    "a quote at the start of a cell took the rows below into it up to a later quote; remove "
    'the quote, or quote the whole cell and write the quote inside it as ""'
)
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_BASE64_TEXT: Final = re.compile(r"[A-Za-z0-9+/]+")
_BAD_TEXT: Final = re.compile("[\x00\udc80-\udcff]")  # NUL, or a byte that was not UTF-8


def check_structure(path: Location, options: CatalogOptions) -> int:
    """Reads the whole catalog for structure; returns its number of rows.

    Raises CatalogError for the first problem, naming the file and, where there is one, the
    line and row (and column). Sends nothing and writes nothing.
    """
    fmt = catalog_format(path, options)
    if not storage.is_file(path):
        if isinstance(path, Path) and path.exists() and not path.is_dir():
            raise CatalogError(
                f"{path}: is not a regular file (a pipe or a device?); a catalog is read more "
                "than once, so save it to a file first"
            )
        raise CatalogError(f"{path}: no such catalog file; check the path")
    if fmt == "csv":  # from a store too: a quote that never closes must not swallow rows
        rows = _check_csv(path, options)
    elif fmt == "excel" or not isinstance(path, Path) or storage.is_gzip(path):
        rows = _check_by_reading(path, options)
    elif fmt == "parquet":
        rows = _check_parquet(path, options)
    else:
        rows = _check_jsonl(path, options)
    if rows == 0:
        logger.warning("%s: has no rows below its header", path)
    return rows


def _first_batch_decides(
    path: Location, options: CatalogOptions, columns: ColumnPlan, *, nested: bool = False
) -> None:
    """A column named as a request field as often as a product's detail (`Format`) is refused
    here, before anything is sent, when the first batch's values read as the field's
    (`normalize.refuse_doubtful_columns`); one left undecided is decided while planning. So is
    a `nested` catalog's struct column holding a request field (`refuse_nested_requests`)."""
    if columns.doubtful or nested:
        for table in open_source(path, options).tables:
            refuse_nested_requests(path, table, columns)
            refuse_doubtful_columns(path, table, columns)
            break


def _check_by_reading(path: Location, options: CatalogOptions) -> int:
    """A spreadsheet (parsed whole by calamine, cells typed: nothing to scan for), or a Parquet
    or JSON Lines file in a store or gzip-compressed: read to the end through the ordinary
    reader, its header planned. (A store's or a compressed CSV is scanned as a local one is,
    streamed.)"""
    if storage.is_gzip(path) and catalog_format(path, options) != "excel":
        with storage.open_read(path) as handle:  # decompressed: an empty or twice-gzipped file
            _refuse_non_text(path, handle.read(_SNIFF_BYTES))
    source = open_source(path, options)
    if source.reading is not None:
        logger.info("%s: reading %s", path, source.reading)
    if source.caveat is not None:
        logger.warning("%s: %s", path, source.caveat)
    columns = plan_columns(path, source.headers, options, source.structs)
    spellings = header_spellings(source.headers)
    rows = 0
    for table in source.tables:
        refuse_nested_requests(path, table, columns)
        refuse_doubtful_columns(path, table, columns)
        for row in _spelling_headers(table, spellings):
            values = (column[row].as_py() for column in table.columns)
            cells = [value if isinstance(value, str) else "" for value in values]
            if again := header_again(cells, table.column_names):
                raise CatalogError(f"{path} {source.place(rows + row + 1)}: {again}")
        rows += table.num_rows
    return rows


def _spelling_headers(table: pa.Table, spellings: pa.Array) -> list[int]:
    """The rows of `table` with a text cell that may name a column (`header_spellings`)."""
    found = None
    for column in table.columns:
        if pa.types.is_string(column.type):
            named = pc.is_in(column, value_set=spellings)
            found = named if found is None else pc.or_(found, named)
    if found is None or not pc.any(found).as_py():
        return []
    return np.flatnonzero(pc.fill_null(found, False).to_numpy(zero_copy_only=False)).tolist()


def _refuse_non_text(path: Location, head: bytes) -> None:
    """CatalogError for a file that is no text at all (empty, another format, binary). A stray
    NUL below the header of a text file is left to the scans that name its line, row and
    column."""
    if not head:
        raise CatalogError(f"{path}: is empty; the first line must name the columns")
    if head.startswith(b"\x1f\x8b") and str(path).lower().endswith(".gz"):
        raise CatalogError(
            f"{path}: is compressed twice (a gzip file inside the gzip file); decompress it "
            "once (gunzip) so that one .gz is left"
        )
    first = _first_zip_entry(head) if head.startswith(_ZIP) else b""
    if first and not first.startswith(_OFFICE_ENTRIES):  # a file someone zipped: no workbook
        raise CatalogError(
            f"{path}: is a ZIP archive, not text (its first file is "
            f"{first.decode('utf-8', 'replace')!r}); unzip it and give the catalog inside"
        )
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            raise CatalogError(f"{path}: is {what}")
    nul = head.find(b"\0", 0, 8192)
    stray = 0 < head.find(b"\n") < nul and head.count(b"\0", 0, 8192) <= _STRAY_NULS
    if nul >= 0 and not stray:
        raise CatalogError(
            f"{path}: is not a text file (byte {nul} is NUL); {_SAVE_AS}, "
            "or pass --format if it is Parquet"
        )


def _first_zip_entry(head: bytes) -> bytes:
    """The name of a ZIP archive's first file: its local header gives the name's length at
    byte 26 and the name from byte 30."""
    return head[30 : 30 + int.from_bytes(head[26:28], "little")]


@dataclass(frozen=True, slots=True)
class _ByteScan:
    """What a pass over the raw bytes found; offsets are of the first occurrence."""

    not_utf8: int | None
    nul: int | None
    quotes: int
    quoted_breaks: bool  # a line break with an odd number of quotes before it

    @property
    def text_is_clean(self) -> bool:
        return self.not_utf8 is None and self.nul is None


def _scan_bytes(path: Location, quote: bytes | None) -> _ByteScan:
    """One pass over the raw bytes with numpy (about 0.1 s for 120 MB); text is decoded only
    in chunks that are not plain ASCII."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = bytearray(_CHUNK_BYTES)
    offset = quotes = 0
    not_utf8 = nul = None
    quoted_breaks = False
    with storage.open_read(path) as handle:
        while size := handle.readinto(buffer):  # type: ignore[attr-defined]
            data = np.frombuffer(buffer, np.uint8, size)
            if quote is not None:
                is_quote = data == ord(quote)
                here = int(np.count_nonzero(is_quote))
                if not quoted_breaks and (here or quotes % 2):
                    quoted_breaks = _quoted_break(data, is_quote, odd=quotes % 2 == 1)
                quotes += here
            if not data.all():
                nul = offset + int(np.argmin(data))
            pending = len(decoder.getstate()[0])
            if pending or int(data.max()) > 127:
                try:
                    decoder.decode(memoryview(buffer)[:size])
                except UnicodeDecodeError as exc:
                    not_utf8 = offset - pending + exc.start
            offset += size
            if nul is not None or not_utf8 is not None:
                break  # the line-by-line scan takes it from here
        else:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                not_utf8 = offset - 1
    return _ByteScan(not_utf8, nul, quotes, quoted_breaks)


def _quoted_break(data: np.ndarray, is_quote: np.ndarray, *, odd: bool) -> bool:
    """Whether a line break in `data` comes after an odd number of quotes, counted from the
    file's start (`odd`: the bytes before `data` held an odd number): a break inside quotes.
    Each line's parity of quotes, then their running parity at each break (no array of the
    quotes' positions: a quoted export holds tens of millions)."""
    breaks = np.flatnonzero((data == 10) | (data == 13))
    if not len(breaks):
        return False
    starts = np.zeros(len(breaks), np.int64)
    starts[1:] = breaks[:-1] + 1
    lines = np.bitwise_xor.reduceat(is_quote.view(np.uint8)[: breaks[-1] + 1], starts)
    return bool((np.bitwise_xor.accumulate(lines) ^ np.uint8(odd)).any())


# ---- CSV ----


def _check_csv(path: Location, options: CatalogOptions) -> int:
    with storage.open_read(path) as handle:
        sample = read_head(path, handle)
    encoding = text_encoding(sample)
    if encoding != "utf-8-sig":
        return _check_utf16_csv(path, sample, encoding, options)
    _refuse_non_text(path, sample)
    text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode(sample)
    layout = csv_layout(path, text, options)
    scan = _scan_bytes(path, b'"')
    if not scan.text_is_clean:
        _raise_found(_locate_csv(path, layout, text=True))
        offset = scan.not_utf8 if scan.not_utf8 is not None else scan.nul
        raise CatalogError(f"{path}: byte {offset} is not UTF-8 text; {_SAVE_AS}")
    ids, one_line = _planned_cells(path, layout, options)
    rows, failure, named = _parse_csv(path, layout)
    # Only the Python scan looks into nameless columns (pyarrow reads them under one name).
    # A tab-separated file with quotes is scanned too: exports of that kind do not quote, so
    # a quote in the text can open a "cell" that swallows the rows below it, evenly closed.
    # So is a file with a quoted cell that holds lines, which a stray quote makes as well.
    # So is one whose first column names a column below the header: a header line again,
    # perhaps with its columns in another order (`header_again`).
    tab_quotes = layout.delimiter == "\t" and scan.quotes > 0
    even = scan.quotes % 2 == 0 and not scan.quoted_breaks
    if failure is None and even and not layout.nameless and not tab_quotes and not named:
        return rows
    found = _locate_csv(path, layout, text=False, ids=ids, one_line=one_line)
    _raise_found(found)
    if failure is not None and not is_straddling(failure):
        raise CatalogError(f"{path}: cannot read it as CSV: {failure}") from failure
    return found.rows


def _check_utf16_csv(path: Location, sample: bytes, encoding: str, options: CatalogOptions) -> int:
    """UTF-16 text (Excel's "Unicode Text"): every row through Python's csv module, which
    decodes it strictly; no byte scan (half its bytes are NUL). Rare, so the slower way."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
    layout = csv_layout(path, text, options, encoding)
    ids, one_line = _planned_cells(path, layout, options)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with storage.open_read(path) as handle:
        while True:
            chunk = handle.read(_CHUNK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                line += decoder.decode(chunk, final=not chunk).count("\n")
            except UnicodeDecodeError as exc:
                before = exc.object[: exc.start].decode(exc.encoding, errors="replace")
                raise CatalogError(
                    f"{path} line {line + before.count(chr(10))}: byte "
                    f"{offset - pending + exc.start} is not UTF-16 text, though the file "
                    f"begins as UTF-16 does; {_SAVE_AS}"
                ) from None
            if not chunk:
                break
            offset += len(chunk)
    found = _locate_csv(path, layout, text=True, ids=ids, one_line=one_line)
    _raise_found(found)
    return found.rows


def _parse_csv(path: Location, layout: CsvLayout) -> tuple[int, Exception | None, bool]:
    """pyarrow's parse of every row, converting only the first column (as bytes); and whether
    a cell of that column may name a column (`header_spellings`)."""
    rows, named = 0, False
    spellings = header_spellings(layout.cells).cast(pa.binary())
    # A quote that never closes would have the read grow its blocks to the end of the file;
    # past `_LAST_BLOCK` the Python scan finds the line instead.
    batches = csv_batches(
        path,
        layout.delimiter,
        layout.cells,
        columns=layout.headers[:1],
        block_size=_FIRST_BLOCK,
        max_block=_LAST_BLOCK,
        skip_lines=layout.skip_lines,
        encoding=layout.encoding,
    )
    try:
        for batch in batches:
            rows += batch.num_rows
            named = named or pc.any(pc.is_in(batch.column(0), value_set=spellings)).as_py()
    except (pa.ArrowException, OSError) as exc:
        return rows, exc, named
    return rows, None, named


@dataclass(frozen=True, slots=True)
class _Found:
    """The Python scan's verdict: the problem as a message (None: none), the rows, and when it
    found several, each of them (the message heads their list)."""

    message: str | None
    rows: int
    problems: tuple[str, ...] = ()


def _raise_found(found: _Found) -> None:
    if found.message is not None:
        raise CatalogError(found.message, problems=found.problems)


def _where(path: Location, line: int, row: int) -> str:
    return f"{path} line {line} (the header)" if row == 0 else f"{path} line {line} (row {row})"


def _planned_cells(
    path: Location, layout: CsvLayout, options: CatalogOptions
) -> tuple[int | None, dict[int, str]]:
    """A CSV file's header planned (CatalogError for its problems, and for a doubtful column
    its first batch decides), then where its product ids and its one-line cells are."""
    columns = plan_columns(path, layout.headers, options)
    _first_batch_decides(path, options, columns)
    return _id_position(layout, columns), _one_line_positions(layout, columns)


def _id_position(layout: CsvLayout, columns: ColumnPlan) -> int | None:
    """Where the product's id (or URL) is among the file's cells: a line that reads as a row
    holds one there (`_takes_rows`)."""
    header = columns.canonical.get("product_id") or columns.canonical.get("product_url")
    return None if header is None else layout.cells.index(header)


def _one_line_positions(layout: CsvLayout, columns: ColumnPlan) -> dict[int, str]:
    """Where the cells that are one line by nature are (every request column but free text
    of several lines: a script, a description), with the column each feeds; the row key's
    column too."""
    one_line = {
        layout.cells.index(header): canonical
        for canonical, header in columns.canonical.items()
        if canonical not in MULTI_LINE_COLUMNS
    }
    one_line.setdefault(layout.cells.index(columns.key), "the row key")
    return one_line


def _locate_csv(
    path: Location,
    layout: CsvLayout,
    *,
    text: bool,
    ids: int | None = None,
    one_line: Mapping[int, str] | None = None,
) -> _Found:
    """Python's csv module, strict, over the file: the first bad line and row, or None.

    With `text`, each record is also searched for NUL and for bytes that are not UTF-8.
    `ids`: where the rows' product ids are (`_takes_rows`). `one_line`: the cells that hold
    no line break (`_one_line_positions`): a quoted one that runs on to a later line is a
    stray quote's, that took the rows below it in, however few the columns or the rows look.
    """
    allow_long_cells()
    delimiter, headers = layout.delimiter, layout.cells
    width, nameless = len(headers), layout.nameless
    spellings = set(header_spellings(headers).to_pylist())
    found = _Problems(path)
    row = 0
    line = layout.skip_lines
    # UTF-8 keeps a bad byte as a lone surrogate (reported by `_bad_text`, with its cell);
    # UTF-16 was decoded whole before (`_check_utf16_csv`).
    errors = "surrogateescape" if layout.encoding == "utf-8-sig" else "strict"
    with io.TextIOWrapper(
        storage.open_read(path), encoding=layout.encoding, errors=errors, newline=""
    ) as handle:
        for _ in range(layout.skip_lines):
            handle.readline()  # `sep=;`: a line of its own, never quoted
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        while True:
            first = line + 1
            try:
                record = next(reader)
            except StopIteration:
                return found.verdict(max(row - 1, 0))
            except csv.Error as exc:
                reached = layout.skip_lines + reader.line_num
                return found.last(_csv_error(path, first, row, reached, exc), row)
            line = layout.skip_lines + reader.line_num
            if not record:
                continue  # a blank line is not a row
            if text and (problem := _bad_text(record, headers)):
                return found.last(f"{_where(path, first, row)}: {problem}", row)
            if len(record) != width:
                problem = _width_problem(path, first, line, row, record, width, delimiter)
                if line > first:  # a quote's doing: the lines below may be read wrong
                    return found.last(problem, row)
                found.add(problem)
            elif delimiter == "\t" and line > first and (swallowed := _holds_rows(record, headers)):
                return found.last(
                    f"{_where(path, first, row)}: {swallowed} runs on to line {line}, "
                    f"holding tabs and line ends as rows do: {_TAB_QUOTE_HINT}",
                    row,
                )
            elif row and line > first and (broken := _broken_cell(record, headers, one_line or {})):
                header, meant = broken
                cell = record[headers.index(header)]
                if delimiter not in cell and line - first == 1:
                    # One break and no other row's cells in it: a cell written on two lines.
                    problem = (
                        f"column {header!r} holds a line break ({cell.strip()[:60]!r} runs on "
                        f"to line {line}), yet {meant} is one line: take the line break out"
                    )
                else:
                    problem = (
                        f"column {header!r} opens with a quote that runs on to line {line}, "
                        f"yet {meant} is one line: {_SWALLOW_HINT}; or take the line break "
                        "out of the cell if it is meant"
                    )
                return found.last(f"{_where(path, first, row)}: {problem}", row)
            elif line > first and (swallowed := _takes_rows(record, headers, delimiter, ids)):
                return found.last(
                    f"{_where(path, first, row)}: {swallowed} runs on to line {line}, "
                    f"taking in lines that read as rows: {_SWALLOW_HINT}",
                    row,
                )
            elif (
                row
                and not spellings.isdisjoint(record)
                and (again := header_again(record, headers))
            ):
                return found.last(f"{_where(path, first, row)}: {again}", row)
            elif row and (filled := [p for p in nameless if record[p].strip()]):
                where = _where(path, first, row)
                found.add(str(nameless_value(layout, where, filled[0], record[filled[0]])))
            row += 1


class _Problems:
    """What `_locate_csv` found, line by line. A problem within one line (a row's cell count, a
    value under no header) leaves the lines below readable, so the scan goes on and lists them
    all, as a catalog's cells are; one that is a quote's (or a byte's) doing ends the scan, as
    the lines after it may be read wrong."""

    def __init__(self, path: Location) -> None:
        self.path = path
        self.messages: list[str] = []

    def add(self, message: str) -> None:
        self.messages.append(message)

    def last(self, message: str, row: int) -> _Found:
        self.add(message)
        return self.verdict(row)

    def verdict(self, rows: int) -> _Found:
        if len(self.messages) < 2:
            return _Found(self.messages[0] if self.messages else None, rows)
        listed = self.messages[:_LISTED_PROBLEMS]
        if more := len(self.messages) - len(listed):
            listed.append(f"... and {more:,} more lines like these")
        heading = f"{self.path}: {len(self.messages):,} lines cannot be read as rows; fix each:"
        return _Found(heading, rows, tuple(listed))


def _broken_cell(
    record: list[str], headers: list[str], one_line: Mapping[int, str]
) -> tuple[str, str] | None:
    """The one-line column whose cell holds a line break, with what it feeds; or None."""
    for position, meant in sorted(one_line.items()):
        if _LINE_BREAK.search(record[position]):
            return headers[position], meant
    return None


def _holds_rows(record: list[str], headers: list[str]) -> str | None:
    """The column whose quoted cell holds both a tab and a line end, as a quote opened in the
    text of a tab-separated file takes the rows below into one cell; None for none."""
    for cell, header in zip(record, headers, strict=False):
        if "\t" in cell and ("\n" in cell or "\r" in cell):
            return f"column {header!r} opens with a quote that"
    return None


def _takes_rows(
    record: list[str], headers: list[str], delimiter: str, ids: int | None
) -> str | None:
    """The column whose quoted cell holds the file's rows, or None: a quote opened in the text
    of one row and closed by a quote in a later one (`12"`) takes the lines between into one
    cell, and the widths stay even. No quote is left inside such a cell to hide a delimiter,
    so its lines are cut into cells as they are: a line of a whole row's cells, or a first
    line that ends a row and a last that starts one (to this column), as the rows would be.
    Where the catalog's product ids are (`ids`), such a line holds one there (`_holds_id`);
    text of several lines (an address, a description) holds words.
    In a catalog of two columns, a script's own lines (`2024, our year`) could read as rows,
    so there a line's id must have the shape of the row's own (`_shaped_like`)."""
    width = len(headers)
    strict = width < 3
    if strict and ids is None:
        return None
    spaced = _spaced(headers)
    for column, (cell, header) in enumerate(zip(record, headers, strict=False)):
        lines = _LINE_BREAK.split(cell)
        if len(lines) < 2:
            continue
        cut = [line.split(delimiter) for line in lines]
        first, last = cut[0], cut[-1]  # the opening row from this column, the closing one to it
        known = None if ids is None else record[ids] if ids != column else first[0]
        whole_row = any(
            len(cells) == width
            and _holds_id(cells, ids, known, strict)
            and (spaced or not _spaced(cells))
            for cells in cut[1:-1]
        )
        if ids is None or ids <= column:
            starts = _holds_id(last, ids, known, strict)
        else:
            starts = _holds_id(first, ids - column, known, strict)
        cut_row = (
            starts
            and len(first) == width - column
            and len(last) == column + 1
            and (spaced or not (_spaced(first) or _spaced(last)))
        )
        if whole_row or cut_row:
            return f"column {header!r} opens with a quote that"
    return None


def _holds_id(cells: list[str], at: int | None, known: str | None, strict: bool = False) -> bool:
    """Whether `cells` hold a product id at `at` (None: anything goes), like the record's own
    (`known`): one word, as long give or take half, with digits if it has them; `strict`: of
    the same shape too (`_shaped_like`)."""
    if at is None or known is None:
        return True
    if not 0 <= at < len(cells):
        return False
    text, known = cells[at].strip(), known.strip()
    if _decimal_base64(known):  # a JoggAI id: a line holds one only if it is one too
        return _decimal_base64(text)
    return (
        len(text.split()) == 1
        and len(known) / 2 <= len(text) <= 2 * len(known)
        and any(map(str.isdigit, text)) == any(map(str.isdigit, known))
        and (not strict or _shaped_like(text, known))
    )


def _decimal_base64(text: str) -> bool:
    """Whether `text` is the unpadded base64 of a decimal number, as JoggAI's product ids are
    (`NTQ0MTkzNjg`: 54419368): a model list's `iPhone15Pro` or a variant's `BOT500ML` is not."""
    if not 2 <= len(text) <= 64 or not _BASE64_TEXT.fullmatch(text):
        return False
    try:
        decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        return False
    return decoded.isdigit()


def _spaced(cells: list[str]) -> bool:
    """Whether every cell after the first starts with a space, as a list in prose is written
    (`BOT500ML, Steel, 500 ml`), and a tool's row is not, unless its header is so too."""
    return len(cells) > 1 and all(cell[:1].isspace() for cell in cells[1:])


def _shaped_like(text: str, known: str) -> bool:
    """Whether `text` is made of the same kinds of character as the id `known` (digits, upper
    and lower case letters, others), within a quarter of its length."""

    def kinds(word: str) -> set[str]:
        return {
            "d" if c.isdigit() else "u" if c.isupper() else "l" if c.islower() else c for c in word
        }

    return abs(len(text) - len(known)) <= len(known) / 4 and kinds(text) == kinds(known)


def _csv_error(path: Location, first: int, row: int, reached: int, exc: csv.Error) -> str:
    where = _where(path, first, row)
    if "unexpected end of data" in str(exc):
        return (
            f"{where}: a cell opens with a quote that never closes (the file ends inside it); "
            f"{_QUOTE_HINT}"
        )
    if "expected after" in str(exc):
        runs = f" and runs on to line {reached}" if reached > first else ""
        return (
            f"{where}: a quoted cell starts here{runs}, then text follows its closing quote; "
            f"{_QUOTE_HINT}"
        )
    return f"{where}: cannot be read as CSV ({exc})"


def _width_problem(
    path: Location, first: int, last: int, row: int, record: list[str], width: int, delimiter: str
) -> str:
    where = _where(path, first, row)
    if "".join(record).strip() == "\x1a":
        return (
            f"{where}: holds only a DOS end-of-file mark (Ctrl-Z, byte 0x1A, which an editor "
            "does not show); delete it"
        )
    if not "".join(record).strip():
        return f"{where}: holds only spaces or tabs; delete the line (an empty line is no row)"
    problem = f"{where}: has {len(record)} cells where the header has {width}"
    if last > first:
        return f"{problem}; it runs on to line {last}, so a quote may be missing: {_QUOTE_HINT}"
    if len(record) > width:
        return f"{problem}; put a cell that holds {delimiter!r} between quotes"
    if len(record) == 1 and " " in record[0].strip():
        problem += (
            f" ({record[0].strip()[:60]!r}: a note or a report's footer, such as a "
            "confidentiality line? delete it; if it is a row)"
        )
    return (
        f"{problem}; every line needs a cell (empty or not) for each column (Excel leaves out "
        "the empty cells at the ends of rows, 16 rows at a time, when it saves CSV: give the "
        "workbook itself, .xlsx, which is read as it is)"
    )


def _bad_text(record: list[str], headers: list[str]) -> str | None:
    for cell, header in zip(record, headers, strict=False):
        if (match := _BAD_TEXT.search(cell)) is None:
            continue
        char = match.group()
        if char == "\0":
            return f"column {header!r} holds a NUL byte; the file is damaged or is not text"
        shown = cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:40]
        return (
            f"column {header!r}: byte 0x{ord(char) - 0xDC00:02X} (in {shown!r}) is not UTF-8; "
            f"the file is in another encoding (latin-1 or cp1252?): {_SAVE_AS}"
        )
    return None


# ---- JSON Lines ----


def _check_jsonl(path: Path, options: CatalogOptions) -> int:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    _refuse_non_text(path, head)
    scan = _scan_bytes(path, None)
    rows, failure = _parse_jsonl(path)
    if failure is not None or not scan.text_is_clean:
        found = _locate_jsonl(path)
        _raise_found(found)
        if not scan.text_is_clean:
            raise CatalogError(f"{path}: is not UTF-8 text; save it as UTF-8")
        rows = found.rows
    source = open_source(path, options)
    columns = plan_columns(path, source.headers, options, source.structs)
    _first_batch_decides(path, options, columns, nested=bool(source.structs))
    return rows


def _parse_jsonl(path: Path) -> tuple[int, Exception | None]:
    """pyarrow's parse of every line as a JSON object, keeping no field."""
    parse = pa_json.ParseOptions(explicit_schema=pa.schema([]), unexpected_field_behavior="ignore")
    block = _FIRST_BLOCK
    while True:
        try:
            table = pa_json.read_json(
                storage.arrow_name(path),
                read_options=pa_json.ReadOptions(block_size=block),
                parse_options=parse,
            )
        except (pa.ArrowException, OSError) as exc:
            if is_straddling(exc) and block < _LAST_BLOCK:
                block = _LAST_BLOCK
                continue
            return 0, exc
        return table.num_rows, None


def _locate_jsonl(path: Path) -> _Found:
    row = 0
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row += 1
            where = f"{path} line {line_number} (row {row})"
            try:
                record = json.loads(line)
            except UnicodeDecodeError as exc:
                byte = exc.object[exc.start]
                return _Found(
                    f"{where}: byte 0x{byte:02X} is not UTF-8; save the file as UTF-8", row
                )
            except ValueError as exc:
                return _Found(f"{where}: is not JSON ({exc}); fix the line", row)
            if not isinstance(record, dict):
                return _Found(f"{where}: is not a JSON object; write one object a line", row)
    return _Found(None, row)


# ---- Parquet ----


def _check_parquet(path: Path, options: CatalogOptions) -> int:
    try:
        pq.read_schema(path)  # its footer: a file cut short is told so here, with the way out
    except (pa.ArrowException, OSError) as exc:
        raise CatalogError(
            f"{path}: is not a Parquet file, or is cut short ({exc}); write it again, "
            "or pass --format if it is CSV or JSON Lines"
        ) from exc
    source = open_source(path, options)
    columns = plan_columns(path, source.headers, options, source.structs)
    _first_batch_decides(path, options, columns)
    # Every page decoded: one damaged in a later row group, or text that is not UTF-8, would
    # otherwise stop the run after the rows before it were paid for. A struct column is looked
    # into in every batch, for the same reason.
    nested, rows = bool(source.structs), 0
    for table in source.tables:
        if nested:
            refuse_nested_requests(path, table, columns)
        rows += table.num_rows
    return rows
