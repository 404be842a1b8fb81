"""Receiving JoggAI webhooks: signature check, payload parsing, and the listener app.

The listener updates the same state as `status` polling, through `batch.status.VideoStatusSink`.
It answers within JoggAI's 5 s: 401 for a bad or missing `X-Webhook-Signature` (nothing changes),
400 for a body that is not a video event, 200 otherwise. JoggAI retries anything else, so the
same delivery can arrive twice: events are de-duplicated on `event_id` and applied once.

Exposing it. JoggAI only calls HTTPS URLs, and `jogg-batch listen` speaks plain HTTP, so put it
behind something that terminates TLS:
- a reverse proxy on a host with a certificate (Caddy: `reverse_proxy 127.0.0.1:8787`; nginx:
  `location /webhook { proxy_pass http://127.0.0.1:8787; }`), or
- a tunnel for a laptop or a private network (`cloudflared tunnel --url http://localhost:8787`,
  `ngrok http 8787`), which gives a public https URL.
The listener accepts POST on `/` and on `/webhook`.

Registering it. Either once per account, `POST /v2/endpoint` with
`{"url": "https://<host>/webhook", "status": "enabled",
"events": ["generated_product_video_success", "generated_product_video_failed"]}`
(add `generated_video_success`/`_failed` too: whether v2 renders also fire the legacy pair is not
documented, and duplicates are harmless). The response carries the endpoint's `secret`; give it to
the listener as `JOGG_WEBHOOK_SECRET` or `--secret-file`. Or per request, `webhook_url` in the
create-video body; how those callbacks are signed is not documented, so prefer the endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from batch.errors import ConfigError
from batch.status import VideoStatus, VideoStatusSink, VideoUpdate, video_update

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webhook-Signature"
SECRET_ENV = "JOGG_WEBHOOK_SECRET"  # noqa: S105 (the variable name, not a secret)
VIDEO_EVENTS = frozenset(
    {
        "generated_product_video_success",
        "generated_product_video_failed",
        "generated_video_success",  # legacy (v1 projects, data.project_id)
        "generated_video_failed",
    }
)


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """True when `signature` is the hex HMAC-SHA256 of the raw body keyed with `secret`."""
    if not signature or not secret:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def load_secret(secret_file: Path | None) -> str:
    """The endpoint secret from `secret_file` (first line), else from $JOGG_WEBHOOK_SECRET.

    Never taken as a command-line value: it would show in `ps` and in shell history.
    """
    if secret_file is not None:
        try:
            lines = secret_file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ConfigError(f"{secret_file}: cannot read the webhook secret: {error}") from None
        secret = lines[0].strip() if lines else ""
        source = str(secret_file)
    else:
        secret = os.environ.get(SECRET_ENV, "").strip()
        source = f"${SECRET_ENV}"
    if not secret:
        raise ConfigError(
            f"no webhook secret in {source}: set {SECRET_ENV} or pass --secret-file with the "
            "secret JoggAI returned when the endpoint was registered"
        )
    return secret


@dataclass(frozen=True, slots=True)
class VideoEvent:
    """One webhook delivery about one video, in either the v2 or the legacy shape."""

    event_id: str | None
    event: str | None
    video_id: str
    status: VideoStatus
    data: Mapping[str, object]

    def to_update(self, seen_at: float) -> VideoUpdate:
        """The same record a status poll produces."""
        return video_update(self.video_id, self.data, seen_at, self.status)


def parse_event(payload: object) -> VideoEvent:
    """A decoded webhook body -> VideoEvent; ValueError when it is not a video event.

    The id is `data.video_id` (v2) or `data.project_id` (legacy). The status comes from the event
    name (`..._success`, `..._failed`) because the legacy payload has none, else from `data.status`.
    """
    if not isinstance(payload, Mapping):
        raise ValueError("the body is not a JSON object")
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise ValueError("the body has no `data` object")
    video_id = data.get("video_id") or data.get("project_id")
    if not isinstance(video_id, str | int) or isinstance(video_id, bool):
        raise ValueError("`data` has no video_id or project_id")
    event = payload.get("event")
    event_name = event if isinstance(event, str) else None
    status: VideoStatus
    if event_name and event_name.endswith("_success"):
        status = "completed"
    elif event_name and event_name.endswith("_failed"):
        status = "failed"
    elif "status" in data:
        status = video_update(str(video_id), data, 0.0).status
    else:
        raise ValueError("neither the event name nor `data.status` gives a status")
    event_id = payload.get("event_id")
    return VideoEvent(
        event_id=str(event_id) if event_id not in (None, "") else None,
        event=event_name,
        video_id=str(video_id),
        status=status,
        data=data,
    )


@dataclass(slots=True)
class ListenerStats:
    """What the listener has seen since it started (logged, and read by tests)."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    malformed: int = 0


def create_listener_app(
    sink: VideoStatusSink, secret: str, *, clock: Callable[[], float] = time.time
) -> Starlette:
    """The ASGI app behind `jogg-batch listen`; `app.state.stats` holds a ListenerStats."""
    stats = ListenerStats()

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
            stats.rejected += 1
            log.warning("webhook rejected: bad or missing signature")
            return JSONResponse({"error": "bad or missing signature"}, status_code=401)
        event_name = request.headers.get("X-Webhook-Event")
        try:
            payload = json.loads(body)
            if isinstance(payload, Mapping) and isinstance(payload.get("event"), str):
                event_name = payload["event"]
            if event_name is not None and event_name not in VIDEO_EVENTS:
                # Other events of the account (avatars, images...) are not ours: acknowledge them
                # so JoggAI does not retry.
                stats.ignored += 1
                return JSONResponse({"ok": True, "ignored": str(event_name)})
            event = parse_event(payload)
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            stats.malformed += 1
            log.warning("webhook refused: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        # The sink is called on the event loop, not in a thread pool: a SQLite connection belongs
        # to the thread that opened it, and these calls are one small transaction each.
        if event.event_id is not None and not sink.claim_event(event.event_id):
            stats.duplicates += 1
            log.info("webhook %s for video %s is a duplicate", event.event_id, event.video_id)
            return JSONResponse({"ok": True, "duplicate": True})
        changed = sink.record_video_status(event.to_update(clock()))
        stats.applied += 1
        log.info("webhook: video %s %s", event.video_id, event.status)
        return JSONResponse({"ok": True, "changed": changed})

    routes = [Route(path, receive, methods=["POST"]) for path in ("/", "/webhook")]
    app = Starlette(routes=routes)
    app.state.stats = stats
    return app
