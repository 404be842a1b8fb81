"""The rate limiter of a worker that shares its state (and so its key) with other workers: the
window is the fleet's, kept in the state (batch.store.fleet), not this process's memory.

It keeps `SlidingWindowLimiter`'s interface and guarantee; only where the sends are counted
changes. Within this process, senders still take their turn in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from batch.joggai.quota import RateLimit
from batch.joggai.ratelimit import Sleep, SlidingWindowLimiter, Slot
from batch.store import SendRule, StateStore


class FleetSlot(Slot):
    """A slot whose answer is recorded in the state for every worker to see."""

    __slots__ = ("rate_remaining", "retry_after", "send_id")

    def __init__(self, limiter: FleetLimiter, send_id: int, sent: float) -> None:
        super().__init__(limiter, sent)
        self.send_id = send_id
        self.retry_after: float | None = None
        self.rate_remaining: int | None = None


class FleetLimiter(SlidingWindowLimiter):
    """`async with limiter.slot() as slot:` around each POST, as with SlidingWindowLimiter."""

    def __init__(
        self, rate: RateLimit, state: StateStore, rule: SendRule, *, sleep: Sleep = asyncio.sleep
    ) -> None:
        super().__init__(rate, sleep=sleep)
        self.state = state
        self.rule = rule

    def seed(self, times: Iterable[float], *, now: float | None = None) -> None:
        """Nothing to seed: every worker's earlier sends are in the state already."""

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Slot]:
        async with self._turn:
            while True:
                send_id, wait = self.state.take_send(self.rule)
                if send_id is not None:
                    break
                await self._sleep(wait)
        slot = FleetSlot(self, send_id, self._clock())
        self.stats.sent += 1
        try:
            yield slot
        finally:
            if slot.given_back:
                self.state.give_back_send(slot.send_id)
            else:
                self.state.answer_send(
                    self.rule,
                    slot.send_id,
                    refused=slot.refused,
                    retry_after=slot.retry_after,
                    remaining=slot.rate_remaining,
                )

    def _observe(
        self, slot: Slot, retry_after: float | None, rate_remaining: int | None, was_429: bool
    ) -> None:
        assert isinstance(slot, FleetSlot)
        slot.retry_after = retry_after
        slot.rate_remaining = rate_remaining
        if was_429:
            self.stats.rate_limited += 1
