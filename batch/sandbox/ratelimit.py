"""The server side of the POST rate limit: a sliding-window log per API key.

A POST is admitted when fewer than `count` admitted POSTs of the same key fall in the last
`window` seconds. Refused POSTs are not logged, so hammering does not extend the wait.
`Retry-After` is ceil(oldest + window - now), at least 1 second.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from batch.joggai.quota import RateLimit


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    remaining: int  # slots left in the window after this request
    retry_after: int  # whole seconds; 0 when admitted


class SlidingWindow:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._log: dict[str, deque[float]] = {}

    def admit(self, key: str, now: float) -> Admission:
        log = self._log.setdefault(key, deque())
        while log and log[0] <= now - self.limit.window:
            log.popleft()
        if len(log) >= self.limit.count:
            wait = log[0] + self.limit.window - now
            return Admission(False, 0, max(1, math.ceil(wait)))
        log.append(now)
        return Admission(True, self.limit.count - len(log), 0)

    def remaining(self, key: str, now: float) -> int:
        """Slots left for `key` without taking one (for answers refused before admission)."""
        log = self._log.get(key, deque())
        return self.limit.count - sum(1 for sent in log if sent > now - self.limit.window)

    def clear(self) -> None:
        self._log.clear()
