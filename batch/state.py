"""The durable store of every job and every attempt: SQLite in WAL mode, one transaction per change.

A *job* is one distinct request (identified by its fingerprint); a catalog row points at a job.
The life of a job:

    pending -> sending -> submitted                      (answer: code 0, video_id kept)
                       -> failed                         (permanent code, or retries exhausted)
                       -> pending                        (retryable answer: sent again later)
                       -> reconciling -> submitted        (unknown answer; found by its tag)
                                      -> pending          (absent from a listing that covers it)
                                      -> unknown          (listing impossible; not resent blindly)
    pending -> not_attempted                             (run stopped before sending it)

`sending` is committed *before* the request leaves and replaced only after the answer, so a
process killed at any instant leaves `sending` exactly on the jobs that might have been accepted.
That commit is synced to disk (synchronous=FULL) before the request leaves: it survives a power
cut too, because a lost `sending` could mean a double charge. Other commits are not synced one by
one (NORMAL; WAL keeps them in order, and the next synced commit carries them): losing one to a
power cut only sends a job back to reconciliation, which finds it again.

Per run, `run_rows` records what happened to each catalog row (the job it maps to, or why it has
none), which is what the results file is written from.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch import files
from batch.errors import LockedError, StateError
from batch.status import PendingVideo, VideoUpdate

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    catalog TEXT NOT NULL,
    dry_run INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    row_key TEXT,
    fields TEXT NOT NULL,
    tag TEXT NOT NULL,
    status TEXT NOT NULL,
    planned_run INTEGER,
    video_id TEXT,
    code INTEGER,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    permanent INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    submitted_at REAL,
    submitted_run INTEGER,
    product_id TEXT,
    video_status TEXT,
    video_url TEXT,
    cover_url TEXT,
    duration REAL,
    deducted_credit REAL,
    error TEXT,
    completed_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_row_key ON jobs (row_key);
CREATE INDEX IF NOT EXISTS jobs_planned ON jobs (planned_run, status);
CREATE INDEX IF NOT EXISTS jobs_video ON jobs (video_id) WHERE video_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    run_id INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT NOT NULL,
    code INTEGER,
    http_status INTEGER,
    message TEXT,
    video_id TEXT
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts (started_at);
CREATE TABLE IF NOT EXISTS run_rows (
    run_id INTEGER NOT NULL,
    row INTEGER NOT NULL,
    job_id INTEGER,
    row_status TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_events (event_id TEXT PRIMARY KEY, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    source TEXT PRIMARY KEY,
    product_id TEXT,
    created_at REAL NOT NULL
);
"""

# What the results file says of a row, from its plan (run_rows) and its job.
_RESULT_STATUS = """CASE
    WHEN r.row_status IN ('invalid', 'duplicate') THEN r.row_status
    WHEN j.status = 'submitted' THEN
        CASE WHEN j.submitted_run = r.run_id THEN 'submitted' ELSE 'already_submitted' END
    WHEN j.status IN ('pending', 'not_attempted') THEN
        CASE WHEN r.row_status = 'planned' THEN 'planned' ELSE 'not_attempted' END
    WHEN j.status IN ('sending', 'reconciling', 'unknown') THEN 'unknown'
    ELSE j.status END"""

# Job statuses whose last request may have been accepted: reconcile before sending again.
UNCERTAIN = frozenset({"sending", "reconciling", "unknown"})


# (fingerprint, row_key, fields_json, tag)
NewJob = tuple[str, str | None, str, str]
# (row, job id | fingerprint of a job new in this batch | None, row_status, detail)
RowPlan = tuple[int, int | str | None, str, str | None]
# (new status or None to keep it, job_id) of an existing job this run sends
JobUpdate = tuple[str | None, int]


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the jobs table, as the runner needs it."""

    id: int
    fingerprint: str
    row_key: str | None
    fields: str  # JSON, see payload.fields_to_json
    tag: str
    status: str
    attempts: int
    video_id: str | None
    code: int | None
    message: str | None
    product_id: str | None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """The outcome of one POST, as the state stores it."""

    outcome: str
    code: int | None = None
    http_status: int | None = None
    message: str | None = None
    video_id: str | None = None


# What `status` and webhooks learn once a render is final.
VIDEO_COLUMNS = (
    "video_status",
    "video_url",
    "cover_url",
    "duration",
    "deducted_credit",
    "error",
    "completed_at",
)
# The columns of `outcome_rows`, in order (times are unix seconds).
OUTCOME_FIELDS = (
    "row",
    "status",
    "video_id",
    "code",
    "message",
    "attempts",
    "submitted_at",
    *VIDEO_COLUMNS,
    "created_product_id",  # made by POST /v2/product for a product_url row
)


class StateStore:
    """The state database of one or more catalogs. Not thread-safe: one connection, one thread."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        files.prepare_state(path)  # 0600, no symlink, not another user's (StateError)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "PRAGMA synchronous=NORMAL"
            )  # FULL where it matters: see begin_attempt
            # Job look-ups by fingerprint hit random pages: a bigger cache keeps planning linear.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from exc
        self._lock_file: int | None = None

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: state schema {row[0]}; this jogg-batch reads schema {SCHEMA_VERSION}"
            )

    @classmethod
    @contextmanager
    def reader(cls, path: Path) -> Iterator[StateStore]:
        """A second connection for reading while the run writes (WAL allows both at once)."""
        store = cls.__new__(cls)
        store.path = path
        store._clock = time.time
        store._lock_file = None
        store._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            yield store
        finally:
            store._db.close()

    def close(self) -> None:
        self.unlock()
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- locking -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Take the run lock (an flock on `<state>.lock`), or raise LockedError at once."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = files.open_lock(lock_path)  # 0600, O_NOFOLLOW, ours (StateError otherwise)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"{self.path} is in use by a running jogg-batch (pid {holder}); "
                "wait for it to finish, or use another --state"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_file = fd

    def unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing releases the flock
            self._lock_file = None

    # --- transactions --------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; a durable one is synced to disk before COMMIT returns."""
        if durable:
            self._db.execute("PRAGMA synchronous=FULL")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if durable:
                self._db.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def discarded(self) -> Iterator[None]:
        """Everything written inside is rolled back: how `plan` and `--dry-run` stay read-only."""
        self._db.execute("SAVEPOINT discarded")
        self._in_discarded = True
        try:
            yield
        finally:
            self._db.execute("ROLLBACK TO discarded")
            self._db.execute("RELEASE discarded")
            self._in_discarded = False

    _in_discarded = False

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        if self._in_discarded:
            yield self._db  # already inside the savepoint; committing would defeat it
        else:
            with self.transaction(durable=durable) as db:
                yield db

    # --- runs ----------------------------------------------------------------------------------

    def begin_run(self, catalog: str, *, dry_run: bool) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, catalog, dry_run) VALUES (?, ?, ?)",
                (self._clock(), catalog, int(dry_run)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, outcome: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?",
                (self._clock(), outcome, run_id),
            )

    def latest_run(self, catalog: str | None = None) -> int | None:
        if catalog is None:
            row = self._db.execute("SELECT max(id) FROM runs").fetchone()
        else:
            row = self._db.execute(
                "SELECT max(id) FROM runs WHERE catalog = ?", (catalog,)
            ).fetchone()
        return None if row[0] is None else int(row[0])

    def recent_send_times(self, since: float) -> list[float]:
        """Send and answer times of recent attempts, to seed the rate limiter after a restart."""
        rows = self._db.execute(
            "SELECT coalesce(finished_at, started_at) FROM attempts WHERE started_at >= ?",
            (since,),
        )
        return [float(when) for (when,) in rows]

    # --- planning ------------------------------------------------------------------------------

    def jobs_by_fingerprint(self, fingerprints: Sequence[str]) -> dict[str, sqlite3.Row]:
        """The existing jobs among `fingerprints` (one query per 10,000)."""
        found: dict[str, sqlite3.Row] = {}
        self._db.row_factory = sqlite3.Row
        try:
            for start in range(0, len(fingerprints), 10_000):
                chunk = fingerprints[start : start + 10_000]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    "SELECT id, fingerprint, status, permanent "
                    f"FROM jobs WHERE fingerprint IN ({marks})",
                    chunk,
                ):
                    found[row["fingerprint"]] = row
        finally:
            self._db.row_factory = None
        return found

    def has_jobs(self) -> bool:
        found: tuple[int] = self._db.execute("SELECT EXISTS (SELECT 1 FROM jobs)").fetchone()
        return found == (1,)

    def keys_with_jobs(self, keys: Sequence[str]) -> set[str]:
        """Which of these row keys already have a job (for telling changed rows from new ones)."""
        known: set[str] = set()
        for start in range(0, len(keys), 10_000):
            chunk = keys[start : start + 10_000]
            marks = ",".join("?" * len(chunk))
            known.update(
                key
                for (key,) in self._db.execute(
                    f"SELECT DISTINCT row_key FROM jobs WHERE row_key IN ({marks})",
                    chunk,
                )
            )
        return known

    def record_plan(
        self,
        run_id: int,
        new_jobs: Sequence[NewJob],
        job_updates: Sequence[JobUpdate],
        rows: Sequence[RowPlan],
    ) -> dict[str, int]:
        """A slice of a catalog's plan, in one transaction; returns the new jobs' ids.

        new_jobs: (fingerprint, row_key, fields_json, tag), all planned for this run.
        job_updates: (new status or None to keep it, job_id) of existing jobs sent in this run.
        rows: (row, job id or the fingerprint of a new job or None, row_status, detail).
        """
        now = self._clock()
        with self._write() as db:
            ids = self._insert_jobs(db, run_id, new_jobs, now)
            db.executemany(
                "UPDATE jobs SET status = coalesce(?, status), planned_run = ?, updated_at = ? "
                "WHERE id = ?",
                ((status, run_id, now, job_id) for status, job_id in job_updates),
            )
            db.executemany(
                "INSERT OR REPLACE INTO run_rows (run_id, row, job_id, row_status, detail) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (run_id, row, ids[ref] if isinstance(ref, str) else ref, status, detail)
                    for row, ref, status, detail in rows
                ),
            )
        return ids

    def _insert_jobs(
        self, db: sqlite3.Connection, run_id: int, jobs: Sequence[NewJob], now: float
    ) -> dict[str, int]:
        """Inserts new jobs in one statement; returns their ids by fingerprint."""
        if not jobs:
            return {}
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM jobs").fetchone()[0]
        db.executemany(
            "INSERT INTO jobs (fingerprint, row_key, fields, tag, status, planned_run, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
            (
                (fingerprint, row_key, fields, tag, run_id, now, now)
                for fingerprint, row_key, fields, tag in jobs
            ),
        )
        # SQLite gives each appended row max(rowid) + 1, so inside this transaction the ids
        # are consecutive; checked, with a look-up as the fallback.
        last = db.execute("SELECT max(id) FROM jobs").fetchone()[0]
        fingerprints = [job[0] for job in jobs]
        if last - first + 1 == len(jobs):
            return dict(zip(fingerprints, range(first, last + 1), strict=True))
        return {fp: row["id"] for fp, row in self.jobs_by_fingerprint(fingerprints).items()}

    def enter_unknown(self, fingerprint: str, row_key: str | None, fields: str, tag: str) -> None:
        """A job known only from a results file that says `unknown` (an attempt at time 0, so
        reconciliation scans the whole listing). Does nothing when the job exists."""
        now = self._clock()
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO jobs (fingerprint, row_key, fields, tag, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'unknown', ?, ?)",
                (fingerprint, row_key, fields, tag, now, now),
            )
            if cursor.rowcount:
                db.execute(
                    "INSERT INTO attempts (job_id, run_id, started_at, finished_at, outcome) "
                    "VALUES (?, 0, 0, 0, 'unknown')",
                    (cursor.lastrowid,),
                )

    def rekey_job(self, job_id: int, tag: str) -> None:
        """`--force`: render the job again under a new tag (the old video stays in attempts)."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET tag = ?, video_id = NULL, code = NULL, message = NULL, "
                "permanent = 0, recovered = 0, submitted_at = NULL, submitted_run = NULL, "
                "video_status = NULL, video_url = NULL, cover_url = NULL, duration = NULL, "
                "deducted_credit = NULL, error = NULL, completed_at = NULL WHERE id = ?",
                (tag, job_id),
            )

    # --- sending -------------------------------------------------------------------------------

    def next_jobs(self, run_id: int, after_id: int, limit: int) -> list[Job]:
        """Jobs planned for this run that still need a request or a reconciliation, in id order
        (so what an earlier run left behind goes first)."""
        rows = self._db.execute(
            "SELECT id, fingerprint, row_key, fields, tag, status, attempts, video_id, code, "
            "message, product_id FROM jobs WHERE planned_run = ? AND id > ? "
            "AND status IN ('pending', 'sending', 'reconciling', 'unknown') ORDER BY id LIMIT ?",
            (run_id, after_id, limit),
        ).fetchall()
        return [
            Job(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows
        ]

    def last_attempt_start(self, job_id: int) -> float | None:
        row = self._db.execute(
            "SELECT max(started_at) FROM attempts WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def begin_attempt(self, job_id: int, run_id: int) -> int:
        """Committed before the POST leaves: from here on the job may have been accepted."""
        now = self._clock()
        with self._write(durable=True) as db:
            cursor = db.execute(
                "INSERT INTO attempts (job_id, run_id, started_at, outcome) "
                "VALUES (?, ?, ?, 'sending')",
                (job_id, run_id, now),
            )
            db.execute(
                "UPDATE jobs SET status = 'sending', attempts = attempts + 1, updated_at = ? "
                "WHERE id = ?",
                (now, job_id),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_attempt(
        self,
        attempt_id: int,
        job_id: int,
        record: AttemptRecord,
        job_status: str,
        *,
        run_id: int,
        permanent: bool = False,
    ) -> None:
        """Records the answer and the job's new status in one transaction."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "UPDATE attempts SET finished_at = ?, outcome = ?, code = ?, http_status = ?, "
                "message = ?, video_id = ? WHERE id = ?",
                (
                    now,
                    record.outcome,
                    record.code,
                    record.http_status,
                    record.message,
                    record.video_id,
                    attempt_id,
                ),
            )
            self._set_job(
                db, job_id, job_status, record, run_id=run_id, permanent=permanent, now=now
            )

    def settle(
        self,
        job_id: int,
        job_status: str,
        record: AttemptRecord,
        *,
        run_id: int,
        recovered: bool = False,
        permanent: bool = False,
    ) -> None:
        """A job's status changes without a request (reconciliation, retries exhausted)."""
        now = self._clock()
        with self._write() as db:
            if recovered:
                db.execute(
                    "UPDATE attempts SET outcome = 'recovered', video_id = ?, finished_at = "
                    "coalesce(finished_at, ?) "
                    "WHERE id = (SELECT max(id) FROM attempts WHERE job_id = ?)",
                    (record.video_id, now, job_id),
                )
            self._set_job(
                db,
                job_id,
                job_status,
                record,
                run_id=run_id,
                now=now,
                recovered=recovered,
                permanent=permanent,
            )

    def _set_job(
        self,
        db: sqlite3.Connection,
        job_id: int,
        status: str,
        record: AttemptRecord,
        *,
        run_id: int,
        now: float,
        permanent: bool = False,
        recovered: bool = False,
    ) -> None:
        if status == "submitted":
            db.execute(
                "UPDATE jobs SET status = 'submitted', video_id = ?, code = 0, message = ?, "
                "recovered = ?, submitted_at = ?, submitted_run = ?, permanent = 0, "
                "video_status = coalesce(video_status, 'processing'), updated_at = ? WHERE id = ?",
                (record.video_id, record.message, int(recovered), now, run_id, now, job_id),
            )
        else:
            db.execute(
                "UPDATE jobs SET status = ?, code = ?, message = ?, permanent = ?, updated_at = ? "
                "WHERE id = ?",
                (status, record.code, record.message, int(permanent), now, job_id),
            )

    def mark_not_attempted(self, run_id: int) -> int:
        """Everything still pending for this run when it stops: it goes first next time."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'not_attempted', updated_at = ? "
                "WHERE planned_run = ? AND status = 'pending'",
                (self._clock(), run_id),
            )
        return cursor.rowcount

    # --- products (rows that name a product by URL or details) -------------------------------

    def product_for(self, source: str) -> str | None:
        row = self._db.execute(
            "SELECT product_id FROM products WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None else row[0]

    def record_product(self, source: str, product_id: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO products (source, product_id, created_at) VALUES (?, ?, ?)",
                (source, product_id, self._clock()),
            )

    def set_job_product(self, job_id: int, product_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET product_id = ? WHERE id = ?", (product_id, job_id))

    # --- final video status (status polling and webhooks) -----------------------------------

    def pending_videos(self) -> list[PendingVideo]:
        """Submitted videos whose render is not final yet."""
        rows = self._db.execute(
            "SELECT video_id, submitted_at FROM jobs WHERE status = 'submitted' "
            "AND video_id IS NOT NULL AND coalesce(video_status, 'processing') = 'processing'"
        )
        return [PendingVideo(video_id, float(at or 0.0)) for video_id, at in rows]

    def record_video_status(self, update: VideoUpdate) -> bool:
        """True when the update changed a job; the first sighting of a final status is kept."""
        final = update.status in ("completed", "failed")
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET video_status = ?, video_url = coalesce(?, video_url), "
                "cover_url = coalesce(?, cover_url), duration = coalesce(?, duration), "
                "deducted_credit = coalesce(?, deducted_credit), error = coalesce(?, error), "
                "completed_at = CASE WHEN ? THEN coalesce(completed_at, ?) ELSE completed_at END, "
                "updated_at = ? WHERE video_id = ? AND (coalesce(video_status, '') != ? "
                "OR coalesce(video_url, '') != coalesce(?, video_url, ''))",
                (
                    update.status,
                    update.video_url or None,
                    update.cover_url or None,
                    update.duration,
                    update.deducted_credit,
                    update.error,
                    int(final),
                    update.seen_at,
                    self._clock(),
                    update.video_id,
                    update.status,
                    update.video_url or None,
                ),
            )
        return cursor.rowcount > 0

    def video_states(self, video_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The video columns of these videos, as results-file text."""
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(video_ids), 10_000):
            chunk = list(video_ids[start : start + 10_000])
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                "SELECT video_id, video_status, video_url, cover_url, duration, deducted_credit, "
                f"error, completed_at FROM jobs WHERE video_id IN ({marks})",
                chunk,
            ):
                video_id, status, url, cover, duration, credit, error, completed = row
                found[video_id] = {
                    "video_status": status or "",
                    "video_url": url or "",
                    "cover_url": cover or "",
                    "duration": "" if duration is None else f"{duration:g}",
                    "deducted_credit": "" if credit is None else f"{credit:g}",
                    "error": error or "",
                    "completed_at": "" if completed is None else _iso(completed),
                }
        return found

    def claim_event(self, event_id: str) -> bool:
        """False when this webhook event was seen before (JoggAI retries deliveries)."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO webhook_events (event_id, received_at) VALUES (?, ?)",
                (event_id, self._clock()),
            )
        return cursor.rowcount > 0

    # --- results -------------------------------------------------------------------------------

    def outcome_rows(self, run_id: int, first: int, last: int) -> list[tuple[Any, ...]]:
        """Rows first..last of a run with their job's outcome, in catalog order, as tuples of
        `OUTCOME_FIELDS` (the results file is built from these columns, not row objects)."""
        rows = self._db.execute(
            f"SELECT r.row, {_RESULT_STATUS}, j.video_id, j.code, "
            "CASE WHEN r.detail IS NOT NULL THEN r.detail ELSE j.message END, "
            "j.attempts, j.submitted_at, j.video_status, j.video_url, j.cover_url, j.duration, "
            "j.deducted_credit, j.error, j.completed_at, j.product_id "
            "FROM run_rows r LEFT JOIN jobs j ON j.id = r.job_id "
            "WHERE r.run_id = ? AND r.row BETWEEN ? AND ? ORDER BY r.row",
            (run_id, first, last),
        ).fetchall()
        return rows

    def count_rows(self, run_id: int) -> dict[str, int]:
        """Result statuses of a run, counted (what the summary prints)."""
        rows = self._db.execute(
            f"SELECT {_RESULT_STATUS}, count(*) FROM run_rows r "
            "LEFT JOIN jobs j ON j.id = r.job_id WHERE r.run_id = ? GROUP BY 1",
            (run_id,),
        )
        return {status: count for status, count in rows}

    def failure_codes(self, run_id: int) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT coalesce(j.code, r.row_status), count(*) FROM run_rows r "
            "LEFT JOIN jobs j ON j.id = r.job_id WHERE r.run_id = ? AND "
            "(j.status IN ('failed', 'unknown') OR r.row_status = 'invalid') GROUP BY 1",
            (run_id,),
        )
        return {str(code): count for code, count in rows}

    def run_attempt_times(self, run_id: int) -> list[float]:
        return [
            float(t)
            for (t,) in self._db.execute(
                "SELECT started_at FROM attempts WHERE run_id = ? ORDER BY started_at", (run_id,)
            )
        ]

    def run_accepted(self, run_id: int) -> int:
        """Jobs this run got accepted (credits it spent, recovered ones included)."""
        row = self._db.execute(
            "SELECT count(*) FROM jobs WHERE submitted_run = ?", (run_id,)
        ).fetchone()
        return int(row[0])


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
