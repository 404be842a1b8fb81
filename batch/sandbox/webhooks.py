"""Webhook delivery for renders that asked for one (`webhook_url` in the create body).

Renders become final lazily (see store.py), so a background task started in the app's lifespan
looks every 100 ms for newly final renders and POSTs the v2 payload
`{event_id, event, timestamp, data{video_id, status, video_url, cover_url, duration | error}}`
with `X-Webhook-Event`, `X-Webhook-Signature` (lowercase hex HMAC-SHA256 of the exact body bytes,
keyed with the webhook secret) and `User-Agent: JoggAI-Webhook/2.0`. A non-2xx answer or a
transport error is retried up to `webhook_retries` times, `webhook_retry_seconds` apart. With
`webhook_duplicates` each event is delivered twice (same event_id), as JoggAI warns can happen.
Only loopback targets are called; any other URL is logged and skipped, never contacted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from typing import Any

import httpx

from batch.sandbox.config import SandboxConfig
from batch.sandbox.store import RENDER_ERROR, Store, Video
from batch.sandbox.validation import is_loopback_url

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
TIMEOUT_SECONDS = 5.0  # JoggAI expects a 2xx within 5 s


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_payload(video: Video, failed: bool, event_id: str, timestamp: int) -> dict[str, Any]:
    data: dict[str, Any] = {"video_id": video.video_id}
    if failed:
        data.update(status="failed", error=dict(RENDER_ERROR))
    else:
        data.update(
            status="completed",
            video_url=video.video_url,
            cover_url=video.cover_url,
            duration=video.duration,
        )
    event = "generated_product_video_failed" if failed else "generated_product_video_success"
    return {"event_id": event_id, "event": event, "timestamp": timestamp, "data": data}


class WebhookSender:
    def __init__(self, config: SandboxConfig, store: Store) -> None:
        self._config = config
        self._store = store
        self._events = random.Random(f"{config.seed}:events")
        self._deliveries: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled: hand every newly final render with a webhook_url to a delivery task."""
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            try:
                while True:
                    self._dispatch(client)
                    await asyncio.sleep(POLL_SECONDS)
            finally:
                for task in self._deliveries:
                    task.cancel()
                await asyncio.gather(*self._deliveries, return_exceptions=True)

    def _dispatch(self, client: httpx.AsyncClient) -> None:
        for video in list(self._store.videos.values()):
            if video.webhook_url is None or video.webhook_sent:
                continue
            status = self._store.status_of(video)
            if status == "processing":
                continue
            video.webhook_sent = True
            task = asyncio.create_task(self._deliver(client, video, status == "failed"))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, client: httpx.AsyncClient, video: Video, failed: bool) -> None:
        assert video.webhook_url is not None
        payload = event_payload(
            video, failed, f"{self._events.getrandbits(128):032x}", int(self._config.clock())
        )
        entry: dict[str, Any] = {
            "video_id": video.video_id,
            "event_id": payload["event_id"],
            "event": payload["event"],
            "url": video.webhook_url,
            "attempts": [],
            "delivered": 0,
        }
        self._store.webhook_log.append(entry)
        if not is_loopback_url(video.webhook_url):
            log.info("webhook for %s not sent: %s is not a loopback address",
                        video.video_id, video.webhook_url)  # fmt: skip
            entry["refused"] = True
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": payload["event"],
            "X-Webhook-Signature": sign(body, self._config.webhook_secret),
            "User-Agent": "JoggAI-Webhook/2.0",
        }
        for _ in range(2 if self._config.webhook_duplicates else 1):
            if await self._post_with_retries(client, video.webhook_url, body, headers, entry):
                entry["delivered"] += 1

    async def _post_with_retries(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: bytes,
        headers: dict[str, str],
        entry: dict[str, Any],
    ) -> bool:
        for attempt in range(self._config.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(self._config.webhook_retry_seconds)
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                entry["attempts"].append(type(error).__name__)
                continue
            entry["attempts"].append(response.status_code)
            if response.is_success:
                return True
        log.warning("webhook %s to %s gave up after %d attempts",
                    entry["event_id"], url, len(entry["attempts"]))  # fmt: skip
        return False
