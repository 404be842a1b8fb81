"""Catalog columns of any Arrow type as results-file cells, never failing on a type.

A catalog (Parquet, JSON Lines) can hold any Arrow type; a CSV cell is text. Plain values (text,
numbers, booleans, times, decimals) are cast as Arrow spells them. Lists, structs and maps become
compact JSON text (`["x","y"]`, `{"k":1}`; a map is an object of its keys, or a list of
`[key, value]` pairs when a key repeats). Binary cells are their text when it is UTF-8, and
otherwise `base64:` then their bytes in base64. Any other type (an extension type such as UUID)
becomes the text of its Python value.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

BINARY_PREFIX: Final = "base64:"
# Below these every whole number is a float of that width exactly: written as its digits.
_FLOAT_EXACT: Final = {32: 2.0**24, 64: 2.0**53}


def as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column as a string column, whatever its type; nulls stay null."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        decoded = [chunk.dictionary_decode() for chunk in column.chunks]
        return as_text(pa.chunked_array(decoded, kind.value_type))
    if is_binary(kind):
        return _binary_text(column)
    if pa.types.is_nested(kind) or isinstance(kind, pa.BaseExtensionType):
        return _python_text(column)
    if pa.types.is_floating(kind) and kind.bit_width in _FLOAT_EXACT:  # (no float16 `floor`)
        return _float_text(column)
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return _python_text(column)


def _float_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Floats as Arrow spells them, but a whole number held exactly as its digits: Arrow writes
    1234567890123.0 as `1.234567890123e+12`, which a retry of the file would read as an id
    Excel rewrote, and a person as a number rounded."""
    text = pc.cast(column, pa.string())
    exact = _FLOAT_EXACT[column.type.bit_width]
    whole = pc.and_(pc.equal(pc.floor(column), column), pc.less(pc.abs(column), exact))
    whole = pc.fill_null(whole, False)
    if not pc.any(whole).as_py():
        return text
    digits = pc.cast(pc.cast(pc.if_else(whole, column, 0.0), pa.int64()), pa.string())
    return pc.if_else(whole, digits, text)


def is_plain(kind: pa.DataType) -> bool:
    """A type whose Python values a spreadsheet cell takes as they are (text, a number, a time)."""
    if pa.types.is_dictionary(kind):
        return is_plain(kind.value_type)
    special = pa.types.is_nested(kind) or isinstance(kind, pa.BaseExtensionType)
    return not (is_binary(kind) or special)


def is_binary(kind: pa.DataType) -> bool:
    binary: bool = (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or pa.types.is_binary_view(kind)
    )
    return binary


def _binary_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:  # the usual case, vectorised: every cell is UTF-8 text
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return _python_text(column)


def _python_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Cell by cell in Python: slow, so only for the types Arrow cannot cast to text."""
    kind = column.type
    cells = [None if value is None else _cell(value, kind) for value in column.to_pylist()]
    return pa.chunked_array([pa.array(cells, pa.string())])


def _cell(value: object, kind: pa.DataType | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return _bytes_text(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(_jsonable(value, kind), ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _jsonable(value: Any, kind: pa.DataType | None) -> Any:
    """A nested cell's Python value as JSON can hold it, led by its Arrow type where known."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(kind, pa.MapType):
        return _map_object(value, kind)
    if isinstance(kind, pa.StructType):
        return {field.name: _jsonable(value[field.name], field.type) for field in kind}
    if isinstance(value, dict):
        return {str(key): _jsonable(item, None) for key, item in value.items()}
    if isinstance(value, list | tuple):
        item_type = getattr(kind, "value_type", None)  # every list type has one
        return [_jsonable(item, item_type) for item in value]
    if isinstance(value, bytes):
        return _bytes_text(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)  # Decimal (exact), timedelta, UUID and the like


def _map_object(pairs: list[tuple[Any, Any]], kind: pa.MapType) -> Any:
    """A map's pairs as an object, or as a list of [key, value] when keys repeat (none lost)."""
    keys = [_cell(key, kind.key_type) for key, _ in pairs]
    items = [_jsonable(item, kind.item_type) for _, item in pairs]
    if len(set(keys)) < len(keys):
        raw_keys = [_jsonable(key, kind.key_type) for key, _ in pairs]
        return [list(pair) for pair in zip(raw_keys, items, strict=True)]
    return dict(zip(keys, items, strict=True))


def _bytes_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return BINARY_PREFIX + base64.b64encode(value).decode("ascii")
