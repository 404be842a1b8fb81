"""OpenDocument sheets (.ods): what calamine does not give (merges, error cells, formulas never
calculated, hidden rows) read from the sheet's XML; workbooks checked by what they are, not by
their names."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from batch.catalog import CatalogOptions, read_catalog
from batch.catalog.normalize import UNCALCULATED
from batch.catalog.ods import sheet_marks
from batch.cli import main
from batch.errors import CatalogError, ExitCode
from tests.helpers import product_ids
from tests.test_excel import write_workbook

CONTENT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" '
    'office:version="1.3"><office:body><office:spreadsheet>{tables}'
    "</office:spreadsheet></office:body></office:document-content>"
)
MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
    'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">'
    '<manifest:file-entry manifest:full-path="/" '
    'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "{extra}</manifest:manifest>"
)
ERROR_NA = (
    '<table:table-cell table:formula="of:=NA()" office:value-type="string" '
    'office:string-value="" calcext:value-type="error"><text:p>#N/A</text:p></table:table-cell>'
)


def cell(value: Any = None, attributes: str = "") -> str:
    """A cell as LibreOffice writes it: typed numbers, strings with their text."""
    if value is None:
        return f"<table:table-cell{attributes}/>"
    kind = "float" if isinstance(value, int | float) else "string"
    number = f' office:value="{value}"' if kind == "float" else ""
    return (
        f'<table:table-cell office:value-type="{kind}"{number}{attributes}>'
        f"<text:p>{value}</text:p></table:table-cell>"
    )


def row(*cells: str, attributes: str = "") -> str:
    return f"<table:table-row{attributes}>{''.join(cells)}</table:table-row>"


def write_ods(
    path: Path,
    sheets: dict[str, list[str]],
    *,
    manifest_extra: str = "",
    generator: str | None = None,
    names: dict[str, str] | None = None,
) -> Path:
    """An .ods file of `sheets` (name -> rows of XML), as LibreOffice packages one; `generator`:
    the application `meta.xml` names (none: a library wrote it); `names`: a sheet's name
    attribute as written (`table:name='Spring "A"'`)."""
    tables = "".join(
        f"<table:table {(names or {}).get(name, f'table:name={chr(34)}{name}{chr(34)}')}>"
        f"{''.join(rows)}</table:table>"
        for name, rows in sheets.items()
    )
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        package.writestr("META-INF/manifest.xml", MANIFEST.format(extra=manifest_extra))
        package.writestr("content.xml", CONTENT.format(tables=tables), zipfile.ZIP_DEFLATED)
        if generator is not None:
            package.writestr("meta.xml", META.format(generator=generator))
    return path


META = (
    '<?xml version="1.0" encoding="UTF-8"?><office:document-meta '
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"><office:meta>'
    "<meta:generator>{generator}</meta:generator></office:meta></office:document-meta>"
)
LIBREOFFICE = "LibreOffice/7.4.7.2$Linux_X86_64 LibreOffice_project/40$Build-2"


def read(path: Path) -> list[tuple[str | None, int | None, str]]:
    """Each row's (product id, avatar id, problems) as planning sees them."""
    return [
        (
            row.fields.product_id if row.fields else None,
            row.fields.avatar_id if row.fields else None,
            "; ".join(problem.reason for problem in row.problems),
        )
        for batch in read_catalog(path, CatalogOptions())
        for row in batch.rows
    ]


HEADER = row(cell("product_id"), cell("avatar_id"), cell("length"))
TWICE = ' table:number-rows-repeated="2"'
COVERED = "<table:covered-table-cell/>"


def test_a_value_merged_down_is_every_such_rows_value(tmp_path: Path) -> None:
    """calamine gives no merges for .ods: an avatar merged down over two rows reached only the
    first, and the second was paid for with the default avatar."""
    pids = product_ids(3)
    path = write_ods(
        tmp_path / "c.ods",
        {
            "Products": [
                HEADER,
                row(cell(pids[0]), cell(5, ' table:number-rows-spanned="2"'), cell(15)),
                row(cell(pids[1]), "<table:covered-table-cell/>", cell(15)),
                row(cell(pids[2]), cell(7), cell(30)),
            ]
        },
    )
    assert [(pid, avatar) for pid, avatar, _ in read(path)] == [
        (pids[0], 5), (pids[1], 5), (pids[2], 7),
    ]  # fmt: skip


def test_error_cells_and_formulas_never_calculated_make_their_rows_invalid(
    tmp_path: Path,
) -> None:
    """An .ods `#N/A` (a lookup that found nothing) and a formula a program wrote without its
    value were read as empty cells, and their rows paid for with the defaults."""
    pids = product_ids(3)
    path = write_ods(
        tmp_path / "c.ods",
        {
            "Products": [
                HEADER,
                row(cell(pids[0]), ERROR_NA, cell(15)),
                row(cell(pids[1]), cell(12), '<table:table-cell table:formula="of:=2*30"/>'),
                row(cell(pids[2]), cell(7), cell(30)),
            ]
        },
    )
    rows = read(path)
    assert rows[0][0] is None
    assert "holds the error #N/A" in rows[0][2]
    assert rows[1][0] is None
    assert "formula was never calculated" in rows[1][2]
    assert rows[2] == (pids[2], 7, "")


def test_repeated_rows_and_cells_are_counted_to_find_a_mark(tmp_path: Path) -> None:
    """Cells carry no position in .ods: identical rows written once (`number-rows-repeated`),
    empty cells written once (`number-columns-repeated`) and other sheets before it are counted,
    so the error is found in its own cell, on every row a repeat stands for."""
    pids = product_ids(2)
    other = ["Notes", [row(cell("x")), row(cell("y"), cell(None))]]
    path = write_ods(
        tmp_path / "c.ods",
        {
            str(other[0]): list(other[1]),
            "Products": [
                row(cell(None, ' table:number-columns-repeated="3"')),
                HEADER,
                row(cell(pids[0]), cell(12), cell(15), attributes=TWICE),
                row(cell(pids[1]), cell(None, ' table:number-columns-repeated="1"'), ERROR_NA),
            ],
        },
    )  # fmt: skip
    marks = sheet_marks(path, "Products")
    assert marks.errors == {4: {2: "#N/A"}}
    assert marks.hidden == frozenset()
    assert marks.merges == []
    path = write_ods(
        tmp_path / "d.ods",
        {"Products": [HEADER, row(cell(pids[0]), ERROR_NA, attributes=TWICE)]},
    )  # fmt: skip
    assert sheet_marks(path, "Products").errors == {1: {1: "#N/A"}, 2: {1: "#N/A"}}


def test_a_hidden_row_is_refused_before_any_post(tmp_path: Path) -> None:
    """A row hidden in LibreOffice (or filtered out) was planned and paid for, as in xlsx
    before; a hidden blank row is no row."""
    pids = product_ids(2)
    path = write_ods(
        tmp_path / "c.ods",
        {
            "Products": [
                HEADER,
                row(cell(pids[0]), cell(12), cell(15)),
                row(cell(None), attributes=' table:visibility="collapse"'),
                row(cell(pids[1]), cell(7), cell(30), attributes=' table:visibility="filter"'),
            ]
        },
    )
    with pytest.raises(CatalogError, match=r"sheet 'Products' row 4: is hidden in the workbook"):
        read(path)


def test_a_group_heading_merged_across_is_blank_and_a_title_is_skipped(tmp_path: Path) -> None:
    """A title merged across the top stopped the run ("has no product_id column"), and a
    group's heading merged across every column was sent as product 'Bottles'."""
    pids = product_ids(2)
    across = ' table:number-columns-spanned="3"'
    covered = "<table:covered-table-cell/>" * 2
    path = write_ods(
        tmp_path / "c.ods",
        {
            "Products": [
                row(cell("Spring catalog", across), covered),
                HEADER,
                row(cell("Bottles", across), covered),
                row(cell(pids[0]), cell(12), cell(15)),
                row(cell(pids[1]), cell(7), cell(30)),
            ]
        },
    )
    rows = read(path)
    assert [pid for pid, _, _ in rows] == [None, pids[0], pids[1]]
    assert rows[0][2] == ""  # blank, not invalid


def test_workbooks_are_checked_by_what_they_are_not_by_their_names(tmp_path: Path) -> None:
    """An xlsx saved under an .xls name (as web apps hand them out) was read without its error
    cells or hidden rows looked for; an .ods under an .xlsx name said it had no such sheet."""
    pids = product_ids(2)
    book = write_workbook(
        tmp_path / "b.xlsx", {"Products": [["product_id", "length"], [pids[0], 15]]}
    )
    with zipfile.ZipFile(book) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = parts[sheet].replace(b'<row r="2"', b'<row r="2" hidden="1"')
    renamed = tmp_path / "b.xls"
    with zipfile.ZipFile(renamed, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in parts.items():
            package.writestr(name, data)
    with pytest.raises(CatalogError, match="row 2: is hidden in the workbook"):
        read(renamed)
    ods = write_ods(tmp_path / "c.ods", {"Products": [HEADER, row(cell(pids[1]), ERROR_NA)]})
    shutil.copy(ods, tmp_path / "c.xlsx")
    rows = read(tmp_path / "c.xlsx")
    assert rows[0][0] is None
    assert "holds the error #N/A" in rows[0][2]


def test_an_ods_saved_with_a_password_says_so(tmp_path: Path) -> None:
    """A password-protected .ods (its parts encrypted, its manifest saying how) said "cannot
    detect file format ... pass --format"."""
    path = tmp_path / "locked.ods"
    encryption = (
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"/>'
        "</manifest:file-entry>"
    )
    with zipfile.ZipFile(path, "w") as package:
        package.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        package.writestr("META-INF/manifest.xml", MANIFEST.format(extra=encryption))
        package.writestr("content.xml", bytes(range(256)) * 4)
    done = CliRunner().invoke(main, ["validate", str(path)])
    assert done.exit_code == ExitCode.USAGE
    assert done.stderr.strip() == (
        f"jogg-batch: error: {path}: is protected by a password; save a copy without one"
    )


def test_uncalculated_is_the_mark_of_a_formula_without_value(tmp_path: Path) -> None:
    """A formula with its value (as LibreOffice saves one) is read; one without is marked."""
    path = write_ods(
        tmp_path / "c.ods",
        {
            "Products": [
                HEADER,
                row(
                    '<table:table-cell table:formula="of:=1+1" office:value-type="float" '
                    'office:value="2"><text:p>2</text:p></table:table-cell>',
                    '<table:table-cell table:formula="of:=6+1"/>',
                ),
            ]
        },
    )
    assert sheet_marks(path, "Products").errors == {1: {1: UNCALCULATED}}


PLAIN_ODF_NA = (
    '<table:table-cell table:formula="of:=NA()" office:value-type="string" '
    'office:string-value=""><text:p>#N/A</text:p></table:table-cell>'
)
COMMENTED_NA = ERROR_NA.replace(
    "<text:p>#N/A",
    "<office:annotation><text:p>check supplier</text:p></office:annotation><text:p>#N/A",
)


@pytest.mark.parametrize(
    "error",
    [
        PLAIN_ODF_NA,
        COMMENTED_NA,
        ERROR_NA.replace("><text:p>#N/A</text:p></table:table-cell>", "/>"),
    ],
    ids=["plain ODF", "with a comment", "without its text"],
)
def test_an_error_cell_reads_as_the_error_it_shows(tmp_path: Path, error: str) -> None:
    """LibreOffice's plain ODF 1.3 writes an error with no `calcext:` mark (only an empty value
    beside the `#N/A` it shows): read as empty, its row was paid for with the default avatar. A
    comment on the cell was read as its value; one with no text took the next cell's."""
    pids = product_ids(2)
    path = write_ods(
        tmp_path / "c.ods",
        {"Products": [HEADER, row(cell(pids[0]), error, cell("x")), row(cell(pids[1]), cell(7))]},
        generator=LIBREOFFICE,
    )
    assert sheet_marks(path, "Products").errors == {1: {1: "#N/A"}}
    rows = read(path)
    assert rows[0][0] is None
    assert "holds the error #N/A" in rows[0][2]
    assert rows[1] == (pids[1], 7, "")


def test_an_error_merged_down_is_every_covered_rows_error(tmp_path: Path) -> None:
    """A failed lookup merged over two rows: the first row was refused and the second paid for
    with the default avatar (the merge copied the top cell's value calamine read: empty)."""
    pids = product_ids(2)
    top = ERROR_NA.replace("<table:table-cell ", '<table:table-cell table:number-rows-spanned="2" ')
    path = write_ods(
        tmp_path / "c.ods",
        {"Products": [HEADER, row(cell(pids[0]), top), row(cell(pids[1]), COVERED)]},
    )
    rows = read(path)
    assert [pid for pid, _, _ in rows] == [None, None]
    assert all("holds the error #N/A" in problems for _, _, problems in rows)


def test_a_merge_shows_its_top_value_over_a_covered_cells_own(tmp_path: Path) -> None:
    """LibreOffice can keep a value under a merge ("keep the contents of the hidden cells"):
    the sheet shows the top's 127 over both rows; the second was sent with the hidden 555."""
    pids = product_ids(2)
    covered = (
        '<table:covered-table-cell office:value-type="float" office:value="555">'
        "<text:p>555</text:p></table:covered-table-cell>"
    )
    path = write_ods(
        tmp_path / "c.ods",
        {"Products": [HEADER, row(cell(pids[0]), cell(127, ' table:number-rows-spanned="2"')),
                      row(cell(pids[1]), covered)]},
    )  # fmt: skip
    assert [avatar for _, avatar, _ in read(path)] == [127, 127]


def test_a_sheet_name_in_single_quotes_and_a_row_tag_broken_over_lines_are_read(
    tmp_path: Path,
) -> None:
    """odfpy (pandas) writes a name holding `"` in single quotes: the sheet was not found and
    its merges ignored. A line break after `<table:table-row` (an XML formatter's) was not
    counted as a row, and every mark below went one row up."""
    pids = product_ids(2)
    path = write_ods(
        tmp_path / "c.ods",
        {'Spring "A"': [
            HEADER,
            "<table:table-row\n>" + cell(pids[0]) + cell(555) + "</table:table-row>",
            row(cell(pids[1]), ERROR_NA),
        ]},
        names={'Spring "A"': "table:name='Spring &quot;A&quot;'"},
    )  # fmt: skip
    assert sheet_marks(path, 'Spring "A"').errors == {2: {1: "#N/A"}}


def test_a_formula_with_no_value_is_empty_text_where_an_application_saved_it(
    tmp_path: Path,
) -> None:
    """LibreOffice writes a formula whose result is empty text (`=IF(x;"";y)`) with no value:
    it was refused as never calculated, after the person had done just what the message said.
    Where no application saved the workbook (odfpy), it still is."""
    pids = product_ids(1)
    empty = '<table:table-cell table:formula="of:=IF(1;&quot;&quot;;&quot;x&quot;)"/>'
    sheets = {"Products": [HEADER, row(cell(pids[0]), cell(12), empty)]}
    saved = write_ods(tmp_path / "saved.ods", sheets, generator=LIBREOFFICE)
    assert sheet_marks(saved, "Products").errors == {}
    assert read(saved) == [(pids[0], 12, "")]
    written = write_ods(tmp_path / "written.ods", sheets, generator="odfpy/1.4.2")
    assert sheet_marks(written, "Products").errors == {1: {2: UNCALCULATED}}
