"""The account's listing index (batch.joggai.listing) and the rules that prove a lost answer's fate
(batch.joggai.reconcile), on fake listings and a real state database."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from batch.errors import AccountError, ApiError
from batch.joggai import listing as listing_module
from batch.joggai.client import JoggClient
from batch.joggai.listing import (
    CLOCK_SKEW_SECONDS,
    TITLE_KEPT,
    AccountListing,
    ListingDeadline,
    Sync,
    clip_title,
    tag_in,
)
from batch.joggai.reconcile import Verdict, deadline, judge
from batch.store import AttemptRecord, NewJob, RowPlan, StateStore, UncertainJob
from batch.store.backend import StateLocation

Handler = Callable[[httpx.Request], httpx.Response]


def envelope(code: int, data: Any = None) -> bytes:
    return json.dumps({"rid": "r", "code": code, "msg": "m", "data": data}).encode()


def video(number: int, created_at: float, title: str | None = None) -> dict[str, Any]:
    tag = f"{number:012x}"
    return {
        "id": f"v{number}",
        "title": title if title is not None else f"[jb-{tag}] Promo {number}",
        "status": "processing",
        "created_at": created_at,
    }


def listing(videos: list[dict[str, Any]], requested: list[int] | None = None) -> Handler:
    """Serves `videos` newest first, two to a page."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        if requested is not None:
            requested.append(page)
        size = int(request.url.params["page_size"])
        chunk = videos[(page - 1) * size : page * size]
        data = {"videos": chunk, "page": page, "page_size": size, "total": len(videos)}
        return httpx.Response(200, content=envelope(0, data))

    return handler


@pytest.fixture
def state(state_at: StateLocation) -> Iterator[StateStore]:
    """The ledger on each backend, its clock fixed."""
    with StateStore(state_at, clock=lambda: 9_950.0) as store:
        yield store


def index(client: JoggClient, state: StateStore, now: float = 10_000.0) -> AccountListing:
    return AccountListing(client, state, page_size=2, clock=lambda: now)


def client_for(handler: Handler) -> JoggClient:
    return JoggClient(
        "https://api.test", "sk-test", transport=httpx.MockTransport(handler), get_retry_delay=0
    )


def test_tags_are_found_first_or_last_in_a_title_but_not_when_cut() -> None:
    """The tag leads titles now and ended them in 0.1; a title cut inside the tag has none."""
    assert tag_in("[jb-0123456789ab] Spring promo") == "0123456789ab"
    assert tag_in("Spring promo [jb-0123456789ab]") == "0123456789ab"
    assert tag_in("[jb-0123456") is None
    assert tag_in(None) is None


@pytest.mark.anyio
async def test_first_sync_reads_the_whole_listing_and_later_ones_only_what_is_new(
    state: StateStore,
) -> None:
    """A fresh ledger reads every page; the next sync stops a skew allowance before the last."""
    old = 10_000.0 - 2 * CLOCK_SKEW_SECONDS
    videos = [video(n, old - n) for n in range(1, 6)]
    requested: list[int] = []
    async with client_for(listing(videos, requested)) as client:
        first = await index(client, state).sync()
        assert requested == [1, 2, 3, 4]  # the third page is short; the fourth, empty, ends it
        assert first.reached == -math.inf
        requested.clear()
        later = await index(client, state, now=10_100.0).sync()
    assert requested == [1]  # the newest video is already older than the last sync - skew
    assert later.covers(10_000.0)
    assert not later.covers(9_999.0)
    assert state.listed_video(f"{3:012x}") == "v3"


@pytest.mark.anyio
async def test_echo_is_shown_broken_or_unproven_by_videos_the_ledger_knows(
    state: StateStore,
) -> None:
    """Titles echo tags when a video this ledger was given shows its own tag; a known video
    without it means they do not; no known video proves nothing."""
    state.record_plan(
        1, [NewJob("f" * 64, "k", "[]", f"{1:012x}")], [], [RowPlan(1, "f" * 64, "job", None)]
    )
    async with client_for(listing([video(2, 9_900)])) as client:
        assert (await index(client, state).sync()).echo == "unproven"
    state.settle(1, "submitted", AttemptRecord("ok", video_id="v1"), run_id=1)
    async with client_for(listing([video(1, 9_900)])) as client:
        assert (await index(client, state).sync()).echo == "shown"
    async with client_for(listing([video(1, 9_900, title="Promo 1")])) as client:
        assert (await index(client, state).sync()).echo == "broken"


@pytest.mark.anyio
async def test_a_page_failing_once_is_asked_again(state: StateStore) -> None:
    """A 502 on a listing page is retried (GETs are free) before the sync gives up."""
    answers = iter([httpx.Response(502, content=b"<html>bad gateway</html>")])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or listing([video(1, 9_000)])(request)

    async with client_for(handler) as client:
        await index(client, state).sync()
    assert state.listed_video(f"{1:012x}") == "v1"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (envelope(50000), ApiError),
        (envelope(0, {"total": 3}), ApiError),
        (envelope(10105), AccountError),
    ],
)
async def test_a_listing_that_cannot_be_read_raises(
    state: StateStore, content: bytes, error: type[ApiError]
) -> None:
    """A page that stays unreadable fails the sync: absence is never inferred from it."""
    async with client_for(lambda _: httpx.Response(200, content=content)) as client:
        with pytest.raises(error, match="list"):
            await index(client, state).sync()


@pytest.mark.anyio
async def test_a_listing_that_ignores_the_page_number_is_refused(state: StateStore) -> None:
    """The same full page forever is an error, not an endless loop."""
    page = {"videos": [video(2, 9_000), video(1, 9_000)], "total": 10}
    async with client_for(lambda _: httpx.Response(200, content=envelope(0, page))) as client:
        with pytest.raises(ApiError, match="does not advance"):
            await index(client, state).sync()


def capped(
    videos: list[dict[str, Any]], per_page: int, total: object, *, echo_size: bool = True
) -> Handler:
    """Serves `videos` newest first, `per_page` to a page whatever the page size asked, with
    `total` (None: left out) in every page, and the page size used unless not `echo_size`."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        chunk = videos[(page - 1) * per_page : page * per_page]
        data = {"videos": chunk, "page": page} | ({"page_size": per_page} if echo_size else {})
        return httpx.Response(
            200, content=envelope(0, data | ({} if total is None else {"total": total}))
        )

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("count", "per_page", "total", "echo_size", "pages"),
    [
        # Pages smaller than asked, saying their size or not, with a count, a count past the
        # end, a count too low (the page's own length), or none: read on to the empty page.
        (5, 1, 5, True, [1, 2, 3, 4, 5, 6]),
        # A count past the end: empty pages are read past until the pages reach it.
        (5, 1, 7, True, [1, 2, 3, 4, 5, 6, 7, 8]),
        (3, 1, None, True, [1, 2, 3, 4]),
        (5, 2, 2, True, [1, 2, 3, 4]),
        (3, 2, None, True, [1, 2, 3]),
        (45, 20, None, False, [1, 2, 3, 4]),
        (45, 20, 20, False, [1, 2, 3, 4]),
    ],
)
async def test_a_listing_ends_at_its_empty_page_never_at_a_short_one(
    state: StateStore,
    count: int,
    per_page: int,
    total: int | None,
    echo_size: bool,
    pages: list[int],
) -> None:
    """Only an empty page ends the walk: a server with smaller pages than asked, saying so or
    not, with a count missing or too low, is read to its last video, so absence is never proven
    from the pages before it."""
    videos = [video(n, 9_000.0 - n) for n in range(1, count + 1)]
    requested: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        requested.append(int(request.url.params["page"]))
        return capped(videos, per_page, total, echo_size=echo_size)(request)

    async with client_for(counting) as client:
        sync = await index(client, state).sync()
    assert requested == pages
    assert sync.reached == -math.inf
    assert state.listed_video(f"{count:012x}") == f"v{count}"


def endless(total: object, *, repeat_after: int | None = None) -> Handler:
    """Full pages of two videos forever, each page new (or, from page `repeat_after` on, the
    videos of pages already served), with `total` in every page."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        if repeat_after is not None and page > repeat_after:
            page = 1 + (page - 1) % repeat_after
        videos = [video(2 * page, 9_000), video(2 * page + 1, 9_000)]
        data = {"videos": videos, "page": page, "page_size": 2} | (
            {} if total is None else {"total": total}
        )
        return httpx.Response(200, content=envelope(0, data))

    return handler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "clock_step", "pages"),
    [
        (endless(10**9), 0.0, [1]),  # a total no account holds: refused after its first page
        (endless(1e9), 0.0, [1]),  # spelled as a float
        (endless(None), 0.0, [1, 2, 3]),  # no total: read up to the video bound (6)
        # Pages already read come round again: refused after three such pages in a row.
        (endless(None, repeat_after=2), 0.0, [1, 2, 3, 4, 5, 6]),
        (endless(None), 100.0, [1, 2]),  # slow: read up to the time bound (150 s)
    ],
)
async def test_a_listing_that_never_ends_stops_at_a_bound_and_records_nothing(
    state: StateStore, handler: Handler, clock_step: float, pages: list[int]
) -> None:
    """An endless listing fails the sync within its bounds, and none of its pages is stored."""
    requested: list[int] = []
    ticks = iter(range(1_000))

    def counting(request: httpx.Request) -> httpx.Response:
        requested.append(int(request.url.params["page"]))
        return handler(request)

    async with client_for(counting) as client:
        walk = AccountListing(
            client,
            state,
            page_size=2,
            clock=lambda: 10_000.0 + clock_step * next(ticks),
            max_videos=6,
            max_seconds=150.0,
        )
        with pytest.raises(ApiError, match=r"does not (end|advance).*nothing of it was recorded"):
            await walk.sync()
    assert requested == pages
    assert state.listed_video(f"{2:012x}") is None
    assert state.get_meta("listing_synced_at") is None


@pytest.mark.anyio
async def test_a_long_walk_says_how_far_it_is(
    state: StateStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing read for minutes (a big account's first sync, or one that never ends) says
    every 30 s (here: every page) how many videos it has read: nothing is sent meanwhile, and
    silence looked like a hang."""
    monkeypatch.setattr(listing_module, "_PROGRESS_SECONDS", 0.0)
    caplog.set_level(logging.INFO, logger="batch")
    async with client_for(endless(None)) as client:
        walk = AccountListing(client, state, page_size=2, clock=lambda: 10_000.0, max_videos=20)
        with pytest.raises(ApiError):
            await walk.sync()
    progress = [r.getMessage() for r in caplog.records if "video listing before" in r.message]
    assert progress
    assert re.search(r"\d+ videos on \d+ pages so far", progress[0])


@pytest.mark.anyio
async def test_a_listing_of_too_much_text_stops_and_records_nothing(
    state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids and titles a walk holds until its end are bounded (`MAX_LISTED_TEXT`): a
    listing of long titles that never ends fails before memory does."""
    monkeypatch.setattr(listing_module, "MAX_LISTED_TEXT", 100)
    async with client_for(endless(None)) as client:
        with pytest.raises(ApiError, match="characters of ids and titles, and it goes on"):
            await index(client, state).sync()
    assert state.get_meta("listing_synced_at") is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("given", "said"),
    [("v" * 1_000, "a video id of 1000 characters is no JoggAI id: 'vvvv"),
     ("v1\x1b]0;pwned\x07",
      "a video id of 12 characters is no JoggAI id: 'v1\\\\x1b]0;pwned\\\\x07'"),
     ("v 1", "a video id of 3 characters is no JoggAI id: 'v 1'")],
)  # fmt: skip
async def test_a_video_id_no_joggai_id_could_be_fails_the_page(
    state: StateStore, given: str, said: str
) -> None:
    """A 1 KB "id" (a hostile listing swelling the walk), or one holding a terminal's escape
    sequence or a space, is refused with the page."""
    long = dict(video(1, 9_000), id=given)
    async with client_for(listing([long])) as client:
        with pytest.raises(ApiError) as caught:
            await index(client, state).sync()
    assert said in str(caught.value)


@pytest.mark.anyio
async def test_a_walk_stops_at_the_deadline_and_records_nothing(state: StateStore) -> None:
    """A listing that keeps bringing new videos is read up to the run's or command's deadline,
    not to its own bounds; nothing of it is stored and the next sync starts over."""
    requested: list[int] = []
    ticks = iter(range(1_000))

    def counting(request: httpx.Request) -> httpx.Response:
        requested.append(int(request.url.params["page"]))
        return endless(None)(request)

    async with client_for(counting) as client:
        walk = AccountListing(
            client, state, page_size=2, clock=lambda: 10_000.0 + next(ticks), deadline=10_002.5
        )
        with pytest.raises(ListingDeadline, match=r"deadline.*nothing of it was recorded"):
            await walk.sync()
    assert requested == [1, 2]  # the clock reads 10_003 after the second page
    assert state.listed_video(f"{2:012x}") is None
    assert state.get_meta("listing_synced_at") is None


@pytest.mark.anyio
async def test_a_page_that_never_comes_is_cut_off_at_the_deadline(state: StateStore) -> None:
    """A page the server never finishes answering does not hold the walk past the deadline."""

    async def hanging(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    transport = httpx.MockTransport(hanging)
    async with JoggClient("https://api.test", "sk-test", transport=transport) as client:
        walk = AccountListing(client, state, clock=lambda: 10_000.0, deadline=10_000.2)
        started = time.monotonic()
        with pytest.raises(ListingDeadline, match="a page was being read"):
            await walk.sync()
    assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_long_titles_are_kept_by_their_ends_and_their_tags_found(state: StateStore) -> None:
    """A server chooses how long titles are: only their ends are kept, where a tag goes now
    (first) and went in 0.1 (last)."""
    padding = "x" * 100_000
    first = video(1, 9_002, title=f"[jb-{1:012x}] {padding}")
    last = video(2, 9_001, title=f"{padding} [jb-{2:012x}]")
    async with client_for(listing([first, last])) as client:
        await index(client, state).sync()
    assert state.listed_video(f"{1:012x}") == "v1"
    assert state.listed_video(f"{2:012x}") == "v2"
    assert len(clip_title(padding)) == 2 * TITLE_KEPT + 1
    assert clip_title("[jb-1] short") == "[jb-1] short"


@pytest.mark.anyio
async def test_videos_created_during_a_walk_push_pages_down_without_failing_it(
    state: StateStore,
) -> None:
    """A video created while the listing is read (newest first) moves every page down one: a
    page, or the page after the last, may then list only videos already read. The walk reads
    on to its empty page and records every video once."""
    videos = [video(n, 9_000.0 + n) for n in range(5, 0, -1)]
    requested: list[int] = []

    def growing(request: httpx.Request) -> httpx.Response:
        answer = listing(videos, requested)(request)
        created = 100 + len(requested)
        videos.insert(0, video(created, 9_000.0 + created))
        return answer

    async with client_for(growing) as client:
        sync = await index(client, state).sync()
    assert requested == [1, 2, 3, 4, 5, 6]  # page 5 holds only v1, read on page 4
    assert sync.reached == -math.inf
    assert [state.listed_video(f"{n:012x}") for n in range(1, 6)] == [f"v{n}" for n in range(1, 6)]


@pytest.mark.anyio
async def test_a_tag_listed_twice_is_a_double_charge_recorded_once(state: StateStore) -> None:
    """Two videos with one tag are kept as a double charge, reported only when first seen."""
    twice = [video(1, 9_002), video(1, 9_001) | {"id": "v1b"}, video(2, 9_000)]
    async with client_for(listing(twice)) as client:
        await index(client, state).sync()
    found = state.record_double_charges(None)
    assert [(c.tag, c.video_ids) for c in found] == [(f"{1:012x}", ("v1b", "v1"))]
    assert state.record_double_charges(None) == []
    assert len(state.double_charges()) == 1


SETTLE = 100.0


def uncertain(started: float | None = 1_000.0, absent_at: float | None = None) -> UncertainJob:
    return UncertainJob(1, "0" * 12, "k", "reconciling", absent_at, started)


def sync_at(when: float, echo: str = "shown") -> Sync:
    return Sync(when, -math.inf, echo)  # type: ignore[arg-type]


def test_a_listed_tag_is_found_whenever_it_appears() -> None:
    """Found beats every other rule, even before the settle period."""
    verdict = judge(uncertain(), sync_at(1_001.0, "broken"), listed="v9", settle=SETTLE)
    assert verdict.verdict is Verdict.FOUND


def test_absence_needs_the_settle_period_two_listings_and_an_echo() -> None:
    """Absent only after two covering, echoing listings settle apart, the first after settle."""
    job = uncertain()
    early = judge(job, sync_at(1_050.0), listed=None, settle=SETTLE)
    assert early.verdict is Verdict.WAIT
    assert early.absent_at is None
    unproven = judge(job, sync_at(1_150.0, "unproven"), listed=None, settle=SETTLE)
    assert unproven.verdict is Verdict.WAIT
    assert unproven.absent_at is None
    first = judge(job, sync_at(1_150.0), listed=None, settle=SETTLE)
    assert first.verdict is Verdict.WAIT
    assert first.absent_at == 1_150.0
    job = uncertain(absent_at=1_150.0)
    too_soon = judge(job, sync_at(1_200.0), listed=None, settle=SETTLE)
    assert too_soon.verdict is Verdict.WAIT
    assert judge(job, sync_at(1_250.0), listed=None, settle=SETTLE).verdict is Verdict.ABSENT


def test_a_listing_that_does_not_reach_the_attempt_proves_nothing() -> None:
    """A sync that stopped after the attempt (minus skew) cannot show its absence."""
    short = Sync(5_000.0, 1_000.0 - CLOCK_SKEW_SECONDS + 1, "shown")
    assert judge(uncertain(), short, listed=None, settle=SETTLE).absent_at is None


def test_a_listing_that_lacks_videos_this_ledger_was_given_proves_nothing_absent() -> None:
    """(d): a sync that did not list a video this ledger was given (a page skipped) leaves a
    lost answer waiting, however settled and echoing it is: never proven absent, never resent."""
    job = uncertain(absent_at=1_150.0)
    holed = Sync(1_250.0, -math.inf, "shown", missing=1)
    verdict = judge(job, holed, listed=None, settle=SETTLE)
    assert verdict.verdict is Verdict.WAIT
    assert verdict.why == "the listing lacks videos this ledger was given"


@pytest.mark.anyio
@pytest.mark.parametrize(("overlap", "missing"), [(150.0, 1), (0.0, 0)])
async def test_a_sync_counts_the_videos_this_ledger_was_given_that_it_does_not_list(
    state_at: StateLocation, overlap: float, missing: int
) -> None:
    """A server that numbers its pages from 0 never lists its newest page: the videos this
    ledger was given on it, answered in the time the walk covers and `overlap` before it
    began, are counted missing; one answered in the last `overlap` may be unlisted yet. A read
    with no settle period (`status`) judges no lost answer, and looks for no holes."""
    clock = [9_000.0]
    with StateStore(state_at, clock=lambda: clock[0]) as state:
        for number in range(1, 6):
            clock[0] = 9_000.0 + 100 * number
            sent(state, clock, number, answered=True)
        videos = [video(n, 9_000.0 + 100 * n) for n in range(5, 0, -1)]

        def from_zero(request: httpx.Request) -> httpx.Response:
            page = int(request.url.params["page"])
            shifted = request.url.copy_set_param("page", page + 1)
            return listing(videos)(httpx.Request("GET", shifted))

        async with client_for(from_zero) as client:
            walk = AccountListing(
                client, state, page_size=2, overlap=overlap, clock=lambda: 9_600.0
            )
            sync = await walk.sync()
    assert sync.missing == missing  # v4; v5, answered 100 s before, may not be listed yet


@pytest.mark.anyio
async def test_a_video_adopted_from_the_listing_is_not_looked_for_as_answered(
    state_at: StateLocation,
) -> None:
    """A render found in the listing and adopted now (made long before, past where the walk
    goes) is no hole in the listing: only videos an answer gave are looked for."""
    clock = [9_250.0]
    with StateStore(state_at, clock=lambda: clock[0]) as state:
        sent(state, clock, 1, answered=True)
        clock[0] = 9_300.0
        sent(state, clock, 2, answered=False)
        state.adopt(2, "v2", run_id=None)  # found under its tag in an earlier, older read
        state.set_meta("listing_synced_at", "9200.0")
        async with client_for(listing([video(1, 9_250.0)])) as client:
            walk = AccountListing(client, state, page_size=2, clock=lambda: 9_900.0)
            sync = await walk.sync()
    assert sync.missing == 0


@pytest.mark.anyio
async def test_a_video_listed_without_a_creation_time_is_looked_for_to_the_end(
    state: StateStore,
) -> None:
    """A page listing a video with `created_at` 0 (still rendering), sorted below older ones:
    the order proves nothing, so the walk reads the whole listing rather than stop at the
    first older video, and finds it."""
    old = 10_000.0 - 2 * CLOCK_SKEW_SECONDS
    videos = [video(1, 9_990.0), video(2, old - 1), video(3, old - 2), video(4, 0.0)]
    videos += [video(5, old - 3), video(6, 0.0)]
    state.set_meta("listing_synced_at", "9990.0")
    async with client_for(listing(videos)) as client:
        await AccountListing(client, state, page_size=4, clock=lambda: 10_000.0).sync()
    assert [state.listed_video(f"{n:012x}") for n in (4, 6)] == ["v4", "v6"]


def test_a_listing_without_tags_makes_absence_unprovable() -> None:
    """When known videos lack their tags, absence can never be shown: unknown, not resent."""
    verdict = judge(uncertain(), sync_at(5_000.0, "broken"), listed=None, settle=SETTLE)
    assert verdict.verdict is Verdict.UNPROVABLE


def test_a_job_gives_up_three_settle_periods_after_its_attempt() -> None:
    """Waiting is bounded; a first absence extends it to allow the second listing."""
    assert deadline(uncertain(), SETTLE) == 1_300.0
    assert deadline(uncertain(absent_at=1_290.0), SETTLE) == 1_490.0


@pytest.mark.anyio
async def test_a_listing_not_sorted_newest_first_is_read_to_its_end(state: StateStore) -> None:
    """A server that ignores the sort order gives no safe place to stop: every page is read
    (and a tag in upper case is still the job's tag)."""
    oldest_first = [video(n, 1_000.0 + n) for n in range(1, 6)]
    oldest_first[4]["title"] = f"[JB-{5:012X}] Promo 5"
    requested: list[int] = []
    async with client_for(listing(oldest_first, requested)) as client:
        await index(client, state).sync()  # the first sync reads everything anyway
        requested.clear()
        later = await index(client, state, now=1_000_000.0).sync()
    assert requested == [1, 2, 3, 4]
    assert later.reached == -math.inf
    assert state.listed_video(f"{5:012x}") == "v5"


LAG = CLOCK_SKEW_SECONDS + 30.0  # the server's clock is this far behind ours


def sent(state: StateStore, clock: list[float], number: int, answered: bool) -> None:
    """Job `number` (tag `number`) sent at `clock[0]`, answered `v<number>` at once or not."""
    fingerprint = f"{number:064x}"
    job_id = state.record_plan(
        1,
        [NewJob(fingerprint, f"k{number}", "[]", f"{number:012x}")],
        [],
        [RowPlan(number, fingerprint, "job", None)],
    )[fingerprint]
    attempt = state.begin_attempt(job_id, 1)
    assert attempt is not None
    if answered:
        record = AttemptRecord("ok", code=0, video_id=f"v{number}")
        state.finish_attempt(attempt, job_id, record, "submitted", run_id=1)


@pytest.mark.anyio
async def test_a_server_clock_behind_ours_widens_the_walk_by_its_lag(
    state_at: StateLocation,
) -> None:
    """The listing's `created_at` is the server's: when its clock is further behind ours than
    the skew allowance, the walk reads back as far again as the videos this ledger was given
    show, so a request whose answer was lost is listed, never proven absent and paid twice."""
    clock = [9_900.0]
    with StateStore(state_at, clock=lambda: clock[0]) as state:
        state.set_meta("listing_synced_at", "9990.0")
        videos: list[dict[str, Any]] = []
        for number in range(1, 11):  # every ten seconds; the second's answer is lost
            clock[0] = 9_890.0 + 10 * number
            sent(state, clock, number, answered=number != 2)
            videos.insert(0, video(number, clock[0] - LAG))
        async with client_for(listing(videos)) as client:
            sync = await index(client, state, now=10_500.0).sync(back_to=9_910.0)
        assert state.listed_video(f"{2:012x}") == "v2"
        assert sync.echo == "shown"
        assert sync.covers(9_910.0)


@pytest.mark.anyio
@pytest.mark.parametrize(("lag", "covers"), [(LAG, True), (3 * 24 * 3600.0, False)])
async def test_the_http_date_of_a_page_widens_the_walk_too(
    state: StateStore, lag: float, covers: bool
) -> None:
    """A video of another machine, created after the last sync on our clock, is indexed when
    the pages' `Date` shows the server behind; a walk behind by more than a day reads a day
    further back only, and proves nothing absent."""
    now = 1_000_000.0
    state.set_meta("listing_synced_at", repr(now - 110.0))
    videos = [video(2, now - 100.0 - lag), video(1, now - 100_000.0 - lag)]

    def dated(request: httpx.Request) -> httpx.Response:
        answer = listing(videos)(request)
        answer.headers["Date"] = email.utils.formatdate(now - lag, usegmt=True)
        return answer

    async with client_for(dated) as client:
        sync = await index(client, state, now=now).sync()
    assert state.listed_video(f"{2:012x}") == ("v2" if covers else None)
    assert state.listed_video(f"{1:012x}") is None  # the walk still stops
    assert sync.covers(now - 110.0) is covers


@pytest.mark.anyio
async def test_a_gap_of_empty_pages_before_the_last_is_read_past(state: StateStore) -> None:
    """A server that drops deleted videos after paging answers empty pages before its last: with
    a `total` saying more are to come, the walk reads on past them (up to three in a row), so a
    render listed past the gap is found, not paid for again."""
    videos = [video(n, 9_000.0 - n) for n in range(1, 3)]
    gapped = {1: videos, 2: [], 3: [], 4: [video(3, 8_000.0)]}
    requested: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        requested.append(page)
        data = {"videos": gapped.get(page, []), "page": page, "total": 7}
        return httpx.Response(200, content=envelope(0, data))

    async with client_for(handler) as client:
        await index(client, state).sync()
    assert state.listed_video(f"{3:012x}") == "v3"
    assert requested == [1, 2, 3, 4, 5]  # page 5 is empty, and 4 pages of 2 reach the total


@pytest.mark.anyio
@pytest.mark.parametrize(("total", "ends"), [(3, True), (None, False), (9, False)])
async def test_a_page_past_the_end_answered_with_the_last_ends_the_walk_when_all_are_listed(
    state: StateStore, total: int | None, ends: bool
) -> None:
    """Many frameworks answer a page past the end with the last page again: where the walk has
    listed as many videos as the `total` says, that is the end; without a total, or short of
    it, it is a listing that does not advance (it may be ignoring the page number)."""
    videos = [video(n, 9_000.0 - n) for n in range(1, 4)]

    def clamped(request: httpx.Request) -> httpx.Response:
        page = min(int(request.url.params["page"]), 2)
        data = {"videos": videos[(page - 1) * 2 : page * 2], "page": page}
        data |= {} if total is None else {"total": total}
        return httpx.Response(200, content=envelope(0, data))

    async with client_for(clamped) as client:
        if ends:
            await index(client, state).sync()
            assert state.listed_video(f"{3:012x}") == "v3"
        else:
            with pytest.raises(ApiError, match="does not advance"):
                await index(client, state).sync()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("last", "page_one"),
    [({"videos": None, "total": 2}, {"videos": None, "total": 0}), (None, None)],
)
async def test_a_null_list_of_videos_is_an_empty_page(
    state: StateStore, last: dict[str, Any] | None, page_one: dict[str, Any] | None
) -> None:
    """`"videos": null` is how Go writes an empty list, and some servers answer a page past the
    end with `"data": null`: each ends the walk. A first page with no data at all is no
    listing (an account with videos would look empty)."""
    videos = [video(n, 9_000.0 - n) for n in range(1, 3)]

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        data = {"videos": videos, "page": 1, "total": 2} if page == 1 else last
        return httpx.Response(200, content=envelope(0, data))

    async with client_for(handler) as client:
        await index(client, state).sync()
    assert state.listed_video(f"{2:012x}") == "v2"

    async def first(data: dict[str, Any] | None) -> None:
        answer = httpx.Response(200, content=envelope(0, data))
        async with client_for(lambda _: answer) as client:
            await index(client, state).sync()

    if page_one is None:
        with pytest.raises(ApiError, match="no list of videos"):
            await first(page_one)
    else:
        await first(page_one)  # an empty account, in Go's words


@pytest.mark.anyio
@pytest.mark.parametrize("overlap", [150.0, 0.0])
async def test_pages_that_skip_a_video_the_total_counts_prove_nothing_absent(
    state_at: StateLocation, overlap: float
) -> None:
    """Videos created in the same second, paged by a sort with no tie-breaker, can come in a
    new order on every page: one is on two pages and another on none. The walk lists fewer
    videos than the `total`, so a lost answer's video may be the one skipped: the sync counts
    it unlisted, and judging on it waits (a read with no settle period judges nothing)."""
    clock = [9_000.0]
    with StateStore(state_at, clock=lambda: clock[0]) as state:
        for number in range(1, 6):
            sent(state, clock, number, answered=number != 3)
        same_second = [video(n, 9_000.0) for n in range(1, 6)]
        pages = {1: same_second[:2], 2: [same_second[1], same_second[3]], 3: [same_second[4]]}

        def unstable(request: httpx.Request) -> httpx.Response:
            page = int(request.url.params["page"])
            data = {"videos": pages.get(page, []), "page": page, "total": 5}
            return httpx.Response(200, content=envelope(0, data))

        async with client_for(unstable) as client:
            walk = AccountListing(
                client, state, page_size=2, overlap=overlap, clock=lambda: 9_600.0
            )
            sync = await walk.sync()
        assert state.listed_video(f"{3:012x}") is None
    assert sync.unlisted == (1 if overlap else 0)
    if overlap:
        job = uncertain(started=9_000.0, absent_at=9_400.0)
        verdict = judge(job, sync, listed=None, settle=SETTLE)
        assert verdict.verdict is Verdict.WAIT
        assert verdict.why == "the listing shows fewer videos than it counts"
