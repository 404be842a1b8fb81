"""Webhook signatures, payload shapes, and the listener app over httpx.ASGITransport."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from batch.cli.listen import listen
from batch.errors import ConfigError
from batch.follow.webhook import (
    ListenerLimits,
    WebhookSink,
    create_listener_app,
    load_secret,
    parse_event,
    verify_signature,
)
from batch.secret import Secret
from batch.store import AttemptRecord, NewJob, PendingVideo, RowPlan, StateStore, VideoUpdate
from batch.store.backend import StateLocation
from tests.helpers import listen_process

SECRET = "whsec_abc123xyz"


@dataclass
class MemorySink:
    videos: dict[str, VideoUpdate] = field(default_factory=dict)
    events: set[str] = field(default_factory=set)
    records: list[VideoUpdate] = field(default_factory=list)

    def pending_videos(self) -> list[PendingVideo]:
        return []

    def record_video_status(self, update: VideoUpdate) -> bool:
        self.records.append(update)
        changed = self.videos.get(update.video_id) != update
        self.videos[update.video_id] = update
        return changed

    def claim_event(self, event_id: str) -> bool:
        if event_id in self.events:
            return False
        self.events.add(event_id)
        return True

    def video_states(self, video_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        known = {
            video_id: self.videos[video_id] for video_id in video_ids if video_id in self.videos
        }
        return {video_id: {"video_status": video.status} for video_id, video in known.items()}


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


V2_SUCCESS = {
    "event_id": "7321782d69884a869400beb255e3ca91",
    "event": "generated_product_video_success",
    "timestamp": 1735000000,
    "data": {
        "video_id": "vid_1",
        "status": "completed",
        "video_url": "https://res.jogg.ai/v/vid_1.mp4",
        "cover_url": "https://res.jogg.ai/v/vid_1.jpg",
        "duration": 35.8,
    },
}


NOW = 1735000060.0  # a minute after V2_SUCCESS was sent
LIMITS = ListenerLimits()


Sink = TypeVar("Sink", bound=WebhookSink)


class Listener(Generic[Sink]):
    """The app, its sink, and a client that talks to it in-process."""

    def __init__(
        self, sink: Sink, limits: ListenerLimits = LIMITS, api_key: Secret | None = None
    ) -> None:
        self.sink = sink
        self.app: Starlette = create_listener_app(
            self.sink, SECRET, clock=lambda: NOW, limits=limits, api_key=api_key
        )
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://listener")


@pytest.fixture
async def listener() -> AsyncIterator[Listener[MemorySink]]:
    listener = Listener(MemorySink())
    async with listener.client:
        yield listener


async def post(client: httpx.AsyncClient, payload: object, signature: str | None = "sign") -> int:
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Webhook-Signature"] = sign(body)
    elif signature is not None:
        headers["X-Webhook-Signature"] = signature
    return (await client.post("/webhook", content=body, headers=headers)).status_code


def test_signature_is_lowercase_hex_hmac_of_the_raw_body() -> None:
    """The known HMAC verifies; a changed body, a wrong key or no signature does not."""
    body = b'{"a":1}'
    good = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify_signature("k", body, good)
    assert verify_signature("k", body, good.upper())
    assert not verify_signature("k", body + b" ", good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("k", body, None)
    assert not verify_signature("k", body, "")
    assert not verify_signature("k", body, "sha256=" + good)
    assert not verify_signature("k", body, "é" * 64)


def test_parse_v2_failure_carries_the_error() -> None:
    """A v2 failure gives status failed and `code: message` as the error."""
    event = parse_event(
        {
            "event_id": "e1",
            "event": "generated_product_video_failed",
            "data": {"video_id": "v9", "status": "failed", "error": {"code": 2, "message": "x"}},
        }
    )
    update = event.to_update(10.0)
    assert (event.event_id, event.video_id, update.status, update.error) == (
        "e1",
        "v9",
        "failed",
        "2: x",
    )


def test_parse_legacy_shape_uses_project_id_and_event_name() -> None:
    """The legacy payload has project_id, no status, and err_msg on failure."""
    ok = parse_event(
        {"event_id": "e", "event": "generated_video_success", "data": {"project_id": "p1"}}
    )
    assert (ok.video_id, ok.status) == ("p1", "completed")
    failed = parse_event(
        {"event": "generated_video_failed", "data": {"project_id": "p2", "err_msg": "boom"}}
    )
    assert (failed.event_id, failed.status, failed.to_update(0).error) == (None, "failed", "boom")


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("generated_product_video_failed", "completed"),
        ("generated_product_video_success", "failed"),
    ],
)
def test_an_event_whose_name_and_status_disagree_records_no_final_status(
    event: str, status: str
) -> None:
    """A `_failed` event whose data says completed (with a video URL), or the reverse: a final
    status is never changed once recorded, so it is `processing`, for `status` to settle."""
    data = {"video_id": "v9", "status": status, "video_url": "https://cdn.example/v9.mp4"}
    parsed = parse_event({"event_id": "e1", "event": event, "data": data})
    assert parsed.status == "processing"


@pytest.mark.parametrize(
    "payload",
    [[], {"data": []}, {"data": {"status": "completed"}}, {"data": {"video_id": "v"}}],
)
def test_parse_rejects_what_is_not_a_video_event(payload: object) -> None:
    """No data object, no id, or no way to tell the status: ValueError."""
    with pytest.raises(ValueError, match=r"\S"):
        parse_event(payload)


@pytest.mark.anyio
async def test_good_signature_updates_the_state(listener: Listener[MemorySink]) -> None:
    """A signed v2 success records URL, cover, duration and the time it was seen."""
    client, sink = listener.client, listener.sink
    assert await post(client, V2_SUCCESS) == 200
    assert sink.videos["vid_1"] == VideoUpdate(
        "vid_1",
        "completed",
        "https://res.jogg.ai/v/vid_1.mp4",
        "https://res.jogg.ai/v/vid_1.jpg",
        35.8,
        None,
        None,
        NOW,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("signature", [None, "0" * 64, sign(b"something else")])
async def test_bad_or_missing_signature_is_401_and_changes_nothing(
    listener: Listener[MemorySink], signature: str | None
) -> None:
    """No state change and no event claimed when the signature does not verify."""
    client, sink = listener.client, listener.sink
    assert await post(client, V2_SUCCESS, signature) == 401
    assert sink.records == []
    assert sink.events == set()
    assert listener.app.state.stats.rejected == 1


@pytest.mark.anyio
async def test_duplicate_delivery_is_acknowledged_and_counted_once(
    listener: Listener[MemorySink],
) -> None:
    """The second delivery of an event_id answers 200 but records nothing."""
    client, sink = listener.client, listener.sink
    assert await post(client, V2_SUCCESS) == 200
    assert await post(client, V2_SUCCESS) == 200
    assert len(sink.records) == 1
    stats = listener.app.state.stats
    assert (stats.applied, stats.duplicates) == (1, 1)


@pytest.mark.anyio
async def test_a_number_past_a_float_is_no_number_and_the_event_is_applied(
    listener: Listener[MemorySink],
) -> None:
    """A duration of 400 digits is read as none: the event is recorded, not a 500 whose
    retry would be taken for a duplicate."""
    client, sink = listener.client, listener.sink
    data = dict(V2_SUCCESS["data"])  # type: ignore[call-overload]
    odd = {**V2_SUCCESS, "data": {**data, "duration": 10**400}}
    assert await post(client, odd) == 200
    assert sink.videos["vid_1"].status == "completed"
    assert sink.videos["vid_1"].duration is None


@pytest.mark.anyio
async def test_legacy_delivery_on_root_path(listener: Listener[MemorySink]) -> None:
    """POST / with the legacy shape records the project as completed."""
    client, sink = listener.client, listener.sink
    body = json.dumps(
        {"event_id": "e2", "event": "generated_video_success", "data": {"project_id": "p7"}}
    ).encode()
    response = await client.post("/", content=body, headers={"X-Webhook-Signature": sign(body)})
    assert response.status_code == 200
    assert sink.videos["p7"].status == "completed"


@pytest.mark.anyio
async def test_malformed_body_is_400(listener: Listener[MemorySink]) -> None:
    """A signed body that is not JSON, lacks a video id, or nests too deep to read, is refused
    with 400."""
    client, sink = listener.client, listener.sink
    body = b"not json"
    response = await client.post(
        "/webhook", content=body, headers={"X-Webhook-Signature": sign(body)}
    )
    assert response.status_code == 400
    assert await post(client, {"event": "generated_product_video_success", "data": {}}) == 400
    deep = b"[" * 100_000 + b"]" * 100_000  # nested past Python's recursion limit
    response = await client.post("/", content=deep, headers={"X-Webhook-Signature": sign(deep)})
    assert response.status_code == 400
    assert sink.records == []


@pytest.mark.anyio
async def test_other_events_are_acknowledged_and_ignored(listener: Listener[MemorySink]) -> None:
    """An avatar event is not ours: 200 so JoggAI stops retrying, and no state change."""
    client, sink = listener.client, listener.sink
    assert await post(client, {"event": "create_avatar_success", "data": {"avatar_id": 3}}) == 200
    assert sink.records == []


@pytest.mark.anyio
async def test_get_is_not_allowed(listener: Listener[MemorySink]) -> None:
    """Only POST is served."""
    client = listener.client
    assert (await client.get("/webhook")).status_code == 405


def test_secret_comes_from_the_file_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--secret-file wins over the environment; its first line is the secret."""
    monkeypatch.setenv("JOGG_WEBHOOK_SECRET", "from-env")
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n", encoding="utf-8")
    assert load_secret(secret_file) == "from-file"
    assert load_secret(None) == "from-env"


def test_missing_secret_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a secret the listener refuses to start (it could verify nothing)."""
    monkeypatch.delenv("JOGG_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"no webhook secret in \$JOGG_WEBHOOK_SECRET"):
        load_secret(None)


def test_listen_help_explains_exposure() -> None:
    """listen --help shows the options and the HTTPS note."""
    outcome = CliRunner().invoke(listen, ["--help"])
    assert outcome.exit_code == 0
    for text in ("--port", "--state", "--secret-file", "--max-age", "HTTPS"):
        assert text in outcome.stdout


def test_listen_without_secret_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """listen with no secret anywhere exits 2 and never prints a secret."""
    monkeypatch.delenv("JOGG_WEBHOOK_SECRET", raising=False)
    state = tmp_path / "state.db"
    state.write_bytes(b"")
    outcome = CliRunner().invoke(listen, ["--state", str(state)])
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith("jogg-batch: error: no webhook secret in $JOGG_WEBHOOK_SECRET")


def event(status: str = "completed", **changes: object) -> dict[str, object]:
    """A v2 event about vid_1, sent a minute before NOW, without an event name."""
    data = {"video_id": "vid_1", "status": status, "video_url": "https://res.jogg.ai/v/1.mp4"}
    return {"event_id": f"e-{status}", "timestamp": NOW - 60, "data": data, **changes}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent_at", "applied"),
    [
        (1577836800, False),  # 2020-01-01
        (NOW - 301, False),
        (NOW + 301, False),  # from the future: a clock far off, or a forgery
        ((NOW - 299) * 1000, True),  # milliseconds
        ((NOW - 301) * 1000, False),
        (int((NOW - 299) * 1_000_000), True),  # microseconds
        (int((NOW + 301) * 1_000_000), False),
        (int(NOW * 1_000_000_000), False),  # nanoseconds: read as microseconds, far ahead
        (NOW - 299, True),
        (str(int(NOW)), True),
        (f"{NOW - 299:.3f}", True),  # a number as text, with decimals
        (f"{NOW - 301:.3f}", False),
        (datetime.fromtimestamp(NOW - 301, UTC).isoformat(), False),  # ISO 8601
        (datetime.fromtimestamp(NOW - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), True),
        (datetime.fromtimestamp(NOW - 400, UTC).strftime("%Y-%m-%d %H:%M:%S"), False),  # UTC
        (None, True),  # no timestamp: nothing to judge by; the body hash still de-duplicates
    ],
)
async def test_events_outside_the_freshness_window_are_ignored(
    listener: Listener[MemorySink], sent_at: object, applied: bool
) -> None:
    """A signed event more than 5 minutes from now is acknowledged and ignored."""
    assert await post(listener.client, event(timestamp=sent_at)) == 200
    assert bool(listener.sink.records) is applied
    assert bool(listener.sink.events) is applied  # a stale event is not even claimed
    assert listener.app.state.stats.stale == (not applied)


@pytest.mark.anyio
async def test_freshness_window_is_configurable() -> None:
    """With max_age=60 an event two minutes old is ignored."""
    listener = Listener(MemorySink(), limits=ListenerLimits(max_age=60))
    async with listener.client:
        assert await post(listener.client, event(timestamp=NOW - 120)) == 200
    assert listener.sink.records == []


@pytest.mark.anyio
async def test_events_without_id_are_deduplicated_on_the_body(
    listener: Listener[MemorySink],
) -> None:
    """No event_id: the same body is applied once; another body is a new event."""
    first = event(event_id=None)
    assert await post(listener.client, first) == 200
    assert await post(listener.client, first) == 200
    assert len(listener.sink.records) == 1
    assert await post(listener.client, event(event_id=None, timestamp=NOW - 30)) == 200
    assert len(listener.sink.records) == 2
    assert listener.app.state.stats.duplicates == 1
    assert all(key.startswith("sha256:") for key in listener.sink.events)


@pytest.fixture
def state(state_at: StateLocation) -> StateStore:
    """A state (on each backend) with one submitted job whose video is vid_1, still rendering."""
    return rendering_vid_1(state_at)


def rendering_vid_1(state_at: StateLocation) -> StateStore:
    store = StateStore(state_at)
    run = store.begin_run("c.csv", dry_run=False)
    store.record_plan(
        run, [NewJob("f" * 64, "key", "[]", "tag")], [], [RowPlan(1, "f" * 64, "job", None)]
    )
    job = store.next_jobs(run, 0, 10)[0].id
    attempt = store.begin_attempt(job, run)
    assert attempt is not None
    record = AttemptRecord("ok", 0, video_id="vid_1")
    store.finish_attempt(attempt, job, record, "submitted", run_id=run)
    return store


def video_status(store: StateStore) -> str:
    return store.video_states(["vid_1"])["vid_1"]["video_status"]


@pytest.mark.anyio
@pytest.mark.parametrize("final", ["completed", "failed"])
async def test_no_source_moves_a_final_status(state: StateStore, final: str) -> None:
    """Once final, fresh signed events and status polls saying otherwise change nothing."""
    listener = Listener(state)
    async with listener.client:
        assert await post(listener.client, event(final)) == 200
        assert video_status(state) == final
        for status in ("processing", "completed", "failed"):
            assert await post(listener.client, event(status, event_id=f"later-{status}")) == 200
            assert video_status(state) == final
    poll = VideoUpdate("vid_1", "processing", None, None, None, None, None, NOW)
    assert state.record_video_status(poll) is False
    other = "failed" if final == "completed" else "completed"
    assert state.record_video_status(dataclasses.replace(poll, status=other)) is False  # type: ignore[arg-type]
    assert video_status(state) == final
    assert state.pending_videos() == []
    state.close()


@pytest.mark.anyio
async def test_a_nul_in_a_url_or_a_huge_event_id_is_still_recorded(state: StateStore) -> None:
    """On each backend (PostgreSQL's text holds no NUL, its index no 3 kB key): the event is
    applied once, its retry is a duplicate, never a 500 that loses it; a URL holding a NUL is
    no URL, and is left out."""
    listener = Listener(state)
    odd = event("completed", event_id="e" * 5_000)
    odd["data"] = {**odd["data"], "video_url": "https://res.jogg.ai/v/1\x00.mp4"}  # type: ignore[dict-item]
    async with listener.client:
        assert await post(listener.client, odd) == 200
        assert await post(listener.client, odd) == 200
    assert video_status(state) == "completed"
    assert not state.video_states(["vid_1"])["vid_1"]["video_url"]
    assert (listener.app.state.stats.applied, listener.app.state.stats.duplicates) == (1, 1)
    state.close()


async def endless_body(pulled: list[int], piece: bytes = b"x" * 65536) -> AsyncIterator[bytes]:
    """64 KiB pieces, forever; `pulled` counts what the server took."""
    while True:
        pulled[0] += len(piece)
        yield piece


@pytest.mark.anyio
async def test_oversize_body_is_413_without_reading_it(listener: Listener[MemorySink]) -> None:
    """Over 1 MiB announced: 413 with nothing read; chunked: 413 just past the cap."""
    client = listener.client
    pulled = [0]
    announced = await client.post(
        "/webhook",
        content=endless_body(pulled),
        headers={"Content-Length": str(512 * 1024 * 1024)},
    )
    assert announced.status_code == 413
    assert pulled[0] <= 65536  # httpx may hand over the first piece before the app answers
    pulled[0] = 0
    chunked = await client.post("/webhook", content=endless_body(pulled))
    assert chunked.status_code == 413
    assert 1024 * 1024 < pulled[0] <= 1024 * 1024 + 2 * 65536
    exactly = await client.post("/webhook", content=b"x" * 1024 * 1024)
    assert exactly.status_code == 401  # at the cap is allowed; then the signature fails
    assert listener.app.state.stats.too_large == 2
    assert listener.sink.records == []


@pytest.mark.anyio
async def test_a_body_that_stalls_is_408() -> None:
    """A body not complete within body_timeout is answered 408 and changes nothing."""

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"data":'
        await asyncio.sleep(10)

    listener = Listener(MemorySink(), limits=ListenerLimits(body_timeout=0.1))
    async with listener.client:
        response = await listener.client.post("/webhook", content=stalls())
    assert response.status_code == 408
    assert listener.app.state.stats.too_slow == 1
    assert listener.sink.records == []


KEY = "sk-live-9f8e7d6c5b4a3210ZZqq"


def echoing(video_id: str, event: str, **data: object) -> dict[str, object]:
    """A fresh signed-to-be event about `video_id` carrying `data`."""
    return {
        "event_id": f"echo-{video_id}",
        "event": event,
        "timestamp": NOW - 60,
        "data": {"video_id": video_id, **data},
    }


@pytest.mark.anyio
async def test_the_api_key_and_the_secret_are_scrubbed_from_signed_events() -> None:
    """A signed event echoing the API key (any case) or the endpoint secret in its error or its
    URL is recorded with both masked."""
    listener = Listener(MemorySink(), api_key=Secret(KEY))
    error = {"code": 401, "message": f"worker auth failed for x-api-key={KEY}; secret {SECRET}"}
    url = f"https://cdn.example/v.mp4?api_key={KEY.upper()}"
    async with listener.client:
        failed = echoing("vid_1", "generated_video_failed", error=error)
        assert await post(listener.client, failed) == 200
        done = echoing("vid_2", "generated_video_success", video_url=url)
        assert await post(listener.client, done) == 200
    videos = listener.sink.videos
    assert videos["vid_1"].error == "401: worker auth failed for x-api-key=***; secret ***"
    assert videos["vid_2"].video_url == "https://cdn.example/v.mp4?api_key=***"


def test_listen_scrubs_the_api_key_it_is_given(tmp_path: Path) -> None:
    """`jogg-batch listen` with JOGG_API_KEY set keeps it out of the ledger and its log."""
    location = tmp_path / "state.db"
    rendering_vid_1(location).close()
    env = {"JOGG_API_KEY": KEY, "JOGG_WEBHOOK_SECRET": SECRET}
    error = {"code": 401, "message": f"worker auth failed for x-api-key={KEY}"}
    body = json.dumps(
        {**echoing("vid_1", "generated_video_failed", error=error), "timestamp": None}
    )
    log: list[str] = []
    with listen_process(location, env, log) as (_child, port):
        response = httpx.post(
            f"http://127.0.0.1:{port}/webhook",
            content=body,
            headers={"X-Webhook-Signature": sign(body.encode())},
        )
        assert response.status_code == 200
    with StateStore(location) as store:
        recorded = store.video_states(["vid_1"])["vid_1"]
    assert (recorded["video_status"], recorded["error"]) == (
        "failed",
        "401: worker auth failed for x-api-key=***",
    )
    assert KEY not in "".join(log)


@pytest.mark.anyio
async def test_the_log_says_what_an_event_changed_or_why_not(
    state: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A status recorded is logged as such; a flip of a final status, a repeat of the same
    status, and a video no job has, are logged as ignored, saying why."""
    listener = Listener(state)
    async with listener.client:
        for payload in (
            event("completed"),
            event("failed", event_id="flip"),
            event("completed", event_id="again"),
            {
                **event("completed", event_id="x"),
                "data": {"video_id": "never-sent", "status": "completed"},
            },
        ):
            with caplog.at_level("INFO", logger="batch.follow.webhook"):
                assert await post(listener.client, payload) == 200
    assert [r.getMessage() for r in caplog.records if r.name == "batch.follow.webhook"] == [
        "webhook: video vid_1 completed",
        "webhook: video vid_1 failed ignored: it is completed already, and a final status "
        "never changes",
        "webhook: video vid_1 completed ignored: the state says so already",
        "webhook: video never-sent completed ignored: no job in this state has that video",
    ]
    state.close()
