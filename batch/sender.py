"""Sending one job: the budget, the rate limiter, the state written before and after the POST,
the retries that are safe, and the job's status from its answer.

Every request is bracketed by state writes: `sending` is committed (fsynced) before it leaves,
the outcome after. Only answers that prove the request was not processed (429, a connection that
never opened) are retried here; an answer that may hide an accepted request leaves the job
`reconciling` for the settler (batch.settler), which never resends without proof.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from batch import payload
from batch.config import RunConfig
from batch.errors import AccountError, CatalogError, ExitCode, LocalIOError
from batch.joggai.client import ApiOutcome, JoggClient
from batch.joggai.listing import AccountListing
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.products import ProductError, ensure_product
from batch.statuses import JobStatus
from batch.store import AttemptRecord, Job, StateStore, UncertainJob
from batch.vocabulary import Code

log = logging.getLogger(__name__)

T = TypeVar("T")


class StopRequested(Exception):
    """Raised inside a job when the run stops sending (signal, cap, deadline, account error)."""


class JobTaken(Exception):
    """The job is no longer this worker's to send (batch.store.fleet): nothing was sent."""


@dataclass
class RunControl:
    """What every part of a live run shares: why sending stopped, and the counts that decide
    whether it must (`--max-videos`, `--until`).

    Every wait of a job (a backoff, the rate limiter, the --max-videos budget) goes through
    `unless_stopped`: when sending stops (a signal, the deadline, an account error) it ends at
    once with StopRequested, so no server hint or full window can outlive the run.
    """

    config: RunConfig
    on_stop: Callable[[], None] = lambda: None
    stop_reason: str | None = None
    account_error: AccountError | None = None
    local_error: LocalIOError | None = None
    catalog_error: CatalogError | None = None  # the catalog stopped reading while planning
    signal_code: ExitCode | None = None
    # Told of each attempt before its request leaves (the account's sending lock notes it).
    on_attempt: Callable[[int, int], None] = lambda run_id, attempt_id: None
    sent: int = 0
    accepted: int = 0
    # This run's jobs whose request may have been accepted (a lost answer), until settled: they
    # count against --max-videos, since each may be a paid video.
    maybe_accepted: set[int] = field(default_factory=set)
    in_flight: int = 0  # jobs past the budget: waiting for the limiter or sending
    on_the_wire: int = 0  # requests sent and not yet answered
    uncertain: asyncio.Event = field(default_factory=asyncio.Event)  # the settler has work
    # When each job's last request of this run left, in real time (monotonic): the settler
    # proves absence against it too, not only against the ledger's wall-clock times.
    posted_at: dict[int, float] = field(default_factory=dict)
    # Jobs of `unknown` rows this run sent again (--resubmit-unknown): once a run, so a lost
    # answer to that request ends the row unknown again, never sent a third time blindly.
    resubmitted: set[int] = field(default_factory=set)
    # Tasks inside `unless_stopped`, and those of them `stop` cancelled.
    _waiting: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)
    _cut: set[asyncio.Task[Any]] = field(default_factory=set, init=False, repr=False)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("no further requests: %s", reason)
            for task in self._waiting - self._cut:
                self._cut.add(task)
                task.cancel()
        self.on_stop()

    async def unless_stopped(self, wait: Awaitable[T]) -> T:
        """`await wait`, or StopRequested as soon as sending stops (the wait is cancelled: it
        must take nothing it does not give back when cancelled, as asyncio's waits do)."""
        task = asyncio.current_task()
        assert task is not None
        if self.stop_reason is not None:
            if asyncio.iscoroutine(wait):
                wait.close()
            raise StopRequested
        self._waiting.add(task)
        try:
            return await wait
        except asyncio.CancelledError:
            if task not in self._cut or task.uncancel() > 0:
                raise  # cancelled by someone else as well: theirs to handle
            raise StopRequested from None
        finally:
            self._waiting.discard(task)
            self._cut.discard(task)

    @property
    def spent(self) -> int:
        """Videos this run may have paid for: accepted, or answered in a way that hides it."""
        return self.accepted + len(self.maybe_accepted)

    async def sleep(self, seconds: float) -> None:
        """A pause that a stop cuts short (with StopRequested)."""
        await self.unless_stopped(asyncio.sleep(seconds))

    def should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        config = self.config
        if config.max_videos is not None and self.spent >= config.max_videos:
            self.stop(f"--max-videos {config.max_videos} reached")
        elif config.deadline is not None and time.time() >= config.deadline:
            self.stop("time limit reached")
        return self.stop_reason is not None

    def refuse_account(self, error: AccountError) -> None:
        self.account_error = error
        self.stop(f"account error ({refusal(error.code, error.http_status)})")


def refusal(code: int | None, http_status: int | None) -> str:
    """How an answer refused: `code 18020`, `HTTP 401, no code`."""
    if code is not None:
        return f"code {code}"
    return f"HTTP {http_status}, no code" if http_status is not None else "no code"


def status_after(outcome: ApiOutcome) -> JobStatus:
    """The job's status once a create was answered with `outcome` (the whole table):

    | outcome                          | job          | why                                   |
    | ok with a video id               | submitted    | accepted and charged                  |
    | ok without one, unknown          | reconciling  | may be accepted: looked up first      |
    | (50000, 5xx, undocumented codes) |              |                                       |
    | permanent (40000, 10104)         | failed       | refused; the same request fails again |
    | account or permanent without a   | reconciling  | no API envelope proves the refusal:   |
    | code (a bare 400/401/403, a      |              | looked up first (an account error     |
    | proxy's page)                    |              | stops the run)                        |
    | account, retryable, not_sent     | pending      | certainly not accepted                |
    """
    if outcome.kind in ("account", "permanent") and outcome.code is None:
        return "reconciling"
    if outcome.kind == "ok":
        return "submitted" if outcome.video_id else "reconciling"
    if outcome.kind == "unknown":
        return "reconciling"
    if outcome.kind == "permanent":
        return "failed"
    return "pending"


def job_changed(job: Job | UncertainJob, status: str, **details: Any) -> None:
    """One log line per state change; with --log-format json its fields are keys."""
    said = ", ".join(f"{k} {v}" for k, v in details.items() if v not in (None, ""))
    log.info(
        "row %s: %s%s",
        job.row_key,
        status,
        f" ({said})" if said else "",
        extra={"event": "job", "job": job.id, "row_key": job.row_key, "status": status}
        | {f"job_{key}": value for key, value in details.items()},
    )


class JobSender:
    """Sends jobs of one run; each `send` takes one job as far as it can go."""

    def __init__(
        self,
        control: RunControl,
        state: StateStore,
        client: JoggClient,
        *,
        run_id: int,
        limiter: SlidingWindowLimiter | None,
        listing: AccountListing | None,
    ) -> None:
        self.control = control
        self.config = control.config
        self.state = state
        self.client = client
        self.run_id = run_id
        self.limiter = limiter
        self.listing = listing
        self.budget = asyncio.Condition()
        self.rng = random.Random()

    async def send(self, job: Job) -> None:
        """Adopt the job from the account's listing, or send it until its answer is final,
        unknown (the settler's then), or the attempts allowed are spent."""
        try:
            await self._send(job)
        except JobTaken:
            log.debug("row key %s: taken by another worker", job.row_key)

    async def _send(self, job: Job) -> None:
        if self._adopted_from_listing(job):
            return
        fields = payload.fields_from_json(job.fields)
        product_id = job.product_id or fields.product_id or await self._product(job)
        if product_id is None:
            return
        body = payload.build_request(fields, product_id).to_body(
            job.tag if self.config.reconcile_tag else None
        )
        policy = self.config.retry
        for attempt in range(1, policy.max_attempts + 1):
            outcome = await self._post(job, body)
            if not policy.should_retry(outcome.kind, attempt):
                if outcome.kind in ("retryable", "not_sent"):
                    self.finish_exhausted(job, outcome)
                return
            delay = policy.delay(attempt, retry_after=outcome.retry_after, rng=self.rng)
            log.info(
                "row key %s: %s (code %s); retrying in %.1f s at the soonest (the rate limit "
                "may hold it longer)",
                job.row_key,
                outcome.kind,
                outcome.code,
                delay,
            )
            await self.control.sleep(delay)

    def _made_product_gone(self, job: Job) -> bool:
        """Whether the job's product was made at run time (its row gives a URL or details): a
        10104 then says the product is gone (deleted at JoggAI), and the ledger forgets it,
        so that it is made again; the row failed for good with it every night, and no edit
        short of another URL got it back."""
        product_id = self.state.job(job.id).product_id
        if product_id is None or payload.fields_from_json(job.fields).product_id is not None:
            return False
        self.state.forget_product(product_id)
        return True

    def finish_exhausted(self, job: Job, outcome: ApiOutcome, *, permanent: bool = False) -> None:
        """Out of attempts. A job any of whose requests may have been accepted never ends
        `failed` (which `retry` would pay for again): it goes back to the settler."""
        record = AttemptRecord(outcome.kind, outcome.code, outcome.http_status, outcome.message)
        if not permanent and self.state.had_uncertain_attempt(job.id):
            self.state.settle(job.id, "reconciling", record, run_id=self.run_id)
            self.control.uncertain.set()
            return
        self.state.settle(job.id, "failed", record, run_id=self.run_id, permanent=permanent)
        job_changed(job, "failed", code=outcome.code, message=outcome.message)

    def _held_elsewhere(self, job: Job | UncertainJob, video_id: str | None) -> str | None:
        """Why `video_id` cannot be this job's: another row's job has it already (a server or a
        listing that gives one video to two rows); None when it is free."""
        holder = None if video_id is None else self.state.video_holder(video_id, job.id)
        if holder is None:
            return None
        return f"video {video_id} is already another row's (job {holder}): one video, two rows"

    def _adopted_from_listing(self, job: Job) -> bool:
        """A job whose tag the account already lists is not sent again, wherever it was paid."""
        if self.listing is None:
            return False
        video_id = self.state.listed_video(job.tag, job.id)
        if video_id is None:
            return False
        if other := self._held_elsewhere(job, video_id):
            # Listed, so maybe paid: never sent again, but not this video either.
            self.state.settle(
                job.id, "unknown", AttemptRecord("unknown", message=other), run_id=None
            )
            job_changed(job, "unknown", message=other)
            return True
        ours = job.attempts > 0
        self.state.adopt(job.id, video_id, run_id=self.run_id if ours else None)
        if ours:
            self.control.accepted += 1
        status = "submitted" if ours else "already_submitted"
        job_changed(job, status, video_id=video_id, recovered=True)
        return True

    async def _within_budget(self) -> None:
        """Under --max-videos, a request leaves only if every one in flight could fail."""
        control, cap = self.control, self.config.max_videos
        async with self.budget:
            while cap is not None and control.spent + control.in_flight >= cap:
                if control.should_stop():
                    raise StopRequested
                await control.unless_stopped(self.budget.wait())
            if control.should_stop():
                raise StopRequested
            control.in_flight += 1

    async def _product(self, job: Job) -> str | None:
        """Creates (once, ever) the product of a row given by URL or details; None when the
        job ended instead (it failed)."""
        policy = self.config.retry
        for attempt in range(1, policy.max_attempts + 1):
            if self.control.should_stop():
                raise StopRequested
            try:
                return await ensure_product(job, self.client, self.limiter, self.state)
            except AccountError as exc:
                self.control.refuse_account(exc)
                raise StopRequested from exc
            except ProductError as exc:
                outcome = exc.outcome
                if outcome.kind == "permanent" or attempt == policy.max_attempts:
                    # Said as the product's: no video was asked for, none charged.
                    said = f"creating the product (no video was asked for): {outcome.message}"
                    outcome = replace(outcome, message=said)
                    self.finish_exhausted(job, outcome, permanent=outcome.kind == "permanent")
                    return None
                await self.control.sleep(
                    policy.delay(attempt, retry_after=outcome.retry_after, rng=self.rng)
                )
        return None

    async def _post(self, job: Job, body: dict[str, Any]) -> ApiOutcome:
        await self._within_budget()
        try:
            if self.limiter is None:
                return await self._post_now(job, body)
            async with contextlib.AsyncExitStack() as stack:
                # Cancelled while waiting, the limiter takes no place (its own guarantee).
                slot = await self.control.unless_stopped(
                    stack.enter_async_context(self.limiter.slot())
                )
                if self.control.stop_reason is not None:
                    slot.unused()
                    raise StopRequested
                try:
                    outcome = await self._post_now(job, body)
                except JobTaken:
                    slot.unused()
                    raise
                slot.observe(
                    outcome.retry_after,
                    outcome.rate_remaining,
                    outcome.rate_limited,
                    answered=outcome.answered,
                )
                return outcome
            raise AssertionError("unreachable")  # mypy: an exit stack may swallow exceptions
        finally:
            self.control.in_flight -= 1
            async with self.budget:
                self.budget.notify_all()

    async def _post_now(self, job: Job, body: dict[str, Any]) -> ApiOutcome:
        attempt_id = self.state.begin_attempt(job.id, self.run_id)
        if attempt_id is None:
            raise JobTaken  # another worker holds it, or a request of it may be in flight
        self.control.on_attempt(self.run_id, attempt_id)
        self.control.posted_at[job.id] = time.monotonic()
        self.control.sent += 1
        self.control.on_the_wire += 1
        try:
            outcome = await self.client.create_video(body)
        finally:
            self.control.on_the_wire -= 1
        status = status_after(outcome)
        refused = outcome.kind == "account"  # the run stops, whatever became of the job
        if status == "submitted" and (other := self._held_elsewhere(job, outcome.video_id)):
            status, outcome = "reconciling", replace(outcome, message=other)
        if status == "reconciling":  # an answer without a video id is as good as none
            outcome = replace(outcome, kind="unknown")
        permanent = status == "failed"
        if permanent and outcome.code == Code.NOT_FOUND and self._made_product_gone(job):
            permanent = False  # the next run (or retry) makes the product again, then sends
            outcome = replace(
                outcome,
                message=f"{outcome.message}: the product made for this row is gone at JoggAI "
                "(deleted?); the next run or retry makes it again",
            )
        video_id = outcome.video_id
        record = AttemptRecord(
            outcome.kind,
            outcome.code,
            outcome.http_status,
            None if video_id else outcome.message,
            video_id,
        )
        self.state.finish_attempt(
            attempt_id, job.id, record, status, run_id=self.run_id, permanent=permanent
        )
        if status == "submitted":
            self.control.accepted += 1
            job_changed(job, "submitted", video_id=video_id)
        elif status == "reconciling":
            job_changed(job, "reconciling", code=outcome.code, message=outcome.message)
            self.control.maybe_accepted.add(job.id)
            self.control.uncertain.set()
        elif status == "failed":
            job_changed(job, "failed", code=outcome.code, message=outcome.message)
        if refused:
            self.control.refuse_account(
                AccountError(
                    f"the API refused the account ({refusal(outcome.code, outcome.http_status)}):"
                    f" {outcome.message}",
                    code=outcome.code,
                    http_status=outcome.http_status,
                )
            )
        return outcome
