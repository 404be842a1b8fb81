"""Progress of a run: a tqdm bar on a terminal, a log line every so often elsewhere (cron)."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)


class Progress:
    """Counts requests against the number of jobs planned so far."""

    def __init__(self, bar: bool, interval: float) -> None:
        self._bar = tqdm(total=0, unit="job", desc="sending", dynamic_ncols=True) if bar else None
        # Log lines go above the bar instead of through it.
        self._redirect = logging_redirect_tqdm() if bar else None
        if self._redirect is not None:
            self._redirect.__enter__()
        self._interval = interval
        self._total = 0
        self._done: set[int] = set()  # jobs, once each: one proven absent is sent again
        self._last_line = time.monotonic()

    def add_total(self, jobs: int) -> None:
        self._total += jobs
        if self._bar is not None:
            self._bar.total = self._total
            self._bar.refresh()

    def update(self, job_id: int, counts: dict[str, int]) -> None:
        """A job's sending finished (whatever its outcome; again, for one sent again)."""
        again = job_id in self._done
        self._done.add(job_id)
        if self._bar is not None:
            self._bar.update(0 if again else 1)
            self._bar.set_postfix(counts, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            log.info(
                "progress: %d of %d jobs done (%s)",
                len(self._done),
                self._total,
                ", ".join(f"{k} {v}" for k, v in counts.items()),
                extra={"event": "progress", "done": len(self._done), "total": self._total} | counts,
            )

    def close(self) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
        if self._bar is not None:
            self._bar.close()
