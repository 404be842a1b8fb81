"""The state database's connection: opening it (checked and migrated), the run lock, transactions,
and the small key-value table of settings it keeps (`meta`).

On SQLite, commits are not synced one by one (synchronous=NORMAL; WAL keeps them in order); a
`durable` transaction is synced before COMMIT returns. PostgreSQL gets the same split with
`synchronous_commit`. See batch.store for why it is safe.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from batch import files
from batch.errors import StateError
from batch.store.backend import (
    Database,
    DatabaseURL,
    PostgresDatabase,
    StateLocation,
    as_busy_error,
)
from batch.store.schema import migrate

# The waits before each attempt to connect again (seconds): a restart takes a few seconds.
_RECONNECT_DELAYS = (0, 1, 3, 8)


class Connection:
    """One connection to the state database. Not thread-safe: one connection, one thread."""

    worker = ""  # the worker whose claims this connection takes (batch.store.fleet)
    claim_seconds = 60.0

    def __init__(self, location: StateLocation, *, clock: Any = time.time) -> None:
        self.location = location
        self._clock = clock
        self._lock_file: int | None = None
        self._db: Database
        if isinstance(location, DatabaseURL):
            self.dialect = "postgresql"
            database = PostgresDatabase(location)
            self._db = database
            try:
                migrate(database, self.dialect, location)
            except database.errors as exc:
                database.close()
                raise StateError(f"{location}: cannot prepare the state database: {exc}") from exc
            except StateError:
                database.close()
                raise
            return
        self.dialect = "sqlite"
        files.prepare_state(location)  # 0600, no symlink, not another user's (StateError)
        try:
            db = sqlite3.connect(location, isolation_level=None, timeout=30)
            self._db = db
            _write_ahead_log(db)
            db.execute("PRAGMA synchronous=NORMAL")  # FULL where it matters: see begin_attempt
            # Job look-ups by fingerprint hit random pages: a bigger cache keeps planning linear.
            db.execute("PRAGMA cache_size=-65536")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, self.dialect, location)
        except sqlite3.Error as exc:
            if busy := as_busy_error(exc):  # a long `state vacuum`, say: exit 4, not 2
                raise busy from exc
            damaged = isinstance(exc, sqlite3.DatabaseError) and any(
                word in str(exc) for word in ("malformed", "not a database")
            )
            raise StateError(
                f"{location}: cannot open the state database: {exc}"
                + (
                    "; put it back from a backup, or move it aside and run again (a new ledger "
                    "looks up in the account's listing what was sent, and does not pay again "
                    "for what it finds there)"
                    if damaged
                    else ""
                )
            ) from exc

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL state has none)."""
        assert isinstance(self.location, Path), "a PostgreSQL state has no file"
        return self.location

    @property
    def shared(self) -> bool:
        """Whether other machines may use this state at the same time (PostgreSQL)."""
        return self.dialect == "postgresql"

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @classmethod
    @contextmanager
    def reader(cls, location: StateLocation) -> Iterator[Self]:
        """A second connection for reading while the run writes (WAL allows both at once)."""
        store = cls.__new__(cls)
        store.location = location
        store._clock = time.time
        store._lock_file = None
        if isinstance(location, DatabaseURL):
            store.dialect = "postgresql"
            store._db = PostgresDatabase(location, read_only=True)
        else:
            store.dialect = "sqlite"
            store._db = sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=30)
        try:
            yield store
        finally:
            store._db.close()

    def reconnect(self) -> bool:
        """A new connection in place of one the PostgreSQL server ended (a restart, a failover,
        an administrator), tried for some 12 seconds; True when there is one, False when
        the connection was not lost (SQLite's never is: a full disk is not cured by reopening).

        Only for a run that has stopped, to close itself and write its results: the old
        session's locks (the run's membership, the catalog's) and any transaction under way
        went with it, and nothing here takes them again.
        """
        if not (isinstance(self._db, PostgresDatabase) and self._db.lost):
            return False
        assert isinstance(self.location, DatabaseURL)
        *waits, last = _RECONNECT_DELAYS
        for delay in waits:
            time.sleep(delay)
            with suppress(StateError):
                self._db = PostgresDatabase(self.location)
                return True
        time.sleep(last)
        self._db = PostgresDatabase(self.location)  # or its StateError, which says why not
        return True

    def close(self) -> None:
        self.unlock()
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self) -> None:
        """Take the run lock (an flock on `<state>.lock`), or raise LockedError at once.

        A PostgreSQL state is shared by design: its runs take the per-catalog-run lock in
        `begin_run` instead (batch.store.fleet), so here there is nothing to take.
        """
        if self.shared:
            return
        self._lock_file = files.take_lock(  # 0600, O_NOFOLLOW, ours (StateError otherwise)
            self.path.with_name(self.path.name + ".lock"),
            str(os.getpid()),
            lambda holder: (
                f"{self.path} is in use by a running jogg-batch ("
                + ("another run in this process" if holder == str(os.getpid()) else f"pid {holder}")
                # Not "use another --state": a run for the same account from another ledger
                # is refused by the account's sending lock (batch.store.ledgers).
                + "); wait for it to finish"
            ),
        )

    def unlock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing releases the flock
            self._lock_file = None

    # --- transactions --------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Database]:
        """One transaction; a durable one is synced to disk before COMMIT returns."""
        db, sqlite = self._db, self.dialect == "sqlite"
        if durable and sqlite:
            db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
            try:
                if not durable and not sqlite:
                    db.execute("SET LOCAL synchronous_commit = off")
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if durable and sqlite:
                db.execute("PRAGMA synchronous=NORMAL")

    @contextmanager
    def discarded(self) -> Iterator[None]:
        """Everything written inside is rolled back: how `plan` and `--dry-run` leave the ledger
        as it was (a dry run then records only its run: which defaults wrote its results)."""
        sqlite = self.dialect == "sqlite"
        self._db.execute("SAVEPOINT discarded" if sqlite else "BEGIN")
        self._in_discarded = True
        try:
            yield
        finally:
            if sqlite:
                self._db.execute("ROLLBACK TO discarded")
                self._db.execute("RELEASE discarded")
            else:
                self._db.execute("ROLLBACK")
            self._in_discarded = False

    _in_discarded = False

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[Database]:
        if self._in_discarded:
            yield self._db  # already inside the savepoint; committing would defeat it
        else:
            with self.transaction(durable=durable) as db:
                yield db


def chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_ahead_log(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Puts the state in WAL mode. While another process opens a new state at the same moment,
    SQLite answers "database is locked" at once (its busy timeout does not cover a change of
    journal mode): asked again until `patience` runs out, as any other wait for the lock."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
