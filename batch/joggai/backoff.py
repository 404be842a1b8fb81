"""The retry policy: which outcomes are worth another attempt, and how long to wait before it.

Pure: no clock, no sleeping, no I/O. The caller sleeps (or, better, lets the rate limiter hold
the next send) for the delay this returns.

Backoff is "full jitter" (AWS architecture blog, "Exponential Backoff And Jitter"): before attempt
`n + 1`, after `n` failed attempts, wait

    delay(n) = uniform(0, min(max_delay, base_delay * 2 ** (n - 1)))

so with the defaults the ceilings are 2, 4, 8, 16, 32, 60, 60 ... seconds. Full jitter spreads many
workers that failed together (a 50000 burst) over the whole interval instead of letting them return
in lockstep. A server hint wins: when the answer carried a `Retry-After` (or `retryAfter`), the
delay is that hint, never less, because waiting less only earns another 429, but never more than
`max_delay` either:

    delay(n) = min(max_delay, Retry-After)

A hint of `1e9` seconds (or an HTTP date years ahead) would otherwise hang an unattended run; the
attempt after `max_delay` meets at worst another 429, and attempts are limited.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

# Outcome kinds (see `batch.joggai.client.ApiOutcome.kind`) for which sending again is safe and
# useful.
# `unknown` is not among them: the server may have accepted and charged, so the caller must
# reconcile before it resends. `permanent` and `account` would fail the same way again.
RETRYABLE_KINDS: Final = frozenset({"retryable", "not_sent"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts a request gets and how long to back off between them."""

    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must not be negative")

    def delay(self, attempt: int, *, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, not {attempt}")
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        # Capping the exponent keeps 2 ** n a finite float for absurd attempt numbers.
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 64))
        return rng.uniform(0.0, ceiling) if self.jitter else ceiling

    def should_retry(self, outcome_kind: str, attempt: int) -> bool:
        """After `attempt` attempts (1-based) ended with `outcome_kind`, is another one due?"""
        return outcome_kind in RETRYABLE_KINDS and attempt < self.max_attempts
