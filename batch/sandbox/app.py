"""The Starlette app: the JoggAI v2 endpoints, the `/_sandbox/` inspection routes, the checks.

Order of checks on a POST: API key (10105) -> permission (18025) -> rate limit (429) -> fault
draw (reset, bad gateway, fail act here; see faults.py) -> body validation (40000, 10104) ->
credits (18020) -> record and charge (a late commit defers this and waits for it) -> stall or
commit-then-error, if drawn. GETs check the key and permission only.

Before any request is handled, deferred (late) commits that are due are settled (store.py), and
the served app's lifespan settles them every `SETTLE_SECONDS` too. `listing_lag_seconds` hides
videos younger than that from `GET /v2/product_videos` only; `listing_title` shapes `title` in
both the listing and `GET /v2/product_video/{id}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from batch.sandbox import catalogs
from batch.sandbox.config import SandboxConfig
from batch.sandbox.faults import (
    BEFORE_BODY,
    TRANSPORT_KEY,
    VIDEO_ONLY,
    CommitError,
    Fault,
    FaultDraw,
    drop_connection,
)
from batch.sandbox.media import media_response
from batch.sandbox.ratelimit import SlidingWindow
from batch.sandbox.store import NO_CREDIT_MSG, RENDER_ERROR, Store
from batch.sandbox.validation import Rejected, check_create_product, check_create_video
from batch.sandbox.webhooks import WebhookSender
from batch.vocabulary import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, LIST_STATUS_FILTER, Code

log = logging.getLogger(__name__)

REMAINING: Final = "X-RateLimit-Remaining"
HTTP_STATUS: Final = {
    Code.OK: 200,
    Code.INVALID_KEY: 401,
    Code.NO_PERMISSION: 403,
    Code.NO_CREDIT: 402,
    Code.PARAMETER: 400,
    Code.NOT_FOUND: 404,
    Code.RATE_LIMITED: 429,
    Code.SYSTEM: 500,
}
BAD_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
INTERNAL_ERROR_HTML: Final = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
SETTLE_SECONDS: Final = 0.05  # how often a waiting late commit (and the lifespan) looks again
_RATIO_INDEX: Final = {"portrait": 0, "landscape": 1, "square": 2}

Data = dict[str, Any]


class SandboxApp(Starlette):
    """Starlette, plus the raw uvicorn transport in the scope so a fault can abort the socket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[TRANSPORT_KEY] = getattr(getattr(send, "__self__", None), "transport", None)
        await super().__call__(scope, receive, send)


class _Api:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config)
        self.limiter = SlidingWindow(config.rate_limit) if config.rate_limit else None
        self.faults = FaultDraw(config)
        self._latency = random.Random(f"{config.seed}:latency")
        self.known_keys = frozenset(config.api_keys) | frozenset(config.no_permission_keys)

    # --- envelope and checks -------------------------------------------------------------

    def envelope(
        self, code: Code, msg: str, data: Data | None, headers: dict[str, str]
    ) -> Response:
        status = HTTP_STATUS[code] if self.config.http_status_codes else 200
        rid = f"{random.getrandbits(128):032x}"  # request ids need not replay, so not seeded
        body = {"rid": rid, "code": int(code), "msg": msg, "data": data}
        return JSONResponse(body, status_code=status, headers=headers)

    def reject(self, code: Code, msg: str, headers: dict[str, str]) -> Response:
        self.store.counts.rejected[int(code)] += 1
        return self.envelope(code, msg, None, headers)

    def key_problem(self, request: Request) -> Rejected | None:
        key = request.headers.get("x-api-key")
        if key not in self.known_keys:
            return Rejected(Code.INVALID_KEY, "Invalid API key: send a valid x-api-key header")
        if key in self.config.no_permission_keys:
            return Rejected(Code.NO_PERMISSION, "No permission to call APIs on this plan")
        return None

    async def simulate_latency(self) -> None:
        low, high = self.config.latency_ms
        if high:
            await asyncio.sleep(self._latency.uniform(low, high) / 1000)

    async def get(self, request: Request, action: Callable[[Request], Data]) -> Response:
        await self.simulate_latency()
        self.store.settle()
        problem = self.key_problem(request)
        try:
            if problem:
                raise problem
            return self.envelope(Code.OK, "Success", action(request), {})
        except Rejected as rejected:
            return self.reject(rejected.code, rejected.msg, {})

    async def post(
        self,
        request: Request,
        action: Callable[[Request, object], Awaitable[Data]],
        *,
        creates_video: bool = False,
    ) -> Response:
        await self.simulate_latency()
        self.store.settle()
        now = self.config.clock()
        key = request.headers.get("x-api-key", "")
        headers: dict[str, str] = {}
        problem = self.key_problem(request)
        if problem:
            if self.limiter:
                known = problem.code == Code.NO_PERMISSION
                left = self.limiter.remaining(key, now) if known else self.limiter.limit.count
                headers[REMAINING] = str(left)
            return self.reject(problem.code, problem.msg, headers)
        if self.limiter:
            admission = self.limiter.admit(key, now)
            headers[REMAINING] = str(admission.remaining)
            if not admission.admitted:
                self.store.counts.rate_limited += 1
                headers["Retry-After"] = str(admission.retry_after)
                msg = "Rate limit exceeded. Please try again later."
                return self.envelope(Code.RATE_LIMITED, msg, None, headers)
        fault = self.faults.next()
        if fault in BEFORE_BODY:
            return await self.fault_before_commit(request, fault, headers)
        if fault in VIDEO_ONLY and not creates_video:
            fault = None
        try:
            body = await request.json()
        except ValueError:
            return self.reject(Code.PARAMETER, "Parameter error: body is not valid JSON", headers)
        try:
            if fault is Fault.LATE_COMMIT:
                outcome = await self.create_video_late(request, body)
                if isinstance(outcome, Rejected):  # the store counted it when it settled
                    return self.envelope(outcome.code, outcome.msg, None, headers)
                data = outcome
            else:
                data = await action(request, body)
        except Rejected as rejected:
            return self.reject(rejected.code, rejected.msg, headers)
        if creates_video and fault in (Fault.STALL, Fault.COMMIT_THEN_ERROR):
            self.store.videos[data["video_id"]].fault = fault.value
        if fault is Fault.COMMIT_THEN_ERROR:
            return self.error_after_commit(headers)
        if fault is Fault.STALL:
            self.store.counts.faulted["stall"] += 1
            log.info("stall fault: committed, withholding the answer for %gs",
                     self.config.stall_seconds)  # fmt: skip
            await asyncio.sleep(self.config.stall_seconds)
            await drop_connection(request.scope)
        return self.envelope(Code.OK, "Success", data, headers)

    async def fault_before_commit(
        self, request: Request, fault: Fault, headers: dict[str, str]
    ) -> Response:
        self.store.counts.faulted[fault.value] += 1
        log.info("%s fault on %s", fault.value, request.url.path)
        if fault is Fault.RESET:
            await drop_connection(request.scope)
        if fault is Fault.FAIL:
            return self.envelope(Code.SYSTEM, "System error", None, headers)
        return HTMLResponse(BAD_GATEWAY_HTML, status_code=502, headers=headers)

    def error_after_commit(self, headers: dict[str, str]) -> Response:
        """The commit_then_error fault's answer: the video exists, the client hears an error."""
        self.store.counts.faulted["commit_then_error"] += 1
        kind = self.faults.commit_error()
        log.info("commit_then_error fault: committed, answering %s", kind.value)
        if kind is CommitError.CODE_50000:
            return self.envelope(Code.SYSTEM, "System error", None, headers)
        if kind is CommitError.HTML_500:
            return HTMLResponse(INTERNAL_ERROR_HTML, status_code=500, headers=headers)
        if kind is CommitError.HTML_502:
            return HTMLResponse(BAD_GATEWAY_HTML, status_code=502, headers=headers)
        return Response(b"", status_code=503, headers=headers)

    # --- POST actions ---------------------------------------------------------------------

    def check_create_video(self, body: object) -> dict[str, Any]:
        check_create_video(body, self.store.product_exists)
        assert isinstance(body, dict)
        if self.store.credits_left < 1:
            raise Rejected(Code.NO_CREDIT, NO_CREDIT_MSG)
        return body

    async def create_video(self, request: Request, body: object) -> Data:
        payload = self.check_create_video(body)
        base_url = str(request.base_url).rstrip("/")
        webhook_url = payload.get("webhook_url")
        video = self.store.add_video(payload, self.config.clock(), base_url, webhook_url)
        log.debug("accepted video %s for product %s", video.video_id, video.product_id)
        return {"video_id": video.video_id, "status": "processing"}

    async def create_video_late(self, request: Request, body: object) -> Data | Rejected:
        """The late_commit fault: validate now, commit `late_commit_seconds` after arrival.

        The commit is left to the store (settled on every request and by the lifespan task),
        so cancelling this coroutine, as a client that hangs up may, does not prevent it.
        Returns the answer's data, or the store's refusal at commit time (credits ran out, or
        the sandbox was reset); raises Rejected for a body refused on arrival.
        """
        payload = self.check_create_video(body)
        received_at = self.config.clock()
        deferred = self.store.defer_video(
            payload,
            received_at,
            received_at + self.config.late_commit_seconds,
            str(request.base_url).rstrip("/"),
            payload.get("webhook_url"),
        )
        self.store.counts.faulted["late_commit"] += 1
        log.info("late_commit fault: answer and commit held back %gs",
                 self.config.late_commit_seconds)  # fmt: skip
        while deferred.outcome is None:
            wait = deferred.commit_at - self.config.clock()
            await asyncio.sleep(min(SETTLE_SECONDS, max(wait, 0.0)))
            self.store.settle()
        if isinstance(deferred.outcome, Rejected):
            return deferred.outcome
        return {"video_id": deferred.outcome.video_id, "status": "processing"}

    async def create_product(self, request: Request, body: object) -> Data:
        fields = check_create_product(body)
        if self.config.product_delay_seconds:
            await asyncio.sleep(self.config.product_delay_seconds)  # the real call scrapes the page
        return self.store.add_product(fields)

    # --- GET actions ----------------------------------------------------------------------

    def video_status(self, request: Request) -> Data:
        video_id = request.path_params["video_id"]
        video = self.store.videos.get(video_id)
        if video is None:
            raise Rejected(Code.NOT_FOUND, f"Record not found: product video {video_id!r}")
        status = self.store.status_of(video)
        done = status == "completed"
        data: Data = {
            "id": video.video_id,
            "title": self.store.title_of(video),
            "video_url": video.video_url if done else "",
            "cover_url": video.cover_url if done else "",
            "status": status,
            "created_at": int(video.created_at),
            "deducted_credit": 1.0,
            "duration": video.duration if done else 0.0,
        }
        if status == "failed":
            data["error"] = dict(RENDER_ERROR)
        return data

    def list_videos(self, request: Request) -> Data:
        page, page_size = _paging(request)
        status_filter = request.query_params.get("status")
        videos = list(self.store.videos.values())
        if self.config.listing_lag_seconds:
            now = self.config.clock()
            lag = self.config.listing_lag_seconds
            videos = [video for video in videos if now - video.created_at >= lag]
        if status_filter is not None:
            wanted = LIST_STATUS_FILTER.get(_int_param(status_filter, "status"))
            if wanted is None:
                raise Rejected(Code.PARAMETER, "Parameter error: status must be 3, 4 or 5")
            videos = [video for video in videos if self.store.status_of(video) == wanted]
        order = request.query_params.get("sort_order", "desc")
        if order not in ("asc", "desc"):
            raise Rejected(Code.PARAMETER, "Parameter error: sort_order must be asc or desc")
        videos.sort(key=lambda video: video.created_at, reverse=order == "desc")
        items = []
        for video in videos[(page - 1) * page_size : page * page_size]:
            status = self.store.status_of(video)
            done = status == "completed"
            items.append(
                {
                    "id": video.video_id,
                    "title": self.store.title_of(video),
                    "video_duration": video.duration if done else 0.0,
                    "video_url": video.video_url if done else "",
                    "cover_url": video.cover_url if done else "",
                    "status": status,
                    "created_at": int(video.created_at),
                }
            )
        return {"videos": items, "total": len(videos), "page": page, "page_size": page_size}

    def public_avatars(self, request: Request) -> Data:
        page, page_size = _paging(request)
        avatars = list(catalogs.PUBLIC_AVATARS)
        ratio = request.query_params.get("aspect_ratio")
        if ratio is not None:
            avatars = [a for a in avatars if a.aspect_ratio == _RATIO_INDEX.get(ratio, -1)]
        for name in ("style", "gender", "age", "scene", "ethnicity"):
            wanted = request.query_params.get(name)
            if wanted is not None:
                avatars = [a for a in avatars if getattr(a, name) == wanted]
        chosen = avatars[(page - 1) * page_size : page * page_size]
        return {"avatars": [avatar.public_item() for avatar in chosen]}

    def custom_avatars(self, request: Request) -> Data:
        page, page_size = _paging(request)
        name = request.query_params.get("name", "").lower()
        avatars = [a for a in catalogs.CUSTOM_AVATARS if name in a.name.lower()]
        if request.query_params.get("status") not in (None, "completed"):
            avatars = []  # every sandbox custom avatar is ready
        chosen = avatars[(page - 1) * page_size : page * page_size]
        return {"avatars": [avatar.custom_item() for avatar in chosen]}

    def voices(self, request: Request) -> Data:
        page, page_size = _paging(request)
        voices = list(catalogs.VOICES)
        for name in ("gender", "language", "age", "use_case"):
            wanted = request.query_params.get(name)
            if wanted is not None:
                voices = [voice for voice in voices if getattr(voice, name) == wanted]
        chosen = voices[(page - 1) * page_size : page * page_size]
        has_more = page * page_size < len(voices)
        return {"voices": [voice.item() for voice in chosen], "has_more": has_more}

    def musics(self, request: Request) -> Data:
        page, page_size = _paging(request)
        total = len(catalogs.MUSIC)
        return {
            "music": list(catalogs.MUSIC[(page - 1) * page_size : page * page_size]),
            "pagination": {
                "page": page,
                "page_size": page_size,
                "total_items": total,
                "total_pages": math.ceil(total / page_size),
            },
        }

    def visual_styles(self, request: Request) -> Data:
        ratio = request.query_params.get("aspect_ratio", DEFAULT_ASPECT_RATIO)
        if ratio not in ASPECT_RATIOS:
            raise Rejected(Code.PARAMETER, f"Parameter error: aspect_ratio {ratio!r} is unknown")
        return {"visual_styles": [dict(style) for style in catalogs.VISUAL_STYLES[ratio]]}

    def whoami(self, request: Request) -> Data:
        return {"email": "sandbox@example.com", "username": "sandbox"}

    def remaining_quota(self, request: Request) -> Data:
        return {"remaining_quota": float(self.store.credits_left)}

    # --- outside /v2/ -------------------------------------------------------------------

    def media(self, request: Request) -> Response:
        self.store.settle()
        video_id, _, extension = request.path_params["filename"].partition(".")
        video = self.store.videos.get(video_id)
        ready = video is not None and self.store.status_of(video) == "completed"
        if not ready or extension not in ("mp4", "jpg"):
            return Response("no such media", status_code=404, media_type="text/plain")
        return media_response(video_id, extension, request.headers.get("range"))


def _int_param(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Rejected(Code.PARAMETER, f"Parameter error: {name} must be an integer") from None


def _paging(request: Request) -> tuple[int, int]:
    page = _int_param(request.query_params.get("page", "1"), "page")
    page_size = _int_param(request.query_params.get("page_size", "10"), "page_size")
    if page < 1:
        raise Rejected(Code.PARAMETER, "Parameter error: page must be >= 1")
    if not 1 <= page_size <= 100:
        raise Rejected(Code.PARAMETER, "Parameter error: page_size must be between 1 and 100")
    return page, page_size


def create_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox as an ASGI app; state lives in the app, so each call starts fresh."""
    api = _Api(config or SandboxConfig())

    def get(action: Callable[[Request], Data]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await api.get(request, action)

        return endpoint

    def post(
        action: Callable[[Request, object], Awaitable[Data]], *, creates_video: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await api.post(request, action, creates_video=creates_video)

        return endpoint

    async def submissions(request: Request) -> Response:
        api.store.settle()
        return JSONResponse(api.store.inspection())

    async def reset(request: Request) -> Response:
        api.store.clear()
        if api.limiter:
            api.limiter.clear()
        return JSONResponse({"reset": True})

    async def media(request: Request) -> Response:
        return api.media(request)

    async def settle_late_commits() -> None:
        """Commit late creates on time even when no request comes in to settle them."""
        while True:
            api.store.settle()
            await asyncio.sleep(SETTLE_SECONDS)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(WebhookSender(api.config, api.store).run()),
            asyncio.create_task(settle_late_commits()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    routes = [
        Route(
            "/v2/create_video_from_product",
            post(api.create_video, creates_video=True),
            methods=["POST"],
        ),
        Route("/v2/product", post(api.create_product), methods=["POST"]),
        Route("/v2/product_video/{video_id}", get(api.video_status)),
        Route("/v2/product_videos", get(api.list_videos)),
        Route("/v2/avatars/public", get(api.public_avatars)),
        Route("/v2/avatars/custom", get(api.custom_avatars)),
        Route("/v2/voices", get(api.voices)),
        Route("/v2/musics", get(api.musics)),
        Route("/v2/visual_styles", get(api.visual_styles)),
        Route("/v2/user/whoami", get(api.whoami)),
        Route("/v2/user/remaining_quota", get(api.remaining_quota)),
        Route("/_sandbox/submissions", submissions),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/media/{filename}", media),
    ]
    return SandboxApp(routes=routes, lifespan=lifespan)
