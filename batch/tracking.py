"""After submission: poll final video statuses into the state and on into the results file."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import httpx

from batch.client import JoggClient, Timeouts
from batch.config import Secret
from batch.errors import ApiError
from batch.listing import AccountListing
from batch.results import read_results, write_table
from batch.status import DEFAULT_SCHEDULE, PollSchedule, PollSummary, poll
from batch.storage import Location, is_file
from batch.store import VIDEO_COLUMNS, StateStore

log = logging.getLogger(__name__)


def track(
    state_path: Path,
    base_url: str,
    api_key: Secret,
    *,
    wait: bool,
    timeout: float | None,
    results: Location | None = None,
    legacy: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
) -> PollSummary:
    """Polls every submitted, unfinished video once (or until final with `wait`), then looks
    for double charges in the account's listing. `legacy`: a 0.1 state to merge first."""

    async def main() -> PollSummary:
        async with JoggClient(
            base_url, api_key, timeouts=Timeouts(), transport=transport
        ) as client:
            summary = await poll(client, store, wait=wait, timeout=timeout, schedule=schedule)
            found = await _check_double_charges(client, store)
            return replace(summary, double_charges=found)

    with StateStore(state_path) as store:
        if legacy is not None:
            store.absorb(legacy)
        summary = asyncio.run(main())
        if results is not None and is_file(results):
            refresh_results(results, store)
    return summary


async def _check_double_charges(client: JoggClient, store: StateStore) -> int:
    """Reads what the account rendered since the last look; logs and returns the number of
    double charges seen for the first time."""
    try:
        await AccountListing(client, store).sync()
    except ApiError as exc:
        log.warning("could not check the account's listing for double charges: %s", exc)
        return 0
    found = store.record_double_charges(None)
    for charge in found:
        log.error(
            "double charge: tag %s was rendered %d times (videos %s); raise it with JoggAI",
            charge.tag,
            len(charge.video_ids),
            ", ".join(charge.video_ids),
        )
    return len(found)


def refresh_results(results: Location, store: StateStore) -> None:
    """Rewrites the video columns of a results file from the state, matching rows by video_id."""
    frame = read_results(results)
    known = store.video_states([v for v in frame["video_id"] if v])
    for column in VIDEO_COLUMNS:
        if column not in frame:
            frame[column] = ""
        frame[column] = [
            known[video_id][column] if video_id in known else value
            for video_id, value in zip(frame["video_id"], frame[column], strict=True)
        ]
    write_table(frame, results)
