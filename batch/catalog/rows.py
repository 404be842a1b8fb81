"""The shapes the catalog hands to the rest of jogg-batch: options in, batches of rows out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Literal, NamedTuple, overload

import pyarrow as pa

from batch.payload import (
    ProductDetails,
    RequestDefaults,
    ResolvedFields,
    alike_but_breaks,
    alike_but_format_ends,
    fingerprint,
    lines_composed,
    trimmed_lines,
)
from batch.storage import Location

CatalogFormat = Literal["csv", "parquet", "jsonl", "excel"]


# Text people write in these columns is kept as written, whatever it says (made alike only:
# `normalize._same_text`).
FREE_TEXT_COLUMNS: Final = frozenset(
    {"video_name", "override_script", "product_name", "description", "target_audience"}
)


def nameless_fix(position: int, value: str) -> str:
    """What to do about a value in a column with no name (`position` from 0): a first column of
    row numbers is the index pandas' `to_csv`/`to_excel` and R's `write.csv` write by default."""
    if position == 0 and value.strip().isdecimal():
        return (
            "it looks like the row index pandas or R writes by default: save with "
            "`index=False` (R: `row.names = FALSE`), or delete the column"
        )
    return "name the column in the header, or delete it"


def row_place(number: int) -> str:
    """Where data row N is for people reading a CSV, Parquet or JSON Lines catalog."""
    return f"row {number}"


@dataclass(frozen=True)
class CatalogOptions:
    """How to read one catalog file.

    `format` None picks by extension; `delimiter` None sniffs `,` `;` or tab; `columns` maps catalog
    headers to canonical column names (headers match ignoring case and surrounding spaces);
    `row_key` names the column that identifies a row for people (default: the product_id column);
    `sheet` names a spreadsheet's sheet (default: the first visible one); `columns_from` names
    the settings file the mapping came from, for messages.
    """

    format: CatalogFormat | None = None
    delimiter: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    defaults: RequestDefaults = field(default_factory=RequestDefaults)
    row_key: str | None = None
    batch_rows: int = 50_000
    sheet: str | None = None
    columns_from: str | None = None


def request_settings_to_json(options: CatalogOptions) -> str:
    """What the state keeps of how a run read its catalog into requests, for `retry` to rebuild
    the rows of its results file as they were planned: the request defaults and the column
    mapping, as compact JSON; and the sheet a workbook's run chose, which tells the runs of one
    workbook's sheets apart (`StateStore.asked_otherwise_later`)."""
    settings: dict[str, object] = {
        "defaults": asdict(options.defaults),
        "columns": dict(options.columns),
    }
    if options.sheet is not None:
        settings["sheet"] = options.sheet
    return json.dumps(settings, separators=(",", ":"))


def request_settings_from_json(text: str, options: CatalogOptions) -> CatalogOptions:
    """`options` with the defaults and column mapping `request_settings_to_json` recorded
    (earlier versions kept the defaults alone, as the whole object); ValueError for a form this
    version cannot read."""
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"request settings are not a JSON object: {text[:80]}")
    defaults, columns = (
        (values["defaults"], values.get("columns", {})) if "defaults" in values else (values, {})
    )
    if not isinstance(defaults, dict) or not isinstance(columns, dict):
        raise ValueError(f"request settings of an unknown form: {text[:80]}")
    try:
        recorded = RequestDefaults(**defaults)
    except TypeError as exc:  # a field this version does not know (a newer jogg-batch)
        raise ValueError(f"request defaults: {exc}") from None
    return replace(options, defaults=recorded, columns={str(k): str(v) for k, v in columns.items()})


class RowProblem(NamedTuple):
    """Why one value of one row cannot be sent; `column` is the header as the catalog spells it."""

    column: str
    value: str
    reason: str

    def message(self, path: Location, number: int, place: str | None = None) -> str:
        """`catalog.csv row 7, column 'length': '45' is not a video length; use 15, 30 or 60`.

        `place` says where the row is when that is not `row N` (`sheet 'Products' row 8`)."""
        return f"{path.name} {place or row_place(number)}, column {self.column!r}: {self.reason}"


class CatalogRow(NamedTuple):
    """One data row: its 1-based number, its request values (None when invalid) and identity."""

    number: int
    fields: ResolvedFields | None
    problems: tuple[RowProblem, ...]
    key: str
    fingerprint: str | None


# The request columns a batch resolves, in `ResolvedFields` order after the product's own.
ROW_COLUMNS: Final = (
    "product_id", "avatar_id", "avatar_type", "voice_id", "music_id", "script_style",
    "language", "visual_style", "length", "aspect_ratio", "caption", "video_name",
    "override_script", "webhook_url", "product_url", "product_name", "description",
    "target_audience", "image_urls",
)  # fmt: skip


_FREE_TEXT_AT: Final = frozenset(ROW_COLUMNS.index(name) for name in FREE_TEXT_COLUMNS)
_NAME_AT: Final = ROW_COLUMNS.index("video_name")


def _as_written(text: str) -> str:
    return text


def _no_product(product_header: str, spelled: str | None) -> RowProblem:
    """The problem of a row without a product: its cell is empty, or says so (`NULL`)."""
    needs = "every row needs a product_id (or a product_url)"
    if spelled is None:
        return RowProblem(product_header, "", f"is empty; {needs}")
    return RowProblem(product_header, spelled, f"{spelled!r} stands for an empty cell; {needs}")


class ResolvedRows(Sequence[CatalogRow]):
    """The rows of one batch, resolved a column at a time; a row object is built when asked for.

    Planning a nightly catalog needs only each row's fingerprint to find that nothing changed,
    so `fingerprints` (None for an invalid row) and `problems` are computed for every row up
    front, and the request values of a row (`fields`, `key`) only for rows that are used.
    """

    __slots__ = (
        "_built", "_columns", "_earlier", "_keys", "_previous_names", "blank", "fingerprints",
        "first", "problems",
    )  # fmt: skip

    def __init__(
        self,
        first: int,
        columns: Mapping[str, Sequence[Any]],
        keys: Sequence[str],
        fingerprints: list[str | None],
        problems: dict[int, list[RowProblem]],
        product_header: str,
        url_header: str | None,
        product_spelled_missing: Mapping[int, str] | None = None,
        blank: frozenset[int] = frozenset(),
        *,
        names_make_products: bool = True,
        earlier: Mapping[str, Mapping[int, str]] | None = None,
        previous_names: Mapping[int, str] | None = None,
    ) -> None:
        """`names_make_products`: a row without a product_id or product_url is made a product
        from its product_name (and details); not in a catalog of product ids, where an empty id
        is a mistake to show, not a product to create and pay a video for.

        `earlier`: column -> row -> the text as earlier versions read it, for the rows read
        otherwise now; see `earlier_fingerprints`. `previous_names`: row -> the name the version
        before this one expanded from a template, where it differs from `earlier`'s."""
        self.first = first
        self.blank = blank  # rows whose every cell is empty: not a row to send, nor a problem
        self._columns = [columns[name] for name in ROW_COLUMNS]
        self._keys = keys
        self.fingerprints = fingerprints
        self.problems = problems
        self._built: dict[int, CatalogRow] = {}
        self._earlier = {
            ROW_COLUMNS.index(name): rows for name, rows in (earlier or {}).items() if rows
        }
        self._previous_names = previous_names or {}
        # A row without a product_id is hashed from its product's details, or lacks a product.
        urls, names = columns["product_url"], columns["product_name"]
        spelled = product_spelled_missing or {}
        explained = (product_header, url_header)
        for index, pid in enumerate(self._columns[0]):
            if pid is not None or index in blank:
                continue
            if urls[index] is None and (names[index] is None or not names_make_products):
                if not any(problem.column in explained for problem in problems.get(index, ())):
                    problem = _no_product(product_header, spelled.get(index))
                    problems.setdefault(index, []).insert(0, problem)
                continue  # a bad id or URL already explains the missing id
            self._built[index] = row = self._row(index)
            fingerprints[index] = row.fingerprint
        for index in (*problems, *blank):
            fingerprints[index] = None

    def __len__(self) -> int:
        return len(self.fingerprints)

    @overload
    def __getitem__(self, index: int) -> CatalogRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[CatalogRow]: ...
    def __getitem__(self, index: int | slice) -> CatalogRow | list[CatalogRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        built = self._built.get(index)
        return built if built is not None else self._row(index)

    def __iter__(self) -> Iterator[CatalogRow]:
        return (self[index] for index in range(len(self)))

    def key(self, index: int) -> str:
        """The row's key for people (its product id by default; `row N` when empty)."""
        return self._keys[index].strip() or f"row {self.first + index}"

    def _values(self, index: int) -> list[Any]:
        return [column[index] for column in self._columns]

    def earlier_fingerprints(self, index: int) -> tuple[str, ...]:
        """The fingerprints earlier versions gave a valid row whose text is now read otherwise
        (free text made alike, a URL in one spelling, a `="text"` cell); empty for any other.

        The first versions hashed free text as the file wrote it (NFD, CRLF, spaces at its
        ends); later ones made it alike but for those spaces (`lines_composed`), then but for
        no-break spaces and invisible characters at its ends (`trimmed_lines`), then but for
        the line breaks of tools other than text editors (`alike_but_breaks`), then but for
        the other format characters at its ends and a formula guard's closing quote
        (`alike_but_format_ends`). Their jobs
        are in states for years: planning looks the row's job up under these too, so an
        upgrade never pays again for a row it sent before."""
        changed = [(at, rows[index]) for at, rows in self._earlier.items() if index in rows]
        if not changed or self.fingerprints[index] is None:
            return ()
        found = []
        previous_name = self._previous_names.get(index)
        readings = (
            _as_written, lines_composed, trimmed_lines, alike_but_breaks, alike_but_format_ends
        )  # fmt: skip
        for reading in readings:
            values = self._values(index)
            for at, text in changed:
                if reading is trimmed_lines and at == _NAME_AT and previous_name is not None:
                    text = previous_name  # that version's own expansion of the template
                values[at] = reading(text) if at in _FREE_TEXT_AT else text
            found.append(fingerprint(self._fields(values)))
        return tuple(fp for fp in dict.fromkeys(found) if fp != self.fingerprints[index])

    def _row(self, index: int) -> CatalogRow:
        number, key = self.first + index, self.key(index)
        problems = self.problems.get(index)
        if problems:
            return CatalogRow(number, None, tuple(problems), key, None)
        fields = self._fields(self._values(index))
        # A product without an id has its own encoding: hashed from the fields.
        fp = self.fingerprints[index] if fields.product is None else fingerprint(fields)
        return CatalogRow(number, fields, (), key, fp)

    @staticmethod
    def _fields(values: Sequence[Any]) -> ResolvedFields:
        """A row's request values from its values in `ROW_COLUMNS` order."""
        (pid, avatar_id, avatar_type, voice_id, music_id, style, language, visual_style, length,
         aspect_ratio, caption, name, override_script, webhook_url, product_url, product_name,
         description, audience, image_urls) = values  # fmt: skip
        product = None
        if pid is None:
            product = ProductDetails(product_url, product_name, description, audience, image_urls)
        return ResolvedFields(pid, product, length, aspect_ratio, caption, name, avatar_id,
                              avatar_type, voice_id, music_id, style, language, visual_style,
                              override_script, webhook_url)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CatalogBatch:
    """Consecutive rows, and the same rows' original columns untouched (for the results file)."""

    rows: ResolvedRows
    source: pa.Table
    place: Callable[[int], str] = field(default=row_place)
