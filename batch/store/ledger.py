"""The account's own record in the ledger: the index of its listing by tag, lost answers being
settled against it, double charges, the credits a run spent, and older states merged in."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from batch.errors import StateError
from batch.store.connection import chunks
from batch.store.jobs import JobQueries
from batch.store.records import VIDEO_COLUMNS, AttemptRecord, DoubleCharge, UncertainJob

log = logging.getLogger(__name__)

# The job columns an older state hands over; run ids of another state mean nothing here.
# How far a job's record has gone towards a paid video: accepted (a video id), or sent with
# its answer lost; anything else was never sent, or proven not accepted.
_SENT_RANK = {"submitted": 2, "sending": 1, "reconciling": 1, "unknown": 1}
_JOB_COPY = frozenset(
    {
        "fingerprint", "row_key", "fields", "tag", "status", "video_id", "code", "message",
        "attempts", "permanent", "recovered", "submitted_at", "product_id", *VIDEO_COLUMNS,
        "created_at", "updated_at",
    }
)  # fmt: skip


class LedgerQueries(JobQueries):
    def record_listing(self, videos: Sequence[tuple[str, str | None, str, float | None]]) -> None:
        """Listed videos as (video_id, tag or None, title, created_at); a title seen again
        replaces the old one (the listing is the account's word)."""
        now = self._clock()
        latest = {video[0]: video for video in videos}  # a video listed twice: its last sighting
        with self._write() as db:
            db.executemany(
                "INSERT INTO listing (video_id, tag, title, created_at, seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (video_id) DO UPDATE SET tag = excluded.tag, "
                "title = excluded.title, "
                "created_at = coalesce(excluded.created_at, listing.created_at)",
                ((vid, tag, title, created, now) for vid, tag, title, created in latest.values()),
            )

    def listed_tags(self) -> tuple[int, int]:
        """How many videos the account's listing has shown, and how many of them with a tag."""
        listed, tagged = self._db.execute("SELECT count(*), count(tag) FROM listing").fetchone()
        return int(listed), int(tagged)

    def listed_untagged(self, video_ids: Sequence[str]) -> list[str]:
        """Those of `video_ids` the account's listing has shown without a tag in their title."""
        query = "SELECT video_id FROM listing WHERE tag IS NULL AND video_id IN ({})"
        return sorted(video for (video,) in self._in_chunks(query, video_ids))

    def has_accepted_jobs(self) -> bool:
        """Whether any request of this ledger was accepted (a job has its video)."""
        query = "SELECT EXISTS (SELECT 1 FROM jobs WHERE video_id IS NOT NULL)"
        return bool(self._db.execute(query).fetchone()[0])

    def listed_count(self) -> int:
        """How many videos the account's listing has shown, in every read so far."""
        return int(self._db.execute("SELECT count(*) FROM listing").fetchone()[0])

    def listed_video(self, tag: str, job_id: int | None = None) -> str | None:
        """The first video the account's listing shows with this tag, or None. With the job's
        id, also with the tag of a fingerprint it is known by as well (`fingerprint_aliases`:
        what an earlier version sent of its row, tagged from the text as the file wrote it),
        unless `--force` gave it a tag of its own (its first tag is its fingerprint's start)."""
        row = self._db.execute(
            "SELECT video_id FROM listing WHERE tag = ? OR tag IN ("
            "SELECT substr(a.fingerprint, 1, length(j.tag)) FROM fingerprint_aliases a "
            "JOIN jobs j ON j.id = a.job_id "
            "WHERE a.job_id = ? AND j.tag = substr(j.fingerprint, 1, length(j.tag))) "
            "ORDER BY created_at, video_id LIMIT 1",
            (tag, job_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def video_holder(self, video_id: str, job_id: int) -> int | None:
        """Another job that already has this video (a video is one row's render), or None."""
        row = self._db.execute(
            "SELECT id FROM jobs WHERE video_id = ? AND id <> ? LIMIT 1", (video_id, job_id)
        ).fetchone()
        return None if row is None else int(row[0])

    def listed_failures(self) -> list[tuple[int, str]]:
        """(job id, video id) of failed jobs whose tag the listing shows: the account rendered
        them, whatever answer their request got."""
        rows = self._db.execute(
            "SELECT j.id, min(l.video_id) FROM jobs j JOIN listing l ON l.tag = j.tag "
            "WHERE j.status = 'failed' GROUP BY j.id ORDER BY j.id"
        ).fetchall()
        return [(int(job_id), str(video_id)) for job_id, video_id in rows]

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

    def answered_at(self, video_ids: Sequence[str]) -> dict[str, float]:
        """video_id -> when the answer that gave it arrived (our clock), for the videos among
        these that a create of this ledger was answered with (not those found in the listing)."""
        found: dict[str, float] = {}
        for start in range(0, len(video_ids), 10_000):
            chunk = list(video_ids[start : start + 10_000])
            marks = ",".join("?" * len(chunk))
            found.update(
                (str(video_id), float(at))
                for video_id, at in self._db.execute(
                    "SELECT j.video_id, max(a.finished_at) FROM jobs j JOIN attempts a "
                    "ON a.job_id = j.id AND a.video_id = j.video_id "
                    f"WHERE j.video_id IN ({marks}) AND a.outcome = 'ok' "
                    "AND a.finished_at IS NOT NULL GROUP BY j.video_id",
                    chunk,
                )
            )
        return found

    def server_lag(self) -> float | None:
        """How far the API's clock was behind ours, at most, by the last 1,000 videos this
        ledger was given and has since seen listed: when the answer arrived, less the creation
        time the listing gives (the largest; None when none is listed)."""
        row = self._db.execute(
            "SELECT max(a.finished_at - l.created_at) FROM (SELECT video_id, finished_at "
            "FROM attempts WHERE outcome = 'ok' AND video_id IS NOT NULL "
            "AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1000) a "
            "JOIN listing l ON l.video_id = a.video_id WHERE l.created_at IS NOT NULL"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def accepted_between(self, after: float, before: float) -> list[str]:
        """The videos an answer gave this ledger between these times (our clock); not those
        found in the listing (adopted then, they may have been made long before)."""
        rows = self._db.execute(
            "SELECT j.video_id FROM jobs j WHERE j.video_id IS NOT NULL "
            "AND j.submitted_at >= ? AND j.submitted_at <= ? AND EXISTS (SELECT 1 FROM attempts "
            "a WHERE a.job_id = j.id AND a.video_id = j.video_id AND a.outcome = 'ok')",
            (after, before),
        )
        return [str(video_id) for (video_id,) in rows]

    def set_right_misnamed_videos(self, video_ids: Sequence[str]) -> dict[str, str]:
        """Gives each job holding one of these videos (answered, but not in the account's
        listing) the video the listing shows under the job's tag instead, when there is one
        and no other job holds it; its render is followed afresh. Returns given -> listed."""
        corrected: dict[str, str] = {}
        if not video_ids:
            return corrected
        with self._write() as db:
            for video_id in video_ids:
                held = db.execute("SELECT id, tag FROM jobs WHERE video_id = ?", (video_id,))
                for job_id, tag in held.fetchall():
                    listed = self.listed_video(tag, job_id)
                    if listed in (None, video_id) or self.video_holder(listed, job_id) is not None:
                        continue
                    db.execute(
                        "UPDATE jobs SET video_id = ?, video_status = 'processing', "
                        "video_url = NULL, cover_url = NULL, duration = NULL, "
                        "deducted_credit = NULL, error = NULL, completed_at = NULL, "
                        "updated_at = ? WHERE id = ?",
                        (listed, self._clock(), job_id),
                    )
                    corrected[video_id] = str(listed)
        return corrected

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
        videos: dict[str, list[tuple[float | None, str]]] = {}
        for tag, video_id, created in self._db.execute(
            "SELECT tag, video_id, created_at FROM listing WHERE tag IN "
            "(SELECT tag FROM listing WHERE tag IS NOT NULL GROUP BY tag HAVING count(*) > 1)"
        ):
            videos.setdefault(tag, []).append((created, video_id))
        rows = []
        for tag, seen in videos.items():
            seen.sort(key=lambda video: (video[0] is not None, video[0] or 0.0, video[1]))
            ids = json.dumps([video_id for _, video_id in seen], separators=(",", ":"))
            rows.append((tag, ids, min((c for c, _ in seen if c is not None), default=None)))
        known = {
            tag: ids for tag, ids in self._db.execute("SELECT tag, video_ids FROM double_charges")
        }
        fresh = [row for row in rows if known.get(row[0]) != row[1]]
        now = self._clock()
        with self._write() as db:
            db.executemany(
                "INSERT INTO double_charges (tag, video_ids, first_created, detected_at, "
                "detected_run) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tag) DO UPDATE SET "
                "video_ids = excluded.video_ids, first_created = excluded.first_created, "
                "detected_at = excluded.detected_at, detected_run = excluded.detected_run",
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
        """Accepted creates of this run's requests that the ledger knows of, tag by tag: the
        videos the account lists under it since the run began (a double charge is a credit
        spent), or the videos its answers and look-ups gave, whichever are more. Not both
        added up: an answer naming a video the listing does not show beside the one it shows
        (the listing lagging, or a server naming a video it never made) is one render."""
        row = self._db.execute(
            "SELECT coalesce(sum(CASE WHEN listed > answered THEN listed ELSE answered END), 0) "
            "FROM (SELECT count(DISTINCT a.video_id) AS answered, (SELECT count(*) FROM listing l "
            "WHERE l.tag = j.tag AND l.created_at >= ?) AS listed "
            "FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.run_id = ? "
            "GROUP BY j.tag) AS tags",
            (since, run_id),
        ).fetchone()
        return int(row[0])

    def absorb(self, legacy: Path) -> int:
        """Merges a state of jogg-batch 0.1 (kept beside a results file) into this one: its jobs
        (with their attempts) and products, each once; returns the number of jobs new here.
        A job both know keeps this state's record, unless the old one knows it further on the
        way to a paid video (accepted, or sent with its answer lost, where this state has it
        unsent): that is taken, so it is never sent again. A state absorbed unchanged is not
        read again."""
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
        taken: dict[int, int] = {}  # the same, for jobs both know whose old record is taken
        status_at = columns.index("status") + 1
        updated = [name for name in columns if name not in ("fingerprint", "created_at")]
        take = f"UPDATE jobs SET {', '.join(f'{name} = ?' for name in updated)} WHERE id = ?"
        with self._write() as db:
            for rows in chunks(source.execute(f"SELECT id, {names} FROM jobs"), 10_000):
                known = self.jobs_by_fingerprint([row[at] for row in rows])
                for row in rows:
                    mine = known.get(row[at])
                    if mine is None:
                        (new_ids[row[0]],) = db.execute(
                            f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id", row[1:]
                        ).fetchone()
                    elif _SENT_RANK.get(row[status_at], 0) > _SENT_RANK.get(mine.status, 0):
                        values = dict(zip(columns, row[1:], strict=True))
                        db.execute(take, (*(values[name] for name in updated), mine.id))
                        taken[row[0]] = mine.id
            db.executemany(
                "INSERT INTO attempts (job_id, run_id, started_at, finished_at, outcome, code, "
                "http_status, message, video_id) VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ((new_ids | taken)[row[0]], *row[1:])
                    for row in source.execute(
                        "SELECT job_id, started_at, finished_at, outcome, code, http_status, "
                        "message, video_id FROM attempts"
                    )
                    if row[0] in new_ids or row[0] in taken
                ),
            )
            db.executemany(
                "INSERT INTO products (source, product_id, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (source) DO NOTHING",
                source.execute("SELECT source, product_id, created_at FROM products"),
            )
        return len(new_ids)
