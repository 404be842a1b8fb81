"""The sandbox's memory: accepted renders, API-created products, the credit ledger and counters.

Render state is never stored as "done": it is derived from the clock on every read
(`processing` until received_at + render_seconds, then `completed` or `failed`, the outcome
decided from the seeded RNG when the render was accepted). That keeps the in-process app
(no lifespan, no background task) truthful under a fake clock.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from batch.sandbox.catalogs import SEEDED_PRODUCTS, encode_product_id
from batch.sandbox.config import SandboxConfig

RenderStatus = Literal["processing", "completed", "failed"]
RENDER_ERROR = {"code": 50000, "message": "render failed: the sandbox's render farm gave up"}


@dataclass(slots=True)
class Video:
    video_id: str
    product_id: str
    name: str
    payload: dict[str, Any]
    received_at: float
    length: int
    will_fail: bool
    base_url: str  # where this sandbox was reached, for media links
    webhook_url: str | None
    webhook_sent: bool = False

    def status(self, now: float, render_seconds: float) -> RenderStatus:
        if now < self.received_at + render_seconds:
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
        }


@dataclass(slots=True)
class Counts:
    rejected: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    faulted: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "rejected": {str(code): n for code, n in sorted(self.rejected.items())},
            "rate_limited": self.rate_limited,
            "faulted": {
                name: self.faulted[name] for name in ("reset", "stall", "bad_gateway", "fail")
            },
        }


class Store:
    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._ids = random.Random(f"{config.seed}:ids")
        self._renders = random.Random(f"{config.seed}:renders")
        self.seeded_products = {product_id: name for product_id, name in SEEDED_PRODUCTS}
        self.clear()

    def clear(self) -> None:
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

    def add_video(
        self, payload: dict[str, Any], received_at: float, base_url: str, webhook_url: str | None
    ) -> Video:
        """Record an accepted render and charge its credit (the caller checked the balance)."""
        video = Video(
            video_id=self.new_hex_id(),
            product_id=payload["product_id"],
            name=payload["video_spec"].get("name", ""),
            payload=payload,
            received_at=received_at,
            length=int(payload["video_spec"]["length"]),
            will_fail=self._renders.random() < self._config.render_failure_rate,
            base_url=base_url,
            webhook_url=webhook_url,
        )
        self.videos[video.video_id] = video
        self.credits_left -= 1
        return video

    def status_of(self, video: Video) -> RenderStatus:
        return video.status(self._config.clock(), self._config.render_seconds)

    def inspection(self) -> dict[str, Any]:
        return {
            "submissions": [video.submission() for video in self.videos.values()],
            "products": list(self.products.values()),
            "counts": self.counts.as_json(),
            "credits_left": self.credits_left,
            "webhooks": self.webhook_log,
        }
