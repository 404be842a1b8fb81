"""Reading catalogs: dialects and formats, normalisation, row problems, templates, pass-through."""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch import payload
from batch.catalog import (
    CatalogOptions,
    CatalogRow,
    check_structure,
    read_catalog,
    read_passthrough,
)
from batch.catalog.readers import csv_batches
from batch.catalog.rows import request_settings_from_json, request_settings_to_json
from batch.catalog.structure import _quoted_break
from batch.errors import CatalogError
from batch.payload import ProductDetails, RequestDefaults, fingerprint, same_text


def rows_of(path: Path, options: CatalogOptions | None = None) -> list[CatalogRow]:
    return [row for batch in read_catalog(path, options or CatalogOptions()) for row in batch.rows]


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def messages(path: Path, row: CatalogRow) -> list[str]:
    return [problem.message(path, row.number) for problem in row.problems]


# ---- CSV dialects ----


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
def test_csv_dialects_are_sniffed(tmp_path: Path, delimiter: str, newline: str, bom: bool) -> None:
    """Comma, semicolon or tab, LF or CRLF, with or without BOM: the same rows come out."""
    lines = [["product_id", "length", "title"], ["NTQ0MTkzNjg", "15", "Mug"], ["MTIz", "", "Cup"]]
    text = newline.join(delimiter.join(line) for line in lines) + newline
    rows = rows_of(write(tmp_path, "c.csv", text, bom=bom))
    assert [row.fields.product_id for row in rows if row.fields] == ["NTQ0MTkzNjg", "MTIz"]
    assert [row.fields.length for row in rows if row.fields] == ["15", "30"]


def test_csv_quoted_fields_with_delimiters_and_newlines(tmp_path: Path) -> None:
    """Quoted cells keep embedded delimiters and newlines, and rows stay aligned; the results
    file gets the cell as written, the request its text with LF line ends."""
    text = 'product_id,title,video_name\r\nA1,"Mug, blue\r\nlarge",{title}\r\nB2,"Say ""hi""",x\r\n'
    path = write(tmp_path, "c.csv", text)
    rows = rows_of(path)
    assert [row.number for row in rows] == [1, 2]
    assert rows[0].fields is not None
    assert rows[0].fields.name == "Mug, blue\nlarge"
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column("title").to_pylist() == ["Mug, blue\r\nlarge", 'Say "hi"']


def test_explicit_delimiter_wins_over_sniffing(tmp_path: Path) -> None:
    """With a given delimiter, a header full of commas is not split on them."""
    path = write(tmp_path, "c.txt", "product_id;note\nA1;a,b,c,d\n")
    rows = rows_of(path, CatalogOptions(delimiter=";"))
    assert rows[0].fields is not None
    assert rows[0].fields.product_id == "A1"


def test_excel_sep_line_declares_the_delimiter_and_is_skipped(tmp_path: Path) -> None:
    """A first line `sep=;` is not the header: its delimiter splits the rows; a different
    --delimiter is refused."""
    path = write(tmp_path, "c.csv", "sep=;\r\nproduct_id;note\r\nA1;a,b\r\n")
    assert check_structure(path, CatalogOptions()) == 1
    table = next(read_passthrough(path, CatalogOptions(delimiter=";")))
    assert table.to_pylist() == [{"product_id": "A1", "note": "a,b"}]
    with pytest.raises(CatalogError, match=r"line 1 declares the delimiter ';' \(sep=;\)"):
        check_structure(path, CatalogOptions(delimiter=","))


def test_passthrough_keeps_csv_cells_as_typed(tmp_path: Path) -> None:
    """Leading zeros, decimals and empty cells reach the results file exactly as typed."""
    path = write(tmp_path, "c.csv", "product_id,sku,price,avatar_id\nA1,00123,9.90,127.0\nA2,,,\n")
    table = next(read_passthrough(path, CatalogOptions()))
    assert table.column_names == ["product_id", "sku", "price", "avatar_id"]
    assert table.to_pylist() == [
        {"product_id": "A1", "sku": "00123", "price": "9.90", "avatar_id": "127.0"},
        {"product_id": "A2", "sku": "", "price": "", "avatar_id": ""},
    ]


# ---- Parquet and JSON Lines ----


def test_nameless_csv_columns_are_left_out_while_empty_and_refused_where_one_holds_text(
    tmp_path: Path,
) -> None:
    """A column with no name (a trailing or doubled delimiter) is read past while its cells are
    empty; the reader itself (files in a store skip the structural pass) names the first row
    with text in one, counting rows across batches."""
    body = "".join(f"A{i},,{i},\n" for i in range(1, 8))
    path = write(tmp_path, "c.csv", "product_id,,length,\n" + body)
    options = CatalogOptions(batch_rows=2)
    tables = list(read_passthrough(path, options))
    assert [t.column_names for t in tables] == [["product_id", "length"]] * 4
    assert sum(t.num_rows for t in tables) == 7
    path.write_text("product_id,,length,\n" + body + "A8,,8,\nA9,,9,  note \n")
    with pytest.raises(
        CatalogError, match=r"c\.csv row 9: column 4 \(after 'length'\) .* '  note '"
    ):
        list(read_catalog(path, options))


def test_parquet_as_pandas_writes_it(tmp_path: Path) -> None:
    """Several row groups, nullable Int64, float ids, categoricals and extra columns are read."""
    frame = pd.DataFrame(
        {
            "product_id": pd.Categorical(["A1", "A2", "A3", "A4", "A5"]),
            "avatar_id": pd.array([127, None, 81, None, 1], dtype="Int64"),
            "music_id": [3.0, None, 40.0, 1.0, 2.0],
            "caption": pd.array([True, None, False, True, False], dtype="boolean"),
            "length": pd.array([15, 30, None, 60, 30], dtype="Int64"),
            "price": [1.5, 2.5, 3.5, 4.5, 5.5],
        }
    )
    path = tmp_path / "c.parquet"
    frame.to_parquet(path, row_group_size=2)
    assert pq.ParquetFile(path).num_row_groups == 3
    rows = rows_of(path, CatalogOptions(batch_rows=3))
    fields = [row.fields for row in rows]
    assert all(field is not None for field in fields)
    assert [f.avatar_id for f in fields if f] == [127, 127, 81, 127, 1]
    assert [f.music_id for f in fields if f] == [3, None, 40, 1, 2]
    assert [f.caption for f in fields if f] == [True, False, False, True, False]
    assert [f.length for f in fields if f] == ["15", "30", "30", "60", "30"]
    tables = list(read_passthrough(path, CatalogOptions(batch_rows=3)))
    assert [t.num_rows for t in tables] == [3, 2]
    assert tables[0].column("price").to_pylist() == [1.5, 2.5, 3.5]


def test_parquet_decimal_columns_as_warehouses_write_them(tmp_path: Path) -> None:
    """Snowflake's, BigQuery's and Spark's NUMBER/DECIMAL columns are read by their digits: ids
    of scale 0 (one past 2^64 too), a length of scale 2; a fraction is still no id."""
    decimal = pa.decimal128
    table = pa.table(
        {
            "product_id": pa.array([Decimal(2**64 + 1), Decimal(7)], decimal(38, 0)),
            "avatar_id": pa.array([Decimal(1), Decimal("2.5")], decimal(10, 1)),
            "music_id": pa.array([Decimal(4), None], decimal(38, 0)),
            "length": pa.array([Decimal("15.00"), Decimal("60.00")], decimal(10, 2)),
            "caption": pa.array([Decimal(1), Decimal(0)], decimal(1, 0)),
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    first, second = rows_of(path)
    assert first.fields is not None
    assert (first.fields.product_id, first.fields.avatar_id, first.fields.music_id) == (
        str(2**64 + 1), 1, 4
    )  # fmt: skip
    assert (first.fields.length, first.fields.caption) == ("15", True)
    assert messages(path, second) == [
        "c.parquet row 2, column 'avatar_id': '2.5' is not a whole-number id; "
        "write the id's digits, e.g. 127"
    ]


def test_parquet_binary_strings_are_read_as_their_text(tmp_path: Path) -> None:
    """Hive's, Impala's and older Spark's strings (BINARY, no UTF-8 annotation) are sent as their
    text, never as Python's b'...'; bytes that are not UTF-8 make their row invalid."""
    binary = pa.binary()
    table = pa.table(
        {
            "product_id": pa.array([b"A1", b"A2"], binary),
            "video_name": pa.array(["Café".encode(), b"x"], binary),
            "language": pa.array([b"english", b"\xff"], binary),
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    first, second = rows_of(path)
    assert first.fields is not None
    assert (first.fields.product_id, first.fields.name, first.fields.language) == (
        "A1", "Café", "english"
    )  # fmt: skip
    assert first.key == "A1"
    assert messages(path, second) == [
        "c.parquet row 2, column 'language': b'\\xff' is bytes that are not UTF-8 text; write text"
    ]


def test_one_binary_cell_not_utf8_leaves_the_others_of_a_template_column_as_text(
    tmp_path: Path,
) -> None:
    """A BINARY column a name template takes, one cell of it Latin-1: that row is refused, and
    the others keep their text (they were all sent as `b'Mug' promo`, each a second render)."""
    table = pa.table(
        {
            "product_id": ["A1", "A2"],
            "title": pa.array([b"Mug", b"L\xe4mp"], pa.binary()),
            "video_name": ["{title} promo"] * 2,
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    first, second = rows_of(path)
    assert first.fields is not None
    assert first.fields.name == "Mug promo"
    assert messages(path, second) == [
        "c.parquet row 2, column 'video_name': '{title} promo' takes column 'title', which "
        "holds b'L\\xe4mp', bytes that are not UTF-8 text; write text"
    ]


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (pa.array([["eco", "steel"], ["glass"]]), "list"),
        (pa.array([{"a": 1}, {"a": 2}]), "struct"),
        (pa.array([[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64())), "map"),
    ],
)
def test_a_template_taking_a_list_column_is_refused(
    tmp_path: Path, cells: pa.Array, kind: str
) -> None:
    """A list, struct or map cell in a name template: the name would be Python's text of it
    (`['eco', 'steel'] promo`), and the results file's JSON of it another request."""
    table = pa.table({"product_id": ["A1", "A2"], "tags": cells, "video_name": ["{tags}!"] * 2})
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    for row in rows_of(path):
        assert messages(path, row) == [
            f"c.parquet row {row.number}, column 'video_name': '{{tags}}!' takes column "
            f"'tags', which holds a {kind}, not text; give the name a column of text"
        ]


@pytest.mark.parametrize("name", ["c.parquet", "c.jsonl"])
def test_a_typed_catalog_without_product_ids_is_not_told_of_lines(
    tmp_path: Path, name: str
) -> None:
    """Parquet and JSON Lines name their columns themselves: no first line, no title lines
    above it to delete."""
    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.table({"product.id": ["A1"]}), path)
    else:
        path.write_text('{"product.id": "A1"}\n')
    with pytest.raises(CatalogError) as raised:
        rows_of(path)
    assert str(raised.value).startswith(
        f"{path}: has no product_id column (nor product_url) among its columns ('product.id'); "
        "name the column product_id, or map yours in the [columns] config table"
    )


def latin1_in_a_string_column(values: list[bytes]) -> pa.Array:
    """A STRING column holding bytes that are not UTF-8, as Hive or Impala leave them (pyarrow
    itself refuses to build one, so it is assembled from its buffers)."""
    offsets = pa.array([sum(map(len, values[:n])) for n in range(len(values) + 1)], pa.int32())
    data = pa.py_buffer(b"".join(values))
    return pa.Array.from_buffers(pa.string(), len(values), [None, offsets.buffers()[1], data])


@pytest.mark.parametrize("column", ["video_name", "brand"])
def test_parquet_text_that_is_not_utf8_is_refused_before_anything_is_sent(
    tmp_path: Path, column: str
) -> None:
    """Latin-1 bytes in a later row group of a STRING column, a request column or one passed
    through: the structural pass names the row, column and bytes (Python would fail on them
    mid-run, after paying for the rows before)."""
    names = [f"Item {n}".encode() for n in range(6)]
    names[4] = b"Caf\xe9 cr\xe8me"
    table = pa.table(
        {"product_id": [f"P{n}" for n in range(6)], column: latin1_in_a_string_column(names)}
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=2)
    with pytest.raises(CatalogError) as raised:
        check_structure(path, CatalogOptions())
    assert str(raised.value) == (
        f"{path}: row 5, column {column!r}: b'Caf\\xe9 cr\\xe8me' is not UTF-8 text (byte 3), "
        "though the column says it is; write the file again with its text as UTF-8"
    )


def test_a_parquet_page_damaged_in_a_later_row_group_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    """The structural pass decodes every page, not only the footer: a damaged page past the
    first rows (a bad copy, a writer's bug) would stop a run after those rows were paid for."""
    path = tmp_path / "c.parquet"
    names = [f"Product name number {n:04d}" for n in range(400)]
    table = pa.table({"product_id": [f"P{n}" for n in range(400)], "video_name": names})
    pq.write_table(table, path, row_group_size=200, compression="snappy", use_dictionary=False)
    page = pq.ParquetFile(path).metadata.row_group(1).column(1)
    data = bytearray(path.read_bytes())
    start, end = page.data_page_offset + 40, page.data_page_offset + page.total_compressed_size
    data[start : end - 10] = b"\xff" * (end - 10 - start)
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match=r"c\.parquet: cannot read it as Parquet"):
        check_structure(path, CatalogOptions())


def test_a_parquet_page_that_fails_its_checksum_is_refused(tmp_path: Path) -> None:
    """A page whose bytes changed after Spark or parquet-mr wrote its CRC (a bad disk or copy)
    still decodes, as other text: it is refused, not sent as `BoXtle` or another product id."""
    path = tmp_path / "c.parquet"
    table = pa.table({"product_id": ["P1"], "video_name": ["Bottle"]})
    pq.write_table(table, path, compression="none", use_dictionary=False, write_page_checksum=True)
    data = path.read_bytes()
    at = data.index(b"\x06\x00\x00\x00Bottle")  # the data page: the text after its length
    path.write_bytes(data[: at + 6] + b"X" + data[at + 7 :])
    assert pq.read_table(path).column("video_name").to_pylist() == ["BoXtle"]
    with pytest.raises(CatalogError, match=r"c\.parquet: cannot read it as Parquet: .*CRC"):
        check_structure(path, CatalogOptions())


def test_parquet_float_id_with_fraction_is_a_row_problem(tmp_path: Path) -> None:
    """127.5 in a float column is not an avatar id."""
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"product_id": ["A1", "A2"], "avatar_id": [127.0, 127.5]}), path)
    rows = rows_of(path)
    assert rows[0].fields is not None
    assert rows[0].fields.avatar_id == 127
    assert messages(path, rows[1]) == [
        "c.parquet row 2, column 'avatar_id': '127.5' is not a whole-number id; "
        "write the id's digits, e.g. 127"
    ]


def test_ids_reach_the_request_exactly_as_typed(tmp_path: Path) -> None:
    """A 17-digit avatar id keeps every digit; Parquet int64 ids stay exact; `1e3` is refused."""
    path = write(
        tmp_path, "c.csv", "product_id,avatar_id\nP1,12345678901234567\nP2,123.0\nP3,1e3\n"
    )
    long_id, excel_id, exponent = rows_of(path)
    assert long_id.fields is not None
    assert long_id.fields.avatar_id == 12345678901234567
    assert excel_id.fields is not None
    assert excel_id.fields.avatar_id == 123
    assert messages(path, exponent) == [
        "c.csv row 3, column 'avatar_id': '1e3' is not a whole-number id; "
        "write the id's digits, e.g. 127"
    ]
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"product_id": ["P1"], "music_id": [2**62 + 1]}), parquet)
    (row,) = rows_of(parquet)
    assert row.fields is not None
    assert row.fields.music_id == 2**62 + 1


def test_typed_parquet_cells_are_quoted_as_people_read_them(tmp_path: Path) -> None:
    """A duration, a date or a float in a message reads as the cell shows, never a Python repr."""
    path = tmp_path / "c.parquet"
    table = pa.table(
        {
            "product_id": ["A1"],
            "length": pa.array([45_000_000], pa.duration("us")),
            "language": pa.array([date(2026, 11, 26)], pa.date32()),
            "caption": [2.5],
        }
    )
    pq.write_table(table, path)
    assert messages(path, rows_of(path)[0]) == [
        "c.parquet row 1, column 'language': '2026-11-26' is not a supported language; "
        "write its name, in any case, such as english or French (or its code: en, fr-CA)",
        "c.parquet row 1, column 'length': '0:00:45' is not a video length; use 15, 30 or 60",
        "c.parquet row 1, column 'caption': '2.5' is not a caption switch; use yes or no",
    ]


def test_parquet_nan_is_an_empty_cell(tmp_path: Path) -> None:
    """A float NaN (pandas' missing number) takes the default, in number and text columns alike."""
    path = tmp_path / "c.parquet"
    nan = float("nan")
    pq.write_table(
        pa.table({"product_id": ["A1"], "length": [nan], "voice_id": [nan], "music_id": [nan]}),
        path,
    )
    (row,) = rows_of(path, CatalogOptions(defaults=RequestDefaults(length="15")))
    assert row.problems == ()
    assert row.fields is not None
    assert (row.fields.length, row.fields.voice_id, row.fields.music_id) == (
        "15",
        "en-US-ChristopherNeural",
        None,
    )


def test_a_json_list_in_a_column_of_one_value_is_never_sent(tmp_path: Path) -> None:
    """A JSON Lines list where one id, choice or number goes, typed as a list column or mixed
    into a text column, makes the row invalid: not its first item, not its items joined.
    image_urls still takes a list, and "[]" is still an empty cell."""
    lines = [
        {"product_id": "A1", "avatar_id": [10], "image_urls": ["https://x/a.jpg"]},
        {"product_id": ["A2", "A3"], "avatar_id": []},
        {"product_id": "A4", "voice_id": "en-US-x"},
        {"product_id": "A5", "voice_id": ["en-US-x"]},
    ]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    rows = rows_of(path, CatalogOptions())
    problems = [[(p.column, p.value) for p in row.problems] for row in rows]
    assert problems == [
        [("avatar_id", "[10]")],
        [("product_id", '["A2", "A3"]')],  # a mixed column: the reader's JSON text
        [],
        [("voice_id", '["en-US-x"]')],
    ]
    assert "is a JSON list or object; the column takes one value" in rows[0].problems[0].reason
    assert [row.fingerprint is None for row in rows] == [True, True, False, True]


def test_invisible_characters_copied_into_an_id_are_not_sent(tmp_path: Path) -> None:
    """A zero-width space, a byte order mark or a direction mark pasted with an id or a choice
    is dropped from the request (the id people see is the one sent); free text keeps it."""
    text = (
        "product_id,avatar_id,language,video_name\n"
        "\u200bP1,127\u2060,\u200eEnglish\ufeff,Hi \U0001f469\u200d\U0001f4bb\n"
    )
    (row,) = rows_of(write(tmp_path, "c.csv", text), CatalogOptions())
    assert row.problems == ()
    assert row.fields is not None
    fields = row.fields
    assert (fields.product_id, fields.avatar_id, fields.language) == ("P1", 127, "english")
    assert row.fields.name == "Hi \U0001f469\u200d\U0001f4bb"


@pytest.mark.parametrize("mark", ["\ufe0f", "\u034f", "\u3164", "\u1160", "\u17b4"])
def test_other_characters_unicode_ignores_are_dropped_from_an_id_and_its_key(
    tmp_path: Path, mark: str
) -> None:
    """A variation selector (an emoji keyboard's U+FE0F), a grapheme joiner or a Hangul filler
    in an id is as invisible as a zero-width space: dropped from the request and the row key.
    The row keeps the fingerprint earlier versions gave it, with the mark, so a job they sent
    is found (`earlier_fingerprints`). Free text keeps a variation selector at its end (it
    ends an emoji: `❤️`); the others there are trimmed, like a zero-width space."""
    text = f"product_id,video_name\nP{mark}1,Hi \u2764{mark}\n"
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    (row,) = batch.rows
    assert row.fields is not None
    name = f"Hi \u2764{mark}" if mark == "\ufe0f" else "Hi \u2764"
    assert (row.fields.product_id, row.key, row.fields.name) == ("P1", "P1", name)
    earlier = row.fields._replace(product_id=f"P{mark}1", name=f"Hi \u2764{mark}")
    assert fingerprint(earlier) in batch.rows.earlier_fingerprints(0)


def test_a_product_id_holding_a_control_character_is_invalid(tmp_path: Path) -> None:
    """A NUL (a JSON `\\u0000`), a tab or an escape in a product id is never sent to fail."""
    lines = [json.dumps({"product_id": pid}) for pid in ("P\x001", "P\t1", "P\x1b1", "P1")]
    rows = rows_of(write(tmp_path, "c.jsonl", "\n".join(lines) + "\n"))
    assert [row.fields is None for row in rows] == [True, True, True, False]
    assert "holds a control character" in rows[0].problems[0].reason


def test_a_header_line_repeated_below_the_first_is_an_invalid_row(tmp_path: Path) -> None:
    """Two exports joined with `cat`: the second header is no product to send; the rows around
    it are read as usual. A title merely named like its column is no header."""
    text = "product_id,Title\nA1,a\n product_id ,TITLE\nA2,b\nA3,title\n"
    rows = rows_of(write(tmp_path, "c.csv", text), CatalogOptions())
    assert [row.fingerprint is None for row in rows] == [False, True, False, False]
    assert [(p.column, p.value) for p in rows[1].problems] == [("product_id", " product_id ")]
    assert "repeats the header line" in rows[1].problems[0].reason


def test_a_label_or_hint_line_under_the_header_is_an_invalid_row(tmp_path: Path) -> None:
    """A second header line in the shop's own words (`ProductID`, `Produkt-ID`, `ID`) or a hint
    line (`required`) is no product: sent, each cost a POST refused 10104 night after night. An
    id that merely holds such letters is an id."""
    labels = [
        "ProductID",
        "Produkt-ID",
        "ID",
        "required",
        "Product:",
        "Item ID",
        "Pflicht",
        "String",
    ]
    ids = ["NTQ0MTkzNjg", "UHJvZHVjdElE", "aWQ"]
    lines = "".join(f"{cell},x\n" for cell in labels + ids)
    rows = rows_of(write(tmp_path, "c.csv", "product_id,Title\n" + lines), CatalogOptions())
    assert [row.fingerprint is None for row in rows] == [True] * len(labels) + [False] * len(ids)
    assert all("labels the columns" in row.problems[0].reason for row in rows[: len(labels)])


def test_an_excel_tables_total_row_in_csv_is_invalid_whatever_its_id_cell(tmp_path: Path) -> None:
    """An Excel table's Total Row, as its CSV export keeps it: `Total` under the first column
    (the sku), a COUNT under product_id. It was sent as product 3, refused 10104 every night.
    A sku merely holding the word is no label."""
    text = (
        "sku,product_id,price\nS1,NTQ0MTkzNjg,9\nTotal,3,9\nTotal bag,NTIzMzc0NjI5,3\n"
        "TOTAL,MTUxMDk2MTAzOA,24\n"  # TotalEnergies' motor oil: a brand beside a product's id
    )
    rows = rows_of(write(tmp_path, "c.csv", text), CatalogOptions())
    assert [row.fingerprint is None for row in rows] == [False, True, False, False]
    assert [(p.column, p.value) for p in rows[1].problems] == [("sku", "Total")]
    assert "totals row" in rows[1].problems[0].reason


def test_jsonl_with_mixed_types(tmp_path: Path) -> None:
    """JSON Lines where a column holds 30 in one line and "30s" in another still reads."""
    lines = [
        {"product_id": "A1", "length": 30, "caption": True, "tags": ["x"]},
        {},
        {"product_id": "A2", "length": "15s", "caption": "no"},
    ]
    text = "\n".join("" if not line else json.dumps(line) for line in lines) + "\n"
    path = write(tmp_path, "c.jsonl", text)
    rows = rows_of(path, CatalogOptions(batch_rows=1))
    assert [(r.number, r.fields.length if r.fields else None) for r in rows] == [
        (1, "30"),
        (2, "15"),
    ]
    assert [r.fields.caption for r in rows if r.fields] == [True, False]


def test_jsonl_key_first_seen_after_the_first_batch_is_read(tmp_path: Path) -> None:
    """A key that appears only in a later batch is a column: its values are used and checked."""
    lines = [{"product_id": "A1"}, {"product_id": "A2"}, {"product_id": "A3", "length": 15}]
    lines.append({"product_id": "A4", "avatar_id": "abc", "note": "late"})
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    options = CatalogOptions(batch_rows=2)
    rows = rows_of(path, options)
    assert [row.fields.length if row.fields else None for row in rows] == ["30", "30", "15", None]
    assert messages(path, rows[3]) == [
        "c.jsonl row 4, column 'avatar_id': 'abc' is not a whole-number id; "
        "write the id's digits, e.g. 127"
    ]
    tables = list(read_passthrough(path, options))
    columns = ["product_id", "length", "avatar_id", "note"]
    assert [table.column_names for table in tables] == [columns, columns]
    assert tables[1].column("note").to_pylist() == [None, "late"]


@pytest.mark.parametrize("scan_rows", [2, 10_000])
def test_jsonl_column_has_one_type_in_every_batch_when_its_values_change_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_rows: int
) -> None:
    """Ints then "30s", ints then 1.5, a batch all null, lists then other lists, ints then
    objects: each JSON Lines column has one Arrow type, the same in every batch."""
    monkeypatch.setattr("batch.catalog.readers._KEY_SCAN_ROWS", scan_rows)
    lines = [
        {"product_id": "A1", "length": 30, "price": 10, "music_id": None, "tags": [], "meta": 1},
        {"product_id": "A2", "length": 15, "price": 12, "caption": True, "tags": [], "meta": 2},
        {"product_id": "A3", "length": "30s", "price": 1.5, "music_id": 3, "tags": ["y"]},
        {"product_id": "A4", "length": 15, "price": 2, "music_id": 40, "meta": {"k": [1]}},
    ]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    tables = list(read_passthrough(path, CatalogOptions(batch_rows=2)))
    expected = pa.schema(
        [
            ("product_id", pa.string()),
            ("length", pa.string()),
            ("price", pa.float64()),
            ("music_id", pa.int64()),
            ("tags", pa.list_(pa.string())),
            ("meta", pa.string()),
            ("caption", pa.bool_()),
        ]
    )
    assert [table.schema for table in tables] == [expected, expected]
    combined = pa.concat_tables(tables)
    assert combined.column("length").to_pylist() == ["30", "15", "30s", "15"]
    assert combined.column("price").to_pylist() == [10.0, 12.0, 1.5, 2.0]
    assert combined.column("meta").to_pylist() == ["1", "2", None, '{"k": [1]}']
    rows = rows_of(path, CatalogOptions(batch_rows=2))
    assert [(r.fields.length, r.fields.music_id) for r in rows if r.fields] == [
        ("30", None),
        ("15", None),
        ("30", 3),
        ("15", 40),
    ]


def test_jsonl_ints_too_wide_for_their_column_type_are_kept_as_text(tmp_path: Path) -> None:
    """An int past int64, or past 2**53 beside floats, makes its column text, every digit kept."""
    lines = [
        {"product_id": "A1", "huge": 1, "wide": 2**53 + 1, "avatar_id": 2**53 + 1},
        {"product_id": "A2", "huge": 2**64, "wide": 1.5, "avatar_id": 127},
    ]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    tables = list(read_passthrough(path, CatalogOptions(batch_rows=1)))
    for table in tables:
        assert table.schema.field("huge").type == pa.string()
        assert table.schema.field("wide").type == pa.string()
        assert table.schema.field("avatar_id").type == pa.int64()
    combined = pa.concat_tables(tables)
    assert combined.column("huge").to_pylist() == ["1", str(2**64)]
    assert combined.column("wide").to_pylist() == [str(2**53 + 1), "1.5"]
    assert [row.fields.avatar_id for row in rows_of(path) if row.fields] == [2**53 + 1, 127]


def test_jsonl_bad_line_is_a_catalog_error(tmp_path: Path) -> None:
    """A line that is not JSON stops the read and names the line."""
    path = write(tmp_path, "c.ndjson", '{"product_id": "A1"}\n{oops\n')
    with pytest.raises(CatalogError, match=r"c\.ndjson line 2: is not JSON"):
        rows_of(path)


def test_jsonl_key_given_twice_in_a_record_is_refused(tmp_path: Path) -> None:
    """`{"length": 15, "length": 60}`: json keeps the last silently; which was meant is not
    known, so the file is refused, naming the line and key (a CSV's repeated header is too)."""
    path = write(
        tmp_path,
        "c.jsonl",
        '{"product_id": "A1"}\n{"product_id": "A2", "length": 15, "length": 60}\n',
    )
    with pytest.raises(CatalogError) as raised:
        check_structure(path, CatalogOptions())
    assert str(raised.value) == (
        f"{path} line 2: the key 'length' appears twice in one object; keep the one value meant"
    )


@pytest.mark.parametrize("escape", ["\\ud83d", "\\uDE00 tail", "\\ud83d\\ud83d"])
def test_jsonl_half_of_a_character_is_refused_naming_its_line(tmp_path: Path, escape: str) -> None:
    """A lone surrogate escape (an emoji cut in two by a program) is no text a request can
    carry: refused with its line before anything is sent, not a UnicodeEncodeError; a whole
    escaped pair is the emoji, and reads."""
    lines = ['{"product_id": "A1", "video_name": "Summer \\ud83d\\ude00"}']
    lines.append(f'{{"product_id": "A2", "video_name": "Summer sale {escape}"}}')
    path = write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(CatalogError, match=r"c\.jsonl line 2: holds half of a character"):
        check_structure(path, CatalogOptions())
    path.write_text(lines[0] + "\n")
    assert [row.fields.name for row in rows_of(path) if row.fields] == ["Summer \U0001f600"]


# ---- normalisation, defaults, precedence ----


def test_values_people_type_are_normalised(tmp_path: Path) -> None:
    """Aliases become the API's canonical values."""
    text = (
        "product_id,length,aspect_ratio,caption,avatar_id,avatar_type,script_style,language,music_id\n"
        "A1,30s,9:16,yes,127.0,public,top 3 reasons,French,13.0\n"
        "A2, 15 ,16:9,Off,81,1,dont worry,ENGLISH,0\n"
        "A3,60.0,1:1,Y,2,0,Light-Marketing,german,\n"
    )
    rows = rows_of(write(tmp_path, "c.csv", text))
    got = [
        (
            f.length,
            f.aspect_ratio,
            f.caption,
            f.avatar_id,
            f.avatar_type,
            f.script_style,
            f.language,
            f.music_id,
        )
        for f in (row.fields for row in rows)
        if f
    ]
    assert got == [
        ("30", "portrait", True, 127, 0, "Top 3 reasons", "french", 13),
        ("15", "landscape", False, 81, 1, "Don't Worry", "english", 0),
        ("60", "square", True, 2, 0, "Light marketing", "german", None),
    ]


def test_empty_cells_fall_back_to_defaults(tmp_path: Path) -> None:
    """Empty or blank cells take the defaults; non-empty values win over them."""
    defaults = RequestDefaults(
        length="15", voice_id="fr-FR-DeniseNeural", visual_style="Dynamic Showcase"
    )
    path = write(
        tmp_path, "c.csv", "product_id,length,voice_id\nA1,,  \nA2,60,de-DE-ConradNeural\n"
    )
    rows = rows_of(path, CatalogOptions(defaults=defaults))
    first, second = (row.fields for row in rows)
    assert first is not None
    assert second is not None
    assert (first.length, first.voice_id, first.visual_style) == (
        "15",
        "fr-FR-DeniseNeural",
        "Dynamic Showcase",
    )
    assert (second.length, second.voice_id) == ("60", "de-DE-ConradNeural")
    assert (first.avatar_id, first.script_style, first.language) == (127, "Storytime", "english")


def test_missing_value_spellings_are_empty_cells_except_in_free_text(tmp_path: Path) -> None:
    """NA, NULL, None, nan, N/A and - (any case) take the default; a title keeps its text but
    for what data tools write for a missing value (`NA`, `None`)."""
    text = (
        "product_id,length,caption,avatar_id,voice_id,music_id,language,video_name,product_url\n"
        "P1,NA,null,None,nan,N/A,-,NA,\n"
        "P2, <NA> ,NaN,na,NONE,NULL,n/a,None,\n"
        "NULL,30,,,,,,,https://shop.example/p3\n"
    )
    rows = rows_of(write(tmp_path, "c.csv", text))
    fields = [row.fields for row in rows]
    default = ("30", False, 127, "en-US-ChristopherNeural", None, "english")
    for got in fields[:2]:
        assert got is not None
        assert (got.length, got.caption, got.avatar_id, got.voice_id) == default[:4]
        assert (got.music_id, got.language) == default[4:]
    assert [got.name for got in fields[:2] if got] == [None, None]
    from_url = fields[2]
    assert from_url is not None
    assert from_url.product_id is None
    assert from_url.product is not None
    assert from_url.product.url == "https://shop.example/p3"


def test_a_database_null_in_free_text_is_missing_not_the_text_sent(tmp_path: Path) -> None:
    """SQL Server exports a null as `NULL`, MySQL and Hive as `\\N`: a script or name "NULL"
    was never meant, so those two (exactly) are missing in free-text columns too; `Null` or
    `Nothing` there stay text."""
    text = "product_id,override_script,video_name\nP1,NULL,\\N\nP2,Null,Nothing\n"
    first, second = (row.fields for row in rows_of(write(tmp_path, "c.csv", text)))
    assert first is not None
    assert second is not None
    assert (first.override_script, second.override_script) == (None, "Null")
    assert first.name != "\\N"
    assert second.name == "Nothing"


@pytest.mark.parametrize("spelled", ["NULL", "N/A", "NA", "-", "None", "nan"])
def test_a_product_id_that_spells_missing_is_never_sent(tmp_path: Path, spelled: str) -> None:
    """`NULL` is not a product id: the row is invalid, and the message quotes the cell."""
    path = write(tmp_path, "c.csv", f"product_id,length\n{spelled},30\n")
    (row,) = rows_of(path)
    assert row.fields is None
    assert messages(path, row) == [
        f"c.csv row 1, column 'product_id': {spelled!r} stands for an empty cell; "
        "every row needs a product_id (or a product_url)"
    ]


def test_exported_spreadsheet_errors_are_refused_in_every_request_column(tmp_path: Path) -> None:
    """`#REF!` text from a CSV export is a failed formula, in free text too, never sent."""
    path = write(tmp_path, "c.csv", "product_id,voice_id,video_name\nP1, #ref! ,#VALUE!\n")
    (row,) = rows_of(path)
    fix = "(a formula failed); fix the formula or clear the cell"
    assert messages(path, row) == [
        f"c.csv row 1, column 'voice_id': the spreadsheet cell holds the error #ref! {fix}",
        f"c.csv row 1, column 'video_name': the spreadsheet cell holds the error #VALUE! {fix}",
    ]


@pytest.mark.parametrize(
    "error", ["#NV", "#WERT!", "#BEZUG!", "#VALEUR!", "#NOM?", "#¡VALOR!", "#NOMBRE?", "Err:502"]
)
def test_spreadsheet_errors_exported_by_excel_in_other_languages_are_refused(
    tmp_path: Path, error: str
) -> None:
    """A German, French or Spanish Excel exports a failed formula in its own language (`#NV`
    for `#N/A`), LibreOffice as `Err:502`: refused as the English text is, never read aloud as
    a script or put in a video's name."""
    path = write(
        tmp_path,
        "c.csv",
        f"product_id,override_script,title,video_name\nP1,{error},{error},{{title}} promo\n",
    )
    (row,) = rows_of(path)
    assert row.fields is None
    assert {problem.column for problem in row.problems} == {"override_script", "video_name"}
    if error.upper() != error or error.startswith("Err:"):
        return
    path = write(tmp_path, "c.csv", f"product_id,title,video_name\nP1,{error.lower()},{{title}}\n")
    (row,) = rows_of(path)
    assert row.fields is not None  # Excel writes its errors in its own case: `#nv` is a hashtag


def test_every_row_problem_has_its_exact_message(tmp_path: Path) -> None:
    """Each invalid value is reported with file, row, column (as spelled), value and reason."""
    text = (
        "product_id,Length,aspect_ratio,caption,avatar_id,avatar_type,music_id,script_style,language,webhook_url\n"
        "A1,45,4:3,maybe,127.5,2,-1,Funny,klingon,ftp://x\n"
        ",15,,,,,,,,\n"
    )
    path = write(tmp_path, "catalog.csv", text)
    bad, missing = rows_of(path)
    assert bad.fields is None
    assert bad.fingerprint is None
    assert messages(path, bad) == [
        "catalog.csv row 1, column 'avatar_id': '127.5' is not a whole-number id; "
        "write the id's digits, e.g. 127",
        "catalog.csv row 1, column 'avatar_type': '2' is not an avatar type; "
        "use 0 (public) or 1 (custom)",
        "catalog.csv row 1, column 'music_id': '-1' is not a valid id; ids are 0 or more",
        "catalog.csv row 1, column 'script_style': 'Funny' is not a script style; use one of "
        "Don't Worry, Storytime, Discovery, Data, Top 3 reasons, Light marketing",
        "catalog.csv row 1, column 'language': 'klingon' is not a supported language; "
        "write its name, in any case, such as english or French (or its code: en, fr-CA)",
        "catalog.csv row 1, column 'Length': '45' is not a video length; use 15, 30 or 60",
        "catalog.csv row 1, column 'aspect_ratio': '4:3' is not an aspect ratio; "
        "use portrait (9:16), landscape (16:9) or square (1:1)",
        "catalog.csv row 1, column 'caption': 'maybe' is not a caption switch; use yes or no",
        "catalog.csv row 1, column 'webhook_url': 'ftp://x' is not an http(s) URL",
    ]
    assert [(p.column, p.value) for p in bad.problems][:2] == [
        ("avatar_id", "127.5"),
        ("avatar_type", "2"),
    ]
    assert messages(path, missing) == [
        "catalog.csv row 2, column 'product_id': is empty; "
        "every row needs a product_id (or a product_url)"
    ]
    assert missing.key == "row 2"


def test_valid_rows_carry_their_fingerprint(tmp_path: Path) -> None:
    """A valid row's fingerprint is the payload fingerprint of its fields."""
    rows = rows_of(write(tmp_path, "c.csv", "product_id\nA1\n"))
    assert rows[0].fields is not None
    assert rows[0].fingerprint == fingerprint(rows[0].fields)


def test_fingerprints_built_a_column_at_a_time_equal_the_per_row_fingerprint(
    tmp_path: Path,
) -> None:
    """Every valid row's fingerprint equals payload.fingerprint of its fields, whatever the
    values: escapes, empty cells and defaults, templates, numbers, products without an id."""
    text = (
        "product_id,length,aspect_ratio,caption,avatar_id,avatar_type,voice_id,music_id,"
        "script_style,language,visual_style,override_script,video_name,title,product_url\n"
        'A1,30s,9:16,yes,127.0,1,v|1,3,top 3 reasons,French,Neon,"say ""hi""",{title},a|b\\c,\n'
        "A1,,,,,,,,,,,,,,\n"
        "B+2,60,square,no,5,0,,,,english,,x|y\\z,Sale: {title} ({product_id}),-,\n"
        ",,,,,,,,,,,,plain,t,https://shop.example/p|1\n"
        "C3,45,,,,,,,,,,,{missing},t,\n"
        "D4,15,landscape,0,,public,,0,Discovery,,,,,'',\n"
    )
    rows = rows_of(write(tmp_path, "c.csv", text))
    valid = [row for row in rows if row.fields is not None]
    assert len(valid) == 5
    for row in valid:
        assert row.fields is not None
        assert row.fingerprint == fingerprint(row.fields), row.number
    assert len({row.fingerprint for row in valid}) == 5


def test_products_from_urls_are_carried(tmp_path: Path) -> None:
    """A row with product_url and no product_id carries the product details to create."""
    text = (
        "product_id,product_url,product_name,description,image_urls\n"
        ",https://shop.example/mug,Mug,A mug,https://img/1.jpg|https://img/2.jpg\n"
        ",not-a-url,,,\n"
    )
    path = write(tmp_path, "c.csv", text)
    good, bad = rows_of(path)
    assert good.fields is not None
    assert good.fields.product_id is None
    assert good.fields.product == ProductDetails(
        "https://shop.example/mug", "Mug", "A mug", None, ("https://img/1.jpg", "https://img/2.jpg")
    )
    assert good.key == "row 1"  # the default key is the (empty) product_id
    assert (
        messages(path, bad)[0]
        == "c.csv row 2, column 'product_url': 'not-a-url' is not an http(s) URL"
    )


def test_an_empty_product_id_is_never_made_a_product_from_its_name(tmp_path: Path) -> None:
    """In a catalog of product ids, a row with no id but a product name is invalid (a product
    created from a shop's name column would be paid a video); a catalog without a product_id
    column makes its products from their names and details."""
    with_ids = write(tmp_path, "c.csv", "product_id,Product Name\nA1,Mug\n,Lamp\n")
    first, second = rows_of(with_ids)
    assert first.fields is not None
    assert second.fields is None
    assert messages(with_ids, second) == [
        "c.csv row 2, column 'product_id': is empty; every row needs a product_id (or a "
        "product_url)"
    ]
    by_name = write(tmp_path, "n.csv", "product_name,description\nLamp,A lamp\n")
    (row,) = rows_of(by_name)
    assert row.fields is not None
    assert row.fields.product == ProductDetails(None, "Lamp", "A lamp", None, ())


# ---- templates ----


def test_video_name_templates(tmp_path: Path) -> None:
    """Templates use original headers or canonical names; {{ escapes; plain text is used as is."""
    text = (
        "SKU,Title,video_name\n"
        "A1,Mug,{Title} - {sku}\n"
        "A2,Cup,{{promo}} {title}\n"
        "A3,Pan,Plain name\n"
        "A4,Pot,{product_id}\n"
        "A5,Lid,{colour}\n"
        "A6,Jar,{Title\n"
    )
    path = write(tmp_path, "c.csv", text)
    rows = rows_of(path, CatalogOptions(columns={"sku": "product_id"}))
    assert [row.fields.name for row in rows[:4] if row.fields] == [
        "Mug - A1",
        "{promo} Cup",
        "Plain name",
        "A4",
    ]
    assert messages(path, rows[4]) == [
        "c.csv row 5, column 'video_name': template '{colour}' names column 'colour', "
        "which the catalog does not have"
    ]
    assert messages(path, rows[5])[0].startswith(
        "c.csv row 6, column 'video_name': template '{Title' is malformed"
    )


def test_default_video_name_template_applies_to_rows_without_a_name(tmp_path: Path) -> None:
    """The configured default name may be a template too."""
    path = write(tmp_path, "c.csv", "product_id,title,video_name\nA1,Mug,\nA2,Cup,Own\n")
    defaults = RequestDefaults(video_name="{title} ({product_id})")
    rows = rows_of(path, CatalogOptions(defaults=defaults))
    assert [row.fields.name for row in rows if row.fields] == ["Mug (A1)", "Own"]


# ---- column mapping and keys ----


def test_column_mapping_ignores_case_and_spaces(tmp_path: Path) -> None:
    """Mapped and canonical headers match whatever their case and surrounding spaces."""
    path = write(tmp_path, "c.csv", " Product ID , AVATAR ,  Length \nA1,81,15\n")
    options = CatalogOptions(
        columns={"product id": "product_id", "Avatar": "avatar_id"}, row_key="PRODUCT ID"
    )
    rows = rows_of(path, options)
    assert rows[0].fields is not None
    assert (rows[0].fields.product_id, rows[0].fields.avatar_id, rows[0].fields.length) == (
        "A1",
        81,
        "15",
    )
    assert rows[0].key == "A1"


def test_headers_match_with_spaces_dashes_or_invisible_characters_for_underscores(
    tmp_path: Path,
) -> None:
    """`Product ID`, `Aspect Ratio`, `video-name` and a header holding a zero-width space are
    their request columns, as people and spreadsheets write them; never passed through."""
    path = write(
        tmp_path, "c.csv", "Product ID,Aspect Ratio,video-name,length\u200b\nA1,9:16,Mug,60\n"
    )
    fields = rows_of(path)[0].fields
    assert fields is not None
    assert (fields.product_id, fields.aspect_ratio, fields.name, fields.length) == (
        "A1", "portrait", "Mug", "60"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("header", "meant"),
    [("Captions", "caption"), ("Video Length", "length"), ("langauge", "language"),
     ("Music", "music_id"), ("voices", "voice_id"), ("video_spec.length", "length"),
     ("script.language", "language"), ("audio.music_id", "music_id"), ("Length (s)", "length"),
     ("Caption (Y/N)", "caption"), ("Aspect Ratio (9:16 / 16:9)", "aspect_ratio"),
     ("Avatar ID (optional)", "avatar_id"), ("Aspect", "aspect_ratio"), ("ratio", "aspect_ratio"),
     ("Subtitles", "caption"), ("Video Title", "video_name"), ("Script", "override_script"),
     ("video_spec.aspect_ratio", "aspect_ratio"), ("Duration", "length"),
     ("Duration (s)", "length"), ("Seconds", "length"), ("Orientation", "aspect_ratio"),
     ("Closed Captions", "caption"), ("Presenter", "avatar_id"), ("Narrator", "voice_id"),
     ("Locale", "language")],
)  # fmt: skip
def test_a_header_spelt_almost_as_a_missing_request_column_is_refused(
    tmp_path: Path, header: str, meant: str
) -> None:
    """Its cells would be passed through unused and every row sent with the default: refused,
    naming the column meant and the mapping that would use it."""
    path = write(tmp_path, "c.csv", f"product_id,{header}\nA1,x\n")
    refused = re.escape(f"column '{header}' is not a request column")
    with pytest.raises(CatalogError, match=refused) as caught:
        rows_of(path)
    assert f'("{header}" = "{meant}")' in str(caught.value)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_column_shaped_like_the_api_requests_objects_is_refused(tmp_path: Path, fmt: str) -> None:
    """`video_spec`, `script` or `audio` as an object (JSON Lines) or a struct (Parquet) holds
    several request fields in one cell, none of which is read: refused, naming the fields, rather
    than every row paid with the defaults."""
    record = {"product_id": "A1", "video_spec": {"length": "15", "aspect_ratio": "portrait"}}
    if fmt == "jsonl":
        path = write(tmp_path, "c.jsonl", json.dumps(record) + "\n")
    else:
        path = tmp_path / "c.parquet"
        pq.write_table(pa.Table.from_pylist([record]), path)
    with pytest.raises(CatalogError) as caught:
        rows_of(path)
    assert str(caught.value) == (
        f"{path}: column 'video_spec' is shaped like the API request's video_spec object, but "
        "jogg-batch reads one column a field (length, aspect_ratio, caption, video_name), so "
        "every row would be sent with the defaults; give each field its own column, or rename "
        "'video_spec' if it is not meant so"
    )


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_struct_holding_a_request_field_is_refused_and_a_products_own_passes(
    tmp_path: Path, fmt: str
) -> None:
    """A struct (or JSON object) column with a field named as a request column whose values
    are that field's (`script.language`) is refused, naming the field, rather than every row
    paid with the default; one whose values are the product's (`dimensions.length` in cm)
    passes, as a flat column named so does."""

    def catalog(name: str, records: list[dict[str, object]]) -> Path:
        if fmt == "jsonl":
            return write(tmp_path, f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        pq.write_table(pa.Table.from_pylist(records), tmp_path / f"{name}.parquet")
        return tmp_path / f"{name}.parquet"

    scripted = catalog(
        "scripted",
        [{"product_id": "A1", "script": {"style": "Simple Product Switch", "language": "spanish"}},
         {"product_id": "A2", "script": {"style": "data", "language": None}}],
    )  # fmt: skip
    for check in (check_structure, rows_of):
        with pytest.raises(CatalogError) as caught:
            check(scripted, CatalogOptions())
        assert f"{scripted}: column 'script' holds language as script.language in each cell" in (
            str(caught.value)
        )
    measured = catalog(
        "measured",
        [{"product_id": "A1", "dimensions": {"size": {"length": 12.5}, "width": 3}},
         {"product_id": "A2", "dimensions": {"size": {"length": 30}, "width": 2}}],
    )  # fmt: skip
    assert check_structure(measured, CatalogOptions()) == 2
    assert [row.fields.length for row in rows_of(measured)] == ["30", "30"]  # type: ignore[union-attr]
    # A product's own struct whatever its fields' values: `seo`, `features`, `brand`.
    own = catalog(
        "own",
        [{"product_id": "A1", "seo": {"language": "en", "description": "Mug"},
          "features": {"voice": "Alexa built-in"}}],
    )  # fmt: skip
    assert check_structure(own, CatalogOptions()) == 1


@pytest.mark.parametrize(
    ("header", "cells", "meant"),
    [("Format", ["9:16", "1:1", ""], "aspect_ratio"), ("Style", ["top 3 reasons", "Discovery"],
     "script_style"), ("CC", ["yes", "no"], "caption")],
)  # fmt: skip
def test_a_column_named_as_often_for_a_product_is_refused_when_its_cells_are_the_requests(
    tmp_path: Path, header: str, cells: list[str], meant: str
) -> None:
    """`Format`, `Style` or `CC` (the names of the project's own sample of custom columns) whose
    cells read as the request field's values would be unused, every row paid with the default:
    refused, naming the column meant, as the first batch is read."""
    lines = [f"product_id,{header}"] + [f"A{n},{cell}" for n, cell in enumerate(cells)]
    path = write(tmp_path, "c.csv", "\n".join(lines) + "\n")
    with pytest.raises(CatalogError, match=re.escape(f"column '{header}' is not a request column")):
        rows_of(path)


def test_a_column_named_as_often_for_a_product_passes_through_when_its_cells_are_the_products(
    tmp_path: Path,
) -> None:
    """A book's `Format`, a garment's `Style`, a country's `CC`: one value that is no request
    field's makes the column the product's own, passed through, the request's default sent."""
    path = write(
        tmp_path,
        "c.csv",
        "product_id,Format,Style,CC\nA1,Paperback,Casual,DE\nA2,16:9,Storytime,yes\n",
    )
    sent = [row.fields for row in rows_of(path) if row.fields is not None]
    assert [(f.aspect_ratio, f.script_style, f.caption) for f in sent] == [
        ("landscape", "Storytime", False)
    ] * 2


@pytest.mark.parametrize(
    ("header", "meant"),
    [("avatar.id", "avatar_id"), ("avatar.type", "avatar_type"), ("voice.id", "voice_id"),
     ("script.style", "script_style"), ("video_spec.name", "video_name"),
     ("video_spec_name", "video_name"), ("audio.music_id", "music_id"),
     ("request.avatar.id", "avatar_id")],
)  # fmt: skip
def test_a_column_named_by_its_place_in_the_api_body_is_refused(
    tmp_path: Path, header: str, meant: str
) -> None:
    """A catalog flattened from request bodies (json_normalize, polars, Spark) names columns by
    their place in the body (`avatar.id`): each such column is refused, naming the column
    meant, rather than unused and every row paid with the default."""
    path = write(tmp_path, "c.csv", f"product_id,{header}\nA1,28\n")
    with pytest.raises(CatalogError) as caught:
        rows_of(path)
    assert f"column '{header}' is not a request column" in str(caught.value)
    assert f'("{header}" = "{meant}")' in str(caught.value)


@pytest.mark.parametrize("twin", ["length.1", "length_duplicated_0", "length_1"])
def test_a_second_column_renamed_by_a_data_tool_is_refused_as_the_file_with_two_was(
    tmp_path: Path, twin: str
) -> None:
    """Two `length` columns are refused; after a pandas, polars or DuckDB round trip the second
    is `length.1`, `length_duplicated_0` or `length_1`, and was passed through unused: refused
    too, naming both. Alone, no tool renamed it: a product's own (`length_1` of a box, as
    `image_1`), read as the catalog's."""
    path = write(tmp_path, "c.csv", f"product_id,length,{twin}\nA1,15,30\n")
    with pytest.raises(
        CatalogError, match=re.escape(f"column '{twin}' is a second 'length' column")
    ):
        rows_of(path)
    path = write(tmp_path, "c.csv", f"product_id,{twin}\nA1,201.5\n")
    (row,) = rows_of(path)
    assert row.fields is not None
    assert row.fields.length == "30"


@pytest.mark.parametrize(
    "header",
    ["dimensions.length", "Max. Length", "C:Length", "Length (in cm)", "Length_m", "Length (yd)",
     "Duration (days)", "language_1", "seo.language", "C:Language", "Length (max)",
     "Length (total)"],
)  # fmt: skip
def test_a_products_own_field_named_with_a_request_word_is_read_as_the_catalogs(
    tmp_path: Path, header: str
) -> None:
    """A field under a place that is not the request's (`dimensions.length`, eBay's
    `C:Length`), with a unit (`Length_m`, `Duration (days)`) or one of a numbered series
    (`language_1`) is the product's own, even when its values read as the request field's:
    the catalog is read, its default sent, not refused."""
    path = write(tmp_path, "c.csv", f"product_id,{header}\nA1,30\nA2,en\n")
    assert [row.fields is not None for row in rows_of(path)] == [True, True]


def test_a_note_that_is_no_requests_leaves_the_values_to_decide(tmp_path: Path) -> None:
    """`Length (max)` is refused by its values, not its name: video lengths (15, 30) say it is
    meant as the request's, a box's 120 cm that it is the product's."""
    path = write(tmp_path, "c.csv", "product_id,Length (max)\nA1,15\nA2,30\n")
    with pytest.raises(CatalogError, match=re.escape("column 'Length (max)' is not a request")):
        rows_of(path)
    path = write(tmp_path, "c.csv", "product_id,Length (max)\nA1,120 cm\nA2,80 cm\n")
    assert len(rows_of(path)) == 2


@pytest.mark.parametrize(
    ("header", "meant"),
    [("Product Description", "description"), ("Description (long)", "description"),
     ("Beschreibung", "description"), ("Images", "image_urls"), ("Image URL", "image_urls"),
     ("Audience", "target_audience"), ("Zielgruppe", "target_audience")],
)  # fmt: skip
def test_a_product_detail_under_a_shops_name_is_refused_where_rows_create_their_products(
    tmp_path: Path, header: str, meant: str
) -> None:
    """A catalog without product_id creates its products from their details: a detail under
    the name a shop exports it by (`Product Description`, `Images`) would be unused, every
    product made without it and its video paid. Refused, naming the column meant; with
    product_id, the products exist and the column is the catalog's own."""
    path = write(tmp_path, "c.csv", f"product_name,{header}\nMug,x\n")
    with pytest.raises(CatalogError) as caught:
        rows_of(path)
    assert f"every product would be created without its {meant}" in str(caught.value)
    assert f'("{header}" = "{meant}")' in str(caught.value)
    path = write(tmp_path, "c.csv", f"product_id,{header}\nA1,x\n")
    assert len(rows_of(path)) == 1


@pytest.mark.parametrize(
    "cell",
    ["['https://ex.com/a.jpg', 'https://ex.com/b.jpg']",
     '{https://ex.com/a.jpg,"https://ex.com/b.jpg"}',
     '["https://ex.com/a.jpg", "https://ex.com/b.jpg"]'],
)  # fmt: skip
def test_image_urls_as_a_python_list_or_a_postgresql_array_are_read_as_the_list(
    tmp_path: Path, cell: str
) -> None:
    """A list column pandas wrote to CSV (`['a', 'b']`) or PostgreSQL's text[] as COPY writes it
    (`{a,b}`) was refused as one URL holding two: read as the list it is, as JSON's is."""
    quoted = cell.replace('"', '""')
    path = write(tmp_path, "c.csv", f'product_name,image_urls\nMug,"{quoted}"\n')
    (row,) = rows_of(path)
    assert row.fields is not None
    assert row.fields.product is not None
    assert row.fields.product.image_urls == ("https://ex.com/a.jpg", "https://ex.com/b.jpg")


@pytest.mark.parametrize(
    ("cell", "urls"),
    [
        ("https://cdn.ex.com/upload/w_400,h_300,c_fill/a.jpg",
         ("https://cdn.ex.com/upload/w_400,h_300,c_fill/a.jpg",)),
        ("https://ex.com/a.jpg,https://ex.com/b.jpg", ("https://ex.com/a.jpg", "https://ex.com/b.jpg")),
        ("https://ex.com/a.jpg, https://ex.com/b.jpg,", ("https://ex.com/a.jpg", "https://ex.com/b.jpg")),
        ("https://ex.com/a.jpg,,https://ex.com/b.jpg", ("https://ex.com/a.jpg", "https://ex.com/b.jpg")),
    ],
)  # fmt: skip
def test_a_comma_inside_an_image_url_is_the_urls(
    tmp_path: Path, cell: str, urls: tuple[str, ...]
) -> None:
    """An image CDN's transformations (`w_400,h_300`) are one URL, where its row was invalid
    ("'h_300' is not an http(s) URL"); commas between URLs still separate them."""
    path = write(tmp_path, "c.csv", f'product_name,image_urls\nMug,"{cell}"\n')
    (row,) = rows_of(path)
    assert row.fields is not None
    assert row.fields.product is not None
    assert row.fields.product.image_urls == urls


def test_a_products_own_dimensions_are_no_near_miss(tmp_path: Path) -> None:
    """`Length (cm)`, `Length [in]` or `Weight (kg)` are a product's size, passed through; only
    a note that can be a video's (`Length (s)`) stops the run."""
    path = write(tmp_path, "c.csv", "product_id,Length (cm),Length [in],Weight (kg)\nA1,40,16,2\n")
    fields = rows_of(path)[0].fields
    assert fields is not None
    assert fields.length == "30"  # the default: the product's length is not the video's


def test_a_near_header_beside_its_request_column_passes_through(tmp_path: Path) -> None:
    """`captions` beside `caption`, or mapped by [columns], is the catalog's own column; so is
    one spelt almost as a product detail (`Image URL`), which overrides no request default."""
    beside = write(tmp_path, "c.csv", "product_id,caption,captions\nA1,yes,the words\n")
    assert rows_of(beside)[0].fields is not None
    details = write(tmp_path, "d.csv", "product_id,Image URL,Product\nA1,https://i/1.jpg,Mug\n")
    assert rows_of(details)[0].fields is not None  # no request default to fall back to
    mapped = write(tmp_path, "m.csv", "product_id,Captions\nA1,yes\n")
    fields = rows_of(mapped, CatalogOptions(columns={"Captions": "caption"}))[0].fields
    assert fields is not None
    assert fields.caption is True


def test_row_key_names_a_pass_through_column(tmp_path: Path) -> None:
    """The row key is the named column's value, or `row N` when empty."""
    path = write(tmp_path, "c.csv", "product_id,sku\nA1,SKU-1\nA2,\n")
    assert [row.key for row in rows_of(path, CatalogOptions(row_key="sku"))] == ["SKU-1", "row 2"]


def test_numbering_and_batches_across_boundaries(tmp_path: Path) -> None:
    """Row numbers continue across batches; pass-through batches have the same boundaries."""
    body = "".join(f"P{i},{'45' if i == 4 else '30'}\n" for i in range(1, 8))
    path = write(tmp_path, "c.csv", "product_id,length\n" + body)
    options = CatalogOptions(batch_rows=3)
    batches = list(read_catalog(path, options))
    assert [[row.number for row in batch.rows] for batch in batches] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [row.fields is None for row in batches[1].rows] == [True, False, False]
    passthrough = list(read_passthrough(path, options))
    assert [t.num_rows for t in passthrough] == [3, 3, 1]
    assert [t.column("product_id").to_pylist() for t in passthrough] == [
        batch.source.column("product_id").to_pylist() for batch in batches
    ]


def test_other_columns_pass_through(tmp_path: Path) -> None:
    """Columns that are not request fields are kept, in file order, for the results file."""
    path = write(tmp_path, "c.csv", "brand,product_id,price\nAcme,A1,9.99\n")
    batch = next(read_catalog(path, CatalogOptions()))
    assert batch.source.column_names == ["brand", "product_id", "price"]
    assert batch.source.to_pylist() == [{"brand": "Acme", "product_id": "A1", "price": "9.99"}]


# ---- files that cannot be read at all ----


def test_a_mapped_header_the_catalog_lacks_is_refused(tmp_path: Path) -> None:
    """A [columns] typo names the settings file, the header and the catalog's closest headers."""
    path = write(tmp_path, "c.csv", "product_id,Avatar,Duration\nA1,1,15\n")
    options = CatalogOptions(
        columns={"Avtar": "avatar_id", "Duration": "length"}, columns_from="m.toml"
    )
    with pytest.raises(CatalogError) as caught:
        rows_of(path, options)
    assert str(caught.value) == (
        f"{path}: the [columns] mapping in m.toml names the header 'Avtar' (closest: 'Avatar'), "
        "which the catalog does not have; fix the mapping or the catalog's header"
    )


@pytest.mark.parametrize(
    ("name", "content", "options", "error"),
    [
        ("missing.csv", None, CatalogOptions(), r"missing\.csv: no such catalog file"),
        ("c.numbers", "x", CatalogOptions(), r"cannot tell the catalog format from the extension"),
        ("c.csv", "x", CatalogOptions(format="xml"), r"unknown catalog format 'xml'"),  # type: ignore[arg-type]
        ("c.csv", "sku,title\n1,a\n", CatalogOptions(), r"c\.csv: has no product_id column"),
        # A shop's export: the hint maps its details, not its SKU (no JoggAI id), as ids.
        (
            "c.csv",
            "Handle,Title,Body (HTML),Variant SKU,Image Src\nmug,Mug,<p>A</p>,S-1,https://x/m.jpg\n",
            CatalogOptions(),
            r'"Title" = "product_name", "Body \(HTML\)" = "description", "Image Src" = "image',
        ),
        # A title line above the header: the message shows what line 1 names, and says so.
        (
            "c.csv",
            "Spring export\n\nproduct_id\nP1\n",
            CatalogOptions(),
            r"in its first line, which must name the columns \('Spring export'\); delete any title",
        ),
        (
            "c.csv",
            "product_id|length\nP1|15\n",
            CatalogOptions(),
            r"\('product_id\|length'\); pass --delimiter '\|' if that is what separates",
        ),
        (  # Hive's text tables: Ctrl-A between cells, given as Hive's DDL writes it
            "c.csv",
            "product_id\x01length\nP1\x0115\n",
            CatalogOptions(),
            r"\('product_id\\x01length'\); pass --delimiter '\\001' if that is what separates",
        ),
        (
            "c.csv",
            "sku,product_id\n1,a\n",
            CatalogOptions(columns={"SKU": "product_id"}),
            r"columns 'sku' and 'product_id' both map to product_id",
        ),
        (
            "c.csv",
            "sku\n1\n",
            CatalogOptions(columns={"sku": "productid"}),
            r"'productid', which is not",
        ),
        (  # one column mapped twice, its keys spelled otherwise: the last one took it, silently
            "c.csv",
            "pid,len\nP1,15\n",
            CatalogOptions(columns={"pid": "product_id", "len": "length", " LEN ": "avatar_id"}),
            r"the column mapping names one column twice, as 'len' and ' LEN '",
        ),
        ("c.csv", "product_id\n1\n", CatalogOptions(row_key="sku"), r"has no column 'sku' to use"),
        ("c.csv", "", CatalogOptions(), r"has no header row"),
        ("c.csv", "product_id\n1\n", CatalogOptions(delimiter=";;"), r"must be one character"),
        ("c.parquet", "product_id\n1\n", CatalogOptions(), r"c\.parquet: is not a Parquet file"),
    ],
)
def test_unreadable_catalogs_raise_catalog_error(
    tmp_path: Path, name: str, content: str | None, options: CatalogOptions, error: str
) -> None:
    """Each reason a file cannot be read at all is a CatalogError saying what to fix."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(CatalogError, match=error):
        read_catalog(path, options)


def test_binary_file_named_csv_is_a_catalog_error(tmp_path: Path) -> None:
    """A Parquet file with a .csv name is reported as not UTF-8 text."""
    path = tmp_path / "c.csv"
    pq.write_table(pa.table({"product_id": ["A1"]}), path)
    with pytest.raises(CatalogError, match=r"is not UTF-8 text"):
        read_catalog(path, CatalogOptions())


def test_ragged_csv_row_is_a_catalog_error_naming_the_file(tmp_path: Path) -> None:
    """A CSV row with too many cells is a malformed file, translated from pyarrow."""
    path = write(tmp_path, "c.csv", "product_id,length\nA1,30\nA2,30,extra\n")
    with pytest.raises(CatalogError, match=r"c\.csv: cannot read it as CSV"):
        rows_of(path)


# ---- gzip-compressed catalogs ----

_PLAIN: dict[str, str] = {
    ".csv": "product_id,length,title\nA1,15,Mug\nA2,,Cup\n",
    ".tsv": "product_id\tlength\ttitle\nA1\t15\tMug\nA2\t\tCup\n",
    ".jsonl": '{"product_id":"A1","length":15,"title":"Mug"}\n{"product_id":"A2","title":"Cup"}\n',
}


@pytest.mark.parametrize("suffix", list(_PLAIN))
def test_a_gzip_compressed_catalog_reads_as_the_file_it_holds(tmp_path: Path, suffix: str) -> None:
    """`c.csv.gz`, `c.tsv.gz`, `c.jsonl.gz`: the structural pass, the rows and the columns
    passed through to the results are those of the uncompressed file."""
    plain = write(tmp_path, f"c{suffix}", _PLAIN[suffix])
    packed = tmp_path / f"c{suffix}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert check_structure(packed, CatalogOptions()) == check_structure(plain, CatalogOptions())
    assert [row.fields for row in rows_of(packed)] == [row.fields for row in rows_of(plain)]
    assert [row.fields.length for row in rows_of(packed) if row.fields] == ["15", "30"]
    passed = next(read_passthrough(packed, CatalogOptions()))
    assert passed.equals(next(read_passthrough(plain, CatalogOptions())))


def _gzip_catalog(tmp_path: Path, name: str, damage: str) -> Path:
    """A catalog of 5,000 rows, gzip-compressed, then damaged: most rows read before the
    damage is met, as a run would read them behind its first requests."""
    if name.endswith(".jsonl.gz"):
        body = "".join(
            json.dumps({"product_id": f"A{i}", "title": f"T{i}"}) + "\n" for i in range(5000)
        )
    else:
        body = "product_id,title\n" + "".join(f"A{i},T{i}\n" for i in range(5000))
    data = gzip.compress(body.encode())
    if damage == "cut":
        data = data[: len(data) - 200]  # an interrupted download
    elif damage == "crc":
        data = data[:-8] + bytes(4) + data[-4:]  # the trailer's checksum
    else:
        data = body.encode()  # not compressed at all
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "damage", "says"),
    [
        ("c.csv.gz", "cut", "the gzip data ends before its end marker, so the file is cut short "
         "(an interrupted download or copy?); fetch or compress it again"),
        ("c.jsonl.gz", "cut", "the gzip data ends before its end marker"),
        ("c.csv.gz", "crc", "is damaged gzip data (CRC check failed"),
        ("c.csv.gz", "plain", "is damaged gzip data (Not a gzipped file (b'pr')); compress it "
         "again, or drop .gz from its name if it is not compressed"),
    ],
)  # fmt: skip
def test_a_cut_short_or_damaged_gzip_catalog_is_refused_by_the_structural_pass(
    tmp_path: Path, name: str, damage: str, says: str
) -> None:
    """A gzip stream cut short, with a bad checksum, or no gzip at all is refused naming the
    file before anything is sent, never found after rows were paid for."""
    path = _gzip_catalog(tmp_path, name, damage)
    with pytest.raises(CatalogError) as caught:
        check_structure(path, CatalogOptions())
    assert str(caught.value).startswith(f"{path}: {says}")


def test_a_gzip_bomb_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    """320 KB that expand to 320 MB (one cell of a's, as a bomb is built) are refused once the
    expansion passes what a catalog's compression gives, naming the file: not read whole into
    memory by the structural pass, its cell held as one string."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    block = b"a" * (1 << 20)
    parts = [packer.compress(b"product_id,title,length\nP1,")]
    parts += [packer.compress(block) for _ in range(320)]
    path = tmp_path / "c.csv.gz"
    path.write_bytes(b"".join([*parts, packer.compress(b",15\n"), packer.flush()]))
    with pytest.raises(CatalogError) as caught:
        check_structure(path, CatalogOptions())
    assert str(caught.value).startswith(f"{path}: expands more than 200 times (")
    assert "a gzip bomb?" in str(caught.value)


@pytest.mark.parametrize("name", ["c.parquet.gz", "c.xlsx.gz"])
def test_a_gzip_compressed_parquet_file_or_workbook_is_refused(tmp_path: Path, name: str) -> None:
    """Only text is read compressed: Parquet and workbooks are read by seeking."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"x"))
    with pytest.raises(CatalogError, match=r"a gzip-compressed .* is not read; decompress it"):
        check_structure(path, CatalogOptions())


def test_a_gzip_file_named_csv_says_to_name_it_gz(tmp_path: Path) -> None:
    """Compressed bytes under a plain .csv name: the message says how to have it read."""
    path = tmp_path / "c.csv"
    path.write_bytes(gzip.compress(b"product_id\nA1\n"))
    with pytest.raises(CatalogError) as caught:
        check_structure(path, CatalogOptions())
    assert str(caught.value) == (
        f"{path}: is gzip-compressed; end its name in .gz (catalog.csv.gz) to have it read so"
    )


# ---- the sample catalogs ----

SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"
CUSTOM_COLUMNS = {
    "Product ID": "product_id",
    "Duration": "length",
    "Format": "aspect_ratio",
    "Subtitles": "caption",
    "Avatar": "avatar_id",
    "Voice": "voice_id",
    "Style": "script_style",
    "Lang": "language",
    "Video Title": "video_name",
}


def test_sample_csv_and_parquet_hold_the_same_jobs() -> None:
    """The sample CSV and Parquet give the same 45 valid jobs and the same 5 invalid rows."""
    csv_rows = rows_of(SAMPLES / "catalog.csv", CatalogOptions(row_key="sku"))
    parquet_rows = rows_of(SAMPLES / "catalog.parquet", CatalogOptions(row_key="sku"))
    assert len(csv_rows) == 50
    assert [r.number for r in csv_rows if r.fields is None] == [7, 19, 26, 31, 42]
    assert [(r.key, r.fingerprint, r.problems) for r in csv_rows] == [
        (r.key, r.fingerprint, r.problems) for r in parquet_rows
    ]


def test_sample_custom_columns_catalog_reads_with_its_mapping() -> None:
    """The custom-header sample maps onto the same jobs as the standard sample."""
    options = CatalogOptions(columns=CUSTOM_COLUMNS, row_key="SKU")
    custom = rows_of(SAMPLES / "catalog_custom_columns.csv", options)
    standard = rows_of(SAMPLES / "catalog.csv", CatalogOptions(row_key="sku"))[:20]
    assert len(custom) == 20
    assert [r.number for r in custom if r.fields is None] == [7, 19]
    same = [(c.fields.name, c.fields.length) for c in custom if c.fields]
    assert same == [(s.fields.name, s.fields.length) for s in standard if s.fields]


# ---- the structural pass ----


def test_a_row_longer_than_a_block_is_read_once_in_larger_blocks(tmp_path: Path) -> None:
    """A cell bigger than the reader's block restarts it with larger blocks: every row once,
    in order, the long cell whole."""
    body = "".join(f"A{i},{'x' * 5000 if i == 150 else i}\n" for i in range(200))
    path = write(tmp_path, "c.csv", "product_id,notes\n" + body)
    batches = list(csv_batches(path, ",", ["product_id", "notes"], block_size=1024))
    table = pa.Table.from_batches(batches)
    assert table.column("product_id").to_pylist() == [f"A{i}" for i in range(200)]
    assert len(table.column("notes")[150].as_py()) == 5000


def test_structure_counts_rows_whatever_the_line_endings(tmp_path: Path) -> None:
    """CRLF, LF, CR and blank lines mixed: rows are the non-blank lines below the header."""
    path = tmp_path / "c.csv"
    path.write_bytes(b"product_id,length\r\nA1,15\n\nA2,15\rA3,15\r\n")
    assert check_structure(path, CatalogOptions()) == 3


def test_a_lone_quote_inside_an_unquoted_cell_is_fine(tmp_path: Path) -> None:
    """`12" tall` is an odd number of quotes, yet a cell as typed: the file passes."""
    path = write(tmp_path, "c.csv", 'product_id,title\nA1,Mug 12" tall\nA2,Lamp\n')
    assert check_structure(path, CatalogOptions()) == 2
    assert rows_of(path)[0].key == "A1"


def test_structure_names_the_first_bad_row_of_a_jsonl_file(tmp_path: Path) -> None:
    """A JSON Lines file is parsed to its last line; the first bad one is named with its row."""
    lines = ['{"product_id": "A1"}', "", '{"product_id": "A2"}', '{"product_id": A3}']
    path = write(tmp_path, "c.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(CatalogError, match=r"c\.jsonl line 4 \(row 3\): is not JSON"):
        check_structure(path, CatalogOptions())


def test_reading_refuses_a_repeated_header_even_without_the_check(tmp_path: Path) -> None:
    """read_catalog itself refuses repeated names, so no caller meets them in the results."""
    path = write(tmp_path, "c.csv", "product_id,title,title\nA1,a,b\n")
    with pytest.raises(CatalogError, match=r"columns 2 and 3 are all named 'title'"):
        read_catalog(path, CatalogOptions())


def test_jsonl_lists_and_objects_in_request_columns_are_read_not_a_crash(tmp_path: Path) -> None:
    """A JSON list of image URLs is the URLs, as `a|b` is in CSV; an object where an id belongs
    is an invalid cell quoted as JSON, never a traceback."""
    lines = [
        {"product_url": "https://shop.example/p/1", "image_urls": ["https://a.example/x.png"]},
        {"product_id": "P2", "avatar_id": {"id": 1}},
    ]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    first, second = rows_of(path)
    assert first.fields is not None
    assert first.fields.product is not None
    assert first.fields.product.image_urls == ("https://a.example/x.png",)
    assert messages(path, second) == [
        "c.jsonl row 2, column 'avatar_id': '{\"id\":1}' is a JSON list or object; the column "
        "takes one value"
    ]


def test_a_product_id_excel_wrote_in_scientific_notation_is_never_sent(tmp_path: Path) -> None:
    """`1.23E+15` is what Excel leaves of a long id: its digits are gone, so the row is invalid
    and says how to get them back; an id that merely holds an E stays an id."""
    path = write(tmp_path, "c.csv", 'product_id\n1.23E+15\n4e+7\nMTE2E+15\n"1,23E+15"\n')
    rows = rows_of(path)
    fix = "format the column as Text in Excel, type the ids again and export"
    assert rows[3].fields is None  # where a comma is the decimal mark
    assert [messages(path, row) for row in rows[:2]] == [
        [
            "c.csv row 1, column 'product_id': '1.23E+15' looks like a number Excel rewrote in "
            f"scientific notation (its digits are lost); {fix}"
        ],
        [
            "c.csv row 2, column 'product_id': '4e+7' looks like a number Excel rewrote in "
            f"scientific notation (its digits are lost); {fix}"
        ],
    ]
    assert rows[2].fields is not None
    assert rows[2].fields.product_id == "MTE2E+15"


def test_a_row_is_blank_only_when_every_cell_is_empty(tmp_path: Path) -> None:
    """Nulls, NaN and cells of spaces or invisible characters make a blank row (no problem, no
    fingerprint); one cell with anything in it, even outside the request's columns, keeps the
    row a row to check."""
    table = pa.table(
        {
            "product_id": ["P1", None, " ", None, None, "\u200b"],
            "length": [15.0, None, float("nan"), None, None, None],
            "note": ["a", None, "  ", "kept for later", None, "\ufeff "],
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    (batch,) = read_catalog(path, CatalogOptions())
    assert batch.rows.blank == frozenset({1, 2, 4, 5})  # a zero-width space is no content
    assert [batch.rows.fingerprints[i] is None for i in range(6)] == [False] + [True] * 5
    assert sorted(batch.rows.problems) == [3]


def test_image_urls_as_json_lists_read_the_same_whatever_wrote_them(tmp_path: Path) -> None:
    """A JSON Lines list, the JSON text a results file writes back for it (what retry reads),
    and `a|b` are the same request; an empty list is an empty cell in each spelling."""
    urls = ["https://a.example/x.png", "https://a.example/y.png"]
    base = {"product_url": "https://shop.example/p/1"}
    lines = [
        {**base, "image_urls": urls},
        {**base, "image_urls": json.dumps(urls, separators=(",", ":"))},
        {**base, "image_urls": "|".join(urls)},
        {**base, "image_urls": []},
        {**base, "image_urls": "[]"},
        {**base},
    ]
    path = write(tmp_path, "c.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    rows = rows_of(path)
    assert [row.problems for row in rows] == [()] * 6
    assert len({row.fingerprint for row in rows[:3]}) == 1
    assert len({row.fingerprint for row in rows[3:]}) == 1


def test_a_null_in_a_list_of_image_urls_is_left_out_not_every_url(tmp_path: Path) -> None:
    """`[a.jpg, null]` (Spark's array() of a missing column) in Parquet, JSON Lines or as JSON
    text is `a.jpg`: the null is a missing item, never the reason all images are dropped."""
    a, b = "https://a.example/x.png", "https://a.example/y.png"
    lists = [[a, None], [None, b, None], [None], [a, b], None]
    details = {"product_name": "Bottle", "description": "A bottle", "target_audience": "all"}
    parquet = tmp_path / "c.parquet"
    pq.write_table(
        pa.table(
            {**{k: [v] * len(lists) for k, v in details.items()}, "image_urls": lists},
            pa.schema(
                [*((k, pa.string()) for k in details), ("image_urls", pa.list_(pa.string()))]
            ),
        ),
        parquet,
    )
    jsonl = "".join(json.dumps({**details, "image_urls": urls}) + "\n" for urls in lists)
    text = "".join(json.dumps({**details, "image_urls": json.dumps(urls)}) + "\n" for urls in lists)
    expected = [(a,), (b,), (), (a, b), ()]
    for path in (parquet, write(tmp_path, "c.jsonl", jsonl), write(tmp_path, "t.jsonl", text)):
        rows = rows_of(path)
        assert [row.problems for row in rows] == [()] * len(lists), path
        products = [row.fields.product for row in rows if row.fields]
        assert [product.image_urls for product in products if product] == expected, path


def test_image_urls_run_together_with_a_semicolon_are_refused_not_sent_as_one(
    tmp_path: Path,
) -> None:
    """`a.jpg;b.jpg` is two URLs in a separator jogg-batch does not read: refused, naming the
    ones it does; a URL an image proxy fetches (after `/` or `=`) is part of the one URL."""
    a, b = "https://cdn.example/a.jpg", "https://cdn.example/b.jpg"
    fetch = f"https://res.cloudinary.example/demo/image/fetch/{a}"
    proxy = f"https://images.example/?url={a}"
    cells = [f"{a};{b}", f"{a}|{b} ;HTTP://cdn.example/c.jpg", f"{a}|{fetch}", proxy]
    path = write(
        tmp_path,
        "c.csv",
        "product_name,description,target_audience,image_urls\n"
        + "".join(f"Bottle,A bottle,all,{cell}\n" for cell in cells),
    )
    rows = rows_of(path)
    separators = 'separate image URLs with | or a comma, or write a JSON list (["https://...", "https://..."])'
    assert messages(path, rows[0]) == [
        f"c.csv row 1, column 'image_urls': '{a};{b}' holds more than one URL; {separators}"
    ]
    assert messages(path, rows[1]) == [
        f"c.csv row 2, column 'image_urls': '{b} ;HTTP://cdn.example/c.jpg' holds more than one "
        f"URL; {separators}"
    ]
    products = [row.fields.product for row in rows[2:] if row.fields]
    assert [product.image_urls for product in products if product] == [(a, fetch), (proxy,)]


def test_a_product_id_whose_digits_a_float_lost_is_never_sent(tmp_path: Path) -> None:
    """A float column past 2**53 (Parquet here; an xlsx number cell alike) holds an id whose
    last digits are gone: the row is invalid, never a request for digits nobody typed."""
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"product_id": [1234567890123456789.0, 1234.0]}), path)
    lost, kept = rows_of(path)
    assert messages(path, lost) == [
        "c.parquet row 1, column 'product_id': '1.2345678901234568e+18' is a float, and a float "
        "column cannot hold a product id exactly; store the product ids as text"
    ]
    assert kept.fields is not None
    assert kept.fields.product_id == "1234"


def test_ids_past_a_narrow_float_columns_precision_are_never_sent(tmp_path: Path) -> None:
    """A float32 column stores 16777217 as 16777216, a float16 one 2049 as 2048: past the
    column's own bound (2**24, 2**11), not only past 2**53, an id is refused."""
    path = tmp_path / "c.parquet"
    table = pa.table(
        {
            "product_id": pa.array([16777217.0, 1234.0, 1.0], pa.float32()),
            "avatar_id": pa.array([127.0, 16777217.0, 16777215.0], pa.float32()),
            "music_id": pa.array([5.0, 2049.0, 2047.0], pa.float16()),
        }
    )
    pq.write_table(table, path)
    first, second, third = rows_of(path)
    column = "from {} on its whole numbers lose digits); store the column as integers or text"
    assert messages(path, first) == [
        "c.parquet row 1, column 'product_id': '16777216' is too large for a float32 column to "
        f"hold exactly ({column.format(2**24)}"
    ]
    assert messages(path, second) == [
        "c.parquet row 2, column 'avatar_id': '16777216' is too large for a float32 column to "
        f"hold exactly ({column.format(2**24)}",
        "c.parquet row 2, column 'music_id': '2048' is too large for a float16 column to hold "
        f"exactly ({column.format(2**11)}",
    ]
    assert third.fields is not None
    assert (third.fields.avatar_id, third.fields.music_id) == (16777215, 2047)


def test_request_settings_round_trip_and_read_an_earlier_record() -> None:
    """What a run records for retry (defaults and column mapping) comes back as it was; a
    record of an earlier version (the defaults alone) still reads, with no mapping."""
    options = CatalogOptions(
        columns={"Duration": "length"}, defaults=RequestDefaults(length="15", video_name="{SKU}")
    )
    again = request_settings_from_json(request_settings_to_json(options), CatalogOptions())
    assert (again.columns, again.defaults) == (options.columns, options.defaults)
    earlier = request_settings_from_json('{"length":"60"}', CatalogOptions(columns={"X": "length"}))
    assert (earlier.columns, earlier.defaults.length) == ({}, "60")
    with pytest.raises(ValueError, match="request defaults"):
        request_settings_from_json('{"defaults":{"frobnicate":1}}', CatalogOptions())


def test_the_runs_of_one_workbooks_sheets_record_other_settings() -> None:
    """Runs of two sheets of one workbook record different settings (so the one run later is
    no sign that the other's rows were corrected); the sheet is not read back into the retry's
    own catalog, which is no workbook."""
    spring, summer = (
        request_settings_to_json(CatalogOptions(sheet=sheet)) for sheet in ("Spring", "Summer")
    )
    assert spring != summer
    assert '"sheet"' not in request_settings_to_json(CatalogOptions())  # a CSV's, as before
    assert request_settings_from_json(spring, CatalogOptions()).sheet is None


# Text as two tools write the same words: composed (NFC) and decomposed (NFD, a Mac tool), and
# line ends as LF, CRLF (FTP's ASCII mode, unix2dos) and a lone CR (old Mac tools).
CAFE_NFC, CAFE_NFD = "Caf\u00e9 cr\u00e8me", "Cafe\u0301 cre\u0300me"
FREE_TEXT = "product_name,description,target_audience,override_script,title"
NAMED = CatalogOptions(defaults=RequestDefaults(video_name="{title} ({product_name})"))


def free_text_row(cafe: str, line_end: str, pid: str | None = "A1") -> str:
    """A catalog line whose every free-text cell holds `cafe`, the script on two lines; without
    `pid`, for a catalog of products made from their details."""
    script = f'"{cafe}{line_end}second line"'
    return ("" if pid is None else f"{pid},") + f"{cafe},{cafe},{cafe},{script},{cafe}\n"


def free_text_catalog(tmp_path: Path, *lines: str, ids: bool = True) -> Path:
    header = ("product_id," if ids else "") + FREE_TEXT
    return write(tmp_path, "c.csv", header + "\n" + "".join(lines))


@pytest.mark.parametrize(("cafe", "line_end"), [(CAFE_NFD, "\n"), (CAFE_NFC, "\r\n"),
                                                 (CAFE_NFC, "\r"), (CAFE_NFD, "\r\n")])  # fmt: skip
def test_free_text_written_otherwise_but_read_alike_is_the_same_request(
    tmp_path: Path, cafe: str, line_end: str
) -> None:
    """NFD text and CRLF or CR line ends in free-text cells are sent, and hashed, as the NFC
    text with LF line ends they read as: the same request as the file saved the usual way."""
    path = free_text_catalog(tmp_path, free_text_row(CAFE_NFC, "\n"), free_text_row(cafe, line_end))
    usual, other = rows_of(path, NAMED)
    assert other.fields == usual.fields
    assert other.fingerprint == usual.fingerprint
    assert usual.fields is not None
    assert other.fingerprint == fingerprint(usual.fields)  # the column-at-a-time one agrees
    assert usual.fields.override_script == f"{CAFE_NFC}\nsecond line"
    assert usual.fields.name == f"{CAFE_NFC} ({CAFE_NFC})"


def test_products_made_from_text_written_otherwise_are_the_same_request(tmp_path: Path) -> None:
    """A row without a product id is hashed from its product's details: NFD details and a
    CRLF inside them make the same product, and the same request, as NFC ones."""
    path = free_text_catalog(
        tmp_path,
        free_text_row(CAFE_NFC, "\n", pid=None),
        free_text_row(CAFE_NFD, "\r\n", pid=None),
        ids=False,
    )
    usual, other = rows_of(path, NAMED)
    assert other.fields is not None
    assert other.fields.product is not None
    assert other.fields.product.name == CAFE_NFC
    assert other.fields == usual.fields
    assert other.fingerprint == usual.fingerprint


def test_free_text_is_made_alike_and_ids_are_not(tmp_path: Path) -> None:
    """An id is what it is: an NFD voice id is sent as written, never made alike as the row's
    free text is; a product id is base64, so an accented one, or one with a line break (a CR),
    is no id, refused rather than sent to fail."""
    pid = CAFE_NFD.replace(" ", "-")
    text = f'product_id,voice_id,override_script\nP1,{CAFE_NFD},{CAFE_NFD}\n"P\r1",v,x\n{pid},v,x\n'
    decomposed, with_cr, accented = rows_of(write(tmp_path, "c.csv", text))
    assert decomposed.fields is not None
    assert (decomposed.fields.product_id, decomposed.fields.voice_id) == ("P1", CAFE_NFD)
    assert decomposed.fields.override_script == CAFE_NFC
    assert with_cr.fields is None
    assert "'P\\r1' holds a line break, and a product id is one line" in with_cr.problems[0].reason
    assert accented.fields is None
    assert "is no product id: JoggAI's are base64" in accented.problems[0].reason


@pytest.mark.parametrize("ids", [True, False], ids=["product_id", "details"])
def test_a_row_made_alike_keeps_the_fingerprint_earlier_versions_gave_it(
    tmp_path: Path, ids: bool
) -> None:
    """`earlier_fingerprints` of a row whose free text was made alike is the fingerprint of its
    fields with the text as the file wrote it (what earlier versions hashed and sent); none for
    a row that was already alike."""
    pid = "A1" if ids else None
    lines = (free_text_row(CAFE_NFC, "\n", pid), free_text_row(CAFE_NFD, "\r\n", pid))
    (batch,) = read_catalog(free_text_catalog(tmp_path, *lines, ids=ids), NAMED)
    usual, other = batch.rows
    assert other.fields is not None
    product = other.fields.product and other.fields.product._replace(
        name=CAFE_NFD, description=CAFE_NFD, target_audience=CAFE_NFD
    )
    as_written = other.fields._replace(
        product=product,
        override_script=f"{CAFE_NFD}\r\nsecond line",
        name=f"{CAFE_NFD} ({CAFE_NFD})",
    )
    assert fingerprint(as_written) != other.fingerprint
    assert fingerprint(as_written) in batch.rows.earlier_fingerprints(1)
    assert batch.rows.earlier_fingerprints(0) == ()
    assert usual.fingerprint == other.fingerprint


def test_an_id_pasted_with_invisible_characters_has_the_key_of_the_id_people_see(
    tmp_path: Path,
) -> None:
    """A product id copied from a web page with a zero-width space (or a byte order mark) is
    sent without it, and keyed without it: one product, one row key (it had two, so a stale
    retry of the pasted row was taken for another product's and paid again)."""
    path = tmp_path / "c.csv"
    path.write_text("product_id,length\nP\u200b1,15\n\ufeffP1,30\nP1,60\n", encoding="utf-8")
    rows = rows_of(path)
    assert [row.key for row in rows] == ["P1", "P1", "P1"]
    assert {row.fields.product_id for row in rows if row.fields} == {"P1"}


def test_a_line_break_between_quotes_is_found_in_any_bytes_from_any_parity() -> None:
    """The byte scan's test for a line break inside quotes agrees with reading the bytes one by
    one, whatever the quotes before them left open: it decides whether a file whose quoted
    cells may hold rows gets the slower scan that judges them."""

    def one_by_one(data: bytes, odd: bool) -> bool:
        for byte in data:
            if byte == ord('"'):
                odd = not odd
            elif byte in b"\r\n" and odd:
                return True
        return False

    rng = random.Random(7)
    for _ in range(3000):
        data = bytes(rng.choice(b'a"\n\r,') for _ in range(rng.randint(0, 24)))
        odd = rng.random() < 0.5
        array = np.frombuffer(data, np.uint8)
        assert _quoted_break(array, array == ord('"'), odd=odd) == one_by_one(data, odd), data


def test_excels_text_formula_cells_are_read_as_the_text_excel_shows(tmp_path: Path) -> None:
    """`="00123"` (an export's way to keep leading zeros when Excel opens the CSV) is the text
    `00123` in an id, a choice, a name and a template's column; a `""` inside is one quote."""
    path = write(
        tmp_path,
        "c.csv",
        "product_id,sku,length,video_name\n"
        '="P1",="00123",="15",\n'
        '"=""P2""",x," ="" 30 "" ",="Say ""hi"""\n',
    )
    first, second = rows_of(path, CatalogOptions(defaults=RequestDefaults(video_name="{sku}")))
    assert first.fields is not None
    assert second.fields is not None
    assert (first.key, first.fields.product_id, first.fields.name) == ("P1", "P1", "00123")
    assert (first.fields.length, second.fields.length) == ("15", "30")
    assert (second.fields.product_id, second.fields.name) == ("P2", 'Say "hi"')


def test_a_name_from_a_text_formula_keeps_the_fingerprint_earlier_versions_gave_it(
    tmp_path: Path,
) -> None:
    """Earlier versions sent a name from `="00123"` as written: the row's earlier fingerprint
    is that request's, so what they paid for is found. A formula in an id alone gives none:
    written so, an id was refused by JoggAI and never paid for."""
    path = write(tmp_path, "c.csv", 'product_id,sku\nP1,="00123"\n="P2",b\n')
    (batch,) = read_catalog(path, CatalogOptions(defaults=RequestDefaults(video_name="v{sku}")))
    named, id_only = batch.rows
    assert named.fields is not None
    as_written = named.fields._replace(name='v="00123"')
    assert batch.rows.earlier_fingerprints(0) == (fingerprint(as_written),)
    assert fingerprint(as_written) != named.fingerprint
    assert batch.rows.earlier_fingerprints(1) == ()
    assert id_only.fields is not None
    assert id_only.fields.product_id == "P2"


def test_spaces_at_the_ends_of_free_text_and_of_a_templates_cells_are_not_sent(
    tmp_path: Path,
) -> None:
    """A script, a title a name template takes, a product's details: spaces (a no-break one
    too) at their ends are not sent and make no other request; earlier versions sent them, and
    the row keeps their fingerprint."""
    text = (
        "product_id,title,override_script\n"
        'P1,Mug,"Hello world."\n'
        'P1,"Mug\u00a0 "," Hello world.\n"\n'
    )
    (batch,) = read_catalog(
        write(tmp_path, "c.csv", text),
        CatalogOptions(defaults=RequestDefaults(video_name="{title}!")),
    )
    plain, padded = batch.rows
    assert padded.fields is not None
    assert (padded.fields.name, padded.fields.override_script) == ("Mug!", "Hello world.")
    assert padded.fingerprint == plain.fingerprint
    as_sent = padded.fields._replace(name="Mug\u00a0 !", override_script=" Hello world.\n")
    assert fingerprint(as_sent) in batch.rows.earlier_fingerprints(1)
    assert batch.rows.earlier_fingerprints(0) == ()


def test_invisible_ends_and_no_break_spaces_in_free_text_make_no_other_request(
    tmp_path: Path,
) -> None:
    """A zero-width space at a name's end, a BOM before a script, a no-break space inside a
    name: nobody sees them, and each made a new paid video of an unchanged row. Made alike (and
    not sent); the row keeps the fingerprint the versions before gave it."""
    text = (
        "product_id,video_name,override_script\n"
        "P1,Spring sale,Buy it today\n"
        "P1,Spring\u00a0sale\u200b,\ufeffBuy it today\n"
    )
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    plain, invisible = batch.rows
    assert invisible.fields is not None
    assert (invisible.fields.name, invisible.fields.override_script) == (
        "Spring sale",
        "Buy it today",
    )
    assert invisible.fingerprint == plain.fingerprint
    before = invisible.fields._replace(
        name="Spring\u00a0sale\u200b", override_script="\ufeffBuy it today"
    )
    assert fingerprint(before) in batch.rows.earlier_fingerprints(1)


def test_free_text_of_question_marks_alone_is_refused(tmp_path: Path) -> None:
    """Excel's "CSV (Comma delimited)" writes a `?` for each character its code page lacks: a
    Hebrew script came out as `????? ???` and was sent so. Refused, naming the column; text
    with a question mark or two among its words is text."""
    text = 'product_id,override_script\nP1,????? ???\nP2,Really?? Yes.\nP3,"¿?"\n'
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    lost, asked, short = batch.rows
    assert lost.fields is None
    [problem] = lost.problems
    assert (problem.column, problem.value) == ("override_script", "????? ???")
    assert "'CSV UTF-8'" in problem.reason
    assert (asked.fields is None, short.fields is None) == (False, False)


@pytest.mark.parametrize(
    ("damaged", "said"),
    [
        ("CafÃ© CrÃ¨me", "is UTF-8 text read as Windows-1252 ('Café Crème' garbled)"),
        ("donâ€™t stop ðŸš€", "is UTF-8 text read as Windows-1252 ('don’t stop 🚀' garbled)"),
        ("Caf\ufffd Cr\ufffdme", "holds U+FFFD (\ufffd), which a tool writes for bytes it could"),
    ],
    ids=["windows-1252", "emoji", "replacement-character"],
)
def test_free_text_a_conversion_damaged_is_refused(tmp_path: Path, damaged: str, said: str) -> None:
    """A UTF-8 file opened in Excel without a BOM and saved has `CafÃ©` for `Café`; a tool that
    could not decode bytes wrote U+FFFD. Either was a changed request, paid for again, the
    avatar reading out the damage: refused in free text and in a cell a name template takes.
    Real text outside ASCII (`L’ÉTÉ…`, `Ñandú`) is text."""
    text = (
        "product_id,override_script,title,video_name\n"
        f"P1,{damaged},Mug,{{title}}\nP2,Hi,{damaged},{{title}}\nP3,L’ÉTÉ…,Ñandú Café,{{title}}\n"
    )
    script, name, real = rows_of(write(tmp_path, "c.csv", text))
    assert [(p.column, p.value) for p in script.problems] == [("override_script", damaged)]
    assert said in script.problems[0].reason
    [problem] = name.problems
    assert problem.column == "video_name"
    assert f"takes column 'title', and {payload.shown(damaged)} {said}" in problem.reason
    assert real.fields is not None
    assert (real.fields.override_script, real.fields.name) == ("L’ÉTÉ…", "Ñandú Café")


@pytest.mark.parametrize(
    "real",
    [
        "NESCAFÉ® Gold Blend",
        "ZOË’S KITCHEN",
        "Viel Spaß…",
        "AMANHÃ…",
        "MENÚ…",
        "OÙ…",
        'Rohr Ø½"',
        "JOSÉ’S TACOS",
        "OLÉ\u00a0!",
        "NESCAFE\u0301® Gold",
        "CAFÉ… CAFÉ™",
    ],
)
def test_real_text_with_pairs_a_misreading_would_make_is_sent(tmp_path: Path, real: str) -> None:
    """A capital with an accent, or `ß`, before `®`, `’` or `…` is also how a misreading of
    UTF-8 looks, one character at a time: such brand names and copy were refused as damaged.
    One such pair (or several reading as IPA or rare scripts) is real text."""
    cells = {"product_id": "P1", "override_script": real, "title": real, "video_name": "{title}"}
    (row,) = rows_of(write(tmp_path, "c.jsonl", json.dumps(cells) + "\n"))
    assert row.problems == ()


def test_a_web_tools_formula_guard_is_not_part_of_the_text(tmp_path: Path) -> None:
    """Web tools' CSV exports put a `'` before a cell starting with `=`, `+`, `-` or `@` so that
    a spreadsheet does not run it: no part of the text, and the same request as without it.
    A quote before anything else is text; the row keeps the fingerprint it had as written."""
    text = (
        "product_id,override_script\n"
        "P1,'- Dimmable LED\nP1,- Dimmable LED\nP2,'@acme summer\nP3,'quoted' it\n"
    )
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    guarded, plain, at, quoted = batch.rows
    assert guarded.fingerprint == plain.fingerprint
    scripts = [row.fields.override_script for row in (guarded, at, quoted) if row.fields]
    assert scripts == ["- Dimmable LED", "@acme summer", "'quoted' it"]
    assert plain.fields is not None
    as_written = plain.fields._replace(override_script="'- Dimmable LED")
    assert fingerprint(as_written) in batch.rows.earlier_fingerprints(0)


def test_line_breaks_other_tools_write_are_read_as_lf(tmp_path: Path) -> None:
    """A vertical tab (FileMaker), U+2028 and U+2029 (Word), NEL: one line break, the same
    request as LF, in a CSV and in Parquet; the row keeps the fingerprint it had as written."""
    script = "One\vtwo\u2028three\x85four\u2029five"
    frame = pd.DataFrame({"product_id": ["P1", "P1"], "override_script": [script, "x"]})
    frame.to_parquet(tmp_path / "c.parquet")
    text = f'product_id,override_script\nP1,"{script}"\nP1,"One\ntwo\nthree\nfour\nfive"\n'
    (csv,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    (parquet,) = read_catalog(tmp_path / "c.parquet", CatalogOptions())
    other, lf = csv.rows
    assert lf.fields is not None
    assert lf.fields.override_script == "One\ntwo\nthree\nfour\nfive"
    assert other.fingerprint == lf.fingerprint == parquet.rows[0].fingerprint
    as_written = lf.fields._replace(override_script=script)
    assert fingerprint(as_written) in csv.rows.earlier_fingerprints(0)
    assert same_text(script) == lf.fields.override_script


def test_earlier_versions_making_text_alike_but_for_spaces_are_found_too(tmp_path: Path) -> None:
    """NFD text with a space at its end: the first versions hashed it as written, later ones
    in NFC with the space; the row keeps both fingerprints."""
    text = f'product_id,override_script\nP1,"{CAFE_NFD} "\n'
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    (row,) = batch.rows
    assert row.fields is not None
    assert row.fields.override_script == CAFE_NFC
    first, later = (
        row.fields._replace(override_script=f"{cafe} ") for cafe in (CAFE_NFD, CAFE_NFC)
    )
    assert batch.rows.earlier_fingerprints(0) == (fingerprint(first), fingerprint(later))


@pytest.mark.parametrize(
    "missing",
    ["nan", "None", "<NA>", " nan ", "NA", "NaN", "null", "N/A", "-", "none", "TBD", "k.A.", "---"],
)
def test_what_data_tools_write_for_a_missing_value_is_missing_in_free_text(
    tmp_path: Path, missing: str
) -> None:
    """pandas' `astype(str)` before saving turns an empty cell into `nan` (`None`, `<NA>`), R's
    `write.csv` into `NA`, JavaScript into `NaN` or `null`: never a script or a name to pay a
    video for. Earlier versions sent the text: the row keeps that fingerprint."""
    text = f"product_id,override_script,video_name\nP1,{missing},{missing}\nP2,,\n"
    (batch,) = read_catalog(write(tmp_path, "c.csv", text), CatalogOptions())
    written, empty = batch.rows
    assert written.fields is not None
    assert (written.fields.override_script, written.fields.name) == (None, None)
    assert written.fingerprint != empty.fingerprint  # its own product, P1
    as_sent = written.fields._replace(override_script=missing, name=missing.strip())
    assert fingerprint(as_sent) in batch.rows.earlier_fingerprints(0)


@pytest.mark.parametrize(
    "note", ["see note below", "ID1, ID2", "ID1;ID2", "A1|A2", "???", "--", "tbd\u00a0later"]
)
def test_a_note_or_two_ids_in_the_product_id_cell_is_never_sent(tmp_path: Path, note: str) -> None:
    """A placeholder, a note or two ids where one goes: no JoggAI id holds a space, a comma or
    no letter or digit, so the row is invalid here rather than a POST of the quota refused."""
    text = f'product_id,sku\n"{note}",1\nNTQ0MTkzNjg,2\n'
    noted, real = rows_of(write(tmp_path, "c.csv", text))
    assert noted.fields is None
    assert "is no product id" in noted.problems[0].reason
    assert real.fields is not None


def test_a_part_of_a_table_partitioned_by_a_request_column_is_refused(tmp_path: Path) -> None:
    """`catalog/language=spanish/part-0.parquet` holds no language column: read alone, its rows
    would be sent in the default language. A folder naming a column the catalog does not read
    (`day=...`), or one the file holds, is no matter."""
    rows = pa.table({"product_id": ["NTQ0MTkzNjg"], "length": ["30"]})
    part = tmp_path / "catalog" / "Language=spanish" / "part-0.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(rows, part)
    with pytest.raises(CatalogError, match=r"lies in the folder 'Language=spanish'.*language"):
        rows_of(part)
    for kept in (tmp_path / "day=2026-11-27" / "c.parquet", tmp_path / "length=30" / "c.parquet"):
        kept.parent.mkdir(parents=True)
        pq.write_table(rows, kept)
        assert rows_of(kept)[0].fields is not None


@pytest.mark.parametrize(
    "label", ["Total", "Totals", " TOTAL: ", "Gesamtergebnis", "Totaal", "Insgesamt", "Sous-total"]
)
def test_the_totals_row_of_an_excel_table_exported_to_csv_is_never_sent(
    tmp_path: Path, label: str
) -> None:
    """An Excel table's Total Row, kept by its CSV export: its label under product_id (the
    table's first column) is no JoggAI id, so the row is invalid here rather than a POST
    refused with 10104 every night; its length cell, a subtotal, is no product's."""
    text = f"product_id,length\nNTQ0MTkzNjg,30\nNTIzMzc0NjI5,15\n{label},45\n"
    *real, totals = rows_of(write(tmp_path, "c.csv", text))
    assert all(row.fields is not None for row in real)
    assert totals.fields is None
    assert any("the label of a totals row" in problem.reason for problem in totals.problems)


@pytest.mark.parametrize(
    "label", ["Grand Totals (6 records)", "Total (2)", "Record Count", "Subtotals", "Count:"]
)
def test_a_reports_totals_row_under_its_own_label_is_never_sent(tmp_path: Path, label: str) -> None:
    """A CRM report's closing row (Salesforce's `Grand Totals (6 records)`) with a count under
    product_id: sent as product `6`, a POST refused every night. A totals row, as `Total` is."""
    text = f"sku,product_id,length\nA,NTQ0MTkzNjg,30\n{label},6,90\n"
    real, totals = rows_of(write(tmp_path, "c.csv", text))
    assert real.fields is not None
    assert totals.fields is None
    assert "the row is a totals row" in totals.problems[0].reason


def test_a_header_line_pasted_in_another_spelling_is_never_sent(tmp_path: Path) -> None:
    """Rows pasted with their own export's header (`sku,product_id,...` under `SKU,Product ID`,
    or with a cell of it left empty): the product id cell names the column, which no JoggAI id
    does, so the row is the header again, not a product called `product_id`."""
    text = (
        "SKU,Product ID,Video Name\nA,NTQ0MTkzNjg,x\nsku,product_id,video_name\n"
        "SKU,Product ID,\nB, product-id ,y\n"
    )
    real, *pasted = rows_of(write(tmp_path, "c.csv", text))
    assert real.fields is not None
    for row in pasted:
        assert row.fields is None
        assert "repeats the header line" in row.problems[0].reason


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_catalog_saved_with_pandas_index_says_how_to_save_it(tmp_path: Path, suffix: str) -> None:
    """`to_csv()` and `to_excel()` write the row index as a first column with no name: the
    refusal says to save with `index=False`, not only to name the column."""
    frame = pd.DataFrame({"product_id": ["NTQ0MTkzNjg", "NTIzMzc0NjI5"]})
    path = tmp_path / f"c{suffix}"
    if suffix == ".csv":
        frame.to_csv(path)
    else:
        frame.to_excel(path, engine="xlsxwriter")
    with pytest.raises(
        CatalogError, match=r"has no name in the header, yet holds '0'.*index=False"
    ):
        list(read_catalog(path, CatalogOptions()))


def test_a_list_of_lines_in_free_text_makes_the_row_invalid(tmp_path: Path) -> None:
    """A script or a description held as a list (Parquet list<string>, a JSON Lines array) is
    refused as a list in a column of one value is: joined, its lines would be spoken with `|`
    between them. image_urls still takes a list."""
    lines = ["Meet the mug.", "It keeps coffee hot."]
    table = pa.table(
        {
            "product_id": ["NTAx", "NTAy"],
            "override_script": pa.array([lines, None], pa.list_(pa.string())),
        }
    )
    parquet = tmp_path / "c.parquet"
    pq.write_table(table, parquet)
    details = {"product_name": "Mug", "image_urls": ["https://a.example/x.png"]}
    jsonl = write(
        tmp_path,
        "c.jsonl",
        json.dumps({**details, "description": lines}) + "\n"
        + json.dumps({**details, "description": None}) + "\n",
    )  # fmt: skip
    for path, column in ((parquet, "override_script"), (jsonl, "description")):
        rows = rows_of(path)
        (problem,) = rows[0].problems
        assert (problem.column, problem.reason) == (
            column,
            '\'["Meet the mug.","It keeps coffee hot."]\' is a JSON list or object; the '
            "column takes one value",
        )
        assert rows[1].problems == ()


def test_a_list_or_object_among_texts_of_json_lines_free_text_is_refused(tmp_path: Path) -> None:
    """A JSON Lines script or description that is a list or an object in some records and text
    in others (a column of mixed kinds, held as text): that cell was sent as its JSON text,
    brackets and quotes read out by the avatar. It is refused as in a list column; the text
    beside it is sent, and a passthrough column keeps its JSON."""
    details = {"product_name": "Mug", "image_urls": ["https://a.example/x.png"]}
    records = [
        {**details, "override_script": "plain", "description": "Steel", "tags": "a"},
        {**details, "override_script": ["l1", "l2"], "description": "Steel", "tags": ["a"]},
        {**details, "override_script": "plain", "description": {"en": "Dimmable"}, "tags": "b"},
    ]
    jsonl = write(tmp_path, "c.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    rows = rows_of(jsonl)
    assert rows[0].problems == ()
    assert [(p.column, p.reason) for p in rows[1].problems] == [
        ("override_script", '\'["l1", "l2"]\' is a JSON list or object; the column takes one value')
    ]
    assert [p.column for p in rows[2].problems] == ["description"]


@pytest.mark.parametrize(
    ("header", "cells", "meant"),
    [("Length in seconds", ["60", "15"], "length"), ("Runtime", ["60"], "length"),
     ("Layout", ["portrait", "square"], "aspect_ratio"), ("Screen ratio", ["9:16"], "aspect_ratio"),
     ("Product language", ["en", "de"], "language"), ("Subtitles on?", ["yes", "no"], "caption"),
     ("Dauer", ["60"], "length"), ("Script language", ["german"], "language"),
     ("Voice name", ["de-DE-KatjaNeural"], "voice_id"), ("Background music", ["24"], "music_id"),
     ("Script text", ["Say this"], "override_script")],
)  # fmt: skip
def test_a_header_naming_a_request_field_in_other_words_is_refused(
    tmp_path: Path, header: str, cells: list[str], meant: str
) -> None:
    """A column meant as a request field under another name (`Length in seconds`, German
    `Dauer`, `Voice name`) would be passed through, every row paid with the default: refused,
    naming the field and the mapping; by its cells where the name is as often a product's."""
    lines = [f"product_id,{header}"] + [f"A{n},{cell}" for n, cell in enumerate(cells)]
    path = write(tmp_path, "c.csv", "\n".join(lines) + "\n")
    with pytest.raises(
        CatalogError, match=re.escape(f"column '{header}' is not a request column")
    ) as caught:
        rows_of(path)
    assert f'("{header}" = "{meant}")' in str(caught.value)


def test_a_header_naming_a_field_in_other_words_passes_through_with_a_products_values(
    tmp_path: Path,
) -> None:
    """A battery's `Runtime`, a product's `Length cm` of 30 or its `Screen ratio` of 3:2 are the
    product's own: passed through, the request's defaults sent."""
    path = write(
        tmp_path,
        "c.csv",
        "product_id,Runtime,Length cm,Screen ratio\nA1,10 hours,30,3:2\nA2,60,15,16:9\n",
    )
    sent = [row.fields for row in rows_of(path) if row.fields is not None]
    assert [(f.length, f.aspect_ratio) for f in sent] == [("30", "landscape")] * 2


@pytest.mark.parametrize(
    ("cell", "said"),
    [("'NTQ0MTkzNjg", "and \"'\" is none of those; take out the apostrophe"),
     ('"""NTQ0MTkzNjg"""', "and '\"' is none of those; take out the quotes around it"),
     ("ＮＴＱ０ＭＴｋｚＮｊｇ", "type it in plain (half-width) letters and digits"),
     ("54419368.0", "a number column wrote it with a decimal point"),
     ("NTQ0#MTkz", "and '#' is none of those; write the id as JoggAI gave it")],
)  # fmt: skip
def test_a_product_id_with_a_character_base64_lacks_is_refused(
    tmp_path: Path, cell: str, said: str
) -> None:
    """JoggAI's product ids are base64: an export's apostrophe or quotes, a full-width id, a
    float's `.0` would each be a POST of the quota JoggAI refuses. Either base64 alphabet is
    an id."""
    path = write(tmp_path, "c.csv", f"product_id,video_name\n{cell},a\nNTQ0-MT_k+/z=,b\n")
    refused, kept = rows_of(path)
    assert refused.fields is None
    assert said in refused.problems[0].reason
    assert kept.fields is not None
    assert kept.fields.product_id == "NTQ0-MT_k+/z="


def test_a_true_or_false_is_no_product_id(tmp_path: Path) -> None:
    """A JSON Lines `true` under product_id (a column of true/false) is refused, never sent as
    `True`."""
    path = write(tmp_path, "c.jsonl", '{"product_id": true}\n{"product_id": false}\n')
    refused, other = rows_of(path)
    assert (
        refused.problems[0].reason
        == "True (a true/false value) is no product id; write the id as text"
    )
    assert other.fields is None


@pytest.mark.parametrize("cell", ["true", "FALSE", "True", "WAHR", "faux"])
def test_a_true_or_false_written_as_text_is_no_product_id(tmp_path: Path, cell: str) -> None:
    """A workbook's TRUE/FALSE cell reaches the catalog as the text `true`, as a CSV export
    writes it: it was sent as product 'true', a POST of the quota JoggAI refuses (10104)."""
    path = write(tmp_path, "c.csv", f"product_id,video_name\n{cell},a\nNTQ0MTkzNjg,b\n")
    refused, kept = rows_of(path)
    assert refused.fields is None
    assert refused.problems[0].reason.startswith(f"{cell!r} (a true/false value")
    assert kept.fields is not None


def test_a_name_the_version_before_expanded_from_a_padded_placeholder_is_found(
    tmp_path: Path,
) -> None:
    """`{title} promo` over a title ` none `: the version before this one trimmed the cell of
    its spaces only and sent "none promo"; this one reads the cell as empty. The row keeps that
    version's fingerprint, so a fresh ledger finds its render by its tag and pays nothing
    again."""
    text = "product_id,title\nP1, none \nP2,Mug\u200b\n"
    (batch,) = read_catalog(
        write(tmp_path, "c.csv", text),
        CatalogOptions(defaults=RequestDefaults(video_name="{title} promo")),
    )
    none, mug = batch.rows
    assert none.fields is not None
    assert mug.fields is not None
    assert (none.fields.name, mug.fields.name) == ("promo", "Mug promo")
    previous = none.fields._replace(name="none promo")
    assert fingerprint(previous) in batch.rows.earlier_fingerprints(0)
    previous = mug.fields._replace(name="Mug\u200b promo")
    assert fingerprint(previous) in batch.rows.earlier_fingerprints(1)
