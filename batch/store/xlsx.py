"""The results file as an Excel workbook (`--results out.xlsx`), and reading one back.

Written with XlsxWriter in constant-memory mode: each row goes to disk as it is written, so a
million-row results file takes no more memory than a CSV one; it is also several times faster
than openpyxl's write-only mode, which cannot make hyperlinks. Every text cell is written as a
string (never a formula, a number or a link guessed from its text, so a cell that reads
`=HYPERLINK(...)` stays text and nothing runs when the file is opened). Numbers stay numbers,
so `row`, `code` and `duration` sort as numbers. `video_url` is a clickable link, within
Excel's limits (http(s) only, 2,079 characters, 65,530 links a sheet; past those a cell holds
the plain URL). The header is bold, frozen and carries a filter; column widths follow
the header and the first rows.

Read back with python-calamine (as spreadsheet catalogs are), every cell as text.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Final

import pandas as pd
import pyarrow as pa
import python_calamine as calamine

from batch import storage
from batch.catalog.excel import cell_text, check_extent
from batch.errors import ConfigError
from batch.storage import Location

log = logging.getLogger(__name__)

SHEET: Final = "results"
# Excel allows 65,530 links a sheet: spent on the videos alone, they cover 65,530 rows.
LINK_COLUMNS: Final = frozenset({"video_url"})
_MAX_LINKS: Final = 65_530
_MAX_URL: Final = 2_079
MAX_CELL: Final = 32_767  # Excel's most characters in a cell
MAX_ROWS: Final = 1_048_576  # a sheet's rows, the header's included
MAX_COLUMNS: Final = 16_384
_WIDTH_SAMPLE: Final = 200  # rows whose text sets the column widths
_MIN_WIDTH, _MAX_WIDTH = 8, 60
NamedSheet = tuple[str, list[list[Any]]]  # a sheet's name and its rows of cell values


def _exact_in_excel(value: int | float) -> bool:
    """Whether Excel (a double per number cell) keeps the value as it is: an integer past
    2**53, such as a 19-digit marketplace id, would lose its last digits, so it is written as
    text."""
    if isinstance(value, int):
        return abs(value) <= _EXACT_INTEGERS
    return math.isfinite(value)


_EXACT_INTEGERS = 2**53


def check_fits(path: object, rows: int, columns: int) -> None:
    """ConfigError, before anything is sent, for results a sheet cannot hold: XlsxWriter would
    leave out the rows and columns past Excel's limits, outcome columns included."""
    if rows + 1 > MAX_ROWS or columns > MAX_COLUMNS:
        raise ConfigError(
            f"--results {path}: a workbook's sheet holds {MAX_ROWS - 1:,} rows and "
            f"{MAX_COLUMNS:,} columns at most, and these results would have {rows:,} rows and "
            f"{columns:,} columns; write .csv or .parquet results"
        )


def sheets_beside(location: Location) -> list[NamedSheet]:
    """The sheets other than the results sheet of the workbook at `location` (a person's notes, a
    summary for a manager), each by name with its cells' values, for a rewrite to keep: the
    results sheet is written whole each time, and the others would be lost with it. None for
    a file that is not there, or not a workbook calamine reads."""
    if not storage.is_file(location):
        return []
    if isinstance(location, Path) and _one_sheet(location):
        return []  # as jogg-batch wrote it: no need to read it whole for each snapshot
    try:
        with storage.open_read(location) as handle:
            book = calamine.CalamineWorkbook.from_filelike(handle)
            results = results_sheet(book.sheet_names)
            return [
                (name, book.get_sheet_by_name(name).to_python())
                for name in book.sheet_names
                if name != results
            ]
    except (calamine.CalamineError, OSError, ValueError):
        return []


def results_sheet(names: list[str]) -> str:
    """Which sheet of a results workbook holds the results: the one named `results` (as
    Excel matches names, in any case), wherever a person moved it or put a cover sheet before
    it; else the first."""
    return next((name for name in names if name.casefold() == SHEET.casefold()), names[0])


def _one_sheet(path: Path) -> bool:
    """Whether a local workbook holds one sheet, from its zip directory alone (not a zip: no
    sheets to keep either)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return True
    return sum(name.startswith("xl/worksheets/sheet") for name in names) <= 1


def write_xlsx(
    path: Path,
    tables: Iterable[pa.Table],
    empty_columns: Iterable[str],
    beside: Sequence[NamedSheet] = (),
) -> None:
    """The results sheet: the header, then every table's rows in order (`empty_columns` when
    none); then the sheets `beside` it, as values (`sheets_beside`)."""
    import xlsxwriter  # only for .xlsx results: 35 ms of every start otherwise

    book = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        },
    )
    sheet = book.add_worksheet(SHEET)
    bold = book.add_format({"bold": True})
    links = cut = 0
    row = 0
    names: list[str] = []
    try:
        for table in tables:
            if not names:
                names = list(table.column_names)
                _header(sheet, names, bold, table)
            for values in zip(*(table.column(n).to_pylist() for n in names), strict=True):
                row += 1
                for column, (name, value) in enumerate(zip(names, values, strict=True)):
                    if value is None or value == "":
                        continue
                    if isinstance(value, bool):
                        sheet.write_boolean(row, column, value)
                    elif isinstance(value, int | float) and _exact_in_excel(value):
                        sheet.write_number(row, column, value)
                    elif name in LINK_COLUMNS and links < _MAX_LINKS and _linkable(value):
                        sheet.write_url(row, column, value, string=value)
                        links += 1
                    else:
                        text = str(value)
                        cut += len(text) > MAX_CELL
                        sheet.write_string(row, column, text[:MAX_CELL])
        if not names:
            names = list(empty_columns)
            _header(sheet, names, bold, None)
        sheet.autofilter(0, 0, row, len(names) - 1)
        for name, cells in beside:
            _write_values(book, name, cells)
    finally:
        book.close()
    if cut:
        log.warning(
            "%d cell(s) are longer than Excel's %d characters and were cut in the xlsx results "
            "file; `retry` refuses such rows: use .csv or .parquet results for this catalog",
            cut,
            MAX_CELL,
        )


def _write_values(book: Any, name: str, cells: list[list[Any]]) -> None:
    """A sheet of values as calamine read them: text stays text (never a formula), dates keep
    a date format. Its formatting and formulas are not kept, which the README says."""
    sheet = book.add_worksheet(name)
    when = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for row, values in enumerate(cells):
        for column, value in enumerate(values):
            if value is None or value == "":
                continue
            if isinstance(value, bool):
                sheet.write_boolean(row, column, value)
            elif isinstance(value, int | float) and math.isfinite(value):
                sheet.write_number(row, column, value)
            elif isinstance(value, dt.date | dt.time | dt.timedelta):
                sheet.write_datetime(row, column, value, when)
            else:
                sheet.write_string(row, column, str(value))


def _linkable(url: str) -> bool:
    return url.startswith(("https://", "http://")) and len(url.encode("utf-16-le")) // 2 <= _MAX_URL


def _header(sheet: Any, names: list[str], bold: Any, first: pa.Table | None) -> None:
    sample = first.slice(0, _WIDTH_SAMPLE) if first is not None else None
    for column, name in enumerate(names):
        texts = [name]
        if sample is not None:
            texts += [str(v) for v in sample.column(column).to_pylist() if v is not None]
        width = max(_MIN_WIDTH, min(_MAX_WIDTH, max(len(text) for text in texts) + 2))
        sheet.set_column(column, column, width)
        sheet.write_string(0, column, name, bold)
    sheet.freeze_panes(1, 0)


def read_xlsx(source: IO[bytes], location: Location) -> pd.DataFrame:
    """The results sheet of the workbook at `location` (read from `source`), every cell as
    text; its name in `attrs["sheet"]`."""
    book = calamine.CalamineWorkbook.from_object(source)
    sheet = results_sheet(book.sheet_names)
    check_extent(location, sheet)
    data = book.get_sheet_by_name(sheet)
    if data.start is None:
        frame = pd.DataFrame()
    else:
        rows = data.iter_rows()
        header = [cell_text(cell) for cell in next(rows)]
        body = [[cell_text(cell) for cell in cells] for cells in rows]
        frame = pd.DataFrame(body, columns=header, dtype=object)
    frame.attrs["sheet"] = sheet
    return frame
