"""Workers sharing one state: claims, the key's window kept for the whole fleet, runs joined per
catalog, and three workers on one PostgreSQL ledger SIGKILLed at random moments."""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from batch.cli import main
from batch.config import Overrides
from batch.errors import StateError
from batch.joggai.fleet import FleetLimiter
from batch.joggai.quota import RateLimit
from batch.store import AttemptRecord, JobUpdate, NewJob, RowPlan, SendRule, StateStore
from batch.store.backend import DatabaseURL, StateLocation
from batch.store.results import read_results
from tests.helpers import product_ids, simple_rows, submissions, write_catalog
from tests.postgres import PostgresServer
from tests.test_crash import TAG, start_sandbox


def planned_jobs(state: StateStore, count: int) -> int:
    run = state.join_run("c.csv")
    fingerprints = [f"{i:064x}" for i in range(count)]
    state.record_plan(
        run,
        [NewJob(fp, f"k{i}", "[]", f"tag{i}") for i, fp in enumerate(fingerprints)],
        [],
        [RowPlan(i + 1, fp, "job", None) for i, fp in enumerate(fingerprints)],
    )
    return run


def test_a_claimed_job_is_no_other_workers_until_its_claim_runs_out(
    state_at: StateLocation,
) -> None:
    """Two workers split the jobs; one's claims pass to the other only once they expire, and
    only the holder can begin a request."""
    with StateStore(state_at) as first, StateStore(state_at) as second:
        first.as_worker(claim_seconds=60)
        second.as_worker(claim_seconds=60)
        run = planned_jobs(first, 6)
        mine = first.claim_jobs(run, 0, 4)
        theirs = second.claim_jobs(run, 0, 10)
        assert [job.id for job in mine] == [1, 2, 3, 4]
        assert [job.id for job in theirs] == [5, 6]
        assert second.begin_attempt(mine[0].id, run) is None  # not its claim: nothing sent
        assert second.held_elsewhere(run) == 4
        attempt = first.begin_attempt(mine[0].id, run)
        assert attempt is not None
        assert first.begin_attempt(mine[0].id, run) is None  # a request may be in flight
        first._db.execute("UPDATE jobs SET claim_until = 0")  # the first worker went silent
        taken = second.claim_jobs(run, 0, 10)
        assert [(job.id, job.status) for job in taken][:2] == [(1, "sending"), (2, "pending")]
        assert second.begin_attempt(1, run) is None  # taken over, but never resent blindly
        uncertain = second.claim_uncertain(run)
        assert [(job.id, job.status) for job in uncertain] == [(1, "sending")]


def test_a_worker_that_stalled_past_its_claim_cannot_undo_the_worker_that_took_over(
    state_at: StateLocation,
) -> None:
    """A worker back from a long pause finds its job taken: its late verdicts change nothing, so
    the job the other worker is sending never looks `pending` again."""
    with StateStore(state_at) as stalled, StateStore(state_at) as other:
        stalled.as_worker(claim_seconds=60)
        other.as_worker(claim_seconds=60)
        run = planned_jobs(stalled, 1)
        [job] = stalled.claim_jobs(run, 0, 1)
        assert stalled.begin_attempt(job.id, run) is not None
        stalled._db.execute("UPDATE jobs SET claim_until = 0")  # the pause outlasts the claim
        assert [j.id for j in other.claim_uncertain(run)] == [job.id]
        assert other.settle(job.id, "pending", AttemptRecord("absent"), run_id=run) is True
        assert other.begin_attempt(job.id, run) is not None  # the other worker sends it again
        assert stalled.settle(job.id, "pending", AttemptRecord("absent"), run_id=run) is False
        assert stalled.begin_attempt(job.id, run) is None
        assert other.job(job.id).status == "sending"


def test_a_job_done_with_holds_no_claim(state_at: StateLocation) -> None:
    """Submitted, failed, given-up and not-attempted jobs let go of their claims, so the claims
    a run starts with, renews and clears are only the live ones (not every job ever sent)."""
    with StateStore(state_at) as state:
        state.as_worker(claim_seconds=60)
        run = planned_jobs(state, 4)
        jobs = state.claim_jobs(run, 0, 4)
        for job, status in zip(jobs[:3], ("submitted", "failed", "unknown"), strict=True):
            attempt = state.begin_attempt(job.id, run)
            assert attempt is not None
            record = (
                AttemptRecord("ok", 0, video_id=f"v{job.id}")
                if status == "submitted"
                else (AttemptRecord("permanent", 40000))
            )
            state.finish_attempt(attempt, job.id, record, status, run_id=run)
        state.mark_not_attempted(run)
        held = state._db.execute("SELECT count(*) FROM jobs WHERE claimed_by IS NOT NULL")
        assert held.fetchone() == (0,)


def test_leaving_gives_back_unsent_claims(state_at: StateLocation) -> None:
    """A worker that stops hands its pending jobs to the others at once."""
    with StateStore(state_at) as first, StateStore(state_at) as second:
        first.as_worker(claim_seconds=60)
        second.as_worker(claim_seconds=60)
        run = planned_jobs(first, 3)
        assert len(first.claim_jobs(run, 0, 3)) == 3
        assert second.claim_jobs(run, 0, 3) == []
        first.leave_run(run, "c.csv")
        assert [job.id for job in second.claim_jobs(run, 0, 3)] == [1, 2, 3]


def test_a_job_given_up_in_a_run_is_looked_up_again_only_in_the_next(
    state_at: StateLocation,
) -> None:
    """A lost answer given up as `unknown` is no worker's to review again in that run (as one
    process would not); the next run reviews it."""
    with StateStore(state_at) as state:
        state.as_worker(claim_seconds=60)
        run = planned_jobs(state, 1)
        [job] = state.claim_jobs(run, 0, 1)
        attempt = state.begin_attempt(job.id, run)
        assert attempt is not None
        state.finish_attempt(attempt, job.id, AttemptRecord("unknown"), "reconciling", run_id=run)
        assert [j.id for j in state.claim_uncertain(run)] == [job.id]
        state.settle(job.id, "unknown", AttemptRecord("unknown", message="gave up"), run_id=run)
        assert state.claim_uncertain(run) == []
        assert state.held_elsewhere(run) == 0
        state.leave_run(run, "c.csv")
        following = state.begin_run("c.csv", dry_run=False)
        state.record_plan(
            following, [], [JobUpdate(None, job.id, "unknown")], [RowPlan(1, job.id, "job", None)]
        )
        assert [j.id for j in state.claim_uncertain(following)] == [job.id]


@pytest.mark.parametrize("answer", ["submitted", "reconciling"])
def test_a_job_sent_by_another_run_while_this_one_planned_is_never_made_pending_again(
    state_at: StateLocation, answer: str
) -> None:
    """Two runs of one catalog (renamed copies, or last night's still going): the second reads
    a job as not_attempted, the first sends it (accepted, or its answer lost), then the second
    records its plan. The job keeps the first run's outcome and is not the second run's to send:
    making it pending again paid for it twice."""
    with StateStore(state_at) as first, StateStore(state_at) as second:
        run = planned_jobs(first, 1)
        first.mark_not_attempted(run)
        first.finish_run(run, "stopped")
        tonight, other = (
            first.begin_run("c1.csv", dry_run=False),
            second.begin_run("c2.csv", dry_run=False),
        )
        [known] = second.jobs_by_fingerprint([f"{0:064x}"]).values()
        assert known.status == "not_attempted"
        first.record_plan(tonight, [], [JobUpdate("pending", known.id, known.status)], [])
        [job] = first.claim_jobs(tonight, 0, 1)
        attempt = first.begin_attempt(job.id, tonight)
        assert attempt is not None
        first.finish_attempt(
            attempt, job.id, AttemptRecord("ok", video_id="v1"), answer, run_id=tonight
        )
        second.record_plan(
            other,
            [],
            [JobUpdate("pending", known.id, known.status)],
            [RowPlan(1, known.id, "job", None)],
        )
        assert second.claim_jobs(other, 0, 1) == []
        assert second.begin_attempt(known.id, other) is None
        [after] = second.jobs_by_fingerprint([f"{0:064x}"]).values()
        assert after.status == answer


def test_the_send_window_is_shared_and_counts_until_a_window_after_the_answer(
    state_at: StateLocation,
) -> None:
    """Three places per window across two workers, spaced; a place frees a window after its
    answer, a 429 frees it at once, and Retry-After holds everyone."""
    rule = SendRule("key", count=3, window=0.6, stale_after=30)
    with StateStore(state_at) as first, StateStore(state_at) as second:
        sent, wait = first.take_send(rule)
        assert sent is not None
        assert wait == 0
        again, wait = second.take_send(rule)
        assert again is None
        assert 0.1 < wait <= 0.2
        time.sleep(wait)
        other, _ = second.take_send(rule)
        assert other is not None
        first.answer_send(rule, sent, refused=False, retry_after=None, remaining=None)
        second.answer_send(rule, other, refused=True, retry_after=None, remaining=None)
        held, wait = first.take_send(rule)
        assert held is None
        assert wait > 0.5


@pytest.mark.anyio
async def test_a_place_given_back_unused_frees_at_once_and_holds_no_worker(
    state_at: StateLocation,
) -> None:
    """A worker whose job another took meanwhile gives its place back: nothing was sent, so
    the server said nothing, and no worker is held for a window as after a 429 (the next send
    keeps its spacing, half the window here)."""
    rule = SendRule("key", count=2, window=30, stale_after=60)
    with StateStore(state_at) as state:
        limiter = FleetLimiter(RateLimit(2, 30), state, rule)
        async with limiter.slot() as slot:
            slot.unused()
        sent, wait = state.take_send(rule)
        assert sent is None
        assert wait <= 15
        (hold,) = state._db.execute("SELECT hold_until FROM key_windows").fetchone()
        assert hold <= time.time()


def test_a_slow_rate_of_an_earlier_run_does_not_space_a_faster_one(
    state_at: StateLocation,
) -> None:
    """A run at 1/h left the key's next place an hour out; the next run, at 600/min, waits one
    of its own intervals at most (its window is still counted from the sends themselves)."""
    slow = SendRule("key", count=1, window=3600, stale_after=30)
    fast = SendRule("key", count=600, window=60, stale_after=30)
    with StateStore(state_at) as state:
        sent, _ = state.take_send(slow)
        assert sent is not None
        state.answer_send(slow, sent, refused=False, retry_after=None, remaining=None)
        assert state.take_send(slow)[0] is None
        waited = 0.0
        while (taken := state.take_send(fast))[0] is None:
            assert taken[1] <= 0.1
            waited += taken[1]
            time.sleep(taken[1])
        assert waited <= 0.1


def test_a_shared_key_leaves_room_for_other_clients(state_at: StateLocation) -> None:
    """X-RateLimit-Remaining shows what other clients take: the fleet keeps to the rest."""
    rule = SendRule("key", count=4, window=30, stale_after=60)
    with StateStore(state_at) as state:
        sent, _ = state.take_send(rule)
        assert sent is not None
        state.answer_send(rule, sent, refused=False, retry_after=None, remaining=0)
        # 4 in the server's window, 1 of them ours: 3 are other clients'; the one place left is
        # ours and taken, so nothing more may leave this window.
        blocked, wait = state.take_send(rule)
        assert blocked is None
        assert wait > 25


def test_a_huge_retry_after_holds_the_fleet_for_one_window_at_most(
    state_at: StateLocation,
) -> None:
    """Retry-After: 1e9 on a 429 holds every worker one window, not forever."""
    rule = SendRule("key", count=4, window=30, stale_after=60)
    with StateStore(state_at) as state:
        sent, _ = state.take_send(rule)
        assert sent is not None
        state.answer_send(rule, sent, refused=True, retry_after=1e9, remaining=None)
        held, wait = state.take_send(rule)
        assert held is None
        assert wait <= 30


def test_a_frozen_workers_open_transaction_is_ended_by_the_server(postgres_url: str) -> None:
    """A worker frozen inside a transaction (holding the key's window) would stop every other:
    the server ends a worker's transaction idle for four times its claims (a minute at least)."""
    with StateStore(DatabaseURL(postgres_url)) as state:
        state.as_worker(claim_seconds=30)
        (limit,) = state._db.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert limit == "2min"
        state.as_worker(claim_seconds=1.5)
        (limit,) = state._db.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        assert limit == "1min"


def test_workers_of_one_catalog_join_one_run_and_the_last_closes_it(postgres_url: str) -> None:
    """Runs are per catalog: a second worker joins the first's; the last to leave is told so,
    and a run whose workers all died is not joined."""
    url = DatabaseURL(postgres_url)
    with StateStore(url) as first, StateStore(url) as second:
        first.as_worker(60)
        second.as_worker(60)
        run = first.join_run("nightly.csv")
        assert second.join_run("nightly.csv") == run
        assert second.join_run("other.csv") != run
        assert first.leave_run(run, "nightly.csv") is False
        assert second.leave_run(run, "nightly.csv") is True
    with StateStore(url) as crashed:
        dead_run = crashed.join_run("nightly.csv")
    with StateStore(url) as later:  # the crashed worker's connection, and its lock, are gone
        assert later.join_run("nightly.csv") > dead_run
        (outcome,) = later._db.execute(
            "SELECT outcome FROM runs WHERE id = ?", (dead_run,)
        ).fetchone()
        assert outcome == "abandoned"


def test_workers_of_one_catalog_with_other_defaults_are_runs_of_their_own(
    postgres_url: str,
) -> None:
    """A config rolling out across workers: those asking for portrait videos of the catalog
    are not in the run of those asking for landscape (its rows, and each results file, would
    show the other's videos, and half the paid ones in none)."""
    url = DatabaseURL(postgres_url)
    with StateStore(url) as landscape, StateStore(url) as portrait, StateStore(url) as same:
        for worker in (landscape, portrait, same):
            worker.as_worker(60)
        run = landscape.join_run("nightly.csv", request_defaults='{"aspect_ratio": "landscape"}')
        other = portrait.join_run("nightly.csv", request_defaults='{"aspect_ratio": "portrait"}')
        assert other != run
        assert same.join_run("nightly.csv", request_defaults='{"aspect_ratio": "landscape"}') == run


def test_a_worker_opening_a_current_ledger_takes_no_table_lock(postgres_url: str) -> None:
    """Opening the shared ledger ran the schema's `CREATE ... IF NOT EXISTS` each time, which
    locks each table: behind a sender's open transaction it waited, holding `jobs`, and the
    sender's next statement deadlocked (the sender died). A current schema is only read."""
    url = DatabaseURL(postgres_url)
    StateStore(url).close()  # the schema, made once
    with psycopg.connect(postgres_url) as sender:
        sender.execute("UPDATE attempts SET outcome = outcome WHERE false")  # its transaction
        opened = threading.Thread(target=lambda: StateStore(url).close())
        opened.start()
        opened.join(timeout=10)
        assert not opened.is_alive()  # it waited for the sender's transaction to end
        sender.execute("UPDATE jobs SET status = status WHERE false")
        sender.rollback()


def test_pruning_spares_a_run_workers_are_still_in(postgres_url: str) -> None:
    """Short runs ending beside a long one prune to keep_runs; the long run's rows stay while a
    worker is in it (its results file is still to be written), and go once it has died."""
    url = DatabaseURL(postgres_url)
    with StateStore(url) as long_night, StateStore(url) as short:
        long_night.as_worker(60)
        short.as_worker(60)
        night = planned_jobs(long_night, 3)
        for catalog in ("a.csv", "b.csv"):
            run = short.join_run(catalog)
            assert short.leave_run(run, catalog)
            short.finish_run(run, "done")
        assert short.prune(1) == 1  # a.csv's run; the long night is spared
        assert short.count_rows(night)[0] == {"not_attempted": 3}
    with StateStore(url) as later:  # the long night's worker died with its connection
        assert later.prune(1) == 1
        assert later.count_rows(night)[0] == {}


# --- three workers, one PostgreSQL ledger, SIGKILLs -------------------------------------------

ROWS = 90
RATE = "10/s"  # the sandbox's and the workers' limit: fast enough for a test, same shape


def worker(folder: Path, url: str, state: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "batch", "run", str(folder / "catalog.csv"),
            "--config", str(folder / "client.toml"), "--base-url", url, "--state", state,
            "--results", str(folder / f"results-{name}.csv"), "-q",
        ],
        env={**os.environ, "JOGG_API_KEY": "sk-sandbox"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def most_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (i + 1 - bisect.bisect_right(ordered, t - window) for i, t in enumerate(ordered)),
        default=0,
    )


class StallingProxy:
    """A TCP proxy to the PostgreSQL server that, once `stall` is set, forwards nothing more
    and closes nothing (a hung PgBouncer, a half-dead link): a statement waits for good."""

    def __init__(self, port: int) -> None:
        self.stall = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = port
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target))
                self.sockets += [client, server]
                for one, other in ((client, server), (server, client)):
                    threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.stall.is_set():
                    time.sleep(0.1)
                sink.sendall(data)

    def close(self) -> None:
        self.stall.clear()
        for each in (self.listener, *self.sockets):
            each.close()


@pytest.mark.slow
def test_a_worker_whose_database_stalls_stops_on_a_second_signal(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The ledger's connection stalls for good mid-run (a hung pooler): the run's loop waits in
    a statement and cannot take a signal, and the worker ignored SIGTERM and SIGINT for good (a
    cron slot held until SIGKILL). A second signal the loop does not take stops it at once."""
    url = postgres_server.database()
    proxy = StallingProxy(postgres_server.port)
    through = url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
    assert through != url
    products = product_ids(30)
    lines = ["sku,product_id"] + [f"S{i:03d},{p}" for i, p in enumerate(products)]
    (tmp_path / "catalog.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "client.toml").write_text('[api]\nrate_limit = "60/min"\n')
    sandbox, sandbox_url = start_sandbox(tmp_path / "sandbox.log", "--rate-limit", "600/min")
    process = worker(tmp_path, sandbox_url, through, "a")
    try:
        deadline = time.monotonic() + 60
        while len(submissions(sandbox_url)["submissions"]) < 2:
            assert time.monotonic() < deadline
            assert process.poll() is None
            time.sleep(0.05)
        proxy.stall.set()
        time.sleep(2.0)  # the next send's slot is taken in the ledger: the loop waits there
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        proxy.close()
        sandbox.terminate()
        sandbox.wait(timeout=10)
        assert sandbox.stdout is not None
        sandbox.stdout.close()


@pytest.mark.slow
def test_three_workers_killed_at_random_never_pay_twice_nor_lose_a_row(
    tmp_path: Path, postgres_url: str
) -> None:
    """Three workers on one catalog and one PostgreSQL ledger, twelve SIGKILLs at random moments
    (each worker restarted, as an orchestrator would), resets and stalls from the sandbox: every
    row accepted exactly once, and no window of the key above its limit."""
    products = product_ids(ROWS)
    lines = ["sku,product_id,length"] + [f"S{i:03d},{p},15" for i, p in enumerate(products)]
    (tmp_path / "catalog.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "client.toml").write_text(
        f'[api]\nrate_limit = "{RATE}"\nconcurrency = 2\nread_timeout = 0.5\n'
        "[retry]\nmax_attempts = 20\nbase_delay = 0.05\nmax_delay = 0.2\n"
        "[run]\nresults_interval = 0.5\nshutdown_grace = 1\nsettle_seconds = 1\n"
        "claim_seconds = 1.5\n"
    )
    sandbox, url = start_sandbox(
        tmp_path / "sandbox.log",
        *("--rate-limit", RATE, "--seed", "7"),
        *("--stall-rate", "0.05", "--stall-seconds", "1", "--reset-rate", "0.05"),
    )
    rng = random.Random(16)
    try:
        workers = {name: worker(tmp_path, url, postgres_url, name) for name in "abc"}
        kills = 0
        deadline = time.monotonic() + 240
        while kills < 12 and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.2))
            alive = [name for name, process in workers.items() if process.poll() is None]
            if not alive or len(submissions(url)["submissions"]) >= ROWS:
                break
            victim = rng.choice(alive)
            workers[victim].kill()
            workers[victim].wait()
            kills += 1
            workers[victim] = worker(tmp_path, url, postgres_url, victim)
        for process in workers.values():
            process.wait(timeout=240)
        assert kills >= 3, "the workers finished before enough kills landed"
        # One more pass, as the next night would: it settles anything left and writes the
        # whole catalog's results.
        final = worker(tmp_path, url, postgres_url, "final").wait(timeout=240)
        report = submissions(url)
        assert sandbox.poll() is None
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        assert sandbox.stdout is not None
        sandbox.stdout.close()
    accepted = report["submissions"]
    tags = Counter(match.group(1) for s in accepted if (match := TAG.search(s["name"])))
    assert [tag for tag, n in tags.items() if n > 1] == []  # no job accepted twice
    assert Counter(s["product_id"] for s in accepted) == Counter(products)  # each row once
    assert final == 0
    results = read_results(tmp_path / "results-final.csv")
    assert list(results["sku"]) == [f"S{i:03d}" for i in range(ROWS)]
    assert set(results["status"]) <= {"submitted", "already_submitted"}
    assert set(results["video_id"]) == {s["video_id"] for s in accepted}
    assert report["counts"]["rate_limited"] == 0
    assert most_in_any_window([s["received_at"] for s in accepted], 1.0) <= 10


def test_plan_status_and_retry_use_a_shared_ledger_from_another_machine(
    tmp_path: Path, sandbox_url: str, postgres_url: str
) -> None:
    """After a run on PostgreSQL, a machine with nothing of its own (another data folder, other
    results) plans nothing to send, polls the videos, and a retry sends nothing."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(5))
    base = ["--base-url", sandbox_url, "--rate-limit", "1000/min"]
    env = {"JOGG_API_KEY": "sk-sandbox", "JOGG_STATE_URL": postgres_url}
    cli = CliRunner()
    first = cli.invoke(
        main, ["run", str(catalog), *base, "--results", str(tmp_path / "a.csv")], env=env
    )
    assert first.exit_code == 0, first.output
    env["XDG_DATA_HOME"] = str(tmp_path / "elsewhere")  # no ledger of its own
    planned = cli.invoke(main, ["plan", str(catalog)], env=env)
    assert planned.exit_code == 0, planned.output
    assert "  already submitted         5" in planned.stdout
    polled = cli.invoke(main, ["status", "--base-url", sandbox_url], env=env)
    assert polled.exit_code == 0, polled.output
    retried = cli.invoke(main, ["retry", str(tmp_path / "a.csv"), *base], env=env)
    assert retried.exit_code == 0, retried.output
    assert len(submissions(sandbox_url)["submissions"]) == 5


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://jogg@127.0.0.1:{port}/missing_db?password=hunter2",
        "postgresql:///missing_db?host=127.0.0.1&port={port}&user=jogg&Password=hunter2",
        "postgresql://jogg:hunter2@127.0.0.1:{port}/missing_db?sslpassword=hunter2",
    ],
)
def test_a_database_password_given_as_a_parameter_is_never_shown(
    postgres_server: PostgresServer, url: str
) -> None:
    """libpq takes the password as a query parameter too: printed, in a config's repr and in
    a refused connection's error, it is hidden as the one before the host is."""
    location = DatabaseURL(url.format(port=postgres_server.port))
    assert "hunter2" not in str(location)
    assert "=***" in str(location)
    overrides = Overrides(state=location)
    assert "hunter2" not in repr(overrides)
    with pytest.raises(StateError) as refused:
        StateStore(location)
    assert "hunter2" not in str(refused.value)


def test_a_database_password_is_never_shown(postgres_server: PostgresServer) -> None:
    """The URL prints without its password, and a refused connection's error does not echo it."""
    url = DatabaseURL(f"postgresql://jogg:hunter2@127.0.0.1:{postgres_server.port}/missing_db")
    assert str(url) == f"postgresql://jogg:***@127.0.0.1:{postgres_server.port}/missing_db"
    assert "hunter2" not in repr(url)
    with pytest.raises(StateError) as refused:
        StateStore(url)
    assert "missing_db" in str(refused.value)
    assert "hunter2" not in str(refused.value)
    assert refused.value.__cause__ is None
