"""Receiving JoggAI webhooks: signature check, payload parsing, and the listener app.

The listener updates the same state as `status` polling, through
`batch.follow.polling.VideoStatusSink`. It answers within JoggAI's 5 s: 401 for a bad or missing
`X-Webhook-Signature` (nothing changes), 400 for a body that is not a video event, 200 otherwise.
JoggAI retries anything else, so the same delivery can arrive twice: events are de-duplicated on
`event_id` (on a SHA-256 of the body when there is none) and applied once. A signed event whose
`timestamp` (in seconds, milliseconds or microseconds: `event_time`) lies more than `max_age`
(5 min) from now is a replay or a badly late retry: acknowledged (200) and ignored. Whatever the
source, a final status (completed, failed) never changes again; the state store enforces that.

A signed event comes from whoever holds the endpoint secret, JoggAI's operator or not, and its
text (an error message, a URL) may echo the API key or the secret itself. Every string of a
signed body, keys included, is scrubbed of both (`Secret.scrub`, as the client scrubs the API's
answers) before anything is parsed, stored or logged; the API key when the listener is given it
(`listen` reads JOGG_API_KEY or api.key_file when set).

Anyone can reach the listener, so it bounds what an unsigned client can cost (`ListenerLimits`):
- the body is streamed and capped: a Content-Length over `max_body` (1 MiB; JoggAI's events are
  a few hundred bytes) is answered 413 before any of it is read, a longer chunked body as soon
  as it passes the cap; memory per request stays near the cap;
- a client has `header_timeout` seconds to send each request's headers (uvicorn has no such
  limit; `_DeadlineH11` adds it) and `body_timeout` seconds for its body (408 after that);
  whatever it still sends after a 413 or 408 is read and dropped until that deadline closes the
  connection;
- headers over 16 KiB are refused (400), idle keep-alive connections close after
  `keep_alive` seconds, and past `concurrency` open connections new requests get 503.

Exposing it. JoggAI only calls HTTPS URLs, and `jogg-batch listen` speaks plain HTTP, so put it
behind something that terminates TLS:
- a reverse proxy on a host with a certificate (Caddy: `reverse_proxy 127.0.0.1:8787`; nginx:
  `location /webhook { proxy_pass http://127.0.0.1:8787; }`), or
- a tunnel for a laptop or a private network (`cloudflared tunnel --url http://localhost:8787`,
  `ngrok http 8787`), which gives a public https URL.
The listener accepts POST on `/` and on `/webhook`. Give the proxy limits of its own, tighter
than or equal to the listener's, so abuse stops at the edge: nginx `client_max_body_size 1m;
client_header_timeout 10s; client_body_timeout 10s; keepalive_timeout 5s; limit_conn` (per
address); Caddy `request_body { max_size 1MB }` and `servers { timeouts { read_header 10s
read_body 10s idle 5s } }`. Proxies rewrite the peer address: the listener logs nothing per
address, so no `--forwarded-allow-ips` is needed.

Registering it. Either once per account, `POST /v2/endpoint` with
`{"url": "https://<host>/webhook", "status": "enabled",
"events": ["generated_product_video_success", "generated_product_video_failed"]}`
(add `generated_video_success`/`_failed` too: whether v2 renders also fire the legacy pair is not
documented, and duplicates are harmless). The response carries the endpoint's `secret`; give it to
the listener as `JOGG_WEBHOOK_SECRET` or `--secret-file`. Or per request, `webhook_url` in the
create-video body; how those callbacks are signed is not documented, so prefer the endpoint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from batch import untrusted
from batch.errors import ConfigError
from batch.follow.polling import VideoStatusSink, video_update
from batch.secret import Secret
from batch.store import VideoStatus, VideoUpdate

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


@runtime_checkable
class WebhookSink(VideoStatusSink, Protocol):
    """The state as the listener uses it: polling's contract, plus a look at a video's columns
    to say why an event changed nothing."""

    def video_states(self, video_ids: Sequence[str]) -> dict[str, dict[str, str]]: ...


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
    Where the two name opposite ends (a `_failed` event whose `data.status` is completed), the
    event is read as `processing`: a final status is never changed once recorded, so neither is
    taken on its word, and `jogg-batch status` asks the API which it is.
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
    stated = video_update(str(video_id), data, 0.0).status if "status" in data else None
    if event_name and event_name.endswith("_success"):
        status = "processing" if stated == "failed" else "completed"
    elif event_name and event_name.endswith("_failed"):
        status = "processing" if stated == "completed" else "failed"
    elif stated is not None:
        status = stated
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


def event_time(payload: Mapping[str, object]) -> float | None:
    """The event's `timestamp` in unix seconds; None when absent.

    JoggAI documents seconds; milliseconds and microseconds are read too, told apart by
    magnitude: under 1e11 is seconds (up to the year 5138), under 1e14 milliseconds, above that
    microseconds. Each unit's present day lies in its own range only, so no value reads as fresh
    in two units, and a larger one (nanoseconds) reads as far in the future: stale. A number
    written as text (`"1735000000.5"`) and an ISO 8601 time (`2026-11-28T20:00:00Z`, UTC when
    it names no zone) are read too: a replay check that any spelling turned off would be none.
    """
    value = payload.get("timestamp")
    if isinstance(value, str):
        value = _time_text(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if value >= 1e14:
        return value / 1e6
    return value / 1e3 if value >= 1e11 else float(value)


# A timestamp written as a number in text; a longer run of digits is no time (and no float).
_DECIMAL = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?", re.ASCII)


def _time_text(text: str) -> float | None:
    """A timestamp written as text: a decimal number, or an ISO 8601 time; None otherwise."""
    if _DECIMAL.fullmatch(text):
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


DEFAULT_MAX_AGE = 300.0


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """What one client may cost the listener; see the module docstring."""

    max_body: int = 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive: int = 5
    concurrency: int = 64
    max_age: float = DEFAULT_MAX_AGE  # how far an event's timestamp may lie from now, either way


@dataclass(slots=True)
class ListenerStats:
    """What the listener has seen since it started (logged, and read by tests)."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0
    malformed: int = 0
    stale: int = 0
    too_large: int = 0
    too_slow: int = 0


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, streamed; _TooLarge as soon as it passes `limit` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _scrubbed(value: Any, secrets: tuple[Secret, ...]) -> Any:
    """`value` (decoded JSON) with each secret masked in every string, keys included."""
    if isinstance(value, str):
        for secret in secrets:
            value = secret.scrub(value)
        return value
    if isinstance(value, dict):
        return {_scrubbed(key, secrets): _scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    return value


def create_listener_app(
    sink: WebhookSink,
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
    limits: ListenerLimits = ListenerLimits(),
    api_key: Secret | None = None,
) -> Starlette:
    """The ASGI app behind `jogg-batch listen`; `app.state.stats` holds a ListenerStats.

    `api_key`, when given, is scrubbed from every event with the secret (module docstring)."""
    stats = ListenerStats()
    secrets = (Secret(secret),) if api_key is None else (Secret(secret), api_key)

    async def receive(request: Request) -> JSONResponse:
        length = request.headers.get("Content-Length", "0").strip()
        if not length.isdigit():
            stats.malformed += 1
            return JSONResponse({"error": "bad Content-Length"}, status_code=400)
        try:
            if int(length) > limits.max_body:
                raise _TooLarge
            async with asyncio.timeout(limits.body_timeout):
                body = await _read_body(request, limits.max_body)
        except _TooLarge:
            stats.too_large += 1
            log.warning("webhook refused: body over %d bytes", limits.max_body)
            return JSONResponse({"error": "body too large"}, status_code=413)
        except TimeoutError:
            stats.too_slow += 1
            log.warning("webhook refused: body not received within %g s", limits.body_timeout)
            return JSONResponse({"error": "body too slow"}, status_code=408)
        except ClientDisconnect:
            stats.malformed += 1
            return JSONResponse({"error": "client went away"}, status_code=400)
        if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
            stats.rejected += 1
            log.warning("webhook rejected: bad or missing signature")
            return JSONResponse({"error": "bad or missing signature"}, status_code=401)
        event_name = request.headers.get("X-Webhook-Event")
        try:
            payload = _scrubbed(untrusted.loads(body), secrets)
            if isinstance(payload, Mapping) and isinstance(payload.get("event"), str):
                event_name = payload["event"]
            if event_name is not None and event_name not in VIDEO_EVENTS:
                # Other events of the account (avatars, images...) are not ours: acknowledge them
                # so JoggAI does not retry.
                stats.ignored += 1
                return JSONResponse({"ok": True, "ignored": str(event_name)})
            event = parse_event(payload)
        except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError; a
            # body nested thousands deep is a RecursionError
            stats.malformed += 1
            log.warning("webhook refused: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        sent_at = event_time(payload)
        now = clock()
        if sent_at is not None and abs(now - sent_at) > limits.max_age:
            # A 4xx would only make JoggAI retry the same stale body.
            stats.stale += 1
            log.warning(
                "webhook for video %s ignored: its timestamp is %+.0f s from now (limit %g s)",
                event.video_id,
                sent_at - now,
                limits.max_age,
            )
            return JSONResponse({"ok": True, "ignored": "stale"})
        # The sink is called on the event loop, not in a thread pool: a SQLite connection belongs
        # to the thread that opened it, and these calls are one small transaction each.
        key = _event_key(event.event_id, body)
        # The update is made before the event is claimed: an event claimed and then not applied
        # would have its retries taken for duplicates.
        update = event.to_update(now)
        if not sink.claim_event(key):
            stats.duplicates += 1
            log.info("webhook %s for video %s is a duplicate", key, event.video_id)
            return JSONResponse({"ok": True, "duplicate": True})
        changed = sink.record_video_status(update)
        stats.applied += 1
        if changed:
            log.info("webhook: video %s %s", event.video_id, event.status)
        else:
            why = _unchanged_because(sink, event)
            log.info("webhook: video %s %s ignored: %s", event.video_id, event.status, why)
        return JSONResponse({"ok": True, "changed": changed})

    routes = [Route(path, receive, methods=["POST"]) for path in ("/", "/webhook")]
    app = Starlette(routes=routes)
    app.state.stats = stats
    return app


def _unchanged_because(sink: WebhookSink, event: VideoEvent) -> str:
    """Why the state took nothing from an event (it says so; see record_video_status)."""
    known = sink.video_states([event.video_id]).get(event.video_id)
    if known is None:
        return "no job in this state has that video"
    status = known["video_status"]
    if status in ("completed", "failed") and status != event.status:
        return f"it is {status} already, and a final status never changes"
    return "the state says so already"


def _event_key(event_id: str | None, body: bytes) -> str:
    """What a delivery is known by: its event_id, or the hash of one too long for an index
    (PostgreSQL's holds about 2.7 kB), or of the body when it has none."""
    if event_id and len(event_id) <= _LONGEST_EVENT_ID:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode() if event_id else body).hexdigest()


_LONGEST_EVENT_ID = 200


class _DeadlineH11(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's headers.

    uvicorn closes idle keep-alive connections, but a client that connects and sends its headers
    one byte at a time (or nothing) holds the connection forever. The deadline is armed when the
    connection opens and after each response; when it fires and no new request has begun, the
    connection is closed. After a 413 or 408 it also ends a client that keeps sending.
    """

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(None)

    def on_response_complete(self) -> None:
        finished = self.cycle
        super().on_response_complete()
        self._arm(finished)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self, cycle: object) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout, self._expire, cycle)

    def _expire(self, cycle: object) -> None:
        if self.cycle is cycle and not self.transport.is_closing():
            log.info("closing a connection that sent no complete request in time")
            self.transport.close()


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: the system picks one)."""
    try:
        sock = socket.create_server((host, port))
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    # Nagle's algorithm off, as the connections accepted inherit it: asyncio turns it off only
    # on sockets made for TCP by name, and with it on, an answer written as headers, then body,
    # waits for the sender's delayed ACK (40 ms) on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listener_server(app: Starlette, limits: ListenerLimits) -> uvicorn.Server:
    """The uvicorn server for `app` with `limits`; run it with `.run(sockets=[...])`."""
    protocol = type("DeadlineH11", (_DeadlineH11,), {"header_timeout": limits.header_timeout})
    config = uvicorn.Config(
        app,
        http=protocol,
        lifespan="off",
        log_config=None,
        access_log=False,
        limit_concurrency=limits.concurrency,
        timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=16 * 1024,
    )
    return uvicorn.Server(config)
