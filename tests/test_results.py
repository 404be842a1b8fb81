"""The results file's writer (batch.store.results): what it leaves behind in the process."""

from __future__ import annotations

import codecs
import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.catalog import CatalogOptions, read_passthrough
from batch.errors import CatalogError
from batch.store.results import (
    RESULT_COLUMNS,
    catalog_name,
    read_results,
    results_name,
    state_outcomes,
    write_results,
    write_table,
)


@pytest.fixture
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_restored")
@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_while_writing_and_left_as_it_was(
    tmp_path: Path, enabled: bool
) -> None:
    """Outcomes are read with the cycle collector paused; afterwards it is on or off as before,
    also when writing fails (a long run must not be left without it)."""
    (gc.enable if enabled else gc.disable)()
    seen: list[bool] = []

    def lookup(first: int, last: int) -> pa.Table:
        seen.append(gc.isenabled())
        return state_outcomes([(first, "submitted", "v1") + (None,) * 12], first, last)

    write_results(tmp_path / "r.csv", [pa.table({"sku": ["a"]})], lookup)
    assert seen == [False]
    assert gc.isenabled() is enabled
    assert list(read_results(tmp_path / "r.csv")["video_id"]) == ["v1"]

    def failing(first: int, last: int) -> pa.Table:
        raise RuntimeError("the state went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_results(tmp_path / "r.csv", [pa.table({"sku": ["a"]})], failing)
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("name", ["r.csv", "r.parquet"])
def test_an_empty_catalog_gets_a_results_file_of_its_format(tmp_path: Path, name: str) -> None:
    """No batch at all: the file is still of the format its name says, with the outcome
    columns (a `.parquet` one used to hold CSV text)."""
    write_results(tmp_path / name, [], lambda first, last: state_outcomes([], first, last))
    if name.endswith(".parquet"):
        assert pq.read_table(tmp_path / name).schema.names == list(RESULT_COLUMNS)
    assert list(read_results(tmp_path / name).columns) == list(RESULT_COLUMNS)
    assert read_results(tmp_path / name).empty


def _no_outcomes(first: int, last: int) -> pa.Table:
    return state_outcomes([], first, last)


@pytest.mark.parametrize("name", ["r.csv", "r.parquet", "r.xlsx"])
def test_list_struct_map_and_binary_catalog_columns_are_written_and_read_back_as_text(
    tmp_path: Path, name: str
) -> None:
    """A catalog's nested and binary columns no longer crash the writer: they read back as JSON,
    UTF-8 text or `base64:`, the same in every format (CSV used to fail with no file at all)."""
    inputs = pa.table(
        {
            "product_id": ["P1", "P2"],
            "tags": pa.array([["x", "y"], []], pa.list_(pa.string())),
            "meta": pa.array([{"k": 1}, None], pa.struct([("k", pa.int64())])),
            "m": pa.array([[("a", 1)], [("b", 2)]], pa.map_(pa.string(), pa.int64())),
            "bin": pa.array([b"\x00\xff", b"ab"], pa.binary()),
        }
    )
    write_results(tmp_path / name, [inputs], _no_outcomes)
    frame = read_results(tmp_path / name)
    assert frame[["tags", "meta", "m", "bin"]].to_numpy().tolist() == [
        ['["x","y"]', '{"k":1}', '{"a":1}', "base64:AP8="],
        ["[]", "", '{"b":2}', "ab"],
    ]


def test_a_catalog_column_named_like_a_renamed_one_is_not_overwritten(tmp_path: Path) -> None:
    """Catalog `status` and `input_status` both survive (as `input_status`, `input_input_status`),
    also when the file is rewritten; `catalog_name` gives each its catalog name back."""
    inputs = pa.table(
        {"product_id": ["P1"], "status": ["active"], "input_status": ["x"], "input_note": ["n"]}
    )
    write_results(tmp_path / "r.csv", [inputs], _no_outcomes)
    write_table(read_results(tmp_path / "r.csv"), tmp_path / "r.csv")
    frame = read_results(tmp_path / "r.csv")
    names = ["product_id", "input_status", "input_input_status", "input_note"]
    assert list(frame.columns) == [*names, *RESULT_COLUMNS]
    assert [frame[name][0] for name in names] == ["P1", "active", "x", "n"]
    assert [catalog_name(name) for name in names] == inputs.column_names


@pytest.mark.parametrize(
    "name", ["status", "input_status", "input_input_row", "input_note", "input_", "sku", "row"]
)
def test_results_names_give_the_catalog_names_back(name: str) -> None:
    """Renaming is undone exactly (what `retry` relies on), and leaves other names alone."""
    assert catalog_name(results_name(name)) == name
    assert results_name(name) not in RESULT_COLUMNS


@pytest.mark.parametrize("catalog", ["c.csv", "c.parquet"])
@pytest.mark.parametrize("name", ["r.csv", "r.parquet", "r.xlsx"])
def test_a_catalog_without_rows_keeps_its_columns_in_the_results_file(
    tmp_path: Path, catalog: str, name: str
) -> None:
    """A header-only CSV or a 0-row Parquet catalog: the results header is the catalog's
    columns, then the outcome columns (it used to start at `row`)."""
    path = tmp_path / catalog
    if catalog.endswith(".csv"):
        path.write_text("product_id,title\n")
    else:
        empty = {"product_id": pa.array([], pa.string()), "n": pa.array([], pa.int64())}
        pq.write_table(pa.table(empty), path)
    write_results(tmp_path / name, read_passthrough(path, CatalogOptions()), _no_outcomes)
    columns = ["product_id", "title" if catalog.endswith(".csv") else "n", *RESULT_COLUMNS]
    assert list(read_results(tmp_path / name).columns) == columns
    if name.endswith(".parquet") and catalog.endswith(".parquet"):
        assert pq.read_schema(tmp_path / name).field("n").type == pa.int64()


def test_plain_numbers_are_not_quoted_and_every_cell_reads_back_as_it_was(tmp_path: Path) -> None:
    """`-30`, `+1.5`, `-2e3` are no formula: written as they are. Formula-like cells (`-1+1`, a
    lone `-`) and cells that start with a quote before one (`'=x`) get a quote, then lose it."""
    plain = ["-30", "-5", "+1.5", "-2e3", "-.5", "1e-3", "+0", "a-b", "-2,5"]
    quoted = ["-1+1", "-cmd", "-", "@SUM(A1)", "=1", "\t3", "-30 ", "--5", "'=x", "''-5", "'-5"]
    values = plain + quoted + ["'plain", ""]
    write_results(tmp_path / "r.csv", [pa.table({"v": values})], _no_outcomes)
    written = pd.read_csv(tmp_path / "r.csv", dtype=str, keep_default_na=False)["v"]
    assert list(written[: len(plain)]) == plain
    assert list(written[len(plain) : -2]) == ["'" + value for value in quoted]
    assert list(read_results(tmp_path / "r.csv")["v"]) == values


def test_a_parquet_results_file_rewritten_keeps_its_catalog_columns_types_and_digits(
    tmp_path: Path,
) -> None:
    """`status`, `retry` and `download` rewrite the file from text: a Parquet one keeps each
    catalog column's type, and an int column with a null reads as its digits (not `1.0`, and not
    an id past 2**53 through a float)."""
    inputs = pa.table(
        {
            "product_id": pa.array([12_345_678_901_234_567, None], pa.int64()),
            "price": pa.array([9.5, None]),
            "active": pa.array([True, None]),
            "day": pa.array([pd.Timestamp("2026-11-27").date(), None], pa.date32()),
            "stock": pa.array([3, None], pa.uint16()),
            "tags": pa.array([["x"], None], pa.list_(pa.string())),
            "title": ["Mug", ""],
        }
    )
    path = tmp_path / "r.parquet"
    write_results(path, [inputs], _no_outcomes)
    frame = read_results(path)
    assert list(frame.iloc[0, :5]) == ["12345678901234567", "9.5", "true", "2026-11-27", "3"]
    assert list(frame.iloc[1, :5]) == [""] * 5
    write_table(frame, path)
    written = pq.read_table(path)
    assert written.schema.field("tags").type == pa.string()  # JSON text once read: stays text
    kept = written.select(["product_id", "price", "active", "day", "stock", "title"])
    assert kept == inputs.select(kept.column_names)


def test_numbers_a_spreadsheet_reformatted_read_back_plain(tmp_path: Path) -> None:
    """Thousands grouped (1,001 / 1.001 / 1 001), a zero fraction (2.0), a decimal comma (18,5):
    the outcome numbers come back as jogg-batch wrote them."""
    path = tmp_path / "r.results.csv"
    path.write_text(
        "sku,row,status,code,attempts,duration\n"
        'A,"1,001",failed,"40,000",2.0,"18,5"\n'
        "B,1.002,submitted,,1,18.0\n"
        "C,1 003,submitted,,,\n"
    )
    frame = read_results(path)
    assert list(frame["row"]) == ["1001", "1002", "1003"]
    assert list(frame["code"]) == ["40000", "", ""]
    assert list(frame["attempts"]) == ["2", "1", ""]
    assert list(frame["duration"]) == ["18.5", "18.0", ""]


@pytest.mark.parametrize(
    ("column", "value"), [("row", "n/a"), ("attempts", "1,5"), ("code", "4e4x"), ("duration", "?")]
)
def test_a_number_cell_that_is_no_number_is_refused_naming_it(
    tmp_path: Path, column: str, value: str
) -> None:
    """Refused when read (before anything is sent), naming the file, row, column and value."""
    path = tmp_path / "r.results.csv"
    cells = {"row": "1", "status": "failed", "code": "", "attempts": "1", "duration": ""}
    cells[column] = value
    path.write_text(",".join(cells) + "\n" + ",".join(f'"{v}"' for v in cells.values()) + "\n")
    row = " (row 1)" if column != "row" else ""
    with pytest.raises(
        CatalogError,
        match=rf"{path}: line 2{re.escape(row)}, column '{column}': '{re.escape(value)}'",
    ):
        read_results(path)


def test_a_bad_number_in_a_sorted_file_is_named_by_its_line_and_row(tmp_path: Path) -> None:
    """Sorted in a spreadsheet, the file's rows are no longer in row order: the cell is named by
    the line a spreadsheet shows and the row the run gave it, not its place counted from 1."""
    path = tmp_path / "r.results.csv"
    path.write_text("row,status,attempts\n7,failed,1\n3,failed,two\n")
    with pytest.raises(CatalogError, match=r"r\.results\.csv: line 3 \(row 3\), column 'attempts'"):
        read_results(path)


def test_a_results_file_in_a_windows_code_page_is_named_not_a_decode_error(
    tmp_path: Path,
) -> None:
    """Excel's "CSV (Comma delimited)" on Windows writes cp1252: the message says so and what
    to save instead, not a codec's words."""
    path = tmp_path / "r.results.csv"
    path.write_bytes("sku;row;status;video_id\r\nCafé;1;failed;\r\n".encode("cp1252"))
    with pytest.raises(CatalogError) as raised:
        read_results(path)
    assert str(raised.value) == (
        f"{path}: is not UTF-8 text (line 2, byte 28: a spreadsheet saved it in its own code "
        'page); save it as "CSV UTF-8" and try again'
    )


def test_a_code_page_byte_deep_in_a_results_file_is_named_by_its_line_and_place(
    tmp_path: Path,
) -> None:
    """A Windows-1252 byte far into a long results file: its line and its place in the file
    (the message gave its place within the block pandas was decoding)."""
    lines = ["sku,row,status,video_id"] + [f"S{n},{n},failed," for n in range(1, 40_000)]
    lines[30_000] = "Café,30000,failed,"
    data = "\r\n".join(lines).encode("cp1252")
    path = tmp_path / "r.results.csv"
    path.write_bytes(data)
    offset = data.index("é".encode("cp1252"))
    with pytest.raises(CatalogError, match=rf"\(line 30001, byte {offset}: "):
        read_results(path)


def test_an_excel_sep_line_above_the_header_is_read_and_skipped(tmp_path: Path) -> None:
    """`sep=;` (Excel writes and reads one above the header) names the delimiter: the header is
    the line below it."""
    path = tmp_path / "r.results.csv"
    path.write_bytes(b"sep=;\r\nsku;row;status;video_id\r\nA, b;1;failed;\r\n")
    frame = read_results(path)
    assert list(frame.columns) == ["sku", "row", "status", "video_id"]
    assert list(frame["sku"]) == ["A, b"]


def test_a_results_file_saved_with_semicolons_reads_and_is_rewritten_so(tmp_path: Path) -> None:
    """Excel in a European locale saves `;` (with a BOM, CRLF and decimal commas): read as the
    results file it is, and rewritten with `;` and the BOM for the same spreadsheet (without
    the BOM, Excel shows a UTF-8 file's accents garbled)."""
    path = tmp_path / "eu.results.csv"
    path.write_bytes(
        "\ufeffsku;title;row;status;video_id;duration\r\n"
        "A;Mug, blue;1;submitted;v1;18,5\r\n"
        "B;Cup;2;failed;;\r\n".encode()
    )
    frame = read_results(path)
    assert list(frame["title"]) == ["Mug, blue", "Cup"]
    assert list(frame["status"]) == ["submitted", "failed"]
    assert list(frame["duration"]) == ["18.5", ""]
    write_table(frame, path)
    assert path.read_bytes().startswith(b'\xef\xbb\xbf"sku";"title";"row";"status"')
    assert list(read_results(path)["title"]) == ["Mug, blue", "Cup"]
    plain = tmp_path / "plain.results.csv"  # a file read without one is written without one
    plain.write_bytes(b"sku,row,status\r\nA,1,failed\r\n")
    write_table(read_results(plain), plain)
    assert plain.read_bytes().startswith(b'"sku","row","status"')


def test_a_results_file_saved_as_unicode_text_reads_and_is_rewritten_so(tmp_path: Path) -> None:
    """Excel's "Unicode Text" (UTF-16 with its byte order mark, tab-separated) reads as the
    results file it is, and is written back as it came (retry, status), for the same Excel."""
    path = tmp_path / "r.results.txt"
    path.write_bytes("sku\trow\tstatus\tvideo_id\r\nÄ1\t1\tsubmitted\tv1\r\n".encode("utf-16"))
    frame = read_results(path)
    assert list(frame["sku"]) == ["Ä1"]
    assert list(frame["status"]) == ["submitted"]
    write_table(frame, path)
    written = path.read_bytes()
    assert written.startswith(codecs.BOM_UTF16_LE)
    assert written.decode("utf-16").startswith('"sku"\t"row"\t"status"')
    assert list(read_results(path)["sku"]) == ["Ä1"]


def test_a_results_file_with_its_header_line_repeated_inside_says_so(tmp_path: Path) -> None:
    """Two results files pasted together, the second's header line and all: the line is named
    as a repeated header, not as a row whose `row` is no number."""
    path = tmp_path / "c.results.csv"
    header = "sku,row,status,video_id\n"
    path.write_text(header + "A,1,submitted,v1\n" + header + "B,2,failed,\n")
    with pytest.raises(CatalogError, match="line 3 repeats the header line"):
        read_results(path)


def test_a_results_file_saved_back_with_a_retyped_header_and_empty_lines_reads_as_written(
    tmp_path: Path,
) -> None:
    """A spreadsheet's save: `Status` typed for `status`, `Video ID` for `video_id` (`status`
    refused the file, and `retry` wrote a second id column), and empty lines below the rows (a
    whole line of empty cells, or of separators): the columns are named again, the lines left
    out, and the rows kept as they are."""
    path = tmp_path / "c.results.csv"
    path.write_text("sku,Status,Video ID,row\nA,submitted,v1,1\n,,,\nB,failed,,2\n ,, ,\n,,,\n")
    frame = read_results(path)
    assert list(frame.columns) == ["sku", "status", "video_id", "row"]
    assert list(frame["video_id"]) == ["v1", ""]
    assert list(frame["sku"]) == ["A", "B"]
    assert list(frame["status"]) == ["submitted", "failed"]
