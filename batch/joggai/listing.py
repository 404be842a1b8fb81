"""The account's own record of what it rendered: `GET /v2/product_videos`, indexed by tag.

Every create carries a tag derived from its job's fingerprint at the start of `video_spec.name`
(`"[jb-7f3a9c2e1b40] Spring promo"`): a title the API cuts short keeps its start. Tags that older
versions put at the end are found too. A server chooses how long titles are, so only the first and
last `TITLE_KEPT` characters of each are kept, and looked in for a tag.

The listing is read newest first and kept in the state (table `listing`), incrementally: each
sync reads back to a little before the previous one (`overlap` plus the clock skew allowance), so
a fresh ledger reads the account once and every later sync reads a page or two. GETs are not
rate-limited, so none of this spends the POST quota. The index serves three purposes:

- before a job is sent, its tag is looked up: a match is a render this account already paid for
  (on another machine, under another file name, or before a state was lost), adopted, not sent;
- after a lost answer, `batch.joggai.reconcile` proves the request's fate from successive syncs;
- a tag listed on more than one video is a double charge, kept and reported.

Where to stop is a time on our clock, but the listing gives `created_at` on the server's, so the
walk stops at a video created before it less `CLOCK_SKEW_SECONDS` and less how far the server's
clock is behind ours. That lag is measured, and only ever widens a walk: each page's HTTP `Date`
against when the page arrived, and each video this ledger was given, listed with a `created_at`,
against when the answer that gave it arrived (both overstate the lag, never understate it); a walk
starts from the largest lag the last 1,000 such videos showed. A sync that stopped early reached
back, on our clock, to where it was asked to go less the allowance (`Sync.reached`): the allowance
covers what the lag measured understates (videos created late, a clock that drifts). A lag over
`MAX_SERVER_LAG` widens a walk that far only, and such a walk proves nothing absent.

The walk is bounded, because a server whose listing never ends would otherwise hold up the run
before its first POST and fill the state. It reads at most `MAX_LISTED_VIDEOS` videos (a nightly
million-row catalog makes an account of millions of videos, and a first sync reads them all) and
for at most `MAX_SYNC_SECONDS`, holding at most `MAX_LISTED_TEXT` characters of ids and titles
(an id that is none, `untrusted.video_id`, fails the page), and never past the run's or
command's deadline (`deadline`: a page being read then is cut off); a page whose `total`
claims more, a walk that passes any bound, or more than `_STALLED_PAGES` pages in a row that
bring no video not already read in this walk, fails the sync with an ApiError
(ListingDeadline at the deadline).
The walk ends at an empty page, and nowhere else (but at the previous sync): a server may send
fewer videos a page than asked and say nothing of its page size, and a `total` may be missing or
low, so a short page proves no end; reading one more page costs a free GET. An empty page is the
end only where the pages read reach the `total` a page gave: a server that drops deleted videos
after paging sends empty pages before its last (up to `_EMPTY_PAGES` in a row are read past). A
page that repeats the one before, where the walk has listed as many videos as the `total` says,
is the end too (a server that answers a page past the end with its last). A `videos` of null (an
empty list in Go), or, past the first page, a `data` of null, is an empty page.
A walk that listed fewer videos than the `total` a page gave (counting the videos earlier syncs
listed; `Sync.unlisted`) proves nothing absent: its pages skipped some (videos created in the same
second and paged in no stable order, a gap), and a lost answer's video may be one of them.
The rows of a walk are recorded together at its end, so a sync that fails stores nothing of it
(a first sync of the largest account holds its rows in memory until then: about 1 GB).

A sync also tells whether this account's listing echoes tags at all (`Sync.echo`): the videos this
ledger knows it was given are looked up by id in the pages read, and their titles must carry their
tags. JoggAI does not document that `title` echoes `video_spec.name` (reference §8, §11).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from batch import untrusted
from batch.errors import AccountError, ApiError
from batch.joggai.client import JoggClient, parse_seconds
from batch.logs import escape_controls
from batch.payload import TAG_PATTERN
from batch.store import DoubleCharge, StateStore

log = logging.getLogger(__name__)

# Server and client clocks differ; every listing reads this much further back than asked.
CLOCK_SKEW_SECONDS = 300.0
# The bounds of one walk (module docstring): a first sync of the largest account, at 100 videos
# a page and about half a second a page, takes some seven hours; later syncs read a few pages.
MAX_LISTED_VIDEOS = 5_000_000
# The text of the ids and titles one walk holds until it ends: the largest account's, with room.
MAX_LISTED_TEXT = 1 << 30
MAX_SYNC_SECONDS = 12 * 3600.0
# A long walk (a big account's first sync) says how far it is this often: nothing is sent
# meanwhile, and a silent hour looks like a hang.
_PROGRESS_SECONDS = 30.0
# The most the API's clock may be measured behind ours for a listing to prove anything (see
# the module docstring); beyond it a sync still reads this much further back.
MAX_SERVER_LAG = 24 * 3600.0
TITLE_KEPT = 256
_SYNCED_AT = "listing_synced_at"
# Pages in a row that bring no video not read before in the walk. Videos created during a walk
# push the ones read down (newest first), so the page after the last one, or one after a burst
# of creates, can list only videos read already; a server that ignores the page number lists
# them forever.
_STALLED_PAGES = 3
# Empty pages in a row read past where the `total` says more videos are to come.
_EMPTY_PAGES = 3

Echo = Literal["shown", "unproven", "broken"]


class ListingDeadline(ApiError):
    """A walk that reached the run's or command's deadline before its end."""


def clip_title(title: str) -> str:
    """A title as kept: its first and last `TITLE_KEPT` characters, joined by an ellipsis (a
    tag leads it now and ended it in 0.1; a server chooses how long titles are)."""
    if len(title) <= 2 * TITLE_KEPT + 1:
        return title
    return f"{title[:TITLE_KEPT]}\u2026{title[-TITLE_KEPT:]}"


def tag_in(title: object) -> str | None:
    """The reconciliation tag in a listed title, or None."""
    found = TAG_PATTERN.search(title) if isinstance(title, str) else None
    return found.group(1).lower() if found else None  # a server may change the case


@dataclass(frozen=True, slots=True)
class Sync:
    """One read of the listing, newest first, recorded in the state.

    `started_at` is the local time the read began (a video committed after it may be missing);
    `reached` is the oldest creation time the read went back to, on our clock (the server's,
    corrected by the lag it measured), -inf when it read the whole listing, +inf when the
    server's clock was too far behind to tell. `echo` says whether, in the pages read, the
    videos this ledger knows it was given carry their tags: `shown` (at least one did, none
    did not), `broken` (one did not), or `unproven` (no such video was listed).
    """

    started_at: float
    reached: float
    echo: Echo
    # Videos this ledger was given, answered after where the read was to go back to and at
    # least `overlap` before it began, that it did not list: a listing that drops videos (a
    # page skipped, a video sorted where the walk never goes) proves nothing absent.
    missing: int = 0
    # Videos the account's `total` counts that no read has listed (module docstring).
    unlisted: int = 0

    def covers(self, attempt_started: float) -> bool:
        """Whether this read went far enough back to show a video created by that attempt."""
        return self.reached <= attempt_started - CLOCK_SKEW_SECONDS


class AccountListing:
    """Keeps the state's index of the account's videos up to date."""

    def __init__(
        self,
        client: JoggClient,
        state: StateStore,
        *,
        overlap: float = 0.0,
        page_size: int = 100,
        clock: Callable[[], float] = time.time,
        max_videos: int = MAX_LISTED_VIDEOS,
        max_seconds: float = MAX_SYNC_SECONDS,
        deadline: float | None = None,
    ) -> None:
        self._client = client
        self._state = state
        self._overlap = overlap
        self._page_size = page_size
        self._clock = clock
        self._max_videos = max_videos
        self._max_seconds = max_seconds
        self._deadline = deadline  # unix time (by `clock`): the run's or command's

    async def sync(self, back_to: float | None = None) -> Sync:
        """Reads the listing back to the previous sync (the whole of it the first time), to
        `back_to` (local unix time) when that is earlier, and to the newest video this ledger
        was given (so the read can show whether titles echo tags).

        Raises ApiError (AccountError for key problems, ListingDeadline at the deadline) when a
        page cannot be read or the walk passes its bounds (module docstring); nothing of the walk
        is recorded then.
        """
        previous = self._state.get_meta(_SYNCED_AT)
        target = -math.inf if previous is None else float(previous) - self._overlap
        for bound in (back_to, self._state.newest_accepted_at()):
            if bound is not None:
                target = min(target, bound)
        started = self._clock()
        left = None if self._deadline is None else max(0.0, self._deadline - started)
        try:
            async with asyncio.timeout(left) as cut:
                rows, reached, echo, pages, seen, total = await self._walk(target, started)
        except TimeoutError:
            if not cut.expired():
                raise
            raise self._cut_short("a page was being read") from None
        missing = self._missing(seen, target, started)
        self._state.record_listing(rows)
        missing = self._misnamed_set_right(missing)
        if missing:
            log.warning(
                "the account's video listing lacks %d video(s) this ledger was given (%s): it "
                "proves no request absent, so no lost answer is sent again on it",
                len(missing),
                ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""),
            )
        self._state.set_meta(_SYNCED_AT, repr(started))
        unlisted = self._unlisted(total, len(seen))
        log.debug("listing synced: %d page(s), echo %s", pages, echo)
        return Sync(started, reached, echo, len(missing), unlisted)

    def _unlisted(self, total: float | None, listed: int) -> int:
        """How many videos the account's `total` counts that neither this walk nor an earlier
        one listed (`Sync.unlisted`). Only for a read that may judge a lost answer (`_missing`
        says which), and only counted in the state when this walk listed fewer."""
        if self._overlap <= 0 or total is None or total <= listed:
            return 0
        unlisted = max(0, int(total) - self._state.listed_count())
        if unlisted:
            log.warning(
                "the account's video listing counts %d video(s) more than its pages showed: it "
                "proves no request absent, so no lost answer is sent again on it",
                unlisted,
            )
        return unlisted

    def _missing(self, seen: set[str], target: float, started: float) -> list[str]:
        """The videos this ledger was given that the walk should have listed and did not
        (`Sync.missing`): answered after `target`, and `overlap` or more before the walk (one
        adopted from the listing was listed, whenever it was made). A read with no settle
        period (`status`, `track`: no lost answer is judged on it) looks for none: a video
        answered a moment before may not be listed yet."""
        if self._overlap <= 0:
            return []
        return [
            video_id
            for video_id in self._state.accepted_between(target, started - self._overlap)
            if video_id not in seen
        ]

    def _misnamed_set_right(self, missing: list[str]) -> list[str]:
        """Of the videos the listing lacks, those whose row's tag it lists on a video no other
        row has: the answer named another video than the render it paid for (a proxy or a
        server answering for another request). The row takes the listed video, which `status`
        follows from now on: the id it had would end a failed render a day on, which `retry`
        pays for again. Returns the videos still lacking."""
        corrected = self._state.set_right_misnamed_videos(missing)
        for given, listed in corrected.items():
            log.warning(
                "the answer that was given video %s named no video the account lists; the "
                "account lists that row's render as video %s, which the row has from now on",
                given,
                listed,
            )
        return [video_id for video_id in missing if video_id not in corrected]

    async def _walk(
        self, target: float, started: float
    ) -> tuple[
        list[tuple[str, str | None, str, float | None]], float, Echo, int, set[str], float | None
    ]:
        """The rows read back to `target` (our clock), where the walk reached (Sync.reached),
        whether titles echo tags, the pages read, the ids listed and the first `total` a page
        gave."""
        # How far the server's clock is behind ours, at most (module docstring): only widened.
        behind = max(0.0, self._state.server_lag() or 0.0)
        reached, echoed, unechoed = -math.inf, 0, 0
        page, older_seen, stalled = 1, False, 0
        seen: set[str] = set()  # ids read in this walk
        text = 0  # characters of the ids and titles held in `rows`
        rows: list[tuple[str, str | None, str, float | None]] = []
        newest_first = True  # until a page shows otherwise: then only the whole listing will do
        # The first `total` a page gave: the account as the walk began (videos created since
        # are listed above where it reads, and counted by later pages' totals).
        counted: float | None = None
        widest, empty = 0, 0  # the most videos a page listed; empty pages in a row
        last_ids: list[str] = []
        told = time.monotonic()  # when a line last said how far the walk is
        while True:
            if time.monotonic() - told >= _PROGRESS_SECONDS:
                told = time.monotonic()
                log.info(
                    "reading the account's video listing before sending: %d videos on %d "
                    "pages so far (%s listed)",
                    len(seen),
                    page - 1,
                    "?" if counted is None else f"{counted:.0f}",
                )
            videos, total, server_date = await self._page(page)
            if server_date is not None:
                behind = max(behind, self._clock() - server_date)
            if counted is None:
                counted = total
            ids = [str(video["id"]) for video in videos]
            if ids and ids == last_ids and counted is not None and len(seen) >= counted:
                break  # a page past the end answered with the last one
            last_ids, widest = ids, max(widest, len(ids))
            new_here = {video_id for video_id in ids if video_id not in seen}
            stalled = stalled + 1 if videos and not new_here else 0
            if stalled > _STALLED_PAGES:
                raise ApiError(
                    f"the product video listing does not advance: pages {page - stalled + 1} to "
                    f"{page} list only videos already read; nothing of it was recorded"
                )
            seen.update(ids)
            times = [parse_seconds(video.get("created_at")) for video in videos]
            known_times = [t for t in times if t is not None]
            if any(later > earlier for earlier, later in itertools.pairwise(known_times)):
                newest_first = False  # the server ignores the sort: no early stop is safe
            if len(known_times) < len(times) or 0.0 in known_times:
                # A video without a creation time, or with 0 (one still rendering?), may be
                # sorted anywhere: only the whole listing is sure to show it.
                newest_first = False
            answered = self._state.answered_at(ids)
            fresh = []
            for video_id, video, created in zip(ids, videos, times, strict=True):
                if created is not None and video_id in answered:
                    behind = max(behind, answered[video_id] - created)
                since = target - CLOCK_SKEW_SECONDS - min(behind, MAX_SERVER_LAG)
                if newest_first and created is not None and created < since:
                    # On our clock the walk went back to `target` less the skew allowance;
                    # past the lag it can measure, it proves nothing.
                    too_far = behind > MAX_SERVER_LAG
                    reached = math.inf if too_far else target - CLOCK_SKEW_SECONDS
                    older_seen = True
                    break
                if video_id not in new_here:
                    continue  # moved down a page by videos created during the walk
                title = clip_title(str(video.get("title") or ""))
                fresh.append((video_id, tag_in(title), title, created))
                text += len(video_id) + len(title)
            rows += fresh
            known = self._state.accepted_tags([row[0] for row in fresh])
            for video_id, tag, _title, _created in fresh:
                if video_id in known:
                    if known[video_id] == tag:
                        echoed += 1
                    else:
                        unechoed += 1
            empty = 0 if videos else empty + 1
            if older_seen or (empty and not self._more_to_come(counted, len(seen), page, widest)):
                break
            if empty > _EMPTY_PAGES:
                break  # `Sync.unlisted` counts what the pages did not show
            self._check_bounds(page, total, len(seen), started, text)
            page += 1
        if behind > MAX_SERVER_LAG:
            log.warning(
                "the API's clock seems %.0f s behind this machine's: a listing read back only "
                "%.0f s further proves no request absent",
                behind,
                MAX_SERVER_LAG,
            )
        elif behind > CLOCK_SKEW_SECONDS:
            log.debug("the API's clock is up to %.0f s behind this machine's", behind)
        echo: Echo = "broken" if unechoed else "shown" if echoed else "unproven"
        return rows, reached, echo, page, seen, counted

    @staticmethod
    def _more_to_come(total: float | None, listed: int, page: int, widest: int) -> bool:
        """Whether an empty page `page` may stand before more videos: the `total` says more
        than were listed, and the pages so far, at the most a page listed, do not reach it."""
        return total is not None and listed < total and (page - 1) * widest < total

    def _check_bounds(
        self, page: int, total: float | None, read: int, started: float, text: int
    ) -> None:
        """Raises ApiError when the walk, about to ask for the page after `page`, has gone or
        would go past what an account can hold (`read`: videos listed so far; `text`: the
        characters of their ids and titles)."""
        if self._deadline is not None and self._clock() >= self._deadline:
            raise self._cut_short(f"{page} pages were read")
        limit = self._max_videos
        if total is not None and total > limit:
            problem = f"page {page} says the account holds {total:.0f} videos, over {limit}"
        elif read >= limit:
            problem = f"{page} pages have listed {read} videos (the most read) and it goes on"
        elif text > MAX_LISTED_TEXT:
            problem = (
                f"{page} pages have listed {text} characters of ids and titles, and it goes on"
            )
        elif self._clock() - started > self._max_seconds:
            problem = f"{page} pages were read in over {self._max_seconds:.0f} s and it goes on"
        else:
            return
        raise ApiError(
            f"the product video listing does not end: {problem}; nothing of it was recorded. "
            "Report it to JoggAI (GET /v2/product_videos)"
        )

    def _cut_short(self, doing: str) -> ListingDeadline:
        return ListingDeadline(
            f"the product video listing was not read to its end by the deadline ({doing}); "
            "nothing of it was recorded"
        )

    async def _page(self, page: int) -> tuple[list[dict[str, Any]], float | None, float | None]:
        """One page, its `total` and its HTTP date; the client has already asked again after a
        transient failure (GETs are free), so what is still wrong here makes the sync fail."""
        outcome = await self._client.list_product_videos(page=page, page_size=self._page_size)
        if outcome.kind == "account":
            raise AccountError(
                f"cannot list product videos: {outcome}",
                code=outcome.code,
                http_status=outcome.http_status,
            )
        if outcome.kind != "ok":
            raise ApiError(f"cannot list product videos (page {page}): {outcome}")
        data = outcome.data or ({"videos": []} if page > 1 else {})  # null data: past the end
        videos = data.get("videos")
        if videos is None and "videos" in data:
            videos = []  # null: an empty list, as Go writes one
        if not isinstance(videos, list) or not all(
            isinstance(v, dict) and v.get("id") is not None for v in videos
        ):
            raise ApiError(f"cannot list product videos (page {page}): no list of videos with ids")
        if (
            bad := next((v["id"] for v in videos if untrusted.video_id(v["id"]) is None), None)
        ) is not None:
            shown = escape_controls(str(bad)[:60])
            raise ApiError(
                f"cannot list product videos (page {page}): a video id of {len(str(bad))} "
                f"characters is no JoggAI id: {shown!r}"
            )
        # `total` is a count, as a server may spell it
        return videos, parse_seconds(data.get("total")), outcome.server_date


def report_double_charges(state: StateStore, run_id: int | None) -> list[DoubleCharge]:
    """Records the tags the index shows on more than one video and were not known before, and
    logs each once: the credits to raise with JoggAI."""
    found = state.record_double_charges(run_id)
    for charge in found:
        log.error(
            "double charge: tag %s was rendered %d times (videos %s); raise it with JoggAI",
            charge.tag,
            len(charge.video_ids),
            ", ".join(charge.video_ids),
            extra={"event": "double_charge", "tag": charge.tag, "videos": charge.video_ids},
        )
    return found
