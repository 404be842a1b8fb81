"""The POST rate limiter: at most N POSTs in any sliding window, whatever the network latency,
and no more than the share of a shared key that other clients leave over.

Concurrency (how many requests are in flight) is not this module's business: the runner caps it
with its own semaphore. This limiter only decides *when* the next POST may leave.

The guarantee
-------------
A slot is taken at the moment of sending and stays counted until `window` seconds after the
*answer*. At most `effective_count` (never more than
N = `count`) slots are counted at any time. Number the sends in order; slot i + N can only be
taken once slot i has stopped counting, so

    send(i + N) >= answer(i) + window >= arrival(i) + window

because a request arrives at the server before its answer leaves it. The server therefore sees
request i + N at least `window` seconds after request i, and no sliding window of that length on
the server side, whatever it measures from (arrival, processing, its own answer), can hold more
than N of our requests. Latency only makes us slower, never over the limit; nothing here needs to
know the latency. Runs resumed after a crash call `seed()` with the answer times of the previous
run, so they are bound by the same inequality. A 429 answer frees its slot at once: the server
refused the request, so its window does not hold it (Retry-After governs what follows).

A request whose answer never came (a timeout, a reset, a gateway's 502 or 504) may still reach
the server later: a server that stalled, or a gateway that queued it, takes it when it resumes,
with every other request it held. Its slot counts until a window after the server answers a
request sent after it (a POST, or a read of the listing: what was queued before has been taken
by then), and at most three windows after it was given up. While the server answers nothing,
N such slots stop the sending: what it takes at once when it resumes is at most N, and no
further request follows for a window.

Sends are also spread at least `window / effective_count` apart (on a schedule, so that timer lag
does not accumulate): a fresh run starts at the steady rate, not with a burst of N at t = 0.

A shared key
------------
Other clients may spend the same key. Every answer's `X-RateLimit-Remaining` (r) is the server's
own count of its window: N - r requests, this one included. The part of them that is ours is at
least

    ours = 1 (this request, unless it was a 429)
         + our earlier requests answered before this one was sent and sent less than a window ago

(those certainly reached the server first and are still in its window; requests that overlapped
this one are left out, so `ours` can only be too small). The rest belongs to other clients:

    others = max(0, N - r - ours)
    effective_count = max(1, N - (the largest `others` seen in the last window))

`others` can only be too large, which makes us slower, never over the window; the largest of a
window's readings keeps a client that was briefly between two sends from looking gone. A 429
without the header means r = 0. Answers without the header leave the estimate as it was; with
no reading for a whole window, the last one drops by one per window (its clients may have
stopped). The sends of a resumed run's predecessor (`seed()`) count as others' for a window.

`effective_count` then caps our slots and sets the spacing, so we fill exactly what the others
leave: when the server says r = 0, effective_count equals our own count and the next send waits
for our oldest slot to expire. A key the others keep at a steady rate is shared without a 429;
when they speed up, the answers show it one request later. Server hints win: a `Retry-After`
on any answer (a 429 or a 503) holds every sender until it has passed; a 429 without one holds a
full window.

Every wait is bounded
---------------------
A hint is obeyed up to one window, never longer:

    hold = min(window, Retry-After)

A server counting a window of `window` seconds has forgotten every request of ours a window
later, so a longer hint is a confused server or some other limit (`Retry-After: 1e9`, a date in
the next century); waiting one window and asking again costs at most one more 429, and the
caller's attempts are limited. What `X-RateLimit-Remaining` implies is bounded the same way: it
only ever waits for slots that expire within a window, or for a window to pass. Seeded times
later than now (another clock's skew) count as now.
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

from batch.joggai.quota import RateLimit

Clock = Callable[[], float]
# How many windows after it was given up an unanswered request counts, at most: a server that
# answers nothing for that long (no listing read either) is down, not stalled.
_LOST_WINDOWS = 3
Sleep = Callable[[float], Awaitable[object]]


@dataclass(slots=True)
class LimiterStats:
    """What the limiter did, for summaries and benchmarks."""

    sent: int = 0
    max_in_window: int = 0  # most sends this limiter let out within any `window` seconds
    rate_limited: int = 0  # 429 answers observed
    held_by_remaining: int = 0  # answers with X-RateLimit-Remaining: 0
    most_others: int = 0  # the largest share of the window seen taken by other clients


class Slot:
    """One POST's place in the window; tell it what the server answered."""

    __slots__ = ("_limiter", "given_back", "lost", "refused", "sent")

    def __init__(self, limiter: SlidingWindowLimiter, sent: float) -> None:
        self._limiter = limiter
        self.sent = sent
        self.refused = False  # not counted in the window: a 429, or given back
        self.given_back = False  # nothing was sent: no server hint either
        self.lost = False  # sent, and no answer came: the server may take it later

    def observe(
        self,
        retry_after: float | None = None,
        rate_remaining: int | None = None,
        was_429: bool = False,
        *,
        answered: bool = True,
    ) -> None:
        """Feed the answer's rate hints back (before leaving the `async with`); `answered`
        False: the server's answer never came (see "A request whose answer never came")."""
        if not answered:
            self.lost = True
            return
        self.refused = was_429
        self._limiter._observe(self, retry_after, rate_remaining, was_429)

    def unused(self) -> None:
        """Nothing was sent after all: the place is given back at once."""
        self.refused = self.given_back = True


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
        self._lost: list[tuple[float, float]] = []  # (sent, counted until) of unanswered slots
        self._in_flight = 0
        self._next_spaced = -math.inf  # earliest next send by the spacing rule
        self._hold_until = -math.inf
        self._ours: deque[tuple[float, float]] = deque()  # (sent, answered), admitted, recent
        # (when, others) seen, newest last, each larger than every later one: a sliding maximum.
        self._others_seen: deque[tuple[float, int]] = deque()
        self._recent_sends: deque[float] = deque()
        self._last_sent = -math.inf
        self._turn = asyncio.Lock()  # FIFO: senders leave in the order they asked
        self._released = asyncio.Event()

    @property
    def effective_count(self) -> int:
        """The count currently enforced: N less what other clients hold of the server's window."""
        return self._effective(self._clock())

    @property
    def others(self) -> int:
        """Other clients' requests in the server's window, as its answers last showed."""
        return self._others_now(self._clock())

    def seed(self, times: Iterable[float], *, now: float | None = None) -> None:
        """Count earlier sends (answer times, preferably) as if this limiter had made them.

        `times` are on this limiter's clock, or on another clock (such as `time.time()` values
        from the state database) whose current reading is given as `now`.
        """
        shift = 0.0 if now is None else self._clock() - now
        latest = self._clock()
        for moment in times:
            answered = min(latest, moment + shift)  # a future time is another clock's skew
            bisect.insort(self._expiries, answered + self.rate.window)
            self._next_spaced = max(self._next_spaced, answered + self.rate.interval)
        self._expire(self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        """Wait for a place in the window, hold it while the request runs, then release it."""
        slot = Slot(self, await self._acquire())
        try:
            yield slot
        finally:
            self._release(slot)

    async def _acquire(self) -> float:
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
            return now

    def _wait(self, now: float) -> float | None:
        """Seconds until a send is allowed; None while only an answer can free a place."""
        self._expire(now)
        effective = self._effective(now)
        free = effective - self._in_flight
        if free <= 0:
            return None
        allowed = max(self._hold_until, self._next_spaced)
        must_expire = len(self._expiries) - (free - 1)
        if must_expire > 0:
            allowed = max(allowed, self._expiries[must_expire - 1])
        if self._others_now(now) > 0:
            # Wake when the others' largest share leaves the last window (or grows stale).
            when = self._others_seen[0][0]
            windows = math.floor((now - when) / self.rate.window) + 1
            allowed = min(allowed, max(now, when + windows * self.rate.window))
        return allowed - now

    def _take(self, now: float) -> None:
        self._in_flight += 1
        interval = self.rate.window / self._effective(now)
        # Late by less than an interval (timer lag): keep the schedule so lag does not add up.
        base = self._next_spaced if now - self._next_spaced < interval else now
        self._next_spaced = base + interval
        self._last_sent = now
        self.stats.sent += 1
        recent = self._recent_sends
        while recent and recent[0] <= now - self.rate.window:
            recent.popleft()
        recent.append(now)
        self.stats.max_in_window = max(self.stats.max_in_window, len(recent))

    def _release(self, slot: Slot) -> None:
        self._in_flight -= 1
        if slot.lost:
            until = self._clock() + _LOST_WINDOWS * self.rate.window
            bisect.insort(self._expiries, until)
            self._lost.append((slot.sent, until))
        elif not slot.refused:
            bisect.insort(self._expiries, self._clock() + self.rate.window)
        self._released.set()

    def heard_from_server(self, sent: float) -> None:
        """The server answered a request (any: a listing read too) sent at `sent` on this
        limiter's clock: see "A request whose answer never came"."""
        self._heard_after(sent, self._clock())

    def _heard_after(self, sent: float, now: float) -> None:
        """The server answered a request sent at `sent`: the unanswered ones sent before it
        were taken by now, and count a window from now (or less, as they did)."""
        for lost in [lost for lost in self._lost if lost[0] < sent]:
            self._lost.remove(lost)
            at = bisect.bisect_left(self._expiries, lost[1])
            if at < len(self._expiries) and self._expiries[at] == lost[1]:
                del self._expiries[at]
                bisect.insort(self._expiries, min(lost[1], now + self.rate.window))

    def _observe(
        self, slot: Slot, retry_after: float | None, rate_remaining: int | None, was_429: bool
    ) -> None:
        now = self._clock()
        window = self.rate.window
        self._heard_after(slot.sent, now)
        if was_429:
            self.stats.rate_limited += 1
        if was_429 or retry_after is not None:
            pause = window if retry_after is None else min(window, max(0.0, retry_after))
            self._hold_until = max(self._hold_until, now + pause)
        ours = self._ours
        while ours and ours[0][0] <= now - window:
            ours.popleft()
        if rate_remaining is not None or was_429:
            remaining = max(0, rate_remaining or 0)
            if remaining == 0:
                self.stats.held_by_remaining += 1
            mine = sum(1 for _, answered in ours if answered <= slot.sent) + (not was_429)
            others = max(0, self.rate.count - remaining - mine)
            seen = self._others_seen
            while seen and seen[-1][1] <= others:
                seen.pop()
            seen.append((now, others))
            if not was_429:  # after a 429, Retry-After says when to go on
                # Fewer places than when the last send left: space the next at the new rate.
                interval = window / self._effective(now)
                self._next_spaced = max(self._next_spaced, self._last_sent + interval)
            self.stats.most_others = max(self.stats.most_others, others)
        if not was_429:
            ours.append((slot.sent, now))

    def _others_now(self, now: float) -> int:
        """The most seen in the last window; with nothing seen in it, the latest less one per
        window since."""
        seen = self._others_seen
        while len(seen) > 1 and seen[0][0] <= now - self.rate.window:
            seen.popleft()
        if not seen:
            return 0
        when, most = seen[0]
        return max(0, most - math.floor((now - when) / self.rate.window))

    def _effective(self, now: float) -> int:
        return max(1, self.rate.count - self._others_now(now))

    def _expire(self, now: float) -> None:
        del self._expiries[: bisect.bisect_right(self._expiries, now)]
        self._lost = [lost for lost in self._lost if lost[1] > now]
