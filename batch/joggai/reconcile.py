"""Proving what became of a request whose answer was lost, before anything is paid twice.

The API has no idempotency key, so every answer that does not prove the request was refused
(50000, HTTP 5xx, timeouts, resets, a broken body, a crash while `sending`) leaves the job
*uncertain*. Its fate is read from the account's listing (`batch.joggai.listing`), and a request
is sent again only when its absence is proven:

- **found**: a sync lists the job's tag: the request was accepted; adopt that video.
- **absent**, and only then resent, when all four hold:
  (a) at least `settle` seconds have passed since the attempt began (a server may commit late,
      after the client gave up, and a listing may show new videos late);
  (b) two syncs taken at least `settle` apart, both begun after (a) and both covering the
      attempt (reaching back to its start less the clock skew allowance), lack the tag;
  (c) in both, the listing was shown to echo tags (`Sync.echo == "shown"`): videos this ledger
      knows it was given were found by their tags in the same read;
  (d) in both, the listing was whole where it was read (`Sync.missing == 0`): every video this
      ledger was given, answered in the time the read covers and `settle` before it, was listed
      (a server that skips a page, or sorts a video where the walk never goes, proves nothing),
      and the account's `total` counted no video that no read listed (`Sync.unlisted == 0`:
      pages that skip videos, such as ones created in the same second and paged in no stable
      order, or a gap of empty pages, prove nothing either).
- **unprovable**: the listing does not echo tags (a known video's title lacks its tag): absence
  can never be proven on this account. The job ends `unknown` and is not resent without
  `--resubmit-unknown`.
- otherwise the job **waits**; a job still waiting `3 × settle` after its attempt gives up and
  ends `unknown` too (the next run, or `status`, looks again).

What remains possible: a request committed more than `settle` after it was sent, on a listing that
also hid it for that long. Such a double charge is still detected afterwards (its tag is listed
twice) and reported.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from batch.joggai.listing import Sync
from batch.store import UncertainJob


class Verdict(enum.Enum):
    FOUND = "found"
    ABSENT = "absent"  # proven: safe to send again
    WAIT = "wait"
    UNPROVABLE = "unprovable"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    absent_at: float | None = None  # a first absence to record (WAIT with a new first sighting)
    why: str = ""


def judge(job: UncertainJob, sync: Sync, *, listed: str | None, settle: float) -> Judgement:
    """The fate of an uncertain job after one sync. `listed`: the video the index shows with
    the job's tag, if any. Pure: the caller records what it says."""
    if listed is not None:
        return Judgement(Verdict.FOUND)
    if sync.echo == "broken":
        return Judgement(
            Verdict.UNPROVABLE,
            why="this account's video listing does not show the tags sent in video names",
        )
    started = job.attempt_started if job.attempt_started is not None else 0.0
    settled = sync.started_at >= started + settle
    if not (settled and sync.covers(started) and sync.echo == "shown"):
        return Judgement(Verdict.WAIT, why="waiting for the listing to settle")
    if sync.missing:
        return Judgement(Verdict.WAIT, why="the listing lacks videos this ledger was given")
    if sync.unlisted:
        return Judgement(Verdict.WAIT, why="the listing shows fewer videos than it counts")
    if job.absent_at is None:
        return Judgement(Verdict.WAIT, absent_at=sync.started_at, why="absent once")
    if sync.started_at >= job.absent_at + settle:
        return Judgement(Verdict.ABSENT)
    return Judgement(Verdict.WAIT, why="absent once; waiting for a second listing")


def deadline(job: UncertainJob, settle: float) -> float:
    """When a job still waiting gives up (it ends `unknown`)."""
    started = job.attempt_started if job.attempt_started is not None else 0.0
    return max(started + 3 * settle, (job.absent_at or 0.0) + 2 * settle)
