"""Progress of a run: jobs done out of jobs planned, each job counted once."""

from __future__ import annotations

import logging

import pytest

from batch.progress import Progress


def test_a_job_sent_again_is_not_counted_done_twice(caplog: pytest.LogCaptureFixture) -> None:
    """A job proven absent is sent again: cron's log read `progress: 25 of 24 jobs done`."""
    progress = Progress(bar=False, interval=0.0)
    progress.add_total(2)
    with caplog.at_level(logging.INFO, logger="batch.progress"):
        for job_id in (1, 2, 1):
            progress.update(job_id, {"sent": 3})
    progress.close()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "progress: 1 of 2 jobs done (sent 3)",
        "progress: 2 of 2 jobs done (sent 3)",
        "progress: 2 of 2 jobs done (sent 3)",
    ]
