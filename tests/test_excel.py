"""Spreadsheet catalogs in (typed cells, merged headers, sheets) and xlsx results out."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import python_calamine as calamine
import xlsxwriter
from click.testing import CliRunner, Result

from batch import runner, storage
from batch.catalog import CatalogOptions, excel, read_catalog, read_passthrough
from batch.catalog.excel import cell_text, column_letter
from batch.cli import main
from batch.config import CliOverrides, RunConfig, Secret, build_run_config
from batch.errors import CatalogError, ExitCode
from batch.follow import tracking
from batch.follow.polling import PollSchedule
from batch.joggai.quota import RateLimit
from batch.payload import RequestDefaults
from batch.rerun import rerun
from batch.sandbox import SandboxConfig, running_sandbox
from batch.store.results import RESULT_COLUMNS, read_results, write_table
from batch.store.xlsx import write_xlsx
from batch.validation import problems as catalog_problems
from tests.helpers import product_ids, submissions

QUICK = PollSchedule(first=0.1, fast=0.1, fast_until=5, medium=0.2, medium_until=10, slow=0.5)
# A sheet: rows of cells from A1 down; merges as "A1:F1" -> their text.
Rows = list[list[Any]]


def write_workbook(
    path: Path,
    sheets: dict[str, Rows],
    merges: dict[str, dict[str, str]] | None = None,
    hidden: tuple[str, ...] = (),
) -> Path:
    """A workbook made as Excel would: numbers, booleans and dates typed, strings as strings."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False})
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, cells in enumerate(rows):
            for c, value in enumerate(cells):
                if value is None:
                    continue
                if isinstance(value, bool):
                    sheet.write_boolean(r, c, value)
                elif isinstance(value, int | float):
                    sheet.write_number(r, c, value)
                elif isinstance(value, dt.date):
                    sheet.write_datetime(r, c, value, dates)
                else:
                    sheet.write_string(r, c, value)
        for span, text in (merges or {}).get(name, {}).items():
            sheet.merge_range(span, text)
        if name in hidden:
            sheet.hide()
    visible = [sheet for sheet in book.worksheets() if sheet.name not in hidden]
    visible[0].activate()  # Excel never hides the active sheet
    visible[0].set_first_sheet()
    book.close()
    return path


def catalog_rows(pids: list[str]) -> Rows:
    """The round-trip catalog: a title banner, a two-row merged header, typed cells, row 7 bad."""
    return [
        ["Spring catalog"],  # row 1: a title merged across the sheet
        [None, None, "Video settings", None, None, None, None],  # row 2: group heading, merged
        [None, None, "Avatar ID", "length", "caption", "launch", "note"],  # row 3: the header
        ["SKU0", pids[0], 127, 30, True, dt.date(2026, 11, 26), "=1+1"],  # row 4
        ["SKU1", pids[1], 127.0, 15.0, False, None, "+cmd"],  # row 5
        ["SKU2", pids[2], "127", "60", "yes", None, None],  # row 6
        ["SKU3", pids[3], 127.5, 30, True, None, None],  # row 7: a fractional avatar id
        ["SKU4", pids[4], 127, 30, "TRUE", None, "@SUM(A1)"],  # row 8
    ]


MERGES = {"A1:G1": "Spring catalog", "A2:A3": "sku", "B2:B3": "product_id", "C2:E2": "Video"}


def run_workbook(path: Path, sandbox_url: str, tmp_path: Path, *options: str) -> Result:
    """`jogg-batch run` of the workbook at `path` against the sandbox, its state in tmp_path."""
    return CliRunner().invoke(
        main,
        ["run", str(path), "--base-url", sandbox_url, "--state", str(tmp_path / "s.db"),
         "--rate-limit", "600/min", *options],
        env={"JOGG_API_KEY": "sk-sandbox"},
    )  # fmt: skip


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.xlsx"
    return write_workbook(path, {"Products": catalog_rows(product_ids(5))}, {"Products": MERGES})


OPTIONS = CatalogOptions(columns={"Avatar ID": "avatar_id"})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (127.0, "127"),
        (30.0, "30"),
        (12.5, "12.5"),
        (0.1, "0.1"),
        (1e20, "1e+20"),  # past 2**53 the digits are a float's, not the ones typed
        (1234567890123456789.0, "1.2345678901234568e+18"),
        (2.0**53 - 1, "9007199254740991"),
        (7, "7"),
        (True, "true"),
        (False, "false"),
        (dt.date(2026, 11, 26), "2026-11-26"),
        (dt.datetime(2026, 11, 26, 0, 0), "2026-11-26"),
        (dt.datetime(2026, 11, 26, 9, 30, 5), "2026-11-26 09:30:05"),
        (dt.time(9, 30), "09:30:00"),
        ("00123", "00123"),
    ],
)
def test_typed_cells_become_the_text_a_csv_export_holds(value: Any, text: str) -> None:
    """Numbers lose Excel's .0 (while a float holds every digit), booleans are true/false, dates
    ISO, text stays as typed."""
    assert cell_text(value) == text


def test_column_letters_are_the_ones_excel_shows() -> None:
    """0 -> A, 25 -> Z, 26 -> AA, 701 -> ZZ, 702 -> AAA."""
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


def test_merged_title_and_two_row_header_give_the_real_column_names(catalog: Path) -> None:
    """A merged title and group heading are skipped; cells merged down name their column."""
    table = next(read_passthrough(catalog, OPTIONS))
    assert table.column_names == [
        "sku", "product_id", "Avatar ID", "length", "caption", "launch", "note",
    ]  # fmt: skip
    assert table.column("Avatar ID").to_pylist() == ["127", "127", "127", "127.5", "127"]
    assert table.column("launch").to_pylist() == ["2026-11-26", "", "", "", ""]
    assert table.column("note").to_pylist()[:2] == ["=1+1", "+cmd"]


@pytest.mark.parametrize("title", [False, True])
def test_a_header_whose_every_cell_is_merged_down_names_the_columns(
    tmp_path: Path, title: bool
) -> None:
    """Every header cell two rows tall (with a merged title above, or none): the header, not a
    banner, so the first data row is data, not the header."""
    pids = product_ids(2)
    rows: Rows = [["product_id", "length"], [None, None], [pids[0], 15], [pids[1], 30]]
    merges = {"A1:A2": "product_id", "B1:B2": "length"}
    if title:
        rows.insert(0, ["Spring"])
        merges = {"A1:B1": "Spring", "A2:A3": "product_id", "B2:B3": "length"}
    path = write_workbook(tmp_path / "c.xlsx", {"S": rows}, {"S": merges})
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column_names == ["product_id", "length"]
    assert table.column("product_id").to_pylist() == pids


def test_a_value_merged_down_over_rows_is_every_such_rows_value(tmp_path: Path) -> None:
    """aspect_ratio "9:16" merged over rows 2-4 (as a grouped sheet shows it): each of those
    rows has it, not only the first (the others were paid as the default landscape)."""
    pids = product_ids(4)
    rows: Rows = [["product_id", "aspect_ratio"], *[[pid, None] for pid in pids]]
    rows[4][1] = "16:9"
    path = write_workbook(tmp_path / "c.xlsx", {"S": rows}, {"S": {"B2:B4": "9:16"}})
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column("aspect_ratio").to_pylist() == ["9:16", "9:16", "9:16", "16:9"]
    fields = [row.fields for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    assert [f.aspect_ratio for f in fields if f] == ["portrait"] * 3 + ["landscape"]


def test_typed_cells_normalise_as_csv_cells_do(catalog: Path) -> None:
    """127.0 is avatar 127, 30.0 is length 30, TRUE and true and yes are captions on."""
    rows = [row for batch in read_catalog(catalog, OPTIONS) for row in batch.rows]
    good = [row.fields for row in rows if row.fields is not None]
    assert [(f.avatar_id, f.length, f.caption) for f in good] == [
        (127, "30", True), (127, "15", False), (127, "60", True), (127, "30", True),
    ]  # fmt: skip
    assert [row.key for row in rows] == product_ids(5)


def test_problems_name_the_sheet_and_the_row_and_column_people_see(catalog: Path) -> None:
    """The bad avatar id sits in Excel row 7 under the header "Avatar ID": the message says so."""
    assert [problem.message for problem in catalog_problems(catalog, OPTIONS)] == [
        "catalog.xlsx sheet 'Products' row 7, column 'Avatar ID': '127.5' is not a whole-number "
        "id; write the id's digits, e.g. 127"
    ]


@pytest.mark.parametrize("scan_bytes", [4 << 20, 7])
def test_a_formula_error_cell_makes_the_row_invalid_not_a_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_bytes: int
) -> None:
    """A failed VLOOKUP (#N/A) is named with its column, never read as empty and defaulted,
    also when the sheet's XML is scanned in chunks far smaller than a cell."""
    monkeypatch.setattr(excel, "_SCAN_BYTES", scan_bytes)
    path = tmp_path / "errors.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["note", "product_id", "avatar_id", "length"])
    sheet.write_row(1, 0, ["a", "P1"])
    sheet.write_formula(1, 2, "=VLOOKUP(1,Z1:Z2,1,FALSE)", None, "#N/A")
    sheet.write_formula(1, 3, "=1/0", None, "#DIV/0!")
    sheet.write_formula(2, 1, "=VLOOKUP(1,Z1:Z2,1,FALSE)", None, "#N/A")
    book.close()
    fix = "(a formula failed); fix the formula or clear the cell"
    assert [problem.message for problem in catalog_problems(path, CatalogOptions())] == [
        "errors.xlsx sheet 'Products' row 2, column 'avatar_id': "
        f"the spreadsheet cell holds the error #N/A {fix}",
        "errors.xlsx sheet 'Products' row 2, column 'length': "
        f"the spreadsheet cell holds the error #DIV/0! {fix}",
        "errors.xlsx sheet 'Products' row 3, column 'product_id': "
        f"the spreadsheet cell holds the error #N/A {fix}",
    ]


def test_first_visible_sheet_by_default_and_sheet_chooses_another(tmp_path: Path) -> None:
    """A hidden first sheet is passed over; `sheet` picks by name, ignoring case."""
    path = write_workbook(
        tmp_path / "book.xlsx",
        {
            "Notes": [["read me"]],
            "Main": [["product_id"], ["A1"]],
            "Second": [["product_id"], ["B1"], ["B2"]],
        },
        hidden=("Notes",),
    )
    first = next(read_passthrough(path, CatalogOptions()))
    chosen = next(read_passthrough(path, CatalogOptions(sheet="second")))
    assert first.column("product_id").to_pylist() == ["A1"]
    assert chosen.column("product_id").to_pylist() == ["B1", "B2"]


def test_the_sheet_read_is_named_with_the_others_when_a_run_or_validate_starts(
    tmp_path: Path,
) -> None:
    """A workbook saved open on its second sheet: the first visible one is still read (the
    rule), and validate's first line says so, naming the other sheets and --sheet; with
    --sheet it names the one asked for. A row's problem names its sheet."""
    path = write_workbook(
        tmp_path / "book.xlsx",
        {
            "Notes": [["read me"]],
            "Winter 2026": [["product_id", "length"], ["A1", "60"]],
            "Spring 2027": [["product_id", "length"], ["B1", "45"]],
        },
        hidden=("Notes",),
    )
    default = CliRunner().invoke(main, ["validate", str(path)])
    assert default.exit_code == 0, default.stderr
    assert default.stderr.splitlines()[0].endswith(
        f"INFO    {path}: reading sheet 'Winter 2026', the first visible one; the workbook "
        "also has 'Spring 2027' (choose one with --sheet)"
    )
    chosen = CliRunner().invoke(main, ["validate", str(path), "--sheet", "spring 2027"])
    assert chosen.exit_code == 1
    assert chosen.stderr.splitlines()[0].endswith(
        f"INFO    {path}: reading sheet 'Spring 2027', as --sheet (or catalog.sheet) names it"
    )
    assert chosen.stdout.startswith(f"{path.name} sheet 'Spring 2027' row 2, column 'length':")
    planned = CliRunner().invoke(
        main, ["run", str(path), "--dry-run", "--offline"], env={"JOGG_API_KEY": "k"}
    )
    assert planned.exit_code == 0, planned.stderr
    assert f"{path}: reading sheet 'Winter 2026', the first visible one;" in planned.stderr


def test_a_first_sheet_of_instructions_points_to_sheet(tmp_path: Path) -> None:
    """The first visible sheet holds notes, the rows are on another: the error says --sheet."""
    sheets = {
        "Instructions": [["Fill in the Products sheet"]],
        "Products": [["product_id"], ["P1"]],
    }
    path = write_workbook(tmp_path / "c.xlsx", sheets)
    with pytest.raises(CatalogError, match="choose the sheet that holds the rows with --sheet"):
        read_catalog(path, CatalogOptions())


def test_unknown_sheet_lists_the_sheets_there_are(tmp_path: Path) -> None:
    """A mistyped sheet name is a CatalogError naming the sheets."""
    path = write_workbook(tmp_path / "book.xlsx", {"Main": [["product_id"], ["A1"]]})
    with pytest.raises(CatalogError, match=r"has no sheet 'Prices'; its sheets are 'Main'"):
        read_catalog(path, CatalogOptions(sheet="Prices"))


@pytest.mark.parametrize(
    ("sheets", "error"),
    [
        ({"Empty": []}, r"sheet 'Empty' is empty; it needs a header row$"),
        (
            {"Sheet1": [], "Products": [["product_id"], ["A1"]]},
            r"sheet 'Sheet1' is empty; it needs a header row \(the workbook's other sheets: "
            r"'Products'; pick one with --sheet\)",
        ),
        ({"Main": [["product_id"], ["A1"]]}, None),
    ],
)
def test_empty_sheet_is_refused(tmp_path: Path, sheets: dict[str, Rows], error: str | None) -> None:
    """A sheet with no cells has no header: a CatalogError, not a crash, naming the other
    sheets when there are (an empty default sheet before the one with the rows)."""
    path = write_workbook(tmp_path / "book.xlsx", sheets)
    if error is None:
        assert next(read_passthrough(path, CatalogOptions())).num_rows == 1
        return
    with pytest.raises(CatalogError, match=error):
        read_catalog(path, CatalogOptions())


def test_an_unnamed_header_cell_over_a_value_is_refused_where_the_value_is(
    tmp_path: Path,
) -> None:
    """A header merged across two columns leaves the second unnamed: its value can be neither
    matched nor kept, so the file is refused at that cell."""
    rows: Rows = [["product_id", "Avatar ID", None, "length"], ["P1", 127, 128, 30]]
    merges = {"Main": {"B1:C1": "Avatar ID"}}
    path = write_workbook(tmp_path / "book.xlsx", {"Main": rows}, merges)
    with pytest.raises(CatalogError, match=r"sheet 'Main' row 2: column C has no name .* '128'"):
        list(read_catalog(path, CatalogOptions()))


def test_an_unnamed_column_with_no_values_is_left_out(tmp_path: Path) -> None:
    """A column counted as used (formatted, a space typed) but with no name and no text is not
    a catalog column: the rows read as if it were not there."""
    rows: Rows = [["product_id", None, "length", None], ["P1", " ", 30, None], ["P2", None, 15]]
    path = write_workbook(tmp_path / "book.xlsx", {"Main": rows})
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column_names == ["product_id", "length"]
    assert table.to_pylist() == [
        {"product_id": "P1", "length": "30"},
        {"product_id": "P2", "length": "15"},
    ]


def test_a_file_that_is_not_a_workbook_is_a_catalog_error(tmp_path: Path) -> None:
    """Bytes that are no spreadsheet: the file is named and --format suggested."""
    path = tmp_path / "catalog.xlsx"
    path.write_text("product_id\nP1\n")
    with pytest.raises(CatalogError, match=r"catalog.xlsx: cannot read it as a spreadsheet"):
        read_catalog(path, CatalogOptions())


def test_sheet_is_refused_for_a_csv_catalog(tmp_path: Path) -> None:
    """--sheet on a CSV file is a mistake worth saying, not something to ignore."""
    path = tmp_path / "c.csv"
    path.write_text("product_id\nP1\n")
    with pytest.raises(CatalogError, match=r"--sheet is for spreadsheets"):
        read_catalog(path, CatalogOptions(sheet="Main"))


def test_rows_come_in_batches_and_blank_rows_stay_rows(tmp_path: Path) -> None:
    """Batches of batch_rows; a blank row between others is a row, as in a CSV export: a blank
    one, with nothing to check."""
    rows: Rows = [["product_id", "length"]] + [[f"P{i}", 30] for i in range(5)]
    rows.insert(3, [])
    rows.append(["P5", 15])
    path = write_workbook(tmp_path / "book.xlsx", {"Main": rows})
    tables = list(read_passthrough(path, CatalogOptions(batch_rows=3)))
    assert [t.num_rows for t in tables] == [3, 3, 1]
    ids = [v for t in tables for v in t.column("product_id").to_pylist()]
    assert ids == ["P0", "P1", "", "P2", "P3", "P4", "P5"]
    assert list(catalog_problems(path, CatalogOptions(batch_rows=3))) == []
    batches = list(read_catalog(path, CatalogOptions(batch_rows=3)))
    assert [sorted(batch.rows.blank) for batch in batches] == [[2], [], []]


def _sheet_xml(path: Path) -> str:
    return _part(path, "xl/worksheets/sheet1.xml")


def _part(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name).decode()


def test_xlsx_results_keep_strings_as_strings_and_link_videos(tmp_path: Path) -> None:
    """Formula-looking text stays text, numbers stay numbers, video_url is a link, the header
    is frozen and filtered, and the columns have widths."""
    url = "https://cdn.example/v/1.mp4"
    table = pa.table(
        {
            "note": ['=HYPERLINK("http://evil")', "plain"],
            "row": pa.array([1, 2], pa.int64()),
            "video_url": [url, "javascript:alert(1)"],
            "duration": [12.5, None],
        }
    )
    path = tmp_path / "out.xlsx"
    write_xlsx(path, [table], RESULT_COLUMNS)
    xml = _sheet_xml(path)
    assert "<f>" not in xml  # no cell holds a formula
    assert '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>' in xml
    assert '<autoFilter ref="A1:D3"/>' in xml
    assert re.search(r'<col min="3" max="3" width="2[0-9]', xml)  # video_url: as wide as a URL
    assert xml.count("<hyperlink ") == 1  # javascript: is never a link
    book = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    assert book[1] == ['=HYPERLINK("http://evil")', 1.0, url, 12.5]
    assert book[2][2] == "javascript:alert(1)"


def test_xlsx_results_read_back_as_text_and_rewrite_whole(tmp_path: Path) -> None:
    """read_results gives every cell as text ("3", not 3.0); write_table round-trips it."""
    path = tmp_path / "out.xlsx"
    inputs = pa.table({"sku": ["A", "B"], "row": pa.array([1, 2], pa.int64())})
    write_xlsx(path, [inputs], RESULT_COLUMNS)
    frame = read_results(path)
    assert list(frame["row"]) == ["1", "2"]
    write_table(frame.assign(status=["submitted", "failed"]), path)
    again = read_results(path)
    assert list(again["sku"]) == ["A", "B"]
    assert list(again["status"]) == ["submitted", "failed"]
    assert list(again.columns[:2]) == ["sku", "row"]
    write_table(again.assign(notes=["ask Ana", ""]), path)  # a column a person added at the end
    assert list(read_results(path).columns) == [*again.columns, "notes"]


def test_sheets_a_person_added_to_xlsx_results_are_kept_when_they_are_rewritten(
    tmp_path: Path,
) -> None:
    """A `Notes` sheet added after the results sheet survives a rewrite (retry, status,
    download), its values as they were: text stays text, numbers and dates stay typed."""
    path = tmp_path / "out.xlsx"
    write_xlsx(path, [pa.table({"sku": ["A", "B"], "row": pa.array([1, 2], pa.int64())})], [])
    results = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    book = xlsxwriter.Workbook(str(path))  # the workbook as Excel saves it, a sheet added
    first, notes = book.add_worksheet("results"), book.add_worksheet("Notes")
    for row, values in enumerate(results):
        first.write_row(row, 0, values)
    notes.write_row(0, 0, ["ask Ana about", None, 3, True])
    notes.write_string(0, 1, "=1+1")
    notes.write_datetime(
        1, 0, dt.datetime(2026, 11, 29, 8, 30), book.add_format({"num_format": 14})
    )
    book.close()
    write_table(read_results(path).assign(status=["submitted", "failed"]), path)
    after = calamine.CalamineWorkbook.from_path(str(path))
    assert after.sheet_names == ["results", "Notes"]
    assert list(read_results(path)["status"]) == ["submitted", "failed"]
    kept = after.get_sheet_by_name("Notes").to_python()
    assert kept[0] == ["ask Ana about", "=1+1", 3, True]
    assert kept[1][0] == dt.datetime(2026, 11, 29, 8, 30)
    assert "<f>" not in _part(path, "xl/worksheets/sheet2.xml")


@pytest.mark.parametrize("name", ["results", "Results"])
def test_a_cover_sheet_put_before_xlsx_results_is_kept_and_the_results_found(
    tmp_path: Path, name: str
) -> None:
    """A person puts a `Cover` sheet before the results sheet (and may capitalise its name):
    the results are read from the sheet named results wherever it is, and a rewrite keeps the
    cover. The rewrite made a second `results` sheet: a traceback after the run had sent."""
    path = tmp_path / "out.xlsx"
    write_xlsx(path, [pa.table({"sku": ["A", "B"], "row": pa.array([1, 2], pa.int64())})], [])
    results = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    book = xlsxwriter.Workbook(str(path))
    cover, first = book.add_worksheet("Cover"), book.add_worksheet(name)
    cover.write_row(0, 0, ["Nightly videos", "for the shop team"])
    for row, values in enumerate(results):
        first.write_row(row, 0, values)
    book.close()
    assert list(read_results(path)["sku"]) == ["A", "B"]
    write_table(read_results(path).assign(status=["submitted", "failed"]), path)
    after = calamine.CalamineWorkbook.from_path(str(path))
    assert sorted(after.sheet_names) == ["Cover", "results"]
    assert list(read_results(path)["status"]) == ["submitted", "failed"]
    assert after.get_sheet_by_name("Cover").to_python() == [["Nightly videos", "for the shop team"]]


def test_xlsx_results_keep_every_digit_of_integers_past_excels_precision(
    tmp_path: Path,
) -> None:
    """A 19-digit id is text in the workbook (a number cell would round it, and two ids could
    become one); integers Excel holds exactly stay numbers."""
    ids = [1729384756102938475, 1729384756102938476, 2**53 + 1, -(2**53) - 1]
    path = tmp_path / "out.xlsx"
    write_xlsx(path, [pa.table({"shop_id": pa.array(ids), "n": [1, 2, 2**53, -(2**53)]})], [])
    assert list(read_results(path)["shop_id"]) == [str(n) for n in ids]
    book = calamine.CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    assert [line[1] for line in book[1:]] == [1.0, 2.0, float(2**53), float(-(2**53))]


def test_empty_catalog_still_gets_an_xlsx_header(tmp_path: Path) -> None:
    """No rows at all: the results workbook still names its columns."""
    path = tmp_path / "out.xlsx"
    write_xlsx(path, iter(()), RESULT_COLUMNS)
    assert list(read_results(path).columns) == list(RESULT_COLUMNS)


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    config = SandboxConfig(rate_limit=RateLimit(600, 60.0), render_seconds=0.2)
    with running_sandbox(config) as url:
        yield url


def xlsx_config(catalog: Path, url: str, tmp_path: Path, **flags: Any) -> RunConfig:
    settings = tmp_path / "settings.toml"
    settings.write_text('[columns]\n"Avatar ID" = "avatar_id"\n')
    cli = CliOverrides(
        config_path=settings,
        base_url=url,
        rate_limit="600/min",
        results=tmp_path / "catalog.results.xlsx",
        **flags,
    )
    config = build_run_config(catalog, cli, api_key=Secret("sk-sandbox"))
    return replace(config, settle_seconds=0.3)


def test_xlsx_catalog_round_trips_to_xlsx_results_and_retry_finishes_it(
    catalog: Path, tmp_path: Path, sandbox_url: str
) -> None:
    """Typed cells, merged headers and a bad row in; an xlsx results file out, read back with
    calamine, with links once rendered; `retry` on that xlsx sends only the rows left."""
    first = xlsx_config(catalog, sandbox_url, tmp_path, max_videos=1)
    summary = runner.run(first)
    assert summary.exit_code == ExitCode.ROWS_FAILED
    tracking.track(
        first.state, sandbox_url, first.api_key, wait=True, timeout=10,
        results=first.results, schedule=QUICK,
    )  # fmt: skip
    frame = read_results(tmp_path / "catalog.results.xlsx")
    assert list(frame["sku"]) == ["SKU0", "SKU1", "SKU2", "SKU3", "SKU4"]
    assert list(frame["row"]) == ["1", "2", "3", "4", "5"]
    assert list(frame["status"]) == [
        "submitted", "not_attempted", "not_attempted", "invalid", "not_attempted",
    ]  # fmt: skip
    assert (
        frame["message"][3] == "Avatar ID: '127.5' is not a whole-number id; "
        "write the id's digits, e.g. 127"
    )
    assert list(frame["launch"])[:1] == ["2026-11-26"]
    assert list(frame["note"])[:2] == ["=1+1", "+cmd"]  # strings, not neutralised
    assert frame["video_url"][0].startswith("http")
    xml = _sheet_xml(tmp_path / "catalog.results.xlsx")
    assert xml.count("<hyperlink ") == 1  # the rendered row's video_url
    assert "<f>" not in xml

    summary = rerun(xlsx_config(tmp_path / "catalog.results.xlsx", sandbox_url, tmp_path))
    assert summary.exit_code == ExitCode.ROWS_FAILED  # the invalid row is still the file's
    after = read_results(tmp_path / "catalog.results.xlsx")
    assert list(after["status"]) == ["submitted"] * 3 + ["invalid", "submitted"]
    assert len(submissions(sandbox_url)["submissions"]) == 4
    assert list(after["note"])[:2] == ["=1+1", "+cmd"]


def test_xlsx_results_a_sheet_cannot_hold_are_refused_before_sending(
    tmp_path: Path, sandbox_url: str
) -> None:
    """17,000 catalog columns and the outcome columns are past a sheet's 16,384: exit 2 naming
    the limits before anything is sent (the workbook would drop the outcome columns)."""
    catalog = tmp_path / "wide.csv"
    names = ["product_id", *(f"attribute_{i}" for i in range(17_000))]
    catalog.write_text(",".join(names) + "\n" + ",".join([product_ids(1)[0]] + ["v"] * 17_000))
    result = CliRunner().invoke(
        main,
        ["run", str(catalog), "--results", str(tmp_path / "r.xlsx"), "--base-url", sandbox_url,
         "--offline", "--rate-limit", "none"],
        env={"JOGG_API_KEY": "sk-sandbox"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "a workbook's sheet holds 1,048,575 rows and 16,384 columns at most" in result.output
    assert submissions(sandbox_url)["submissions"] == []
    assert not (tmp_path / "r.xlsx").exists()


def test_cli_sheet_option_validates_the_named_sheet(tmp_path: Path) -> None:
    """`validate book.xlsx --sheet Second` reads that sheet and reports its rows there."""
    path = write_workbook(
        tmp_path / "book.xlsx",
        {"Main": [["product_id"], ["A1"]], "Second": [["product_id", "length"], ["B1", 45]]},
    )
    result = CliRunner().invoke(main, ["validate", str(path), "--sheet", "Second"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "book.xlsx sheet 'Second' row 2, column 'length': '45' is not a video length; "
        "use 15, 30 or 60"
    ]
    result = CliRunner().invoke(main, ["validate", str(path), "--sheet", "Third"])
    assert result.exit_code == 2
    assert "has no sheet 'Third'; its sheets are 'Main', 'Second'" in result.stderr


def test_run_help_documents_sheet_and_xlsx_results() -> None:
    """`run --help` names --sheet and .xlsx results."""
    result = CliRunner().invoke(main, ["run", "--help"])
    assert "--sheet" in result.stdout
    assert ".xlsx" in result.stdout


def _rewrite_parts(path: Path, rewrite: Callable[[str, str], str]) -> None:
    """Each XML part of the workbook at `path` rewritten by `rewrite(name, text)`."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            text = rewrite(name, data.decode()) if name.endswith((".xml", ".rels")) else None
            archive.writestr(name, data if text is None else text.encode())


def _prefixed(name: str, xml: str) -> str:
    """The part with its main namespace bound to `x:`, as .NET OpenXML SDK writers give it."""
    if not name.startswith(("xl/workbook.xml", "xl/worksheets/")):
        return xml
    xml = re.sub(r"<(/?)([A-Za-z]+)([\s>/])", r"<\1x:\2\3", xml)
    return xml.replace(' xmlns="http://schemas', ' xmlns:x="http://schemas', 1)


def _single_quoted(name: str, xml: str) -> str:
    """The part with every attribute in single quotes, as XML allows."""
    if name.endswith(".rels") or name.startswith(("xl/workbook.xml", "xl/worksheets/")):
        return re.sub(r'(\s[\w:]+)="([^"]*)"', r"\1='\2'", xml)
    return xml


def _cells_unplaced(name: str, xml: str) -> str:
    """The sheet's cells without their `r` positions, as some programs write them (a cell is
    then the one after the cell before it in its row)."""
    if not name.startswith("xl/worksheets/"):
        return xml
    return re.sub(r'(<c) r="[A-Z]+[0-9]+"', r"\1", xml)


def _rows_and_cells_unplaced(name: str, xml: str) -> str:
    """Rows without `r` too (a row is then the one after the row before it), the namespace
    prefixed."""
    xml = _cells_unplaced(name, xml)
    if not name.startswith("xl/worksheets/"):
        return xml
    return _prefixed(name, re.sub(r'(<row) r="[0-9]+"', r"\1", xml))


def _cells_after_the_first_unplaced(name: str, xml: str) -> str:
    """Each row's first cell placed (`r="A2"`), the cells after it not."""
    if not name.startswith("xl/worksheets/"):
        return xml
    return re.sub(r'(<c) r="[B-Z][0-9]+"', r"\1", xml)


@pytest.mark.parametrize(
    "rewrite",
    [
        _prefixed,
        _single_quoted,
        _cells_unplaced,
        _rows_and_cells_unplaced,
        _cells_after_the_first_unplaced,
    ],
)
@pytest.mark.parametrize("scan_bytes", [4 << 20, 7])
def test_error_cells_are_found_in_prefixed_quoted_or_unplaced_xml(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rewrite: Callable[[str, str], str],
    scan_bytes: int,
) -> None:
    """`<x:c t="e">`, `t='e'` and a cell without its `r` position are error cells as
    `<c r="B2" t="e">` is: #N/A is refused, never read as an empty avatar_id and sent with the
    default avatar."""
    monkeypatch.setattr(excel, "_SCAN_BYTES", scan_bytes)
    path = tmp_path / "errors.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "avatar_id", "length"])
    sheet.write_row(1, 0, ["P1", None, 15])
    sheet.write_formula(1, 1, "=VLOOKUP(1,Z1:Z2,1,FALSE)", None, "#N/A")
    sheet.write_row(2, 0, ["P2", 128, 30])
    book.close()
    _rewrite_parts(path, rewrite)
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column("product_id").to_pylist() == ["P1", "P2"]  # calamine reads the XML
    assert [problem.message for problem in catalog_problems(path, CatalogOptions())] == [
        "errors.xlsx sheet 'Products' row 2, column 'avatar_id': the spreadsheet cell holds the "
        "error #N/A (a formula failed); fix the formula or clear the cell"
    ]


def _formula_workbook(path: Path) -> Path:
    """Formulas as XlsxWriter writes them: a placeholder value 0, the workbook to be calculated
    when opened. Column E, "tier", is passed through, not sent."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "length", "caption", "avatar_id", "tier"])
    sheet.write_row(1, 0, ["P1"])
    sheet.write_formula(1, 1, "=10+5")
    sheet.write_formula(1, 2, '=IF(E2="gold",TRUE,FALSE)')
    sheet.write_row(1, 3, [128, "gold"])
    sheet.write_row(2, 0, ["P2", 30, True, 129])
    sheet.write_formula(2, 4, '=UPPER("silver")')
    book.close()
    return path


UNCALCULATED = (
    "the cell's formula was never calculated: a program wrote the workbook without calculating "
    "its formulas; open and save it in Excel or LibreOffice (or paste the values over the "
    "formulas) and run again"
)


@pytest.mark.parametrize("unplaced", [False, True])
@pytest.mark.parametrize("scan_bytes", [4 << 20, 7])
def test_a_formula_never_calculated_makes_the_row_invalid_not_a_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_bytes: int, unplaced: bool
) -> None:
    """XlsxWriter's placeholder 0 in a workbook set to calculate on load is no value: the row
    is refused naming each such request cell, never sent as length 0 and captions off; also
    in a sheet whose rows and cells have no `r` positions."""
    monkeypatch.setattr(excel, "_SCAN_BYTES", scan_bytes)
    path = _formula_workbook(tmp_path / "formulas.xlsx")
    if unplaced:
        _rewrite_parts(path, _rows_and_cells_unplaced)
    assert re.search(r'<calcPr [^>]*fullCalcOnLoad="1"', _part(path, "xl/workbook.xml"))
    assert "<f>10+5</f><v>0</v>" in _part(path, "xl/worksheets/sheet1.xml").replace("x:", "")
    assert [problem.message for problem in catalog_problems(path, CatalogOptions())] == [
        f"formulas.xlsx sheet 'Products' row 2, column 'length': {UNCALCULATED}",
        f"formulas.xlsx sheet 'Products' row 2, column 'caption': {UNCALCULATED}",
    ]
    rows = [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    assert rows[1].fields is not None  # its uncalculated "tier" is not part of the request
    assert (rows[1].fields.length, rows[1].fields.avatar_id) == ("30", 129)


def test_a_formula_given_its_value_by_the_writer_is_read_as_that_value(tmp_path: Path) -> None:
    """XlsxWriter writes the value it is given beside a formula (`write_formula(..., value)`):
    in a workbook set to calculate on load, any value but its placeholder 0 is read as it is."""
    path = tmp_path / "given.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "length", "aspect_ratio", "caption"])
    sheet.write_row(1, 0, ["P1"])
    sheet.write_formula(1, 1, "=10+5", None, 15)
    sheet.write_formula(1, 2, '="portrait"', None, "portrait")
    sheet.write_formula(1, 3, "=B2>100", None, False)  # `t="b"` and `<v>0</v>`: a given FALSE
    book.close()
    assert re.search(r'<calcPr [^>]*fullCalcOnLoad="1"', _part(path, "xl/workbook.xml"))
    assert list(catalog_problems(path, CatalogOptions())) == []
    [row] = [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    assert row.fields is not None
    assert (row.fields.length, row.fields.aspect_ratio, row.fields.caption) == (
        "15",
        "portrait",
        False,
    )


def test_a_formula_with_no_value_is_refused_and_a_calculated_one_read(tmp_path: Path) -> None:
    """In a workbook not set to calculate on load, a formula with no value (`<v/>`, as openpyxl
    writes it, or none) is refused; one Excel calculated is read as its value, empty text
    (`t="str"`, `<v></v>`) included."""
    path = _formula_workbook(tmp_path / "formulas.xlsx")

    def as_saved(name: str, xml: str) -> str:
        xml = xml.replace(' fullCalcOnLoad="1"', "")
        xml = xml.replace("<f>10+5</f><v>0</v>", "<f>10+5</f><v />")  # openpyxl
        xml = xml.replace("FALSE)</f><v>0</v>", "FALSE)</f>")  # a writer that leaves it out
        return xml.replace(
            '<c r="E3"><f>UPPER("silver")</f><v>0</v>', '<c r="E3" t="str"><f>""</f><v></v>'
        )

    _rewrite_parts(path, as_saved)
    assert "fullCalcOnLoad" not in _part(path, "xl/workbook.xml")
    assert [problem.message for problem in catalog_problems(path, CatalogOptions())] == [
        f"formulas.xlsx sheet 'Products' row 2, column 'length': {UNCALCULATED}",
        f"formulas.xlsx sheet 'Products' row 2, column 'caption': {UNCALCULATED}",
    ]
    _rewrite_parts(
        path,
        lambda name, xml: xml.replace("<v />", "<v>15</v>").replace(
            "FALSE)</f>", "FALSE)</f><v>1</v>"
        ),
    )
    assert list(catalog_problems(path, CatalogOptions())) == []
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.to_pylist()[0] == {
        "product_id": "P1",
        "length": "15",
        "caption": "1",
        "avatar_id": "128",
        "tier": "gold",
    }
    assert table.column("tier").to_pylist() == ["gold", ""]


def test_a_number_cell_past_2_53_is_never_sent_as_an_id(tmp_path: Path) -> None:
    """A number cell holds 2**53 + 1 as 2**53 (pandas' to_excel of an int64 id column): as a
    music_id or a product_id the row is invalid, never sent with digits nobody typed."""
    path = write_workbook(
        tmp_path / "ids.xlsx",
        {
            "Products": [
                ["product_id", "music_id"],
                ["P1", 2**53 + 1],
                [2**53 + 1, 7],
                ["P3", 10**15 - 1],
            ]
        },
    )
    assert next(read_passthrough(path, CatalogOptions())).column("music_id").to_pylist() == [
        "9007199254740992.0", "7", "999999999999999",
    ]  # fmt: skip
    float_cell = "was written from a float (a spreadsheet's number cell, a float column)"
    assert [problem.message for problem in catalog_problems(path, CatalogOptions())] == [
        f"ids.xlsx sheet 'Products' row 2, column 'music_id': '9007199254740992.0' {float_cell}, "
        "which cannot hold an id this large exactly; format the ids as text (or store them as "
        "integers)",
        f"ids.xlsx sheet 'Products' row 3, column 'product_id': '9007199254740992.0' {float_cell}, "
        "which cannot hold a product id this large exactly; format the product ids as text",
    ]


def test_a_name_template_taking_an_error_cell_makes_the_row_invalid(tmp_path: Path) -> None:
    """`{title}` where the title cell holds #N/A (a VLOOKUP that found nothing) or a formula
    never calculated: the row is invalid naming the column, never sent named "#N/A"; a title
    no template takes may hold an error."""
    path = tmp_path / "names.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "title", "video_name", "note"])
    sheet.write_row(1, 0, ["P1", "Mug", "{title} promo"])
    sheet.write_row(2, 0, ["P2", None, "{title} promo"])
    sheet.write_formula(2, 1, "=VLOOKUP(1,Z1:Z2,1,FALSE)", None, "#N/A")
    sheet.write_row(3, 0, ["P3", None, "plain name"])
    sheet.write_formula(3, 1, "=1/0", None, "#DIV/0!")
    sheet.write_row(4, 0, ["P4", "Cup"])
    sheet.write_formula(4, 3, "=NA()", None, "#N/A")
    book.close()
    options = CatalogOptions(defaults=RequestDefaults(video_name="{title} - {note}"))
    assert [problem.message for problem in catalog_problems(path, options)] == [
        "names.xlsx sheet 'Products' row 3, column 'video_name': '{title} promo' takes column "
        "'title', and the spreadsheet cell holds the error #N/A (a formula failed); fix the "
        "formula or clear the cell",
        "names.xlsx sheet 'Products' row 5, column 'video_name': '{title} - {note}' takes "
        "column 'note', and the spreadsheet cell holds the error #N/A (a formula failed); fix "
        "the formula or clear the cell",
    ]
    rows = [row for batch in read_catalog(path, options) for row in batch.rows]
    assert [row.fields.name if row.fields else None for row in rows] == [
        "Mug promo",
        None,
        "plain name",
        None,
    ]


@pytest.mark.parametrize("rewrite", [None, _prefixed, _rows_and_cells_unplaced])
def test_a_row_hidden_by_a_filter_is_refused_before_anything_is_sent(
    tmp_path: Path, sandbox_url: str, rewrite: Callable[[str, str], str] | None
) -> None:
    """Rows a filter (or a person) hid are read by calamine as any other: a data team that
    filtered the sheet to the products it wants would pay for the rest. Refused, naming the
    first such row, before any POST; a hidden blank row or one above the header is no row."""
    pids = product_ids(4)
    path = tmp_path / "filtered.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.merge_range(0, 0, 0, 1, "Spring catalog")
    sheet.set_row(0, None, None, {"hidden": True})  # a title row above the header
    sheet.write_row(1, 0, ["product_id", "length"])
    for index, pid in enumerate(pids):
        sheet.write_row(2 + index, 0, [pid, 15])
    sheet.autofilter(1, 0, 5, 1)
    for row in (3, 5, 7):  # rows 4 and 6 filtered out; row 8 is blank and hidden
        sheet.set_row(row, None, None, {"hidden": True})
    book.close()
    if rewrite is not None:
        _rewrite_parts(path, rewrite)
    result = run_workbook(path, sandbox_url, tmp_path)
    assert result.exit_code == 2, result.output
    assert (
        "filtered.xlsx sheet 'Products' row 4: is hidden in the workbook (by a filter, or by "
        "hand), one of 3 rows the sheet hides, and hidden rows would be sent as any other"
    ) in result.output
    assert submissions(sandbox_url)["submissions"] == []

    book = xlsxwriter.Workbook(str(path))  # the same rows, the filter cleared
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "length"])
    for index, pid in enumerate(pids):
        sheet.write_row(1 + index, 0, [pid, 15])
    sheet.set_row(6, None, None, {"hidden": True})  # a blank row below the data
    book.close()
    assert [table.num_rows for table in read_passthrough(path, CatalogOptions())] == [4]


@pytest.mark.parametrize("rewrite", [None, _single_quoted])
def test_an_excel_tables_totals_row_is_never_sent(
    tmp_path: Path, sandbox_url: str, rewrite: Callable[[str, str], str] | None
) -> None:
    """A table's "Total Row" holds a label under the product id and subtotals (a count under
    the name, a sum under the length), a row JoggAI would refuse every night: read as blank,
    and the line naming the sheet says so. A row below the table is a row again."""
    pids = product_ids(4)
    path = tmp_path / "table.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    columns = [
        {"header": "product_id", "total_string": "Total"},
        {"header": "video_name", "total_function": "count", "total_value": 3},
        {"header": "length", "total_function": "sum", "total_value": 60},
    ]
    data = [[pid, f"Item {n}", 15 if n % 2 else 30] for n, pid in enumerate(pids[:3])]
    sheet.add_table(0, 0, 4, 2, {"data": data, "total_row": True, "columns": columns})
    sheet.write_row(5, 0, [pids[3], "Below the table", 15])
    book.close()
    if rewrite is not None:
        _rewrite_parts(path, rewrite)
    results = tmp_path / "table.results.csv"
    result = run_workbook(path, sandbox_url, tmp_path, "--results", str(results))
    assert result.exit_code == 0, result.output
    assert "reading sheet 'Products'; row 5: a table's totals, read as blank" in result.output
    sent = [entry["product_id"] for entry in submissions(sandbox_url)["submissions"]]
    assert sorted(sent) == sorted(pids)
    frame = read_results(results)
    assert list(frame["status"]) == ["submitted"] * 3 + ["blank", "submitted"]


def test_a_second_export_pasted_below_with_its_columns_reordered_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Two exports pasted into one sheet, the second's header in another order: its rows would
    be read under the wrong columns (a script as the name). Refused before any POST, naming the
    row Excel shows."""
    pids = product_ids(2)
    path = write_workbook(
        tmp_path / "pasted.xlsx",
        {
            "Products": [
                ["product_id", "video_name", "override_script"],
                [pids[0], "Mug", "Meet the mug"],
                ["Product ID", "Override Script", "Video Name"],
                [pids[1], "Meet the lamp", "Lamp"],
            ]
        },
    )
    result = run_workbook(path, sandbox_url, tmp_path)
    assert result.exit_code == 2, result.output
    assert (
        "pasted.xlsx sheet 'Products' row 3: repeats the header with its columns in another "
        "order ('Override Script' under 'video_name')"
    ) in result.output
    assert submissions(sandbox_url)["submissions"] == []


def test_a_workbook_cut_short_says_so(tmp_path: Path) -> None:
    """A workbook still being written (or copied in part) when the run starts: refused saying
    it is cut short, before any request, not with the reader's "cannot detect file format"."""
    whole = write_workbook(
        tmp_path / "whole.xlsx",
        {"Products": [["product_id", "length"], *([f"P{n}", 15] for n in range(2000))]},
    )
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = CliRunner().invoke(main, ["validate", str(cut)])
    assert result.exit_code == 2
    assert f"{cut}: is cut short (a workbook's ZIP without its end" in result.output


def test_a_group_heading_merged_across_the_rows_is_no_product(tmp_path: Path) -> None:
    """Headings merged across the table between its rows (`Bottles`, `Audio`), as a shop groups
    its products: read as blank rows, where each was sent as a product id and refused 10104
    every night. A row that holds a merge and values beside it is a row."""
    pids = product_ids(3)
    path = tmp_path / "grouped.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "title", "length"])
    sheet.merge_range(1, 0, 1, 2, "Bottles")
    sheet.write_row(2, 0, [pids[0], "Steel bottle", 15])
    sheet.merge_range(3, 0, 3, 2, "Audio")
    sheet.write_row(4, 0, [pids[1], "Speaker", 15])
    sheet.merge_range(5, 0, 5, 1, pids[2])  # an id merged over the title's cell, its length beside
    sheet.write(5, 2, 30)
    book.close()
    rows = [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    read = [(row.fields.product_id, row.fields.length) for row in rows if row.fields is not None]
    assert read == [(None, "30"), (pids[0], "15"), (None, "30"), (pids[1], "15"), (pids[2], "30")]
    assert all(not row.problems for row in rows)  # the headings are blank rows, not invalid ones


def test_a_heading_two_rows_tall_or_merged_in_two_pieces_is_no_product(tmp_path: Path) -> None:
    """A group heading merged over two rows, or in two merges side by side (`Bottles` over A:B,
    an empty merge over C:D), was sent as product 'Bottles' (refused 10104, a POST of the quota
    every night) and its second row as its duplicate. A merge with a column between it and the
    next is not joined to it: the value there makes the row a row."""
    pids = product_ids(3)
    path = tmp_path / "grouped.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "title", "length", "caption"])
    sheet.merge_range(1, 0, 2, 3, "Bottles")  # rows 2-3
    sheet.write_row(3, 0, [pids[0], "Steel bottle", 15, "yes"])
    sheet.merge_range(4, 0, 4, 1, "Audio")
    sheet.merge_range(4, 2, 4, 3, "")
    sheet.write_row(5, 0, [pids[1], "Speaker", 15, "yes"])
    sheet.merge_range(6, 0, 6, 1, pids[2])  # an id over the title's cell, a value beside
    sheet.write(6, 2, 30)
    book.close()
    rows = [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    assert [row.fields.product_id for row in rows if row.fields and row.fields.product_id] == [
        pids[0], pids[1], pids[2],
    ]  # fmt: skip
    assert all(not row.problems for row in rows)  # the headings are blank rows, not invalid ones
    assert len(rows) == 6


def test_a_product_id_merged_over_two_cells_of_a_wider_table_is_a_row(tmp_path: Path) -> None:
    """The product id column merged over two cells (its header too), a row holding only its id
    (every override left to its default): a row to send, not a group's heading read as blank,
    which nothing would have said."""
    pids = product_ids(2)
    path = tmp_path / "merged-ids.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.merge_range(0, 0, 0, 1, "product_id")
    sheet.write(0, 2, "video_name")
    sheet.merge_range(1, 0, 1, 1, pids[0])
    sheet.write(1, 2, "Bottle promo")
    sheet.merge_range(2, 0, 2, 1, pids[1])
    book.close()
    rows = [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]
    assert [row.fields.product_id for row in rows if row.fields is not None] == pids


def test_a_value_far_from_the_table_is_refused_not_a_crash(tmp_path: Path) -> None:
    """One stray value at XFD1048576 made calamine ask for 512 GiB and abort the process (exit
    134, a Rust backtrace): exit 2 naming the cell and how to find it. In a child process, so
    that an abort is a failure of this test, not of the suite."""
    book = xlsxwriter.Workbook(str(tmp_path / "far.xlsx"))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "video_name"])
    sheet.write_row(1, 0, [product_ids(1)[0], "Mug"])
    sheet.write_string(1_048_575, 16_383, "x")
    book.close()
    done = subprocess.run(
        [sys.executable, "-m", "batch", "validate", str(tmp_path / "far.xlsx")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
    assert "sheet 'Products' reaches cell XFD1048576 (1,048,576 rows by 16,384 columns)" in (
        " ".join(done.stderr.split())
    )


def test_a_workbook_encrypted_with_a_password_says_so(tmp_path: Path) -> None:
    """Excel's "Encrypt with Password" makes an OLE2 file holding an `EncryptedPackage`
    stream, whose format calamine cannot tell: the message said to pass --format (which made
    it worse); it says the workbook is protected by a password."""
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    entry = "EncryptedPackage".encode("utf-16-le").ljust(64, b"\0")
    book = tmp_path / "locked.xlsx"
    book.write_bytes(header + entry + bytes(10_000))
    done = CliRunner().invoke(main, ["validate", str(book)])
    assert done.exit_code == ExitCode.USAGE
    assert done.stderr.strip() == (
        f"jogg-batch: error: {book}: is protected by a password; save a copy without one"
    )


def test_a_sheet_that_expands_as_a_zip_bomb_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sheet whose XML expands hundreds of times (padding inside `<sheetData>`: 400 MB from
    a 400 KB file) was read whole, by calamine and by the scan for error cells, for a minute
    and a gigabyte: refused before, as a gzip catalog that expands so is (the bound made small
    here, where the file is small)."""
    monkeypatch.setattr(storage, "BOMB_BYTES", 1 << 20)
    book = write_workbook(tmp_path / "b.xlsx", {"Products": [["product_id"], ["NTAx"]]})
    with zipfile.ZipFile(book) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = parts[sheet].replace(b"<sheetData>", b"<sheetData>" + b" " * (4 << 20))
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in parts.items():
            package.writestr(name, data)
    done = CliRunner().invoke(main, ["validate", str(book)])
    assert done.exit_code == ExitCode.USAGE
    assert "sheet 'Products' expands from " in done.stderr
    assert "more than 200 times (a ZIP bomb?" in " ".join(done.stderr.split())


@pytest.mark.parametrize("dimension", [None, b'<dimension ref="A1:B2"/>'])
def test_a_value_far_from_the_table_is_refused_without_a_true_dimension(
    tmp_path: Path, dimension: bytes | None
) -> None:
    """A streaming writer leaves the sheet's `<dimension>` out (or writes one too small), and
    calamine sizes the sheet by the cells it finds: a stray value at XFD1048576 still aborted
    the process. The cells are looked at as well: exit 2 naming the cell, in a child process
    as above."""
    path = tmp_path / "far.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "video_name"])
    sheet.write_row(1, 0, [product_ids(1)[0], "Mug"])
    sheet.write_string(1_048_575, 16_383, "x")
    book.close()
    with zipfile.ZipFile(path) as package:
        parts = {name: package.read(name) for name in package.namelist()}
    part = "xl/worksheets/sheet1.xml"
    parts[part] = re.sub(rb"<dimension [^>]*/>", dimension or b"", parts[part])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in parts.items():
            package.writestr(name, data)
    done = subprocess.run(
        [sys.executable, "-m", "batch", "validate", str(path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
    assert "sheet 'Products' reaches cell XFD1048576 (1,048,576 rows by 16,384 columns)" in (
        " ".join(done.stderr.split())
    )


def test_an_xls_workbook_says_what_cannot_be_checked_in_it() -> None:
    """An .xls (here written by xlwt, a formula without its value under avatar_id) is read by
    calamine with its error cells and uncalculated formulas empty, its hidden rows as any
    other: nothing in the format lets them be found, so validate said "no problems" and a run
    paid for the default avatar without a word. Said once, as a warning."""
    book = Path(__file__).parent / "data" / "formula-without-value.xls"
    done = CliRunner().invoke(main, ["validate", str(book)])
    assert done.exit_code == 0, done.output
    warned = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warned) == 1
    assert (
        "in an .xls or .xlsb workbook, error cells (#N/A), formulas never calculated" in (warned[0])
    )
