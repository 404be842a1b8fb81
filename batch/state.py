"""The durable store of every job and every attempt: SQLite in WAL mode, one transaction per change.

A *job* is one distinct request (identified by its fingerprint); a catalog row points at a job.
The life of a job:

    pending -> sending -> submitted                      (answer: code 0, video_id kept)
                       -> failed                         (permanent code, or retries exhausted)
                       -> pending                        (retryable answer: sent again later)
                       -> reconciling -> submitted        (unknown answer; found by its tag)
                                      -> pending          (absence proven, see batch.reconcile)
                                      -> unknown          (absence unprovable; not resent blindly)
    pending -> submitted                                 (its tag is already in the account's
                                                          listing: adopted, never sent)
    pending -> not_attempted                             (run stopped before sending it)

`sending` is committed *before* the request leaves and replaced only after the answer, so a
process killed at any instant leaves `sending` exactly on the jobs that might have been accepted.
That commit is synced to disk (synchronous=FULL) before the request leaves: it survives a power
cut too, because a lost `sending` could mean a double charge. Other commits are not synced one by
one (NORMAL; WAL keeps them in order, and the next synced commit carries them): losing one to a
power cut only sends a job back to reconciliation, which finds it again.

Per run, `run_rows` records what happened to each catalog row (the job it maps to, or why it has
none), which is what the results file is written from. `listing` is the account's own record: an
index of `GET /v2/product_videos` by reconciliation tag (see batch.listing), and `double_charges`
keeps every tag the account rendered more than once.

Schema changes are migrations (`_MIGRATIONS`): a state written by an older jogg-batch is upgraded
in place when opened, and a new state is built by the same steps.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batch import files
from batch.errors import LockedError, StateError
from batch.status import PendingVideo, VideoUpdate
from batch.statuses import JobStatus

_BASE_SCHEMA = """
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

# Version N is reached by running _MIGRATIONS[N - 2] on a state of version N - 1; the base
# schema above is version 1 (jogg-batch 0.1).
_MIGRATIONS: tuple[str, ...] = (
    """
    ALTER TABLE jobs ADD COLUMN absent_at REAL;
    CREATE TABLE listing (
        video_id TEXT PRIMARY KEY,
        tag TEXT,
        title TEXT,
        created_at REAL,
        seen_at REAL NOT NULL
    );
    CREATE INDEX listing_tag ON listing (tag) WHERE tag IS NOT NULL;
    CREATE TABLE double_charges (
        tag TEXT PRIMARY KEY,
        video_ids TEXT NOT NULL,
        first_created REAL,
        detected_at REAL NOT NULL,
        detected_run INTEGER
    );
    """,
)
SCHEMA_VERSION = 1 + len(_MIGRATIONS)

log = logging.getLogger(__name__)

# What the results file says of a row, from its plan (run_rows) and its job.
_RESULT_STATUS = """CASE
    WHEN r.row_status IN ('invalid', 'duplicate') THEN r.row_status
    WHEN j.status = 'submitted' THEN
        CASE WHEN j.submitted_run = r.run_id THEN 'submitted' ELSE 'already_submitted' END
    WHEN j.status IN ('pending', 'not_attempted') THEN
        CASE WHEN r.row_status = 'planned' THEN 'planned' ELSE 'not_attempted' END
    WHEN j.status IN ('sending', 'reconciling', 'unknown') THEN 'unknown'
    ELSE j.status END"""


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
    status: JobStatus
    attempts: int
    video_id: str | None
    code: int | None
    message: str | None
    product_id: str | None


@dataclass(frozen=True, slots=True)
class UncertainJob:
    """A job whose last request may have been accepted (see `StateStore.uncertain_jobs`)."""

    id: int
    tag: str
    row_key: str | None
    status: JobStatus
    absent_at: float | None  # the first listing, after the settle period, that lacked its tag
    attempt_started: float | None  # its last request (None: entered from a results file)


@dataclass(frozen=True, slots=True)
class DoubleCharge:
    """One tag the account rendered more than once: every video after the first is a credit
    to raise with JoggAI."""

    tag: str
    video_ids: tuple[str, ...]
    first_created: float | None


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
            self._db.executescript(_BASE_SCHEMA)
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from exc
        self._lock_file: int | None = None

    def _migrate(self) -> None:
        """Brings the schema to SCHEMA_VERSION, one migration per transaction."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = 1 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path}: state schema {version} was written by a newer jogg-batch; this "
                f"one reads schema {SCHEMA_VERSION} (upgrade jogg-batch)"
            )
        if row is None:
            self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', 1)")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript commits first; the script's own BEGIN/COMMIT makes the step atomic.
            try:
                self._db.executescript(
                    f"BEGIN IMMEDIATE; {_MIGRATIONS[target - 2]} "
                    f"UPDATE meta SET value = '{target}' WHERE key = 'schema_version'; COMMIT;"
                )
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

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

    def absorb(self, legacy: Path) -> int:
        """Merges a state of jogg-batch 0.1 (kept beside a results file) into this one: its jobs
        (with their attempts) and products, each once; returns the number of jobs new here.
        Jobs this state already has win. A state absorbed unchanged is not read again."""
        try:
            info = legacy.stat()
            stamp, key = f"{info.st_size}:{info.st_mtime_ns}", f"absorbed:{legacy.resolve()}"
            if self.get_meta(key) == stamp:
                return 0
            source = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"{legacy}: cannot read this older state to merge it: {exc}") from exc
        try:
            added = self._absorb_from(source)
        except sqlite3.Error as exc:
            raise StateError(f"{legacy}: cannot merge this older state: {exc}") from exc
        finally:
            source.close()
        self.set_meta(key, stamp)
        log.warning(
            "merged %d job(s) of %s into the account's ledger %s (the old file is no longer used)",
            added,
            legacy,
            self.path,
        )
        return added

    def _absorb_from(self, source: sqlite3.Connection) -> int:
        columns = [
            row[1] for row in source.execute("PRAGMA table_info(jobs)") if row[1] in _JOB_COPY
        ]
        names, marks = ", ".join(columns), ", ".join("?" * len(columns))
        at = columns.index("fingerprint") + 1
        new_ids: dict[int, int] = {}  # the old state's job id -> this state's
        with self._write() as db:
            for rows in _chunks(source.execute(f"SELECT id, {names} FROM jobs"), 10_000):
                known = self.jobs_by_fingerprint([row[at] for row in rows])
                for row in rows:
                    if row[at] not in known:
                        cursor = db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", row[1:])
                        assert cursor.lastrowid is not None
                        new_ids[row[0]] = cursor.lastrowid
            db.executemany(
                "INSERT INTO attempts (job_id, run_id, started_at, finished_at, outcome, code, "
                "http_status, message, video_id) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (new_ids[row[0]], *row[1:])
                    for row in source.execute(
                        "SELECT job_id, started_at, finished_at, outcome, code, http_status, "
                        "message, video_id FROM attempts"
                    )
                    if row[0] in new_ids
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO products (source, product_id, created_at) VALUES (?, ?, ?)",
                source.execute("SELECT source, product_id, created_at FROM products"),
            )
        return len(new_ids)

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

    def job(self, job_id: int) -> Job:
        row = self._db.execute(
            "SELECT id, fingerprint, row_key, fields, tag, status, attempts, video_id, code, "
            "message, product_id FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        return Job(*row)

    def last_attempt(self, job_id: int) -> AttemptRecord:
        row = self._db.execute(
            "SELECT outcome, code, http_status, message, video_id FROM attempts "
            "WHERE job_id = ? ORDER BY id DESC LIMIT 1",
            (job_id,),
        ).fetchone()
        return AttemptRecord("none") if row is None else AttemptRecord(*row)

    def had_uncertain_attempt(self, job_id: int) -> bool:
        """Whether any request of this job ended without proof that it was refused."""
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM attempts WHERE job_id = ? "
            "AND outcome IN ('unknown', 'sending'))",
            (job_id,),
        ).fetchone()
        return bool(row[0])

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
                "UPDATE jobs SET status = 'sending', attempts = attempts + 1, absent_at = NULL, "
                "updated_at = ? WHERE id = ?",
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
        run_id: int | None,
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
        run_id: int | None,
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

    # --- the account's listing and reconciliation (see batch.listing, batch.reconcile) --------

    def record_listing(self, videos: Sequence[tuple[str, str | None, str, float | None]]) -> None:
        """Listed videos as (video_id, tag or None, title, created_at); a title seen again
        replaces the old one (the listing is the account's word)."""
        now = self._clock()
        with self._write() as db:
            db.executemany(
                "INSERT INTO listing (video_id, tag, title, created_at, seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (video_id) DO UPDATE SET tag = excluded.tag, "
                "title = excluded.title, created_at = coalesce(excluded.created_at, created_at)",
                ((vid, tag, title, created, now) for vid, tag, title, created in videos),
            )

    def listed_video(self, tag: str) -> str | None:
        """The first video the account's listing shows with this tag, or None."""
        row = self._db.execute(
            "SELECT video_id FROM listing WHERE tag = ? ORDER BY created_at, video_id LIMIT 1",
            (tag,),
        ).fetchone()
        return None if row is None else str(row[0])

    def accepted_tags(self, video_ids: Sequence[str]) -> dict[str, str]:
        """video_id -> tag, for the videos among these that this ledger knows it was given."""
        found: dict[str, str] = {}
        for start in range(0, len(video_ids), 10_000):
            chunk = list(video_ids[start : start + 10_000])
            marks = ",".join("?" * len(chunk))
            found.update(
                self._db.execute(
                    f"SELECT video_id, tag FROM jobs WHERE video_id IN ({marks})", chunk
                ).fetchall()
            )
        return found

    def newest_accepted_at(self) -> float | None:
        """When this ledger last learnt of an accepted video (a listing back to then proves
        whether titles carry tags)."""
        row = self._db.execute("SELECT max(submitted_at) FROM jobs WHERE video_id IS NOT NULL")
        found = row.fetchone()[0]
        return None if found is None else float(found)

    def uncertain_jobs(self, run_id: int) -> list[UncertainJob]:
        """Jobs of this run whose last request may have been accepted, with that request's start."""
        rows = self._db.execute(
            "SELECT j.id, j.tag, j.row_key, j.status, j.absent_at, "
            "(SELECT max(started_at) FROM attempts a WHERE a.job_id = j.id) "
            "FROM jobs j WHERE j.planned_run = ? "
            "AND j.status IN ('sending', 'reconciling', 'unknown') ORDER BY j.id",
            (run_id,),
        )
        return [UncertainJob(*row) for row in rows]

    def mark_absent(self, job_id: int, at: float) -> None:
        """The first listing that covers the job's last attempt, after the settle period,
        lacks its tag."""
        with self._write() as db:
            db.execute("UPDATE jobs SET absent_at = ? WHERE id = ?", (at, job_id))

    def adopt(self, job_id: int, video_id: str, *, run_id: int | None) -> None:
        """The listing shows the job's tag: the job is submitted, with that video. `run_id` is
        the run whose request it was; None when no request of ours is known (already done)."""
        self.settle(
            job_id,
            "submitted",
            AttemptRecord("recovered", video_id=video_id, message="found in the account's listing"),
            run_id=run_id,
            recovered=run_id is not None,
        )

    def record_double_charges(self, run_id: int | None) -> list[DoubleCharge]:
        """Tags the listing shows on more than one video and that were not known before;
        every such tag is kept, with its videos, oldest first."""
        rows = self._db.execute(
            "SELECT tag, json_group_array(video_id), min(created_at) FROM "
            "(SELECT tag, video_id, created_at FROM listing WHERE tag IS NOT NULL "
            " ORDER BY created_at, video_id) GROUP BY tag HAVING count(*) > 1"
        ).fetchall()
        known = {
            tag: ids for tag, ids in self._db.execute("SELECT tag, video_ids FROM double_charges")
        }
        fresh = [row for row in rows if known.get(row[0]) != row[1]]
        now = self._clock()
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO double_charges (tag, video_ids, first_created, "
                "detected_at, detected_run) VALUES (?, ?, ?, ?, ?)",
                ((tag, ids, first, now, run_id) for tag, ids, first in fresh),
            )
        return [DoubleCharge(tag, tuple(json.loads(ids)), first) for tag, ids, first in fresh]

    def double_charges(self) -> list[DoubleCharge]:
        """Every tag the account rendered more than once, as far as this ledger has seen."""
        rows = self._db.execute(
            "SELECT tag, video_ids, first_created FROM double_charges ORDER BY first_created"
        )
        return [DoubleCharge(tag, tuple(json.loads(ids)), first) for tag, ids, first in rows]

    def run_credits(self, run_id: int, since: float) -> int:
        """Accepted creates of this run's requests that the ledger knows of: the videos its
        answers and its look-ups gave, plus any further video of the same tags listed since
        the run began (a double charge is a credit spent)."""
        row = self._db.execute(
            "SELECT count(*) FROM ("
            " SELECT a.video_id FROM attempts a WHERE a.run_id = ? AND a.video_id IS NOT NULL"
            " UNION SELECT l.video_id FROM listing l JOIN jobs j ON j.tag = l.tag"
            " WHERE l.created_at >= ? AND j.id IN (SELECT job_id FROM attempts WHERE run_id = ?))",
            (run_id, since, run_id),
        ).fetchone()
        return int(row[0])

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
        """True when the update changed a job; the first sighting of a final status is kept,
        and a final status (completed, failed) never changes."""
        final = update.status in ("completed", "failed")
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET video_status = ?, video_url = coalesce(?, video_url), "
                "cover_url = coalesce(?, cover_url), duration = coalesce(?, duration), "
                "deducted_credit = coalesce(?, deducted_credit), error = coalesce(?, error), "
                "completed_at = CASE WHEN ? THEN coalesce(completed_at, ?) ELSE completed_at END, "
                "updated_at = ? WHERE video_id = ? AND (coalesce(video_status, '') != ? "
                "OR coalesce(video_url, '') != coalesce(?, video_url, '')) "
                # A final status is never changed again, whoever reports otherwise (replays).
                "AND (coalesce(video_status, '') NOT IN ('completed', 'failed') "
                "OR video_status = ?)",
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
                    update.status,
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
            "CASE WHEN r.detail IS NOT NULL THEN r.detail "
            "WHEN d.tag IS NOT NULL THEN 'double charge, raise it with JoggAI: videos ' || "
            "(SELECT group_concat(value, ', ') FROM json_each(d.video_ids)) "
            "ELSE j.message END, "
            "j.attempts, j.submitted_at, j.video_status, j.video_url, j.cover_url, j.duration, "
            "j.deducted_credit, j.error, j.completed_at, j.product_id "
            "FROM run_rows r LEFT JOIN jobs j ON j.id = r.job_id "
            "LEFT JOIN double_charges d ON d.tag = j.tag "
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


# The job columns an older state hands over; run ids of another state mean nothing here.
_JOB_COPY = frozenset(
    {
        "fingerprint", "row_key", "fields", "tag", "status", "video_id", "code", "message",
        "attempts", "permanent", "recovered", "submitted_at", "product_id", *VIDEO_COLUMNS,
        "created_at", "updated_at",
    }
)  # fmt: skip


def _chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
