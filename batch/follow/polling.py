"""Final render status of submitted videos: normalising what the API says, and polling politely.

Owns the `VideoStatusSink` contract (what the state store offers to status polling and to the
webhook listener), the `VideoUpdate` record both of them produce, the per-video poll schedule, and
`poll()`, which asks `GET /v2/product_video/{id}` about every submitted video not yet final.

GETs are not rate-limited by JoggAI, but its status guide asks clients not to hammer them, so
`poll()` keeps at most `concurrency` requests in flight and checks each video on its own schedule
(`PollSchedule`). Without `wait`, one pass checks every pending video once, whatever its schedule:
a person who runs `status` once expects an answer about each of them, now. Both end at `timeout`
when it is given: a server that trickles its answers must not hold a cron job for ever.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from batch import untrusted
from batch.errors import AccountError, ExitCode
from batch.logs import escape_controls
from batch.store.records import PendingVideo, VideoStatus, VideoUpdate
from batch.vocabulary import ACCOUNT_CODES, Code

log = logging.getLogger(__name__)


_COMPLETED = frozenset({"completed", "complete", "success", "succeeded", "successful", "done"})
_FAILED = frozenset({"failed", "failure", "error", "errored", "cancelled", "canceled"})
_PROCESSING = frozenset({"processing", "pending", "queued", "running", "rendering", "in_progress"})
_unknown_seen: set[str] = set()
# How long after its acceptance a video the API answers "not found" (10104) for is still asked
# again: nothing documents that a new id is visible at once, and one answer must not be a final
# verdict (`retry` would then be told to pay again for a render that finished).
NOT_FOUND_AFTER: Final = 24 * 3600.0


def normalize_video_status(raw: object) -> VideoStatus:
    """Any spelling seen in the wild -> processing | completed | failed.

    Unknown values count as processing (never final, so nothing is lost) and are logged once.
    """
    text = str(raw).strip().lower() if raw is not None else ""
    if text in _COMPLETED:
        return "completed"
    if text in _FAILED:
        return "failed"
    # Kept cut short, and only so many: a server sending a new long status in each answer
    # would otherwise grow the set and the log by every answer.
    key = text[:_STATUS_KEPT]
    if text not in _PROCESSING and key not in _unknown_seen and len(_unknown_seen) < _UNKNOWN_KEPT:
        _unknown_seen.add(key)
        written = str(raw).strip()
        shown = written[:_STATUS_KEPT] + ("..." if len(written) > _STATUS_KEPT else "")
        log.warning("unknown video status %r, treated as processing", shown)
    return "processing"


_STATUS_KEPT: Final = 40
_UNKNOWN_KEPT: Final = 100


@runtime_checkable
class VideoStatusSink(Protocol):
    """What the state store offers to `poll()` and to the webhook listener."""

    def pending_videos(self) -> list[PendingVideo]:
        """Submitted videos not yet completed or failed."""
        ...

    def record_video_status(self, update: VideoUpdate) -> bool:
        """Stores the update; True when it changed something."""
        ...

    def claim_event(self, event_id: str) -> bool:
        """False when this webhook event_id was seen before."""
        ...


class LookupOutcome(Protocol):
    """The part of `batch.joggai.client.ApiOutcome` that polling reads."""

    @property
    def kind(self) -> str: ...
    @property
    def code(self) -> object: ...
    @property
    def message(self) -> object: ...
    @property
    def data(self) -> object: ...


class VideoLookup(Protocol):
    """`batch.joggai.client.JoggClient` satisfies this."""

    def get_product_video(self, video_id: str) -> Awaitable[LookupOutcome]: ...


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # an integer past a float: no number
        return None
    return number if math.isfinite(number) else None


def error_text(data: Mapping[str, object]) -> str | None:
    """The failure reason in any known shape: error{code,message}, error as text, or err_msg;
    control characters written out (it reaches the results file and terminals)."""
    error = data.get("error")
    if isinstance(error, Mapping):
        code, message = _text(error.get("code")), _text(error.get("message"))
        text = f"{code}: {message}" if code and message else message or code
    else:
        text = _text(error) or _text(data.get("err_msg"))
    return None if text is None else escape_controls(text)


def video_update(
    video_id: str, data: Mapping[str, object], seen_at: float, status: VideoStatus | None = None
) -> VideoUpdate:
    """Builds an update from a status `data` dict or a webhook's `data` (same field names)."""
    return VideoUpdate(
        video_id=video_id,
        status=status or normalize_video_status(data.get("status")),
        video_url=untrusted.web_url(data.get("video_url")),
        cover_url=untrusted.web_url(data.get("cover_url")),
        duration=_number(data.get("duration", data.get("video_duration"))),
        deducted_credit=_number(data.get("deducted_credit")),
        error=error_text(data),
        seen_at=seen_at,
    )


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """When to check a video again, anchored at its submission (JoggAI's status guide).

    Checks happen at these ages (seconds since submission): `first`, then every `fast` seconds
    while the age is under `fast_until`, every `medium` seconds while under `medium_until`, then
    every `slow` seconds. Each phase continues from the last check of the previous one, so with
    the defaults the ages are 12, 22, 32, 42, 52, 62, 92, ..., 302, 362, 422, ...
    """

    first: float = 12.0
    fast: float = 10.0
    fast_until: float = 60.0
    medium: float = 30.0
    medium_until: float = 300.0
    slow: float = 60.0

    def next_check(self, submitted_at: float, now: float) -> float:
        """The first scheduled check strictly after `now` (unix seconds)."""
        age = now - submitted_at
        if age < self.first:
            return submitted_at + self.first
        start = self.first
        for every, until in ((self.fast, self.fast_until), (self.medium, self.medium_until)):
            end = start + max(0, math.ceil((until - start) / every)) * every
            if age < end:
                return submitted_at + start + (math.floor((age - start) / every) + 1) * every
            start = end
        return submitted_at + start + (math.floor((age - start) / self.slow) + 1) * self.slow


DEFAULT_SCHEDULE: Final = PollSchedule()


@dataclass(frozen=True, slots=True)
class PollSummary:
    """The renders checked: with a results file, every video it lists (`tracking`); without
    one, each video that was pending when polling started. `unread` and `checks` are of this
    poll."""

    completed: int
    failed: int
    processing: int
    timed_out: bool
    checks: int
    double_charges: int = 0  # found in the account's listing by this check
    unread: int = 0  # still pending, and no answer to their last check told their status
    not_known: int = 0  # of those, the API's last answer was that it does not know the video
    unchecked: int = 0  # still pending, and not one answer by the timeout (cut off by it)
    # Videos of the results file the state does not know, without a final status: nothing asks
    # about them (an id a spreadsheet rewrote, a file of another ledger).
    untracked: int = 0
    # Rows of the results file it says were accepted, whose video id cell is empty (cleared).
    unnamed: int = 0
    listing_unread: bool = False  # the account's listing (double charges) could not be read

    @property
    def exit_code(self) -> ExitCode:
        """Timed out beats a double charge found now, beats some failed, unread, untracked or
        unnamed, or a listing unread (a check that could not tell is not an all-clear), beats
        all fine."""
        if self.timed_out:
            return ExitCode.TIMED_OUT
        if self.double_charges:
            return ExitCode.DOUBLE_CHARGED
        unsure = self.failed or self.unread or self.untracked or self.unnamed or self.listing_unread
        return ExitCode.ROWS_FAILED if unsure else ExitCode.OK

    def to_json(self) -> dict[str, object]:
        """What `status --json` prints: the counts and the exit code."""
        return {**dataclasses.asdict(self), "exit_code": int(self.exit_code)}


async def poll(
    lookup: VideoLookup,
    sink: VideoStatusSink,
    *,
    wait: bool,
    timeout: float | None,
    concurrency: int = 4,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> PollSummary:
    """Checks pending videos and records what the API says into `sink`.

    Without `wait`: one pass, every pending video checked once. With `wait`: keeps checking each
    video on `schedule` until none is pending. Either way it ends when `timeout` seconds have
    passed (then the summary says `timed_out`, and `unchecked` counts the videos with no answer
    yet): checks still waiting for an answer then are cancelled, and what the others said is
    kept. Raises AccountError when the key cannot read statuses at all.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = clock()
    deadline = None if timeout is None else started + timeout
    last_seen: dict[str, VideoStatus] = {}
    last_checked: dict[str, float] = {}
    unread: set[str] = set()
    not_known: set[str] = set()  # the last answer: 10104, the API does not know the video
    gate = asyncio.Semaphore(concurrency)
    checks = 0

    async def check(video: PendingVideo) -> None:
        nonlocal checks
        async with gate:
            outcome = await lookup.get_product_video(video.video_id)
            checks += 1
            now = clock()
            last_checked[video.video_id] = now
            update = _update_from_outcome(video, outcome, now)
            log.debug("GET video %s: %s", video.video_id, update.status if update else "unread")
            not_known.discard(video.video_id)
            if update is None:
                unread.add(video.video_id)
                if outcome.code == Code.NOT_FOUND:
                    not_known.add(video.video_id)
            else:
                unread.discard(video.video_id)
                last_seen[video.video_id] = update.status
                sink.record_video_status(update)

    pending = sink.pending_videos()
    for video in pending:
        last_seen[video.video_id] = "processing"

    async def one_pass() -> PollSummary:
        await asyncio.gather(*(check(video) for video in pending))
        return _summary(last_seen, unread, not_known, timed_out=False, checks=checks)

    async def rounds() -> PollSummary:
        nonlocal pending
        looked_last = False
        while pending:
            now = clock()
            due_at = {
                video.video_id: schedule.next_check(
                    video.submitted_at, last_checked.get(video.video_id, video.submitted_at)
                )
                for video in pending
            }
            for video in pending:
                last_seen.setdefault(video.video_id, "processing")
            due = [video for video in pending if due_at[video.video_id] <= now]
            if due:
                await asyncio.gather(*(check(video) for video in due))
            else:
                wake = min(due_at.values())
                if deadline is not None and wake > deadline:
                    if looked_last:
                        _gave_up(pending, last_seen)
                        return _summary(last_seen, unread, not_known, timed_out=True, checks=checks)
                    # The next check falls past the deadline (a --timeout shorter than the
                    # schedule's first 12 s): one last look just before it, so that a render
                    # done meanwhile is not reported as still going.
                    looked_last = True
                    await sleep(max(0.0, deadline - _LAST_LOOK - now))
                    await asyncio.gather(*(check(video) for video in pending))
                else:
                    await sleep(wake - now)
            pending = sink.pending_videos()
        return _summary(last_seen, unread, not_known, timed_out=False, checks=checks)

    # The deadline also cuts a round short: one GET may take three times its own deadline.
    left = None if deadline is None else max(0.0, deadline - clock())
    try:
        async with asyncio.timeout(left) as cut:
            return await (rounds() if wait else one_pass())
    except TimeoutError:
        if not cut.expired():
            raise
    unchecked = sum(1 for video_id in last_seen if video_id not in last_checked)
    if wait:
        _gave_up(pending, last_seen)
    else:
        log.warning("timed out: %d of %d videos not checked", unchecked, len(last_seen))
    return _summary(
        last_seen, unread, not_known, timed_out=True, checks=checks, unchecked=unchecked
    )


# How long before a --timeout the last look is taken: time for its GETs to be answered.
_LAST_LOOK = 2.0


def _update_from_outcome(
    video: PendingVideo, outcome: LookupOutcome, now: float
) -> VideoUpdate | None:
    """None when this answer says nothing about the video (try again on schedule)."""
    video_id = video.video_id
    if outcome.kind == "ok" and isinstance(outcome.data, Mapping):
        if other := _another_video(video_id, outcome.data):
            # A proxy or cache answering for another request: its URL would be another row's.
            log.warning(
                "status of video %s: the answer is about video %s; asked again later",
                video_id,
                escape_controls(other[:80]),
            )
            return None
        return video_update(video_id, outcome.data, now)
    if outcome.code in ACCOUNT_CODES:
        raise AccountError(
            f"status of video {video_id}: {outcome.message} (code {outcome.code}); "
            "check the API key and the plan"
        )
    if outcome.kind == "permanent" and outcome.code == Code.NOT_FOUND:
        if now - video.submitted_at < NOT_FOUND_AFTER:
            log.warning(
                "status of video %s: the API does not know it (yet); it was accepted, so it is "
                "asked again later",
                video_id,
            )
            return None
        # An id the API gave, unknown a day on: deleted or lost, it will never complete.
        return VideoUpdate(
            video_id, "failed", None, None, None, None, f"{Code.NOT_FOUND}: video not found", now
        )
    why = outcome.message or outcome.kind
    if outcome.kind == "ok":  # a success whose `data` is no object: it says no status
        why = "the answer holds no status (its data is no JSON object)"
    log.info("status of video %s not known yet: %s", video_id, why)
    return None


def _gave_up(pending: list[PendingVideo], last_seen: Mapping[str, VideoStatus]) -> None:
    """Says what is left when waiting ends: renders going on, and renders the API called
    completed without a video URL that could be used (asked again by the next `status`)."""
    rendering = sum(1 for video in pending if last_seen.get(video.video_id) != "completed")
    without_url = len(pending) - rendering
    log.warning(
        "gave up waiting: %d videos still rendering%s",
        rendering,
        f", {without_url} completed without a usable video URL" if without_url else "",
    )


def _another_video(video_id: str, data: Mapping[str, object]) -> str | None:
    """The other video a status answer names, if it names one: its `video_id`, or an `id` of
    the shape of the one asked about (the API documents neither here; another `id` may be
    another kind of record's)."""
    named, same_shape = data.get("video_id"), data.get("id")
    if isinstance(named, str) and named != video_id:
        return named
    if isinstance(same_shape, str) and same_shape != video_id and len(same_shape) == len(video_id):
        return same_shape
    return None


def _summary(
    last_seen: Mapping[str, VideoStatus],
    unread: set[str],
    not_known: set[str],
    *,
    timed_out: bool,
    checks: int,
    unchecked: int = 0,
) -> PollSummary:
    statuses = list(last_seen.values())
    return PollSummary(
        completed=statuses.count("completed"),
        failed=statuses.count("failed"),
        processing=statuses.count("processing"),
        timed_out=timed_out,
        checks=checks,
        unread=len(unread),  # an answer about a video takes it out: these are all pending
        not_known=len(not_known),
        unchecked=unchecked,
    )
