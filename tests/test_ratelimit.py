"""The sliding-window POST limiter, driven on virtual time (no real sleeping)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Coroutine
from typing import Any

import pytest

from batch.joggai.quota import RateLimit
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.sandbox.ratelimit import SlidingWindow

PER_MIN_20 = RateLimit(20, 60.0)


class VirtualTime:
    """A clock and a sleep for many tasks: time jumps to the next timer once every task waits."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, delay), self._seq, future))
        self._seq += 1
        await future

    async def run(self, *coros: Coroutine[Any, Any, Any]) -> list[Any]:
        tasks = [asyncio.create_task(coro) for coro in coros]
        while not all(task.done() for task in tasks):
            for _ in range(12):  # let every runnable task go until it blocks
                await asyncio.sleep(0)
            if self._timers:
                when, _, future = heapq.heappop(self._timers)
                self.now = max(self.now, when)
                if not future.cancelled():
                    future.set_result(None)
            elif not all(task.done() for task in tasks):
                for task in tasks:
                    task.cancel()
                raise AssertionError("deadlock: tasks wait and no timer is pending")
        return [task.result() for task in tasks]


def limiter_on(vt: VirtualTime, rate: RateLimit = PER_MIN_20) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(rate, clock=vt.clock, sleep=vt.sleep)


async def post(
    limiter: SlidingWindowLimiter,
    vt: VirtualTime,
    latency: float,
    log: list[tuple[float, float]],
    **hints: Any,
) -> None:
    """One POST: hold a slot for `latency` seconds and record (send, answer)."""
    async with limiter.slot() as slot:
        sent = vt.now
        await vt.sleep(latency)
        if hints:
            slot.observe(**hints)
        log.append((sent, vt.now))


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of `times` inside any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max(sum(1 for other in ordered if start <= other < start + window) for start in ordered)


@pytest.mark.anyio
async def test_21_sends_at_20_per_minute_never_share_a_window() -> None:
    """The 21st POST leaves a full window after the first one's answer, not before."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(*(post(limiter, vt, 0.3, log) for _ in range(21)))
    sends = sorted(send for send, _ in log)
    answers = sorted(answer for _, answer in log)
    assert len(sends) == 21
    assert sends[20] >= answers[0] + 60.0
    assert most_in_any_window(sends, 60.0) == 20
    assert limiter.stats.sent == 21
    assert limiter.stats.max_in_window == 20


@pytest.mark.anyio
async def test_sends_are_spread_at_the_steady_interval_from_the_start() -> None:
    """No opening burst: consecutive sends are at least window/count apart, the first at once."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(*(post(limiter, vt, 0.1, log) for _ in range(10)))
    sends = sorted(send for send, _ in log)
    assert sends[0] == 0.0
    gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert min(gaps) == pytest.approx(3.0)


@pytest.mark.anyio
async def test_seeded_sends_of_an_earlier_run_delay_the_first_send() -> None:
    """A resumed run does not burst into the previous run's window."""
    vt = VirtualTime(start=500.0)
    limiter = limiter_on(vt)
    # 20 answers 30 s ago, on a wall clock that reads 1_000_000 now.
    limiter.seed([1_000_000.0 - 30.0] * 20, now=1_000_000.0)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 0.1, log))
    assert log[0][0] == pytest.approx(530.0)


@pytest.mark.anyio
async def test_seed_on_the_limiters_own_clock_and_old_times_expire() -> None:
    """Seeded times older than a window do not count; recent ones do."""
    vt = VirtualTime(start=100.0)
    limiter = limiter_on(vt, RateLimit(2, 60.0))
    limiter.seed([10.0, 20.0, 90.0])  # the first two have expired already
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 0.1, log), post(limiter, vt, 0.1, log))
    sends = sorted(send for send, _ in log)
    # One place is free now-ish (after spacing from the seed at 90), the next after 90 + 60.
    assert sends[0] == pytest.approx(120.0)
    assert sends[1] == pytest.approx(150.0)


@pytest.mark.anyio
async def test_a_429_with_retry_after_holds_every_sender() -> None:
    """After a 429 nobody sends before Retry-After has passed, and the window is taken as full."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []

    async def rate_limited_first() -> None:
        await post(limiter, vt, 0.5, log, retry_after=45.0, rate_remaining=0, was_429=True)

    others = [post(limiter, vt, 0.5, log) for _ in range(5)]
    await vt.run(rate_limited_first(), *others)
    first_answer = min(answer for send, answer in log if send == 0.0)
    later_sends = sorted(send for send, _ in log if send > 0.0)
    # Sends that left before the 429 came back were already on their way (one, at t=3).
    held = [send for send in later_sends if send > first_answer]
    assert held
    assert min(held) >= first_answer + 45.0
    assert limiter.stats.rate_limited == 1
    assert limiter.stats.most_others == 20  # none of the full window was ours


@pytest.mark.anyio
async def test_a_429_without_retry_after_holds_a_full_window() -> None:
    """With no hint, the hold is one window."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log, was_429=True))
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[1][0] >= 1.0 + 60.0


@pytest.mark.anyio
async def test_others_seen_in_remaining_set_the_count_and_the_spacing() -> None:
    """Remaining 9 on our first POST: others hold 10 of 20, so we take 10, one every 6 s."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 0.1, log, rate_remaining=9))
    assert limiter.effective_count == 10
    await vt.run(*(post(limiter, vt, 0.1, log, rate_remaining=9 - i) for i in range(1, 10)))
    await vt.run(post(limiter, vt, 0.1, log, rate_remaining=0))
    sends = [send for send, _ in log]
    assert sends[:10] == pytest.approx([6.0 * i for i in range(10)])
    assert sends[10] == pytest.approx(60.1)  # the 11th waits for our first slot to expire


@pytest.mark.anyio
async def test_an_estimate_without_fresh_answers_gives_one_place_back_per_window() -> None:
    """Others seen once and never again: one window later the count grows by one a window."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 0.0, log, rate_remaining=9))
    assert limiter.effective_count == 10
    vt.now = 59.0
    assert limiter.effective_count == 10
    vt.now = 60.0
    assert limiter.effective_count == 11
    vt.now = 60.0 * 20
    assert limiter.effective_count == 20


@pytest.mark.anyio
async def test_remaining_zero_holds_the_next_send_until_the_oldest_slot_expires() -> None:
    """X-RateLimit-Remaining: 0 (someone else uses the key) waits for our oldest slot to expire."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log, rate_remaining=19))  # counted until 61.0
    await vt.run(post(limiter, vt, 1.0, log, rate_remaining=0))
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[1][0] == pytest.approx(3.0)
    assert log[2][0] == pytest.approx(61.0)
    assert limiter.stats.held_by_remaining == 1


@pytest.mark.anyio
async def test_remaining_zero_with_nothing_older_holds_a_window_from_now() -> None:
    """When the answering slot is the only one, it is the oldest: hold one window."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 2.0, log, rate_remaining=0))
    await vt.run(post(limiter, vt, 2.0, log))
    assert log[1][0] == pytest.approx(62.0)


@pytest.mark.anyio
async def test_retry_after_on_a_503_holds_everyone_without_slowing_down() -> None:
    """A Retry-After on a non-429 answer holds senders but keeps the count."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log, retry_after=20.0))
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[1][0] == pytest.approx(21.0)
    assert limiter.effective_count == 20


@pytest.mark.anyio
@pytest.mark.parametrize("was_429", [True, False])
async def test_a_huge_retry_after_holds_senders_for_one_window_at_most(was_429: bool) -> None:
    """Retry-After: 1e9 (on a 429 or any answer) holds the next send one window, not forever."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log, retry_after=1e9, rate_remaining=0, was_429=was_429))
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[1][0] <= 1.0 + 60.0


@pytest.mark.anyio
async def test_seeded_times_in_the_future_hold_no_longer_than_a_window() -> None:
    """A send time from a skewed clock counts as sent now: it delays by a window at most."""
    vt = VirtualTime(start=100.0)
    limiter = limiter_on(vt, RateLimit(1, 60.0))
    limiter.seed([1e9])
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[0][0] <= 100.0 + 60.0


@pytest.mark.anyio
async def test_a_429_frees_its_place_at_once() -> None:
    """A refused POST is not in the server's window: after Retry-After we may send again."""
    vt = VirtualTime()
    limiter = limiter_on(vt)
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log, retry_after=5.0, rate_remaining=0, was_429=True))
    assert limiter.effective_count == 1  # the full window is all the others'; one place left
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[1][0] == pytest.approx(6.0)


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_senders_never_put_more_than_n_arrivals_in_any_window(seed: int) -> None:
    """40 workers with random latency: no server-side window sees more than N arrivals."""
    rng = random.Random(seed)
    vt = VirtualTime()
    rate = RateLimit(10, 6.0)
    limiter = limiter_on(vt, rate)
    arrivals: list[float] = []
    log: list[tuple[float, float]] = []

    async def worker() -> None:
        for _ in range(3):
            async with limiter.slot():
                sent = vt.now
                upstream = rng.uniform(0.0, 0.4)
                await vt.sleep(upstream)
                arrivals.append(vt.now)
                await vt.sleep(rng.uniform(0.0, 0.4))
                log.append((sent, vt.now))

    await vt.run(*(worker() for _ in range(40)))
    assert len(arrivals) == 120
    assert most_in_any_window(arrivals, 6.0) <= 10
    assert most_in_any_window([send for send, _ in log], 6.0) <= 10
    assert limiter.stats.max_in_window <= 10


@pytest.mark.anyio
async def test_quota_efficiency_with_50_to_400_ms_latency_is_at_least_99_percent() -> None:
    """At a scaled 600/min over four windows, at least 0.99 of the allowed POSTs are sent."""
    rng = random.Random(11)
    vt = VirtualTime()
    rate = RateLimit(600, 60.0)
    limiter = limiter_on(vt, rate)
    duration = 240.0
    sends: list[float] = []

    async def worker() -> None:
        while vt.now < duration:
            async with limiter.slot():
                if vt.now >= duration:
                    return
                sends.append(vt.now)
                await vt.sleep(rng.uniform(0.05, 0.4))

    await vt.run(*(worker() for _ in range(16)))
    allowed = rate.count * duration / rate.window
    assert len(sends) / allowed >= 0.99
    assert most_in_any_window(sends, 60.0) <= 600


@pytest.mark.anyio
async def test_a_failed_request_still_counts_for_a_window_after_giving_up() -> None:
    """An exception inside the slot releases it, and it stays counted for a window."""
    vt = VirtualTime()
    limiter = limiter_on(vt, RateLimit(1, 60.0))

    async def failing() -> None:
        async with limiter.slot():
            await vt.sleep(5.0)
            raise RuntimeError("connection dropped")

    with pytest.raises(RuntimeError):
        await vt.run(failing())
    log: list[tuple[float, float]] = []
    await vt.run(post(limiter, vt, 1.0, log))
    assert log[0][0] == pytest.approx(65.0)


@pytest.mark.anyio
async def test_requests_a_stalled_server_takes_at_once_never_overfill_its_window() -> None:
    """A server stalled for 100 s takes every request it held when it resumes. The client gave
    up on each (no answer): they counted a window from giving up, so it went on sending into
    the stall, and the server took 9 at once with a limit of 5, then refused the next. Until
    the server answers something sent after them (a listing read here, at 110 s), they count:
    at most 5 reach it at once, and the next leaves a window after they were taken."""
    vt = VirtualTime()
    limiter = limiter_on(vt, RateLimit(5, 60.0))
    resumed = 100.0
    arrivals: list[float] = []

    async def one() -> None:
        async with limiter.slot() as slot:
            sent = vt.now
            if sent < resumed:  # held by the stalled server; the client gives up after 5 s
                await vt.sleep(5.0)
                arrivals.append(resumed)
                slot.observe(answered=False)
            else:
                arrivals.append(sent)
                await vt.sleep(0.1)
                slot.observe()

    async def listing_read_after_the_stall() -> None:
        await vt.sleep(resumed + 10.0)
        limiter.heard_from_server(resumed + 9.0)

    await vt.run(listing_read_after_the_stall(), *(one() for _ in range(12)))
    assert most_in_any_window(arrivals, 60.0) <= 5
    assert sorted(arrivals)[5] >= resumed + 60.0


@pytest.mark.anyio
async def test_a_sender_cancelled_while_waiting_takes_no_place() -> None:
    """Cancelling a waiting sender leaves the limiter's count untouched."""
    vt = VirtualTime()
    limiter = limiter_on(vt, RateLimit(1, 60.0))
    log: list[tuple[float, float]] = []

    async def cancel_waiter() -> None:
        waiter = asyncio.create_task(post(limiter, vt, 1.0, log))
        await vt.sleep(10.0)
        waiter.cancel()

    await vt.run(post(limiter, vt, 1.0, log), cancel_waiter())
    await vt.run(post(limiter, vt, 1.0, log))
    assert [send for send, _ in log] == [pytest.approx(0.0), pytest.approx(61.0)]
    assert limiter.stats.sent == 2


@pytest.mark.anyio
async def test_real_asyncio_sleep_works_with_a_tiny_window() -> None:
    """With the default clock and sleep, a 3-per-0.15 s limiter spaces real sends."""
    limiter = SlidingWindowLimiter(RateLimit(3, 0.15))
    loop = asyncio.get_running_loop()
    sends: list[float] = []

    async def one() -> None:
        async with limiter.slot():
            sends.append(loop.time())

    await asyncio.gather(*(one() for _ in range(4)))
    assert sends[3] - sends[0] >= 0.15 - 0.002
    assert sends[1] - sends[0] >= 0.05 - 0.002


class SharedKey:
    """The sandbox's own sliding window (`batch.sandbox.ratelimit`) on virtual time: one key,
    one-way latencies of 1-25 ms, and a record of who got in when."""

    def __init__(self, vt: VirtualTime, rate: RateLimit, seed: int) -> None:
        self.vt = vt
        self.window = SlidingWindow(rate)
        self.rng = random.Random(seed)
        self.admitted: dict[str, list[float]] = {"us": [], "other": []}
        self.refused = {"us": 0, "other": 0}

    async def post(self, who: str) -> tuple[bool, int, int]:
        """(admitted, X-RateLimit-Remaining, Retry-After) as the sandbox answers."""
        await self.vt.sleep(self.rng.uniform(0.001, 0.025))
        admission = self.window.admit("sk-shared", self.vt.now)
        if admission.admitted:
            self.admitted[who].append(self.vt.now)
        else:
            self.refused[who] += 1
        await self.vt.sleep(self.rng.uniform(0.001, 0.025))
        return admission.admitted, admission.remaining, admission.retry_after


async def jogg_batch(limiter: SlidingWindowLimiter, key: SharedKey, until: float) -> None:
    """One of the runner's workers: POST through the limiter and feed the answer back."""
    while key.vt.now < until:
        async with limiter.slot() as slot:
            if key.vt.now >= until:
                return
            admitted, remaining, retry_after = await key.post("us")
            slot.observe(retry_after or None, remaining, not admitted)


async def other_client(key: SharedKey, start: float, until: float, period: float = 6.0) -> None:
    """Another client on the key: one POST, then `period` seconds' sleep; a 429 is dropped."""
    await key.vt.sleep(start)
    while key.vt.now < until:
        await key.post("other")
        await key.vt.sleep(period)


def between(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_alone_on_the_server_window_uses_the_whole_quota_and_is_never_refused(
    seed: int,
) -> None:
    """Alone for 10 minutes: no 429, never 21 in a window, no burst, at least 0.99 of 200."""
    vt = VirtualTime()
    key = SharedKey(vt, PER_MIN_20, seed)
    limiter = limiter_on(vt)
    await vt.run(*(jogg_batch(limiter, key, 600.0) for _ in range(4)))
    ours = key.admitted["us"]
    assert key.refused["us"] == 0
    assert most_in_any_window(ours, 60.0) == 20
    # Sent 3 s apart; arrivals differ by at most the 1-25 ms latency jitter.
    assert min(later - earlier for earlier, later in itertools.pairwise(ours)) >= 3.0 - 0.025
    assert between(ours, 0.0, 600.0) / 200 >= 0.99
    assert limiter.stats.most_others == 0


@pytest.mark.anyio
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
async def test_beside_a_10_per_minute_client_it_takes_what_is_left_with_few_429s(
    seed: int,
) -> None:
    """Joining a key another client spends at 10/min: >= 0.9 of the rest, <= 3 x 429, 10 min."""
    vt = VirtualTime()
    key = SharedKey(vt, PER_MIN_20, seed)
    limiter = limiter_on(vt)
    start, end = 60.0, 660.0  # the other client has sent for a window when we start

    async def later() -> None:
        await vt.sleep(start)
        await asyncio.gather(*(jogg_batch(limiter, key, end) for _ in range(4)))

    await vt.run(other_client(key, 0.0, end), later())
    ours = between(key.admitted["us"], start, end)
    theirs = between(key.admitted["other"], start, end)
    assert theirs >= 95  # the other client keeps (about) its 10/min: 6 s plus latency apart
    assert ours / (200 - theirs) >= 0.9
    assert key.refused["us"] <= 3
    assert most_in_any_window(key.admitted["us"], 60.0) <= 20


@pytest.mark.anyio
async def test_when_the_other_client_stops_the_whole_window_comes_back() -> None:
    """The other client stops after 3 minutes: within two windows we send at 20/min again."""
    vt = VirtualTime()
    key = SharedKey(vt, PER_MIN_20, 7)
    limiter = limiter_on(vt)

    async def later() -> None:
        await vt.sleep(60.0)
        await asyncio.gather(*(jogg_batch(limiter, key, 600.0) for _ in range(4)))

    await vt.run(other_client(key, 0.0, 240.0), later())
    assert between(key.admitted["us"], 60.0, 240.0) <= 31  # about 10/min while shared
    assert between(key.admitted["us"], 360.0, 600.0) >= 79  # 20/min again, four windows
    assert key.refused["us"] == 0
