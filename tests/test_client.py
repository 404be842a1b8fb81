"""The JoggAI client: outcome classification, requests sent, key hygiene, paging."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from batch import __version__
from batch.errors import ConfigError
from batch.joggai.client import ApiOutcome, JoggClient, Timeouts
from batch.joggai.quota import RateLimit
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.sandbox.catalogs import SEEDED_PRODUCTS
from batch.sandbox.config import SandboxConfig
from batch.sandbox.server import running_sandbox

KEY = "sk-test-7f3a9c2e5b1d4e6f"
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, **options: Any) -> JoggClient:
    return JoggClient(
        "https://api.example.test", KEY, transport=httpx.MockTransport(handler), **options
    )


def envelope(code: Any, msg: str = "", data: Any = None, **extra: Any) -> bytes:
    return json.dumps({"rid": "0" * 32, "code": code, "msg": msg, "data": data, **extra}).encode()


def answering(status: int, content: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers)

    return handler


def raising(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return handler


async def create_with(handler: Handler) -> ApiOutcome:
    async with client_for(handler) as client:
        return await client.create_video({"product_id": "NTQ0MTkzNjg"})


HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "kind", "code"),
    [
        (200, envelope(40000, "Parameter error: avatar_id is required"), "permanent", 40000),
        (200, envelope(10104, "record not found"), "permanent", 10104),
        (400, json.dumps({"msg": "bad request"}).encode(), "permanent", None),
        (404, json.dumps({"error": "no such route"}).encode(), "permanent", None),
        (422, b"", "permanent", None),
        (200, envelope(10105, "invalid key"), "account", 10105),
        (200, envelope(18020, "insufficient credit"), "account", 18020),
        (200, envelope(18025, "no permission"), "account", 18025),
        (401, envelope(10105, "invalid key"), "account", 10105),
        (401, b"", "account", None),
        (402, b"", "account", None),
        (403, b"forbidden", "account", None),
        (200, envelope(429, "Rate limit exceeded. Please try again later."), "retryable", 429),
        (429, b"", "retryable", None),
        (200, envelope(50000, "system error"), "unknown", 50000),
        (500, envelope(50000, "system error"), "unknown", 50000),
        (500, b"Internal Server Error", "unknown", None),
        (502, HTML_502, "unknown", None),
        (503, b"", "unknown", None),
        (504, HTML_502, "unknown", None),
        (504, envelope(50000, "timeout"), "unknown", 50000),
        (520, b"", "unknown", None),
        # A 5xx may follow a commit whatever its body says, a rate limit's code included.
        (503, envelope(429, "upstream busy"), "unknown", 429),
        (500, envelope(429, "Rate limit exceeded. Please try again later."), "unknown", 429),
        (200, b"<html>ok</html>", "unknown", None),
        (200, b"", "unknown", None),
        (200, b"[1, 2]", "unknown", None),
        (200, b'{"code": 0, "msg": "Success", "data": "v1"}', "unknown", 0),
        (200, b'{"msg": "Success", "data": {"video_id": "v1"}}', "unknown", None),
        # An undocumented code says nothing of what the server did: it may have created it.
        (200, envelope(77777, "something new"), "unknown", 77777),
        (200, envelope(50001, "weird"), "unknown", 50001),
        (400, envelope(77777, "something new"), "unknown", 77777),
        (502, envelope(77777, "something new"), "unknown", 77777),
        # Success in the body, an error in the status: neither proves anything.
        (400, b'{"code": 0, "msg": "success", "data": {"video_id": "v1"}}', "unknown", 0),
        (429, b'{"code": 0, "msg": "success", "data": {"video_id": "v1"}}', "unknown", 0),
    ],
)
async def test_http_answers_are_classified(
    status: int, content: bytes, kind: str, code: int | None
) -> None:
    """Body codes and HTTP statuses both map to the documented outcome kinds."""
    outcome = await create_with(answering(status, content))
    assert outcome.kind == kind
    assert outcome.code == code
    assert outcome.http_status == status
    assert outcome.message


@pytest.mark.anyio
async def test_a_502_html_page_is_unknown_and_its_message_shows_the_body() -> None:
    """A proxy's HTML error page may hide a commit behind it: unknown, with what came back."""
    outcome = await create_with(answering(502, HTML_502, {"content-type": "text/html"}))
    assert outcome.kind == "unknown"
    assert "not JSON" in outcome.message
    assert "502 Bad Gateway" in outcome.message


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirected_create_is_unknown_and_names_where_it_was_sent(status: int) -> None:
    """A redirect is not followed (the POST may have been taken on the way): the job is
    uncertain, and the message names the Location so that the base URL can be fixed."""
    moved = {"location": "https://api.example.test/v2/create_video_from_product"}
    outcome = await create_with(answering(status, b"", moved))
    assert outcome.kind == "unknown"
    assert outcome.message == (
        "redirected to https://api.example.test/v2/create_video_from_product, not followed; "
        "set the base URL to the API's own"
    )


@pytest.mark.anyio
async def test_created_video_returns_its_id() -> None:
    """Code 0 with data.video_id is ok, with the id and the rate headroom."""
    body = envelope(
        0, "Success", {"video_id": "7321782d69884a869400beb255e3ca91", "status": "processing"}
    )
    outcome = await create_with(answering(200, body, {"X-RateLimit-Remaining": "7"}))
    assert outcome.kind == "ok"
    assert outcome.code == 0
    assert outcome.data is not None
    assert outcome.data["video_id"] == "7321782d69884a869400beb255e3ca91"
    assert outcome.rate_remaining == 7
    assert outcome.retry_after is None
    assert outcome.elapsed >= 0.0


@pytest.mark.anyio
async def test_product_video_id_is_the_fallback_for_video_id() -> None:
    """The URL-to-Video guide's `product_video_id` is read when `video_id` is absent."""
    outcome = await create_with(
        answering(200, envelope(0, "success", {"product_video_id": "pv_123456"}))
    )
    assert outcome.kind == "ok"
    assert outcome.data is not None
    assert outcome.data["video_id"] == "pv_123456"


@pytest.mark.anyio
async def test_accepted_without_an_id_is_unknown() -> None:
    """Code 0 but no id: the server charged, so the caller must reconcile, not resend."""
    outcome = await create_with(answering(200, envelope(0, "Success", {"status": "processing"})))
    assert outcome.kind == "unknown"
    assert "no video_id" in outcome.message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectError, "not_sent"),
        (httpx.ConnectTimeout, "not_sent"),
        (httpx.PoolTimeout, "not_sent"),
        (httpx.ReadTimeout, "unknown"),
        (httpx.WriteTimeout, "unknown"),
        (httpx.RemoteProtocolError, "unknown"),
        (httpx.ReadError, "unknown"),
        (httpx.WriteError, "unknown"),
    ],
)
async def test_network_errors_say_whether_the_request_left(
    error: type[httpx.TransportError], kind: str
) -> None:
    """Connect failures are not_sent; failures after sending are unknown. Nothing raises."""
    outcome = await create_with(raising(error))
    assert outcome.kind == kind
    assert outcome.http_status is None
    assert outcome.code is None
    assert error.__name__ in outcome.message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "content", "expected"),
    [
        ({"Retry-After": "17"}, envelope(429, "slow down"), 17.0),
        ({"Retry-After": "2.5"}, b"", 2.5),
        ({}, envelope(429, "slow down", None, retryAfter=12), 12.0),
        ({}, envelope(429, "slow down", {"retryAfter": "5"}), 5.0),
        ({"Retry-After": "3"}, envelope(429, "slow down", None, retryAfter=12), 3.0),
        ({"Retry-After": "soon"}, envelope(429, "slow down"), None),
        ({}, envelope(429, "slow down"), None),
    ],
)
async def test_retry_after_comes_from_the_header_or_the_body(
    headers: dict[str, str], content: bytes, expected: float | None
) -> None:
    """Retry-After seconds, or retryAfter in the envelope or its data; the header wins."""
    outcome = await create_with(answering(429 if not content else 200, content, headers))
    assert outcome.kind == "retryable"
    assert outcome.rate_limited
    assert outcome.retry_after == expected


@pytest.mark.anyio
async def test_retry_after_as_an_http_date_becomes_seconds() -> None:
    """An HTTP-date Retry-After is turned into seconds from now."""
    headers = {"Retry-After": formatdate(time.time() + 30, usegmt=True)}
    outcome = await create_with(answering(429, b"", headers))
    assert outcome.retry_after is not None
    assert 27.0 <= outcome.retry_after <= 31.0
    past = {"Retry-After": formatdate(time.time() - 300, usegmt=True)}
    assert (await create_with(answering(503, b"", past))).retry_after == 0.0


@pytest.mark.anyio
async def test_rate_remaining_is_read_on_every_answer() -> None:
    """X-RateLimit-Remaining is parsed on errors too, and ignored when garbled."""
    zero = await create_with(answering(200, envelope(40000, "bad"), {"x-ratelimit-remaining": "0"}))
    assert zero.rate_remaining == 0
    garbled = await create_with(
        answering(200, envelope(40000, "bad"), {"x-ratelimit-remaining": "n/a"})
    )
    assert garbled.rate_remaining is None
    negative = await create_with(
        answering(200, envelope(40000, "bad"), {"x-ratelimit-remaining": "-7"})
    )
    assert negative.rate_remaining is None  # taken as 0, it held every send a window


@pytest.mark.anyio
async def test_requests_carry_the_key_the_user_agent_and_the_v2_paths() -> None:
    """Every call sends x-api-key and jogg-batch/<version> to the right path and query."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=envelope(0, "Success", {"video_id": "v1"}))

    async with client_for(handler) as client:
        await client.create_video({"product_id": "p1", "video_spec": {"length": "30"}})
        await client.create_product({"url": "https://shop.example/p/1"})
        await client.get_product_video("a/b c")
        await client.list_product_videos(page=2, page_size=50, status=4)
        await client.whoami()
        await client.remaining_quota()
        await client.avatars_public(1, 100, aspect_ratio="portrait")
        await client.avatars_custom(2, 10)
        await client.voices(1, 100, language=None)
        await client.musics(3, 20)
        await client.visual_styles("square")
    assert all(r.headers["x-api-key"] == KEY for r in seen)
    assert all(r.headers["user-agent"] == f"jogg-batch/{__version__}" for r in seen)
    assert [(r.method, r.url.raw_path.decode()) for r in seen] == [
        ("POST", "/v2/create_video_from_product"),
        ("POST", "/v2/product"),
        ("GET", "/v2/product_video/a%2Fb%20c"),
        (
            "GET",
            "/v2/product_videos?page=2&page_size=50&status=4&sort_by=created_at&sort_order=desc",
        ),
        ("GET", "/v2/user/whoami"),
        ("GET", "/v2/user/remaining_quota"),
        ("GET", "/v2/avatars/public?page=1&page_size=100&aspect_ratio=portrait"),
        ("GET", "/v2/avatars/custom?page=2&page_size=10"),
        ("GET", "/v2/voices?page=1&page_size=100"),
        ("GET", "/v2/musics?page=3&page_size=20"),
        ("GET", "/v2/visual_styles?aspect_ratio=square"),
    ]
    assert json.loads(seen[0].content) == {"product_id": "p1", "video_spec": {"length": "30"}}
    assert seen[0].headers["content-type"] == "application/json"


@pytest.mark.anyio
async def test_product_creation_gets_the_long_read_timeout() -> None:
    """POST /v2/product waits product_read seconds; create video waits read seconds."""
    timeouts: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts[request.url.path] = request.extensions["timeout"]["read"]
        return httpx.Response(
            200, content=envelope(0, "Success", {"video_id": "v", "product_id": "p"})
        )

    async with client_for(handler, timeouts=Timeouts(read=45.0, product_read=150.0)) as client:
        await client.create_product({"name": "Mug"})
        await client.create_video({})
    assert timeouts == {"/v2/product": 150.0, "/v2/create_video_from_product": 45.0}
    assert Timeouts() == Timeouts(connect=10.0, read=60.0, product_read=120.0, pool=10.0)


@pytest.mark.anyio
async def test_the_key_never_shows_in_repr_logs_or_outcomes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """repr, a logged failure and every outcome's text are free of the API key."""
    caplog.set_level(logging.DEBUG, logger="batch")
    echo = envelope(10105, f"invalid key {KEY}", None)
    outcomes = [
        await create_with(answering(200, echo)),
        await create_with(answering(502, f"<html>bad header x-api-key: {KEY}</html>".encode())),
    ]

    def leaky(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            f"cannot connect with {request.headers['x-api-key']}", request=request
        )

    outcomes.append(await create_with(leaky))
    client = client_for(answering(200, b""))
    texts = [
        repr(client),
        str(client),
        caplog.text,
        *(str(o) for o in outcomes),
        *(repr(o) for o in outcomes),
    ]
    assert caplog.text  # the failures were logged
    for text in texts:
        assert KEY not in text
    assert "***" in outcomes[0].message
    await client.aclose()


def test_bad_configuration_is_reported_at_once() -> None:
    """A base URL without scheme or host, or an empty key, is a config error naming the URL."""
    with pytest.raises(ConfigError, match=r"api\.jogg\.ai/v2"):
        JoggClient("api.jogg.ai/v2", KEY)
    with pytest.raises(ConfigError, match="JOGG_API_KEY"):
        JoggClient("https://api.jogg.ai", "")


# Over a real loopback socket, against the sandbox.

SANDBOX_KEY = "sk-sandbox"


def sandbox_body(name: str = "Bottle") -> dict[str, Any]:
    return {
        "product_id": SEEDED_PRODUCTS[0][0],
        "video_spec": {"length": "30", "aspect_ratio": "portrait", "name": name},
        "avatar": {"id": 127, "type": 0},
        "voice": {"id": "en-US-ChristopherNeural"},
        "audio": {"music_id": 13},
        "script": {"style": "Storytime", "language": "english"},
        "visual_style": "Vertical Story Stack",
    }


@pytest.mark.anyio
async def test_sandbox_create_then_find_it_in_the_listing() -> None:
    """A created video is ok with an id, readable by id, and listed with its title."""
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        async with JoggClient(url, SANDBOX_KEY) as client:
            assert (await client.whoami()).kind == "ok"
            created = await client.create_video(sandbox_body("Spring promo [jb-7f3a9c2e]"))
            assert created.kind == "ok", str(created)
            assert created.data is not None
            video_id = created.data["video_id"]
            status = await client.get_product_video(video_id)
            assert status.kind == "ok"
            listed = await client.list_product_videos()
    assert listed.data is not None
    titles = {item["id"]: item["title"] for item in listed.data["videos"]}
    assert titles.get(video_id) == "Spring promo [jb-7f3a9c2e]"


@pytest.mark.anyio
@pytest.mark.parametrize("status_codes", [False, True])
async def test_sandbox_errors_classify_in_both_modes(status_codes: bool) -> None:
    """Bad key -> account, bad body -> permanent, 502 fault -> unknown, in either HTTP mode."""
    config = SandboxConfig(rate_limit=None, http_status_codes=status_codes)
    with running_sandbox(config) as url:
        async with JoggClient(url, "sk-wrong") as client:
            assert (await client.create_video(sandbox_body())).kind == "account"
        async with JoggClient(url, SANDBOX_KEY) as client:
            bad = await client.create_video({**sandbox_body(), "avatar": {"id": -5, "type": 0}})
            assert (bad.kind, bad.code) == ("permanent", 40000)
    with running_sandbox(SandboxConfig(rate_limit=None, bad_gateway_rate=1.0)) as url:
        async with JoggClient(url, SANDBOX_KEY) as client:
            assert (await client.create_video(sandbox_body())).kind == "unknown"


@pytest.mark.anyio
async def test_sandbox_commit_then_stall_is_unknown_and_was_charged() -> None:
    """A real read timeout after the server committed: unknown, never 'not sent'."""
    config = SandboxConfig(rate_limit=None, stall_rate=1.0, stall_seconds=0.5)
    with running_sandbox(config) as url:
        async with JoggClient(url, SANDBOX_KEY, timeouts=Timeouts(read=0.1)) as client:
            outcome = await client.create_video(sandbox_body())
        async with httpx.AsyncClient(base_url=url) as plain:
            seen = (await plain.get("/_sandbox/submissions")).json()
    assert outcome.kind == "unknown"
    assert "ReadTimeout" in outcome.message
    assert len(seen["submissions"]) == 1


@pytest.mark.anyio
async def test_sandbox_connection_reset_is_unknown_and_a_closed_port_is_not_sent() -> None:
    """A dropped connection may have been processed; a refused connection never was."""
    with running_sandbox(SandboxConfig(rate_limit=None, reset_rate=1.0)) as url:
        async with JoggClient(url, SANDBOX_KEY) as client:
            assert (await client.create_video(sandbox_body())).kind == "unknown"
    # The sandbox has stopped: nothing listens on its port any more.
    async with JoggClient(url, SANDBOX_KEY) as client:
        refused = await client.create_video(sandbox_body())
    assert refused.kind == "not_sent"
    assert "ConnectError" in refused.message


@pytest.mark.anyio
async def test_limiter_and_client_against_the_sandbox_get_no_429() -> None:
    """With the sandbox limit equal to ours, 8 workers send 30 POSTs and none is refused."""
    rate = RateLimit(10, 0.4)
    limiter = SlidingWindowLimiter(rate)
    outcomes: list[ApiOutcome] = []
    with running_sandbox(SandboxConfig(rate_limit=rate, latency_ms=(5, 40))) as url:
        async with JoggClient(url, SANDBOX_KEY) as client:

            async def worker() -> None:
                while limiter.stats.sent < 30:
                    async with limiter.slot() as slot:
                        outcome = await client.create_video(sandbox_body())
                        slot.observe(
                            outcome.retry_after, outcome.rate_remaining, outcome.rate_limited
                        )
                    outcomes.append(outcome)

            await asyncio.gather(*(worker() for _ in range(8)))
        async with httpx.AsyncClient(base_url=url) as plain:
            counts = (await plain.get("/_sandbox/submissions")).json()["counts"]
    assert [o.kind for o in outcomes] == ["ok"] * len(outcomes)
    assert len(outcomes) >= 30
    assert counts["rate_limited"] == 0
    assert limiter.stats.max_in_window <= 10


@pytest.mark.anyio
async def test_a_get_failing_transiently_is_asked_again_but_a_post_never_is() -> None:
    """A 502 or a reset on a GET is asked again (GETs change nothing); the same on a create is
    answered as unknown after one request."""
    calls: list[str] = []
    failures = iter([httpx.Response(502, content=HTML_502)])

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        failed = next(failures, None)
        return failed or httpx.Response(200, content=envelope(0, "ok", {"username": "u"}))

    async with client_for(handler, get_retry_delay=0) as client:
        assert (await client.whoami()).kind == "ok"
    assert calls == ["GET", "GET"]
    async with client_for(answering(502, HTML_502), get_retry_delay=0) as client:
        assert (await client.create_video({"product_id": "P"})).kind == "unknown"
        assert (await client.whoami()).kind == "unknown"


@pytest.mark.anyio
async def test_a_get_that_keeps_failing_gives_up_after_three_tries() -> None:
    """Three tries, then the failure is the caller's to report."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503)

    async with client_for(handler, get_retry_delay=0) as client:
        assert (await client.list_product_videos()).kind == "unknown"
    assert calls == ["/v2/product_videos"] * 3


async def dripping_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, every: float = 0.05
) -> None:
    """Takes a request, promises a big body, then sends one byte every `every` seconds."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
    writer.write(b"content-length: 10000000\r\n\r\n")
    try:
        while True:
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(every)
    except (ConnectionError, asyncio.CancelledError):
        writer.close()


@pytest.mark.anyio
async def test_an_answer_that_drips_forever_ends_unknown_at_the_total_deadline() -> None:
    """A byte every 50 ms never trips the 200 ms read timeout; the request's total deadline
    (connect + pool + 2 x read) ends it, and a POST so cut is unknown, not resent."""
    server = await asyncio.start_server(dripping_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    timeouts = Timeouts(connect=0.1, read=0.2, pool=0.1)
    started = time.monotonic()
    async with server, JoggClient(f"http://127.0.0.1:{port}", KEY, timeouts=timeouts) as client:
        outcome = await asyncio.wait_for(client.create_video({"product_id": "P"}), 5)
    assert 0.5 < time.monotonic() - started < 2
    assert outcome.kind == "unknown"
    assert "total deadline" in outcome.message
    assert timeouts.total() == pytest.approx(0.6)


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "kind"), [(200, "unknown"), (400, "permanent")])
async def test_an_oversized_answer_is_read_only_up_to_the_cap_and_is_malformed(
    status: int, kind: str
) -> None:
    """A 50 MB answer to a create stops being read past 64 KiB: malformed, so a 200 is unknown."""
    served: list[int] = []

    async def endless_spaces() -> AsyncIterator[bytes]:
        chunk = b" " * 1_000_000
        for _ in range(50):
            served.append(len(chunk))
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=endless_spaces())

    outcome = await create_with(handler)
    assert outcome.kind == kind
    assert "larger than 65536 bytes" in outcome.message
    assert sum(served) <= 2_000_000


@pytest.mark.anyio
async def test_a_listing_page_may_be_larger_than_a_create_answer() -> None:
    """Listing pages get a bigger cap than single answers: a 1 MB page is read whole."""
    videos = [{"id": f"v{i}", "title": "t" * 10_000} for i in range(100)]
    page = envelope(0, "ok", {"videos": videos, "total": 100})
    async with client_for(answering(200, page)) as client:
        outcome = await client.list_product_videos()
        assert outcome.kind == "ok"
        assert (await client.whoami()).kind == "unknown"  # the same size is no whoami answer


def test_a_failure_names_the_proxy_the_environment_sends_requests_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection refused may be the proxy's: the account check's message names it (its
    password masked) and the variable it came from; not when NO_PROXY or loopback skips it."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://team:pw@127.0.0.1:9")
    client = JoggClient("https://api.example.test", "sk-test")
    assert client.proxy_note() == ", through the proxy http://***@127.0.0.1:9 (HTTPS_PROXY)"
    assert JoggClient("http://127.0.0.1:8787", "sk-test").proxy_note() == ""
    monkeypatch.setenv("NO_PROXY", "example.test")
    assert client.proxy_note() == ""
