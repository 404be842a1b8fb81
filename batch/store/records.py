"""What the store hands out and takes in: jobs, attempts, plan slices, and the result columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from batch.statuses import JobStatus


class NewJob(NamedTuple):
    """A job first planned in this run."""

    fingerprint: str
    row_key: str | None
    fields: str  # JSON, see payload.fields_to_json
    tag: str
    # Other fingerprints its row has had: the one earlier versions gave it (text as written,
    # now made alike), whose tag the listing shows what they sent of it under
    # (`LedgerQueries.listed_video`); the one of its spelling as written, where the account's
    # look-ups corrected it (the row planned offline is the same job).
    aliases: tuple[str, ...] = ()


class RowPlan(NamedTuple):
    """What a catalog row maps to in this run."""

    row: int
    job: int | str | None  # a job id, the fingerprint of a job new in this slice, or none
    status: str  # job, planned, invalid, duplicate or blank
    detail: str | None


class KnownJob(NamedTuple):
    """What planning needs of a job already in the state."""

    id: int
    fingerprint: str
    status: str
    permanent: int


class AskedRow(NamedTuple):
    """A request a results file asks for again (`JobQueries.asked_otherwise_later`)."""

    row_key: str
    job_id: int | None  # none: a dry run's planned row (a dry run keeps no jobs)
    run_id: int | None  # the run that asked for it without a job: the dry run that wrote the file


class JobUpdate(NamedTuple):
    """An existing job this run sends."""

    status: JobStatus | None  # None keeps its status
    job_id: int
    seen: str  # the status planning read: another worker may have sent the job since


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


# A render's status, as jogg-batch spells it (batch.follow.polling reads every other spelling).
VideoStatus = Literal["processing", "completed", "failed"]


@dataclass(frozen=True, slots=True)
class PendingVideo:
    """A submitted video whose final status is not known yet."""

    video_id: str
    submitted_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class VideoUpdate:
    """What one status answer or one webhook says about one video."""

    video_id: str
    status: VideoStatus
    video_url: str | None
    cover_url: str | None
    duration: float | None
    deducted_credit: float | None
    error: str | None
    seen_at: float  # unix seconds; the state keeps the first time a final status was seen
