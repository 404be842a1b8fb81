"""Files as they really arrive: a corpus of broken (and oddly shaped but fine) catalogs, each
run through `validate` and `run` against the sandbox, with the exit code, the line a person
reads, and what the sandbox received."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from batch.cli import main
from batch.store.results import read_results
from tests.helpers import product_ids, submissions

IDS = product_ids(3)
LETTERS_ONLY_ID = product_ids(20)[19]  # MTcyMTExMDkzNg: base64 of a number, with no digit
GOOD = f"product_id,title,length\n{IDS[0]},Mug,15\n{IDS[1]},Lamp,15\n"


def lines(*rows: str, end: str = "\n") -> bytes:
    return "".join(row + end for row in rows).encode()


def one_row(header: str, value: str) -> Callable[[], bytes]:
    """A catalog of a product id and one more column."""
    return lambda: lines(f"product_id,{header}", f"{IDS[0]},{value}")


def big_csv(rows: int, broken_row: int, broken: str) -> bytes:
    """`rows` rows of sandbox products; row `broken_row` is replaced by `broken`."""
    body = [f"{IDS[i % 3]},Item {i},15" for i in range(1, rows + 1)]
    body[broken_row - 1] = broken
    return lines("product_id,title,length", *body)


def xlsx() -> bytes:
    """A minimal workbook: a ZIP archive, as Excel writes one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def zipped() -> bytes:
    """A catalog in a ZIP archive, as a mail client or `zip` makes one."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("catalog.csv", GOOD)
    return buffer.getvalue()


def parquet(rows: int = 2) -> bytes:
    buffer = io.BytesIO()
    table = pa.table({"product_id": [IDS[i % 3] for i in range(rows)], "length": ["15"] * rows})
    pq.write_table(table, buffer)
    return buffer.getvalue()


def huge_cell(size: int) -> bytes:
    return lines("product_id,notes,length", f'{IDS[0]},"{"x" * size}",15', f"{IDS[1]},short,15")


def wide_csv(first: str, last: str, values: list[str]) -> bytes:
    """5,000 attribute columns (about 90 KiB of header) between `first` and `last`; a row per
    value of `last`, the other column filling in a sandbox product or a length."""
    attributes = [f"attribute_column_{i:05d}" for i in range(5000)]
    fill = dict(zip(values, IDS, strict=False)) if last == "length" else dict.fromkeys(values, "15")
    body = [",".join([fill[value], *["v"] * len(attributes), value]) for value in values]
    return lines(",".join([first, *attributes, last]), *body)


@dataclass(frozen=True)
class Case:
    """One file of the corpus; `sent` is what a run must send, `says` what its message names."""

    name: str
    content: Callable[[], bytes]
    code: int
    says: tuple[str, ...] = ()
    sent: int = 0


CORPUS = [
    Case("empty.csv", lambda: b"", 2, ("empty.csv: is empty",)),
    Case("blank.csv", lambda: b"\n\n", 2, ("has no header row",)),
    Case("header_only.csv", lambda: b"product_id,title,length\n", 0),
    Case("bom_utf8.csv", lambda: b"\xef\xbb\xbf" + GOOD.encode(), 0, sent=2),
    # UTF-16 with its byte order mark is certain (Excel's "Unicode Text"): read, not refused.
    Case("bom_utf16le.csv", lambda: b"\xff\xfe" + GOOD.encode("utf-16-le"), 0, sent=2),
    Case("bom_utf16be.csv", lambda: b"\xfe\xff" + GOOD.encode("utf-16-be"), 0, sent=2),
    Case("utf16_broken.txt", lambda: b"\xff\xfe" + GOOD.encode("utf-16-le") + b"\x00\xd8A\x00",
         2, (f"utf16_broken.txt line 4: byte {2 + 2 * len(GOOD)} is not UTF-16 text",)),
    Case("utf16_deep.txt", lambda: b"\xff\xfe" + big_csv(3000, 2500, f"{IDS[0]},?,15").decode()
         .encode("utf-16-le").replace("?".encode("utf-16-le"), b"\x00\xdc"), 2,
         ("utf16_deep.txt line 2501: byte",)),
    Case("utf16_ragged.txt", lambda: b"\xff\xfe" + (GOOD + f"{IDS[2]}\tx\n").replace(",", "\t")
         .encode("utf-16-le"), 2, ("utf16_ragged.txt line 4 (row 3): has 2 cells where the header "
         "has 3",)),
    Case("bom_utf32.csv", lambda: GOOD.encode("utf-32"), 2, ("UTF-32 text",)),
    # A CRM report's footer below the rows: named as such, not only as Excel's dropped cells.
    Case("footer.csv", lambda: (GOOD + '"Confidential Information - Do Not Distribute"\n')
         .encode(), 2, ("a note or a report's footer",)),
    # Compressed otherwise than gzip (read with --format csv): named, not "a NUL byte".
    Case("catalog.txt", lambda: bz2.compress(GOOD.encode()), 2, ("is bzip2-compressed",)),
    Case("catalog.xz.txt", lambda: lzma.compress(GOOD.encode()), 2, ("is xz-compressed",)),
    Case("utf16_no_bom.csv", lambda: GOOD.encode("utf-16-le"), 2, ("is not a text file",)),
    Case("latin1.csv", lambda: f"{GOOD}{IDS[2]},Café,15\n".encode("latin-1"), 2,
         ("latin1.csv line 4 (row 3)", "column 'title'", "byte 0xE9", "UTF-8")),
    Case("cp1252_deep.csv", lambda: big_csv(3000, 2500, f"{IDS[0]},\x93quoted\x94,15")
         .replace(b"\xc2\x93", b"\x93").replace(b"\xc2\x94", b"\x94"), 2,
         ("line 2501 (row 2500)", "byte 0x93")),
    Case("binary.csv", lambda: bytes(range(256)) * 64, 2, ("is not a text file",)),
    # A stray NUL in a text file is named where it is, not taken for a binary file.
    Case("nul_in_a_row.csv", lambda: lines("product_id,title", f"{IDS[0]},a", f"{IDS[1]},b\0c"),
         2, ("nul_in_a_row.csv line 3 (row 2): column 'title' holds a NUL byte",)),
    Case("twice.csv.gz", lambda: gzip.compress(gzip.compress(GOOD.encode())), 2,
         ("twice.csv.gz: is compressed twice (a gzip file inside the gzip file)",)),
    Case("empty.jsonl.gz", lambda: gzip.compress(b""), 2,
         ("empty.jsonl.gz: is empty; the first line must name the columns",)),
    Case("workbook.csv", xlsx, 2, ("ZIP archive", ".xlsx", "CSV UTF-8")),
    # A catalog someone zipped is no workbook: the archive's first file is named.
    Case("zipped.csv", zipped, 2,
         ("zipped.csv: is a ZIP archive, not text (its first file is 'catalog.csv'); unzip it",)),
    Case("parquet_named.csv", parquet, 2, ("a Parquet file", "--format parquet")),
    Case("truncated.parquet", lambda: parquet(50)[:-40], 2,
         ("truncated.parquet: is not a Parquet file, or is cut short",)),
    Case("broken_line.jsonl",
         lambda: lines(f'{{"product_id": "{IDS[0]}"}}', f'{{"product_id": "{IDS[1]}",}}'), 2,
         ("broken_line.jsonl line 2 (row 2): is not JSON",)),
    Case("array_line.jsonl", lambda: lines(f'{{"product_id": "{IDS[0]}"}}', "[1, 2]"), 2,
         ("line 2 (row 2): is not a JSON object",)),
    Case("mixed_endings.csv",
         lambda: f"product_id,title,length\r\n{IDS[0]},A,15\n{IDS[1]},B,15\r{IDS[2]},C,15\r\n"
         .encode(), 0, sent=3),
    Case("cell_3mib.csv", lambda: huge_cell(3 << 20), 0, sent=2),
    Case("cell_16mib.csv", lambda: huge_cell(16 << 20), 0, sent=2),
    Case("duplicate_header.csv", lambda: lines("product_id,title,title", f"{IDS[0]},a,b"), 2,
         ("columns 2 and 3 are all named 'title'",)),
    Case("case_collision.csv", lambda: lines("product_id,Title, title ", f"{IDS[0]},a,b"), 2,
         ("columns 2 and 3 ('Title', ' title ') are the same name",)),
    # A trailing delimiter on every line: a nameless column, left out while it holds nothing.
    Case("trailing_delimiter.csv", lambda: lines("product_id,title,,", f"{IDS[0]},a,,",
         f"{IDS[1]},b, ,"), 0, sent=2),
    Case("nameless_value.csv", lambda: lines("product_id,title,length,",
         *(f"{IDS[i % 3]},Item {i},15," for i in range(20)), f"{IDS[0]},a,15,x"), 2,
         ("nameless_value.csv line 22 (row 21): column 4 (after 'length') has no name in the "
          "header, yet holds 'x'",)),
    Case("ragged_row.csv", lambda: big_csv(10, 7, f"{IDS[0]},a,15,extra"), 2,
         ("ragged_row.csv line 8 (row 7): has 4 cells where the header has 3",)),
    # A problem within one line leaves the lines below readable: every such line is listed.
    Case("ragged_rows.csv", lambda: lines("product_id,title,length", f"{IDS[0]},a,15",
         f"{IDS[1]},Mug, blue,15", f"{IDS[2]},b,15", f"{IDS[0]},c", f"{IDS[1]},d,15,x,y"), 2,
         ("ragged_rows.csv: 3 lines cannot be read as rows; fix each:",
          "ragged_rows.csv line 3 (row 2): has 4 cells where the header has 3",
          "ragged_rows.csv line 5 (row 4): has 2 cells where the header has 3; every line needs "
          "a cell (empty or not) for each column (Excel leaves out the empty cells at the ends of "
          "rows, 16 rows at a time, when it saves CSV: give the workbook itself, .xlsx",
          "ragged_rows.csv line 6 (row 5): has 5 cells where the header has 3")),
    # Two exports joined, the second's columns in another order (behind its byte order mark):
    # every row below its header would go under the wrong columns.
    Case("reordered_export.csv", lambda: lines("product_id,video_name,override_script",
         f"{IDS[0]},Mug,Meet the mug") + b"\xef\xbb\xbf" + lines(
         "product_id,override_script,video_name", f"{IDS[1]},Meet the lamp,Lamp"), 2,
         ("reordered_export.csv line 3 (row 2): repeats the header with its columns in another "
          "order ('override_script' under 'video_name'): two exports joined together?",)),
    Case("reordered_id_moved.csv", lambda: lines("product_id,sku,video_name",
         f"{IDS[0]},SKU1,Mug", "SKU,Product ID,Video Name", f"SKU2,{IDS[1]},Lamp"), 2,
         ("line 3 (row 2): repeats the header with its columns in another order ('SKU' under "
          "'product_id')",)),
    # Read through the ordinary reader (compressed JSON Lines), typed cells beside the names.
    Case("names_again.jsonl.gz", lambda: gzip.compress(lines(
         f'{{"product_id": "{IDS[0]}", "video_name": "a", "length": 15}}',
         '{"product_id": "video_name", "video_name": "product_id", "length": 30}')), 2,
         ("names_again.jsonl.gz row 2: repeats the header with its columns in another order",)),
    # One cell naming a column is a value, not a header line.
    Case("names_a_column.csv", lambda: lines("product_id,sku,video_name",
         f"{IDS[0]},video_name,Mug", f"{IDS[1]},SKU2,Lamp"), 0, sent=2),
    # A line of spaces is no row, yet no empty line either (pyarrow reads it as one cell).
    Case("spaces_line.csv", lambda: lines("product_id,title,length", f"{IDS[0]},a,15", " \t "),
         2, ("spaces_line.csv line 3 (row 2): holds only spaces or tabs; delete the line",)),
    # A header cell wrapped onto two lines (Alt+Enter in Excel) names its column as one line.
    Case("wrapped_header.csv", lambda: lines('product_id,"Aspect\nRatio",length',
         f"{IDS[0]},9:16,15"), 0, sent=1),
    Case("unbalanced_quote_deep.csv", lambda: big_csv(60_000, 50_000, f'{IDS[0]},"Mug 12,15'), 2,
         ("unbalanced_quote_deep.csv line 50001 (row 50000)", "quote")),
    Case("unclosed_last_cell.csv", lambda: big_csv(20, 19, f'{IDS[0]},Mug,"15'), 2,
         ("line 20 (row 19): a cell opens with a quote that never closes",)),
    # Lenient as pyarrow is: text after a closing quote joins the cell ("Mug 12").
    Case("text_after_quote.csv", lambda: big_csv(20, 5, f'{IDS[0]},"Mug" 12,15'), 0, sent=3),
    Case("text_after_quote_odd.csv", lambda: big_csv(20, 5, f'{IDS[0]},"Mug" 12",15'), 2,
         ("line 6 (row 5)", "text follows its closing quote")),
    # Excel's first line `sep=;` declares the delimiter; lines keep their numbers below it.
    Case("excel_sep.csv", lambda: lines("sep=;", "product_id;title;length", f"{IDS[0]};Mug;15",
         f"{IDS[1]};Lamp;15", end="\r\n"), 0, sent=2),
    Case("excel_sep_ragged.csv", lambda: lines("sep=;", "product_id;title;length",
         f"{IDS[0]};Mug;15", f"{IDS[1]};Lamp;15;x"), 2,
         ("excel_sep_ragged.csv line 4 (row 2): has 4 cells where the header has 3",)),
    Case("nul_deep.csv", lambda: big_csv(3000, 2999, f"{IDS[0]},a\x00b,15"), 2,
         ("line 3000 (row 2999): column 'title' holds a NUL byte",)),
    # A pivoted export's header past 64 KiB is read whole: the `length` of row 2 is refused.
    Case("wide_header.csv", lambda: wide_csv("product_id", "length", ["15", "45"]), 1,
         sent=1),
    Case("wide_header_id_last.csv", lambda: wide_csv("length", "product_id", IDS[:2]), 0,
         sent=2),
    # Classic Mac line ends (a lone CR), as Excel for Mac's "CSV (Macintosh)" writes them.
    Case("mac_line_ends.csv", lambda: GOOD.replace("\n", "\r").encode(), 0, sent=2),
    Case("mac_sep_line.csv", lambda: lines("sep=;", "product_id;title;length",
         f"{IDS[0]};Mug;15", end="\r"), 0, sent=1),
    Case("header_no_line_end.csv", lambda: b"product_id,title,length", 0),
    # A database's tab-separated export does not quote: a title starting with a quote took the
    # rows below into one cell, closed by a later title's quote. Refused, naming both lines.
    Case("stray_quotes.tsv", lambda: lines("product_id\ttitle\tlength",
         *(f"{IDS[i % 3]}\t{title}\t15" for i, title in enumerate(
             ["a", '"Deluxe Pan', "b", "c", 'Pizza pan 12"', "d"]))), 2,
         ("stray_quotes.tsv line 3 (row 2): column 'title' opens with a quote that runs on to "
          "line 6",)),
    Case("quoted_multiline.tsv", lambda: lines("product_id\ttitle\tlength",
         f'{IDS[0]}\t"two\nlines"\t15', f'{IDS[1]}\t"a\tb"\t15'), 0, sent=2),
    # The same in a comma-separated file, where quoting is the rule: a stray quote at the start
    # of a cell and an inch mark closing a later one take the rows between, widths even.
    Case("stray_quotes.csv", lambda: lines("product_id,title,length",
         *(f"{IDS[i % 3]},{title},15" for i, title in enumerate(
             ["a", '"Deluxe Pan', "b", "c", 'Pizza pan 12"', "d"]))), 2,
         ("stray_quotes.csv line 3 (row 2): column 'title' opens with a quote that runs on to "
          "line 6, taking in lines that read as rows",)),
    Case("stray_quotes_next_row.csv", lambda: lines("product_id,title,length",
         *(f"{IDS[i % 3]},{title},15" for i, title in enumerate(
             ["a", '"Deluxe Pan', 'Pizza pan 12"', "d"]))), 2,
         ("line 3 (row 2): column 'title' opens with a quote that runs on to line 4",)),
    # A cell that is one line by nature (a video's name, a product id) holding a line break
    # is a stray quote's however few the columns, or however unlike the product ids look.
    Case("stray_quote_two_columns.csv", lambda: lines("product_id,video_name",
         f'{IDS[0]},"Big sale', f"{IDS[1]},Second", f'{IDS[2]},Mug 12"', f"{IDS[0]},last"), 2,
         ("stray_quote_two_columns.csv line 2 (row 1): column 'video_name' opens with a quote "
          "that runs on to line 4, yet video_name is one line",)),
    # A name written on two lines, its quotes right: said as a line break, not a stray quote.
    Case("name_on_two_lines.csv", lambda: lines("product_id,video_name",
         f'{IDS[0]},"Gift Set', 'with ribbon"', f"{IDS[1]},Second"), 2,
         ("line 2 (row 1): column 'video_name' holds a line break ('Gift Set\\nwith ribbon' "
          "runs on to line 3), yet video_name is one line: take the line break out",)),
    Case("stray_quote_one_column.csv", lambda: lines("product_id",
         f'"{IDS[0]}', IDS[1], f'{IDS[2]}"', IDS[0]), 2,
         ("line 2 (row 1): column 'product_id' opens with a quote that runs on to line 4",)),
    Case("stray_quote_other_shapes.csv", lambda: lines("product_id,video_name,length",
         '1001,"Big sale,30', f"{IDS[1]},Second,30", f'{IDS[2]},Mug 12",30', "1004,last,30"), 2,
         ("line 2 (row 1): column 'video_name' opens with a quote that runs on to line 4",)),
    Case("stray_quote_by_url.csv", lambda: lines("product_id,product_url,video_name,length",
         ',https://shop.example/a,"Big sale,30', ",https://shop.example/b,Second,30",
         ',https://shop.example/c,Mug 12",30', ",https://shop.example/d,last,30"), 2,
         ("line 2 (row 1): column 'video_name' opens with a quote that runs on to line 4",)),
    # Two columns: a script's stray quote, closed by a later row's inch mark, took two rows in
    # (a script is several lines by nature); the lines hold ids shaped like the row's own.
    Case("stray_quote_script.csv", lambda: lines("product_id,override_script",
         f'{IDS[0]},"Best mug ever', f"{IDS[1]},Loud speaker", f'{IDS[2]},Pizza stone 12"',
         f"{IDS[0]},Bag"), 2,
         ("stray_quote_script.csv line 2 (row 1): column 'override_script' opens with a quote "
          "that runs on to line 4, taking in lines that read as rows",)),
    # ... whatever kinds of character the first row's id has (JoggAI's are base64 of a number).
    Case("stray_quote_letters_only_id.csv", lambda: lines("product_id,override_script",
         f'{LETTERS_ONLY_ID},"Best mug ever', f"{IDS[1]},Loud speaker", f'{IDS[2]},Pizza stone 12"',
         f"{IDS[0]},Bag"), 2, ("taking in lines that read as rows",)),
    # A list of compatible models, or a variant per line, is no row of ids: not base64 of a number.
    Case("compatible_models.csv", lambda: lines("product_id,description",
         f'{IDS[0]},"Fits:\r\niPhone15Pro,iPhone15Plus\r\nGalaxyS24,GalaxyS24Ultra"',
         f"{IDS[1]},Case", end="\r\n"), 0, sent=2),
    Case("variants_unspaced.csv", lambda: lines("product_id,title,description",
         f'{IDS[0]},Bottle,"Variants:\nBOT500ML,Steel,500ml\nBOT750ML,Steel,750ml"',
         f"{IDS[1]},Speaker,Loud"), 0, sent=2),
    # ... while a script's own lines that start with a code are not rows of ids.
    Case("script_lines_with_codes.csv", lambda: lines("product_id,override_script",
         f'{IDS[0]},"Our year:\nSUMMER2024,our best sale\nEnds soon"', f"{IDS[1]},Bag"), 0,
         sent=2),
    # A description listing variants one a line, as prose writes a list (`, ` between), is a
    # cell: a tool's row has no space after each delimiter.
    Case("variants_listed.csv", lambda: lines("product_id,title,description,price",
         f'{IDS[0]},Bottle,"Variants:\nBOT500ML, Steel, 500 ml, 19.90\nBOT750ML, Steel, 750 ml, '
         '24.90\nShips in 2 days",19.90', f"{IDS[1]},Speaker,Loud.,49.00"), 0, sent=2),
    # Text of several lines (commas in them) in a quoted cell is a cell, not rows: even where
    # a line holds as many commas as a row, a row would hold a product id there, not words.
    Case("quoted_multiline.csv", lambda: lines("product_id,title,length,notes",
         f'{IDS[0]},"two\nlines, a comma",15,"x, y\nz, w, v\nin red, blue, or green, all"',
         f"{IDS[1]},b,15,"), 0, sent=2),
    Case("multiline_address.csv", lambda: lines("product_id,length,address",
         f'{IDS[0]},15,"Acme Ltd\nUnit 4, 12 High St, Leeds"', f'{IDS[1]},15,"Globex\nTeam A, '
         'Floor 2\nSpringfield, IL, USA"'), 0, sent=2),
    # JSON Lines: every line's keys are the columns; one that is empty or collides may be on
    # any line, not the first.
    Case("empty_key.jsonl", lambda: lines(f'{{"product_id": "{IDS[0]}"}}',
         f'{{"product_id": "{IDS[1]}", "": "x"}}'), 2,
         ("empty_key.jsonl: column 2 (after 'product_id') has no name",
          "in JSON Lines, the keys of every line")),
    Case("colliding_key.jsonl", lambda: lines(f'{{"product_id": "{IDS[0]}"}}',
         f'{{"Product-ID ": "{IDS[1]}"}}'), 2,
         ("columns 1 and 2 ('product_id', 'Product-ID ') are the same name",)),
    # A results file given to `run` as its catalog: its cells carry the results' marks (`'`
    # before formula-like text), so every row would be a new request; `retry` is the way.
    Case("c.results.csv", lambda: lines("product_id,title,row,status,video_id,code,attempts",
         f"{IDS[0]},'-50% sale,1,submitted,v1,0,1"), 2,
         ("c.results.csv: is a results file of jogg-batch", "jogg-batch retry ")),
    # The same cut down by a script to what it needed (no row, code or attempts).
    Case("trimmed.results.csv", lambda: lines("product_id,title,status,video_id",
         f"{IDS[0]},'-50% sale,not_attempted,"), 2,
         ("trimmed.results.csv: is a results file of jogg-batch", "jogg-batch retry ")),
    # Named as a product's detail as often: refused before sending when its values are the
    # request field's (a book's `Format: Paperback` passes through).
    Case("format_column.csv", lambda: lines("product_id,Format", f"{IDS[0]},9:16"), 2,
         ("column 'Format' is not a request column", '("Format" = "aspect_ratio")')),
    Case("format_of_a_book.csv", lambda: lines("product_id,Format", f"{IDS[0]},Paperback"), 0,
         sent=1),
    # A legacy export's DOS end-of-file mark, invisible in an editor.
    Case("ctrl_z.csv", lambda: lines("product_id,length", f"{IDS[0]},15") + b"\x1a", 2,
         ("ctrl_z.csv line 3 (row 2): holds only a DOS end-of-file mark (Ctrl-Z, byte 0x1A",)),
    # A furniture shop's size: its Length beside Width and Height is no video's length.
    Case("furniture.csv", lambda: lines("product_id,Width,Height,Length,Weight",
         f"{IDS[0]},80,75,60,12"), 2,
         ("column 'Length' sits beside 'Width' and 'Height', as a product's size does",)),
    Case("furniture_in_cm.csv", lambda: lines("product_id,Width,Height,Length (cm),length",
         f"{IDS[0]},80,75,120,15"), 0, sent=1),
    # ... under other names (Amazon's `Item Width`, French), and with a video's `Length (s)`
    # beside it: only a length with a unit of size is the product's.
    Case("meubles.csv", lambda: lines("product_id,Largeur,Poids,Length",
         f"{IDS[0]},80,12,60"), 2, ("column 'Length' sits beside 'Largeur' and 'Poids'",)),
    Case("furniture_item_sizes.csv", lambda: lines(
         "product_id,Item Width,Item Height,Length,Length (s)", f"{IDS[0]},80,75,60,15"), 2,
         ("column 'Length' sits beside 'Item Width' and 'Item Height'",)),
    # A rug sold by its length and width (with or without its unit): not the video's length.
    Case("rug_length_width.csv", lambda: lines(
         "product_id,Length,Width,Unit", f"{IDS[0]},60,40,cm"), 2,
         ("column 'Length' sits beside 'Width', as a product's size does",)),
    # The product's own length named beside it (Google Merchant's product_length): then this
    # `length` is the video's.
    Case("merchant_sizes_and_video_length.csv", lambda: lines(
         "product_id,product_length,product_width,product_height,length",
         f"{IDS[0]},120,60,75,30s"), 0, sent=1),
    # Video settings under names in other languages, a misspelling, a note in German, and an
    # accent written decomposed (as a Mac writes it): each refused, not sent with the default.
    *(Case(f"setting_named_{n}.csv", one_row(header, v), 2, ("is not a request column",))
      for n, (header, v) in enumerate([
          ("Lenght", "60"), ("Dauer (Sek.)", "60"), ("Duracio\u0301n", "60"),
          ("Untertitel (ja/nein)", "ja"), ("Sous-titres", "oui"), ("Seitenverhältnis", "9:16"),
          ("Sprecher", "en-US-JennyNeural"), ("Musik", "12"), ("Narration", "Meet Aurora."),
          ("Avatar #", "127"), ("Sprache (Video)", "german")])),
    # A weight and its unit are one measure: a video's length beside them is the video's.
    Case("weight_and_unit.csv", lambda: lines("product_id,Weight,Weight Unit,length",
         f"{IDS[0]},12,kg,30"), 0, sent=1),
    # A voice-over's voice and text as marketers name them: every row sent with the defaults.
    Case("voiceover.csv", lambda: lines("product_id,Voiceover", f"{IDS[0]},en-US-JennyNeural"), 2,
         ("column 'Voiceover' is not a request column", '("Voiceover" = "voice_id")')),
    Case("voiceover_script.csv", lambda: lines("product_id,Voiceover script",
         f"{IDS[0]},Cold for 24 hours."), 2,
         ('("Voiceover script" = "override_script")',)),
    # ... and names a product's detail has as often, decided by their values.
    Case("video_style.csv", lambda: lines("product_id,Video Style",
         f"{IDS[0]},Elegant Presentation"), 2, ('("Video Style" = "visual_style")',)),
    Case("video_format.csv", lambda: lines("product_id,Video Format", f"{IDS[0]},9:16"), 2,
         ('("Video Format" = "aspect_ratio")',)),
    Case("video_format_of_a_camera.csv", lambda: lines("product_id,Video Format", f"{IDS[0]},MP4"),
         0, sent=1),

    Case("near_miss_header.csv", lambda: lines("product_id,title,Captions", f"{IDS[0]},Mug,yes"),
         2, ("column 'Captions' is not a request column", '("Captions" = "caption")')),
]  # fmt: skip


SANDBOX = {"rate_limit": None, "credits": 100_000}  # the `sandbox_url` of tests/conftest.py


def invoke(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, list(args), env={"JOGG_API_KEY": "sk-sandbox"})
    return result.exit_code, result.output, result.exception


def assert_reported(code: int, output: str, exception: BaseException | None, case: Case) -> None:
    assert isinstance(exception, SystemExit | None), f"uncaught {exception!r}"
    assert "Traceback" not in output
    for text in case.says:
        assert text in output, output


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_run_refuses_a_broken_file_before_sending(
    tmp_path: Path, sandbox_url: str, case: Case
) -> None:
    """run: the right exit code and message, no traceback, and nothing sent for a broken file."""
    catalog = tmp_path / case.name
    catalog.write_bytes(case.content())
    # A fresh account per case: the same rows in another file would be found in its listing.
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    before = len(submissions(sandbox_url)["submissions"])
    code, output, exception = invoke(
        "run", str(catalog), "--offline", "--base-url", sandbox_url, "--rate-limit", "none",
        "--state", str(tmp_path / "s.db"), "--results", str(tmp_path / "out" / "r.csv"),
    )  # fmt: skip
    assert code == case.code, output
    assert_reported(code, output, exception, case)
    assert len(submissions(sandbox_url)["submissions"]) - before == case.sent
    if code == 2:
        assert sorted(path.name for path in tmp_path.iterdir()) == [case.name]  # wrote nothing


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_validate_refuses_what_run_refuses(tmp_path: Path, case: Case) -> None:
    """validate exits with run's code for every file of the corpus, with the same message."""
    catalog = tmp_path / case.name
    catalog.write_bytes(case.content())
    code, output, exception = invoke("validate", str(catalog))
    assert code == case.code, output
    assert_reported(code, output, exception, case)


@pytest.mark.parametrize("key", ["product_id", "product_name"])
def test_two_exports_joined_with_their_byte_order_marks_never_send_the_second_header(
    tmp_path: Path, key: str
) -> None:
    """`cat` of two Excel "CSV UTF-8" exports: the second header, behind its byte order mark,
    is the row that repeats the header line, whatever column comes first."""
    catalog = tmp_path / "joined.csv"
    header = f"{key},description,length"
    first, second = (lines(header, f"{value},A thing,15") for value in IDS[:2])
    catalog.write_bytes(b"\xef\xbb\xbf" + first + b"\xef\xbb\xbf" + second)
    code, output, _ = invoke("validate", str(catalog))
    assert code == 1, output
    assert f"joined.csv row 2, column '{key}': the row repeats the header line" in output


def test_excels_unicode_text_export_is_read_and_passed_through_as_typed(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Excel's "Unicode Text" (UTF-16 with its byte order mark, tab-separated, CRLF): the rows
    are sent with their text, and the results file (UTF-8) holds the cells exactly."""
    catalog = tmp_path / "export.txt"
    rows = ["product_id\ttitle\tlength", f"{IDS[0]}\tCafé ☕ «x»\t15", f'{IDS[1]}\t"a\tb"\t30']
    catalog.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-16"))
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    code, output, _ = invoke(
        "run", str(catalog), "--offline", "--base-url", sandbox_url, "--rate-limit", "none",
        "--state", str(tmp_path / "s.db"),
    )  # fmt: skip
    assert code == 0, output
    frame = read_results(tmp_path / "export.results.csv")
    assert list(frame["title"]) == ["Café ☕ «x»", "a\tb"]
    assert list(frame["length"]) == ["15", "30"]
    sent = submissions(sandbox_url)["submissions"]
    assert sorted(s["payload"]["video_spec"]["length"] for s in sent) == ["15", "30"]


def test_a_16_mib_cell_reaches_the_results_file_whole(tmp_path: Path, sandbox_url: str) -> None:
    """A cell far beyond pyarrow's block size is read, passed through and written intact."""
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(huge_cell(16 << 20))
    code, output, _ = invoke(
        "run", str(catalog), "--offline", "--base-url", sandbox_url, "--rate-limit", "none",
    )  # fmt: skip
    assert code == 0, output
    notes = read_results(tmp_path / "c.results.csv")["notes"]
    assert [len(note) for note in notes] == [16 << 20, 5]


def test_a_jsonl_column_changing_kind_between_batches_reaches_a_parquet_results_file(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A JSON Lines `length` of 15 then "15s", a `price` of 10 then 1.5, batches of 2 rows:
    the run writes its .parquet results file (it crashed after every row was sent)."""
    catalog = tmp_path / "c.jsonl"
    records = [
        {"product_id": IDS[0], "length": 15, "price": 10, "tags": []},
        {"product_id": IDS[1], "length": 15, "price": 12, "tags": []},
        {"product_id": IDS[2], "length": "15s", "price": 1.5, "tags": ["x"]},
    ]
    catalog.write_text("".join(json.dumps(record) + "\n" for record in records))
    settings = tmp_path / "c.toml"
    settings.write_text("[catalog]\nbatch_rows = 2\n")
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    results = tmp_path / "r.parquet"
    code, output, exception = invoke(
        "run", str(catalog), "--offline", "--base-url", sandbox_url, "--rate-limit", "none",
        "--config", str(settings), "--state", str(tmp_path / "s.db"), "--results", str(results),
    )  # fmt: skip
    assert (code, exception) == (0, None), output
    frame = read_results(results)
    assert list(frame["length"]) == ["15", "15", "15s"]
    assert list(frame["price"]) == ["10", "12", "1.5"]  # as the .csv results file writes it
    assert list(frame["tags"]) == ["[]", "[]", '["x"]']
    assert list(frame["status"]) == ["submitted"] * 3


def test_a_column_mapping_typo_stops_validate_naming_the_settings_file(tmp_path: Path) -> None:
    """validate exits 2 when the --config [columns] mapping names a header the catalog lacks."""
    catalog = tmp_path / "c.csv"
    catalog.write_text(f"product_id,Avatar\n{IDS[0]},1\n")
    settings = tmp_path / "m.toml"
    settings.write_text('[columns]\n"Avtar" = "avatar_id"\n')
    code, output, _ = invoke("validate", str(catalog), "--config", str(settings))
    assert code == 2, output
    assert f"the [columns] mapping in {settings} names the header 'Avtar'" in output


def test_a_catalog_that_is_a_pipe_is_refused_saying_so(tmp_path: Path) -> None:
    """`validate <(cat catalog.csv)`: a pipe can be read once, a catalog is read more than
    once; refused naming what it is, never "no such catalog file"."""
    pipe = tmp_path / "c.csv"
    os.mkfifo(pipe)
    code, output, _ = invoke("validate", str(pipe))
    assert code == 2
    assert f"{pipe}: is not a regular file (a pipe or a device?)" in output


def test_a_quote_that_runs_on_ends_the_list_of_ragged_lines(tmp_path: Path) -> None:
    """Lines below a quote that never closes may be read wrong: the list stops there, and a
    long list shows its first 20 lines and counts the rest."""
    body = [f"{IDS[0]},Item {i},15" + (",x" if i % 2 else "") for i in range(1, 51)]
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(lines("product_id,title,length", *body, f'{IDS[1]},"Mug,15', "P9,a,15,x"))
    code, output, exception = invoke("validate", str(catalog))
    assert (code, exception.code if isinstance(exception, SystemExit) else exception) == (2, 2)
    assert "c.csv: 26 lines cannot be read as rows; fix each:" in output
    listed = [line for line in output.splitlines() if line.startswith(f"  {catalog} line ")]
    assert len(listed) == 20
    assert listed[0].endswith("line 2 (row 1): has 4 cells where the header has 3; put a cell "
                              "that holds ',' between quotes")  # fmt: skip
    assert listed[-1].startswith(f"  {catalog} line 40 (row 39): has 4 cells")
    assert "  ... and 6 more lines like these" in output.splitlines()


def test_json_lists_each_ragged_line_as_a_problem(tmp_path: Path) -> None:
    """With --json, the error's document lists the lines as `problems`, the message heading them."""
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(lines("product_id,title", f"{IDS[0]},a,b", f"{IDS[1]},c", f"{IDS[2]}"))
    result = CliRunner().invoke(main, ["validate", str(catalog), "--json"])
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document == {
        "error": f"{catalog}: 2 lines cannot be read as rows; fix each:",
        "exit_code": 2,
        "problems": [
            f"{catalog} line 2 (row 1): has 3 cells where the header has 2; put a cell that "
            "holds ',' between quotes",
            f"{catalog} line 4 (row 3): has 1 cells where the header has 2; every line needs a "
            "cell (empty or not) for each column (Excel leaves out the empty cells at the ends "
            "of rows, 16 rows at a time, when it saves CSV: give the workbook itself, .xlsx, "
            "which is read as it is)",
        ],
    }
