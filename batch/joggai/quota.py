"""Rate strings as people write them (`20/min`, `5/s`, `1000/h`, `none`), for client and sandbox."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` requests in any sliding window of `window` seconds."""

    count: int
    window: float

    @property
    def interval(self) -> float:
        """Seconds between requests when they are spread evenly."""
        return self.window / self.count

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.window)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.window:g}s"


def parse_rate(text: str) -> RateLimit | None:
    """`"20/min"` -> RateLimit(20, 60.0); `"none"` -> None (no limit); else ValueError."""
    if text.strip().lower() == "none":
        return None
    match = _RATE.match(text.lower())
    if not match or match.group(2) not in _UNITS or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a rate; write it as N/s, N/min or N/h (N > 0), or none")
    return RateLimit(int(match.group(1)), _UNITS[match.group(2)])
