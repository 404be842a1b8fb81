"""The state's tables, and the migrations that bring an older state up to date.

A new state is built as version 1 (`_BASE_SCHEMA`, jogg-batch 0.1) and then migrated like any
older one, so the upgrade path is exercised by every new state, not only by old files.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from batch.errors import StateError
from batch.store.backend import ddl

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
    CREATE INDEX jobs_submitted ON jobs (submitted_at) WHERE video_id IS NOT NULL;
    CREATE TABLE double_charges (
        tag TEXT PRIMARY KEY,
        video_ids TEXT NOT NULL,
        first_created REAL,
        detected_at REAL NOT NULL,
        detected_run INTEGER
    );
    """,
    # 3: workers sharing a state (batch.store.fleet): claims on jobs, the key's shared window.
    """
    ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
    ALTER TABLE jobs ADD COLUMN claim_until REAL;
    ALTER TABLE jobs ADD COLUMN given_up_run INTEGER;
    CREATE INDEX jobs_claimed ON jobs (claimed_by) WHERE claimed_by IS NOT NULL;
    CREATE TABLE sends (
        id INTEGER PRIMARY KEY,
        key_id TEXT NOT NULL,
        sent_at REAL NOT NULL,
        answered_at REAL,
        refused INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sends_window ON sends (key_id, sent_at);
    CREATE TABLE key_windows (
        key_id TEXT PRIMARY KEY,
        next_at REAL NOT NULL DEFAULT 0,
        hold_until REAL NOT NULL DEFAULT 0,
        others INTEGER NOT NULL DEFAULT 0,
        others_at REAL NOT NULL DEFAULT 0
    );
    """,
    # 4: planning asks whether any job failed for good before each run; without this, a full
    # scan of a million jobs stood between the start and the first request.
    """
    CREATE INDEX jobs_failed_for_good ON jobs (id) WHERE status = 'failed' AND permanent = 1;
    """,
    # 5: `retry RESULTS` rebuilds a run's rows with that run's request defaults (`--length`...):
    # the results file it wrote, and its request defaults and column mapping as JSON
    # (batch.catalog.rows.request_settings_to_json).
    """
    ALTER TABLE runs ADD COLUMN results TEXT;
    ALTER TABLE runs ADD COLUMN request_defaults TEXT;
    """,
    # 6: pruning keeps those of each results file's newest pruned run: a retry of a file whose
    # run was pruned would otherwise rebuild its rows with other defaults (other paid videos).
    """
    CREATE TABLE results_files (
        results TEXT PRIMARY KEY,
        request_defaults TEXT NOT NULL,
        run_id INTEGER NOT NULL
    );
    """,
    # 7: every run looks for failed jobs the listing shows (adopted, not sent again); without
    # this, that read every job: a second before the first request of a million-job ledger.
    """
    CREATE INDEX jobs_failed ON jobs (id) WHERE status = 'failed';
    """,
    # 8: free text is now sent and hashed made alike (NFC, LF line ends): a job an earlier
    # version recorded from NFD or CRLF text is found under the fingerprint it has now as well
    # (`JobQueries.alias_jobs_as_asked`), whichever way tonight's file writes the text.
    """
    CREATE TABLE fingerprint_aliases (
        fingerprint TEXT PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id)
    );
    """,
    # 9: a retry's run reads a temporary copy of a results file's rows: the catalog those rows
    # came from is recorded beside it, so that a later run of that catalog which asks otherwise
    # for them is known as one (`JobQueries.asked_otherwise_later`). A job's aliases are looked
    # up before each send (`LedgerQueries.listed_video`): by job, not by a scan of them all.
    """
    ALTER TABLE runs ADD COLUMN retried_catalog TEXT;
    CREATE INDEX fingerprint_aliases_job ON fingerprint_aliases (job_id);
    """,
    # 10: a pruned run's results file keeps the catalog it was written for too: a retry of it
    # must still know that a later run of that catalog asked otherwise for a row (corrected
    # since), or it paid for the row as it stood before.
    """
    ALTER TABLE results_files ADD COLUMN catalog TEXT;
    ALTER TABLE results_files ADD COLUMN retried_catalog TEXT;
    """,
)
SCHEMA_VERSION = 1 + len(_MIGRATIONS)
# Any fixed number: the advisory lock that serialises migrations on a shared PostgreSQL state.
_MIGRATION_LOCK = 0x6A6F6767


def migrate(db: Any, dialect: str, location: object) -> None:
    """Creates the tables if needed and brings the schema to SCHEMA_VERSION, one migration per
    transaction. On PostgreSQL, workers starting together take turns (an advisory lock)."""
    if _schema_is_current(db, dialect):
        return
    if dialect == "postgresql":
        _migrate_postgres(db, location)
        return
    db.executescript(_BASE_SCHEMA)  # IF NOT EXISTS: any number of processes at once
    while True:
        # One step per transaction, the version read inside it: processes opening a new state
        # together take turns, and none applies a step another has applied since it looked.
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _version(db, location)
            if version == SCHEMA_VERSION:
                db.execute("COMMIT")
                return
            try:
                for statement in _MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
            except sqlite3.OperationalError as exc:
                if "duplicate column" in str(exc):
                    raise _mismatch(location, version, exc) from exc
                raise
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version + 1),)
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _migrate_postgres(db: Any, location: object) -> None:
    db.execute("BEGIN")
    try:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        db.script(ddl(_BASE_SCHEMA, "postgresql"))
        version = _version(db, location)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            try:
                db.script(ddl(_MIGRATIONS[target - 2], "postgresql"))
            except db.errors as exc:
                if "already exists" in str(exc):
                    raise _mismatch(location, version, exc) from exc
                raise
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(target),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")  # PostgreSQL's DDL is transactional: all the steps, or none


def _schema_is_current(db: Any, dialect: str) -> bool:
    """Whether the ledger has this version's schema already, only read. On PostgreSQL the
    schema's `IF NOT EXISTS` still locks each table: a worker joining a run (or a `status` from
    another machine) deadlocked with a worker sending, which died of it. On SQLite a migration
    step waits for the write lock: behind a long `state vacuum`, a run waited 30 s and failed
    (exit 2) instead of being told the ledger is in use."""
    exists = (
        "SELECT to_regclass('meta') IS NOT NULL"
        if dialect == "postgresql"
        else "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    )
    if not db.execute(exists).fetchone()[0]:
        return False
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return row is not None and row[0] == str(SCHEMA_VERSION)


def _mismatch(location: object, version: int, error: Exception) -> StateError:
    """A state whose tables are newer than the version it records: damaged or edited."""
    return StateError(
        f"{location}: the state records schema {version}, but its tables are of a later one "
        f"({error}); it was damaged or edited by hand: restore a backup, or start a new state "
        "with --state (a new state adopts the account's videos from its listing)"
    )


def _version(db: Any, location: object) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = 1 if row is None else int(row[0])
    except ValueError:
        raise StateError(
            f"{location}: the state's schema version reads {row[0]!r}, not a number; it was "
            "damaged or edited by hand: restore a backup, or start a new state with --state"
        ) from None
    if version < 1:
        raise StateError(
            f"{location}: the state's schema version reads {version}; it was damaged or edited "
            "by hand: restore a backup, or start a new state with --state"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{location}: state schema {version} was written by a newer jogg-batch; this "
            f"one reads schema {SCHEMA_VERSION} (upgrade jogg-batch)"
        )
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    return version
