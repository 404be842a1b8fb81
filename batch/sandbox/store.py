"""The sandbox's memory: accepted renders, API-created products, the credit ledger and counters.

Render state is never stored as "done": it is derived from the clock on every read
(`processing` until created_at + render_seconds, then `completed` or `failed`, the outcome
decided from the seeded RNG when the render was accepted). Late commits work the same way: a
deferred create waits in `pending` until its commit time, and `settle()` (called before every
request is handled, and every few milliseconds by the served app's background task) records and
charges it with created_at = its commit time. That keeps the in-process app (no lifespan, no
background task) truthful under a fake clock.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from batch.sandbox.catalogs import SEEDED_PRODUCTS, encode_product_id
from batch.sandbox.config import SandboxConfig, parse_listing_title
from batch.sandbox.validation import Rejected
from batch.vocabulary import Code

RenderStatus = Literal["processing", "completed", "failed"]
NO_CREDIT_MSG = "Insufficient credit: top up to create videos"
RENDER_ERROR = {"code": 50000, "message": "render failed: the sandbox's render farm gave up"}


@dataclass(slots=True)
class Video:
    video_id: str
    product_id: str
    name: str
    payload: dict[str, Any]
    received_at: float  # when the create request arrived
    created_at: float  # when it was committed (recorded and charged); later for a late commit
    length: int
    will_fail: bool
    base_url: str  # where this sandbox was reached, for media links
    webhook_url: str | None
    fault: str | None = None  # the fault that hit its create after the commit, if any
    webhook_sent: bool = False

    def status(self, now: float, render_seconds: float) -> RenderStatus:
        if now < self.created_at + render_seconds:
            return "processing"
        return "failed" if self.will_fail else "completed"

    @property
    def video_url(self) -> str:
        return f"{self.base_url}/_sandbox/media/{self.video_id}.mp4"

    @property
    def cover_url(self) -> str:
        return f"{self.base_url}/_sandbox/media/{self.video_id}.jpg"

    @property
    def duration(self) -> float:
        return round(self.length * 1.2, 1)  # real renders overshoot the requested length

    def submission(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "product_id": self.product_id,
            "name": self.name,
            "payload": self.payload,
            "received_at": self.received_at,
            "created_at": self.created_at,
            "fault": self.fault,
        }


@dataclass(slots=True)
class PendingCreate:
    """A validated create that a late-commit fault holds back until `commit_at`."""

    payload: dict[str, Any]
    received_at: float
    commit_at: float
    base_url: str
    webhook_url: str | None
    outcome: Video | Rejected | None = None  # set by Store.settle (or Store.clear)

    def inspection(self) -> dict[str, Any]:
        return {
            "product_id": self.payload["product_id"],
            "name": self.payload["video_spec"].get("name", ""),
            "received_at": self.received_at,
            "commit_at": self.commit_at,
        }


FAULT_NAMES = ("reset", "stall", "bad_gateway", "fail", "commit_then_error", "late_commit")


@dataclass(slots=True)
class Counts:
    rejected: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    faulted: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "rejected": {str(code): n for code, n in sorted(self.rejected.items())},
            "rate_limited": self.rate_limited,
            "faulted": {name: self.faulted[name] for name in FAULT_NAMES},
        }


class Store:
    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        # Ids are not seeded (faults are, to replay): an account never gives one twice, and a
        # ledger kept from one sandbox to the next took a new render for another row's.
        self._ids = random.Random()
        self._renders = random.Random(f"{config.seed}:renders")
        self.seeded_products = {product_id: name for product_id, name in SEEDED_PRODUCTS}
        self._titles = parse_listing_title(config.listing_title)
        self.pending: list[PendingCreate] = []
        self.clear()

    def clear(self) -> None:
        for deferred in self.pending:
            deferred.outcome = Rejected(Code.SYSTEM, "System error: the sandbox was reset")
        self.pending = []
        self.videos: dict[str, Video] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.counts = Counts()
        self.credits_left = self._config.credits
        self.webhook_log: list[dict[str, Any]] = []

    def product_exists(self, product_id: str) -> bool:
        return product_id in self.seeded_products or product_id in self.products

    def new_hex_id(self) -> str:
        return f"{self._ids.getrandbits(128):032x}"

    def add_product(self, fields: dict[str, Any]) -> dict[str, Any]:
        product_id = encode_product_id(self._ids.randrange(100_000_000, 2_000_000_000))
        while self.product_exists(product_id):
            product_id = encode_product_id(self._ids.randrange(100_000_000, 2_000_000_000))
        product = {"product_id": product_id, **fields}
        self.products[product_id] = product
        return product

    def product_name(self, product_id: str) -> str:
        seeded = self.seeded_products.get(product_id)
        return seeded if seeded is not None else str(self.products[product_id]["name"])

    def title_of(self, video: Video) -> str:
        """The `title` the API shows for a video, as `listing_title` configures it."""
        return self._titles.show(video.name, self.product_name(video.product_id))

    def add_video(
        self,
        payload: dict[str, Any],
        received_at: float,
        base_url: str,
        webhook_url: str | None,
        *,
        created_at: float | None = None,
        fault: str | None = None,
    ) -> Video:
        """Record an accepted render and charge its credit (the caller checked the balance)."""
        video = Video(
            video_id=self.new_hex_id(),
            product_id=payload["product_id"],
            name=payload["video_spec"].get("name", ""),
            payload=payload,
            received_at=received_at,
            created_at=received_at if created_at is None else created_at,
            fault=fault,
            length=int(payload["video_spec"]["length"]),
            will_fail=self._renders.random() < self._config.render_failure_rate,
            base_url=base_url,
            webhook_url=webhook_url,
        )
        self.videos[video.video_id] = video
        self.credits_left -= 1
        return video

    def defer_video(
        self,
        payload: dict[str, Any],
        received_at: float,
        commit_at: float,
        base_url: str,
        webhook_url: str | None,
    ) -> PendingCreate:
        """Hold a validated create back; `settle()` commits it once the clock reaches commit_at."""
        deferred = PendingCreate(payload, received_at, commit_at, base_url, webhook_url)
        self.pending.append(deferred)
        return deferred

    def settle(self) -> None:
        """Commit every deferred create that is due, in commit order, at its commit time."""
        now = self._config.clock()
        due = sorted((d for d in self.pending if d.commit_at <= now), key=lambda d: d.commit_at)
        if not due:
            return
        self.pending = [d for d in self.pending if d.commit_at > now]
        for deferred in due:
            if self.credits_left < 1:
                self.counts.rejected[int(Code.NO_CREDIT)] += 1
                deferred.outcome = Rejected(Code.NO_CREDIT, NO_CREDIT_MSG)
                continue
            deferred.outcome = self.add_video(
                deferred.payload,
                deferred.received_at,
                deferred.base_url,
                deferred.webhook_url,
                created_at=deferred.commit_at,
                fault="late_commit",
            )

    def status_of(self, video: Video) -> RenderStatus:
        return video.status(self._config.clock(), self._config.render_seconds)

    def inspection(self) -> dict[str, Any]:
        return {
            "submissions": [video.submission() for video in self.videos.values()],
            "pending": [deferred.inspection() for deferred in self.pending],
            "products": list(self.products.values()),
            "counts": self.counts.as_json(),
            "credits_left": self.credits_left,
            "webhooks": self.webhook_log,
        }
