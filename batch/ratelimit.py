"""The POST rate limiter: at most N POSTs in any sliding window, whatever the network latency.

Concurrency (how many requests are in flight) is not this module's business: the runner caps it
with its own semaphore. This limiter only decides *when* the next POST may leave.

The guarantee
-------------
A slot is taken at the moment of sending and stays counted until `window` seconds after the
*answer* (or after the caller gave up on the request). At most `count` slots are counted at any
time. Number the sends in order; slot i + N (N = count) can only be taken once slot i has stopped
counting, so

    send(i + N) >= answer(i) + window >= arrival(i) + window

because a request arrives at the server before its answer leaves it. The server therefore sees
request i + N at least `window` seconds after request i, and no sliding window of that length on
the server side, whatever it measures from (arrival, processing, its own answer), can hold more
than N of our requests. Latency only makes us slower, never over the limit; nothing here needs to
know the latency. Runs resumed after a crash call `seed()` with the answer times of the previous
run, so they are bound by the same inequality.

Sends are also spread at least `window / count` apart (on a schedule, so that timer lag does not
accumulate): a fresh run starts at the steady rate, not with a burst of N at t = 0.

Server hints win (another client may share the key): after a 429 every sender is held until
`now + Retry-After` (a full window when absent) and the effective count is halved; it recovers by
one for each clean window after the hold. `X-RateLimit-Remaining: 0` holds the next send until
our oldest counted slot expires. A `Retry-After` on any other answer (a 503) also holds everyone.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batch.rates import RateLimit

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


@dataclass(slots=True)
class LimiterStats:
    """What the limiter did, for summaries and benchmarks."""

    sent: int = 0
    max_in_window: int = 0  # most sends this limiter let out within any `window` seconds
    rate_limited: int = 0  # 429 answers observed
    held_by_remaining: int = 0  # answers with X-RateLimit-Remaining: 0


class Slot:
    """One POST's place in the window; tell it what the server answered."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self._limiter = limiter

    def observe(
        self,
        retry_after: float | None = None,
        rate_remaining: int | None = None,
        was_429: bool = False,
    ) -> None:
        """Feed the answer's rate hints back (before leaving the `async with`)."""
        self._limiter._observe(retry_after, rate_remaining, was_429)


class SlidingWindowLimiter:
    """`async with limiter.slot() as slot:` around each POST; see the module docstring."""

    def __init__(
        self, rate: RateLimit, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.rate = rate
        self.stats = LimiterStats()
        self._clock = clock
        self._sleep = sleep
        self._expiries: list[float] = []  # sorted: when each answered slot stops counting
        self._in_flight = 0
        self._next_spaced = -math.inf  # earliest next send by the spacing rule
        self._hold_until = -math.inf
        self._effective = rate.count
        self._recover_at = math.inf  # next time the effective count grows by one
        self._recent_sends: deque[float] = deque()
        self._turn = asyncio.Lock()  # FIFO: senders leave in the order they asked
        self._released = asyncio.Event()

    @property
    def effective_count(self) -> int:
        """The count currently enforced (lower than `rate.count` after a 429)."""
        return self._effective

    def seed(self, times: Iterable[float], *, now: float | None = None) -> None:
        """Count earlier sends (answer times, preferably) as if this limiter had made them.

        `times` are on this limiter's clock, or on another clock (such as `time.time()` values
        from the state database) whose current reading is given as `now`.
        """
        shift = 0.0 if now is None else self._clock() - now
        for moment in times:
            bisect.insort(self._expiries, moment + shift + self.rate.window)
            self._next_spaced = max(self._next_spaced, moment + shift + self._interval())
        self._expire(self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait for a place in the window, hold it while the request runs, then release it."""
        await self._acquire()
        try:
            yield Slot(self)
        finally:
            self._release()

    async def _acquire(self) -> None:
        async with self._turn:
            while True:
                now = self._clock()
                wait = self._wait(now)
                if wait is None:
                    self._released.clear()
                    await self._released.wait()
                elif wait > 0:
                    await self._sleep(wait)
                else:
                    break
            self._take(now)

    def _wait(self, now: float) -> float | None:
        """Seconds until a send is allowed; None while only an answer can free a place."""
        self._expire(now)
        self._recover(now)
        free = self._effective - self._in_flight
        if free <= 0:
            return None
        allowed = max(self._hold_until, self._next_spaced)
        must_expire = len(self._expiries) - (free - 1)
        if must_expire > 0:
            allowed = max(allowed, self._expiries[must_expire - 1])
        # Wake early if a recovery step may shorten the wait.
        return min(allowed, self._recover_at) - now

    def _take(self, now: float) -> None:
        self._in_flight += 1
        interval = self._interval()
        # Late by less than an interval (timer lag): keep the schedule so lag does not add up.
        base = self._next_spaced if now - self._next_spaced < interval else now
        self._next_spaced = base + interval
        self.stats.sent += 1
        recent = self._recent_sends
        while recent and recent[0] <= now - self.rate.window:
            recent.popleft()
        recent.append(now)
        self.stats.max_in_window = max(self.stats.max_in_window, len(recent))

    def _release(self) -> None:
        self._in_flight -= 1
        bisect.insort(self._expiries, self._clock() + self.rate.window)
        self._released.set()

    def _observe(
        self, retry_after: float | None, rate_remaining: int | None, was_429: bool
    ) -> None:
        now = self._clock()
        if was_429:
            self.stats.rate_limited += 1
            pause = self.rate.window if retry_after is None else max(0.0, retry_after)
            self._hold_until = max(self._hold_until, now + pause)
            self._effective = max(1, self._effective // 2)
            self._recover_at = self._hold_until + self.rate.window
        elif retry_after is not None:
            self._hold_until = max(self._hold_until, now + max(0.0, retry_after))
        if rate_remaining is not None and rate_remaining <= 0:
            self.stats.held_by_remaining += 1
            # This request's own slot is still in flight: with nothing older, it is the oldest.
            oldest = self._expiries[0] if self._expiries else now + self.rate.window
            self._hold_until = max(self._hold_until, oldest)

    def _interval(self) -> float:
        return self.rate.window / self._effective

    def _expire(self, now: float) -> None:
        del self._expiries[: bisect.bisect_right(self._expiries, now)]

    def _recover(self, now: float) -> None:
        if now < self._recover_at:
            return
        steps = int((now - self._recover_at) // self.rate.window) + 1
        self._effective = min(self.rate.count, self._effective + steps)
        if self._effective == self.rate.count:
            self._recover_at = math.inf
        else:
            self._recover_at += steps * self.rate.window
