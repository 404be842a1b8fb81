"""Keeping a nightly ledger small: what it holds, pruning old runs' row outcomes, vacuuming.

What is kept, and why: every job and every attempt, forever (a job once accepted must never be
sent again, and its attempts prove what was paid); the listing index and the double charges;
products. What is pruned: the per-row outcomes (`run_rows`) and the run records of all but the
last `keep_runs` runs. Those only serve results files already written; `retry` works from the
results file itself, but takes the request defaults of the run that wrote it from that run's
record, kept in `results_files` when the run is pruned (one small row per results file, with the
catalog it was written for: a later run of it that asked otherwise for a row still tells a retry
the row was corrected since). A run
prunes to `run.keep_runs` when it ends; freed pages are reused by the next night's rows, so the
file stops growing without a VACUUM (which rewrites the whole file).
"""

from __future__ import annotations

from dataclasses import dataclass

from batch.store.connection import Connection
from batch.store.fleet import run_in_use
from batch.store.jobs import wrote_rows


@dataclass(frozen=True, slots=True)
class LedgerInfo:
    """`jogg-batch state info`."""

    bytes_on_disk: int  # the database and its WAL (PostgreSQL: the whole database)
    runs: int
    row_outcomes: int  # rows of run_rows: the part that grows with every run
    jobs_by_status: dict[str, int]
    attempts: int
    listed_videos: int
    double_charges: int


class MaintenanceQueries(Connection):
    def info(self) -> LedgerInfo:
        db = self._db

        def count(table: str) -> int:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        if self.dialect == "postgresql":
            size = int(db.execute("SELECT pg_database_size(current_database())").fetchone()[0])
        else:
            size = sum(
                path.stat().st_size
                for path in (self.path, self.path.with_name(self.path.name + "-wal"))
                if path.exists()
            )
        statuses = dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY 1"))
        return LedgerInfo(
            bytes_on_disk=size,
            runs=count("runs"),
            row_outcomes=count("run_rows"),
            jobs_by_status=statuses,
            attempts=count("attempts"),
            listed_videos=count("listing"),
            double_charges=count("double_charges"),
        )

    def prune(self, keep_runs: int) -> int:
        """Forgets the row outcomes (and run records) of all but the newest `keep_runs` runs,
        and of none that workers are still in; returns how many runs were pruned. Jobs and
        attempts are never touched."""
        if keep_runs < 1:
            raise ValueError(f"keep_runs must be 1 or more, not {keep_runs}")
        with self._write() as db:
            newest_first = db.execute("SELECT id, finished_at FROM runs ORDER BY id DESC")
            older = newest_first.fetchall()[keep_runs:]
            # A run that workers are still in (a fleet's long night, beside short runs that
            # ended) keeps its rows: its results file is still to be written from them. On
            # SQLite the file lock keeps every other run out, so an unfinished one is dead.
            live = [
                run_id
                for run_id, finished_at in older
                if finished_at is None and self.shared and run_in_use(db, run_id)
            ]
            old = [run_id for run_id, _ in older if run_id not in live]
            if old:
                newest_old = max(old)
                # What retry needs of a pruned run: its results file's request defaults.
                db.execute(
                    "INSERT INTO results_files (results, request_defaults, run_id, catalog, "
                    "retried_catalog) "
                    "SELECT r.results, r.request_defaults, r.id, r.catalog, r.retried_catalog "
                    f"FROM runs r WHERE r.id <= ?{_but(live, 'r.id')} AND r.results IS NOT NULL "
                    "AND r.request_defaults IS NOT NULL AND r.id = (SELECT max(x.id) FROM runs x "
                    "WHERE x.results = r.results AND x.request_defaults IS NOT NULL "
                    f"AND x.id <= ? AND {wrote_rows('x')}) "
                    "ON CONFLICT (results) DO UPDATE SET "
                    "request_defaults = excluded.request_defaults, run_id = excluded.run_id, "
                    "catalog = excluded.catalog, retried_catalog = excluded.retried_catalog "
                    "WHERE excluded.run_id > results_files.run_id",
                    (newest_old, newest_old),
                )
                db.execute(f"DELETE FROM run_rows WHERE run_id <= ?{_but(live)}", (newest_old,))
                db.execute(f"DELETE FROM runs WHERE id <= ?{_but(live, 'id')}", (newest_old,))
        return len(old)

    def vacuum(self) -> None:
        """Gives freed pages back to the file system (rewrites the whole file: slow when big).
        On PostgreSQL, a plain VACUUM: autovacuum already reuses the space; this only hurries it."""
        if self.dialect == "postgresql":
            self._db.execute("VACUUM")
            return
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.execute("VACUUM")


def _but(runs: list[int], column: str = "run_id") -> str:
    """A condition leaving these runs out (run ids are integers: written in place)."""
    return "".join(f" AND {column} <> {int(run_id)}" for run_id in runs)
