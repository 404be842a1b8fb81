"""Planning: each catalog row classified against the state, the plan recorded slice by slice.

A row is invalid, a duplicate of an earlier row, or maps to a job (its fingerprint): new,
changed (its row key had another request before), to retry, to reconcile (an earlier answer was
lost), forced, already submitted, or failed for good. Jobs to send are marked for this run, and
the sender picks them up from the state as soon as each slice is committed.
"""

from __future__ import annotations

import secrets
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from batch import catalog, payload
from batch.config import RunConfig
from batch.preflight import Preflight
from batch.products import product_source
from batch.statuses import UNCERTAIN, JobStatus
from batch.store import JobUpdate, KnownJob, NewJob, RowPlan, StateStore

# Rows planned per state transaction.
PLAN_SLICE = 5_000


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

    @property
    def to_send(self) -> int:
        return self.new + self.changed + self.retry + self.forced

    @property
    def rows(self) -> int:
        return sum(asdict(self).values())


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
        self.previous_run: int | None = None  # the run whose row -> job map is tried first
        # Job id -> its first row in this run (0: not yet), for pointing duplicates at it.
        # Four bytes a job, however large the catalog; the state is not written for it.
        self.first_rows = array("I")

    def plan_all(self) -> PlanCounts:
        for _ in self.batches():
            pass
        return self.counts

    def batches(self) -> Iterator[int]:
        """Plans the catalog a slice at a time; yields the number of jobs each slice adds.

        Slices are small (one transaction each) so that sending starts soon after the first
        rows are read and a sender on another connection never waits long for the write lock.
        """
        # A first run has no earlier rows to compare keys with: every row is new.
        self.earlier_jobs = self.state.has_jobs()
        if self.earlier_jobs:
            self.previous_run = self.state.previous_run(self.run_id, str(self.config.catalog))
        for batch in catalog.read_catalog(self.config.catalog, self.config.catalog_options):
            for start in range(0, len(batch.rows), PLAN_SLICE):
                yield self._plan_batch(batch.rows[start : start + PLAN_SLICE])

    def _plan_batch(self, rows: list[catalog.CatalogRow]) -> int:
        counts = self.counts
        if self.preflight is not None:
            rows = [self._checked(row) for row in rows]
        existing = self._existing_jobs(rows)
        unseen_keys = [r.key for r in rows if r.fingerprint and r.fingerprint not in existing]
        known_keys = self.state.keys_with_jobs(unseen_keys) if self.earlier_jobs else set()
        planned = "planned" if self.dry_run else "job"
        new_jobs: list[NewJob] = []
        updates: list[JobUpdate] = []
        plans: list[RowPlan] = []
        first_row: dict[str, int] = {}  # fingerprint -> its first row in this batch
        to_send = 0
        for row in rows:
            if row.fields is None or row.fingerprint is None:
                counts.invalid += 1
                detail = "; ".join(f"{p.column}: {p.reason}" for p in row.problems)
                plans.append(RowPlan(row.number, None, "invalid", detail))
                continue
            fp = row.fingerprint
            job = existing.get(fp)
            ref: int | str = fp if job is None else job.id  # a new job is known by fingerprint
            earlier = first_row.get(fp) or (0 if job is None else self._first_row(job.id))
            if earlier:
                counts.duplicate += 1
                plans.append(
                    RowPlan(row.number, ref, "duplicate", f"same request as row {earlier}")
                )
                continue
            first_row[fp] = row.number
            source = product_source(row.fields)
            if source is not None and self.state.product_for(source) is None:
                self.product_sources.add(source)
            if job is None:
                if row.key in known_keys:
                    counts.changed += 1
                else:
                    counts.new += 1
                to_send += 1
                fields = payload.fields_to_json(row.fields)
                new_jobs.append(NewJob(fp, row.key, fields, tag_for(fp)))
                plans.append(RowPlan(row.number, fp, planned, None))
                continue
            self._seen(job.id, row.number)
            status, send = self._classify(job)
            if send:
                updates.append(JobUpdate(status, job.id))
                to_send += 1
            plans.append(RowPlan(row.number, job.id, planned if send else "job", None))
        new_ids = self.state.record_plan(self.run_id, new_jobs, updates, plans)
        for fp, job_id in new_ids.items():
            self._seen(job_id, first_row[fp])
        return to_send

    def _existing_jobs(self, rows: list[catalog.CatalogRow]) -> dict[str, KnownJob]:
        """The state's jobs for these rows' fingerprints. A nightly catalog mostly maps each row
        to the job its row mapped to last run: that map is read as one range and each match
        checked by fingerprint; only the rest are looked up by fingerprint."""
        found: dict[str, KnownJob] = {}
        if self.previous_run is not None and rows:
            before = self.state.jobs_by_row(self.previous_run, rows[0].number, rows[-1].number)
            for row in rows:
                known = before.get(row.number)
                if known is not None and known[2] == row.fingerprint:
                    found[known[2]] = KnownJob._make(known[1:])
        unmatched = [r.fingerprint for r in rows if r.fingerprint and r.fingerprint not in found]
        found.update(self.state.jobs_by_fingerprint(unmatched))
        return found

    def _first_row(self, job_id: int) -> int:
        """The first row of this run that maps to the job, or 0."""
        return self.first_rows[job_id] if job_id < len(self.first_rows) else 0

    def _seen(self, job_id: int, row: int) -> None:
        if job_id >= len(self.first_rows):
            grow = max(job_id + 1, 2 * len(self.first_rows)) - len(self.first_rows)
            self.first_rows.extend(array("I", bytes(4 * grow)))
        self.first_rows[job_id] = row

    def _checked(self, row: catalog.CatalogRow) -> catalog.CatalogRow:
        """Pre-flight against the account's look-ups. A corrected spelling keeps the row's
        identity: the same row checked offline or online must never become a second job."""
        assert self.preflight is not None
        checked = self.preflight.check(row)
        if checked is row or checked.fields is None:
            return checked
        return checked._replace(fingerprint=row.fingerprint)

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
