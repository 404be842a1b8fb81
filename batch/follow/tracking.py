"""After submission: poll final video statuses into the state and on into the results file."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import httpx

from batch import storage
from batch.config import Secret
from batch.errors import ApiError
from batch.follow.polling import DEFAULT_SCHEDULE, PollSchedule, PollSummary, poll
from batch.joggai.client import JoggClient, Timeouts
from batch.joggai.listing import AccountListing, ListingDeadline, report_double_charges
from batch.statuses import ACCEPTED_ROWS, row_status
from batch.storage import Location, is_file
from batch.store import VIDEO_COLUMNS, StateStore
from batch.store.backend import StateLocation
from batch.store.outcomes import DOUBLE_CHARGED
from batch.store.results import (
    read_again_if_rewritten,
    read_results,
    require_columns,
    write_table,
)

log = logging.getLogger(__name__)


def track(
    state_path: StateLocation,
    base_url: str,
    api_key: Secret,
    *,
    wait: bool,
    timeout: float | None,
    results: Location | None = None,
    legacy: Path | None = None,
    timeouts: Timeouts | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
) -> PollSummary:
    """`track_async` for synchronous callers, on an event loop of its own."""
    return asyncio.run(
        track_async(
            state_path,
            base_url,
            api_key,
            wait=wait,
            timeout=timeout,
            results=results,
            legacy=legacy,
            timeouts=timeouts,
            transport=transport,
            schedule=schedule,
        )
    )


async def track_async(
    state_path: StateLocation,
    base_url: str,
    api_key: Secret,
    *,
    wait: bool,
    timeout: float | None,
    results: Location | None = None,
    legacy: Path | None = None,
    timeouts: Timeouts | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
) -> PollSummary:
    """Polls every submitted, unfinished video once (or until final with `wait`), then looks
    for double charges in the account's listing, both within `timeout` seconds when it is given
    (the summary is `timed_out` when either was cut short). `legacy`: a 0.1 state to merge first."""
    deadline = None if timeout is None else time.time() + timeout
    with StateStore(state_path) as store:
        if legacy is not None:
            store.absorb(legacy)
        async with JoggClient(
            base_url, api_key, timeouts=timeouts or Timeouts(), transport=transport
        ) as client:
            summary = await poll(client, store, wait=wait, timeout=timeout, schedule=schedule)
            found = await _check_double_charges(client, store, deadline)
        if results is not None and is_file(results):
            summary = _of_the_file(summary, refresh_results(results, store), wait=wait)
    # A listing not read (by the timeout, or the API did not answer) is not an all-clear.
    return replace(
        summary,
        double_charges=found.charges,
        timed_out=summary.timed_out or found.cut,
        listing_unread=found.unread,
    )


class FileVideos(NamedTuple):
    """What `refresh_results` found in a results file."""

    statuses: dict[str, str]  # its videos, by id, with their render status (empty: not known)
    strangers: set[str]  # those of them the state does not know
    unnamed: int  # rows it says were accepted (submitted, already_submitted) with no video id


def _of_the_file(summary: PollSummary, found: FileVideos, *, wait: bool) -> PollSummary:
    """The summary counts every render of the results file, not only those this poll found
    pending: one a webhook (`listen`) or an earlier `status` saw fail is still a failed render
    of the file, and its exit is not an all-clear. Those without a final status that the state
    does not know (`strangers`) are untracked: no check asked about them, so they are not said
    to be rendering. A wait that ended in time leaves none rendering that the state follows:
    any others still without a final status are unread. Rows it says were accepted whose
    video id was cleared are `unnamed`: nothing can check them from the file."""
    statuses, strangers = found.statuses, found.strangers
    final = ("completed", "failed")
    untracked = sum(statuses[video] not in final for video in strangers)
    counts = Counter(statuses.values())
    processing = len(statuses) - counts["completed"] - counts["failed"] - untracked
    unread = processing if wait and not summary.timed_out else summary.unread
    return replace(
        summary,
        completed=counts["completed"],
        failed=counts["failed"],
        processing=processing,
        unread=unread,
        untracked=untracked,
        unnamed=found.unnamed,
    )


class _ListingCheck(NamedTuple):
    charges: int = 0  # double charges seen for the first time
    cut: bool = False  # the deadline cut the read short
    unread: bool = False  # the API did not answer it


async def _check_double_charges(
    client: JoggClient, store: StateStore, deadline: float | None
) -> _ListingCheck:
    """Reads what the account rendered since the last look (until the deadline, if any); logs
    the double charges seen for the first time."""
    try:
        await AccountListing(client, store, deadline=deadline).sync()
    except ListingDeadline as exc:
        log.warning("the account's listing was not checked for double charges: %s", exc)
        return _ListingCheck(cut=True)
    except ApiError as exc:
        log.warning("could not check the account's listing for double charges: %s", exc)
        return _ListingCheck(unread=True)
    return _ListingCheck(charges=len(report_double_charges(store, None)))


def refresh_results(results: Location, store: StateStore) -> FileVideos:
    """Rewrites the video columns of a results file from the state, matching rows by video_id;
    returns what it found there (`FileVideos`). A file a run rewrote while it was read is read
    again, never written over with the rows as they were (paid rows back to not_attempted)."""
    return read_again_if_rewritten(results, lambda: _refresh(results, store))


def _refresh(results: Location, store: StateStore) -> FileVideos:
    version = storage.version(results)
    frame = read_results(results)
    require_columns(frame, results, ("video_id",), "status")
    known = store.video_states([v for v in frame["video_id"] if v])
    for column in VIDEO_COLUMNS:
        if column not in frame:
            frame[column] = ""
        frame[column] = [
            known[video_id][column] if video_id in known else value
            for video_id, value in zip(frame["video_id"], frame[column], strict=True)
        ]
    # A row whose video is one of a tag's several renders says so, as a run's results do.
    charged = {
        video_id: DOUBLE_CHARGED + ", ".join(charge.video_ids)
        for charge in store.double_charges()
        for video_id in charge.video_ids
    }
    if charged and "message" in frame:
        frame["message"] = [
            charged.get(video_id, message)
            for video_id, message in zip(frame["video_id"], frame["message"], strict=True)
        ]
    write_table(frame, results, read_as=version)
    statuses = {
        video_id: status
        for video_id, status in zip(frame["video_id"], frame["video_status"], strict=True)
        if video_id
    }
    accepted = frame["status"].map(row_status).isin(ACCEPTED_ROWS) if "status" in frame else False
    unnamed = int((accepted & frame["video_id"].str.strip().eq("")).sum())
    return FileVideos(statuses, statuses.keys() - known.keys(), unnamed)
