"""What an OpenDocument sheet (.ods: LibreOffice, OpenOffice, Google Sheets' download) says of its
cells that python-calamine does not give: its merged ranges, the cells holding a formula's error
or a formula never calculated, and the rows it hides.

calamine reads an .ods error cell (`#N/A` from a lookup that found nothing) and a formula a
program wrote without its value as empty cells, a hidden row as any other, and gives no merges:
a value merged down over several rows reached only the first, the others took the default. Each
would be paid for as a video the sheet does not show, so the sheet's XML is read here, as
`excel` reads an xlsx sheet's. Its cells carry no position: rows and cells are counted, with
their repeats (`number-rows-repeated`, `number-columns-repeated`: identical neighbours written
once). A stretch of the XML with none of those marks only has its rows counted, at C speed.

An error cell is marked by LibreOffice's extension (`calcext:value-type="error"`), or, in
plain ODF 1.3, only by a formula's empty value beside the text it shows (`#N/A`): either way the
text shown is the cell's (a comment's text is not). A formula with no value at all is one never
calculated, except in a workbook a spreadsheet application saved (`meta:generator`), which
writes a formula's empty text so.

The XML is read by pattern, never by an XML parser (no entity is expanded), with the prefixes
every writer of the format uses (`table:`, `office:`, `calcext:`, `text:`) and either quote.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from typing import IO, Final

from batch import storage
from batch.catalog import normalize
from batch.errors import CatalogError
from batch.storage import Location

# ((first row, first column), (last row, last column)), 0-based: calamine's form for xlsx.
Merge = tuple[tuple[int, int], tuple[int, int]]

_TAG: Final = re.compile(rb"<(/?)table:(table-row|table-cell|covered-table-cell)(?=[\s/>])([^>]*)>")
_TABLE_OPENING: Final = re.compile(rb"<table:table\s[^>]*>")
# What makes a row worth walking cell by cell; each is searched on its own, led by a literal (a
# pattern of alternatives tried at every byte took longer than the rest of the reading).
_MARK_TEXTS: Final = tuple(
    text.replace(b'"', quote)
    for text in (
        b'calcext:value-type="error"', b'table:visibility="collapse"',
        b'table:visibility="filter"', b'office:string-value=""',
    )
    for quote in (b'"', b"'")
)  # fmt: skip
_SPANNED: Final = re.compile(rb"-spanned=[\"'](?!1[\"'])")  # a merge (LibreOffice never writes 1)
_NAME: Final = re.compile(rb"\stable:name=(?:\"([^\"]*)\"|'([^']*)')")
# Without a leading `\s`, which made the search of a chunk's every row ten times slower.
_ROWS_REPEATED: Final = re.compile(rb"table:number-rows-repeated=[\"']([0-9]+)")
_COLUMNS_REPEATED: Final = re.compile(rb"\stable:number-columns-repeated=[\"']([0-9]+)")
_ROWS_SPANNED: Final = re.compile(rb"\stable:number-rows-spanned=[\"']([0-9]+)")
_COLUMNS_SPANNED: Final = re.compile(rb"\stable:number-columns-spanned=[\"']([0-9]+)")
_HIDDEN: Final = re.compile(rb"\stable:visibility=[\"'](?:collapse|filter)[\"']")
_ERROR: Final = re.compile(rb"\scalcext:value-type=[\"']error[\"']")
_EMPTY_VALUE: Final = re.compile(rb"\soffice:string-value=(?:\"\"|'')")
_FORMULA: Final = re.compile(rb"\stable:formula=")
_VALUE_TYPE: Final = re.compile(rb"\soffice:value-type=")
_CELL_END: Final = re.compile(rb"</table:table-cell>")
_ANNOTATION: Final = re.compile(rb"<office:annotation\b.*?</office:annotation>", re.DOTALL)
_PARAGRAPH: Final = re.compile(rb"<text:p\b[^>]*>(.*?)</text:p>", re.DOTALL)
_ELEMENT: Final = re.compile(rb"<[^>]*>")
_GENERATOR: Final = re.compile(rb"<meta:generator>([^<]*)</meta:generator>")
# The applications that calculate a workbook before saving it (and write a formula's empty text
# as a formula without a value); a library that writes formulas (odfpy) does not calculate them.
_CALCULATING: Final = re.compile(
    rb"LibreOffice|OpenOffice|StarOffice|Collabora|NeoOffice|Google|Microsoft|Calligra|"
    rb"KSpread|Gnumeric|ONLYOFFICE|WPS|Numbers",
    re.IGNORECASE,
)
_ROW_END: Final = b"</table:table-row>"
_SCAN_BYTES: Final = 4 << 20
# A block of more identical rows than this is the sheet's empty tail (LibreOffice writes the
# rest of the sheet as one repeated row): never a row to send, so not marked row by row.
_MOST_REPEATS: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class Marks:
    """What `sheet_marks` found; rows and columns 0-based, as in the sheet (0 = row 1, column A)."""

    errors: dict[int, dict[int, str]] = field(default_factory=dict)
    hidden: frozenset[int] = frozenset()
    merges: list[Merge] = field(default_factory=list)


def sheet_marks(location: Location, sheet: str) -> Marks:
    """The merges, error and never-calculated cells (as `normalize.UNCALCULATED`) and hidden rows
    of the .ods sheet named `sheet`."""
    try:
        with storage.open_read(location) as handle, zipfile.ZipFile(handle) as package:
            info = package.getinfo("content.xml")
            storage.refuse_zip_bomb(location, info, "the XML of its sheets")
            calculated = _calculated(package)
            with package.open(info) as xml:
                return _Walk(sheet.encode(), calculated).read(xml)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CatalogError(
            f"{location}: cannot read sheet {sheet!r} of the OpenDocument workbook ({exc}); "
            "save it again from the spreadsheet"
        ) from exc


def _calculated(package: zipfile.ZipFile) -> bool:
    """Whether a spreadsheet application saved the workbook (its formulas then hold values)."""
    try:
        generator = _GENERATOR.search(package.read("meta.xml"))
    except KeyError:
        return False
    return generator is not None and _CALCULATING.search(generator[1]) is not None


@dataclass
class _Walk:
    """The rows and cells of one sheet, counted through the XML chunk by chunk."""

    sheet: bytes
    calculated: bool  # `_calculated`
    inside: bool = False  # within the chosen sheet's `<table:table>`
    row: int = 0  # the current row's index
    repeat: int = 1  # how many rows the current row stands for
    column: int = 0  # the next cell's column
    errors: dict[int, dict[int, str]] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    merges: list[Merge] = field(default_factory=list)

    def read(self, xml: IO[bytes]) -> Marks:
        for chunk in _whole_rows(xml):
            at = 0
            if not self.inside:
                opening = self._opening(chunk)
                if opening is None:
                    continue
                self.inside, at = True, opening
            end = chunk.find(b"</table:table>", at)
            self._rows(chunk[at:] if end < 0 else chunk[at:end])
            if end >= 0:
                break
        return Marks(self.errors, frozenset(self.hidden), self.merges)

    def _opening(self, chunk: bytes) -> int | None:
        """Where the chosen sheet's rows begin in `chunk` (after its opening tag), if there."""
        for table in _TABLE_OPENING.finditer(chunk):
            name = _NAME.search(table[0])
            if name is not None and unescape((name[1] or name[2]).decode()).encode() == self.sheet:
                return table.end()
        return None

    def _rows(self, chunk: bytes) -> None:
        """A chunk of whole rows of the sheet: the rows holding a mark are walked cell by cell,
        the others only counted."""
        done = 0
        for at in sorted(_marks(chunk, formulas=not self.calculated)):
            if at < done:
                continue  # in a row walked already
            opening = chunk.rfind(b"<table:table-row", done, at)
            start = done if opening < 0 else opening
            end = chunk.find(_ROW_END, at)
            end = len(chunk) if end < 0 else end + len(_ROW_END)
            self._count_rows(chunk[done:start])
            self._walk(chunk[start:end])
            done = end
        self._count_rows(chunk[done:])

    def _count_rows(self, rows: bytes) -> None:
        """Whole rows without marks: only how many rows they stand for."""
        repeats = [int(count) - 1 for count in _ROWS_REPEATED.findall(rows)]
        # Any opening, whatever follows its name (a line break too), but a row group's.
        openings = rows.count(b"<table:table-row") - rows.count(b"<table:table-row-")
        self.row += openings - rows.count(b"<table:table-rows") + sum(repeats)

    def _walk(self, rows: bytes) -> None:
        for tag in _TAG.finditer(rows):
            closing, name, attributes = tag.groups()
            if name == b"table-row":
                if closing:
                    self.row += self.repeat
                    continue
                repeated = _ROWS_REPEATED.search(attributes)
                self.repeat, self.column = int(repeated[1]) if repeated else 1, 0
                if _HIDDEN.search(attributes) and self.repeat <= _MOST_REPEATS:
                    self.hidden.update(range(self.row, self.row + self.repeat))
                if attributes.endswith(b"/"):
                    self.row += self.repeat
            elif not closing:
                self._cell(name, attributes, rows, tag.end())

    def _cell(self, name: bytes, attributes: bytes, rows: bytes, end: int) -> None:
        repeated = _COLUMNS_REPEATED.search(attributes)
        count = int(repeated[1]) if repeated else 1
        if name == b"table-cell":
            down, across = _span(_ROWS_SPANNED, attributes), _span(_COLUMNS_SPANNED, attributes)
            if down > 1 or across > 1:
                last = (self.row + down - 1, self.column + across - 1)
                self.merges.append(((self.row, self.column), last))
            mark = self._mark(attributes, rows, end)
            if mark is not None and count * self.repeat <= _MOST_REPEATS:
                for row in range(self.row, self.row + self.repeat):
                    cells = self.errors.setdefault(row, {})
                    cells.update(dict.fromkeys(range(self.column, self.column + count), mark))
        self.column += count

    def _mark(self, attributes: bytes, rows: bytes, end: int) -> str | None:
        """What a cell is read as where calamine reads it empty: the error it shows, or
        `normalize.UNCALCULATED`; None for a cell calamine reads as the sheet shows it."""
        empty = attributes.endswith(b"/")  # no text to show
        if _ERROR.search(attributes):
            # (an error cell written without its text: by hand)
            return "#N/A" if empty else _shown(rows, end) or "#N/A"
        if not empty and _EMPTY_VALUE.search(attributes):
            # plain ODF's error cell: an empty value, the error's text shown
            return _shown(rows, end) or None
        if self.calculated or not _FORMULA.search(attributes):
            return None
        return None if _VALUE_TYPE.search(attributes) else normalize.UNCALCULATED


def _shown(rows: bytes, end: int) -> str:
    """The text a cell shows: its paragraphs from `end` (after its opening tag) to its end tag,
    without a comment's (`office:annotation`) or the markup within them."""
    close = _CELL_END.search(rows, end)
    content = _ANNOTATION.sub(b"", rows[end : close.start() if close else len(rows)])
    lines = (_ELEMENT.sub(b"", found[1]) for found in _PARAGRAPH.finditer(content))
    return unescape(b"\n".join(lines).decode(errors="replace"))


def _marks(chunk: bytes, *, formulas: bool) -> Iterator[int]:
    """Where the marks of `_MARK_TEXTS` and merges are in `chunk`, and (`formulas`) each formula
    without a value."""
    for text in _MARK_TEXTS:
        at = chunk.find(text)
        while at >= 0:
            yield at
            at = chunk.find(text, at + len(text))
    yield from (found.start() for found in _SPANNED.finditer(chunk))
    at = chunk.find(b"table:formula=") if formulas else -1
    while at >= 0:
        tag = chunk[chunk.rfind(b"<", 0, at) : chunk.find(b">", at)]
        if not _VALUE_TYPE.search(tag):
            yield at
        at = chunk.find(b"table:formula=", at + 1)


def _span(pattern: re.Pattern[bytes], attributes: bytes) -> int:
    found = pattern.search(attributes)
    return int(found[1]) if found else 1


def _whole_rows(xml: IO[bytes]) -> Iterator[bytes]:
    """The XML in chunks that end after a row's end tag (a cell and its text are never cut in
    two); a stretch without one (a sheet's last lines) ends at a tag's end."""
    rest = b""
    while chunk := xml.read(_SCAN_BYTES):
        rest += chunk
        cut = rest.rfind(_ROW_END)
        cut = cut + len(_ROW_END) if cut >= 0 else rest.rfind(b">") + 1
        if cut > 0:
            yield rest[:cut]
            rest = rest[cut:]
    yield rest
