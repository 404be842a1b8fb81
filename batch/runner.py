"""One run: plan the catalog against the state, send what needs sending, write the results.

Planning streams the catalog batch by batch and records each batch's plan in the state in one
transaction; sending starts as soon as the first batch is planned and pulls jobs from the state
in job order (so jobs an earlier run left behind go first). Every request is bracketed by state
writes (`sending` before, the outcome after), and an answer that may hide an accepted request is
reconciled through the unlimited GET side before anything is sent again (see `reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from batch import catalog, files, payload, reconcile, storage
from batch.client import ApiOutcome, JoggClient
from batch.config import RunConfig
from batch.errors import AccountError, ApiError, ExitCode
from batch.listing import CLOCK_SKEW_SECONDS, AccountListing
from batch.lookup import LookupConfig, LookupService
from batch.planner import PlanCounts, Planner
from batch.preflight import (
    Preflight,
    check_account,
    credit_warning,
    load_preflight,
    remaining_credits,
)
from batch.products import ProductError, ensure_product
from batch.progress import Progress
from batch.ratelimit import SlidingWindowLimiter
from batch.reconcile import Verdict
from batch.results import state_outcomes, write_results
from batch.state import UNCERTAIN, AttemptRecord, DoubleCharge, Job, StateStore, UncertainJob

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did; rendered on stderr and written by --summary-json."""

    catalog: str
    results: str
    state: str
    dry_run: bool
    plan: PlanCounts
    product_posts: int = 0  # POST /v2/product calls the plan needs before its videos
    statuses: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    requests_sent: int = 0
    credits_spent: int = 0  # accepted creates the ledger knows of (double charges included)
    double_charges: list[dict[str, Any]] = field(default_factory=list)  # found by this run
    elapsed_seconds: float = 0.0
    post_rate_per_minute: float = 0.0
    stopped: str | None = None  # why sending stopped early, if it did
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["plan"]["to_send"] = self.plan.to_send
        return data


class StopRequested(Exception):
    """Raised inside a job when the run stops sending (signal, cap, deadline, account error)."""


def run(config: RunConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> RunSummary:
    """Runs (or with `config.dry_run`, plans) one catalog. The caller maps `exit_code`."""
    started = time.monotonic()
    with StateStore(config.state) as state:
        state.lock()
        if config.legacy_state is not None:
            state.absorb(config.legacy_state)
        if config.dry_run:
            summary = _dry_run(config, state)
        else:
            summary = _Run(config, state, transport).execute()
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
    if config.summary_json is not None:
        files.write_text(config.summary_json, json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def plan_only(config: RunConfig) -> RunSummary:
    """`jogg-batch plan`: what a run would do; nothing is written anywhere.

    It takes the run lock (its rolled-back writes would otherwise hold up a running job), and
    plans against an empty scratch state (on disk: memory stays flat) when there is none yet.
    """
    with tempfile.TemporaryDirectory(prefix="jogg-plan-") as scratch:
        exists = config.state.exists()
        legacy = config.legacy_state
        if not exists and legacy is not None:  # plan against the older state, unmerged
            exists, config = True, replace(config, state=legacy, legacy_state=None)
        with StateStore(config.state if exists else Path(scratch) / "plan.db") as state:
            if exists:
                state.lock()
            return _plan_in(config, state)


def _plan_in(config: RunConfig, state: StateStore) -> RunSummary:
    with state.discarded():
        run_id = state.begin_run(str(config.catalog), dry_run=True)
        planner = Planner(config, state, run_id, dry_run=True)
        counts = planner.plan_all()
    return RunSummary(
        str(config.catalog),
        "",
        str(config.state),
        True,
        counts,
        product_posts=len(planner.product_sources),
    )


def _dry_run(config: RunConfig, state: StateStore) -> RunSummary:
    with state.discarded():
        run_id = state.begin_run(str(config.catalog), dry_run=True)
        planner = Planner(config, state, run_id, dry_run=True)
        if not config.offline:
            planner.preflight = load_preflight(_lookup_config(config))
        counts = planner.plan_all()
        _write_results(config, state, run_id)
        _write_planned_requests(config, state, run_id)
        statuses = state.count_rows(run_id)
    summary = RunSummary(
        str(config.catalog),
        str(config.results),
        str(config.state),
        True,
        counts,
        product_posts=len(planner.product_sources),
        statuses=statuses,
    )
    summary.exit_code = int(ExitCode.ROWS_FAILED if counts.invalid else ExitCode.OK)
    return summary


def planned_requests_path(results: storage.Location) -> storage.Location:
    """Where --dry-run writes the request bodies it would send (JSON Lines)."""
    stem = results.name.removesuffix(results.suffix).removesuffix(".results")
    return results.with_name(stem + ".requests.jsonl")


def _write_planned_requests(config: RunConfig, state: StateStore, run_id: int) -> None:
    """Builds and validates every body the run would send, and writes it for people to read.

    Rows whose product is created at run time show `product_id` as `"<created at run time>"`.
    """
    destination = planned_requests_path(config.results)
    with (
        storage.writing(destination) as temporary,
        temporary.open("w", encoding="utf-8") as out,
    ):
        last_id = 0
        while jobs := state.next_jobs(run_id, last_id, 1000):
            for job in jobs:
                fields = payload.fields_from_json(job.fields)
                product_id = fields.product_id or "<created at run time>"
                body = payload.build_request(fields, product_id).to_body(
                    job.tag if config.reconcile_tag else None
                )
                out.write(json.dumps({"row_key": job.row_key, "body": body}) + "\n")
            last_id = jobs[-1].id


def _lookup_config(config: RunConfig) -> LookupConfig:
    return LookupConfig(
        config.base_url, config.api_key, refresh=config.refresh_lookups, timeouts=config.timeouts
    )


def _write_results(config: RunConfig, state: StateStore, run_id: int) -> None:
    batches = catalog.read_passthrough(config.catalog, config.catalog_options)
    write_results(
        config.results,
        batches,
        lambda first, last: state_outcomes(state.outcome_rows(run_id, first, last), first, last),
    )


class _Run:
    """The live run: planner, dispatcher and job tasks on one event loop."""

    def __init__(
        self, config: RunConfig, state: StateStore, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.config = config
        self.state = state
        self.transport = transport
        self.run_id = state.begin_run(str(config.catalog), dry_run=False)
        self.planner = Planner(config, state, self.run_id, dry_run=False)
        self.rng = random.Random()
        self.stop_reason: str | None = None
        self.account_error: AccountError | None = None
        self.in_flight = 0
        self.accepted = 0
        self.sent = 0
        self.signal_code: ExitCode | None = None
        self.hard_stop = False  # a second signal: leave without rewriting the results
        self.planning_done = False
        self.planned = asyncio.Event()
        self.budget = asyncio.Condition()
        self.gate = asyncio.Semaphore(config.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()  # jobs being sent
        self.dispatched = False  # every planned job has been taken
        self.settle_due = asyncio.Event()  # something changed that the settler may act on
        self.listing: AccountListing | None = None
        self.given_up: set[int] = set()  # jobs that end unknown in this run
        self.unknown_reason = ""
        self.double_charges: list[DoubleCharge] = []
        self.started_at = time.time()
        self.progress = Progress(config.progress_bar, config.progress_interval)

    # --- lifecycle -----------------------------------------------------------------------------

    def execute(self) -> RunSummary:
        try:
            asyncio.run(self._main())
        except asyncio.CancelledError:
            # A second signal, or answers still missing when the grace period ended. Requests
            # cut off stay `sending` in the state and are reconciled by the next run.
            log.warning("stopped with requests in flight; the next run looks them up first")
        finally:
            self.progress.close()
            self.state.mark_not_attempted(self.run_id)
            if not self.hard_stop:
                started = time.monotonic()
                _write_results(self.config, self.state, self.run_id)
                log.debug("results written in %.1f s", time.monotonic() - started)
            self.state.finish_run(self.run_id, self.stop_reason or "done")
        if self.hard_stop:
            log.warning("results file not rewritten (second signal); the next run rewrites it")
        return self._summary()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        installed = self._install_signals(loop, main_task)
        results_task = asyncio.create_task(self._refresh_results())
        try:
            self.limiter = (
                SlidingWindowLimiter(self.config.rate) if self.config.rate is not None else None
            )
            if self.limiter is not None:
                # Sends of an earlier (crashed) run still count in the server's window.
                now = time.time()
                recent = self.state.recent_send_times(now - self.limiter.rate.window)
                self.limiter.seed(recent, now=now)
            async with JoggClient(
                self.config.base_url,
                self.config.api_key,
                timeouts=self.config.timeouts,
                transport=self.transport,
                max_connections=self.config.concurrency,
            ) as client:
                self.client = client
                if not self.config.offline and not await self._preflight():
                    return
                if self.config.reconcile_tag:
                    self.listing = AccountListing(
                        client, self.state, overlap=self.config.settle_seconds
                    )
                    if not await self._first_sync():
                        return
                try:
                    await asyncio.gather(self._plan(), self._dispatch(), self._settle())
                except asyncio.CancelledError:
                    for task in self.tasks:
                        task.cancel()
                    raise
                await self._last_sync()
        finally:
            results_task.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _preflight(self) -> bool:
        """Checks the key and loads the look-ups; False when the account refuses."""
        try:
            await check_account(self.client)
        except AccountError as exc:
            self.account_error = exc
            self.stop("the API refused the key")
            return False
        lookups = _lookup_config(self.config)
        service = LookupService(self.client, lookups.cache(), refresh=lookups.refresh)
        self.planner.preflight = await Preflight.fetch(service)
        log.debug("account checked, look-ups loaded")
        return True

    async def _first_sync(self) -> bool:
        """Reads what the account rendered since the last run, before anything is sent; False
        (nothing sent) when the listing cannot be read: it is the last defence of a fresh ledger."""
        assert self.listing is not None
        try:
            await self.listing.sync()
        except ApiError as exc:
            self.account_error = AccountError(
                f"cannot read the account's video listing, so nothing was sent: {exc}",
                code=exc.code,
                http_status=exc.http_status,
            )
            self.stop("the video listing is unreadable")
            return False
        self._report_double_charges()
        return True

    async def _last_sync(self) -> None:
        """After sending: one more look for double charges back to this run's first request."""
        if self.listing is None or self.hard_stop or not self.sent:
            return
        try:
            await self.listing.sync(back_to=self.started_at)
        except ApiError as exc:
            log.warning("could not check the listing for double charges after the run: %s", exc)
            return
        self._report_double_charges()

    def _report_double_charges(self) -> None:
        for charge in self.state.record_double_charges(self.run_id):
            self.double_charges.append(charge)
            log.error(
                "double charge: tag %s was rendered %d times (videos %s); raise it with JoggAI",
                charge.tag,
                len(charge.video_ids),
                ", ".join(charge.video_ids),
                extra={"event": "double_charge", "tag": charge.tag, "videos": charge.video_ids},
            )

    def _install_signals(
        self, loop: asyncio.AbstractEventLoop, main: asyncio.Task[Any]
    ) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []  # signal handlers can only live on the main thread (tests run elsewhere)

        def handle(sig: int) -> None:
            code = ExitCode.INTERRUPTED if sig == signal.SIGINT else ExitCode.TERMINATED
            if self.signal_code is not None:
                log.warning("second signal: stopping now; the state is consistent")
                self.hard_stop = True
                main.cancel()
                return
            self.signal_code = code
            self.stop(f"signal {signal.Signals(sig).name}")
            log.warning(
                "stopping: waiting up to %.0f s for %d request(s) in flight "
                "(signal again to stop at once)",
                self.config.shutdown_grace,
                self.in_flight,
            )
            loop.call_later(self.config.shutdown_grace, main.cancel)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handle, sig)
        return [signal.SIGINT, signal.SIGTERM]

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("no further requests: %s", reason)
        self.planned.set()

    def _should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        config = self.config
        if config.max_videos is not None and self.accepted >= config.max_videos:
            self.stop(f"--max-videos {config.max_videos} reached")
        elif config.deadline is not None and time.time() >= config.deadline:
            self.stop("time limit reached")
        return self.stop_reason is not None

    # --- planning and dispatch -----------------------------------------------------------------

    async def _plan(self) -> None:
        """Plans in a worker thread with its own connection, so that requests go out while a
        big catalog is still being read (the first POST does not wait for the last row)."""
        loop = asyncio.get_running_loop()

        def planned_batch(to_send: int) -> None:
            log.debug("planned %d more job(s) to send", to_send)
            self.progress.add_total(to_send)
            self.planned.set()

        def plan_in_thread() -> None:
            with StateStore(self.config.state) as own:
                self.planner.state = own
                for to_send in self.planner.batches():
                    loop.call_soon_threadsafe(planned_batch, to_send)
                    if self.stop_reason is not None:
                        break

        started = time.monotonic()
        try:
            await asyncio.to_thread(plan_in_thread)
        finally:
            self.planning_done = True
            self.planned.set()
        log.debug("planned %d rows in %.1f s", self.planner.counts.rows, time.monotonic() - started)
        if not self.config.offline:
            remaining = await remaining_credits(self.client)
            if warning := credit_warning(remaining, self.planner.counts.to_send):
                log.warning("%s", warning)

    async def _dispatch(self) -> None:
        """Takes the run's jobs from the state in id order, each once.

        A slice planned later can hold a job with a lower id (one an earlier run left behind),
        so each new slice restarts the scan from the lowest id; `picked` (a byte per job id)
        keeps a job from being taken twice. Jobs whose last request may have been accepted are
        not sent: `_settle` looks them up.
        """
        picked = bytearray()
        last_id = 0
        try:
            while not self._should_stop():
                if self.planned.is_set():
                    self.planned.clear()
                    last_id = 0
                jobs = self.state.next_jobs(self.run_id, last_id, 64)
                if not jobs:
                    if self.planning_done and not self.planned.is_set():
                        break
                    await self.planned.wait()
                    continue
                last_id = jobs[-1].id
                for job in jobs:
                    if job.id < len(picked) and picked[job.id]:
                        continue
                    if job.id >= len(picked):
                        picked.extend(bytes(max(job.id + 1, 2 * len(picked)) - len(picked)))
                    picked[job.id] = 1
                    if job.status in UNCERTAIN and not (
                        job.status == "unknown" and self.config.resubmit_unknown
                    ):
                        self.settle_due.set()
                        continue
                    if not await self._launch(job):
                        break
        finally:
            self.dispatched = True
            self.settle_due.set()

    async def _launch(self, job: Job) -> bool:
        """Starts sending one job once a concurrency slot is free; False when the run stops."""
        await self.gate.acquire()
        if self._should_stop():
            self.gate.release()
            return False
        task = asyncio.create_task(self._process(job))
        self.tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.gate.release()
            self.settle_due.set()

        task.add_done_callback(finished)
        return True

    # --- one job -------------------------------------------------------------------------------

    async def _process(self, job: Job) -> None:
        try:
            await self._send_job(job)
        except StopRequested:
            pass  # the job keeps `pending`: not_attempted when the run ends
        finally:
            self.progress.update({"sent": self.sent, "accepted": self.accepted})

    async def _send_job(self, job: Job) -> None:
        if self._adopted_from_listing(job):
            return
        fields = payload.fields_from_json(job.fields)
        product_id = job.product_id or fields.product_id or await self._product(job)
        if product_id is None:
            return
        body = payload.build_request(fields, product_id).to_body(
            job.tag if self.config.reconcile_tag else None
        )
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._post(job, body)
            if outcome.kind in ("ok", "permanent", "account", "unknown"):
                return  # an unknown answer is the settler's now: it never resends blindly
            if attempt >= self.config.retry.max_attempts:
                self._finish_exhausted(job, outcome)
                return
            delay = self.config.retry.delay(attempt, retry_after=outcome.retry_after, rng=self.rng)
            log.info(
                "row key %s: %s (code %s); retrying in %.1f s",
                job.row_key,
                outcome.kind,
                outcome.code,
                delay,
            )
            await asyncio.sleep(delay)

    def _adopted_from_listing(self, job: Job) -> bool:
        """A job whose tag the account already lists is not sent again, wherever it was paid."""
        if self.listing is None:
            return False
        video_id = self.state.listed_video(job.tag)
        if video_id is None:
            return False
        ours = job.attempts > 0
        self.state.adopt(job.id, video_id, run_id=self.run_id if ours else None)
        if ours:
            self.accepted += 1
        self._log_change(
            job, "submitted" if ours else "already_submitted", video_id=video_id, recovered=True
        )
        return True

    async def _within_budget(self) -> None:
        """Under --max-videos, a request leaves only if every one in flight could fail."""
        cap = self.config.max_videos
        async with self.budget:
            while cap is not None and self.accepted + self.in_flight >= cap:
                if self._should_stop():
                    raise StopRequested
                await self.budget.wait()
            if self._should_stop():
                raise StopRequested
            self.in_flight += 1

    async def _product(self, job: Job) -> str | None:
        """Creates (once, ever) the product of a row given by URL or details; None when the
        job ended instead (it failed)."""
        policy = self.config.retry
        for attempt in range(1, policy.max_attempts + 1):
            if self._should_stop():
                raise StopRequested
            try:
                return await ensure_product(job, self.client, self.limiter, self.state)
            except AccountError as exc:
                self.account_error = exc
                self.stop(f"account error {exc.code}")
                raise StopRequested from exc
            except ProductError as exc:
                outcome = exc.outcome
                if outcome.kind == "permanent" or attempt == policy.max_attempts:
                    self._finish_exhausted(job, outcome, permanent=outcome.kind == "permanent")
                    return None
                await asyncio.sleep(
                    policy.delay(attempt, retry_after=outcome.retry_after, rng=self.rng)
                )
        return None

    async def _post(self, job: Job, body: dict[str, Any]) -> ApiOutcome:
        await self._within_budget()
        try:
            if self.limiter is None:
                return await self._post_now(job, body)
            async with self.limiter.slot() as slot:
                if self.stop_reason is not None:
                    raise StopRequested
                outcome = await self._post_now(job, body)
                slot.observe(outcome.retry_after, outcome.rate_remaining, outcome.rate_limited)
                return outcome
        finally:
            self.in_flight -= 1
            async with self.budget:
                self.budget.notify_all()

    async def _post_now(self, job: Job, body: dict[str, Any]) -> ApiOutcome:
        attempt_id = self.state.begin_attempt(job.id, self.run_id)
        self.sent += 1
        outcome = await self.client.create_video(body)
        video_id = _video_id(outcome)
        record = AttemptRecord(
            outcome.kind,
            outcome.code,
            outcome.http_status,
            None if video_id else outcome.message,
            video_id,
        )
        if outcome.kind == "ok" and record.video_id:
            self.state.finish_attempt(attempt_id, job.id, record, "submitted", run_id=self.run_id)
            self.accepted += 1
            self._log_change(job, "submitted", video_id=record.video_id)
        elif outcome.kind == "ok" or outcome.kind == "unknown":
            # An answer without a video id is as good as no answer: the render may exist.
            record = replace(record, outcome="unknown")
            self.state.finish_attempt(attempt_id, job.id, record, "reconciling", run_id=self.run_id)
            self._log_change(job, "reconciling", code=outcome.code, message=outcome.message)
            self.settle_due.set()
            outcome = replace(outcome, kind="unknown")
        elif outcome.kind == "permanent":
            self.state.finish_attempt(
                attempt_id, job.id, record, "failed", run_id=self.run_id, permanent=True
            )
            self._log_change(job, "failed", code=outcome.code, message=outcome.message)
        elif outcome.kind == "account":
            self.state.finish_attempt(attempt_id, job.id, record, "pending", run_id=self.run_id)
            self.account_error = AccountError(
                f"the API refused the account (code {outcome.code}): {outcome.message}",
                code=outcome.code,
                http_status=outcome.http_status,
            )
            self.stop(f"account error {outcome.code}")
        else:  # retryable (429) or not_sent: certainly not accepted
            self.state.finish_attempt(attempt_id, job.id, record, "pending", run_id=self.run_id)
        return outcome

    def _finish_exhausted(self, job: Job, outcome: ApiOutcome, *, permanent: bool = False) -> None:
        """Out of attempts. A job any of whose requests may have been accepted never ends
        `failed` (which `retry` would pay for again): it goes back to the settler."""
        if not permanent and self.state.had_uncertain_attempt(job.id):
            self.state.settle(
                job.id,
                "reconciling",
                AttemptRecord(outcome.kind, outcome.code, outcome.http_status, outcome.message),
                run_id=self.run_id,
            )
            self.settle_due.set()
            return
        self.state.settle(
            job.id,
            "failed",
            AttemptRecord(outcome.kind, outcome.code, outcome.http_status, outcome.message),
            run_id=self.run_id,
            permanent=permanent,
        )
        self._log_change(job, "failed", code=outcome.code, message=outcome.message)

    # --- lost answers --------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Looks up, from the account's listing, every job of this run whose last request may
        have been accepted, until each is found, proven absent (and sent again), or given up
        (`unknown`); see `batch.reconcile` for the rules. It never holds up other sends."""
        poll = min(30.0, max(0.1, self.config.settle_seconds / 4))
        reviewed = -math.inf
        while True:
            idle = self.dispatched and not self.tasks
            jobs = [j for j in self.state.uncertain_jobs(self.run_id) if j.id not in self.given_up]
            if idle and (not jobs or self.stop_reason is not None):
                break
            if jobs and not self.stop_reason and time.monotonic() >= reviewed + poll:
                reviewed = time.monotonic()
                await self._review(jobs)
            self.settle_due.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.settle_due.wait(), poll)
        if self.given_up:
            log.warning(
                "%d row(s) end unknown: %s. They are not sent again; check the JoggAI dashboard, "
                "then `jogg-batch retry RESULTS --resubmit-unknown` for the missing ones",
                len(self.given_up),
                self.unknown_reason or "their requests' fate could not be proven",
            )

    async def _review(self, jobs: list[UncertainJob]) -> None:
        now = time.time()
        if self.listing is None:  # tags are off: nothing can be looked up
            for job in jobs:
                await self._give_up(job, "reconciliation tags are off (run.reconcile_tag = false)")
            return
        try:
            sync = await self.listing.sync(back_to=min(j.attempt_started or 0.0 for j in jobs))
        except AccountError as exc:
            self.account_error = exc
            self.stop(f"account error {exc.code}")
            return
        except ApiError as exc:
            log.warning("cannot read the video listing yet (%s); looking again later", exc)
            for job in jobs:
                if now >= reconcile.deadline(job, self.config.settle_seconds):
                    await self._give_up(job, f"the video listing could not be read: {exc}")
            return
        settle = self.config.settle_seconds
        for job in jobs:
            listed = self.state.listed_video(job.tag)
            judgement = reconcile.judge(job, sync, listed=listed, settle=settle)
            if job.id in self.given_up:
                continue
            if judgement.verdict is Verdict.FOUND:
                assert listed is not None
                self.state.adopt(job.id, listed, run_id=self.run_id)
                self.accepted += 1
                self._log_change(job, "submitted", video_id=listed, recovered=True)
            elif judgement.verdict is Verdict.ABSENT:
                await self._send_again(job)
            elif judgement.verdict is Verdict.UNPROVABLE:
                await self._give_up(job, judgement.why)
            elif judgement.absent_at is not None:
                self.state.mark_absent(job.id, judgement.absent_at)
            elif now >= reconcile.deadline(job, settle):
                await self._give_up(job, "absence not proven in time (" + judgement.why + ")")

    async def _send_again(self, job: UncertainJob) -> None:
        fresh = self.state.job(job.id)
        if fresh.attempts >= self.config.retry.max_attempts:
            # Proven absent, so not accepted: the row failed with its last answer.
            last = self.state.last_attempt(job.id)
            self.state.settle(job.id, "failed", last, run_id=self.run_id)
            self._log_change(job, "failed", code=last.code, message=last.message)
            return
        log.info("row key %s: proven absent from the account; sending again", job.row_key)
        self.state.settle(job.id, "pending", AttemptRecord("absent"), run_id=self.run_id)
        await self._launch(fresh)

    async def _give_up(self, job: UncertainJob, why: str) -> None:
        """The job ends `unknown` for this run; with --resubmit-unknown it is sent instead."""
        self.given_up.add(job.id)  # once: a resubmission whose answer is lost ends unknown
        if self.config.resubmit_unknown:
            log.warning("row key %s: %s; resending (--resubmit-unknown)", job.row_key, why)
            self.state.settle(job.id, "pending", AttemptRecord("resubmitted"), run_id=self.run_id)
            await self._launch(self.state.job(job.id))
            return
        self.unknown_reason = self.unknown_reason or why
        self.state.settle(
            job.id, "unknown", AttemptRecord("unknown", message=why), run_id=self.run_id
        )
        self._log_change(job, "unknown", message=why)

    def _log_change(self, job: Job | UncertainJob, status: str, **details: Any) -> None:
        """One line per state change; with --log-format json its fields are keys."""
        said = ", ".join(f"{k} {v}" for k, v in details.items() if v not in (None, ""))
        log.info(
            "row %s: %s%s",
            job.row_key,
            status,
            f" ({said})" if said else "",
            extra={"event": "job", "job": job.id, "row_key": job.row_key, "status": status}
            | {f"job_{key}": value for key, value in details.items()},
        )

    # --- results and summary -------------------------------------------------------------------

    async def _refresh_results(self) -> None:
        """Rewrites the results file now and then, so a killed run leaves a recent one."""
        interval = self.config.results_interval
        while True:
            await asyncio.sleep(interval)
            began = time.monotonic()
            await asyncio.to_thread(self._write_results_snapshot)
            # A big catalog takes a while to write: never spend more than a tenth of the time on it.
            interval = max(self.config.results_interval, 10 * (time.monotonic() - began))

    def _write_results_snapshot(self) -> None:
        with StateStore.reader(self.config.state) as reader:
            _write_results(self.config, reader, self.run_id)

    def _summary(self) -> RunSummary:
        statuses = self.state.count_rows(self.run_id)
        summary = RunSummary(
            str(self.config.catalog),
            str(self.config.results),
            str(self.config.state),
            False,
            self.planner.counts,
            statuses=statuses,
            codes=self.state.failure_codes(self.run_id),
            requests_sent=self.sent,
            credits_spent=self.state.run_credits(self.run_id, self.started_at - CLOCK_SKEW_SECONDS),
            double_charges=[
                {"tag": c.tag, "video_ids": list(c.video_ids), "first_created": c.first_created}
                for c in self.double_charges
            ],
            stopped=self.stop_reason,
        )
        times = self.state.run_attempt_times(self.run_id)
        if len(times) > 1 and times[-1] > times[0]:
            summary.post_rate_per_minute = round((len(times) - 1) * 60 / (times[-1] - times[0]), 2)
        summary.exit_code = int(self._exit_code(statuses))
        return summary

    def _exit_code(self, statuses: dict[str, int]) -> ExitCode:
        if self.signal_code is not None:
            return self.signal_code
        if self.account_error is not None:
            log.error("%s", self.account_error)
            return ExitCode.ACCOUNT
        if self.double_charges:
            return ExitCode.DOUBLE_CHARGED
        bad = ("failed", "invalid", "unknown", "not_attempted")
        return ExitCode.ROWS_FAILED if any(statuses.get(s) for s in bad) else ExitCode.OK


def _video_id(outcome: ApiOutcome) -> str | None:
    data = outcome.data if isinstance(outcome.data, dict) else {}
    value = data.get("video_id") or data.get("product_video_id")
    return str(value) if value else None
