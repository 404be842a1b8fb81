"""Planning and sending: runs, jobs by fingerprint, the plan of each catalog slice, and every
attempt bracketed by state writes (`sending` before the request, the outcome after)."""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from batch import payload
from batch.store.backend import (
    Database,
    joined_integers,
    list_parameter,
    positions,
    split_integers,
)
from batch.store.connection import Connection
from batch.store.records import AskedRow, AttemptRecord, Job, JobUpdate, KnownJob, NewJob, RowPlan


def wrote_rows(run: str) -> str:
    """SQL: the run `run` (the runs table or its alias) wrote rows of its results file, a dry
    run's planned rows or any row's outcome; one that stopped before planning wrote none."""
    return f"({run}.dry_run = 1 OR EXISTS (SELECT 1 FROM run_rows w WHERE w.run_id = {run}.id))"


# meta: the jobs of the state at this version's first planning have their aliases
# (`alias_jobs_as_asked`). A version that reckons requests otherwise names another key, so the
# jobs are scanned again: the second, for URLs in one spelling; the third, for free text
# without spaces at its ends; the fifth, for free text with no-break spaces as spaces and
# without invisible characters at its ends; the seventh, for free text without the other
# format characters at its ends (direction isolates, soft hyphens).
_ALIASED = "aliased_as_asked_7"
# meta: this ledger file's random id, which the account's sending lock notes with each request.
_LEDGER_ID = "ledger_id"


class JobQueries(Connection):
    def begin_run(
        self,
        catalog: str,
        *,
        dry_run: bool,
        results: str | None = None,
        request_defaults: str | None = None,
        retried_catalog: str | None = None,
    ) -> int:
        """A new run; `results` (the file it writes, as `storage.identity` names it) and its
        `request_defaults` (JSON) are what `retry` of that file needs to rebuild its rows. A
        retry's run names the catalog its rows came from (`retried_catalog`)."""
        with self._write() as db:
            (run_id,) = db.execute(
                "INSERT INTO runs (started_at, catalog, dry_run, results, request_defaults, "
                "retried_catalog) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (self._clock(), catalog, int(dry_run), results, request_defaults, retried_catalog),
            ).fetchone()
        return int(run_id)

    def run_defaults(self, results: str) -> str | None:
        """The request defaults (JSON) of the newest run that wrote the results file `results`
        (a dry run's too: its planned rows), or None when the state knows no such run."""
        row = (
            self._db.execute(
                "SELECT request_defaults FROM runs WHERE results = ? "
                f"AND request_defaults IS NOT NULL AND {wrote_rows('runs')} "
                "ORDER BY id DESC LIMIT 1",
                (results,),
            ).fetchone()
            or self._db.execute(  # its runs were pruned
                "SELECT request_defaults FROM results_files WHERE results = ?", (results,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def defaults_of_videos(self, videos: Sequence[tuple[int, str]]) -> str | None:
        """The request defaults (JSON) of the newest run whose rows held each of these videos,
        (row number, video id), at those rows: the run that wrote a results file a person copied
        or renamed, found by what it holds; None when no one run holds them all."""
        runs: set[int] | None = None
        for row, video_id in videos:
            holding = {
                run_id
                for (run_id,) in self._db.execute(
                    "SELECT runs.id FROM runs JOIN run_rows r ON r.run_id = runs.id AND r.row = ? "
                    "JOIN jobs j ON j.id = r.job_id WHERE j.video_id = ? AND runs.dry_run = 0 "
                    "AND runs.request_defaults IS NOT NULL",
                    (row, video_id),
                )
            }
            runs = holding if runs is None else runs & holding
            if not runs:
                return None
        if not runs:
            return None
        (defaults,) = self._db.execute(
            "SELECT request_defaults FROM runs WHERE id = ?", (max(runs),)
        ).fetchone()
        return str(defaults)

    def _newest_writer(self, results: str) -> tuple[int, int, str] | None:
        """(id, dry run, the catalog its rows came from) of the newest run that wrote the rows
        of the results file `results` (a retry's run names the catalog it retried)."""
        row = self._db.execute(
            "SELECT id, dry_run, coalesce(retried_catalog, catalog) FROM runs "
            f"WHERE results = ? AND {wrote_rows('runs')} ORDER BY id DESC LIMIT 1",
            (results,),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    def wrote(self, results: str) -> bool:
        """Whether a run of this ledger wrote rows of the results file `results`."""
        return self._newest_writer(results) is not None

    def rows_left_to_send(self, results: str) -> list[int]:
        """The rows of the newest run (not a retry's: those number the retried rows alone) that
        wrote the results file `results` whose request the ledger does not hold as accepted:
        what a retry of that file would send, were they all still in it."""
        row = self._db.execute(
            "SELECT id FROM runs WHERE results = ? AND retried_catalog IS NULL "
            f"AND {wrote_rows('runs')} ORDER BY id DESC LIMIT 1",
            (results,),
        ).fetchone()
        if row is None:
            return []
        return [
            int(number)
            for (number,) in self._db.execute(
                "SELECT r.row FROM run_rows r LEFT JOIN jobs j ON j.id = r.job_id "
                "WHERE r.run_id = ? AND r.row_status NOT IN ('invalid', 'duplicate', 'blank') "
                "AND (j.status IS NULL OR j.status <> 'submitted') ORDER BY r.row",
                (row[0],),
            )
        ]

    def dry_run_that_wrote(self, results: str) -> int | None:
        """The dry run that wrote the results file `results` last, if its newest writer is one:
        when its planned rows are retried, they are the requests of that moment."""
        writer = self._newest_writer(results)
        return writer[0] if writer is not None and writer[1] else None

    def catalog_retried(self, results: str, job_ids: Sequence[int]) -> str | None:
        """The catalog a results file's rows came from, as its newest writer recorded it (a
        retry's run names the catalog it retried); for a copy no run wrote, that of the newest
        run that planned one of these jobs. None when the state knows neither."""
        if (writer := self._newest_writer(results)) is not None:
            return writer[2]
        if not job_ids:
            return None
        newest = max(
            run or 0
            for (run,) in self._in_chunks("SELECT planned_run FROM jobs WHERE id IN ({})", job_ids)
        )
        row = self._db.execute(
            "SELECT coalesce(retried_catalog, catalog) FROM runs WHERE id = ?", (newest,)
        ).fetchone()
        return None if row is None else str(row[0])

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

    def uncertain_fingerprints(self, row_key: str | None) -> set[str]:
        """The fingerprints of this row key's jobs whose request may have been accepted but whose
        answer was lost (`unknown`, or cut off while `sending` or `reconciling`)."""
        return {
            fingerprint
            for (fingerprint,) in self._db.execute(
                "SELECT fingerprint FROM jobs WHERE row_key = ? "
                "AND status IN ('unknown', 'sending', 'reconciling')",
                (row_key,),
            )
        }

    def add_aliases(self, aliases: Sequence[tuple[str, int]]) -> None:
        """Records (fingerprint, job id) pairs: a row found under an earlier version's
        fingerprint is found under tonight's from now on, however the file writes it."""
        if aliases:
            with self._write() as db:
                _add_aliases(db, aliases)

    def jobs_by_fingerprint(self, fingerprints: Sequence[str]) -> dict[str, KnownJob]:
        """The existing jobs among `fingerprints`, by the fingerprint asked for: a job an
        earlier version recorded under another is found by its alias."""
        found: dict[str, KnownJob] = {}
        for row in self._in_chunks(
            "SELECT id, fingerprint, status, permanent FROM jobs WHERE fingerprint IN ({})",
            fingerprints,
        ):
            found[row[1]] = KnownJob._make(row)
        missing = [fp for fp in fingerprints if fp not in found]
        if (
            missing
            and self._db.execute("SELECT EXISTS (SELECT 1 FROM fingerprint_aliases)").fetchone()[0]
        ):
            for alias, *job in self._in_chunks(
                "SELECT a.fingerprint, j.id, j.fingerprint, j.status, j.permanent "
                "FROM fingerprint_aliases a JOIN jobs j ON j.id = a.job_id "
                "WHERE a.fingerprint IN ({})",
                missing,
            ):
                found[alias] = KnownJob._make(job)
        return found

    def jobs_of_videos(self, video_ids: Sequence[str]) -> dict[str, int]:
        """The job each of these videos was made for, by video id (those the ledger knows)."""
        query = "SELECT video_id, id FROM jobs WHERE video_id IN ({})"
        return {video: job for video, job in self._in_chunks(query, video_ids)}

    def _in_chunks(self, query: str, values: Sequence[object]) -> Iterator[tuple[Any, ...]]:
        """The rows of `query` (its `{}` an IN list) over `values`, one query per 10,000."""
        for start in range(0, len(values), 10_000):
            chunk = values[start : start + 10_000]
            yield from self._db.execute(query.format(",".join("?" * len(chunk))), chunk)

    def alias_jobs_as_asked(self) -> int:
        """Once per state: gives each job an earlier version recorded the fingerprints of what
        it asks for as this version reckons them, as aliases, so that a row asking the same
        tonight finds it however the file writes it. Returns how many it gave.

        - Its fields' own: a spelling the account's look-ups corrected (`elegant presentation`)
          was hashed as written, while the corrected fields were sent and kept; a row spelled
          as listed asks for that very video.
        - Its fields made alike (NFD, CRLF, padded text: `payload.same_text`; URLs in one
          spelling, `payload.normalize_url`), as this version sends them.

        Each job keeps its own fingerprint (a file still written as then finds it by that) and
        its tag (the account's listing knows its render by it). A job this version records is
        under what it asks for already: the jobs of the state at its first planning are the
        ones. Fields in no layout this version reads are left as they are. A product page
        created before is found under its URL in this version's spelling too, so it is not
        created again.
        """
        if self.get_meta(_ALIASED) is not None:
            return 0
        aliases: list[tuple[str, int]] = []
        with self._write() as db:
            for job_id, recorded, text in db.execute("SELECT id, fingerprint, fields FROM jobs"):
                fields = _readable_fields(text)
                if fields is None:
                    continue
                asked = {
                    payload.fingerprint(fields),
                    payload.fingerprint(payload.fields_made_alike(fields)),
                }
                aliases += [(fp, job_id) for fp in asked - {recorded}]
            _add_aliases(db, aliases)
            db.executemany(
                "INSERT INTO products (source, product_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO NOTHING",
                _products_in_this_spelling(db),
            )
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) DO NOTHING",
                (_ALIASED,),
            )
        return len(aliases)

    def previous_run(self, run_id: int, catalog: str) -> int | None:
        """The newest run before `run_id` of this catalog, else of any (a dated file name each
        night): a guess whose rows planning checks by fingerprint. A dry run keeps no rows."""
        row = self._db.execute(
            "SELECT id FROM runs WHERE id < ? AND dry_run = 0 "
            "ORDER BY CASE WHEN catalog = ? THEN 0 ELSE 1 END, id DESC LIMIT 1",
            (run_id, catalog),
        ).fetchone()
        return None if row is None else int(row[0])

    def carry_over(
        self,
        run_id: int,
        previous_run: int,
        first: int,
        fingerprints: Sequence[str | None],
        conditions: Sequence[str],
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Records the rows `first`, `first` + 1, ... (by fingerprint, None for an invalid row)
        that are the same request as their row of `previous_run` and whose job needs nothing
        this run, one statement per condition on the job `j` (submitted; failed for good);
        returns each one's rows and their jobs' ids, as two arrays.

        A row matches only when its fingerprint is its job's, so the unique fingerprint still
        decides what is sent; this only spares reading and writing the rows one by one. A row
        this run had already (another worker's) is not recorded again, nor returned.
        """
        # SQLite takes CROSS JOIN as the order to join in: the list first, one probe a row.
        query = (
            "INSERT INTO run_rows (run_id, row, job_id, row_status, detail) "
            f"SELECT ?, r.row, r.job_id, 'job', NULL FROM {positions(self.dialect)} "
            "CROSS JOIN run_rows r CROSS JOIN jobs j "
            "WHERE r.run_id = ? AND r.row = ? + s.key AND j.id = r.job_id "
            "AND r.row_status IN ('job', 'planned') AND j.fingerprint = s.value AND {} "
            "ON CONFLICT (run_id, row) DO NOTHING"
        )
        # What each statement added, read back as two texts rather than a tuple a row.
        recorded = (
            f"SELECT {joined_integers(self.dialect, 'row')}, "
            f"{joined_integers(self.dialect, 'job_id')} FROM run_rows "
            "WHERE run_id = ? AND row BETWEEN ? AND ?"
        )
        span = (run_id, first, first + len(fingerprints) - 1)
        listed = list_parameter(self.dialect, fingerprints)
        found: list[tuple[np.ndarray, np.ndarray]] = []
        with self._write() as db:
            before = split_integers(db.execute(recorded, span).fetchone()[0])
            for condition in conditions:
                db.execute(query.format(condition), (run_id, listed, previous_run, first))
                rows_text, jobs_text = db.execute(recorded, span).fetchone()
                rows, jobs = split_integers(rows_text), split_integers(jobs_text)
                new = ~np.isin(rows, before)
                found.append((rows[new], jobs[new]))
                before = rows
        return found

    def has_permanent_failures(self) -> bool:
        found = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'failed' AND permanent = 1)"
        ).fetchone()
        return bool(found[0])

    def has_jobs(self) -> bool:
        found: tuple[int] = self._db.execute("SELECT EXISTS (SELECT 1 FROM jobs)").fetchone()
        return found == (1,)

    def knows_attempt(self, attempt: str | None) -> bool:
        """Whether this ledger recorded `attempt`, as the account's sending lock notes it:
        `run.attempt.ledger` (batch.store.ledgers). Another file at the ledger's path (a new
        one, a backup put back) may hold the same run and attempt ids for other requests: the
        ledger's own random id tells them apart. None (a lock an earlier version wrote): whether
        it has any job."""
        if attempt is None:
            return self.has_jobs()
        run_id, _, rest = attempt.partition(".")
        attempt_id, _, ledger = rest.partition(".")
        if not ledger or ledger != self.get_meta(_LEDGER_ID):
            return False
        found = self._db.execute(
            "SELECT 1 FROM attempts WHERE id = ? AND run_id = ?", (int(attempt_id), int(run_id))
        ).fetchone()
        return found is not None

    def ledger_id(self) -> str:
        """This ledger file's random id, made on first use (`knows_attempt`)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (_LEDGER_ID, secrets.token_hex(8)),
            )
        return str(self.get_meta(_LEDGER_ID))

    def newest_jobs_of_keys(self, keys: Sequence[str]) -> dict[str, int]:
        """The newest job of each of these row keys that has one: what the key's last run
        planned (for telling changed rows from new ones, and a person what a row to retry now
        asks otherwise). One indexed probe per distinct key: a key such as a product id can
        have thousands of jobs."""
        newest = "SELECT max(id) FROM jobs WHERE row_key = ?"
        found = {key: self._db.execute(newest, (key,)).fetchone()[0] for key in set(keys)}
        return {key: job_id for key, job_id in found.items() if job_id is not None}

    def fields_of_jobs(self, job_ids: Sequence[int]) -> dict[int, payload.ResolvedFields]:
        """The request fields of these jobs, those in this version's layout."""
        query = "SELECT id, fields FROM jobs WHERE id IN ({})"
        readable = (
            (job_id, _readable_fields(text)) for job_id, text in self._in_chunks(query, job_ids)
        )
        return {job_id: fields for job_id, fields in readable if fields is not None}

    def asked_otherwise_later(self, asked: Sequence[AskedRow]) -> set[int]:
        """Of these requests (the rows a results file asks for again), the positions of those a
        later run of their catalog asked otherwise for: it planned or carried other requests of
        the row key, and not this one. The catalog row was corrected (or put back) since the
        file was written, and that run asked for what it gives now.

        Later: after the run that last asked for the request (the job's last planning; for a
        dry run's planned row, the dry run). The newest such run that has the row key decides:
        one that still has the request (another video of the product beside it) keeps it.

        Of its catalog: with the same request defaults and sheet (the same file run as 9:16 and
        as 16:9 asks for both; a workbook's sheets are catalogs of their own), a run of the same
        catalog file, of the catalog a retry's rows came from, or one that carried at least
        half of that run's jobs (the catalog under another name: an export dated in its name).
        A retry's run has only the rows it retried: it never decides. A run pruned since (its
        rows forgotten) says nothing; one whose results file is asked for again is still known
        by its catalog (`results_files`), so a later run of that same file decides for it.
        """
        planned_by = dict(
            self._in_chunks(
                "SELECT id, planned_run FROM jobs WHERE id IN ({})",
                list({row.job_id for row in asked if row.job_id is not None}),
            )
        )
        since = [planned_by.get(row.job_id) if row.job_id else row.run_id for row in asked]
        if not any(since):
            return set()
        runs = {
            run_id: (retried or catalog, retried is not None, bool(dry), _asking(defaults))
            for run_id, catalog, retried, dry, defaults in self._db.execute(
                "SELECT id, catalog, retried_catalog, dry_run, request_defaults FROM runs"
            )
        }
        deciders = sorted((r for r, (_, retry, dry, _) in runs.items() if not (retry or dry)))
        # A run pruned since is known by its results file's record: what it asked for is
        # forgotten, but a later run of the same catalog file still decides for its rows.
        for run_id, catalog, retried, defaults in self._db.execute(
            "SELECT run_id, catalog, retried_catalog, request_defaults FROM results_files "
            "WHERE catalog IS NOT NULL"
        ):
            runs.setdefault(
                run_id, (retried or catalog, retried is not None, False, _asking(defaults))
            )
        family: dict[str, set[int]] = {}
        for key, job_id in self._in_chunks(
            "SELECT row_key, id FROM jobs WHERE row_key IN ({})", list({r.row_key for r in asked})
        ):
            family.setdefault(key, set()).add(job_id)
        jobs_of: dict[int, set[int]] = {}

        def jobs_in(run_id: int) -> set[int]:
            if run_id not in jobs_of:
                text = self._db.execute(
                    f"SELECT {joined_integers(self.dialect, 'job_id')} FROM run_rows "
                    "WHERE run_id = ? AND job_id IS NOT NULL",
                    (run_id,),
                ).fetchone()[0]
                jobs_of[run_id] = set(split_integers(text).tolist())
            return jobs_of[run_id]

        @functools.cache
        def same_catalog(earlier: int, later: int) -> bool:
            (catalog, retry, _, defaults), other = runs[earlier], runs[later]
            if defaults != other[3]:
                return False
            if catalog == other[0]:
                return True
            if retry:  # its jobs are the few it retried: those of the run of its catalog
                earlier = max(
                    (r for r in deciders if r < earlier and runs[r][0] == catalog), default=earlier
                )
            theirs = jobs_in(earlier)
            return bool(theirs) and 2 * len(theirs & jobs_in(later)) >= len(theirs)

        @functools.cache
        def named_in(key: str, run_id: int) -> frozenset[int]:
            """The jobs of the row key that the run has (a key may have thousands of jobs)."""
            return frozenset(family.get(key, set()) & jobs_in(run_id))

        undecided = {i for i, run_id in enumerate(since) if run_id in runs}
        superseded: set[int] = set()
        for later in reversed(deciders):
            for i in sorted(undecided):
                earlier, row = since[i], asked[i]
                assert earlier is not None
                if earlier >= later or not same_catalog(earlier, later):
                    continue
                named = named_in(row.row_key, later)
                if named:
                    undecided.discard(i)
                    if row.job_id not in named:
                        superseded.add(i)
        return superseded

    def record_plan(
        self,
        run_id: int,
        new_jobs: Sequence[NewJob],
        job_updates: Sequence[JobUpdate],
        rows: Sequence[RowPlan],
    ) -> dict[str, int]:
        """A slice of a catalog's plan, in one transaction; returns the new jobs' ids.

        new_jobs: (fingerprint, row_key, fields_json, tag), all planned for this run.
        job_updates: (new status or None to keep it, job_id, the status planning read) of existing
            jobs sent in this run.
        rows: (row, job id or the fingerprint of a new job or None, row_status, detail).
        """
        now = self._clock()
        with self._write() as db:
            ids = self._insert_jobs(db, run_id, new_jobs, now)
            # A job another worker of this run has planned already (and may be sending) is its;
            # one whose status moved on since planning read it (another run sent it: submitted,
            # or sending with its answer still out) is left as it is, never made pending again.
            db.executemany(
                "UPDATE jobs SET status = coalesce(?, status), planned_run = ?, updated_at = ? "
                "WHERE id = ? AND status = ? AND coalesce(planned_run, 0) <> ?",
                (
                    (status, run_id, now, job_id, seen, run_id)
                    for status, job_id, seen in job_updates
                ),
            )
            db.executemany(
                "INSERT INTO run_rows (run_id, row, job_id, row_status, detail) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, row) DO UPDATE SET "
                "job_id = excluded.job_id, row_status = excluded.row_status, "
                "detail = excluded.detail",
                (
                    (run_id, row, ids[ref] if isinstance(ref, str) else ref, status, detail)
                    for row, ref, status, detail in rows
                ),
            )
        return ids

    def _insert_jobs(
        self, db: Database, run_id: int, jobs: Sequence[NewJob], now: float
    ) -> dict[str, int]:
        """Inserts new jobs in one statement; returns their ids by fingerprint.

        On a shared state another worker may insert the same job first: its row is kept.
        """
        if not jobs:
            return {}
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM jobs").fetchone()[0]
        db.executemany(
            "INSERT INTO jobs (fingerprint, row_key, fields, tag, status, planned_run, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) "
            "ON CONFLICT (fingerprint) DO NOTHING",
            (
                (fingerprint, row_key, fields, tag, run_id, now, now)
                for fingerprint, row_key, fields, tag, _ in jobs
            ),
        )
        # SQLite gives each appended row max(rowid) + 1, so inside this transaction (which
        # holds the only write lock) the ids are consecutive; checked, with a look-up as the
        # fallback. PostgreSQL's identity values interleave between workers: always looked up.
        last = db.execute("SELECT max(id) FROM jobs").fetchone()[0]
        fingerprints = [job[0] for job in jobs]
        if self.dialect == "sqlite" and last - first + 1 == len(jobs):
            ids = dict(zip(fingerprints, range(first, last + 1), strict=True))
        else:
            ids = {fp: job.id for fp, job in self.jobs_by_fingerprint(fingerprints).items()}
        _add_aliases(db, [(alias, ids[job.fingerprint]) for job in jobs for alias in job.aliases])
        return ids

    def enter_unknown(self, job: NewJob) -> None:
        """A job known only from a results file that says `unknown` (an attempt at time 0, so
        reconciliation scans the whole listing). Does nothing when the job exists."""
        fingerprint, row_key, fields, tag, aliases = job
        now = self._clock()
        with self._write() as db:
            created = db.execute(
                "INSERT INTO jobs (fingerprint, row_key, fields, tag, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'unknown', ?, ?) "
                "ON CONFLICT (fingerprint) DO NOTHING RETURNING id",
                (fingerprint, row_key, fields, tag, now, now),
            ).fetchone()
            if created is not None:
                db.execute(
                    "INSERT INTO attempts (job_id, run_id, started_at, finished_at, outcome) "
                    "VALUES (?, 0, 0, 0, 'unknown')",
                    (created[0],),
                )
                _add_aliases(db, [(alias, created[0]) for alias in aliases])

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

    def begin_attempt(self, job_id: int, run_id: int) -> int | None:
        """Committed before the POST leaves: from here on the job may have been accepted.

        None, and nothing written, when the job is not this worker's to send: another worker
        holds its claim, or a request of it may be in flight or accepted (batch.store.fleet).
        """
        now = self._clock()
        with self._write(durable=True) as db:
            taken = db.execute(
                "UPDATE jobs SET status = 'sending', attempts = attempts + 1, absent_at = NULL, "
                "updated_at = ? WHERE id = ? AND status NOT IN ('sending', 'reconciling', "
                "'submitted') AND (claimed_by IS NULL OR claimed_by = ?)",
                (now, job_id, self.worker),
            )
            if taken.rowcount != 1:
                return None
            (attempt_id,) = db.execute(
                "INSERT INTO attempts (job_id, run_id, started_at, outcome) "
                "VALUES (?, ?, ?, 'sending') RETURNING id",
                (job_id, run_id, now),
            ).fetchone()
        return int(attempt_id)

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
    ) -> bool:
        """A job's status changes without a request (reconciliation, retries exhausted); False
        when another worker holds the job now, and nothing changed."""
        now = self._clock()
        with self._write() as db:
            if recovered:
                db.execute(
                    "UPDATE attempts SET outcome = 'recovered', video_id = ?, finished_at = "
                    "coalesce(finished_at, ?) "
                    "WHERE id = (SELECT max(id) FROM attempts WHERE job_id = ?)",
                    (record.video_id, now, job_id),
                )
            return self._set_job(
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
        db: Database,
        job_id: int,
        status: str,
        record: AttemptRecord,
        *,
        run_id: int | None,
        now: float,
        permanent: bool = False,
        recovered: bool = False,
    ) -> bool:
        """False when the job is another worker's now (nothing written)."""
        if status == "submitted":
            db.execute(
                "UPDATE jobs SET status = 'submitted', video_id = ?, code = 0, message = ?, "
                "recovered = ?, submitted_at = ?, submitted_run = ?, permanent = 0, "
                "video_status = coalesce(video_status, 'processing'), updated_at = ?, "
                "claimed_by = NULL, claim_until = NULL WHERE id = ?",
                (record.video_id, record.message, int(recovered), now, run_id, now, job_id),
            )
            return True
        # Any other status is only this worker's to set while it holds the job's claim: a worker
        # that stalled past its claim must not undo what the worker that took the job over did
        # (batch.store.fleet). An `unknown` is given up for this run: not looked up again.
        # A job done with for this run lets go of its claim, so claims stay few (an index).
        done = status in ("failed", "unknown")
        changed = db.execute(
            "UPDATE jobs SET status = ?, code = ?, message = ?, permanent = ?, updated_at = ?, "
            "given_up_run = ?, claimed_by = CASE WHEN ? = 1 THEN NULL ELSE claimed_by END, "
            "claim_until = CASE WHEN ? = 1 THEN NULL ELSE claim_until END "
            "WHERE id = ? AND (claimed_by IS NULL OR claimed_by = ?)",
            (
                status,
                record.code,
                record.message,
                int(permanent),
                now,
                run_id if status == "unknown" else None,
                int(done),
                int(done),
                job_id,
                self.worker,
            ),
        )
        return changed.rowcount == 1

    def mark_not_attempted(self, run_id: int) -> int:
        """Everything still pending for this run when it stops: it goes first next time."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = 'not_attempted', updated_at = ?, claimed_by = NULL, "
                "claim_until = NULL WHERE planned_run = ? AND status = 'pending'",
                (self._clock(), run_id),
            )
        return cursor.rowcount

    def product_for(self, source: str) -> str | None:
        row = self._db.execute(
            "SELECT product_id FROM products WHERE source = ?", (source,)
        ).fetchone()
        return None if row is None else row[0]

    def record_product(self, source: str, product_id: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO products (source, product_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET product_id = excluded.product_id, "
                "created_at = excluded.created_at",
                (source, product_id, self._clock()),
            )

    def set_job_product(self, job_id: int, product_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET product_id = ? WHERE id = ?", (product_id, job_id))

    def forget_product(self, product_id: str) -> None:
        """A product made at run time that the API no longer knows: made again when next
        needed (jobs that have it sent are left as they are)."""
        with self._write() as db:
            db.execute("DELETE FROM products WHERE product_id = ?", (product_id,))
            db.execute(
                "UPDATE jobs SET product_id = NULL WHERE product_id = ? AND video_id IS NULL",
                (product_id,),
            )


def _products_in_this_spelling(db: Database) -> list[tuple[str, str, float]]:
    """The product pages of the state recorded under a URL spelled otherwise than this version
    spells it (`products.product_source`), under this version's spelling."""
    found = []
    query = "SELECT source, product_id, created_at FROM products WHERE source LIKE 'url:%'"
    for source, product_id, created_at in db.execute(query):
        url = source.removeprefix("url:")
        if product_id is not None and (spelled := payload.one_spelling(url)) != url:
            found.append(("url:" + spelled, product_id, created_at))
    return found


def _readable_fields(text: str) -> payload.ResolvedFields | None:
    """A job's fields as `payload.fields_to_json` wrote them, or None in another layout."""
    try:
        return payload.fields_from_json(text)
    except (ValueError, TypeError, IndexError):
        return None


def _add_aliases(db: Database, aliases: Sequence[tuple[str, int]]) -> None:
    """Records (fingerprint, job id): another fingerprint the job is found by, and whose tag
    the account's listing may show its render under. One already taken keeps its job."""
    if aliases:
        db.executemany(
            "INSERT INTO fingerprint_aliases (fingerprint, job_id) VALUES (?, ?) "
            "ON CONFLICT (fingerprint) DO NOTHING",
            aliases,
        )


def _asking(settings: str | None) -> object:
    """A run's request settings (`batch.catalog.rows.request_settings_to_json`) as far as they
    change what is asked for: a default webhook only says where to report, and is in no
    fingerprint, so a run that added one still asks for the same videos."""
    if settings is None:
        return None
    try:
        values = json.loads(settings)
    except ValueError:
        return settings
    if isinstance(values, dict) and isinstance(values.get("defaults"), dict):
        values["defaults"].pop("webhook_url", None)
    return values
