"""The durable store of every job and every attempt: SQLite in WAL mode, one transaction per change.

A *job* is one distinct request (identified by its fingerprint); a catalog row points at a job.
The life of a job:

    pending -> sending -> submitted                      (answer: code 0, video_id kept)
                       -> failed                         (permanent code, or retries exhausted)
                       -> pending                        (retryable answer: sent again later)
                       -> reconciling -> submitted        (unknown answer; found by its tag)
                                      -> pending          (absence proven: joggai.reconcile)
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
index of `GET /v2/product_videos` by reconciliation tag (see batch.joggai.listing), and
`double_charges` keeps every tag the account rendered more than once.

Schema changes are migrations (`batch.store.schema`): a state written by an older jogg-batch is
upgraded in place when opened, and a new state is built by the same steps.

The store is one class built from one module per concern: `connection` (opening, lock,
transactions), `schema` (tables and migrations), `jobs` (planning and sending), `ledger` (the
account's listing, double charges, older states merged in), `videos` (final statuses and webhook
events), `outcomes` (per run, what the results file is written from) and `maintenance` (what
is kept, pruned and vacuumed), and `fleet` (workers sharing a state: runs, claims, the key's
window). `backend` holds what differs between SQLite and PostgreSQL.
"""

from __future__ import annotations

from batch.store.fleet import FleetQueries, SendRule
from batch.store.ledger import LedgerQueries
from batch.store.maintenance import LedgerInfo, MaintenanceQueries
from batch.store.outcomes import OutcomeQueries
from batch.store.records import (
    OUTCOME_FIELDS,
    VIDEO_COLUMNS,
    AskedRow,
    AttemptRecord,
    DoubleCharge,
    Job,
    JobUpdate,
    KnownJob,
    NewJob,
    PendingVideo,
    RowPlan,
    UncertainJob,
    VideoStatus,
    VideoUpdate,
)
from batch.store.schema import SCHEMA_VERSION
from batch.store.videos import VideoQueries

__all__ = [
    "OUTCOME_FIELDS",
    "SCHEMA_VERSION",
    "VIDEO_COLUMNS",
    "AskedRow",
    "AttemptRecord",
    "DoubleCharge",
    "Job",
    "JobUpdate",
    "KnownJob",
    "LedgerInfo",
    "NewJob",
    "PendingVideo",
    "RowPlan",
    "SendRule",
    "StateStore",
    "UncertainJob",
    "VideoStatus",
    "VideoUpdate",
]


class StateStore(LedgerQueries, VideoQueries, OutcomeQueries, MaintenanceQueries, FleetQueries):
    """The state database of an account (or of the file `--state` names)."""
