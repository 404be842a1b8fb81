"""One run: plan the catalog against the state, send what needs sending, write the results.

Planning streams the catalog batch by batch and records each batch's plan in the state in one
transaction; sending starts as soon as the first batch is planned and pulls jobs from the state
in job order (so jobs an earlier run left behind go first). Every request is bracketed by state
writes (`sending` before, the outcome after), and an answer that may hide an accepted request is
reconciled through the unlimited GET side before anything is sent again (see `reconcile`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from batch import catalog, payload
from batch.client import ApiOutcome, JoggClient
from batch.config import RunConfig
from batch.errors import AccountError, ApiError, ExitCode
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
from batch.reconcile import Reconciler
from batch.results import state_outcomes, write_results
from batch.state import UNCERTAIN, AttemptRecord, Job, StateStore
from batch.validate import before_sending

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
    credits_spent: int = 0
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
    before_sending(config)  # a file or path problem is refused here, before any request
    started = time.monotonic()
    with StateStore(config.state) as state:
        state.lock()
        if config.dry_run:
            summary = _dry_run(config, state)
        else:
            summary = _Run(config, state, transport).execute()
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
    if config.summary_json is not None:
        config.summary_json.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def plan_only(config: RunConfig) -> RunSummary:
    """`jogg-batch plan`: what a run would do; nothing is written anywhere.

    It takes the run lock (its rolled-back writes would otherwise hold up a running job), and
    plans against an empty scratch state (on disk: memory stays flat) when there is none yet.
    """
    with tempfile.TemporaryDirectory(prefix="jogg-plan-") as scratch:
        exists = config.state.exists()
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


def planned_requests_path(results: Path) -> Path:
    """Where --dry-run writes the request bodies it would send (JSON Lines)."""
    stem = results.name.removesuffix(results.suffix).removesuffix(".results")
    return results.with_name(stem + ".requests.jsonl")


def _write_planned_requests(config: RunConfig, state: StateStore, run_id: int) -> None:
    """Builds and validates every body the run would send, and writes it for people to read.

    Rows whose product is created at run time show `product_id` as `"<created at run time>"`.
    """
    destination = planned_requests_path(config.results)
    temporary = destination.with_name(f".{destination.name}.tmp")
    with temporary.open("w", encoding="utf-8") as out:
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
    os.replace(temporary, destination)


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
                self.reconciler = Reconciler(client, enabled=self.config.reconcile_tag)
                if not self.config.offline and not await self._preflight():
                    return
                await asyncio.gather(self._plan(), self._dispatch())
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
        keeps a job from being taken twice.
        """
        gate = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
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
                    await gate.acquire()
                    if self._should_stop():
                        gate.release()
                        break
                    if job.id >= len(picked):
                        picked.extend(bytes(max(job.id + 1, 2 * len(picked)) - len(picked)))
                    picked[job.id] = 1
                    task = asyncio.create_task(self._process(job))
                    tasks.add(task)

                    def finished(task: asyncio.Task[None]) -> None:
                        tasks.discard(task)
                        gate.release()

                    task.add_done_callback(finished)
            if tasks:
                await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise

    # --- one job -------------------------------------------------------------------------------

    async def _process(self, job: Job) -> None:
        try:
            await self._send_job(job)
        except StopRequested:
            pass  # the job keeps `pending`: not_attempted when the run ends
        finally:
            self.progress.update({"sent": self.sent, "accepted": self.accepted})

    async def _send_job(self, job: Job) -> None:
        if job.status in UNCERTAIN:
            since = self.state.last_attempt_start(job.id) or 0.0
            if await self._reconciled(job, since):
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
            outcome, started = await self._post(job, body)
            if outcome.kind == "ok":
                return
            if outcome.kind in ("permanent", "account"):
                return
            # An unknown outcome absent from a listing that covers the attempt is safe to resend.
            if outcome.kind == "unknown" and await self._reconciled(job, started):
                return
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

    async def _post(self, job: Job, body: dict[str, Any]) -> tuple[ApiOutcome, float]:
        await self._within_budget()
        try:
            if self.limiter is None:
                return await self._post_now(job, body)
            async with self.limiter.slot() as slot:
                if self.stop_reason is not None:
                    raise StopRequested
                outcome, started = await self._post_now(job, body)
                slot.observe(
                    outcome.retry_after,
                    outcome.rate_remaining,
                    outcome.code == 429 or outcome.http_status == 429,
                )
                return outcome, started
        finally:
            self.in_flight -= 1
            async with self.budget:
                self.budget.notify_all()

    async def _post_now(self, job: Job, body: dict[str, Any]) -> tuple[ApiOutcome, float]:
        started = time.time()
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
            self.state.finish_attempt(attempt_id, job.id, record, "reconciling", run_id=self.run_id)
            outcome = _as_unknown(outcome)
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
        else:  # retryable or not_sent: certainly not accepted
            self.state.finish_attempt(attempt_id, job.id, record, "pending", run_id=self.run_id)
        return outcome, started

    async def _reconciled(self, job: Job, since: float) -> bool:
        """True when the job's fate is settled (found, or unknown and not to be resent)."""
        try:
            video_id = await self.reconciler.find(job.tag, since)
        except ApiError as exc:
            if self.config.resubmit_unknown:
                log.warning(
                    "row key %s: cannot reconcile (%s); resending (--resubmit-unknown)",
                    job.row_key,
                    exc,
                )
                return False
            self.state.settle(
                job.id, "unknown", AttemptRecord("unknown", message=str(exc)), run_id=self.run_id
            )
            self._log_change(job, "unknown", message=str(exc))
            return True
        if video_id is None:
            log.info("row key %s: not found on the server; sending again", job.row_key)
            self.state.settle(job.id, "pending", AttemptRecord("absent"), run_id=self.run_id)
            return False
        self.state.settle(
            job.id,
            "submitted",
            AttemptRecord("recovered", video_id=video_id, message="recovered after a lost answer"),
            run_id=self.run_id,
            recovered=True,
        )
        self.accepted += 1
        self._log_change(job, "submitted", video_id=video_id, recovered=True)
        return True

    def _finish_exhausted(self, job: Job, outcome: ApiOutcome, *, permanent: bool = False) -> None:
        self.state.settle(
            job.id,
            "failed",
            AttemptRecord(outcome.kind, outcome.code, outcome.http_status, outcome.message),
            run_id=self.run_id,
            permanent=permanent,
        )
        self._log_change(job, "failed", code=outcome.code, message=outcome.message)

    def _log_change(self, job: Job, status: str, **details: Any) -> None:
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
            credits_spent=self.state.run_accepted(self.run_id),
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
        bad = ("failed", "invalid", "unknown", "not_attempted")
        return ExitCode.ROWS_FAILED if any(statuses.get(s) for s in bad) else ExitCode.OK


def _video_id(outcome: ApiOutcome) -> str | None:
    data = outcome.data if isinstance(outcome.data, dict) else {}
    value = data.get("video_id") or data.get("product_video_id")
    return str(value) if value else None


def _as_unknown(outcome: ApiOutcome) -> ApiOutcome:
    return replace(outcome, kind="unknown")
