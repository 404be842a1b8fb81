"""Catalog columns -> request values: header mapping, vectorised normalisation, name templates.

Each column of a batch is dictionary-encoded, so a scalar normaliser from `batch.payload` runs
once per distinct value (a catalog of a million rows holds a handful of lengths and styles) and
the results are mapped back to rows with one numpy `take`. Fingerprints are built the same way:
each distinct value is encoded once, the encodings are joined per row by Arrow, and only the
sha256 itself runs per row. Row objects are built only for the rows that are used
(`ResolvedRows`).
"""

from __future__ import annotations

import ast
import csv
import difflib
import json
import math
import re
import shlex
import string
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final, Literal, TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch import payload, storage
from batch.catalog.rows import FREE_TEXT_COLUMNS, CatalogOptions, ResolvedRows, RowProblem
from batch.errors import CatalogError
from batch.payload import RequestDefaults
from batch.storage import Location

Normalizer = Callable[[object], object]


def _as_typed(value: object) -> str:
    return value if isinstance(value, str) else str(value)


# A URL's scheme after a character that neither ends a path segment nor starts a query value:
# a second URL run on from the first (`a.jpg;b.jpg`). After `/` or `=` it is a URL an image
# proxy or CDN fetches (`.../fetch/https://...`, `?url=https://...`), part of the one URL.
_RUN_ON_URL: Final = re.compile(r"(?<=[^/=])https?://", re.IGNORECASE)


# A comma between image URLs: before a space, another comma, the end or the next URL; not one
# inside a URL, as an image CDN's transformations have them (`/upload/w_400,h_300/a.jpg`).
_LIST_COMMA: Final = re.compile(r",(?=[\s,]|$|https?://)", re.IGNORECASE)


def normalize_image_urls(
    value: object, url: Callable[[object], str] = payload.normalize_url
) -> tuple[str, ...]:
    """`a.jpg|b.jpg`, `a.jpg, b.jpg` (`_LIST_COMMA`) or a JSON list (`["a.jpg","b.jpg"]`, as a
    JSON Lines catalog holds it and a results file writes it back) -> a tuple of http(s) URLs.

    An item holding a second URL (`a.jpg;b.jpg`, as a European list separator or a PIM export
    writes it) is refused rather than split: `;` is also legal inside one URL, so splitting on
    it could cut a real URL in two, and sending the item whole pays for a product with one
    broken image."""
    text = _as_typed(value)
    parts = _json_list(text)
    if parts is None:
        parts = text.split("|") if "|" in text else _LIST_COMMA.split(text)
    for part in parts:
        if _RUN_ON_URL.search(part.strip()):
            raise ValueError(
                f"{part.strip()[:80]!r} holds more than one URL; separate image URLs with | or "
                'a comma, or write a JSON list (["https://...", "https://..."])'
            )
    return tuple(url(part) for part in parts if part.strip())


def _image_urls_as_written(value: object) -> tuple[str, ...]:
    return normalize_image_urls(value, payload.written_url)


# Columns whose values earlier versions sent as written, and this one in one spelling (a URL's
# host in lower case...): the value as written gives the row's earlier fingerprint
# (`ResolvedRows.earlier_fingerprint`), so a row they sent is never paid for again.
_EARLIER_SPELLINGS: Final[dict[str, Normalizer]] = {
    "product_url": payload.written_url,
    "image_urls": _image_urls_as_written,
    "language": payload.language_as_earlier_versions_read,
}


def _json_list(text: str) -> list[str] | None:
    """The strings of a list, or None for any other text: JSON's (a null in it is a missing
    item, left out: `["a.jpg", null]`, as Spark's array() gives for a missing one), Python's
    (`['a.jpg', 'b.jpg']`, a list column pandas wrote to CSV) or PostgreSQL's array
    (`{a.jpg,"b.jpg"}`, as `COPY` and psql write a text[])."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        return next(csv.reader([stripped[1:-1]], skipinitialspace=True), [])
    if not stripped.startswith("["):
        return None
    try:
        items = json.loads(stripped)
    except ValueError:
        try:
            items = ast.literal_eval(stripped)  # literals only: nothing is run
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if isinstance(items, list) and all(isinstance(item, str | None) for item in items):
        return [item for item in items if item is not None]
    return None


# `1.23E+15`: what Excel shows, and saves as CSV, for a long number in a General cell
# (`1,23E+15` where a comma is the decimal mark).
_EXCEL_SCIENTIFIC: Final = re.compile(r"[0-9]([.,][0-9]+)?E[+-]?[0-9]+", re.IGNORECASE)


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A boolean cell as Excel writes it in its languages: a checkbox column taken for the ids, or a
# flag typed in the wrong column. No JoggAI id is one (base64 of digits starts with M, N or O).
_BOOLEAN_WORDS: Final = frozenset({
    "true", "false", "wahr", "falsch", "vrai", "faux", "verdadero", "falso", "vero", "waar",
    "onwaar", "verdadeiro", "sant", "falskt",
})  # fmt: skip


def normalize_product_id(value: object) -> str:
    """A product id as written; one Excel rewrote in scientific notation is refused, since its
    digits are gone and a guess would render some other product; so is one a float column or
    a workbook's number cell holds past 2**53, where the last digits are lost, and one with a
    character no base64 has (`_NOT_BASE64`)."""
    if isinstance(value, bool):
        raise ValueError(f"{value} (a true/false value) is no product id; write the id as text")
    text, base64 = _read_product_id(value)
    if text.casefold() in _BOOLEAN_WORDS:
        raise ValueError(
            f"{payload.shown(text)} (a true/false value, as a spreadsheet's TRUE/FALSE cell is "
            "written) is no product id; write the id as text"
        )
    if text.strip().rstrip(":").casefold() in _TOTALS_LABELS:
        raise ValueError(
            f"{payload.shown(text)} is no product id but the label of a totals row (an Excel "
            "table's Total Row, which its CSV export keeps as a row); delete the row, or untick "
            "Total Row before exporting"
        )
    if not base64 and (odd := _NOT_BASE64.search(text)):
        raise ValueError(
            f"{payload.shown(text)} is no product id: JoggAI's are base64 (letters, digits, "
            f"+/_-=, such as NTQ0MTkzNjg), and {odd.group()!r} is none of those; "
            + _ODD_ID_HINTS.get(
                odd.group(),
                "write the id as JoggAI gave it"
                if odd.group().isascii()
                else "type it in plain (half-width) letters and digits",
            )
        )
    return text


def _product_id_as_earlier_versions_read(value: object) -> str:
    """`normalize_product_id` as versions before the base64 check read an id: they sent one
    with a character outside base64 (a variation selector they kept), and the job it made
    must still be found."""
    return _read_product_id(value)[0]


def _read_product_id(value: object) -> tuple[str, bool]:
    """The id's text, and whether its every character is base64's (the usual case, which no
    line break, control character or separator can be in: those checks are skipped)."""
    if isinstance(value, float) and not (value.is_integer() and abs(value) < payload.FLOAT_EXACT):
        raise ValueError(
            f"'{value!r}' is a float, and a float column cannot hold a product id exactly; "
            "store the product ids as text"
        )
    if payload.float_digits_lost(value):
        raise ValueError(
            f"{payload.shown(value)} was written from a float (a spreadsheet's number cell, a "
            "float column), which cannot hold a product id this large exactly; format the "
            "product ids as text"
        )
    text = payload.normalize_text(value)
    base64 = _BASE64_ID.fullmatch(text) is not None
    if not base64 and ("\n" in text or "\r" in text):
        raise ValueError(
            f"{payload.shown(text)} holds a line break, and a product id is one line; take the "
            "line break out (in a CSV file, the quote that took the lines below into the cell)"
        )
    if not base64 and _CONTROL.search(text):
        raise ValueError(
            f"{payload.shown(text)} holds a control character (a tab, NUL or escape), which no "
            "product id has; write the id alone"
        )
    if _EXCEL_SCIENTIFIC.fullmatch(text):
        raise ValueError(
            f"{text!r} looks like a number Excel rewrote in scientific notation (its digits "
            "are lost); format the column as Text in Excel, type the ids again and export"
        )
    if (not base64 and _NO_ID.search(text)) or not any(char.isalnum() for char in text):
        # No id JoggAI gives (unpadded base64: `NTQ0MTkzNjg`) holds these: a note, a
        # placeholder or two ids in one cell, which JoggAI would refuse for a POST of the quota.
        raise ValueError(
            f"{payload.shown(text)} is no product id (a space, a comma, or no letter or digit): "
            "write one id per row, as JoggAI gave it (such as NTQ0MTkzNjg)"
        )
    return text, base64


_NO_ID: Final = re.compile(r"[\s,;|]")
# A product id is the unpadded base64 of a number (reference: ID formats); a character outside
# base64's alphabets (either one) is an export's quote, a typist's full-width letter, a float's
# `.0`: a POST of the quota that JoggAI would refuse.
_NOT_BASE64: Final = re.compile(r"[^A-Za-z0-9+/=_-]")
_BASE64_ID: Final = re.compile(r"[A-Za-z0-9+/=_-]+")
# What a spreadsheet's totals row says in its first column, in the languages Excel and
# LibreOffice write it (folded). None is base64 of a number, as JoggAI's ids are, and sent, one
# would cost a POST of the quota to learn that (10104), night after night.
_TOTALS_LABELS: Final = frozenset(
    {"total", "totals", "grand total", "subtotal", "sum", "summe", "gesamt", "gesamtergebnis",
     "ergebnis", "totale", "totaal", "totalt", "suma", "summa", "toplam", "celkem", "i alt",
     "yhteensä", "razem", "итог", "итого", "合計", "总计", "汇总", "합계", "insgesamt",
     "zwischensumme", "gesamtsumme", "somme", "sous-total", "sous total", "total général",
     "totale complessivo", "subtotale", "totaal generaal", "subtotaal", "total geral", "soma",
     "ukupno", "összesen", "σύνολο", "jumlah", "tổng cộng", "grand totals", "subtotals",
     "count", "record count", "total count"}
)  # fmt: skip
_ODD_ID_HINTS: Final = {
    "'": "take out the apostrophe (Excel keeps it in front of a number typed as text)",
    '"': "take out the quotes around it",
    ".": "a number column wrote it with a decimal point; store the ids as text",
}


# Canonical column -> (normaliser, name of its default in RequestDefaults, or None for no default).
_COLUMNS: Final[dict[str, tuple[Normalizer, str | None]]] = {
    "product_id": (normalize_product_id, None),
    "avatar_id": (payload.normalize_int_id, "avatar_id"),
    "avatar_type": (payload.normalize_avatar_type, "avatar_type"),
    "voice_id": (payload.normalize_text, "voice_id"),
    "music_id": (payload.normalize_int_id, "music_id"),
    "script_style": (payload.normalize_script_style, "script_style"),
    "language": (payload.normalize_language, "language"),
    "visual_style": (payload.normalize_text, "visual_style"),
    "length": (payload.normalize_length, "length"),
    "aspect_ratio": (payload.normalize_aspect_ratio, "aspect_ratio"),
    "caption": (payload.normalize_caption, "caption"),
    "video_name": (payload.normalize_text, "video_name"),
    "override_script": (_as_typed, "override_script"),
    "webhook_url": (payload.normalize_url, "webhook_url"),
    "product_url": (payload.normalize_url, None),
    "product_name": (payload.normalize_text, None),
    "description": (_as_typed, None),
    "target_audience": (_as_typed, None),
    "image_urls": (normalize_image_urls, None),
}
CANONICAL_COLUMNS: Final = tuple(_COLUMNS)
# The columns that override a request default: a header spelt almost as one is refused.
_OVERRIDES: Final = tuple(name for name, (_, default) in _COLUMNS.items() if default is not None)
# The free text that may hold several lines; a CSV cell of any other request column that does
# is a stray quote's (`structure._broken_cell`), and a product id with a line break is refused.
MULTI_LINE_COLUMNS: Final = FREE_TEXT_COLUMNS - {"video_name", "product_name"}
# The free text made alike (`_same_text`) a column at a time; video names once their templates
# are expanded, since a template takes text from any column.
_MADE_ALIKE: Final = FREE_TEXT_COLUMNS - {"video_name"}
# How R, pandas, SQL exports and people write "no value" (and an empty JSON list), matched
# ignoring case and surrounding spaces: in any other column such a cell is empty, never an id,
# enum or number.
MISSING_SPELLINGS: Final = frozenset({"null", "none", "nan", "na", "n/a", "<na>", "-", "[]"})
# How database exports write a null (SQL Server's `NULL`, MySQL's and Hive's `\N`): missing in
# free-text columns too, where a script or name "NULL" is never what was meant.
DATABASE_NULLS: Final = frozenset({"NULL", "\\N"})
# What data tools write for a missing value turned to text, missing in free text too in exactly
# these spellings: pandas' `astype(str)` before `to_parquet` or `to_csv` (NaN, None, pd.NA,
# NaT), R's `write.csv` (NA), JavaScript's `String()` of NaN and null; and a person's
# placeholder for "none" (N/A, -). A re-export that writes them where the last one left a cell
# empty must not pay every row again, nor speak "NA" or "N/A".
_DATA_TOOL_NULLS: Final = frozenset({"nan", "None", "<NA>", "NaT", "NA", "NaN", "null"})
MISSING_TEXTS: Final = _DATA_TOOL_NULLS | {
    "N/A", "n/a", "N.A.", "n.a.", "-", "--", "---", "none", "NONE", "TBD", "tbd", "TBA", "k.A.",
    "k. A.", "n.v.",
}  # fmt: skip
# The values a failed spreadsheet formula leaves (`#N/A` from a VLOOKUP that found nothing), as
# an xlsx cell or as exported text: never a value to send, in any column.
SPREADSHEET_ERRORS: Final = frozenset(
    {"#N/A", "#DIV/0!", "#NAME?", "#VALUE!", "#REF!", "#NUM!", "#NULL!", "#SPILL!", "#CALC!",
     "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"}
)  # fmt: skip
# The same as Excel writes them in German, French, Spanish, Italian, Portuguese and Dutch, and
# LibreOffice's (`Err:502`), as their CSV exports write them: matched as written, in their own
# case (a hand-typed hashtag `#nv` is no error).
LOCALIZED_ERRORS: Final = frozenset(
    {"#NV", "#WERT!", "#BEZUG!", "#ZAHL!", "#ÜBERLAUF!", "#KALK!",
     "#VALEUR!", "#NOMBRE!", "#NOM?", "#NUL!", "#PROPAGATION!",
     "#N/D", "#¡VALOR!", "#¡REF!", "#¡NUM!", "#¿NOMBRE?", "#NOMBRE?", "#¡NULO!", "#¡DIV/0!",
     "#¡DESBORDAMIENTO!", "#¡CALC!",
     "#VALORE!", "#RIF!", "#NOME?", "#NULLO!", "#ESPANSIONE!",
     "#VALOR!", "#NÚM!", "#NULO!", "#DESPEJAR!",
     "#N/B", "#WAARDE!", "#VERW!", "#GETAL!", "#NAAM?", "#LEEG!", "#DEEL/0!", "#OVERLOOP!"}
    | {f"Err:{code}" for code in range(501, 540)}
)  # fmt: skip


# What a workbook cell is read as whose formula was never calculated (`batch.catalog.excel`):
# the value stored with it, if any, is a placeholder, not the formula's.
UNCALCULATED: Final = "#UNCALCULATED"


def spreadsheet_error(value: object) -> str | None:
    """Why a cell holding a spreadsheet error cannot be sent, or None for any other cell."""
    if not isinstance(value, str):
        return None
    if value.strip().upper() == UNCALCULATED:
        return (
            "the cell's formula was never calculated: a program wrote the workbook without "
            "calculating its formulas; open and save it in Excel or LibreOffice (or paste the "
            "values over the formulas) and run again"
        )
    if value.strip().upper() not in SPREADSHEET_ERRORS and value.strip() not in LOCALIZED_ERRORS:
        return None
    return (
        f"the spreadsheet cell holds the error {value.strip()} (a formula failed); "
        "fix the formula or clear the cell"
    )


def damaged_text(value: object) -> str | None:
    """Why free text a conversion damaged cannot be sent (each such row was a changed request,
    paid for again, its avatar reading out the damage), or None for any other:
    - question marks alone (`????? ???`): Excel's "CSV (Comma delimited)" writes a `?` for
      each character its code page lacks (Hebrew, Chinese, emoji);
    - U+FFFD, which a reader writes for bytes it could not decode (`errors="replace"`, Google
      Sheets importing Windows-1252 as UTF-8);
    - UTF-8 read as Windows-1252 (`CafÃ© CrÃ¨me`): a UTF-8 file without a BOM opened in
      Excel and saved (`_utf8_read_as_cp1252`)."""
    if not isinstance(value, str):
        return None
    if value.isascii():
        if value.count("?") < 2 or any(map(str.isalnum, value)):
            return None
        return (
            f"{payload.shown(value)} is question marks alone: the characters a save could not "
            "write (Excel's 'CSV (Comma delimited)' writes '?' for each); save the catalog as "
            "'CSV UTF-8' and run again"
        )
    if "\ufffd" in value:
        return (
            f"{payload.shown(value)} holds U+FFFD (\ufffd), which a tool writes for bytes it "
            "could not read: the text was lost converting the file; take it from the original "
            "and run again"
        )
    if (meant := _utf8_read_as_cp1252(value)) is not None:
        return (
            f"{payload.shown(value)} is UTF-8 text read as Windows-1252 ({payload.shown(meant)} "
            "garbled): a spreadsheet opened the file in another encoding and saved it; take the "
            "text from the original file (in Excel: Data > From Text/CSV, UTF-8) and run again"
        )
    return None


def _utf8_read_as_cp1252(text: str) -> str | None:
    """The text whose UTF-8 bytes, read as Windows-1252 (Latin-1 for the bytes it leaves
    undefined), are `text`, where that misreading is beyond doubt; None otherwise.

    Real text holds such pairs too: a capital with an accent, or `ß`, before `®`, `’` or `…`
    (`NESCAFÉ®`, `ZOË’S`, `Spaß…`, `AMANHÃ…`) reads as a character of its own. A text is taken
    for a misreading only when every character outside ASCII is part of one, and one of them
    stands for three or four bytes (`â€™` for `’`, `ðŸš€` for an emoji: never real text), or
    two or more stand for letters and signs of the common alphabets (`CafÃ© CrÃ¨me`)."""
    text = unicodedata.normalize("NFC", text)  # a Mac's `É` is `E` and a combining accent
    if not _MISREAD_UTF8.search(text) or (meant := payload.before_read_as_cp1252(text)) is None:
        return None
    misread = [ord(char) for char in meant if not char.isascii()]
    if any(point >= 0x800 for point in misread):
        return meant
    common = [point for point in misread if any(low <= point <= high for low, high in _COMMON)]
    return meant if len(common) >= 2 and len(common) == len(misread) else None


# A UTF-8 lead byte and a continuation byte, as Windows-1252 shows them (`Ã©`, `â€™`).
_CONTINUATION: Final = "".join(payload.CP1252_CHARACTERS.values()) + "\x80-\x9f\xa0-\xbf"
_MISREAD_UTF8: Final = re.compile(f"[\xc2-\xf4][{_CONTINUATION}]")
# The two-byte characters a misreading most often stands for: Latin-1's and Latin Extended-A's
# letters and signs, and the Greek, Cyrillic, Hebrew and Arabic alphabets (not IPA, modifier
# letters, combining marks or rarer scripts, which real text's pairs read as).
_COMMON: Final = (
    (0x00A0, 0x017F), (0x0386, 0x03CE), (0x0400, 0x045F), (0x05D0, 0x05EA), (0x0620, 0x064A),
)  # fmt: skip


_PRODUCT_SOURCES: Final = ("product_id", "product_url", "product_name")
# The outcome columns that mark a results file, even one a script cut down to what it needed.
_RESULTS_SIGNATURE: Final = frozenset({"status", "video_id"})


_HEADER_SEPARATORS: Final = re.compile(r"[\s-]+")


def header_key(header: str) -> str:
    """How a header is matched: ignoring case, surrounding spaces and invisible characters, and
    with spaces and dashes inside it as `_`, so `Aspect Ratio`, `aspect-ratio` and a header
    holding a zero-width space are all `aspect_ratio` (people write them so; a header that
    matched no column would be passed through, and the request sent with the default). Accents
    are matched composed (NFC): a Mac's `Duración`, its accent a character of its own, is the
    header a Windows machine writes."""
    if header.isascii():
        return _HEADER_SEPARATORS.sub("_", header.strip()).lower()
    visible = unicodedata.normalize("NFC", _visible(header))
    return _HEADER_SEPARATORS.sub("_", visible.strip()).lower()


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """Which file header feeds each canonical column, the row-key header, template look-ups."""

    canonical: dict[str, str]
    key: str
    template_names: dict[str, str]
    # Header -> the request column it may be meant as (`refuse_doubtful_columns`); each leaves
    # once a batch has decided it.
    doubtful: dict[str, str]
    # Headers of text columns that hold lists or objects as JSON text (JSON Lines of mixed
    # kinds): such a cell of free text is refused, as in a list column.
    json_in_text: frozenset[str] = frozenset()


def check_headers(path: Location, headers: Sequence[str]) -> None:
    """Every column has a name of its own, even ignoring case, spaces and dashes.

    Columns are matched that way, and the results file keeps every column by its name, so a
    repeated, empty or colliding name is refused (CatalogError naming the columns by position)
    rather than renamed: the user fixes the header once and every file downstream agrees.
    """
    problems = []
    named: dict[str, list[tuple[int, str]]] = {}
    for position, header in enumerate(headers, 1):
        if not header.strip():
            after = f" (after {headers[position - 2]!r})" if position > 1 else ""
            problems.append(f"column {position}{after} has no name")
        else:
            named.setdefault(header_key(header), []).append((position, header))
    for same in named.values():
        if len(same) < 2:
            continue
        numbers = [str(position) for position, _ in same]
        positions = ", ".join(numbers[:-1]) + " and " + numbers[-1]
        if len({header for _, header in same}) == 1:
            problems.append(f"columns {positions} are all named {same[0][1]!r}")
        else:
            names = ", ".join(repr(header) for _, header in same)
            problems.append(
                f"columns {positions} ({names}) are the same name once case, spaces and "
                "dashes are ignored"
            )
    if problems:
        fix = (
            "give every column a name of its own in the first line (the header row of a "
            "workbook; in JSON Lines, the keys of every line, where such a key may be on any)"
        )
        if any(not header.strip() for header in headers):
            fix += " (or delete a column that has neither name nor values)"
        raise CatalogError(f"{path}: {'; '.join(problems)}; {fix}")


def plan_columns(
    path: Location, headers: Sequence[str], options: CatalogOptions, structs: Collection[str] = ()
) -> ColumnPlan:
    """Map the file's headers to canonical columns, or raise CatalogError saying what to fix.
    `structs`: the headers of struct columns, whose fields `refuse_nested_requests` looks at
    (their own name says nothing of a request column: `script {style, language}`)."""
    check_headers(path, headers)
    mapping: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source, target in options.columns.items():
        if (key := header_key(source)) in sources:  # headers are matched so: one column
            raise CatalogError(
                f"the column mapping names one column twice, as {sources[key]!r} and "
                f"{source!r} (headers match ignoring case and spaces); keep one"
            )
        sources[key], mapping[key] = source, target.strip().lower()
    for source, target in mapping.items():
        if target not in _COLUMNS:
            raise CatalogError(
                f"the column mapping sends {source!r} to {target!r}, which is not a catalog "
                f"column; use one of {', '.join(CANONICAL_COLUMNS)}"
            )
    if {header_key(header) for header in headers} >= _RESULTS_SIGNATURE:
        retry = f"jogg-batch retry {shlex.quote(str(path))}"
        raise CatalogError(
            f"{path}: is a results file of jogg-batch (it has the columns status and video_id), "
            "not a catalog: its cells carry the results' marks, so its rows would be new "
            f"requests; send its failed rows again with `{retry}`, or rename those columns if "
            "they are the catalog's own"
        )
    _check_mapped_headers(path, headers, options)
    canonical: dict[str, str] = {}
    for header in headers:
        key = header_key(header)
        if key in mapping:
            target = mapping[key]
        elif key in _COLUMNS:
            target = key
        else:
            continue
        if target in canonical:
            raise CatalogError(
                f"{path}: columns {canonical[target]!r} and {header!r} both map to {target}; "
                "rename or drop one, or fix the [columns] mapping"
            )
        canonical[target] = header
    _refuse_near_misses(path, headers, canonical, mapping, structs)
    _refuse_a_products_size(path, headers, canonical, mapping)
    _refuse_a_partitions_part(path, canonical, mapping)
    if not any(source in canonical for source in _PRODUCT_SOURCES):
        listed = f"{', '.join(repr(h) for h in headers[:5])}{', ...' if len(headers) > 5 else ''}"
        where, fix = (
            ("among its columns", "")
            if _names_its_columns(path, options)
            else ("in its first line, which must name the columns", _header_fix(path, headers))
        )
        raise CatalogError(
            f"{path}: has no product_id column (nor product_url) {where} ({listed}); {fix}name "
            "the column product_id, or map yours in the [columns] config table, e.g. "
            f"{_mapping_example(headers)}"
        )
    template_names = {canonical_name: header for canonical_name, header in canonical.items()}
    template_names.update({header_key(header): header for header in headers})
    template_names.update({header: header for header in headers})
    return ColumnPlan(
        canonical,
        _key_header(path, headers, canonical, options),
        template_names,
        _doubtful_columns(headers, canonical, mapping),
    )


def _mapping_example(headers: Sequence[str]) -> str:
    """The [columns] lines to suggest: a shop's export (Shopify's `Title`, `Body (HTML)`,
    `Image Src`) names products not yet on JoggAI, which the catalog makes from their details;
    a SKU is no JoggAI id."""
    found = {header_key(header): header for header in headers}
    details = [
        f'"{found[key]}" = "{target}"' for key, target in _SHOP_DETAILS.items() if key in found
    ]
    if details:
        return (
            f"{', '.join(details)} (products not yet on JoggAI are made from "
            'their details), or the column of JoggAI\'s product ids = "product_id"'
        )
    return 'sku = "product_id"'


# A shop export's product details (Shopify, WooCommerce, BigCommerce): what the catalog makes a
# product from when it has no JoggAI product id.
_SHOP_DETAILS: Final = {
    "title": "product_name", "product_title": "product_name", "name": "product_name",
    "body_(html)": "description", "body_html": "description",
    "image_src": "image_urls", "images": "image_urls", "image_url": "image_urls",
}  # fmt: skip


# The other measures of a product's size, in the shops' languages: beside two of them, a
# `Length` column is the product's (a table of 120 x 60 x 75 cm), not the video's.
_SIZE_WORDS: Final = {
    "width": "width", "breite": "width", "largeur": "width", "ancho": "width",
    "anchura": "width", "larghezza": "width",
    "height": "height", "höhe": "height", "hauteur": "height", "alto": "height",
    "altura": "height", "altezza": "height",
    "depth": "depth", "tiefe": "depth", "profondeur": "depth", "profundidad": "depth",
    "profondità": "depth",
    "weight": "weight", "gewicht": "weight", "poids": "weight", "peso": "weight",
}  # fmt: skip


def _refuse_a_products_size(
    path: Location, headers: Sequence[str], canonical: dict[str, str], mapping: dict[str, str]
) -> None:
    """CatalogError for a `length` column (not mapped so in [columns]) that sits beside two of a
    product's other measures (`Width`, `Item Height`, `Poids`): its 60 and 30 would be sent as
    the video's length, its 120 refused as one. Not when the product's own length is named
    beside it with its unit (`Length (cm)`): then this one is the video's."""
    header = canonical.get("length")
    if header is None or header_key(header) in mapping:
        return
    measures: dict[str, str] = {}
    for other in headers:
        words = re.split(r"[\W_]+", header_key(other))
        for word in words:
            if word in _SIZE_WORDS:
                measures.setdefault(_SIZE_WORDS[word], other)
    # The product's own length named beside it (`Length (cm)`, Google's `product_length`,
    # Amazon's `item_length`): then this one is the video's.
    own = [
        other
        for other in headers
        if other != header
        and (
            (header_key(other).startswith("length") and _names_a_size(other))
            or (
                "length" in re.split(r"[\W_]+", header_key(other))
                and _near_column(header_key(other)) is None  # not `Length (s)`: the video's
            )
        )
    ]
    # Two measures, or the width a rug, a poster or a fabric is sold by, or a unit column.
    units = any(header_key(other) in _UNIT_COLUMNS for other in headers)
    sized = len(measures) >= 2 or "width" in measures or (units and measures)
    if sized and not own:
        beside = list(measures.values())
        raise CatalogError(
            f"{path}: column {header!r} sits beside {' and '.join(map(repr, beside[:2]))}, as a "
            "product's size does, and would be sent as the video's length; name the product's "
            f"with its unit ({header.strip()} (cm)), or, if it is the video's, map it in the "
            f'[columns] settings table ("{header.strip()}" = "length")'
        )


# A column giving the unit of the sizes beside it (`Unit` = cm).
_UNIT_COLUMNS: Final = frozenset(
    {"unit", "units", "uom", "unit_of_measure", "size_unit", "einheit", "unidad", "unité"}
)


def _names_a_size(header: str) -> bool:
    """Whether a header names a unit of size or weight (`Length (cm)`, `length_cm`, `Length
    in`)."""
    key = header_key(header)
    words = [word for word in re.split(r"[\W_]+", key) if word]
    return bool(_UNIT_SUFFIX.fullmatch(key)) or (
        len(words) > 1 and _PRODUCT_UNITS.fullmatch(words[-1]) is not None
    )


def _refuse_a_partitions_part(
    path: Location, canonical: dict[str, str], mapping: dict[str, str]
) -> None:
    """A part of a table partitioned by folder (`catalog/language=spanish/part-0.parquet`, as
    pandas' and pyarrow's `partition_cols`, Spark's `partitionBy` and Hive write it) holds no
    column for what its folder names: read alone, its rows would take the default (English
    for a Spanish script: another video, paid). Refused, with how to read the table whole."""
    folders = str(path).replace("\\", "/").split("/")[:-1]
    for depth, folder in enumerate(folders):
        name, equals, value = folder.partition("=")
        key = header_key(name)
        column = mapping.get(key, key if key in _COLUMNS else None)
        if equals and column is not None and column not in canonical:
            table = "/".join(folders[:depth]) or "."
            raise CatalogError(
                f"{path}: lies in the folder {folder!r}, which gives its rows' {column} "
                f"({value!r}), a column the file does not hold: it is one part of a table "
                "partitioned by folder, and read alone its rows would take the default "
                f"{column}. Write the table as one file, which puts the column back, and run "
                f"that: pyarrow.parquet.write_table(pyarrow.parquet.read_table({table!r}), "
                "'catalog.parquet')"
            )


# A header that names a request field by its place in the API's body (`video_spec.length`, as
# pandas' json_normalize and Spark flatten it) or with a note after it (`Length (s)`).
_PLACE_OR_NOTE: Final = re.compile(r"^(?:.*\.)?([^.]*?)_*(?:[(\[](.*))?$")
# A note naming a unit of size or weight: a product's own dimension (`Length (cm)`), no video's.
_UNITS: Final = (
    r"mm|cm|cms|m|mtr|mtrs|metres?|meters?|in|inch|inches|\"|ft|feet|yds?|yards?|kg|g|lbs?|oz"
    r"|days?|nights?|hours?|hrs?|weeks?|months?|years?"
)
_PRODUCT_UNITS: Final = re.compile(rf"(?:in_)?({_UNITS})[)\]]?")
# The notes a request column's header carries (`Length (s)`, `Avatar ID (optional)`): under any
# other (`Length (max)`, a unit of size) a column is refused only when its values say so.
_REQUEST_NOTES: Final = re.compile(
    r"(?:in_)?(s|sec|secs|seconds?|optional|opt\.?|required|req\.?|if_any|default|names?|ids?"
    r"|code|text|video|vídeo|sek\.?|sekunden|seg\.?|segundos|secondes)[)\]]?"
    # or the field's own values: `Caption (Y/N)`, `Untertitel (ja/nein)`, `Aspect Ratio (9:16)`
    r"|(?:y/n|yes/no|true/false|0/1|j/n|ja/nein|s[ií]/no|o/n|oui/non)[)\]]?|.*\d+:\d+.*"
)
# A note's closing abbreviation dot (`(Sek.)`, `(seg.)`), before its bracket.
_ABBREVIATED_NOTE: Final = re.compile(r"\.([)\]])$")
# A unit written after the name (`Length_m`, `length_cm`): the product's size too.
_UNIT_SUFFIX: Final = re.compile(rf".+_({_UNITS})")
# Other names people give the request columns.
_SYNONYMS: Final = {
    "aspect": "aspect_ratio",
    "ratio": "aspect_ratio",
    "subtitle": "caption",
    "subtitles": "caption",
    "lang": "language",
    "video_title": "video_name",
    "video_duration": "length",
    "duration": "length",
    "seconds": "length",
    "orientation": "aspect_ratio",
    "closed_caption": "caption",
    "closed_captions": "caption",
    "presenter": "avatar_id",
    "narrator": "voice_id",
    "locale": "language",
    "script": "override_script",  # a script's text; as the API body's object, its fields too
    "script_text": "override_script",
    "voice_name": "voice_id",
    "background_music": "music_id",
    "music_track": "music_id",
    "script_language": "language",
    "video_language": "language",
    "video_time": "length",
    # German and Spanish headers, as agencies' templates have them
    "dauer": "length",
    "duracion": "length",
    "duración": "length",
    "sprache": "language",
    "idioma": "language",
    "untertitel": "caption",
    "subtitulos": "caption",
    "subtítulos": "caption",
    # a voice-over's voice and text, as marketers name them
    "voiceover": "voice_id",
    "voice_over": "voice_id",
    "narrator_voice": "voice_id",
    "voiceover_script": "override_script",
    "voice_over_script": "override_script",
    "voiceover_text": "override_script",
    "custom_script": "override_script",
    "skript": "override_script",
    "sprechertext": "override_script",
    "guion": "override_script",
    "guión": "override_script",
    # more of the same, in the languages of agencies' templates, and a usual misspelling
    "lenght": "length",
    "länge": "length",
    "laenge": "length",
    "longitud_del_video": "length",
    "durée": "length",
    "duree": "length",
    "langue": "language",
    "sous_titres": "caption",
    "sous_titre": "caption",
    "seitenverhältnis": "aspect_ratio",
    "seitenverhaeltnis": "aspect_ratio",
    "format_d'image": "aspect_ratio",
    "avatar_#": "avatar_id",
    "avatar_nr": "avatar_id",
    "avatar_no": "avatar_id",
    "sprecher": "voice_id",
    "sprecherin": "voice_id",
    "stimme": "voice_id",
    "voz": "voice_id",
    "voix": "voice_id",
    "musik": "music_id",
    "música": "music_id",
    "musica": "music_id",
    "musique": "music_id",
    "video_script": "override_script",
    "scripts": "override_script",
    "narration": "override_script",
    "vo_script": "override_script",
    "videoskript": "override_script",
    "skripttext": "override_script",
    "guion_del_video": "override_script",
    "guión_del_video": "override_script",
    "script_vidéo": "override_script",
    "script_video": "override_script",
    "texte_voix_off": "override_script",
}
# Names people give request columns that name a product's own detail as often (a book's
# `Format`, a garment's `Style`, a country code `CC`): such a column is the request's only when
# its cells read as that field's values (`ColumnPlan.doubtful`).
_DOUBTFUL_SYNONYMS: Final = {
    "format": "aspect_ratio",
    "formato": "aspect_ratio",
    "layout": "aspect_ratio",
    "style": "script_style",
    "cc": "caption",
    "runtime": "length",  # a battery's, or the video's
    "video_format": "aspect_ratio",
    "video_size": "aspect_ratio",
    "ar": "aspect_ratio",
    "soundtrack": "music_id",
    # Visual styles are the account's own (any text reads as one): such a column with values
    # is refused, as `Voiceover` is.
    "video_style": "visual_style",
    "tone": "script_style",
    "tone_of_voice": "script_style",
}
# Words that name a request field of set values inside a longer header (`Length in seconds`,
# `Product language`, `Screen ratio`): such a column is doubtful as those synonyms are.
_DOUBTFUL_WORDS: Final = {
    "length": "length",
    "duration": "length",
    "seconds": "length",
    "aspect": "aspect_ratio",
    "ratio": "aspect_ratio",
    "orientation": "aspect_ratio",
    "caption": "caption",
    "captions": "caption",
    "subtitle": "caption",
    "subtitles": "caption",
    "language": "language",
}
# The API body's objects, with the request columns each holds: a column named so (a JSON Lines
# object, a Parquet struct) holds several fields in one cell, and none of them is read.
_REQUEST_OBJECTS: Final = {
    "video_spec": ("length", "aspect_ratio", "caption", "video_name"),
}
# The places in a header or a struct that are the request's (`video_spec.length`, a struct
# `script {style, language}`): under any other (`dimensions.length`, `seo.language`, eBay's
# `C:Length`) a field is the product's own.
_REQUEST_PLACES: Final = frozenset(
    {"video_spec", "video", "script", "audio", "avatar", "voice", "request", "body", "jogg"}
)


# The request fields by their place in the API's body (the OpenAPI's create_video_from_product),
# as pandas' json_normalize, polars or Spark flatten it: `avatar.id`, `video_spec_name`.
_BODY_FIELDS: Final = {
    "video_spec": {"name": "video_name", "length": "length", "aspect_ratio": "aspect_ratio",
                   "caption": "caption"},
    "avatar": {"id": "avatar_id", "type": "avatar_type"},
    "voice": {"id": "voice_id"},
    "audio": {"music_id": "music_id", "id": "music_id"},
    "script": {"style": "script_style", "language": "language"},
}  # fmt: skip
_BODY_PATH: Final = re.compile(r"(?:.*\.)?(video_spec|avatar|voice|audio|script)[._](\w+)")
# A second column of one name, as pandas (`length.1`), polars (`length_duplicated_0`) or DuckDB
# (`length_1`) rename it when they read a file that has two.
_RENAMED_TWIN: Final = re.compile(r"(.+?)(?:\.\d+|_duplicated_\d+|_\d+)")


# The names shops give a product's details: read when a catalog's rows create their products
# (no product_id column), and unused, the product made without them, if not read.
_PRODUCT_DETAILS: Final = {
    "product_description": "description", "long_description": "description",
    "beschreibung": "description", "produktbeschreibung": "description",
    "descripcion": "description", "descripción": "description",
    "image": "image_urls", "images": "image_urls", "image_url": "image_urls",
    "image_link": "image_urls", "image_links": "image_urls", "product_images": "image_urls",
    "bilder": "image_urls", "imagenes": "image_urls", "imágenes": "image_urls",
    "audience": "target_audience", "target_group": "target_audience",
    "zielgruppe": "target_audience", "publico_objetivo": "target_audience",
    "product_title": "product_name", "produktname": "product_name",
}  # fmt: skip


def _product_detail(key: str) -> str | None:
    """The product detail a header names (`Product Description`, `Images`), or with a note
    after it (`Description (long)`)."""
    base = _PLACE_OR_NOTE.fullmatch(key)
    bare = base.group(1) if base is not None and base.group(1) else key
    if bare != key and bare in ("description", "target_audience", "image_urls"):
        return bare
    return _PRODUCT_DETAILS.get(key) or _PRODUCT_DETAILS.get(bare)


def _body_field(key: str) -> str | None:
    found = _BODY_PATH.fullmatch(key)
    return None if found is None else _BODY_FIELDS[found.group(1)].get(found.group(2))


def _a_products_own(key: str) -> bool:
    """Whether a header names a field of the product's own, whatever its words: one under a
    place that is not the request's (`dimensions.length`, `seo.language`, `Max. Length`, eBay's
    `C:Length`), with a unit after it (`length_cm`), or one of a numbered series (`length_1`,
    `language_2`, as `image_1`, `image_2`)."""
    named = re.split(r"[(\[]", key, maxsplit=1)[0]
    place, dot, _ = named.rpartition(".")
    if ":" in named or (dot and place.rsplit(".", 1)[-1].strip("_") not in _REQUEST_PLACES):
        return True
    return bool(_UNIT_SUFFIX.fullmatch(named) or re.fullmatch(r".+_\d+", named))


def _near_column(key: str) -> str | None:
    """The request column a header that is none seems meant for: its plural or singular, with
    `video_` before it or without `_id` after it, a close spelling (`Captions`,
    `Video Length`, `Voice`, `langauge`), another usual name (`Aspect`, `Subtitles`, `Script`), or
    any of
    these after the place in the API's body or before a note (`video_spec.length`,
    `Length (s)`)."""
    if (field := _body_field(key)) is not None:
        return field
    key = _ABBREVIATED_NOTE.sub(r"\1", key)  # `Dauer (Sek.)`: its dot is no place's
    if _a_products_own(key):
        return None
    if match := _PLACE_OR_NOTE.fullmatch(key):
        note = match.group(2)
        if note is not None and not _REQUEST_NOTES.fullmatch(note):
            return None  # `Length (max)`, `Length (cm)`: the values decide (`_doubtful_word`)
        key = match.group(1) or key
    key = _SYNONYMS.get(key, key)
    spellings = set()
    for bare in (key, key.removeprefix("video_")):
        spellings |= {bare, bare + "s", bare.removesuffix("s")}
    spellings |= {spelling + "_id" for spelling in spellings}
    for name in _OVERRIDES:
        if name in spellings:
            return name
    close = difflib.get_close_matches(key, _OVERRIDES, n=1, cutoff=0.85)
    return close[0] if close else None


def refuse_nested_requests(path: Location, table: pa.Table, plan: ColumnPlan) -> None:
    """CatalogError for a struct column (a Parquet struct, a JSON Lines object) named as a
    place of the request's (`_REQUEST_PLACES`: `script {style, language}`, `video {length}`)
    with a field of set values the catalog has no column for, whose every value in this batch
    reads as that field's: a cell is read whole, so the field would not be, and every row sent
    with the default. A product's own struct (`dimensions {length}`, `seo {language}`) passes,
    and so does free text (a name, a voice), which any value reads as."""
    for name, kind in zip(table.column_names, table.schema.types, strict=True):
        if header_key(name) not in _REQUEST_PLACES:
            continue
        for leaf, path_to in _leaves(kind):
            meant = _body_field(f"{header_key(name)}.{header_key(leaf)}") or header_key(leaf)
            if meant not in _SET_VALUES or meant in plan.canonical:
                continue
            cells = pc.struct_field(table.column(name), path_to)
            values = [
                value
                for value in pc.unique(_text_array(cells)).to_pylist()
                if value is not None and value.strip().lower() not in MISSING_SPELLINGS | {""}
            ]
            if values and all(_reads_as(_COLUMNS[meant][0], value) for value in values):
                raise CatalogError(
                    f"{path}: column {name!r} holds {meant} as {name}.{leaf} in each cell "
                    "(nested, as a struct or a JSON object), and jogg-batch reads one column a "
                    "request field, so every row would be sent with the default; give each "
                    "field a column of its own (pyarrow's Table.flatten() names them so), "
                    "named or mapped in [columns] as the request column it is"
                )


# The request columns of set values: a value either reads as one or does not (free text, a
# voice's id, any value reads as).
_SET_VALUES: Final = frozenset(
    {"length", "aspect_ratio", "caption", "avatar_id", "avatar_type", "music_id",
     "script_style", "language"}
)  # fmt: skip


def _leaves(kind: pa.DataType) -> list[tuple[str, list[int]]]:
    """A struct's fields, nested structs' included: each dotted name with its path of field
    indices (for `pc.struct_field`); none for other types."""
    if not pa.types.is_struct(kind):
        return []
    found = []
    for index in range(kind.num_fields):
        inner = kind.field(index)
        deeper = _leaves(inner.type)
        found += [(f"{inner.name}.{leaf}", [index, *at]) for leaf, at in deeper] or [
            (inner.name, [index])
        ]
    return found


def _refuse_near_misses(
    path: Location,
    headers: Sequence[str],
    canonical: dict[str, str],
    mapping: dict[str, str],
    structs: Collection[str],
) -> None:
    """CatalogError for a header that is spelled almost as a request column the catalog lacks:
    its cells would be passed through unused, and every row sent with the default instead.
    A struct column is not one field (`refuse_nested_requests`), unless it is named as one of
    the API body's objects."""
    for header in headers:
        key = header_key(header)
        if key in mapping or key in _COLUMNS:
            continue
        missing = [name for name in _REQUEST_OBJECTS.get(key, ()) if name not in canonical]
        if missing:
            raise CatalogError(
                f"{path}: column {header!r} is shaped like the API request's {key} object, "
                f"but jogg-batch reads one column a field ({', '.join(missing)}), so every row "
                "would be sent with the defaults; give each field its own column, or rename "
                f"{header!r} if it is not meant so"
            )
        twin = _RENAMED_TWIN.fullmatch(key)
        if twin is not None and twin.group(1) in _OVERRIDES and twin.group(1) in canonical:
            raise CatalogError(
                f"{path}: column {header!r} is a second {canonical[twin.group(1)]!r} column, as "
                "pandas, polars or DuckDB rename one when the file they read has two columns of "
                "that name: its cells would be unused; keep one of them, or rename "
                f"{header!r} if it is not meant as {twin.group(1)}"
            )
        detail = _product_detail(key)
        if detail is not None and detail not in canonical and "product_id" not in canonical:
            raise CatalogError(
                f"{path}: column {header!r} is not a catalog column, so every product would be "
                f"created without its {detail} (the catalog creates its products: it has no "
                f"product_id column); name the column {detail}, map it in the [columns] "
                f'settings table ("{header}" = "{detail}"), or rename it if it is not meant so'
            )
        near = None if header in structs else _near_column(key)
        if near is not None and near not in canonical:
            raise _unused(path, header, near)


def _unused(path: Location, header: str, meant: str) -> CatalogError:
    return CatalogError(
        f"{path}: column {header!r} is not a request column, so every row would be sent with "
        f"the default {meant}; name the column {meant}, map it in the [columns] settings table "
        f'("{header}" = "{meant}"), or rename it if it is not meant as {meant}'
    )


_UNIT: Final = re.compile("_unit")


def _doubtful_columns(
    headers: Sequence[str], canonical: dict[str, str], mapping: dict[str, str]
) -> dict[str, str]:
    """The headers named as a request column the catalog lacks is as often named
    (`_DOUBTFUL_SYNONYMS`), or holding a word that names one (`_DOUBTFUL_WORDS`), with that
    column."""
    doubtful = {}
    taken = set(canonical.values())
    keys = [header_key(header) for header in headers]
    # The keys with a unit column beside them (`item_length` of `item_length_unit_of_measure`),
    # found once: a catalog of 17,000 columns took minutes compared pair by pair.
    with_units = {other[: found.start()] for other in keys for found in _UNIT.finditer(other)}
    for header, key in zip(headers, keys, strict=True):
        if key in mapping or header in taken:
            continue
        if key in with_units or _a_products_own(key):
            continue  # its unit beside it (Amazon's `item_length_unit_of_measure`): a size
        meant = _DOUBTFUL_SYNONYMS.get(key) or _doubtful_word(key)
        if meant is not None and meant not in canonical:
            doubtful[header] = meant
    return doubtful


def _doubtful_word(key: str) -> str | None:
    """The request field a word of the header names (`_DOUBTFUL_WORDS`), unless its last word
    is a unit of size or weight (`Length cm`, `Length (in)`): a product's dimension."""
    words = [word for word in re.split(r"[\W_]+", key) if word]
    if not words or _PRODUCT_UNITS.fullmatch(words[-1]):
        return None
    return next(filter(None, map(_DOUBTFUL_WORDS.get, words)), None)


def refuse_doubtful_columns(path: Location, table: pa.Table, plan: ColumnPlan) -> None:
    """CatalogError for a doubtful column (`ColumnPlan.doubtful`) whose every value reads as the
    request field it is named like (`Format`: 9:16, 1:1): its cells would be unused and every
    row sent with the default. Decided by the first batch that holds values, before any row of
    it is sent; a column with one value that is no such field's (`Paperback`) is the product's.
    """
    for header, meant in list(plan.doubtful.items()):
        values = [
            value
            for value in pc.unique(_text_array(table.column(header))).to_pylist()
            if value is not None and value.strip().lower() not in MISSING_SPELLINGS | {""}
        ]
        if not values:
            continue
        del plan.doubtful[header]
        normalize = _COLUMNS[meant][0]
        if all(_reads_as(normalize, value) for value in values):
            raise _unused(path, header, meant)


def _reads_as(normalize: Normalizer, value: str) -> bool:
    try:
        normalize(value)
    except ValueError:
        return False
    return True


def _names_its_columns(path: Location, options: CatalogOptions) -> bool:
    """Whether the catalog's format names its columns itself (Parquet's schema, JSON Lines'
    keys): it has no header line, nor title lines above one."""
    if options.format is not None:
        return options.format in ("parquet", "jsonl")
    return PurePosixPath(storage.inner_name(path)).suffix.lower() in _NAMED_COLUMNS


_NAMED_COLUMNS: Final = (".parquet", ".pq", ".jsonl", ".ndjson")


def _header_fix(path: Location, headers: Sequence[str]) -> str:
    """What to try first when no column names a product: another delimiter (one cell holding
    `|`), another sheet (a workbook), or the lines above the header."""
    # Hive writes Ctrl-A (\x01) between cells, and some exports the unit separator (\x1f).
    if len(headers) == 1 and (found := next((d for d in "|^~:\x01\x1f" if d in headers[0]), None)):
        spelt = found if found.isprintable() else f"\\{ord(found):03o}"  # as --delimiter takes it
        return f"pass --delimiter '{spelt}' if that is what separates the columns; or "
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"):
        return "choose the sheet that holds the rows with --sheet, delete any title rows, or "
    return "delete any title lines above the header, or "


def _check_mapped_headers(path: Location, headers: Sequence[str], options: CatalogOptions) -> None:
    """Every header the [columns] mapping names is in the catalog (CatalogError otherwise).

    A misspelt header would leave the catalog's column unused and send the default instead.
    """
    present = {header_key(header) for header in headers}
    missing = [source for source in options.columns if header_key(source) not in present]
    if not missing:
        return
    where = f" in {options.columns_from}" if options.columns_from else ""
    problems = []
    for source in missing:
        close = difflib.get_close_matches(source, headers, n=3, cutoff=0.6)
        near = f" (closest: {', '.join(repr(header) for header in close)})" if close else ""
        problems.append(f"{source!r}{near}")
    raise CatalogError(
        f"{path}: the [columns] mapping{where} names the header {', '.join(problems)}, which the "
        "catalog does not have; fix the mapping or the catalog's header"
    )


def _key_header(
    path: Location, headers: Sequence[str], canonical: Mapping[str, str], options: CatalogOptions
) -> str:
    if options.row_key is None:
        return (
            canonical.get("product_id") or canonical.get("product_url") or canonical["product_name"]
        )
    wanted = header_key(options.row_key)
    for header in headers:
        if header_key(header) == wanted:
            return header
    if wanted in canonical:
        return canonical[wanted]
    raise CatalogError(
        f"{path}: has no column {options.row_key!r} to use as the row key; "
        "name an existing column or leave row_key unset"
    )


class _Column:
    """One canonical column of a batch: a value per row, each value as the fingerprint encodes
    it, the rows whose value is invalid, the rows whose cell spelled "missing" (`NULL`), and the
    rows whose text was made alike, with the text before (`_same_text`)."""

    __slots__ = ("bad", "earlier", "parts", "spelled_missing", "values")

    def __init__(
        self,
        values: list[Any],
        parts: pa.Array,
        bad: list[tuple[int, str, str]],
        spelled_missing: dict[int, str] | None = None,
        earlier: dict[int, str] | None = None,
    ) -> None:
        self.values = values
        self.parts = parts
        self.bad = bad
        self.spelled_missing = spelled_missing or {}
        self.earlier = earlier or {}


# As `payload.same_text`, in RE2: a no-break space, and spaces or invisible characters at the
# ends (Python's `\s` is Unicode's spaces: `\p{Z}` and the ASCII ones, with \x1c-\x1f and NEL).
_NO_BREAK: Final = "[\\x{a0}\\x{2007}\\x{202f}]"
_END_CHARS: Final = (
    "[\\p{Z}\\t\\n\\v\\f\\r\\x{1c}-\\x{1f}\\x{85}"
    + "".join(f"\\x{{{low:x}}}-\\x{{{high:x}}}" for low, high in payload.INVISIBLE_ENDS)
    + "]"
)
_SEEN_ENDS: Final = f"^{_END_CHARS}+|{_END_CHARS}+$"
_OTHER_BREAKS: Final = "[\\v\\x{85}\\x{2028}\\x{2029}]"
_FORMULA_GUARD: Final = "^'([=+\\-@](?:[^']|[\\pL\\pN]'[\\pL\\pN])*)$"


def _same_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text as a reader sees it, one spelling for what reads the same: line ends as LF (a file
    through FTP's ASCII mode or unix2dos has CRLF in its quoted cells, old Mac tools a lone CR,
    FileMaker a vertical tab, Word a line separator),
    characters composed (NFC: a Mac tool or a paste writes `é` as `e` + U+0301), a no-break
    space as a space, no space or invisible character at either end (a re-export or a
    paste adds one, a BOM, a zero-width space or a direction isolate; nobody sees it), and no
    formula guard (`'` before a leading `=+-@`, as web tools' exports write it, and no later
    `'` closing it as a quote).

    Nearly every cell is `_PLAIN`, which all of that leaves as it is: found in one pass, only
    the others go through the four (a million rows' names took 2 s through them all)."""
    whole = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    other = pc.invert(pc.fill_null(pc.match_substring_regex(whole, _PLAIN), True))
    if not pc.any(other).as_py():
        return text
    same = pc.replace_with_mask(whole, other, _made_alike(pc.filter(whole, other)))
    return pa.chunked_array([same]) if isinstance(text, pa.ChunkedArray) else same


# Printable ASCII neither starting nor ending with a space, and not starting with `'`.
_PLAIN: Final = r"^[\x21-\x26\x28-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"


def _made_alike(text: pa.Array) -> pa.Array:
    lines = pc.replace_substring_regex(text, r"\r\n?|" + _OTHER_BREAKS, "\n")
    spaced = pc.replace_substring_regex(pc.utf8_normalize(lines, "NFC"), _NO_BREAK, " ")
    trimmed = pc.replace_substring_regex(spaced, _SEEN_ENDS, "")
    return pc.replace_substring_regex(trimmed, _FORMULA_GUARD, "\\1")


def _make_alike(values: Any, positions: Sequence[int] | None = None) -> dict[int, str]:
    """Replaces the text of `values` (a list or object array of text and None; only that at
    `positions` when given) by `_same_text` of it, in place; returns the positions it changed,
    and those the version before read otherwise (a quoted `'@home'`, whose `'` it dropped),
    with their text before."""
    if positions is None:
        text = pa.array(values, pa.string())
    elif positions:
        text = pa.array([values[position] for position in positions], pa.string())
    else:
        return {}
    same = _same_text(text)
    changed = pc.or_(pc.not_equal(same, text), pc.match_substring_regex(same, "^'[=+\\-@]"))
    changed = pc.fill_null(changed, False).to_numpy(zero_copy_only=False)
    earlier: dict[int, str] = {}
    for at in np.flatnonzero(changed).tolist():  # rare: text written otherwise than last time
        position = at if positions is None else positions[at]
        earlier[position] = values[position]
        values[position] = same[at].as_py()
    return earlier


def _constant_part(value: object, count: int) -> pa.Array:
    return pa.repeat(pa.scalar(payload.fingerprint_part(value), pa.string()), count)


def _is_empty(value: object) -> bool:
    """None, blank text, or a float NaN: what pandas writes for a missing number."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))


def _written_missing(value: object) -> TypeGuard[str]:
    """A null's word, with spaces or a paste's invisible characters around it (`\u200bN/A`)."""
    return isinstance(value, str) and payload.same_text(value) in MISSING_TEXTS


def _spells_missing(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and (
        value.strip().lower() in MISSING_SPELLINGS or value.strip() in DATABASE_NULLS
    )


def _rows_of(indices: np.ndarray, uniques: Mapping[int, str]) -> list[tuple[int, str]]:
    """The rows whose value is one of `uniques` (distinct value index -> text), with that text."""
    if not uniques:
        return []
    rows = np.flatnonzero(np.isin(indices, list(uniques))).tolist()
    return [(row, uniques[int(indices[row])]) for row in rows]


def _nested_as_text(column: pa.ChunkedArray, *, join: bool) -> pa.ChunkedArray:
    """A JSON Lines list or object in a cell, as text a normaliser reads: with `join`, a list
    of plain values joined by `|` (as `a.jpg|b.jpg` is written in CSV), a null in it an empty
    item that is left out (binary_join would make the whole list null, every URL lost); anything
    else as its JSON, which a column of one value refuses (`_is_json_container`)."""
    if join:
        try:
            lists = pc.cast(column, pa.list_(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
        else:
            items = [
                pa.ListArray.from_arrays(
                    chunk.offsets, chunk.values.fill_null(""), mask=chunk.is_null()
                )
                for chunk in lists.chunks
            ]
            return pc.binary_join(pa.chunked_array(items, lists.type), "|")
    text = [
        None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        for value in column.to_pylist()
    ]
    return pa.chunked_array([pa.array(text, pa.string())])


def _as_earlier_versions_read(
    cell: object, normalize: Normalizer, as_written: Normalizer | None
) -> Any:
    """The value versions before this one read a cell of a one-value column as, where it may
    differ from this one's; None where it cannot. They dropped only format characters from an
    id (not `_IGNORABLE` ones), and sent a URL as written (`as_written`)."""
    if isinstance(cell, str) and not cell.isascii():
        formats_dropped = _without_formats(cell)
        if as_written is None and not _IGNORABLE.search(formats_dropped):
            return None
        cell = formats_dropped
    elif as_written is None:
        return None
    try:
        return (as_written or _EARLIER_READERS.get(normalize, normalize))(cell)
    except ValueError:
        return None


# The columns whose normaliser earlier versions did not have in full.
_EARLIER_READERS: Final[dict[Normalizer, Normalizer]] = {
    normalize_product_id: _product_id_as_earlier_versions_read
}


def _visible(text: str) -> str:
    """The text without invisible characters (format characters: zero-width space, joiners, a
    byte order mark, direction marks; and the other ones Unicode says to ignore, `_IGNORABLE`),
    which a copy from a web page or a spreadsheet leaves in an id: the id people see is the one
    sent. Free text keeps them (a joiner or a variation selector can belong to an emoji)."""
    return _IGNORABLE.sub("", _without_formats(text))


def _without_formats(text: str) -> str:
    """The text without format characters (Unicode's Cf): an id as earlier versions read it."""
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


# Unicode's default-ignorable characters that are not format characters (Cf): the combining
# grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors,
# variation selectors (U+FE0F after a digit, as an emoji keyboard leaves it).
_IGNORABLE_RANGES: Final = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xE0100, 0xE01EF),
)  # fmt: skip
_IGNORABLE: Final = re.compile(
    "[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _IGNORABLE_RANGES) + "]"
)
# The same with the format characters, in RE2's syntax (pyarrow's), for a column at a time.
_INVISIBLE_PATTERN: Final = (
    r"[\p{Cf}" + "".join(f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in _IGNORABLE_RANGES) + "]"
)


def _is_json_container(value: object) -> bool:
    """A JSON list or object (`["P1"]`, `{"id": 1}`): a JSON Lines cell of several values,
    never one id, choice or number."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return False
    try:
        return isinstance(json.loads(value), list | dict)
    except ValueError:
        return False


# The whole numbers a float16 or float32 column holds exactly are those below this; from it on,
# a value stands for several (2**24 + 1 is stored as 2**24). A float64's bound is
# payload.FLOAT_EXACT, which the normalisers check themselves.
_NARROW_FLOAT_EXACT: Final = {16: 2**11, 32: 2**24}


def _exact_floats(normalize: Normalizer, bits: int) -> Normalizer:
    """`normalize` for a column of `bits`-bit floats (pandas' downcast, Spark's FloatType): a
    whole number past what that float holds exactly is refused, as payload refuses one past
    2**53, never sent as an id with digits nobody typed."""
    exact = _NARROW_FLOAT_EXACT[bits]

    def checked(value: object) -> object:
        if isinstance(value, float) and value.is_integer() and abs(value) >= exact:
            raise ValueError(
                f"{payload.shown(value)} is too large for a float{bits} column to hold exactly "
                f"(from {exact} on its whole numbers lose digits); store the column as integers "
                "or text"
            )
        return normalize(value)

    return checked


_Kind = Literal["free", "list", "one"]  # text kept as written; image_urls; one value


def _normalize_column(
    column: pa.ChunkedArray,
    normalize: Normalizer,
    default: object,
    kind: _Kind,
    *,
    make_alike: bool = False,
    as_written: Normalizer | None = None,
    as_earlier_versions: bool = False,
    json_in_text: bool = False,
) -> _Column:
    """The column's values, encodings and problems; with `make_alike`, its cells' text is made
    alike (`_same_text`), the default (the settings') is sent as written. Where earlier
    versions read a cell otherwise (`_as_earlier_versions_read`, `nan` or `NA` in free text),
    that value is kept too; `as_earlier_versions`: read free text as they did. `json_in_text`:
    the column holds lists and objects as JSON text (`ColumnPlan.json_in_text`)."""
    if pa.types.is_null(column.type):
        return _Column([default] * len(column), _constant_part(default, len(column)), [])
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):  # a warehouse's NUMBER(38,0): its digits, as text
        column = column.cast(pa.string())
    # A list in a cell of free text (a script's lines, from Parquet or JSON Lines) is refused,
    # as in a column of one value: joined, it would be spoken with `|` in it.
    nested = pa.types.is_nested(column.type) or (json_in_text and kind == "free")
    if pa.types.is_nested(column.type):
        column = _nested_as_text(column, join=kind == "list")
    if pa.types.is_floating(column.type) and column.type.bit_width < 64 and kind != "free":
        normalize = _exact_floats(normalize, column.type.bit_width)
    encoded = pc.dictionary_encode(column.combine_chunks())
    uniques = encoded.dictionary.to_pylist()
    # One slot past the distinct values stands for null, so a single take maps every row.
    outputs = np.empty(len(uniques) + 1, dtype=object)
    reasons: dict[int, str] = {}
    spelled: dict[int, str] = {}
    written: list[int] = []  # the distinct values read from cells, not the default
    respelled: dict[int, Any] = {}  # distinct value -> as earlier versions read it
    for index, value in enumerate(uniques):
        if isinstance(value, bytes):  # a BINARY string, as Hive, Impala, older Spark write
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                reasons[index] = f"{value[:40]!r} is bytes that are not UTF-8 text; write text"
                continue
        raw = value
        if kind != "free" and isinstance(value, str) and not value.isascii():
            value = _visible(value)
        if error := spreadsheet_error(value) or (kind == "free" and damaged_text(value)):
            reasons[index] = error
            continue
        if _spells_missing(value) and (kind != "free" or value.strip() in DATABASE_NULLS):
            spelled[index] = str(value)
        elif kind == "free" and not as_earlier_versions and _written_missing(value):
            spelled[index], respelled[index] = value, normalize(value)
        if _is_empty(value) or index in spelled:
            outputs[index] = default
            continue
        if (kind == "one" or nested) and _is_json_container(value):
            reasons[index] = f"{value[:60]!r} is a JSON list or object; the column takes one value"
            continue
        try:
            outputs[index] = normalize(value)
        except ValueError as exc:
            reasons[index] = str(exc)
        else:
            written.append(index)
            before = (
                None if kind == "free" else _as_earlier_versions_read(raw, normalize, as_written)
            )
            if before is not None and before != outputs[index]:
                respelled[index] = before
    outputs[len(uniques)] = default
    earlier = {**_make_alike(outputs, written), **respelled} if make_alike else respelled
    indices = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
    bad: list[tuple[int, str, str]] = []
    if reasons:
        for row in np.flatnonzero(np.isin(indices, list(reasons))).tolist():
            unique = int(indices[row])
            bad.append((row, _as_typed(uniques[unique]), reasons[unique]))
    spelled_missing = dict(_rows_of(indices, spelled))
    # An invalid value's row is never hashed; its slot holds the default's encoding.
    encoded = [
        payload.fingerprint_part(default if index in reasons else value)
        for index, value in enumerate(outputs)
    ]
    parts = pa.array(encoded, pa.string()).take(pa.array(indices))
    values = outputs.take(indices).tolist()
    return _Column(values, parts, bad, spelled_missing, dict(_rows_of(indices, earlier)))


def _text_part(values: list[Any]) -> pa.Array:
    """`fingerprint_part` of each text-or-None value, vectorised (a column of distinct names)."""
    text = pa.array(values, pa.string())
    escaped = pc.replace_substring(pc.replace_substring(text, "\\", "\\\\"), "|", "\\|")
    return pc.binary_join_element_wise("'", escaped, "").fill_null("-")


def _fingerprints(parts: Mapping[str, pa.Array]) -> list[str | None]:
    """`payload.fingerprint` of every row from its fields' encodings (`payload.FINGERPRINT_FIELDS`);
    equal to it wherever the row has a product_id (tested)."""
    version = pa.scalar(payload.FINGERPRINT_VERSION, pa.string())
    columns = [parts[name] for name in payload.FINGERPRINT_FIELDS]
    joined = pc.binary_join_element_wise(version, *columns, "|").cast(pa.binary())
    sha256 = payload.FINGERPRINT_HASH  # a million rows a night: no call between row and hash
    return [sha256(text).hexdigest() for text in joined.to_pylist()]


def _text_values(column: pa.ChunkedArray) -> list[str]:
    """A column's cells as text ("" for empty), for templates and row keys."""
    values: list[str] = _text_array(column).to_pylist()
    return values


def _text_array(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        text = pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        cells = [_cell_text(value) for value in column.to_pylist()]
        return pa.chunked_array([pa.array(cells, pa.string())])
    return text.fill_null("")


def _cell_text(value: object) -> str:
    """A cell Arrow cannot cast to text as text: a BINARY cell that is not UTF-8 with its bytes
    escaped (one such cell must not make every other cell of the column `b'...'`)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _not_text_cells(column: pa.ChunkedArray, rows: pa.Array) -> dict[int, str]:
    """The rows among `rows` whose cell a template cannot take as text, with why: BINARY that is
    not UTF-8, and lists, structs and maps (Python would write `['eco', 'steel']`, a results
    file `["eco", "steel"]`: neither a name anyone means)."""
    kind = column.type
    if pa.types.is_nested(kind):
        what = "map" if pa.types.is_map(kind) else "struct" if pa.types.is_struct(kind) else "list"
        why = f"holds a {what}, not text; give the name a column of text"
        found = pc.and_(rows, pc.is_valid(column)).to_numpy(zero_copy_only=False)
        return {row: why for row in np.flatnonzero(found).tolist()}
    if not any(
        test(kind)
        for test in (
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_binary_view,
            pa.types.is_fixed_size_binary,
        )
    ):
        return {}
    cells = {row: column[row].as_py() for row in np.flatnonzero(rows.to_numpy(False)).tolist()}
    return {
        row: f"holds {cell[:40]!r}, bytes that are not UTF-8 text; write text"
        for row, cell in cells.items()
        if cell is not None and not _is_utf8(cell)
    }


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# A parsed template: literal text and header pairs (header None after the last field), or a reason.
_Parsed = list[tuple[str, str | None]] | str


def _parse_template(template: str, template_names: Mapping[str, str]) -> _Parsed:
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"template {template!r} is malformed ({exc}); write a literal brace as {{{{ or }}}}"
    parsed: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in pieces:
        if field is None:
            parsed.append((literal, None))
            continue
        # The whole text between braces names a column, colons and bangs included.
        name = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
        header = template_names.get(name) or template_names.get(header_key(name))
        if header is None:
            return f"template {template!r} names column {name!r}, which the catalog does not have"
        parsed.append((literal, header))
    return parsed


def _expand_names(
    names: list[Any],
    table: pa.Table,
    template_names: Mapping[str, str],
    *,
    trim: bool | Literal["previous"] = True,
) -> tuple[list[tuple[int, str, str]], bool]:
    """Replace templates in `names` by their text for each row; return the rows that fail,
    and whether a cell a template took was taken otherwise than earlier versions did (`trim`):
    without the spaces at its ends, or empty for a null's word (`NULL`, `nan`: an export's
    missing value, which a name never means; earlier versions took both as written).

    A column at a time: each distinct template is joined from its literals and the text of
    the columns it names, for the rows that have it (most often every row has the same one).
    """
    templates = {
        name for name in set(names) if isinstance(name, str) and ("{" in name or "}" in name)
    }
    if not templates:
        return [], False
    given = pa.array(names, pa.string())
    expanded = given
    texts: dict[str, pa.ChunkedArray] = {}
    padded = False
    bad: list[tuple[int, str, str]] = []
    for template in templates:
        rows = pc.fill_null(pc.equal(given, template), False)
        parsed = _parse_template(template, template_names)
        if isinstance(parsed, str):
            bad.extend((row, template, parsed) for row in np.flatnonzero(rows).tolist())
            continue
        pieces: list[pa.ChunkedArray | str] = []
        for literal, header in parsed:
            pieces.append(literal)
            if header is not None:
                if header not in texts:
                    texts[header] = text = _text_array(table.column(header))
                    if trim == "previous":  # as the version before this one took it
                        trimmed = pc.utf8_trim_whitespace(text)
                        nulls = pc.is_in(trimmed, value_set=_PREVIOUS_NULL_WORDS)
                        texts[header] = pc.if_else(nulls, "", trimmed)
                    elif trim:  # as free text is made alike: a paste's invisible ends too
                        trimmed = _same_text(text)
                        nulls = pc.is_in(trimmed, value_set=_NULL_WORDS)
                        texts[header] = pc.if_else(nulls, "", trimmed)
                        padded = padded or not texts[header].equals(text)
                pieces.append(texts[header])
                bad.extend(_template_errors(template, header, texts[header], rows))
                bad.extend(
                    (row, template, f"{template!r} takes column {header!r}, which {why}")
                    for row, why in _not_text_cells(table.column(header), rows).items()
                )
        text = pc.binary_join_element_wise(*pieces, "")
        expanded = pc.if_else(rows, text, expanded)
    names[:] = expanded.to_pylist()
    return sorted(bad), padded


_ERROR_TEXTS: Final = pa.array(sorted(SPREADSHEET_ERRORS | {UNCALCULATED}))
_LOCALIZED_TEXTS: Final = pa.array(sorted(LOCALIZED_ERRORS))
_NULL_WORDS: Final = pa.array(sorted(MISSING_TEXTS | DATABASE_NULLS))
# The null words of the version before placeholders (N/A, -) were: a name it expanded over a
# template's cell is found by them (`_free_text_as_written`).
_PREVIOUS_NULL_WORDS: Final = pa.array(sorted(_DATA_TOOL_NULLS | DATABASE_NULLS))


def _template_errors(
    template: str, header: str, text: pa.ChunkedArray, rows: pa.Array
) -> list[tuple[int, str, str]]:
    """The rows among `rows` whose cell in `header`, which `template` takes, holds a
    spreadsheet error (`#N/A`, a formula never calculated) or damaged text (`damaged_text`): it
    would be sent in the name."""
    trimmed = pc.utf8_trim_whitespace(text)
    errors = pc.or_(
        pc.is_in(pc.utf8_upper(trimmed), value_set=_ERROR_TEXTS),
        pc.is_in(trimmed, value_set=_LOCALIZED_TEXTS),
    )
    # Damaged text (`damaged_text`) is outside ASCII, or has a `?`: only those cells are looked at.
    odd = pc.or_(pc.invert(pc.string_is_ascii(text)), pc.match_substring(text, "?"))
    suspect = pc.filter(text, pc.and_(rows, odd))  # (a pattern of both: 0.5 s a million rows)
    damaged = pa.array(
        [cell for cell in pc.unique(suspect).to_pylist() if damaged_text(cell)], pa.string()
    )
    errors = pc.or_(errors, pc.is_in(text, value_set=damaged))
    found = pc.and_(rows, pc.fill_null(errors, False)).to_numpy(zero_copy_only=False)
    return [
        (row, template, f"{template!r} takes column {header!r}, and {why}")
        for row in np.flatnonzero(found).tolist()
        for cell in [text[row].as_py()]
        for why in [spreadsheet_error(cell) or damaged_text(cell)]
    ]


def resolve_rows(
    table: pa.Table, plan: ColumnPlan, defaults: RequestDefaults, first: int
) -> ResolvedRows:
    """The catalog rows of one batch, numbered from `first`."""
    written = table
    table, unwrapped = _text_formulas_read(table, plan)
    count = table.num_rows
    columns: dict[str, list[Any]] = {}
    parts: dict[str, pa.Array] = {}
    problems: dict[int, list[RowProblem]] = {}
    product_spelled: dict[int, str] = {}
    earlier: dict[str, dict[int, str]] = {}

    def report(canonical: str, bad: list[tuple[int, str, str]]) -> None:
        header = plan.canonical.get(canonical, canonical)
        for row, value, reason in bad:
            problems.setdefault(row, []).append(RowProblem(header, value, reason))

    for canonical, (normalize, default_name) in _COLUMNS.items():
        default = getattr(defaults, default_name) if default_name else None
        if canonical == "image_urls" and default is None:
            default = ()
        header = plan.canonical.get(canonical)
        if header is None:
            columns[canonical] = [default] * count
            parts[canonical] = _constant_part(default, count)
            continue
        kind: _Kind = (
            "free"
            if canonical in FREE_TEXT_COLUMNS
            else "list"
            if canonical == "image_urls"
            else "one"
        )
        column = _normalize_column(
            table.column(header),
            normalize,
            default,
            kind,
            make_alike=canonical in _MADE_ALIKE,
            as_written=_EARLIER_SPELLINGS.get(canonical),
            json_in_text=header in plan.json_in_text,
        )
        columns[canonical] = column.values
        parts[canonical] = column.parts
        earlier[canonical] = column.earlier
        report(canonical, column.bad)
        if canonical == "product_id":
            product_spelled = column.spelled_missing
    names, padded = columns["video_name"], False
    if _names_used(plan, defaults):
        bad_names, padded = _expand_names(names, table, plan.template_names)
        report("video_name", bad_names)
        # A `nan` cell's text, as earlier versions sent it, over the name it expands to now.
        earlier["video_name"] = _make_alike(names) | earlier.get("video_name", {})
        parts["video_name"] = _text_part(names)
    previous_names: dict[int, str] = {}
    if unwrapped or padded:
        previous_names = _free_text_as_written(
            written, unwrapped, padded, plan, defaults, columns, earlier
        )
    parts["name"] = parts.pop("video_name")
    # A key is an id: without the invisible characters its request's id drops (`_visible`), or
    # one product pasted with a zero-width space would have two keys.
    keys = pc.replace_substring_regex(
        _text_array(table.column(plan.key)), pattern=_INVISIBLE_PATTERN, replacement=""
    ).to_pylist()
    blank = _blank_rows(table)
    product_header = plan.canonical.get("product_id", "product_id")
    for row in sorted({*_header_repeats(table), *_product_id_headers(table, plan)}):
        problems[row] = [RowProblem(plan.key, keys[row], _REPEATED_HEADER)]  # that one alone
    first_column = table.column_names[0] if table.num_columns else product_header
    for row in _totals_rows(table, first_column, plan.canonical.get("product_id")):
        label = str(table.column(first_column)[row].as_py()).strip()
        problems[row] = [RowProblem(first_column, label, _TOTALS_ROW)]
    return ResolvedRows(
        first,
        columns,
        keys,
        _fingerprints(parts),
        {index: found for index, found in problems.items() if index not in blank},
        product_header,
        plan.canonical.get("product_url"),
        product_spelled,
        blank,
        names_make_products="product_id" not in plan.canonical,
        earlier={name: rows for name, rows in earlier.items() if rows},
        previous_names=previous_names,
    )


# `="00123"`: Excel's way to keep a CSV cell as text (leading zeros, long digits), which data
# exports write and Excel shows as 00123; a `"` inside is doubled.
_TEXT_FORMULA: Final = r'^\s*="((?:[^"]|"")*)"\s*$'


def _text_formulas_read(table: pa.Table, plan: ColumnPlan) -> tuple[pa.Table, set[str]]:
    """The table with each `="text"` cell of a column a request or row key reads as its text,
    and the headers of the columns that had one (most files: none, after one substring search
    per column)."""
    fed = {*plan.canonical.values(), *plan.template_names.values(), plan.key}
    unwrapped = set()
    for index, field in enumerate(table.schema):
        if field.name not in fed or not pa.types.is_string(field.type):
            continue
        column = table.column(index)
        if not pc.any(pc.match_substring(column, '="')).as_py():
            continue
        formulas = pc.fill_null(pc.match_substring_regex(column, _TEXT_FORMULA), False)
        if not pc.any(formulas).as_py():
            continue
        text = pc.replace_substring_regex(column, _TEXT_FORMULA, r"\1")
        text = pc.if_else(formulas, pc.replace_substring(text, '""', '"'), column)
        table = table.set_column(index, field, text)
        unwrapped.add(field.name)
    return table, unwrapped


def _names_used(plan: ColumnPlan, defaults: RequestDefaults) -> bool:
    return plan.canonical.get("video_name") is not None or defaults.video_name is not None


def _free_text_as_written(
    written: pa.Table,
    unwrapped: set[str],
    padded: bool,
    plan: ColumnPlan,
    defaults: RequestDefaults,
    columns: Mapping[str, list[Any]],
    earlier: dict[str, dict[int, str]],
) -> dict[int, str]:
    """Adds to `earlier` the free text (a name, a script) earlier versions sent from a `="text"`
    cell, or from a template's cell with spaces at its ends, which they took as written: a row
    they sent keeps that fingerprint too, and is never paid for again. Ids and choices need
    none: written so, they were refused, here or by JoggAI, or read as now.

    Returns the names the version before this one expanded otherwise than now, by row: it
    trimmed a template's cells of spaces only, and knew fewer null words (`trim="previous"`)."""
    previous: dict[int, str] = {}
    templated = padded or bool(unwrapped & set(plan.template_names.values()))
    for canonical in sorted(FREE_TEXT_COLUMNS):
        header = plan.canonical.get(canonical)
        names = canonical == "video_name" and _names_used(plan, defaults)
        if header not in unwrapped and not (names and templated):
            continue
        normalize, default_name = _COLUMNS[canonical]
        default = getattr(defaults, default_name) if default_name else None
        values, bad = [default] * written.num_rows, set()
        if header is not None:
            column = _normalize_column(
                written.column(header), normalize, default, "free", as_earlier_versions=True
            )
            values, bad = column.values, {row for row, _, _ in column.bad}
        sent = columns[canonical]
        if names:
            before_previous = list(values)
            _expand_names(before_previous, written, plan.template_names, trim="previous")
            expanded = _expand_names(values, written, plan.template_names, trim=False)
            bad.update(row for row, _, _ in expanded[0])
            for row, name in enumerate(before_previous):
                if name != sent[row] and row not in bad and isinstance(name, str):
                    previous[row] = name
        for row, before in enumerate(values):
            if before != sent[row] and row not in bad and isinstance(before, str):
                earlier.setdefault(canonical, {})[row] = before
    return previous


_REPEATED_HEADER: Final = (
    "the row repeats the header line, or labels the columns (files joined together? a hint line "
    "under the header?); delete it"
)
# Invisible characters an export leaves at a cell's ends: a byte order mark, zero-width spaces
# and joiners, direction marks.
_INVISIBLE: Final = "\ufeff\u200b\u200c\u200d\u2060\u200e\u200f"


def header_spellings(headers: list[str]) -> pa.Array:
    """The ways a line pasted from another export is likely to spell the header's names (as
    written, trimmed, in either case, as matched; after a byte order mark): a cheap test of
    which cells may name a column (`header_again` decides)."""
    spellings = set()
    for header in filter(str.strip, headers):
        key = header_key(header)
        spellings |= {header, header.strip(), header.strip().lower(), header.strip().upper()}
        spellings |= {key, key.replace("_", " "), key.upper(), key.replace("_", " ").title()}
    spellings |= {f"\ufeff{spelling}" for spelling in spellings}  # a second export's BOM
    return pa.array(sorted(spellings), pa.string())


def header_again(cells: list[str], headers: list[str]) -> str | None:
    """When a line's cells are the header's names in another order (at least two cells, and at
    least half the columns, name one, and one of them names another than its own): how it
    reads, for the message. Two exports joined with `cat`, the second's columns in another
    order: every row below that line would be read under the wrong columns."""
    keys = [header_key(header) for header in headers]
    known = set(keys) - {""}
    named = [(cell, key) for cell, key in zip(cells, keys, strict=False) if cell.strip()]
    named = [(cell, key) for cell, key in named if header_key(cell) in known]
    moved = [(cell, key) for cell, key in named if header_key(cell) != key]
    if len(named) < max(2, (len(known) + 1) // 2) or not moved:
        return None
    cell, key = moved[0]
    header = headers[keys.index(key)]
    return (
        f"repeats the header with its columns in another order ({cell.strip()!r} under "
        f"{header!r}): two exports joined together? Every row below it would be read under the "
        "wrong columns; export the rows again as one file, or make the second part's columns "
        "the first's"
    )


def _header_repeats(table: pa.Table) -> list[int]:
    """The rows whose every cell is its column's name, ignoring case, surrounding spaces and
    invisible characters: the header line again below the first, as two exports joined with
    `cat` have it (the second with its byte order mark)."""
    same: pa.ChunkedArray | None = None
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_string(column.type):
            return []  # a typed column (Parquet, JSON Lines) holds no header text
        cells = pc.utf8_lower(pc.utf8_trim(pc.utf8_trim_whitespace(column), _INVISIBLE))
        equal = pc.fill_null(pc.equal(cells, _visible(name).strip().lower()), False)
        same = equal if same is None else pc.and_(same, equal)
        if not pc.any(same).as_py():
            return []  # the usual answer, found on the first column
    assert same is not None
    return np.flatnonzero(same.to_numpy(zero_copy_only=False)).tolist()


# What a second header line or a hint line under the header says in an id column, in the
# shops' languages (split where a separator may be, or none: `ProductID`, `Produkt-ID`).
_ID_LABELS: Final = (
    "id", "pid", "product", "produkt", "produkt_id", "artikel_id", "artikel_nr", "item_id",
    "product_code", "id_produit", "id_producto", "id_prodotto", "required", "optional",
    "mandatory", "example", "pflichtfeld", "pflicht", "erforderlich", "beispiel", "obligatoire",
    "requis", "exemple", "obligatorio", "requerido", "ejemplo", "obbligatorio", "esempio",
    "identifier", "string", "text", "varchar", "integer", "number",
)  # fmt: skip


_TOTALS_ROW: Final = (
    "the row is a totals row (an Excel table's Total Row, whose label is in the first column and "
    "a count or a sum under the others), not a product; delete it, or untick Total Row before "
    "exporting"
)


def _totals_rows(table: pa.Table, first: str, product_header: str | None) -> list[int]:
    """The rows whose first cell is a totals label (`_TOTALS_LABELS`: `Total`, `Summe`, ...,
    with a note in brackets after it or not) and whose product id cell is empty or a number (a
    count, a sum), where the first column is not the product id's (its own values say so
    there): an Excel table's Total Row as its CSV export keeps it, a CRM report's closing row.
    A brand that is the word (`TOTAL` motor oil) beside a product's id is a product."""
    if (
        product_header is None
        or first == product_header
        or not pa.types.is_string(table.schema.field(first).type)
    ):
        return []
    cells = pc.utf8_lower(pc.utf8_rtrim(pc.utf8_trim_whitespace(table.column(first)), ":"))
    # A report's note after the label: Salesforce's `Grand Totals (6 records)`, `Total (6)`.
    cells = pc.replace_substring_regex(cells, r"\s*\([^()]*\)$", "")
    labelled = pc.fill_null(pc.is_in(cells, pa.array(sorted(_TOTALS_LABELS))), False)
    if not pc.any(labelled).as_py():
        return []
    ids = _text_array(table.column(product_header))
    counted = pc.fill_null(pc.match_substring_regex(ids, r"^\s*[-+]?[\d.,\s]*\s*$"), True)
    found = pc.and_(labelled, counted)
    return np.flatnonzero(found.to_numpy(zero_copy_only=False)).tolist()


def _product_id_headers(table: pa.Table, plan: ColumnPlan) -> list[int]:
    """The rows whose product id cell names the column (`product_id`, or its header spelled
    any way a header is matched, with or without separators; `_ID_LABELS`): a header line
    pasted in from another export (`Product ID`, `ProductID` under `product_id`), or a hint
    line (`required`), whose other cells need not match; never an id JoggAI gives (theirs are
    base64 of a number, never such a word)."""
    header = plan.canonical.get("product_id")
    if header is None or not pa.types.is_string(table.schema.field(header).type):
        return []
    names = sorted({"product_id", header_key(header), *_ID_LABELS})
    spellings = ("[\\s_-]*".join(map(re.escape, name.split("_"))) for name in names)
    pattern = f"(?i)^[\\s\\x{{feff}}]*({'|'.join(spellings)})[\\s\\x{{feff}}:*]*$"
    found = pc.fill_null(pc.match_substring_regex(table.column(header), pattern), False)
    if not pc.any(found).as_py():
        return []
    return np.flatnonzero(found.to_numpy(zero_copy_only=False)).tolist()


def _blank_rows(table: pa.Table) -> frozenset[int]:
    """The rows whose every cell is empty (null, NaN, or only spaces and invisible characters):
    the lines a spreadsheet leaves below its data when it exports cells that were once
    formatted."""
    blank: pa.ChunkedArray | None = None
    for column in table.columns:
        empty = pc.is_null(column, nan_is_null=True)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            bare = pc.utf8_trim(pc.utf8_trim_whitespace(column), _INVISIBLE + " \t")
            spaces = pc.fill_null(pc.equal(bare, ""), True)
            empty = pc.or_(empty, spaces)
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is None or not pc.any(blank).as_py():
        return frozenset()
    return frozenset(np.flatnonzero(blank.to_numpy(zero_copy_only=False)).tolist())
