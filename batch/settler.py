"""Settling lost answers during a run: every job whose last request may have been accepted is
looked up in the account's listing until it is found, proven absent (and sent again), or given up
(`unknown`). The rules are batch.joggai.reconcile's; this module applies them to the state and never
holds up other sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

from batch.errors import AccountError, ApiError
from batch.joggai import reconcile
from batch.joggai.listing import AccountListing
from batch.joggai.reconcile import Verdict
from batch.sender import RunControl, job_changed
from batch.store import AttemptRecord, Job, StateStore, UncertainJob

log = logging.getLogger(__name__)


class Settler:
    """Runs beside the sender until sending is over and no uncertain job can still settle."""

    def __init__(
        self,
        control: RunControl,
        state: StateStore,
        *,
        run_id: int,
        listing: AccountListing | None,
        launch: Callable[[Job], Awaitable[bool]],
        sending_over: Callable[[], bool],
        in_flight: set[int],
    ) -> None:
        self.control = control
        self.config = control.config
        self.state = state
        self.listing = listing
        self.launch = launch  # sends a job again (through the run's concurrency gate)
        self.sending_over = sending_over  # every planned job taken and every send finished
        self.in_flight = in_flight  # jobs being sent: a request in flight is not a lost answer
        self.run_id = run_id
        self.given_up: set[int] = set()
        self.unknown_reason = ""

    async def run(self) -> None:
        control = self.control
        poll = min(30.0, max(0.1, self.config.settle_seconds / 4))
        reviewed = -math.inf
        while True:
            jobs = [
                job
                for job in self.state.claim_uncertain(self.run_id)
                if job.id not in self.given_up and job.id not in self.in_flight
            ]
            if self.sending_over() and (not jobs or control.stop_reason is not None):
                if jobs:
                    log.warning(
                        "%d row(s) end unknown for now: the run stopped (%s) before their lost "
                        "answers were looked up; the next run looks them up before it sends "
                        "anything again",
                        len(jobs),
                        control.stop_reason,
                    )
                break
            if jobs and not control.stop_reason and time.monotonic() >= reviewed + poll:
                reviewed = time.monotonic()
                await self._review(jobs)
            control.uncertain.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(control.uncertain.wait(), poll)
        if self.given_up and not self.config.resubmit_unknown:
            log.warning(
                "%d row(s) end unknown: %s. They are not sent again; check the JoggAI dashboard, "
                "then `jogg-batch retry RESULTS --resubmit-unknown` for the missing ones",
                len(self.given_up),
                self.unknown_reason or "their requests' fate could not be proven",
            )

    async def _review(self, jobs: list[UncertainJob]) -> None:
        now, began, settle = time.time(), time.monotonic(), self.config.settle_seconds
        if self.listing is None:  # tags are off: nothing can be looked up
            for job in jobs:
                await self._give_up(job, "reconciliation tags are off (run.reconcile_tag = false)")
            return
        try:
            sync = await self.listing.sync(back_to=min(j.attempt_started or 0.0 for j in jobs))
        except AccountError as exc:
            self.control.refuse_account(exc)
            return
        except ApiError as exc:
            log.warning("cannot read the video listing yet (%s); looking again later", exc)
            for job in jobs:
                if now >= reconcile.deadline(job, settle):
                    await self._give_up(job, f"the video listing could not be read: {exc}")
            return
        for job in jobs:
            if job.id in self.given_up or job.id in self.in_flight:
                continue  # given up, or sent again while the listing was read
            listed = self.state.listed_video(job.tag, job.id)
            judgement = reconcile.judge(job, sync, listed=listed, settle=settle)
            posted = self.control.posted_at.get(job.id)
            if judgement.verdict is Verdict.ABSENT and posted and began < posted + 2 * settle:
                # The ledger's times say proven, yet this run posted the request less than the
                # two settle periods that takes (the attempt's, then the second listing's) ago
                # in real time: the wall clock was stepped (a VM fighting NTP). Waited on; its
                # deadline, on the stepped clock too, may end it `unknown`, never paid twice.
                judgement = reconcile.Judgement(Verdict.WAIT, why="the wall clock was stepped")
            if judgement.verdict is Verdict.FOUND:
                assert listed is not None
                if (holder := self.state.video_holder(listed, job.id)) is not None:
                    # One video for two rows: a listing that lies about tags. Never resent.
                    await self._give_up(
                        job, f"the listing gives its tag to video {listed}, which job {holder} has"
                    )
                    continue
                self.state.adopt(job.id, listed, run_id=self.run_id)
                self.control.maybe_accepted.discard(job.id)
                self.control.accepted += 1
                job_changed(job, "submitted", video_id=listed, recovered=True)
            elif judgement.verdict is Verdict.ABSENT:
                await self._send_again(job)
            elif judgement.verdict is Verdict.UNPROVABLE:
                await self._give_up(job, judgement.why)
            elif judgement.absent_at is not None:
                self.state.mark_absent(job.id, judgement.absent_at)
            elif now >= reconcile.deadline(job, settle):
                await self._give_up(job, f"absence not proven in time ({judgement.why})")

    async def _send_again(self, job: UncertainJob) -> None:
        self.control.maybe_accepted.discard(job.id)  # proven absent: it was not paid
        fresh = self.state.job(job.id)
        if fresh.attempts >= self.config.retry.max_attempts:
            # Proven absent, so not accepted: the row failed with its last answer.
            last = self.state.last_attempt(job.id)
            self.state.settle(job.id, "failed", last, run_id=self.run_id)
            job_changed(job, "failed", code=last.code, message=last.message)
            return
        if not self.state.settle(job.id, "pending", AttemptRecord("absent"), run_id=self.run_id):
            return  # another worker took the job over meanwhile: it is that worker's now
        log.info("row key %s: proven absent from the account; sending again", job.row_key)
        await self.launch(fresh)

    async def _give_up(self, job: UncertainJob, why: str) -> None:
        """The job ends `unknown` for this run; with --resubmit-unknown it is sent instead,
        once a run: a resubmission whose answer is lost ends unknown (`control.resubmitted`)."""
        self.given_up.add(job.id)
        if self.config.resubmit_unknown and job.id not in self.control.resubmitted:
            self.control.resubmitted.add(job.id)
            log.warning("row key %s: %s; resending (--resubmit-unknown)", job.row_key, why)
            if self.state.settle(
                job.id, "pending", AttemptRecord("resubmitted"), run_id=self.run_id
            ):
                await self.launch(self.state.job(job.id))
            return
        self.unknown_reason = self.unknown_reason or why
        self.state.settle(
            job.id, "unknown", AttemptRecord("unknown", message=why), run_id=self.run_id
        )
        job_changed(job, "unknown", message=why)
