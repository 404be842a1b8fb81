"""Workers sharing one state (a PostgreSQL ledger, or a SQLite file on one machine): who is in a
catalog's run, which worker holds which job, and the API key's window as the whole fleet spends it.

**The run is per catalog.** A worker starting a catalog joins the run of that catalog that other
live workers are in, or begins one. On PostgreSQL each member holds a shared advisory lock on
the run for as long as it works (a killed worker's connection drops, and its lock with it); the
last one out closes the run. SQLite states keep their file lock: one process at a time.

**Claims.** A job is only ever handled by the worker that holds its claim (`claimed_by`), taken
atomically (`UPDATE … WHERE claimable … FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer). A claim lasts `claim_seconds` and is renewed every third of that while its worker
lives; an expired claim may be taken by another worker. A job that was `sending` when its worker
died is taken as an uncertain job: looked up in the account's listing before any resend, exactly
as after a crash. `begin_attempt` is a compare-and-set on the claim, so a job goes out only from
the worker that holds it, and never while another request of it may be in flight.

**The key's window** (`take_send`, `answer_send`): the guarantee of batch.joggai.ratelimit, kept
in the `sends` table so that it holds for the sum of every worker. A slot is taken in a
transaction (serialised per key by an advisory lock on PostgreSQL), counts until `window`
seconds after its answer, and sends are spaced `window / N` apart fleet-wide. Times are the
database server's clock, so workers' clocks need not agree.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import socket
from dataclasses import dataclass

from batch.store.backend import Database
from batch.store.jobs import JobQueries
from batch.store.records import Job, UncertainJob

# Advisory lock spaces (any fixed numbers): joining or leaving a catalog's run; being in a run;
# taking a send slot of a key.
_JOIN_LOCK = 0x6A62_0001
_MEMBER_LOCK = 0x6A62_0002
_SEND_LOCK = 0x6A62_0003
# Statuses a worker may claim a job in: to send it, or to settle a lost answer.
_CLAIMABLE = "('pending', 'sending', 'reconciling', 'unknown')"
# What is still to do in a run: a job that ended `unknown` during it was given up by one of its
# workers and is not looked up again before the next run (as one process would not).
_TO_DO = f"status IN {_CLAIMABLE} AND NOT (status = 'unknown' AND given_up_run = planned_run)"
_JOB_COLUMNS = (
    "id, fingerprint, row_key, fields, tag, status, attempts, video_id, code, message, product_id"
)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def lock_key(text: str) -> int:
    """A stable signed 32-bit number for an advisory lock on `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big", signed=True)


@dataclass(frozen=True, slots=True)
class SendRule:
    """The key's limit as the fleet enforces it (batch.joggai.ratelimit's guarantee)."""

    key_id: str
    count: int
    window: float
    stale_after: float  # a send never answered (its worker died) stops counting after this


class FleetQueries(JobQueries):
    def as_worker(self, claim_seconds: float) -> str:
        """Names this connection's worker; its claims last `claim_seconds` unless renewed.

        On PostgreSQL a worker's transaction left open longer than its claims can last (its
        process frozen: a paused VM, SIGSTOP) is ended by the server, so the lock it holds on
        the key's window no longer stops every other worker. Its transactions last
        milliseconds; a minute at the least."""
        self.worker = worker_name()
        self.claim_seconds = claim_seconds
        if self.dialect == "postgresql":
            limit = int(1000 * max(60.0, 4 * claim_seconds))
            self._db.execute(f"SET idle_in_transaction_session_timeout = {limit}")
        return self.worker

    def now(self) -> float:
        """The time claims and send slots are measured in: the database server's clock on
        PostgreSQL (workers on several machines), this machine's on SQLite."""
        if self.dialect == "postgresql":
            row = self._db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            return float(row[0])
        return float(self._clock())

    def _skip_locked(self) -> str:
        return " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""

    # --- the catalog's run ---------------------------------------------------------------------

    def join_run(
        self,
        catalog: str,
        *,
        results: str | None = None,
        request_defaults: str | None = None,
        retried_catalog: str | None = None,
    ) -> int:
        """The run of `catalog` that live workers are in with the same request defaults, else a
        new one (SQLite: always new), recorded as `begin_run` records it. Workers of one catalog
        with other defaults (a changed config rolling out) ask for other videos: a run of their
        own, whose rows are theirs (sharing one, each results file showed the other's)."""
        if not self.shared:
            # The file lock keeps every other process out: any claim left is a dead worker's.
            with self._write() as db:
                db.execute(
                    "UPDATE jobs SET claimed_by = NULL, claim_until = NULL "
                    "WHERE claimed_by IS NOT NULL"
                )
            return self.begin_run(
                catalog,
                dry_run=False,
                results=results,
                request_defaults=request_defaults,
                retried_catalog=retried_catalog,
            )
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?, ?)", (_JOIN_LOCK, lock_key(catalog)))
            row = db.execute(
                "SELECT id FROM runs WHERE catalog = ? AND finished_at IS NULL AND dry_run = 0 "
                "AND request_defaults IS NOT DISTINCT FROM ? ORDER BY id DESC LIMIT 1",
                (catalog, request_defaults),
            ).fetchone()
            run_id = None if row is None else int(row[0])
            if run_id is not None and self._alone_in(db, run_id):
                # Its workers are gone (killed): it is closed, and this worker begins afresh.
                db.execute(
                    "UPDATE runs SET finished_at = ?, outcome = 'abandoned' WHERE id = ?",
                    (self._clock(), run_id),
                )
                run_id = None
            if run_id is None:
                (run_id,) = db.execute(
                    "INSERT INTO runs (started_at, catalog, dry_run, results, request_defaults, "
                    "retried_catalog) VALUES (?, ?, 0, ?, ?, ?) RETURNING id",
                    (self._clock(), catalog, results, request_defaults, retried_catalog),
                ).fetchone()
            db.execute("SELECT pg_advisory_lock_shared(?, ?)", (_MEMBER_LOCK, run_id))
        return int(run_id)

    def leave_run(self, run_id: int, catalog: str) -> bool:
        """Leaves the run and gives back this worker's unsent claims; True when no other worker
        is still in it (the caller then closes it)."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET claimed_by = NULL, claim_until = NULL "
                "WHERE claimed_by = ? AND status = 'pending'",
                (self.worker,),
            )
        if not self.shared:
            return True
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?, ?)", (_JOIN_LOCK, lock_key(catalog)))
            db.execute("SELECT pg_advisory_unlock_shared(?, ?)", (_MEMBER_LOCK, run_id))
            return self._alone_in(db, run_id)

    @staticmethod
    def _alone_in(db: Database, run_id: int) -> bool:
        """Whether no worker (this one aside) is in the run: its exclusive lock is free."""
        return not run_in_use(db, run_id)

    # --- claims --------------------------------------------------------------------------------

    def claim_jobs(self, run_id: int, after_id: int, limit: int) -> list[Job]:
        """Up to `limit` jobs of the run, in id order after `after_id`, that still need a request
        or a look-up and that no live worker holds; they are this worker's until it lets go."""
        now = self.now()
        with self._write() as db:
            rows = db.execute(
                f"UPDATE jobs SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM jobs "
                f"WHERE planned_run = ? AND id > ? AND {_TO_DO} "
                "AND (claimed_by IS NULL OR claimed_by = ? OR claim_until < ?) "
                f"ORDER BY id LIMIT ?{self._skip_locked()}) RETURNING {_JOB_COLUMNS}",
                (self.worker, now + self.claim_seconds, run_id, after_id, self.worker, now, limit),
            ).fetchall()
        return sorted((Job(*row) for row in rows), key=lambda job: job.id)

    def claim_uncertain(self, run_id: int) -> list[UncertainJob]:
        """The run's jobs whose last request may have been accepted and that this worker holds
        or may take (their worker's claim ran out), with that request's start."""
        now = self.now()
        with self._write() as db:
            ids = [
                job_id
                for (job_id,) in db.execute(
                    "UPDATE jobs SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM "
                    f"jobs WHERE planned_run = ? AND status <> 'pending' AND {_TO_DO} "
                    "AND (claimed_by IS NULL OR claimed_by = ? OR claim_until < ?)"
                    f"{self._skip_locked()}) RETURNING id",
                    (self.worker, now + self.claim_seconds, run_id, self.worker, now),
                )
            ]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            "SELECT j.id, j.tag, j.row_key, j.status, j.absent_at, "
            "(SELECT max(started_at) FROM attempts a WHERE a.job_id = j.id) "
            f"FROM jobs j WHERE j.id IN ({marks}) ORDER BY j.id",
            ids,
        )
        return [UncertainJob(*row) for row in rows]

    def held_elsewhere(self, run_id: int) -> int:
        """Jobs of the run still to do that another live worker holds (this one waits for them:
        if that worker dies, its claims run out and this one takes them)."""
        (count,) = self._db.execute(
            f"SELECT count(*) FROM jobs WHERE planned_run = ? AND {_TO_DO} "
            "AND claimed_by IS NOT NULL AND claimed_by <> ?",
            (run_id, self.worker),
        ).fetchone()
        return int(count)

    def renew_claims(self) -> None:
        """The heartbeat: this worker is alive, its claims run on."""
        until = self.now() + self.claim_seconds
        with self._write() as db:
            db.execute(
                f"UPDATE jobs SET claim_until = ? WHERE claimed_by = ? AND status IN {_CLAIMABLE}",
                (until, self.worker),
            )

    # --- the key's window ----------------------------------------------------------------------

    def take_send(self, rule: SendRule) -> tuple[int | None, float]:
        """(send id, 0) when a POST may leave now; (None, seconds to wait) when not yet."""
        with self.transaction() as db:
            if self.dialect == "postgresql":
                db.execute(
                    "SELECT pg_advisory_xact_lock(?, ?)", (_SEND_LOCK, lock_key(rule.key_id))
                )
            now = self.now()
            db.execute(
                "INSERT INTO key_windows (key_id) VALUES (?) ON CONFLICT (key_id) DO NOTHING",
                (rule.key_id,),
            )
            next_at, hold_until, others, others_at = db.execute(
                "SELECT next_at, hold_until, others, others_at FROM key_windows WHERE key_id = ?",
                (rule.key_id,),
            ).fetchone()
            stale = math.floor((now - others_at) / rule.window) if others_at else 0
            effective = max(1, rule.count - max(0, others - stale))
            counted = db.execute(
                "SELECT answered_at FROM sends WHERE key_id = ? AND refused = 0 AND ("
                "(answered_at IS NULL AND sent_at > ?) OR answered_at > ?)",
                (rule.key_id, now - rule.stale_after, now - rule.window),
            ).fetchall()
            in_flight = sum(1 for (answered,) in counted if answered is None)
            expiries = sorted(answered + rule.window for (answered,) in counted if answered)
            free = effective - in_flight
            if free <= 0:
                return None, min(1.0, rule.window / effective)  # only an answer frees a place
            interval = rule.window / effective
            # The spacing is this rule's: a run at 1/h before left next_at an hour out.
            (last_sent,) = db.execute(
                "SELECT max(sent_at) FROM sends WHERE key_id = ?", (rule.key_id,)
            ).fetchone()
            spaced = 0.0 if last_sent is None else min(next_at, last_sent + interval)
            allowed = max(hold_until, spaced)
            must_expire = len(expiries) - (free - 1)
            if must_expire > 0:
                allowed = max(allowed, expiries[must_expire - 1])
            if allowed > now:
                return None, allowed - now
            base = next_at if now - next_at < interval else now  # keep the schedule, not the lag
            db.execute(
                "UPDATE key_windows SET next_at = ? WHERE key_id = ?",
                (base + interval, rule.key_id),
            )
            db.execute(
                "DELETE FROM sends WHERE key_id = ? AND sent_at < ?", (rule.key_id, now - 3600)
            )
            (send_id,) = db.execute(
                "INSERT INTO sends (key_id, sent_at) VALUES (?, ?) RETURNING id",
                (rule.key_id, now),
            ).fetchone()
        return int(send_id), 0.0

    def give_back_send(self, send_id: int) -> None:
        """A place taken and not used (the job was another worker's by then): it frees at
        once, as a 429 does, but says nothing of the server, so no worker is held."""
        with self.transaction() as db:
            db.execute(
                "UPDATE sends SET answered_at = ?, refused = 1 WHERE id = ?", (self.now(), send_id)
            )

    def answer_send(
        self,
        rule: SendRule,
        send_id: int,
        *,
        refused: bool,
        retry_after: float | None,
        remaining: int | None,
    ) -> None:
        """Records the answer: the slot counts for a window from now (a 429 frees it), server
        hints hold every worker, and `X-RateLimit-Remaining` shows what other clients take."""
        with self.transaction() as db:
            if self.dialect == "postgresql":
                db.execute(
                    "SELECT pg_advisory_xact_lock(?, ?)", (_SEND_LOCK, lock_key(rule.key_id))
                )
            now = self.now()
            (sent_at,) = db.execute("SELECT sent_at FROM sends WHERE id = ?", (send_id,)).fetchone()
            db.execute(
                "UPDATE sends SET answered_at = ?, refused = ? WHERE id = ?",
                (now, int(refused), send_id),
            )
            pause = rule.window if refused and retry_after is None else retry_after
            if pause is not None:
                pause = min(rule.window, pause)  # a hint is obeyed for a window at most
                db.execute(
                    "UPDATE key_windows SET hold_until = ? WHERE key_id = ? AND hold_until < ?",
                    (now + max(0.0, pause), rule.key_id, now + max(0.0, pause)),
                )
            if remaining is None and not refused:
                return
            # Ours in the server's count: this one, and the fleet's sends answered before it left.
            (ours,) = db.execute(
                "SELECT count(*) FROM sends WHERE key_id = ? AND refused = 0 AND id <> ? "
                "AND answered_at <= ? AND sent_at > ?",
                (rule.key_id, send_id, sent_at, now - rule.window),
            ).fetchone()
            others = max(0, rule.count - max(0, remaining or 0) - int(ours) - (not refused))
            db.execute(
                "UPDATE key_windows SET others = ?, others_at = ? WHERE key_id = ? "
                "AND (others <= ? OR others_at < ?)",
                (others, now, rule.key_id, others, now - rule.window),
            )


def key_id(base_url: str, api_key: str) -> str:
    """The key's name in a shared state: a hash, never the key."""
    digest = hashlib.sha256(f"jogg-batch send window\n{base_url}\n{api_key}".encode())
    return digest.hexdigest()[:24]


def run_in_use(db: Database, run_id: int) -> bool:
    """Whether a worker (this one aside) is in the run of a shared state: it holds the run's
    member lock, so the exclusive lock is not free."""
    (free,) = db.execute("SELECT pg_try_advisory_lock(?, ?)", (_MEMBER_LOCK, run_id)).fetchone()
    if free:
        db.execute("SELECT pg_advisory_unlock(?, ?)", (_MEMBER_LOCK, run_id))
    return not free
