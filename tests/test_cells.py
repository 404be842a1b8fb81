"""Catalog columns of any Arrow type as text cells (batch.store.cells)."""

from __future__ import annotations

import datetime
import decimal
import uuid

import pyarrow as pa
import pytest

from batch.store.cells import as_text

CASES = [
    (pa.array([["x", "y"], [], None], pa.list_(pa.string())), ['["x","y"]', "[]", None]),
    (pa.array([[1, 2], None], pa.list_(pa.int64(), 2)), ["[1,2]", None]),
    (
        pa.array([{"k": 1, "s": "é"}], pa.struct([("k", pa.int64()), ("s", pa.string())])),
        ['{"k":1,"s":"é"}'],
    ),
    (pa.array([[("a", 1)], []], pa.map_(pa.string(), pa.int64())), ['{"a":1}', "{}"]),
    (pa.array([[("a", 1), ("a", 2)]], pa.map_(pa.string(), pa.int64())), ['[["a",1],["a",2]]']),
    (pa.array([b"ab", b"\x00\xff", None], pa.binary()), ["ab", "base64:AP8=", None]),
    (pa.array([b"\xff\x00"], pa.binary(2)), ["base64:/wA="]),
    (
        pa.array([[decimal.Decimal("1.10")], [None]], pa.list_(pa.decimal128(5, 2))),
        ['["1.10"]', "[null]"],
    ),
    (
        pa.array(
            [{"t": datetime.datetime(2024, 1, 2, 3, 4, 5)}], pa.struct([("t", pa.timestamp("s"))])
        ),
        ['{"t":"2024-01-02T03:04:05"}'],
    ),
    (pa.array([[(1, b"\xff")]], pa.map_(pa.int64(), pa.binary())), ['{"1":"base64:/w=="}']),
    (pa.array([uuid.UUID(int=1).bytes], pa.uuid()), ["00000000-0000-0000-0000-000000000001"]),
    (pa.DictionaryArray.from_arrays(pa.array([0, 0]), pa.array([[1]])), ["[1]", "[1]"]),
    (pa.array([-5, 30, None]), ["-5", "30", None]),
    (
        pa.array([1234567890123.0, 17.0, 17.4, 1e-7, None, float("nan"), 2.0**53, -3.0]),
        ["1234567890123", "17", "17.4", "1e-7", None, "nan", "9.007199254740992e+15", "-3"],
    ),
    (pa.array([1e12, 4e6, 0.5], pa.float32()), ["1e+12", "4000000", "0.5"]),
    (pa.array([2.0, 0.5, None], pa.float16()), ["2", "0.5", None]),
]


@pytest.mark.parametrize(
    ("values", "expected"), CASES, ids=lambda case: str(getattr(case, "type", ""))
)
def test_every_arrow_type_becomes_text_cells(values: pa.Array, expected: list[str | None]) -> None:
    """Nested values become compact JSON, bytes their UTF-8 text or `base64:`, the rest text."""
    assert as_text(pa.chunked_array([values])).to_pylist() == expected
