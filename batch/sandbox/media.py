"""Fake but deterministic media for completed renders, so downloaders can be tested end to end.

`GET /_sandbox/media/{video_id}.mp4` (300,000 bytes) and `.jpg` (40,000 bytes): the same bytes
for the same video id every time, with Content-Length, and single `Range: bytes=` requests
answered with 206 (or 416 when unsatisfiable).
"""

from __future__ import annotations

import random
import re
from typing import Final

from starlette.responses import Response

_KINDS: Final = {
    "mp4": ("video/mp4", 300_000, b"\x00\x00\x00\x18ftypmp42"),
    "jpg": ("image/jpeg", 40_000, b"\xff\xd8\xff\xe0\x00\x10JFIF"),
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def media_bytes(video_id: str, extension: str) -> bytes:
    _, size, magic = _KINDS[extension]
    return magic + random.Random(f"{video_id}.{extension}").randbytes(size - len(magic))


def media_response(video_id: str, extension: str, range_header: str | None) -> Response:
    content_type = _KINDS[extension][0]
    body = media_bytes(video_id, extension)
    headers = {"Accept-Ranges": "bytes"}
    if range_header is None:
        return Response(body, media_type=content_type, headers=headers)
    span = _byte_range(range_header.strip(), len(body))
    if span is None:
        headers["Content-Range"] = f"bytes */{len(body)}"
        return Response(b"", status_code=416, headers=headers)
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    return Response(body[start : end + 1], 206, headers=headers, media_type=content_type)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single `bytes=` range, or None when unsatisfiable."""
    match = _RANGE.match(header)
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # suffix form: the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end else None
