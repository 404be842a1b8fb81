"""Spreadsheet catalogs (.xlsx, .xlsm, .xlsb, .xls, .ods), read with python-calamine.

calamine is a Rust reader of every spreadsheet format people send (Excel old and new,
LibreOffice), about ten times faster than openpyxl and the engine pandas itself offers; it
reads values, never runs formulas or macros.

Cells become the text a CSV export of the sheet would hold, so the rest of the catalog code
treats a workbook like a CSV file: whole numbers lose Excel's `.0` (an avatar id typed as 127
arrives as 127.0 and becomes "127"), other numbers take their shortest form, booleans become
"true"/"false", dates ISO 8601 ("2026-11-26", "2026-11-26 09:30:00"), empty cells "".

The first visible worksheet is read unless a sheet is named (the structural pass logs which,
with the workbook's other sheets, when a run or validate starts). Its header is the first row that
is not a banner: rows above it whose cells all start merged ranges (a title merged across the
sheet, a group heading over several columns) are skipped, and a header cell covered by a merge
from above (a header cell two rows tall) takes that merge's text. A column whose header cell is
empty is left out while no cell below it holds text, and refused at the first that does, as in
a CSV file. Every row below the header is a catalog row, blank ones included, as in a CSV
export, so data row N is always Excel row header + N and problems are reported where people
look: `sheet 'Products' row 7`.

Memory: calamine parses the chosen sheet whole, in Rust (a 100k-row sheet of 13 columns takes
about 120 MiB and 3 s); its rows become Python text `batch_rows` at a time, so the Python side
stays bounded by the batch, as for the other formats.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from typing import IO, Final

import pyarrow as pa
import python_calamine as calamine

from batch import payload, storage
from batch.catalog import normalize, ods
from batch.catalog.rows import nameless_fix
from batch.errors import CatalogError
from batch.storage import Location

EXTENSIONS: Final = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
# The workbook's sheet entries and relationships, and the sheet's cells, are read by pattern, not
# by an XML parser, so a hostile workbook's entities are never expanded. The patterns take what
# XML allows and writers use: an element's namespace prefix (`<x:c>`, as writers built on .NET's
# OpenXML SDK give it) and either quote around an attribute (`t='e'`).
_NS: Final = r"(?:[A-Za-z_][\w.-]*:)?"
_SHEET_ENTRY: Final = re.compile(
    rf"<{_NS}sheet\b(?=[^>]*\sname=(?:\"([^\"]*)\"|'([^']*)'))"
    rf"(?=[^>]*\s{_NS}id=(?:\"([^\"]*)\"|'([^']*)'))"
)
_RELATIONSHIP: Final = re.compile(
    rf"<{_NS}Relationship\b(?=[^>]*\sId=(?:\"([^\"]*)\"|'([^']*)'))"
    rf"(?=[^>]*\sTarget=(?:\"([^\"]*)\"|'([^']*)'))"
)
# A sheet's root element: the prefix of its name (`x:`, or none) is its cells' prefix too.
_ROOT: Final = re.compile(rb"<(?:([A-Za-z_][\w.-]*):)?worksheet\b")
# In a cell's opening tag: an error cell (`t="e"`), a formula's text (`t="str"`), its reference.
_ERROR_TYPE: Final = re.compile(rb"t=[\"']e[\"']")
_STRING_TYPE: Final = re.compile(rb"\st=[\"']str[\"']")
_BOOLEAN_TYPE: Final = re.compile(rb"\st=[\"']b[\"']")
_CELL_REF: Final = re.compile(rb"\sr=[\"']([A-Z]+)([0-9]+)[\"']")
_ROW_NUMBER: Final = re.compile(rb"\sr=[\"']([0-9]+)[\"']")
_HIDDEN: Final = re.compile(rb"\shidden=[\"'](?:1|true)[\"']")
_CELL_END: Final = re.compile(rb"</%sc>" % _NS.encode())
# A sheet's Excel tables (Insert > Table), through its relationships; a table's range and the
# totals rows at its foot ("Total Row" ticked).
_TABLE_PART: Final = re.compile(
    rf"<{_NS}Relationship\b(?=[^>]*\sType=[\"'][^\"']*/table[\"'])"
    rf"(?=[^>]*\sTarget=(?:\"([^\"]*)\"|'([^']*)'))"
)
_TABLE: Final = re.compile(rf"<{_NS}table\b[^>]*>")
_TABLE_FOOT: Final = re.compile(r"\sref=[\"'][A-Z]+[0-9]+:[A-Z]+([0-9]+)[\"']")
_TOTALS_ROWS: Final = re.compile(r"\stotalsRowCount=[\"']([0-9]+)[\"']")
# `<calcPr fullCalcOnLoad="1"/>`: the workbook asks to be calculated when opened, as programs
# that write formulas without calculating them (XlsxWriter, openpyxl) set it.
_CALCULATE_ON_LOAD: Final = re.compile(rf"<{_NS}calcPr\b[^>]*\sfullCalcOnLoad=[\"'](?:1|true)[\"']")
_SCAN_BYTES: Final = 4 << 20

Cell = int | float | str | bool | dt.date | dt.datetime | dt.time | dt.timedelta
_Merge = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Sheet:
    """An opened sheet: its headers, its rows as tables of text, where data row N is, and
    which sheet it is, for people (`reading`)."""

    headers: list[str]
    tables: Iterator[pa.Table]
    place: Callable[[int], str]
    reading: str
    caveat: str | None = None  # what the format keeps from being checked, for a warning


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: the name Excel shows above a column."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_text(value: Cell) -> str:
    """A cell as a CSV export would write it: 127.0 -> "127", TRUE -> "true", a date in ISO."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Past 2**53 a float has lost the number's last digits: written out whole it would show
        # digits nobody typed (an id of 19 digits), so it stays a float's text (`1e+20`,
        # `9007199254740992.0`), which an id column refuses (`payload.float_digits_lost`).
        exact = value.is_integer() and abs(value) < payload.FLOAT_EXACT
        return str(int(value)) if exact else repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def open_sheet(location: Location, sheet: str | None, batch_rows: int) -> Sheet:
    """Open the workbook, find the sheet and its header now; rows are read as tables are taken."""
    try:
        with storage.open_read(location) as handle:
            workbook = calamine.CalamineWorkbook.from_filelike(handle)
            chosen = _choose_sheet(location, workbook, sheet)
            reading = _reading(workbook, chosen, given=sheet is not None)
            check_extent(location, chosen)
            data = workbook.get_sheet_by_name(chosen)  # the whole sheet, parsed in Rust
        merges = data.merged_cell_ranges or []
    except calamine.PasswordError as exc:
        raise CatalogError(
            f"{location}: is protected by a password; save a copy without one"
        ) from exc
    except storage.store_errors(calamine.CalamineError) as exc:
        if _encrypted(location):
            raise CatalogError(
                f"{location}: is protected by a password; save a copy without one"
            ) from exc
        if _cut_short(location):
            raise CatalogError(
                f"{location}: is cut short (a workbook's ZIP without its end: still being "
                "written, or copied in part?); save or copy it again whole"
            ) from exc
        raise CatalogError(
            f"{location}: cannot read it as a spreadsheet ({exc}); check the file or pass --format"
        ) from exc
    start = data.start
    if start is None:
        others = [name for name in workbook.sheet_names if name != chosen]
        pick = (
            f" (the workbook's other sheets: {', '.join(map(repr, others))}; pick one with --sheet)"
            if others and sheet is None
            else ""
        )
        raise CatalogError(f"{location}: sheet {chosen!r} is empty; it needs a header row{pick}")
    kind = _package(location)
    marks = _marked_cells(location, chosen, start[1], kind)
    merges = [*merges, *marks.merges]
    rows = enumerate(data.iter_rows())  # python-calamine yields rows from Excel row 1
    header_index, headers = _header(location, chosen, rows, merges, start[1])
    place = _Place(chosen, header_index + 1)
    named = [header for header in headers if header.strip()]
    nameless = _Nameless(location, place, headers)
    hidden = _Hidden(location, place, header_index, marks.hidden)
    spans = _merged_down(merges, header_index, start[1])
    if marks.totals:
        told = ", ".join(str(index + 1) for index in sorted(marks.totals))
        reading += f"; row{'s' * (len(marks.totals) > 1)} {told}: a table's totals, read as blank"
    checks = _Checks(nameless, hidden, marks.totals)
    tables = _tables(rows, headers, batch_rows, marks.errors, checks, spans)
    return Sheet(named, tables, place, reading, _UNCHECKED if kind is None else None)


# Said once, as the catalog is first read: what an .xls or .xlsb sheet may hide.
_UNCHECKED: Final = (
    "in an .xls or .xlsb workbook, error cells (#N/A), formulas never calculated and hidden rows "
    "cannot be found (calamine reads them as empty cells and as rows to send); save it as .xlsx "
    "to have them checked"
)


# An OOXML workbook encrypted with a password is not a ZIP but an OLE2 compound file holding
# these streams (Office's "Encrypt with Password"); calamine cannot tell its format.
_OLE2: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")


def _encrypted(location: Location) -> bool:
    """An OOXML workbook saved with a password (`_ENCRYPTED_PACKAGE`), or an OpenDocument one:
    a ZIP whose manifest gives its parts' encryption."""
    try:
        with storage.open_read(location) as handle:
            head = handle.read(1 << 16)
            if head.startswith(_OLE2):
                return _ENCRYPTED_PACKAGE in head
            with zipfile.ZipFile(handle) as package:
                return b"encryption-data" in package.read("META-INF/manifest.xml")
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return False


def _cut_short(location: Location) -> bool:
    """Whether a workbook opens as a ZIP archive does (xlsx, ods), yet has no end: the
    directory a ZIP keeps last is not there."""
    try:
        with storage.open_read(location) as handle:
            return handle.read(4) == b"PK\x03\x04" and not zipfile.is_zipfile(handle)
    except OSError:
        return False


def _package(location: Location) -> str | None:
    """What a workbook is inside, whatever its name says: "ooxml" (xlsx, xlsm: the XML whose
    error cells and hidden rows `_marked_cells` finds), "ods", else None (xls, xlsb). An xlsx
    saved under an .xls name (as web apps and people rename them, and calamine reads by its
    bytes) was read without those checks."""
    try:
        with storage.open_read(location) as handle, zipfile.ZipFile(handle) as package:
            names = set(package.namelist())
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    if "xl/workbook.xml" in names:
        return "ooxml"
    return "ods" if "content.xml" in names else None


@dataclass(frozen=True, slots=True)
class _Nameless:
    """The header's nameless columns: left out while every cell below is empty (a column
    Excel counts as used for its formatting), refused at the first cell that holds text."""

    location: Location
    place: Callable[[int], str]
    headers: list[str]

    def check(self, columns: list[list[str]], first_row: int) -> None:
        for position, header in enumerate(self.headers):
            if header.strip():
                continue
            for offset, text in enumerate(columns[position]):
                if text.strip():
                    raise CatalogError(
                        f"{self.location} {self.place(first_row + offset)}: column "
                        f"{column_letter(position)} has no name in the header, yet holds "
                        f"{text[:40]!r}; {nameless_fix(position, text)}"
                    )


@dataclass(frozen=True, slots=True)
class _Hidden:
    """The rows an xlsx/xlsm/ods sheet hides (0 = Excel row 1): by a filter, grouped and
    collapsed, or hidden by hand. calamine reads them as any other row, so a row the person
    filtered out would be paid for: one below the header that holds anything is refused."""

    location: Location
    place: Callable[[int], str]
    header_index: int
    rows: frozenset[int]

    def check(self, index: int, columns: list[list[str]]) -> None:
        """Refuses row `index`, the last of `columns`, if hidden and not blank."""
        if index not in self.rows or not any(column[-1].strip() for column in columns):
            return
        below = sum(1 for row in self.rows if row > self.header_index)
        others = f", one of {below} rows the sheet hides" if below > 1 else ""
        raise CatalogError(
            f"{self.location} {self.place(index - self.header_index)}: is hidden in the "
            f"workbook (by a filter, or by hand){others}, and hidden rows would be sent as any "
            "other; delete the rows not to send, or show them all (clear the filter, unhide "
            "the rows) to send them"
        )


@dataclass(frozen=True, slots=True)
class _Checks:
    """What each row of a sheet is checked for as it is read."""

    nameless: _Nameless
    hidden: _Hidden
    totals: frozenset[int]  # the totals rows of the sheet's Excel tables, by index: blank


# Row index (0 = Excel row 1) -> column index in calamine's rows -> the text the cell is read as:
# the error it holds, or `normalize.UNCALCULATED`.
_Errors = dict[int, dict[int, str]]


@dataclass(frozen=True, slots=True)
class _Marks:
    """What the XML of an xlsx/xlsm or .ods sheet says of its cells and rows (`_marked_cells`)."""

    errors: _Errors
    hidden: frozenset[int] = frozenset()
    totals: frozenset[int] = frozenset()
    merges: tuple[_Merge, ...] = ()  # an .ods sheet's, which calamine does not give


def _marked_cells(location: Location, sheet: str, first_column: int, kind: str | None) -> _Marks:
    """The cells of an xlsx/xlsm sheet that hold a formula error (`#N/A`), with the error, and
    those whose formula was never calculated, as `normalize.UNCALCULATED`; the rows it hides
    (`_Hidden`), by index; and the totals rows of its Excel tables (`_totals_rows`).

    python-calamine reads an error cell as an empty one, and an empty avatar_id means the
    default avatar: a failed VLOOKUP would be paid for as the wrong video. A formula that a
    program wrote without calculating it has no value (openpyxl), or a placeholder 0 in a
    workbook set to be calculated when opened (XlsxWriter); read as empty or 0, its row would
    be paid for with defaults. So the sheet's XML is searched for such cells, streamed once
    (a 100k-row sheet: a fraction of calamine's parse). A cell without its `r` position (some
    programs leave it out) is found where calamine puts it (`_Cursor`). An .ods sheet is
    searched by `ods.sheet_marks` (`kind`, what `_package` found); .xls and .xlsb cannot be.
    """
    if kind == "ods":
        marks = ods.sheet_marks(location, sheet)
        return _Marks(
            {
                row: {column - first_column: text for column, text in cells.items()}
                for row, cells in marks.errors.items()
            },
            marks.hidden,
            merges=tuple(marks.merges),
        )
    if kind != "ooxml":
        return _Marks({})
    errors: _Errors = {}
    try:
        with (
            storage.open_read(location) as handle,
            zipfile.ZipFile(handle) as package,
        ):
            workbook = package.read("xl/workbook.xml").decode()
            recalculate = _CALCULATE_ON_LOAD.search(workbook) is not None
            tags: _Tags | None = None
            cursor = _Cursor()
            part = _sheet_part(package, workbook, sheet)
            with package.open(part) as xml:
                for cells in _whole_cells(xml):
                    tags = tags or _tags(cells)  # the first chunk holds the root element
                    placed = cursor.chunk(tags, cells)
                    _add_errors(errors, tags, recalculate, cells, _Columns(first_column, placed))
            totals = _totals_rows(package, part)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CatalogError(
            f"{location}: cannot find sheet {sheet!r} in the workbook ({exc}); "
            "save it again from Excel"
        ) from exc
    return _Marks(errors, frozenset(cursor.hidden), totals)


# calamine holds a sheet as one cell for each of its rows times its columns (32 bytes each):
# a value far from the table (`XFD1048576`) asked for 512 GiB and aborted the process.
_MOST_CELLS: Final = 64 << 20
_DIMENSION: Final = re.compile(rb"<(?:\w+:)?dimension\s+ref=[\"']([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?")


def check_extent(location: Location, sheet: str) -> None:
    """CatalogError when the sheet reaches more cells than calamine can be given, naming its
    far corner: by its `<dimension>` (which Excel and most writers put first), and by its cells
    where a streaming writer left the dimension out or wrote one too small (calamine sizes the
    sheet by the cells it finds); or when its XML expands as a gzip catalog may not
    (`storage`'s bound: a ZIP bomb, which calamine and the scan for error cells would read
    whole). Any file that is no xlsx/xlsm inside is left to calamine."""
    try:
        with storage.open_read(location) as handle, zipfile.ZipFile(handle) as package:
            part = _sheet_part(package, package.read("xl/workbook.xml").decode(), sheet)
            storage.refuse_zip_bomb(location, package.getinfo(part), f"sheet {sheet!r}")
            with package.open(part) as xml:
                head = xml.read(4096)
                found = _DIMENSION.search(head)
                if found is not None and found.group(3) is not None:
                    _check_corner(location, sheet, *(part.decode() for part in found.groups()))
                corner = _far_corner(head, xml)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return  # calamine says what is wrong with the file
    if corner is not None:
        _check_corner(location, sheet, "A", "1", *corner)


def _check_corner(
    location: Location, sheet: str, first_column: str, first_row: str, column: str, row: str
) -> None:
    columns = _column_index(column) - _column_index(first_column) + 1
    rows = int(row) - int(first_row) + 1
    if columns * rows > _MOST_CELLS:
        raise CatalogError(
            f"{location}: sheet {sheet!r} reaches cell {column}{row} ({rows:,} rows "
            f"by {columns:,} columns): a value far from the table, too many cells to read. In "
            "the spreadsheet, Ctrl+End goes to it: delete the rows and columns past the table, "
            "and save"
        )


# A cell from column DA on (the 105th): wider than any catalog's table, so such refs are few
# and finding them all costs little beside the sheet's decompression. (Without the leading
# `\s`, which made the search five times slower: it is checked on each of the few found.)
_WIDE_REF: Final = re.compile(rb"r=[\"']([A-Z]{3}|[D-Z][A-Z])[0-9]")
_ANY_REF: Final = re.compile(rb"\sr=[\"'][A-Z]*([0-9]+)[\"']")
_LONGEST_REF: Final = 24  # ` r="XFD1048576"`, with room to spare
_LAST_ROWS_BYTES: Final = 64 << 10


def _far_corner(head: bytes, xml: IO[bytes]) -> tuple[str, str] | None:
    """The sheet's widest column past DA and its last row (rows come in order, so the last
    row numbered is in the XML's last bytes); None for a sheet within DA. `head`: what was read
    of `xml` already."""
    widest, previous, text = -1, b"", head
    while True:
        for ref in _WIDE_REF.finditer(text):
            if text[ref.start() - 1 : ref.start()].isspace():
                widest = max(widest, _column_index(ref.group(1).decode()))
        chunk = xml.read(_SCAN_BYTES)
        if not chunk:
            break
        previous, text = text, text[-_LONGEST_REF:] + chunk
    if widest < 0:
        return None
    rows = [int(row) for row in _ANY_REF.findall((previous + text)[-_LAST_ROWS_BYTES:])]
    return column_letter(widest), str(max(rows, default=1))


def hidden_rows(location: Location, sheet: str) -> list[int]:
    """The Excel numbers of the rows `sheet` hides (by a filter, or by hand); none for a
    workbook other than xlsx/xlsm."""
    marks = _marked_cells(location, sheet, 0, _package(location))
    return sorted(index + 1 for index in marks.hidden)


def _totals_rows(package: zipfile.ZipFile, part: str) -> frozenset[int]:
    """The indexes of the totals rows at the foot of the sheet's Excel tables. Excel fills them
    with a label (`Total`, under the first column: the product id's, often) and subtotals (a
    count under the name, a sum under the length): as a row, a POST that JoggAI refuses, every
    night. So they are read as blank rows, and the line naming the sheet read says so."""
    folder, name = posixpath.split(part)
    try:
        rels = package.read(posixpath.join(folder, "_rels", f"{name}.rels")).decode()
    except KeyError:
        return frozenset()  # a sheet with no relationships has no tables
    totals: set[int] = set()
    for target, target2 in _TABLE_PART.findall(rels):
        target = unescape(target + target2)
        table = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
        opening = _TABLE.search(package.read(posixpath.normpath(table)).decode())
        foot = None if opening is None else _TABLE_FOOT.search(opening.group())
        count = None if opening is None else _TOTALS_ROWS.search(opening.group())
        if foot is not None and count is not None:
            last = int(foot.group(1)) - 1  # Excel row N is index N - 1
            totals.update(range(last - int(count.group(1)) + 1, last + 1))
    return frozenset(totals)


def _hidden_rows(tags: _Tags, xml: bytes) -> Iterator[int]:
    """The indexes of the rows in `xml` whose opening tag hides them (`hidden="1"`), every
    row there having its `r`."""
    start = 0 if b"hidden=" in xml else len(xml)  # most sheets hide none: one search
    while (at := xml.find(tags.row, start)) >= 0:
        start = at + len(tags.row)
        attributes = xml[start : xml.find(b">", start)]
        hidden = attributes[:1].isspace() and _HIDDEN.search(attributes)
        if hidden and (number := _ROW_NUMBER.search(attributes)) is not None:
            yield int(number.group(1)) - 1


@dataclass(frozen=True, slots=True)
class _Tags:
    """A sheet's cell patterns, with its elements' prefix written out: a pattern that starts
    with a literal (`<f`) is searched for many times faster than one that starts with `<`."""

    opening: re.Pattern[bytes]  # a cell's opening tag, then any space before its first child
    formula: re.Pattern[bytes]  # a formula element
    no_value: re.Pattern[bytes]  # a formula with no value after it (`<v/>`, or none)
    value: re.Pattern[bytes]
    unplaced: re.Pattern[bytes]  # a row or cell opening tag without its `r` position
    layout: re.Pattern[bytes]  # a row's or cell's opening tag (its name, attributes), `</row>`
    cell: bytes  # `<c`, `<x:c`
    row: bytes  # `<row`, `<x:row`


def _tags(head: bytes) -> _Tags:
    root = _ROOT.search(head)
    name = root.group(1) + b":" if root and root.group(1) else b""
    prefix = re.escape(name)
    return _Tags(
        re.compile(rb"<%sc\b([^>]*)>\s*" % prefix),
        re.compile(rb"<%sf\b" % prefix),
        re.compile(
            rb"<%sf\b(?:[^>]*/>|[^>]*>[^<]*</%sf>)\s*(</%sc>|<%sv\s*/>|<%sv>\s*</%sv>)"
            % (prefix, prefix, prefix, prefix, prefix, prefix)
        ),
        re.compile(rb"<%sv>([^<]*)</%sv>" % (prefix, prefix)),
        re.compile(rb"<%s(?:c|row)\b(?![^>]*\sr=)" % prefix),
        re.compile(rb"<%s(c|row)\b([^>]*)>|</%srow>" % (prefix, prefix)),
        b"<" + name + b"c",
        b"<" + name + b"row",
    )


@dataclass(slots=True)
class _Cursor:
    """Where a cell without an `r` attribute is, as calamine places it (some programs that
    write workbooks leave positions out): a row without `r` comes after the one before (the
    first is row 1), a cell without `r` after the cell before it in its row (the first in
    column A). Carried from one chunk of the sheet's XML to the next."""

    row: int = 0  # the current row's index (0 = Excel row 1)
    column: int = 0  # the index of the next cell's column, absolute (0 = column A)
    hidden: set[int] = field(default_factory=set)  # the indexes of the rows hidden so far

    def walk(self, tags: _Tags, xml: bytes, start: int = 0) -> dict[int, tuple[int, int]]:
        """Follows the rows and cells of `xml` from `start`; returns the cells without `r`,
        by the offset of their opening tag, with their (row index, column index)."""
        placed: dict[int, tuple[int, int]] = {}
        for tag in tags.layout.finditer(xml, start):
            name, attributes = tag.group(1), tag.group(2)
            if name is None:  # `</row>`
                self.row, self.column = self.row + 1, 0
            elif name == b"row":
                if (number := _ROW_NUMBER.search(attributes)) is not None:
                    self.row = int(number.group(1)) - 1
                if _HIDDEN.search(attributes):
                    self.hidden.add(self.row)
                if attributes.endswith(b"/"):  # `<row r="4"/>`: a row with no cells
                    self.row, self.column = self.row + 1, 0
            else:
                if (ref := _CELL_REF.search(attributes)) is not None:
                    self.column = _column_index(ref.group(1).decode())
                else:
                    placed[tag.start()] = (self.row, self.column)
                self.column += 1
        return placed

    def chunk(self, tags: _Tags, xml: bytes) -> dict[int, tuple[int, int]]:
        """`walk` over one chunk; when every row and cell in it has its `r` (what Excel and
        most writers give), only from its last row on, which is all the next chunk needs."""
        if not _all_placed(tags, xml):
            return self.walk(tags, xml)
        self.hidden.update(_hidden_rows(tags, xml))
        return self.walk(tags, xml, max(_last_tag(xml, tags.row), 0))


def _all_placed(tags: _Tags, xml: bytes) -> bool:
    """Whether every row and cell opening tag in `xml` has its `r`. Counted first, as writers
    put `r` first (`<c r="A1"`): two counts take a few ms a chunk where the pattern takes 70.
    (`<c` also counts `<col` and `<cfRule`, outside the rows: the pattern decides there.)"""
    for tag in (tags.cell, tags.row):
        if xml.count(tag) != xml.count(tag + b" r="):
            return tags.unplaced.search(xml) is None
    return True


def _last_tag(xml: bytes, opening: bytes) -> int:
    """Where the last `opening` tag (`<row`, not `<rowBreaks`) starts in `xml`, or -1."""
    end = len(xml)
    while (at := xml.rfind(opening, 0, end)) >= 0:
        after = xml[at + len(opening) : at + len(opening) + 1]
        if after.isspace() or after in (b">", b"/"):
            return at
        end = at
    return -1


def _whole_cells(xml: IO[bytes]) -> Iterator[bytes]:
    """The sheet's XML in chunks that end after a cell's `</c>`: no cell is cut in two, and a
    big sheet is never held whole (its XML is several times the size of the workbook)."""
    rest = bytearray()
    while chunk := xml.read(_SCAN_BYTES):
        # Only the new bytes (and an end tag they finish) are searched: what came before holds
        # no cell's end, or it would have been yielded. Searching it all again made a sheet
        # of megabytes without one (a ZIP bomb's padding) take minutes.
        since = max(0, len(rest) - _LONGEST_END_TAG)
        rest += chunk
        cut = _after_last_cell(rest, since)
        if cut > 0:
            yield bytes(rest[:cut])
            del rest[:cut]
    yield bytes(rest)


# `</c>` with a namespace prefix, as some writers give one (`</x:c>`): room for a long one.
_LONGEST_END_TAG: Final = 64


def _after_last_cell(xml: bytes | bytearray, since: int = 0) -> int:
    """Where the last cell's end tag (`</c>`, `</x:c>`) ends in `xml` (one ending after
    `since`), or 0 if it has none."""
    end = len(xml)
    while (at := xml.rfind(b"c>", since, end)) >= 0:
        start = xml.rfind(b"<", max(0, since - _LONGEST_END_TAG), at)
        if start >= 0 and _CELL_END.fullmatch(xml, start, at + 2):
            return at + 2
        end = at + 1
    return 0


@dataclass(frozen=True, slots=True)
class _Columns:
    """How a cell's position is found: its `r`, else where `_Cursor` placed it; and the sheet's
    first column (calamine's rows start there)."""

    first: int
    placed: dict[int, tuple[int, int]]


def _add_errors(
    errors: _Errors, tags: _Tags, recalculate: bool, xml: bytes, columns: _Columns
) -> None:
    """Each formula cell never calculated, then each error cell (an error stands, even in a
    formula cell): the whole chunk is searched for one literal-led pattern at a time."""
    for found in (tags.formula if recalculate else tags.no_value).finditer(xml):
        opening = _opening(tags, xml, found.start())
        if opening is None or opening.end() != found.start():
            continue  # a formula is a cell's first child
        if recalculate and (
            _BOOLEAN_TYPE.search(opening[1]) or _given_value(tags, xml, found.end())
        ):
            continue  # XlsxWriter types a formula boolean only when it is given its value
        empty_value = not recalculate and not found.group(1).startswith(b"</")
        if empty_value and _STRING_TYPE.search(opening[1]):
            continue  # `t="str"` and `<v></v>`: a formula calculated to empty text
        _put(errors, opening, normalize.UNCALCULATED, columns)
    for found in _ERROR_TYPE.finditer(xml):
        opening = _opening(tags, xml, found.start())
        if (
            opening is None
            or opening.end(1) < found.end()
            or not xml[found.start() - 1 : found.start()].isspace()
        ):
            continue  # `t="e"` outside a cell's opening tag
        if opening[1].endswith(b"/"):
            continue  # an empty cell (`<c r="B2" t="e"/>`): the next cell's value is not its
        end = _CELL_END.search(xml, opening.end())
        value = tags.value.search(xml, opening.end(), end.start() if end else len(xml))
        if value is not None:
            _put(errors, opening, value.group(1).decode(), columns)


def _given_value(tags: _Tags, xml: bytes, formula: int) -> bool:
    """Whether a formula cell of a workbook set to calculate on load holds a value its writer
    was given: XlsxWriter writes 0 for a formula unless told the value, so only 0 (or nothing)
    is taken for never calculated."""
    end = _CELL_END.search(xml, formula)
    value = tags.value.search(xml, formula, end.start() if end else len(xml))
    return value is not None and value.group(1).strip() not in (b"", b"0")


def _opening(tags: _Tags, xml: bytes, inside: int) -> re.Match[bytes] | None:
    """The cell opening tag that holds `inside`, or is the last before it."""
    return tags.opening.match(xml, xml.rfind(b"<", 0, inside))


def _put(errors: _Errors, opening: re.Match[bytes], text: str, columns: _Columns) -> None:
    ref = _CELL_REF.search(opening[1])
    if ref is not None:
        row, column = int(ref.group(2)) - 1, _column_index(ref.group(1).decode())
    else:
        row, column = columns.placed[opening.start()]
    errors.setdefault(row, {})[column - columns.first] = text


def _sheet_part(package: zipfile.ZipFile, workbook: str, sheet: str) -> str:
    """The zip member holding the named sheet, through the workbook's relationships."""
    rels = package.read("xl/_rels/workbook.xml.rels").decode()
    targets = {
        rid + rid2: target + target2 for rid, rid2, target, target2 in _RELATIONSHIP.findall(rels)
    }
    for name, name2, rel, rel2 in _SHEET_ENTRY.findall(workbook):
        if unescape(name + name2) == sheet:
            target = unescape(targets[rel + rel2])
            return target.lstrip("/") if target.startswith("/") else posixpath.join("xl", target)
    raise KeyError(sheet)


def _column_index(letters: str) -> int:
    """A -> 0, Z -> 25, AA -> 26: the inverse of `column_letter`."""
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


@dataclass(frozen=True, slots=True)
class _Place:
    sheet: str
    header_row: int

    def __call__(self, number: int) -> str:
        return f"sheet {self.sheet!r} row {self.header_row + number}"


def _visible_worksheets(workbook: calamine.CalamineWorkbook) -> list[str]:
    return [
        meta.name
        for meta in workbook.sheets_metadata
        if meta.visible == calamine.SheetVisibleEnum.Visible
        and meta.typ == calamine.SheetTypeEnum.WorkSheet
    ]


def _reading(workbook: calamine.CalamineWorkbook, chosen: str, *, given: bool) -> str:
    """Which sheet is read, and why, for the line a run starts with: a workbook's rows may be
    on a sheet other than the one read (the one Excel opens on is not it, unless first)."""
    others = [name for name in _visible_worksheets(workbook) if name != chosen]
    if given:
        return f"sheet {chosen!r}, as --sheet (or catalog.sheet) names it"
    if not others:
        return f"sheet {chosen!r}"
    return (
        f"sheet {chosen!r}, the first visible one; the workbook also has "
        + ", ".join(repr(name) for name in others)
        + " (choose one with --sheet)"
    )


def _choose_sheet(
    location: Location, workbook: calamine.CalamineWorkbook, wanted: str | None
) -> str:
    names = workbook.sheet_names
    if wanted is None:
        visible = _visible_worksheets(workbook)
        if not (visible or names):
            raise CatalogError(f"{location}: has no sheets")
        return (visible or names)[0]
    if wanted in names:
        return wanted
    folded = [name for name in names if name.strip().lower() == wanted.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    raise CatalogError(
        f"{location}: has no sheet {wanted!r}; its sheets are "
        + ", ".join(repr(name) for name in names)
    )


def _header(
    location: Location,
    sheet: str,
    rows: Iterator[tuple[int, list[Cell]]],
    merges: list[_Merge],
    first_column: int,
) -> tuple[int, list[str]]:
    """The header row's index (0 = Excel row 1) and names, skipping banners above it."""
    tops = {top: bottom for top, bottom in merges}
    above: dict[_Merge, str] = {}  # merges started in banner rows, with their text
    for index, cells in rows:
        texts = [cell_text(cell) for cell in cells]
        filled = [column for column, text in enumerate(texts) if text.strip()]
        # A row of nothing but cells merged down from the row above is the header's lower half
        # (every header cell two rows tall): the header, named from above.
        down = any(r0 < index <= r1 for ((r0, _), (r1, _)) in above)
        if not filled and not down:
            continue
        starts = [(index, first_column + column) in tops for column in filled]
        if filled and all(starts):
            for column in filled:
                top = (index, first_column + column)
                above[(top, tops[top])] = texts[column].strip()
            continue
        headers = []
        for column, text in enumerate(texts):
            absolute = first_column + column
            if not text.strip():
                text = next(
                    (
                        value
                        for ((r0, c0), (r1, c1)), value in above.items()
                        if r0 < index <= r1 and c0 <= absolute <= c1
                    ),
                    "",  # a nameless column (`_Nameless`)
                )
            headers.append(text)
        return index, headers
    if above:
        raise CatalogError(
            f"{location}: sheet {sheet!r} holds only merged titles; "
            "its first ordinary row must name the columns"
        )
    raise CatalogError(f"{location}: sheet {sheet!r} is empty; it needs a header row")


@dataclass(frozen=True, slots=True)
class _Spans:
    """The merges below the header that span rows: Excel shows a merge's value on every row it
    covers, so each of them has it (in the merge's first column)."""

    tops: frozenset[tuple[int, int]]  # (row index, column position) of each merge's top cell
    below: dict[int, list[tuple[int, int]]]  # row index -> (position, its merge's top row)
    # row index -> the positions (first, last) of the widest merge across columns within that
    # row (`_widest`): with nothing beside it, a group's heading between the rows (`Bottles`).
    across: dict[int, tuple[int, int]]


def _merged_down(merges: list[_Merge], header_index: int, first_column: int) -> _Spans:
    tops, below = set(), dict[int, list[tuple[int, int]]]()
    pieces: dict[int, list[tuple[int, int]]] = {}  # row -> the merges across columns in it
    for (top, left), (bottom, right) in merges:
        if top <= header_index:
            continue
        if bottom > top:
            tops.add((top, left - first_column))
            for row in range(top + 1, bottom + 1):
                below.setdefault(row, []).append((left - first_column, top))
        if right > left:  # on each row it covers: a heading two rows tall is one on each
            for row in range(top, bottom + 1):
                pieces.setdefault(row, []).append((left - first_column, right - first_column))
    return _Spans(frozenset(tops), below, {row: _widest(spans) for row, spans in pieces.items()})


def _widest(spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The widest run of merges side by side in a row (a heading merged in two pieces, `Bottles`
    over A:B beside an empty C:D, is one); merges with a column between them are not joined."""
    runs: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if runs and first <= runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], max(runs[-1][1], last))
        else:
            runs.append((first, last))
    return max(runs, key=lambda run: run[1] - run[0])


def _heading(columns: list[list[str]], headers: list[str], span: tuple[int, int]) -> bool:
    """Whether the row just read holds nothing but a merge across `span` that covers every
    named column, as a group's heading does: a product id merged over two cells of a wider
    table (its overrides left to their defaults) is a row."""
    first, last = span
    named = [position for position, header in enumerate(headers) if header.strip()]
    if not named or first > named[0] or last < named[-1]:
        return False
    return not any(
        column[-1].strip()
        for position, column in enumerate(columns)
        if not first <= position <= last
    )


def _tables(
    rows: Iterator[tuple[int, list[Cell]]],
    headers: list[str],
    batch_rows: int,
    errors: _Errors,
    checks: _Checks,
    spans: _Spans,
) -> Iterator[pa.Table]:
    width = len(headers)
    columns: list[list[str]] = [[] for _ in headers]
    merged: dict[tuple[int, int], str] = {}  # a merge's top cell text, by (row, position)
    count = given = 0
    for index, cells in rows:
        for column, cell in zip(columns, cells, strict=False):
            column.append(cell if isinstance(cell, str) else cell_text(cell))
        for column in columns[len(cells) : width]:
            column.append("")
        for position, error in errors.get(index, {}).items():
            if 0 <= position < width:
                columns[position][-1] = error  # the error's text, refused as CSV text is
        # A merge shows its top cell's value (an error too) over every row it covers, whatever
        # a covered cell holds (LibreOffice can keep what was there before the merge).
        for position, top in spans.below.get(index, ()):
            if 0 <= position < width:
                columns[position][-1] = merged.get((top, position), "")
        for position in range(width) if spans.tops else ():
            if (index, position) in spans.tops:
                merged[(index, position)] = columns[position][-1]
        if index in checks.totals or (
            index in spans.across and _heading(columns, headers, spans.across[index])
        ):
            for column in columns:
                column[-1] = ""
        checks.hidden.check(index, columns)
        count += 1
        if count == batch_rows:
            yield _table(columns, headers, checks.nameless, given + 1)
            columns, count, given = [[] for _ in headers], 0, given + count
    if count:
        yield _table(columns, headers, checks.nameless, given + 1)


def _table(
    columns: list[list[str]], headers: list[str], nameless: _Nameless, first_row: int
) -> pa.Table:
    nameless.check(columns, first_row)
    named = [
        (column, header) for column, header in zip(columns, headers, strict=True) if header.strip()
    ]
    return pa.Table.from_arrays(
        [pa.array(column, pa.string()) for column, _ in named], [header for _, header in named]
    )
