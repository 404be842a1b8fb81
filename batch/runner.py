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
import os
import re
import shlex
import signal
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import pyarrow as pa

from batch import catalog, files, payload, storage
from batch.catalog.rows import request_settings_to_json
from batch.config import RunConfig, default_results_path
from batch.errors import (
    SIGNAL_EXITS,
    AccountError,
    ApiError,
    BatchError,
    CatalogError,
    ConfigError,
    ExitCode,
    LocalIOError,
    StateError,
)
from batch.follow.polling import PollSummary
from batch.joggai.client import JoggClient
from batch.joggai.fleet import FleetLimiter
from batch.joggai.listing import (
    CLOCK_SKEW_SECONDS,
    AccountListing,
    ListingDeadline,
    report_double_charges,
)
from batch.joggai.lookup import LookupConfig, LookupDeadline
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.outputs import planned_requests_path
from batch.planner import PlanCounts, Planner
from batch.preflight import (
    Account,
    Preflight,
    check_account,
    credit_warning,
    load_preflight_async,
    remaining_credits,
)
from batch.progress import Progress
from batch.readahead import ReadAhead
from batch.sender import JobSender, RunControl, StopRequested
from batch.settler import Settler
from batch.statuses import UNCERTAIN, UNFINISHED_ROWS
from batch.store import DoubleCharge, Job, SendRule, StateStore
from batch.store.backend import as_busy_error, database_errors
from batch.store.fleet import key_id
from batch.store.ledgers import (
    AccountHold,
    account_id,
    hold_account,
    known_account,
    remember_account,
)
from batch.store.results import OutcomeCounts, read_results, state_outcomes, write_results
from batch.validation import before_sending

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a second signal may wait for the loop to take it before the process stops at once.
_LOOP_BLOCKED = 2.0


def _local_failures() -> tuple[type[Exception], ...]:
    """The errors of a write on this machine or to the state (a full disk, a lost database
    connection): the run reports them with the way back, never as a traceback."""
    return (OSError, StateError, LocalIOError, *database_errors())


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
    renders: PollSummary | None = None  # `run(..., wait=)`: the renders polled after sending
    results_written: bool = True  # False: not this run's final file (an earlier run's, or mid-run)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["plan"]["to_send"] = self.plan.to_send
        return data


def run(
    config: RunConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """`run_async` for synchronous callers, on an event loop of its own."""
    return asyncio.run(run_async(config, transport=transport, handle_signals=handle_signals))


async def run_async(
    config: RunConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Runs (or with `config.dry_run`, plans) one catalog. The caller maps `exit_code`.

    `handle_signals`: SIGINT/SIGTERM/SIGHUP stop sending gracefully (exit 130/143/129; a second
    one stops at once). Only on the main thread, and off by default: a host process may own
    those signals.
    """
    # A file or path problem is refused here, before any request (reading, off the event loop).
    await asyncio.to_thread(before_sending, config)
    started = time.monotonic()
    with StateStore(config.state) as state:
        state.lock()
        if config.legacy_state is not None:
            state.absorb(config.legacy_state)
        _refuse_a_siblings_results(config, state)
        if config.dry_run:
            preflight = None
            if not config.offline:
                preflight = await load_preflight_async(_lookup_config(config))
            summary = await in_thread_until_cancelled(
                lambda stop: _dry_run(config, preflight, stop)
            )
        else:
            account, checked = await _account_of(config, transport)
            with _sending_for_account(config, state, account) as hold:
                await _wait_for_another_ledgers_run(config, hold.last_write if hold else None)
                run = _begun(config, state, transport)
                run.checked = checked
                if hold is not None:
                    run.control.on_attempt = hold.sending
                try:
                    summary = await run.execute(handle_signals=handle_signals)
                finally:
                    if hold is not None:  # requests it never had an answer to may still commit
                        hold.mark_unsettled(
                            bool(run.control.maybe_accepted or run.control.on_the_wire)
                        )
        summary.elapsed_seconds = round(time.monotonic() - started, 3)
    write_summary_json(config, summary)
    return summary


async def _account_of(
    config: RunConfig, transport: httpx.AsyncBaseTransport | None
) -> tuple[str | None, Account | BatchError | None]:
    """The account the key belongs to (`ledgers.account_id`), asked of `whoami` and noted for
    runs that do not ask (`--offline`); None where neither tells (the key's lock alone holds).
    And what that check of the account found, which the run takes (`_Run.checked`) without
    asking again; None where it was not asked."""
    if not isinstance(config.state, Path):
        return None, None  # a shared ledger's workers take no lock: the run checks the key
    key = config.api_key.reveal()
    if config.offline:
        return known_account(config.base_url, key), None
    try:
        async with JoggClient(
            config.base_url, config.api_key, timeouts=config.timeouts, transport=transport
        ) as client:
            found = await check_account(client)
    except BatchError as exc:
        return known_account(config.base_url, key), exc
    name = found.email or found.username
    if not name:
        return known_account(config.base_url, key), found
    account = account_id(config.base_url, name)
    remember_account(config.base_url, key, account)
    return account, found


@contextlib.contextmanager
def _sending_for_account(
    config: RunConfig, state: StateStore, account: str | None
) -> Iterator[_Holds | None]:
    """The account's sending locks on this machine (`hold_account`) for a run from a ledger
    file: the key's, and the account's when known; none for the workers of a shared ledger,
    who send together by design."""
    if not isinstance(config.state, Path):
        yield None
        return
    try:
        ledger_id = state.ledger_id()
    except database_errors() as exc:
        raise _unwritable_before_sending(config, exc) from exc
    with contextlib.ExitStack() as stack:
        holds = [
            stack.enter_context(
                hold_account(
                    config.base_url,
                    config.api_key.reveal(),
                    config.state,
                    ledger_id=ledger_id,
                    knows=state.knows_attempt,
                    settle_seconds=config.settle_seconds,
                    account=lock,
                )
            )
            for lock in ((None, account) if account else (None,))
        ]
        yield _Holds(holds)


class _Holds:
    """A run's holds of its sending locks, as one (`AccountHold`'s)."""

    def __init__(self, holds: list[AccountHold]) -> None:
        self._holds = holds

    @property
    def last_write(self) -> float | None:
        return max((h.last_write for h in self._holds if h.last_write is not None), default=None)

    def sending(self, run_id: int, attempt_id: int) -> None:
        for hold in self._holds:
            hold.sending(run_id, attempt_id)

    def mark_unsettled(self, unsettled: bool) -> None:
        """Requests it never had an answer to may still commit: each lock keeps them."""
        for hold in self._holds:
            hold.unsettled = unsettled


def _words_in(location: storage.Location) -> set[str]:
    """The words of a file that may be video ids (16 to 128 letters, digits, `-` and `_`), read
    in blocks: a results file that cannot be read as one still names its videos."""
    words: set[str] = set()
    tail = b""
    with storage.open_read(location) as handle:
        while block := handle.read(1 << 20):
            data = tail + block
            found = list(_WORD.finditer(data))
            # A word the block's end may cut goes on with the next block.
            cut = found[-1].start() if found and found[-1].end() == len(data) else len(data)
            words.update(m.group().decode() for m in found if m.end() <= cut)
            tail = data[cut:]
    words.update(m.group().decode() for m in _WORD.finditer(tail))
    return words


_WORD: Final = re.compile(rb"[A-Za-z0-9_-]{16,128}")


async def _wait_for_another_ledgers_run(config: RunConfig, last_write: float | None) -> None:
    """A run on this machine sent its last request at `last_write` from another ledger, or was
    cut off (killed, the power lost, its ledger lost or replaced): what it sent may be
    committed up to the settle period later, and only then listed. This ledger does not record
    it (another ledger, or this one put back from a backup or made anew), so it sends nothing
    before then, and its listing sync finds those videos."""
    if last_write is None:
        return
    wait = last_write + config.settle_seconds - time.time()
    if wait <= 0:
        return
    log.warning(
        "a run for this account sent its last request %.0f s ago from another ledger (or was "
        "cut off), and this ledger does not record it; waiting %.0f s for what it sent to be "
        "committed and listed (run.settle_seconds), then sending",
        max(0.0, time.time() - last_write),
        wait,
    )
    await asyncio.sleep(wait)


def _begun(
    config: RunConfig, state: StateStore, transport: httpx.AsyncBaseTransport | None
) -> _Run:
    """The run, begun in the state. A state that cannot be written yet (a full disk, a file
    size limit) is a StateError: exit 2, for nothing was sent."""
    try:
        return _Run(config, state, transport)
    except database_errors() as exc:
        raise _unwritable_before_sending(config, exc) from exc


def _unwritable_before_sending(config: RunConfig, exc: Exception) -> BatchError:
    """A state that cannot be written before anything was sent: busy (exit 4), or a StateError
    (exit 2), not the exit 7 of a write that failed after sending began."""
    if busy := as_busy_error(exc):
        return busy
    return StateError(f"{config.state}: cannot write the state ({exc}); nothing was sent")


def _refuse_a_siblings_results(config: RunConfig, state: StateStore) -> None:
    """ConfigError when the default results file (`catalog.results.csv`) holds another
    catalog's rows, one still beside it under the same name (`catalog.xlsx` and
    `catalog.csv`), or another sheet's of this workbook (both named with --sheet): each run
    would put its rows over the other's. Given `--results`, or when the other catalog is gone
    (converted, renamed), the file is this run's to write."""
    catalog = config.catalog
    if config.results != default_results_path(catalog):
        return
    results = storage.identity(config.results)
    writer = state.catalog_retried(results, [])
    if writer is None:
        return
    if writer != storage.identity(catalog):
        if not storage.is_file(storage.parse_location(writer)):  # a file, or an object
            return
        whose = f"{writer}, a catalog beside this one under the same name"
        own = catalog.with_name(catalog.name + ".results.csv")
    else:
        sheet, written = config.catalog_options.sheet, _sheet_of(state.run_defaults(results))
        if sheet is None or written is None or written == sheet:
            return
        whose = f"sheet {written!r} of this workbook"
        own = catalog.with_name(f"{catalog.stem}.{sheet.replace('/', '_')}.results.csv")
    raise ConfigError(
        f"{config.results}: holds the results of {whose}; give this run a results file of its "
        f"own, e.g. --results {shlex.quote(str(own))}"
    )


def _sheet_of(request_settings: str | None) -> str | None:
    """The sheet a run recorded choosing (`request_settings_to_json`), or None."""
    try:
        sheet = json.loads(request_settings or "{}").get("sheet")
    except (ValueError, AttributeError):
        return None
    return sheet if isinstance(sheet, str) else None


def write_summary_json(config: RunConfig, summary: RunSummary) -> None:
    """`--summary-json`: the summary as JSON; a failure to write it is exit 7, not a traceback."""
    if config.summary_json is None:
        return
    try:
        files.write_text(config.summary_json, json.dumps(summary.to_json(), indent=2) + "\n")
    except OSError as exc:
        log.error("cannot write the summary %s: %s", config.summary_json, exc.strerror)
        # A cron wrapper that reads the summary must not take a night without one for a
        # routine one: 7 wins over rows failed or renders still going, not over what stops.
        if summary.exit_code in (ExitCode.OK, ExitCode.ROWS_FAILED, ExitCode.TIMED_OUT):
            summary.exit_code = int(ExitCode.LOCAL_IO)


def plan_only(config: RunConfig) -> RunSummary:
    """`jogg-batch plan`: what a run would do; nothing is written anywhere.

    It takes the run lock (its rolled-back writes would otherwise hold up a running job), and
    plans against an empty scratch state (on disk: memory stays flat) when there is none yet.
    """
    with tempfile.TemporaryDirectory(prefix="jogg-plan-") as scratch:
        exists = not isinstance(config.state, Path) or config.state.exists()
        legacy = config.legacy_state
        if not exists and legacy is not None:  # plan against the older state, unmerged
            exists, config = True, replace(config, state=legacy, legacy_state=None)
        with StateStore(config.state if exists else Path(scratch) / "plan.db") as state:
            if exists:
                state.lock()
            return _plan_in(config, state)


def _plan_in(config: RunConfig, state: StateStore) -> RunSummary:
    with state.discarded():
        run_id = state.begin_run(storage.identity(config.catalog), dry_run=True)
        planner = Planner(config, state, run_id, dry_run=True)
        counts = planner.plan_all()
    return RunSummary(
        str(config.catalog),
        "",
        str(config.state),
        True,
        counts,
        product_posts=len(planner.product_sources),
        results_written=False,  # a plan writes nothing
    )


async def in_thread_until_cancelled(work: Callable[[threading.Event], T]) -> T:
    """`work(stop)` in a worker thread, its `stop` set when the awaiting task is cancelled (a
    notebook's interrupt; Ctrl-C in a host that keeps its signals): `asyncio.run` waits for its
    threads as it ends, and a catalog planned to its end made that half a minute."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(work, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _dry_run(config: RunConfig, preflight: Preflight | None, stop: threading.Event) -> RunSummary:
    """A run's plan, its results file and its requests written, none sent: in a worker thread
    (the event loop stays free), on a connection of its own beside the run's lock."""
    with StateStore(config.state) as state:
        return _dry_run_in(config, state, preflight, stop)


def _dry_run_in(
    config: RunConfig, state: StateStore, preflight: Preflight | None, stop: threading.Event
) -> RunSummary:
    catalog_version = storage.version(config.catalog)
    with state.discarded():
        run_id = state.begin_run(storage.identity(config.catalog), dry_run=True)
        planner = Planner(config, state, run_id, dry_run=True)
        planner.preflight = preflight
        counts = planner.plan_all(stop)
        if stop.is_set():
            raise asyncio.CancelledError  # nobody waits for what would be written
        written = _write_results(config, state, run_id, catalog_version)
        _write_planned_requests(config, state, run_id)
    # Kept (the plan itself is not): `retry` of the file rebuilds its rows as they were planned.
    state.finish_run(
        state.begin_run(
            storage.identity(config.catalog),
            dry_run=True,
            results=storage.identity(config.recorded_results or config.results),
            request_defaults=request_settings_to_json(config.catalog_options),
            retried_catalog=config.retried_catalog,
        ),
        "dry run",
    )
    summary = RunSummary(
        str(config.catalog),
        str(config.results),
        str(config.state),
        True,
        counts,
        product_posts=len(planner.product_sources),
        statuses=written.totals()[0],
    )
    summary.exit_code = int(ExitCode.ROWS_FAILED if counts.invalid else ExitCode.OK)
    return summary


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
        config.base_url,
        config.api_key,
        refresh=config.refresh_lookups,
        timeouts=config.timeouts,
        deadline=config.deadline,
    )


def _write_results(
    config: RunConfig, state: StateStore, run_id: int, catalog_version: str | None
) -> OutcomeCounts:
    """Writes the results file; returns its rows counted as the summary counts them.

    Rows are matched to their outcomes by number, so the catalog must be the one planned
    (`catalog_version`, `storage.version`): one edited, replaced or moved since raises
    CatalogError, and the results file is left as it was.
    """
    counts = OutcomeCounts()

    def as_planned(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        yield from tables
        if storage.version(config.catalog) != catalog_version:
            raise CatalogError(
                f"{config.catalog}: changed since it was planned (edited, replaced or moved); "
                "its rows would be given other rows' outcomes"
            )

    def outcomes(first: int, last: int) -> pa.Table:
        return counts.add(state_outcomes(state.outcome_rows(run_id, first, last), first, last))

    # The catalog is read again in a thread while the state's rows are read here.
    batches = as_planned(catalog.read_passthrough(config.catalog, config.catalog_options))
    with ReadAhead(batches) as read_ahead:
        write_results(config.results, read_ahead, outcomes)
    return counts


class _Run:
    """The live run's lifecycle: signals, the planner thread, the dispatcher handing jobs to the
    sender (batch.sender), the settler looking up lost answers (batch.settler), the results file
    and the summary, all on one event loop."""

    def __init__(
        self, config: RunConfig, state: StateStore, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.config = config
        self.state = state
        self.catalog_version = storage.version(config.catalog)  # what the results must match
        self.transport = transport
        self.checked: Account | BatchError | None = None  # the account's check, if made before
        state.as_worker(config.claim_seconds)
        self.run_id = state.join_run(
            storage.identity(config.catalog),  # whatever the working folder
            results=storage.identity(config.recorded_results or config.results),
            request_defaults=request_settings_to_json(config.catalog_options),
            retried_catalog=config.retried_catalog,
        )
        self.planner = Planner(config, state, self.run_id, dry_run=False)
        self.planned = asyncio.Event()
        self.control = RunControl(config, on_stop=self.planned.set)
        self.hard_stop = False  # a second signal: leave without rewriting the results
        self.written: OutcomeCounts | None = None  # the final results file's rows, counted
        self.snapshot_at: float | None = None  # when the results file was last written mid-run
        self.catalog_changed = False  # seen by `_watch_catalog`
        self.planning_done = False
        self.dispatched = False  # every planned job has been taken
        self.gate = asyncio.Semaphore(config.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()  # jobs being sent
        self.in_flight: set[int] = set()  # their ids
        self.listing: AccountListing | None = None
        self.double_charges: list[DoubleCharge] = []
        self.started_at = time.time()
        self.progress = Progress(config.progress_bar, config.progress_interval)

    # --- lifecycle -----------------------------------------------------------------------------

    async def execute(self, *, handle_signals: bool) -> RunSummary:
        # Its own task: a signal cancels this run, never the caller's task around it.
        main = asyncio.create_task(
            self._guarded(lambda: self._main(handle_signals), "writing the state")
        )
        try:
            await main
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling():
                raise  # the caller was cancelled: `finally` still closes the run
            # A second signal, or answers still missing when the grace period ended. Requests
            # cut off stay `sending` in the state and are reconciled by the next run.
            log.warning("stopped with requests in flight; the next run looks them up first")
        finally:
            self.progress.close()
            self._finish()
        if self.hard_stop:
            log.warning("results file not rewritten (second signal); the next run rewrites it")
        return self._summary()

    def _prune(self) -> None:
        """The ledger's upkeep, not the run's work: a prune that fails (on a full disk: it needs
        room for its write-ahead log) is said, and the run ends as it would have (it ended
        "stopped early", exit 7, every row done)."""
        try:
            self.state.prune(self.config.keep_runs)
        except _local_failures() as exc:
            keep = self.config.keep_runs
            log.warning(
                "the run is done, but the ledger could not be pruned to its last %d runs (%s); "
                "free space beside it, then `jogg-batch state prune --keep-runs %d --state %s`",
                keep,
                exc,
                keep,
                shlex.quote(str(self.config.state)),
            )

    def _finish(self) -> None:
        """Closes the run in the state and writes the results file, whatever went wrong before:
        a local failure here is reported with the way back, never as a traceback."""
        with self._local_io("connecting to the state again"):
            if self.state.reconnect():
                log.warning(
                    "connected to the state %s again, to close the run and write its results",
                    self.config.state,
                )
        closed = False
        with self._local_io("closing the run in the state"):
            # On a shared state the last worker out closes the run; the others leave their
            # unsent jobs to it.
            if self.state.leave_run(self.run_id, storage.identity(self.config.catalog)):
                self.state.mark_not_attempted(self.run_id)
                self.state.finish_run(self.run_id, self.control.stop_reason or "done")
                closed = True
        if closed:
            self._prune()
        if self.hard_stop:
            return
        if self.control.catalog_error is not None and not self.control.sent:
            log.warning(
                "nothing was sent; the results file %s is left as it was", self.config.results
            )
            return
        if self.catalog_changed:  # its rows are others now: none could be given its outcome
            log.warning("the results file %s is left as it was", self.config.results)
            return
        if not self.planning_done and storage.is_file(self.config.results):
            # Stopped before planning (a bad key, the API down): this run knows no row's
            # outcome, and the file the last run wrote still says what was paid.
            log.warning(
                "the results file %s is left as the last run wrote it: this run stopped before "
                "planning any row",
                self.config.results,
            )
            return
        started = time.monotonic()
        with self._local_io(f"writing the results file {self.config.results}"):
            self.written = (
                self._write_results(self.state)
                if self.planning_done
                else self._write_unplanned_results()
            )
            log.debug("results written in %.1f s", time.monotonic() - started)
            return
        if self.snapshot_at is not None:
            log.warning(
                "the results file %s is as this run wrote it at %s: rows settled since (some "
                "paid) show as they were then",
                self.config.results,
                time.strftime("%H:%M:%S", time.localtime(self.snapshot_at)),
            )
        log.error(
            "every outcome is kept in the state %s: once the problem is fixed, `jogg-batch run "
            "%s --results OTHER` sends nothing already accepted and writes the results again",
            self.config.state,
            self.config.catalog,
        )

    @contextlib.contextmanager
    def _local_io(self, doing: str) -> Iterator[None]:
        """A full disk, a file size limit or a permission problem on this machine: no new POST
        leaves, requests in flight finish and are recorded, and the run ends with exit 7."""
        try:
            yield
        except _local_failures() as exc:
            # A ledger on PostgreSQL fails by its connection, not a local file: say which.
            in_state = isinstance(exc, (StateError, *database_errors()))
            if self.control.local_error is None:
                self.control.local_error = LocalIOError(f"{doing}: {exc}")
                mend = (
                    f"Mend the state's database or the connection to it ({self.config.state}: "
                    "a restart, a lost connection, a deadlock with another worker)"
                    if self.state.shared
                    else f"Free space for the state ({self.config.state}), or mend what keeps "
                    "it from being written"
                )
                log.error(
                    "local failure while %s: %s; no further requests%s",
                    doing,
                    exc,
                    f". {mend}, then run the same command again: nothing accepted is sent twice"
                    if in_state
                    else "",
                )
                log.debug("the failure in full", exc_info=True)
            self.control.stop(
                "the state could not be written or read"
                if in_state
                else "a local file could not be written"
            )

    async def _guarded(self, work: Callable[[], Awaitable[None]], doing: str) -> None:
        # `work` is made here, not by the caller: a task cancelled before it starts (a run
        # that stops at once) then leaves no coroutine never awaited.
        with self._local_io(doing):
            await work()

    async def _main(self, handle_signals: bool) -> None:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        # What the command had (`batch.cli.common`): asyncio leaves the default behind.
        before = {sig: signal.getsignal(sig) for sig in SIGNAL_EXITS}
        installed = self._install_signals(loop, main_task) if handle_signals else []
        deadline = self.config.deadline
        # At the deadline sending stops, and every wait (a Retry-After, the limiter) with it.
        timer = (
            None
            if deadline is None
            else loop.call_later(
                max(0.0, deadline - time.time()), self.control.stop, "time limit reached"
            )
        )
        results_task = asyncio.create_task(self._refresh_results())
        heartbeat = asyncio.create_task(self._guarded(self._heartbeat, "renewing claims"))
        watch = asyncio.create_task(self._watch_catalog())
        watch_state = asyncio.create_task(self._watch_state())
        try:
            async with JoggClient(
                self.config.base_url,
                self.config.api_key,
                timeouts=self.config.timeouts,
                transport=self.transport,
                max_connections=self.config.concurrency,
            ) as client:
                if not self.config.offline and not await self._preflight(client):
                    return
                if self.config.reconcile_tag:
                    self.listing = AccountListing(
                        client,
                        self.state,
                        overlap=self.config.settle_seconds,
                        deadline=self.config.deadline,
                    )
                    if not await self._first_sync():
                        return
                limiter = self._limiter()
                if limiter is not None:  # any answer proves what the server held was taken
                    client.on_answer = limiter.heard_from_server
                sender = JobSender(
                    self.control,
                    self.state,
                    client,
                    run_id=self.run_id,
                    limiter=limiter,
                    listing=self.listing,
                )
                settler = Settler(
                    self.control,
                    self.state,
                    run_id=self.run_id,
                    listing=self.listing,
                    launch=lambda job: self._launch(sender, job),
                    sending_over=lambda: self.dispatched and not self.tasks,
                    in_flight=self.in_flight,
                )
                try:
                    await asyncio.gather(
                        self._guarded(
                            lambda: self._plan(client), "planning the catalog into the state"
                        ),
                        self._guarded(lambda: self._dispatch(sender), "reading the state"),
                        self._guarded(settler.run, "recording a look-up in the state"),
                    )
                except asyncio.CancelledError:
                    for task in self.tasks:
                        task.cancel()
                    raise
                await self._last_sync()
        finally:
            if timer is not None:
                timer.cancel()
            results_task.cancel()
            heartbeat.cancel()
            watch.cancel()
            watch_state.cancel()
            if installed:
                # A signal's handler only hands it to the loop, taken on the loop's next turns:
                # without them, one at the run's very end was lost (exit 0).
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
            for sig in installed:
                signal.signal(sig, before[sig])

    async def _heartbeat(self) -> None:
        """Renews this worker's claims, so other workers sharing the state know it lives (a
        SQLite state has no other workers: its file lock keeps them out)."""
        while self.state.shared:
            await asyncio.sleep(self.config.claim_seconds / 3)
            self.state.renew_claims()

    async def _watch_state(self) -> None:
        """Stops new requests once the state's file is deleted or replaced under the run (a
        clean-up script's `rm -rf`): what it records from then on is lost to the next run,
        which would pay again for it, and its lock no longer keeps another run out. Looked at
        every second (a stat)."""
        path = self.config.state
        if not isinstance(path, Path):
            return  # PostgreSQL: the server keeps it
        first = await asyncio.to_thread(os.stat, path)
        while True:
            await asyncio.sleep(1.0)
            try:
                now: os.stat_result | None = await asyncio.to_thread(os.stat, path)
            except FileNotFoundError:
                now = None
            except OSError:
                continue  # a passing failure: looked at again
            if now is None or (now.st_dev, now.st_ino) != (first.st_dev, first.st_ino):
                self.control.local_error = LocalIOError(
                    f"{path}: the state was deleted or replaced while the run went on, so no "
                    "request left from then on (what it recorded since is lost to the next run); "
                    "put it back from a backup if there is one, then run again"
                )
                log.error("%s", self.control.local_error)
                self.control.stop("the state was deleted or replaced")
                return

    async def _watch_catalog(self) -> None:
        """Stops new requests once the catalog is edited, replaced or moved (a nightly export
        landing in the window, rows cut from it): the rows still to send were planned from the
        file as it was, and the results cannot be matched to it. Looked at every second (a
        stat), in a store every 15 s (a request; one that fails is tried at the next)."""
        catalog = self.config.catalog
        interval = 1.0 if isinstance(catalog, Path) else 15.0
        while True:
            await asyncio.sleep(interval)
            try:
                now = await asyncio.to_thread(storage.version, catalog)
            except CatalogError as exc:
                log.debug("%s: could not look it up (%s); looking again later", catalog, exc)
                continue
            if now != self.catalog_version:
                self.catalog_changed = True
                self.control.catalog_error = CatalogError(
                    f"{catalog}: changed while it was sent (edited, replaced or moved), so no "
                    "request left from then on; run again on the catalog as it is now: rows "
                    "already accepted are already_submitted, with their own videos"
                )
                self.control.stop("the catalog changed")
                return

    def _limiter(self) -> SlidingWindowLimiter | None:
        config, rate = self.config, self.config.rate
        if rate is None:
            return None
        if self.state.shared:  # the key's window is the fleet's: kept in the state
            stale = rate.window + config.timeouts.connect + config.timeouts.product_read
            key = key_id(config.base_url, config.api_key.reveal())
            return FleetLimiter(rate, self.state, SendRule(key, rate.count, rate.window, stale))
        limiter = SlidingWindowLimiter(rate)
        # Sends of an earlier (crashed) run still count in the server's window.
        now = time.time()
        limiter.seed(self.state.recent_send_times(now - rate.window), now=now)
        return limiter

    async def _preflight(self, client: JoggClient) -> bool:
        """Checks the key and loads the look-ups; False when the account refuses."""
        try:
            if self.checked is None:
                await check_account(client)
            elif isinstance(self.checked, BatchError):  # found before the run began
                raise self.checked
        except AccountError as exc:
            self.control.account_error = exc
            self.control.stop("the API refused the key")
            return False
        except ApiError as exc:  # the API did not answer: every row stays to be sent (exit 1)
            log.error("%s; run again later", exc)
            self.control.stop(
                "the account check had no usable answer (the API down, or its answer malformed)"
            )
            return False
        try:
            self.planner.preflight = await Preflight.fetch(
                _lookup_config(self.config).service(client)
            )
        except LookupDeadline as exc:  # no row was planned: every one stays to be sent
            log.warning("time limit reached before anything was sent: %s", exc)
            self.control.stop("time limit reached")
            return False
        log.debug("account checked, look-ups loaded")
        return True

    async def _first_sync(self) -> bool:
        """Reads what the account rendered since the last run, before anything is sent; False
        (nothing sent) when the listing cannot be read: it is the last defence of a fresh ledger."""
        assert self.listing is not None
        try:
            # A signal stops the walk at once: nothing of it is recorded until its end.
            await self.control.unless_stopped(self.listing.sync())
        except StopRequested:
            return False
        except ListingDeadline as exc:
            log.warning("time limit reached before anything was sent: %s", exc)
            self.control.stop("time limit reached")
            return False
        except ApiError as exc:
            message = f"cannot read the account's video listing, so nothing was sent: {exc}"
            if isinstance(exc, AccountError):
                self.control.account_error = AccountError(
                    message, code=exc.code, http_status=exc.http_status
                )
            else:  # a server fault, or a listing that does not end: rows stay to be sent
                log.error("%s; run again later", message)
            self.control.stop("the video listing is unreadable")
            return False
        self._adopt_listed_failures()
        self._report_double_charges()
        self._warn_of_untagged_titles()
        return self._results_not_paid_from_another_ledger()

    def _results_not_paid_from_another_ledger(self) -> bool:
        """False (nothing sent) when the results file this run replaces, which no run of this
        ledger wrote, names videos the account lists without a tag in their titles, which this
        ledger does not know: another ledger paid for those rows (the ledger is per API key and
        data folder: a rotated key, another --state, HOME or XDG_DATA_HOME), and without their
        tags nothing else would find them before they were paid for again. (A tagged one is
        found by its tag before its row is sent, and adopted.)"""
        config = self.config
        results = storage.identity(config.results)
        if self.state.wrote(results):
            return True
        try:
            if not storage.is_file(config.results):
                return True
            frame = read_results(config.results)
            videos: list[str] = []
            if "video_id" in frame.columns:
                videos = list(frame["video_id"].str.strip())
            named = sorted({video for video in videos if video})
        except CatalogError:  # saved in a code page by a spreadsheet: its words hold the ids
            named = sorted(_words_in(config.results))
        listed = self.state.listed_untagged(named)
        unknown = sorted(set(listed) - set(self.state.jobs_of_videos(listed)))
        if not unknown:
            return True
        self.control.catalog_error = CatalogError(
            f"{config.results}: names {len(unknown)} video(s) the account lists (their titles "
            f"without a jogg-batch tag) that this "
            f"ledger ({config.state}) does not know (such as {', '.join(unknown[:3])}): another "
            "ledger paid for those rows (the ledger is per API key and data folder: a rotated "
            "key, another --state, HOME or XDG_DATA_HOME, a ledger lost). Nothing was sent, so "
            "that nothing is paid twice: run with --state set to the ledger that wrote the file "
            "(`jogg-batch state info` where it ran shows it; with a rotated key, the old key's "
            "ledger), or, to send those rows again knowingly, move the results file away"
        )
        self.control.stop("the results file names videos another ledger paid for")
        return False

    def _warn_of_untagged_titles(self) -> None:
        """A ledger that has had nothing accepted finds earlier renders by the tag their titles
        start with; a listing whose every title lacks one (videos made in JoggAI's app, or a
        listing that shows titles otherwise) gives it nothing to find them by."""
        listed, tagged = self.state.listed_tags()
        if listed and not tagged and not self.state.has_accepted_jobs():
            log.warning(
                "the account lists %d video(s), none titled with a jogg-batch tag, and this "
                "ledger has had nothing accepted: renders another ledger (another machine, a "
                "lost state) made of these rows cannot be found, and would be paid for again; "
                "if one did, stop now and run from that ledger",
                listed,
            )

    def _adopt_listed_failures(self) -> None:
        """A job recorded failed whose tag the account lists was rendered after all (older
        versions took an undocumented error code for a refusal): it is adopted, not reported
        failed nor sent again."""
        for job_id, video_id in self.state.listed_failures():
            if self.state.video_holder(video_id, job_id) is not None:
                continue  # one video, two tags: a listing that lies; the failure stands
            self.state.adopt(job_id, video_id, run_id=None)
            log.warning(
                "job %d: recorded failed, but the account lists its tag on video %s: submitted",
                job_id,
                video_id,
            )

    async def _last_sync(self) -> None:
        """After sending: one more look for double charges back to this run's first request."""
        if self.listing is None or self.hard_stop or not self.control.sent:
            return
        try:
            await self.listing.sync(back_to=self.started_at)
        except ApiError as exc:
            log.warning("could not check the listing for double charges after the run: %s", exc)
            return
        self._report_double_charges()

    def _report_double_charges(self) -> None:
        self.double_charges += report_double_charges(self.state, self.run_id)

    def _install_signals(
        self, loop: asyncio.AbstractEventLoop, main: asyncio.Task[Any]
    ) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []  # signal handlers can only live on the main thread (tests run elsewhere)
        control = self.control

        def handle(sig: int) -> None:
            code = SIGNAL_EXITS[sig]
            if control.signal_code is not None:
                log.warning("second signal: stopping now; the state is consistent")
                self.hard_stop = True
                main.cancel()
                return
            control.signal_code = code
            control.stop(f"signal {signal.Signals(sig).name}")
            if control.on_the_wire:
                log.warning(
                    "stopping: waiting up to %.0f s for %d request(s) in flight "
                    "(signal again to stop at once)",
                    self.config.shutdown_grace,
                    control.on_the_wire,
                )
            else:
                log.warning("stopping: no request is in flight (signal again to stop at once)")
            loop.call_later(self.config.shutdown_grace, main.cancel)

        counts = {"received": 0, "taken": 0}  # signals, numbered as they come

        def taken(sig: int, number: int) -> None:
            counts["taken"] = number
            handle(sig)

        def stop_unless_taken(sig: int, number: int) -> None:
            if counts["taken"] < number:
                os._exit(int(SIGNAL_EXITS[sig]))

        def on_signal(sig: int, frame: object) -> None:
            # Handed to the loop. A loop held by a call that does not return (a state database
            # behind a stalled proxy: psycopg waits for an answer that never comes) cannot take
            # it: a signal again, not taken by the loop in a moment, stops the process at once
            # (what the ledger holds is whole).
            counts["received"] += 1
            number = counts["received"]
            loop.call_soon_threadsafe(taken, sig, number)
            if number > 1:
                timer = threading.Timer(_LOOP_BLOCKED, stop_unless_taken, (sig, number))
                timer.daemon = True
                timer.start()

        # One the process was started ignoring stays ignored: `nohup` (SIGHUP), a background
        # job of a script (SIGINT) must not be stopped by the terminal that started them.
        handled = [sig for sig in SIGNAL_EXITS if signal.getsignal(sig) is not signal.SIG_IGN]
        for sig in handled:
            signal.signal(sig, on_signal)
        return handled

    # --- planning and dispatch -----------------------------------------------------------------

    async def _plan(self, client: JoggClient) -> None:
        """Plans in a worker thread with its own connection, so that requests go out while a
        big catalog is still being read (the first POST does not wait for the last row)."""
        loop = asyncio.get_running_loop()

        def planned_batch(to_send: int) -> None:
            log.debug("planned %d more job(s) to send", to_send)
            self.progress.add_total(to_send)
            self.planned.set()

        def plan_in_thread(stop: threading.Event) -> None:
            with StateStore(self.config.state) as own:
                self.planner.state = own
                for to_send in self.planner.batches():
                    loop.call_soon_threadsafe(planned_batch, to_send)
                    if self.control.stop_reason is not None or stop.is_set():
                        break

        started = time.monotonic()
        try:
            await in_thread_until_cancelled(plan_in_thread)
        except CatalogError as exc:
            # The structural pass read it whole, so it was replaced or moved since, or a store's
            # stream broke off: what was planned is sent or not, nothing more.
            self.control.catalog_error = exc
            self.control.stop("the catalog could not be read to its end")
        finally:
            self.planning_done = True
            self.planned.set()
        log.debug("planned %d rows in %.1f s", self.planner.counts.rows, time.monotonic() - started)
        if not self.config.offline:
            remaining = await remaining_credits(client)
            if warning := credit_warning(remaining, self.planner.counts.to_send):
                log.warning("%s", warning)

    async def _dispatch(self, sender: JobSender) -> None:
        """Takes the run's jobs from the state in id order, each once.

        A slice planned later can hold a job with a lower id (one an earlier run left behind),
        so each new slice restarts the scan from the lowest id; `picked` (a byte per job id)
        keeps a job from being taken twice. Jobs whose last request may have been accepted are
        not sent: the settler looks them up.
        """
        picked = bytearray()
        last_id = 0
        rescanned = False  # from the lowest id, since a job was last picked
        try:
            while not self.control.should_stop():
                if self.planned.is_set():
                    self.planned.clear()
                    last_id = 0
                jobs = self.state.claim_jobs(self.run_id, last_id, self._claim_batch)
                if not jobs:
                    if self.planning_done and not self.planned.is_set():
                        if not self.state.held_elsewhere(self.run_id):
                            if last_id and not rescanned:
                                # A worker that stopped early gave its jobs back, below the scan.
                                last_id, rescanned = 0, True
                                continue
                            break
                        # Another worker holds the rest: if it dies, its claims run out here.
                        last_id = 0
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self.planned.wait(), self.config.claim_seconds / 3
                            )
                        continue
                    await self.planned.wait()
                    continue
                last_id = jobs[-1].id
                for job in jobs:
                    if job.id < len(picked) and picked[job.id]:
                        continue
                    if job.id >= len(picked):
                        picked.extend(bytes(max(job.id + 1, 2 * len(picked)) - len(picked)))
                    picked[job.id] = 1
                    rescanned = False
                    if job.status == "unknown" and self.config.resubmit_unknown:
                        self.control.resubmitted.add(job.id)
                    elif job.status in UNCERTAIN:
                        self.control.uncertain.set()
                        continue
                    if not await self._launch(sender, job):
                        break
        finally:
            self.dispatched = True
            self.control.uncertain.set()

    @property
    def _claim_batch(self) -> int:
        """Jobs claimed at a time: many alone, a few more than it can send at once when the
        state is shared (claims taken early are jobs other workers cannot send)."""
        return 2 * self.config.concurrency if self.state.shared else 64

    async def _launch(self, sender: JobSender, job: Job) -> bool:
        """Starts sending one job once a concurrency slot is free; False when the run stops."""
        await self.gate.acquire()
        if self.control.should_stop():
            self.gate.release()
            return False
        task = asyncio.create_task(self._process(sender, job))
        self.tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.gate.release()
            if self.dispatched and not self.tasks:
                self.control.uncertain.set()  # sending is over: the settler may be done too

        task.add_done_callback(finished)
        return True

    async def _process(self, sender: JobSender, job: Job) -> None:
        self.in_flight.add(job.id)
        try:
            with self._local_io("recording a request in the state"):
                await sender.send(job)
        except StopRequested:
            pass  # the job keeps `pending`: not_attempted when the run ends
        finally:
            self.in_flight.discard(job.id)
            counts = {"sent": self.control.sent, "accepted": self.control.accepted}
            self.progress.update(job.id, counts)

    # --- results and summary -------------------------------------------------------------------

    async def _refresh_results(self) -> None:
        """Rewrites the results file now and then, so a killed run leaves a recent one."""
        interval = self.config.results_interval
        while self.control.local_error is None:
            await asyncio.sleep(interval)
            if not self.planning_done:
                # Mid-plan, most rows would read not_attempted, and the write would take the
                # planner's CPU: a big catalog's first snapshot waits for its plan.
                continue
            began = time.monotonic()
            with self._local_io(f"writing the results file {self.config.results}"):
                await asyncio.to_thread(self._write_results_snapshot)
            # A big catalog takes a while to write: never spend more than a tenth of the time on it.
            interval = max(self.config.results_interval, 10 * (time.monotonic() - began))

    def _write_results_snapshot(self) -> None:
        with StateStore.reader(self.config.state) as reader:
            self._write_results(reader)
        self.snapshot_at = time.time()

    def _write_unplanned_results(self) -> OutcomeCounts:
        """The first results file of a run stopped before planning (a bad key, the API down):
        its rows are planned offline in a savepoint rolled back after, so that the file tells
        the invalid rows (which a retry would not mend) from those not attempted."""
        try:
            with self.state.discarded():
                Planner(self.config, self.state, self.run_id, dry_run=False).plan_all()
                return self._write_results(self.state)
        except CatalogError:  # changed since it was checked: every row as not attempted
            return self._write_results(self.state)

    def _write_results(self, state: StateStore) -> OutcomeCounts:
        try:
            return _write_results(self.config, state, self.run_id, self.catalog_version)
        except CatalogError as exc:
            # The catalog moved, replaced or unreadable since it was planned; or a store's
            # error writing the results, which names the results file first, as these all do.
            doing = (
                "writing the results file"
                if str(exc).startswith(f"{self.config.results}:")
                else "reading the catalog again"
            )
            raise LocalIOError(f"{doing}: {exc}") from exc

    def _summary(self) -> RunSummary:
        control = self.control
        statuses: dict[str, int] = {}
        codes: dict[str, int] = {}
        # A state that cannot be read now (a dropped database connection) leaves the counts
        # out and the credits as the answers said; the run ends with exit 7 all the same.
        credits, times = control.accepted, list[float]()
        with self._local_io("counting the run in the state"):
            if self.written is not None:
                statuses, codes = self.written.totals()
            else:  # the results file was not written: the state counts the rows instead
                statuses, codes = self.state.count_rows(self.run_id)
            credits = self.state.run_credits(self.run_id, self.started_at - CLOCK_SKEW_SECONDS)
            times = self.state.run_attempt_times(self.run_id)
        summary = RunSummary(
            str(self.config.catalog),
            str(self.config.results),
            str(self.config.state),
            False,
            self.planner.counts,
            statuses=statuses,
            codes=codes,
            requests_sent=control.sent,
            credits_spent=credits,
            double_charges=[
                {"tag": c.tag, "video_ids": list(c.video_ids), "first_created": c.first_created}
                for c in self.double_charges
            ],
            stopped=control.stop_reason,
            results_written=self.written is not None,
        )
        if len(times) > 1 and times[-1] > times[0]:
            summary.post_rate_per_minute = round((len(times) - 1) * 60 / (times[-1] - times[0]), 2)
        summary.exit_code = int(self._exit_code(statuses))
        return summary

    def _exit_code(self, statuses: dict[str, int]) -> ExitCode:
        control = self.control
        if control.catalog_error is not None:
            log.error("%s", control.catalog_error)
            return ExitCode.LOCAL_IO if control.sent else ExitCode.USAGE
        if control.local_error is not None:  # exit 2 promises that nothing was sent: so here
            return ExitCode.LOCAL_IO if control.sent else ExitCode.USAGE
        if control.signal_code is not None:
            return control.signal_code
        if control.account_error is not None:
            log.error("%s", control.account_error)
            return ExitCode.ACCOUNT
        if self.double_charges:
            return ExitCode.DOUBLE_CHARGED
        if not self.planning_done:  # stopped before its rows were planned: none was done
            return ExitCode.ROWS_FAILED
        unfinished = any(statuses.get(status) for status in UNFINISHED_ROWS)
        return ExitCode.ROWS_FAILED if unfinished else ExitCode.OK
