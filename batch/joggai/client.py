"""The JoggAI v2 HTTP client: requests, envelope parsing and outcome classification.

It knows nothing of catalogs, state or rate limits. Every call returns an `ApiOutcome` and never
raises for HTTP or network trouble; the outcome's `kind` tells the caller what may be done next:

- `ok`: body code 0 on a 2xx.
- `permanent`: the API said no to this request (40000, 10104, or HTTP 400/404 and other 4xx
  without a code); sending it again is waste.
- `account`: key, plan or credit problem (10105, 18020, 18025, HTTP 401/402/403); no request on
  this key can succeed, so the run stops.
- `retryable`: 429 (body code or HTTP status): the rate limiter refused the request before the
  API looked at it, so it may be sent again after the `retry_after` hint or a backoff.
- `unknown`: the server may have accepted (and charged for) the request: 50000 and every HTTP
  5xx (a server can commit and then fail while answering, and a proxy's 502 says nothing of the
  backend), a business code the reference does not document (nothing says what it did), read
  timeouts, a connection dropped after sending, a broken or malformed body. The
  caller must reconcile before it resends; only answers that prove the request was not processed
  (`retryable`, `not_sent`, `permanent`, `account`) allow a direct resend or a final verdict.
- `not_sent`: the request certainly never left (connect error or timeout, no pooled connection).

Every request has a total deadline (`Timeouts.total`): a server that drips its answer a byte at a
time never trips a per-read timeout, and would otherwise hold the run for ever. An answer is read
up to a size cap and no further: `ANSWER_CAP` for a single envelope (a create, a status, the
account), `PAGE_CAP` for a listing page. A request cut by the deadline is `unknown` (like a read
timeout); a body past its cap is malformed (so a 2xx is `unknown`, like any unusable 200 body).

Both conventions are understood: HTTP 200 with a business code in the body (JoggAI's documented
style) and real HTTP status codes. A non-zero body code decides over the status, except for 504.
The API key is sent as `x-api-key` and never appears in a repr, a log line or an outcome.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx

from batch import untrusted
from batch.errors import ConfigError
from batch.logs import escape_controls
from batch.secret import Secret, checked_key, masked_url
from batch.version import __version__
from batch.vocabulary import ACCOUNT_CODES, PERMANENT_CODES, RETRYABLE_CODES, Code

log = logging.getLogger(__name__)

OutcomeKind = Literal["ok", "retryable", "permanent", "account", "unknown", "not_sent"]
Params = Mapping[str, str | int | None]

_ACCOUNT_STATUSES = frozenset({401, 402, 403})
# GET outcomes worth asking again: nothing says the answer would be the same.
_TRANSIENT = frozenset({"unknown", "retryable", "not_sent"})
GET_ATTEMPTS = 3
# An answer envelope is under a few KB: 64 KiB leaves an order of magnitude for verbose servers.
ANSWER_CAP = 64 * 1024
# A listing page holds up to 100 items (videos, avatars, voices...) of a few KB each at most.
PAGE_CAP = 8 * 1024 * 1024
# The request never left the machine: safe to send again.
_NOT_SENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `product_read` is for POST /v2/product, which scrapes a page before answering."""

    connect: float = 10.0
    read: float = 60.0
    product_read: float = 120.0
    pool: float = 10.0

    def as_httpx(self, *, read: float | None = None) -> httpx.Timeout:
        """The httpx form; writes get the read budget (a body is small, a slow server is not)."""
        chosen = self.read if read is None else read
        return httpx.Timeout(connect=self.connect, read=chosen, write=chosen, pool=self.pool)

    def total(self, *, read: float | None = None) -> float:
        """The whole request's deadline, from asking for a connection to the answer's last byte:

            total = pool + connect + 2 * read

        a connection, then one read budget to send the body and one for the whole answer. The
        per-phase timeouts all fit inside it, so a request cut by it may have been sent (it is
        `unknown`); with the defaults, 140 s (260 s for POST /v2/product).
        """
        chosen = self.read if read is None else read
        return self.pool + self.connect + 2 * chosen


# A gateway's answers for a server it could not get one from (the request may still be queued).
_GATEWAY_STATUSES: Final = (502, 504)


@dataclass(frozen=True, slots=True)
class ApiOutcome:
    """What one API call came to; see the module docstring for the kinds."""

    kind: OutcomeKind
    code: int | None = None
    message: str = ""
    http_status: int | None = None
    data: dict[str, Any] | None = None
    retry_after: float | None = None
    rate_remaining: int | None = None
    elapsed: float = 0.0
    server_date: float | None = None  # the answer's HTTP `Date` (unix seconds), when it has one

    @property
    def video_id(self) -> str | None:
        """The id of the video a create made (`create_video` puts it in `data["video_id"]`)."""
        value = (self.data or {}).get("video_id")
        return str(value) if value else None

    @property
    def answered(self) -> bool:
        """Whether the request's fate is known to the server's rate window: the server itself
        answered, or the request never left. Not after a timeout or a reset, nor a gateway's
        502 or 504: the request may wait there, or in a stalled server, and be taken later."""
        if self.http_status is None:
            return self.kind == "not_sent"
        return self.http_status not in _GATEWAY_STATUSES

    @property
    def rate_limited(self) -> bool:
        """The server said 429, in the body or the status line."""
        return self.code == Code.RATE_LIMITED or self.http_status == 429

    def __str__(self) -> str:
        parts: list[str] = [self.kind]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        return f"{' '.join(parts)}: {self.message}" if self.message else " ".join(parts)


@dataclass(slots=True)
class _Answer:
    """Envelope fields pulled out of a response, before classification."""

    code: int | None = None
    message: str = ""
    data: dict[str, Any] | None = None
    malformed: str = ""  # why the body is not a usable envelope, when it is not
    body_retry_after: float | None = None


def classify_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    now: float,
    larger_than: int | None = None,
) -> ApiOutcome:
    """Turn a complete HTTP response into an outcome (`now`: wall clock, for HTTP-date hints).

    `larger_than`: the body went past this cap and was not read; it is a malformed body.
    """
    if larger_than is not None:
        answer = _Answer(malformed=f"the body is larger than {larger_than} bytes")
    else:
        answer = _parse_envelope(content)
    kind = _kind(status, answer)
    message = answer.message or answer.malformed or f"HTTP {status}"
    if 300 <= status < 400 and (location := headers.get("location")):
        # Redirects are not followed (a POST re-sent elsewhere could be paid twice): say where,
        # so that the base URL can be set to it.
        message = f"redirected to {location}, not followed; set the base URL to the API's own"
    # The message reaches the state, the results file and terminals: no escape sequence in it.
    message = escape_controls(message)
    header_hint = _parse_retry_after(headers.get("retry-after"), now=now)
    return ApiOutcome(
        kind=kind,
        code=answer.code,
        message=message,
        http_status=status,
        data=answer.data,
        retry_after=header_hint if header_hint is not None else answer.body_retry_after,
        rate_remaining=_parse_count(headers.get("x-ratelimit-remaining")),
        server_date=_parse_http_date(headers.get("date")),
    )


def _kind(status: int, answer: _Answer) -> OutcomeKind:
    if status >= 500:
        # Whatever the body says, a 5xx may follow a commit: a gateway's 503 over an answer
        # it lost, with a rate limit's body code (429) from a retry of its own, included.
        return "unknown"
    code = answer.code
    if code is not None and code != Code.OK:
        if code in ACCOUNT_CODES:
            return "account"
        if code in RETRYABLE_CODES:
            return "retryable"
        if code in PERMANENT_CODES:
            return "permanent"
        # 50000 (the docs do not say the request was rolled back) and every undocumented code
        # (a server seen creating the video and answering 50001): it may have been accepted.
        return "unknown"
    if 200 <= status < 300:
        return "ok" if code == Code.OK and not answer.malformed else "unknown"
    if code == Code.OK:
        return "unknown"  # success in the body, an error in the status: nothing is proven
    if status == 429:
        return "retryable"
    if status in _ACCOUNT_STATUSES:
        return "account"
    if 400 <= status < 500:
        return "permanent"
    return "unknown"  # other 5xx, 1xx, 3xx: nothing says the request was not processed


def _parse_envelope(content: bytes) -> _Answer:
    try:
        body = untrusted.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        return _Answer(malformed=f"the body is not JSON ({_preview(content)})")
    if not isinstance(body, dict):
        return _Answer(malformed=f"the body is not a JSON object ({_preview(content)})")
    answer = _Answer(message=str(body.get("msg") or ""))
    raw_data = body.get("data")
    if isinstance(raw_data, dict):
        answer.data = raw_data
    elif raw_data is not None:
        answer.malformed = "the envelope's data is not an object"
    answer.body_retry_after = parse_seconds(body.get("retryAfter"))
    if answer.body_retry_after is None and answer.data is not None:
        answer.body_retry_after = parse_seconds(answer.data.get("retryAfter"))
    raw_code = body.get("code")
    if isinstance(raw_code, bool) or raw_code is None:
        answer.malformed = answer.malformed or "the envelope has no code"
    elif isinstance(raw_code, int):
        answer.code = raw_code
    elif isinstance(raw_code, str) and (number := untrusted.whole_number(raw_code)) is not None:
        answer.code = number
    else:
        answer.malformed = f"the envelope's code {raw_code!r} is not a number"
    return answer


def _preview(content: bytes) -> str:
    if b"\0" in content:  # UTF-16 or binary: its text would slip past the key's scrubbing
        return f"{len(content)} bytes, not UTF-8 text"
    text = content[:80].decode("utf-8", "replace").replace("\n", " ").strip()
    return f"{len(content)} bytes: {text!r}"


def _parse_retry_after(value: str | None, *, now: float) -> float | None:
    """`Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    seconds = parse_seconds(value)
    if seconds is not None:
        return seconds
    moment = _parse_http_date(value)
    return None if moment is None else max(0.0, moment - now)


def _parse_http_date(value: str | None) -> float | None:
    """An HTTP date (RFC 9110 §5.6.7) as unix seconds; None when it is not one."""
    if value is None:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    return moment.timestamp()


def parse_seconds(value: object) -> float | None:
    """A number of seconds (or unix time) as a server may spell it; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _parse_count(value: str | None) -> int | None:
    """A count a header gives; None for none, and for a malformed one (`lots`, `-7`), which
    says nothing of the server's window (taken as 0, it would hold every send a window)."""
    if value is None:
        return None
    try:
        count = int(value.strip())
    except ValueError:
        return None
    return count if count >= 0 else None


class JoggClient:
    """`async with JoggClient(base_url, api_key) as client:`; every method returns an ApiOutcome.

    `base_url` is the host without `/v2` (the paths carry it), e.g. `https://api.jogg.ai`. Plain
    http is refused (the key would cross the network in clear) unless the host is loopback or
    a `transport` is injected (an in-process server: nothing goes on the network).
    """

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str,
        *,
        timeouts: Timeouts = Timeouts(),
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        get_retry_delay: float = 0.5,
    ) -> None:
        if not api_key:
            raise ConfigError("the API key is empty; set JOGG_API_KEY")
        secret = checked_key(api_key, "the API key") if isinstance(api_key, str) else api_key
        url = parse_base_url(base_url, secret)
        if url.scheme == "http" and transport is None and not _is_loopback(url.host):
            raise ConfigError(
                secret.scrub_config(
                    f"base URL {base_url!r}: plain http would send the API key in clear; "
                    "use https (http is accepted for loopback addresses only)"
                )
            )
        self.base_url = base_url.rstrip("/")
        # Told when the server answers a request, with when it was sent (time.monotonic()).
        self.on_answer: Callable[[float], None] = lambda sent: None
        self.timeouts = timeouts
        self.get_retry_delay = get_retry_delay
        self._api_key = secret
        try:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers={
                    "x-api-key": secret.reveal(),
                    "user-agent": f"jogg-batch/{__version__}",
                    "accept": "application/json",
                },
                timeout=timeouts.as_httpx(),
                transport=transport,
                # A proxy from the environment (HTTP_PROXY, ALL_PROXY) would take a loopback
                # server's plain-http requests, the key in their header, across the network.
                trust_env=not _is_loopback(url.host),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            )
        except ImportError:  # httpx without socksio, and ALL_PROXY=socks5://... in the environment
            raise ConfigError(
                "the environment names a SOCKS proxy (ALL_PROXY or HTTPS_PROXY), and reaching "
                "the API through one needs the socksio package: pip install 'httpx[socks]' "
                "beside jogg-batch, or unset the variable for it"
            ) from None
        except (httpx.InvalidURL, ValueError):
            # httpx's message quotes the proxy URL's pieces: a password holding `/` is read as
            # its port (`Invalid port: 'pass'`). Neither it nor its traceback is shown.
            raise ConfigError(
                "a proxy the environment names (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not a "
                "URL httpx can use (http://host:port; a password's `/`, `?`, `#` or `@` "
                "percent-encoded); correct or unset it: nothing was sent"
            ) from None
        self._check_proxy_port()

    def __repr__(self) -> str:
        return f"JoggClient(base_url={self.base_url!r}, api_key='***')"

    def proxy_note(self) -> str:
        """`, through the proxy ... (HTTPS_PROXY)` when the environment sends the requests
        through one (for a message about a failure, which may be the proxy's), else ``."""
        found = self._proxy()
        return "" if found is None else f", through the proxy {masked_url(found[0])} ({found[1]})"

    def _proxy(self) -> tuple[str, str] | None:
        """The proxy the environment sends the API's requests through, and its variable."""
        url = httpx.URL(self.base_url)
        bypassed = urllib.request.proxy_bypass_environment(url.host)  # type: ignore[attr-defined]
        if _is_loopback(url.host) or bypassed:
            return None
        proxies = urllib.request.getproxies_environment()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if not proxy:
            return None
        return proxy, "ALL_PROXY" if url.scheme not in proxies else f"{url.scheme.upper()}_PROXY"

    def _check_proxy_port(self) -> None:
        """ConfigError for a proxy port past 65535, which httpx takes and fails on with a
        traceback (an OverflowError) at the first request."""
        found = self._proxy()
        if found is None:
            return
        proxy, source = found
        port = httpx.URL(proxy if "://" in proxy else f"http://{proxy}").port
        if port is not None and not 0 < port < 65536:
            raise ConfigError(
                f"the proxy in {source} ({masked_url(proxy)}) has port {port}; a port is 1 to "
                "65535: correct or unset it, nothing was sent"
            )

    async def __aenter__(self) -> JoggClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, traceback)

    async def aclose(self) -> None:
        await self._http.aclose()

    # POSTs (rate-limited by the caller, each may cost a credit)

    async def create_video(self, body: dict[str, Any]) -> ApiOutcome:
        """POST /v2/create_video_from_product; on `ok`, `data["video_id"]` is set.

        The id is read from `video_id`, else `product_video_id` (the URL-to-Video guide's name,
        reference §11.1). An `ok` answer carrying neither, or no id (`untrusted.video_id`), is
        `unknown`: the server accepted and charged, and only reconciliation can find the video.
        """
        outcome = await self._send("POST", "/v2/create_video_from_product", json_body=body)
        if outcome.kind != "ok":
            return outcome
        data = outcome.data or {}
        given = data.get("video_id") or data.get("product_video_id")
        if given is None:
            return replace(outcome, kind="unknown", message="accepted, but no video_id returned")
        video_id = untrusted.video_id(given)
        if video_id is None:
            shown = escape_controls(str(given)[:60])
            message = f"accepted, but the video_id returned ({shown!r}) is no JoggAI id"
            return replace(outcome, kind="unknown", message=message)
        return replace(outcome, data={**data, "video_id": video_id})

    async def create_product(self, body: dict[str, Any]) -> ApiOutcome:
        """POST /v2/product (slow: the server scrapes the page first); data has `product_id`."""
        return await self._send(
            "POST", "/v2/product", json_body=body, read=self.timeouts.product_read
        )

    # GETs (not rate-limited by the API)

    async def get_product_video(self, video_id: str) -> ApiOutcome:
        return await self._get(f"/v2/product_video/{quote(video_id, safe='')}", {})

    async def list_product_videos(
        self,
        page: int = 1,
        page_size: int = 100,
        status: int | None = None,
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> ApiOutcome:
        """GET /v2/product_videos; `status` is the list filter (3 processing, 4 done, 5 failed)."""
        params = {
            "page": page,
            "page_size": page_size,
            "status": status,
            "sort_by": "created_at",
            "sort_order": sort_order,
        }
        return await self._get("/v2/product_videos", params, cap=PAGE_CAP)

    async def whoami(self) -> ApiOutcome:
        return await self._get("/v2/user/whoami", {})

    async def remaining_quota(self) -> ApiOutcome:
        return await self._get("/v2/user/remaining_quota", {})

    async def avatars_public(
        self, page: int = 1, page_size: int = 100, aspect_ratio: str | None = None
    ) -> ApiOutcome:
        params = {"page": page, "page_size": page_size, "aspect_ratio": aspect_ratio}
        return await self._get("/v2/avatars/public", params, cap=PAGE_CAP)

    async def avatars_custom(
        self, page: int = 1, page_size: int = 100, name: str | None = None
    ) -> ApiOutcome:
        params = {"page": page, "page_size": page_size, "name": name}
        return await self._get("/v2/avatars/custom", params, cap=PAGE_CAP)

    async def voices(
        self, page: int = 1, page_size: int = 100, language: str | None = None
    ) -> ApiOutcome:
        params = {"page": page, "page_size": page_size, "language": language}
        return await self._get("/v2/voices", params, cap=PAGE_CAP)

    async def musics(self, page: int = 1, page_size: int = 100) -> ApiOutcome:
        params = {"page": page, "page_size": page_size}
        return await self._get("/v2/musics", params, cap=PAGE_CAP)

    async def visual_styles(self, aspect_ratio: str) -> ApiOutcome:
        return await self._get("/v2/visual_styles", {"aspect_ratio": aspect_ratio}, cap=PAGE_CAP)

    async def _get(self, path: str, params: Params, *, cap: int = ANSWER_CAP) -> ApiOutcome:
        """A GET, asked again after a transient failure (a GET changes nothing and costs no
        quota): up to GET_ATTEMPTS times, waiting `get_retry_delay` doubled each time, or the
        server's Retry-After (capped at 30 s)."""
        query = {name: value for name, value in params.items() if value is not None}
        for attempt in range(1, GET_ATTEMPTS + 1):
            outcome = await self._send("GET", path, params=query, cap=cap)
            if outcome.kind not in _TRANSIENT or attempt == GET_ATTEMPTS:
                return outcome
            hint = outcome.retry_after
            await asyncio.sleep(
                min(30.0, hint) if hint is not None else self.get_retry_delay * 2 ** (attempt - 1)
            )
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        read: float | None = None,
        cap: int = ANSWER_CAP,
    ) -> ApiOutcome:
        """One request, within `Timeouts.total` and reading at most `cap` bytes of answer."""
        started, sent = time.perf_counter(), time.monotonic()
        total = self.timeouts.total(read=read)
        try:
            async with asyncio.timeout(total):
                async with self._http.stream(
                    method,
                    path,
                    json=json_body,
                    params=params,
                    timeout=self.timeouts.as_httpx(read=read),
                ) as response:
                    content = await _read_capped(response, cap)
        except _NOT_SENT_ERRORS as error:
            outcome = self._failure("not_sent", error, started)
        except httpx.HTTPError as error:
            # Timeouts while reading, resets, protocol errors after the request went out.
            outcome = self._failure("unknown", error, started)
        except TimeoutError:
            # Every per-phase timeout fits in `total`: the request may have been sent.
            message = f"no complete answer within the request's total deadline of {total:g} s"
            outcome = ApiOutcome("unknown", message=message, elapsed=time.perf_counter() - started)
        else:
            # Scrubbed before parsing, so no preview or field can carry even part of the key.
            if content is not None:
                # (Latin-1 keeps every byte in place; the key is ASCII.)
                content = self._api_key.scrub(content.decode("latin-1")).encode("latin-1")
            outcome = classify_response(
                response.status_code,
                response.headers,
                content or b"",
                now=time.time(),
                larger_than=cap if content is None else None,
            )
            outcome = replace(
                outcome,
                message=self._scrub(outcome.message),
                data=self._scrub(outcome.data),
                elapsed=time.perf_counter() - started,
            )
            if outcome.answered:
                self.on_answer(sent)
        if outcome.kind != "ok":
            log.debug("%s %s -> %s", method, path, outcome)
        return outcome

    def _failure(self, kind: OutcomeKind, error: httpx.HTTPError, started: float) -> ApiOutcome:
        detail = str(error) or "no detail"
        return ApiOutcome(
            kind=kind,
            message=self._scrub(f"{type(error).__name__}: {detail}"),
            elapsed=time.perf_counter() - started,
        )

    def _scrub(self, value: Any) -> Any:
        """Servers and proxies sometimes echo request headers; the key must not travel on, in
        any spelling or piece (`Secret.scrub`). Every string of a parsed answer, keys
        included, however the JSON spelled it.
        """
        if isinstance(value, str):
            return self._api_key.scrub(value)
        if isinstance(value, dict):
            return {self._scrub(key): self._scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        return value


def parse_base_url(base_url: str, api_key: Secret | None) -> httpx.URL:
    """The base URL parsed, or ConfigError. A base URL may hold a piece of the key (pasted in
    the wrong setting, or built from it), which httpx's errors quote: the message is scrubbed of
    even short pieces (`Secret.scrub_config`), and httpx's own error is not chained to it."""
    scrub = api_key.scrub_config if api_key else str
    shown = masked_url(base_url)  # a password in it is never repeated
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        # httpx quotes the URL's pieces: a password holding `/` or `#` is read as the port.
        detail = "" if shown != base_url else f" ({exc})"
        problem = f"base URL {shown!r} is not a valid URL{detail}"
    else:
        if url.scheme not in ("http", "https") or not url.host:
            problem = f"base URL {shown!r} is not an http(s) URL with a host"
        elif url.port is not None and not 0 < url.port < 65536:
            problem = f"base URL {shown!r} has port {url.port}; a port is 1 to 65535"
        elif api_key is not None and api_key.scrub(base_url) != base_url:
            # Requests are logged by their URL (httpx, at INFO): the key would go with them.
            problem = (
                f"base URL {shown!r} holds the API key; leave it out (the key goes in JOGG_API_KEY)"
            )
        elif url.userinfo:
            # The URL is kept in the look-ups' cache and named in messages: no credential
            # belongs in it (the key goes in a header).
            problem = (
                f"base URL {shown!r} holds a user name or password before its host; "
                "leave them out (the key goes in JOGG_API_KEY)"
            )
        elif url.query or url.fragment:
            # The same, for a token in a query (`?api_key=...`): JoggAI's base URL has none.
            problem = (
                f"base URL {shown!r} holds a query or a fragment; leave it out (the API's "
                "base URL is its scheme, host and path, and the key goes in JOGG_API_KEY)"
            )
        else:
            return url
    raise ConfigError(scrub(problem))


async def _read_capped(response: httpx.Response, cap: int) -> bytes | None:
    """The (decoded) body, or None as soon as it goes past `cap` bytes: the rest is not read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
