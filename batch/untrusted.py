"""JSON from a server or a sender this tool does not control, read so that no value in it can
break what reads it.

Valid JSON can hold an integer of hundreds of digits (which `float()` of it overflows, and
Python refuses past 4,300 digits) and a lone surrogate (`"\\udc00"`, text no database or file
encoding can hold), and lists nested thousands deep (which Python's reader, and any recursive
reader after it, meets as a RecursionError). A hostile or broken server sending any of these must
give a clear error on the row or the answer, never a traceback mid-run: so integers past
`_INTEGER_DIGITS` digits are read as floats (infinite past a float's range, which every reader of
a number already refuses), a lone surrogate as U+FFFD, and JSON nested deeper than `_DEPTH` is
refused as JSON that is no answer (ValueError).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from batch.logs import escape_controls

# More than any id (an int64 has 19 digits), count, code or time the API sends.
_INTEGER_DIGITS: Final = 100
# JoggAI's answers nest four deep (`data.videos[].field`); this leaves room for any other.
_DEPTH: Final = 64
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# A JoggAI video id has 32 characters; one far longer is no id (and would swell what holds it).
ID_KEPT: Final = 256
# An absolute http(s) URL with a host; no space in it.
_WEB_URL: Final = re.compile(r"https?://[^\s/?#\\]+(?:[/?#]\S*)?", re.IGNORECASE)
_URL_KEPT: Final = 8192


def loads(content: bytes | str) -> Any:
    """`json.loads` with the integers, text and nesting above made safe (ValueError as
    json's)."""
    try:
        value = json.loads(content, parse_int=_integer)
    except RecursionError:
        raise ValueError(f"JSON nested over {_DEPTH} deep") from None
    if _deeper_than(value, _DEPTH):
        raise ValueError(f"JSON nested over {_DEPTH} deep")
    escaped = b"\\u" if isinstance(content, bytes) else "\\u"
    if escaped in content:  # type: ignore[operator]  # a surrogate only comes escaped
        value = _without_surrogates(value)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in `value` nest more than `limit` deep (read without recursion,
    so that no depth can break it)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children and depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _integer(digits: str) -> int | float:
    return int(digits) if len(digits) <= _INTEGER_DIGITS else float(digits)


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(key): _without_surrogates(item) for key, item in value.items()}
    return value


def whole_number(text: str, *, digits: int = 18) -> int | None:
    """The number a code or count written as text says (`"40000"`), or None: decimal digits
    only (not `²`, which `str.isdigit` takes), at most `digits` of them."""
    text = text.strip()
    if not text.isdecimal() or len(text) > digits:
        return None
    return int(text)


def video_id(value: object) -> str | None:
    """A video (or product) id as the API gives it (text or a number), or None for what is no
    id: longer than `ID_KEPT`, holding a space or a control character, or `.` or `..`. It goes
    into results files and terminals as it is, so an escape sequence in it would act there,
    and into a URL's path (`/v2/product_video/{id}`), where `..` would name another endpoint."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value)
    if not 0 < len(text) <= ID_KEPT or any(char.isspace() for char in text):
        return None
    if text in (".", ".."):
        return None
    return text if escape_controls(text) == text else None


def web_url(value: object) -> str | None:
    """`value` when it is an absolute http(s) URL of a sane length with no space or control
    character in it, else None: a link or an image source people open, never script or an
    escape sequence."""
    if not isinstance(value, str) or len(value) > _URL_KEPT or not _WEB_URL.fullmatch(value):
        return None
    return value if escape_controls(value) == value else None
