"""Planning: each catalog row classified against the state, the plan recorded slice by slice.

A row is invalid, a duplicate of an earlier row, or maps to a job (its fingerprint): new,
changed (its row key had another request before), to retry, to reconcile (an earlier answer was
lost), forced, already submitted, or failed for good. Jobs to send are marked for this run, and
the sender picks them up from the state as soon as each slice is committed.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from batch import catalog, payload, storage
from batch.config import RunConfig
from batch.preflight import Preflight
from batch.products import product_source
from batch.statuses import UNCERTAIN, JobStatus, duplicate_of
from batch.store import JobUpdate, KnownJob, NewJob, RowPlan, StateStore

log = logging.getLogger(__name__)

# Rows planned per state transaction: the catalog's first batch is one slice.
PLAN_SLICE = catalog.FIRST_BATCH_ROWS
# The longest key a lost zero is looked for in: a GTIN-14, past which Excel writes 1.2E+13.
_LONGEST_ZERO_PADDED = 14


@dataclass
class PlanCounts:
    """What a run would do with each catalog row."""

    new: int = 0
    changed: int = 0
    retry: int = 0
    unknown: int = 0
    forced: int = 0
    already_submitted: int = 0
    failed_permanent: int = 0
    duplicate: int = 0
    invalid: int = 0
    blank: int = 0  # every cell empty (Excel leaves such lines below the data): nothing to send

    @property
    def to_send(self) -> int:
        return self.new + self.changed + self.retry + self.forced

    @property
    def rows(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True, slots=True)
class Settled:
    """A kind of job a run leaves as it is: nothing to send, nothing to check."""

    status: JobStatus
    permanent_only: bool  # failed jobs: only those that failed for good
    count: str  # the `PlanCounts` field its rows go to

    @property
    def condition(self) -> str:
        """The same test in SQL, on the job `j` (`StateStore.carry_over`)."""
        return f"j.status = '{self.status}'" + (
            " AND j.permanent = 1" if self.permanent_only else ""
        )

    def holds_for(self, job: KnownJob) -> bool:
        return job.status == self.status and (bool(job.permanent) or not self.permanent_only)


def _further_along(job: KnownJob, other: KnownJob | None) -> bool:
    """Whether `job` is further along than `other` (none at all): submitted, then maybe
    accepted (its answer lost), then any other."""

    def rank(status: str) -> int:
        return 2 if status == "submitted" else 1 if status in UNCERTAIN else 0

    return other is None or rank(job.status) > rank(other.status)


def tag_for(fingerprint: str) -> str:
    """The reconciliation tag of a job's first render: derived, so a results file alone finds it."""
    return fingerprint[:12]


class Planner:
    """Classifies each catalog row against the state and records the plan batch by batch."""

    def __init__(self, config: RunConfig, state: StateStore, run_id: int, *, dry_run: bool):
        self.config = config
        self.state = state
        self.run_id = run_id
        self.dry_run = dry_run
        self.counts = PlanCounts()
        self.preflight: Preflight | None = None
        self.product_sources: set[str] = set()  # products this plan has to create first
        self.earlier_jobs = True
        self.previous_run: int | None = None  # the run whose rows are carried over
        self.settled: list[Settled] = []  # the kinds of job this run leaves as they are
        # Job id -> its first row in this run (0: not yet), for pointing duplicates at it.
        # Four bytes a job, however large the catalog; the state is not written for it.
        self.first_rows = np.zeros(0, np.uint32)

    def plan_all(self, stop: threading.Event | None = None) -> PlanCounts:
        """Plans the whole catalog; a slice at a time, until `stop` is set (its caller is gone:
        the counts are then of the rows planned so far)."""
        for _ in self.batches():
            if stop is not None and stop.is_set():
                break
        return self.counts

    def batches(self) -> Iterator[int]:
        """Plans the catalog a slice at a time; yields the number of jobs each slice adds.

        Slices are small (one transaction each) so that sending starts soon after the first
        rows are read and a sender on another connection never waits long for the write lock.
        """
        # A first run has no earlier rows to compare keys with: every row is new.
        self.earlier_jobs = self.state.has_jobs()
        # Before this version's first jobs (or none) are recorded: they need no alias.
        if aliased := self.state.alias_jobs_as_asked():
            log.info(
                "%d job(s) an earlier version recorded (from NFD or CRLF text, or a spelling "
                "the account's look-ups corrected) are found under what they ask for as well",
                aliased,
            )
        if self.earlier_jobs:
            self.previous_run = self.state.previous_run(
                self.run_id, storage.identity(self.config.catalog)
            )
            if not self.config.force:
                self.settled.append(Settled("submitted", False, "already_submitted"))
            if not self.config.retry_permanent and self.state.has_permanent_failures():
                self.settled.append(Settled("failed", True, "failed_permanent"))
        for batch in catalog.read_catalog(self.config.catalog, self.config.catalog_options):
            for start in range(0, len(batch.rows), PLAN_SLICE):
                yield self._plan_slice(batch.rows, start, min(start + PLAN_SLICE, len(batch.rows)))

    def _plan_slice(self, rows: catalog.ResolvedRows, start: int, stop: int) -> int:
        """Plans rows start..stop-1 of a batch. Rows that are the same request as last run's
        same row, with a job that needs nothing (`_carry_over`), are recorded in one statement
        without a row object; the rest are looked at one by one."""
        counts, fingerprints = self.counts, rows.fingerprints
        plans: list[RowPlan] = []
        carried = self._carry_over(rows, start, stop, plans)
        slow = [i for i in range(start, stop) if rows.first + i not in carried]
        existing = self.state.jobs_by_fingerprint(
            list({fp for i in slow if (fp := fingerprints[i])})
        )
        as_written = self._add_earlier_jobs(rows, slow, existing)
        checked = self._check_rows(rows, slow, existing)
        new_requests = {i for i in slow if fingerprints[i] and fingerprints[i] not in existing}
        newest_of_key = self._newest_jobs_of_keys(rows, new_requests)
        known_keys = set(newest_of_key)  # changed rows, unless their text was lost
        shortened = self._newest_of_shortened_keys(rows, new_requests - known_keys)
        lost = self._characters_lost(rows, newest_of_key | shortened)
        planned = "planned" if self.dry_run else "job"
        new_jobs: list[NewJob] = []
        updates: list[JobUpdate] = []
        first_row: dict[str, int] = {}  # fingerprint -> its first row in this slice
        spellings: list[tuple[str, int]] = []  # (fingerprint as written, its existing job)
        to_send = 0
        for index in slow:
            number, fp = rows.first + index, fingerprints[index]
            row, spelled = checked.get(index), None
            if row is not None and row.fields is None:
                fp = None
            elif row is not None and row.fingerprint != fp:
                spelled, fp = fp, row.fingerprint  # corrected: see `_check_rows`
            job = None if fp is None else existing.get(fp)
            if index in rows.blank:
                counts.blank += 1
                plans.append(RowPlan(number, None, "blank", None))
                continue
            if fp is None or index in lost:
                counts.invalid += 1
                problems = (row or rows[index]).problems
                detail = lost.get(index) or "; ".join(f"{p.column}: {p.reason}" for p in problems)
                plans.append(RowPlan(number, None, "invalid", detail))
                continue
            ref: int | str = fp if job is None else job.id  # a new job is known by fingerprint
            earlier = first_row.get(fp) or (0 if job is None else self._first_row(job.id))
            if earlier > number:  # a row carried over, later in this slice: this one comes first
                assert job is not None
                setattr(counts, carried[earlier], getattr(counts, carried[earlier]) - 1)
                counts.duplicate += 1
                plans.append(RowPlan(earlier, job.id, "duplicate", duplicate_of(number)))
                earlier = 0
            if earlier:
                counts.duplicate += 1
                plans.append(RowPlan(number, ref, "duplicate", duplicate_of(earlier)))
                continue
            first_row[fp] = number
            if job is not None:
                if spelled is not None:  # the row as written finds its job offline too
                    spellings.append((spelled, job.id))
                self._seen(job.id, number)
                status, send = self._classify(job)
                if send:
                    updates.append(JobUpdate(status, job.id, job.status))
                    to_send += 1
                    self._needs_product(row or rows[index])
                plans.append(RowPlan(number, job.id, planned if send else "job", None))
                continue
            row = row or rows[index]
            assert row.fields is not None
            self._needs_product(row)
            counts.changed += index in known_keys
            counts.new += index not in known_keys
            to_send += 1
            fields = payload.fields_to_json(row.fields)
            aliases = (*as_written.get(index, ()), *filter(None, [spelled]))
            new_jobs.append(NewJob(fp, row.key, fields, tag_for(fp), aliases))
            plans.append(RowPlan(number, fp, planned, None))
        self.state.add_aliases(spellings)
        new_ids = self.state.record_plan(self.run_id, new_jobs, updates, plans)
        for fp, job_id in new_ids.items():
            self._seen(job_id, first_row[fp])
        return to_send

    def _carry_over(
        self, rows: catalog.ResolvedRows, start: int, stop: int, plans: list[RowPlan]
    ) -> dict[int, str]:
        """Records the rows that are the same request as their row in the last run and whose
        job needs nothing (`StateStore.carry_over`); returns them as row -> the count they went
        to. One that repeats an earlier row's job is made a duplicate in `plans`.

        A whole catalog can take this path each night, so its bookkeeping is done on arrays.
        """
        if self.previous_run is None or not self.settled:
            return {}
        found = self.state.carry_over(
            self.run_id,
            self.previous_run,
            rows.first + start,
            rows.fingerprints[start:stop],
            [kind.condition for kind in self.settled],
        )
        if not any(len(numbers) for numbers, _ in found):
            return {}
        numbers = np.concatenate([numbers for numbers, _ in found])
        job_ids = np.concatenate([job_ids for _, job_ids in found])
        kinds = np.concatenate([np.full(len(each), kind) for kind, (each, _) in enumerate(found)])
        order = np.argsort(numbers, kind="stable")
        numbers, job_ids, kinds = numbers[order], job_ids[order], kinds[order]
        self._grow(int(job_ids.max()))
        # The first row of each job in this slice, unless an earlier slice had the job already.
        first_here = np.zeros(len(job_ids), bool)
        first_here[np.unique(job_ids, return_index=True)[1]] = True
        fresh = first_here & (self.first_rows[job_ids] == 0)
        self.first_rows[job_ids[fresh]] = numbers[fresh]
        carried: dict[int, str] = {}
        for index, kind in enumerate(self.settled):
            mine = fresh & (kinds == index)
            carried.update(dict.fromkeys(numbers[mine].tolist(), kind.count))
            setattr(self.counts, kind.count, getattr(self.counts, kind.count) + int(mine.sum()))
        # Last run's duplicates are not carried over, but its rows may have moved since.
        for number, job_id in zip(numbers[~fresh].tolist(), job_ids[~fresh].tolist(), strict=True):
            earlier = self._first_row(job_id)
            plans.append(RowPlan(number, job_id, "duplicate", duplicate_of(earlier)))
            carried[number] = "duplicate"
            self.counts.duplicate += 1
        return carried

    def _add_earlier_jobs(
        self, rows: catalog.ResolvedRows, indices: list[int], existing: dict[str, KnownJob]
    ) -> dict[int, tuple[str, ...]]:
        """Adds to `existing` (jobs by fingerprint) the jobs earlier versions made of these rows:
        they hashed free text as the file wrote it (NFD, CRLF), which is now made alike first,
        so a row they sent has another fingerprint tonight. Found under its old one, it is that
        job (already submitted, or retried as it is), not a new one; a row with a job under
        each is the one further along (`_further_along`), so it is never paid for again.

        Returns those old fingerprints by row index: a new job keeps its row's as aliases."""
        earlier = {
            i: olds
            for i in indices
            if rows.fingerprints[i] and (olds := rows.earlier_fingerprints(i))
        }
        if not self.earlier_jobs:
            return earlier
        found = self.state.jobs_by_fingerprint(
            list({old for olds in earlier.values() for old in olds})
        )
        direct = set(existing)  # jobs of tonight's own fingerprints: they need no alias
        adopted: dict[str, int] = {}
        for i, olds in earlier.items():
            fp = rows.fingerprints[i]
            assert fp is not None
            for old in olds:
                job = found.get(old)
                if job is not None and _further_along(job, existing.get(fp)):
                    existing[fp] = job
                    if fp not in direct:
                        adopted[fp] = job.id
        # Tonight's fingerprint becomes the job's alias: a file re-saved as this version reads
        # it (no earlier spelling left to find the job by) still finds it.
        self.state.add_aliases(list(adopted.items()))
        return earlier

    def _needs_product(self, row: catalog.CatalogRow) -> None:
        """Notes the product a row to send has to have created first, if it is not yet."""
        source = None if row.fields is None else product_source(row.fields)
        if source is not None and self.state.product_for(source) is None:
            self.product_sources.add(source)

    def _newest_jobs_of_keys(self, rows: catalog.ResolvedRows, indices: set[int]) -> dict[int, int]:
        """The rows among these (new fingerprints) whose key had a job before (changed), with
        that key's newest job."""
        if not self.earlier_jobs or not indices:
            return {}
        keys = {index: rows.key(index) for index in indices}
        newest = self.state.newest_jobs_of_keys(list(keys.values()))
        return {index: newest[key] for index, key in keys.items() if key in newest}

    def _newest_of_shortened_keys(
        self, rows: catalog.ResolvedRows, indices: set[int]
    ) -> dict[int, int]:
        """The rows among these (new keys) whose key is digits and whose free text has a `?`,
        with the newest job of their key as written with leading zeros: the Excel save that
        writes `?` for characters its code page lacks also drops a number's leading zeros
        (SKU `00123` is `123`), so the row's own key has no job to compare with."""
        if not self.earlier_jobs or not indices:
            return {}
        padded: dict[int, list[str]] = {}
        for index in indices:
            key, fields = rows.key(index), rows[index].fields
            texts = () if fields is None else payload.free_texts(fields).values()
            if key.isdigit() and any("?" in (text or "") for text in texts):
                padded[index] = [
                    "0" * n + key for n in range(1, _LONGEST_ZERO_PADDED - len(key) + 1)
                ]
        newest = self.state.newest_jobs_of_keys([key for keys in padded.values() for key in keys])
        found = {i: [newest[key] for key in keys if key in newest] for i, keys in padded.items()}
        return {index: max(jobs) for index, jobs in found.items() if jobs}

    def _characters_lost(
        self, rows: catalog.ResolvedRows, newest_of_key: dict[int, int]
    ) -> dict[int, str]:
        """The changed rows whose request is their key's last one with characters lost to `?`
        by a re-save (`payload.characters_lost`), with why: invalid, never a second render."""
        if not newest_of_key:
            return {}
        earlier = self.state.fields_of_jobs(list(set(newest_of_key.values())))
        lost = {}
        for index, job_id in newest_of_key.items():
            fields, before = rows[index].fields, earlier.get(job_id)
            if fields and before and (why := payload.characters_lost(before, fields)):
                lost[index] = why
        return lost

    def _settled(self, job: KnownJob | None) -> bool:
        """Whether this run leaves the job as it is (nothing to send, nothing to check)."""
        return job is not None and any(kind.holds_for(job) for kind in self.settled)

    def _first_row(self, job_id: int) -> int:
        """The first row of this run that maps to the job, or 0."""
        return int(self.first_rows[job_id]) if job_id < len(self.first_rows) else 0

    def _seen(self, job_id: int, row: int) -> None:
        self._grow(job_id)
        self.first_rows[job_id] = row

    def _grow(self, job_id: int) -> None:
        """Makes room in `first_rows` for ids up to `job_id` (doubling, as a list would)."""
        if job_id >= len(self.first_rows):
            size = max(job_id + 1, 2 * len(self.first_rows))
            self.first_rows = np.concatenate(
                [self.first_rows, np.zeros(size - len(self.first_rows), np.uint32)]
            )

    def _check_rows(
        self, rows: catalog.ResolvedRows, indices: list[int], existing: dict[str, KnownJob]
    ) -> dict[int, catalog.CatalogRow]:
        """Pre-flight of these rows against the account's look-ups, but for those whose job
        this run leaves as it is; returns them, checked, by index.

        A spelling the account lists otherwise (`elegant presentation`, `en-us-jennyneural`)
        is corrected, and the row asks for the corrected request: it is that request's job,
        the same as a row spelled as listed, never a second render of it. Those jobs are
        added to `existing`. Its spelling as written becomes the new job's alias, so the row
        planned offline finds the same job; a row whose job is found as written stays it."""
        if self.preflight is None:
            return {}
        checked: dict[int, catalog.CatalogRow] = {}
        corrected: set[str] = set()
        for index in indices:
            fp = rows.fingerprints[index]
            job = None if fp is None else existing.get(fp)
            if fp is None or self._settled(job):
                continue
            row = self.preflight.check(rows[index])
            if row.fields is not None and job is not None:
                row = row._replace(fingerprint=fp)
            elif row.fields is not None and row.fingerprint != fp:
                corrected.add(str(row.fingerprint))
            checked[index] = row
        if unknown := corrected - existing.keys():
            existing.update(self.state.jobs_by_fingerprint(list(unknown)))
        return checked

    def _classify(self, job: KnownJob) -> tuple[JobStatus | None, bool]:
        """(new job status or None to keep it, whether this run sends it)."""
        config, counts, status = self.config, self.counts, job.status
        if status == "submitted":
            if config.force:
                counts.forced += 1
                if not self.dry_run:
                    self.state.rekey_job(job.id, secrets.token_hex(6))
                return "pending", True
            counts.already_submitted += 1
            return None, False
        if status == "failed" and job.permanent and not config.retry_permanent:
            counts.failed_permanent += 1
            return None, False
        if status in UNCERTAIN:
            counts.unknown += 1
            return None, True
        counts.retry += 1
        return "pending", True
