"""After submission: poll final video statuses into the state and on into the results file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from batch.client import JoggClient, Timeouts
from batch.config import Secret
from batch.results import read_results, write_table
from batch.state import VIDEO_COLUMNS, StateStore
from batch.status import DEFAULT_SCHEDULE, PollSchedule, PollSummary, poll


def track(
    state_path: Path,
    base_url: str,
    api_key: Secret,
    *,
    wait: bool,
    timeout: float | None,
    results: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    schedule: PollSchedule = DEFAULT_SCHEDULE,
) -> PollSummary:
    """Polls every submitted, unfinished video once (or until final with `wait`)."""

    async def main() -> PollSummary:
        async with JoggClient(
            base_url, api_key, timeouts=Timeouts(), transport=transport
        ) as client:
            return await poll(client, store, wait=wait, timeout=timeout, schedule=schedule)

    with StateStore(state_path) as store:
        summary = asyncio.run(main())
        if results is not None and results.exists():
            refresh_results(results, store)
    return summary


def refresh_results(results: Path, store: StateStore) -> None:
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
