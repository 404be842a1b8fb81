"""The state database: what survives a crash, and the bookkeeping around it."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from batch import payload
from batch.errors import StateError
from batch.store import (
    SCHEMA_VERSION,
    AskedRow,
    AttemptRecord,
    JobUpdate,
    NewJob,
    RowPlan,
    StateStore,
    VideoUpdate,
)
from batch.store.backend import StateLocation
from batch.store.ledgers import ledger_path


def planned_job(state: StateStore, fingerprint: str = "f" * 64) -> tuple[int, int]:
    run = state.begin_run("c.csv", dry_run=False)
    state.record_plan(
        run, [NewJob(fingerprint, "key", "[]", "tag")], [], [RowPlan(1, fingerprint, "job", None)]
    )
    return run, state.next_jobs(run, 0, 10)[0].id


def test_sending_is_committed_before_the_request_leaves(
    state: StateStore, state_at: StateLocation
) -> None:
    """A process killed mid-request leaves `sending` for another connection to read."""
    run, job = planned_job(state)
    state.begin_attempt(job, run)
    with StateStore.reader(state_at) as other:
        assert other._db.execute("SELECT status, attempts FROM jobs").fetchone() == ("sending", 1)
        assert other._db.execute("SELECT outcome FROM attempts").fetchone() == ("sending",)


def test_wal_mode_and_the_send_record_is_synced(tmp_path: Path) -> None:
    """The journal is WAL; the commit before a request is a synced (FULL) one."""
    state = StateStore(tmp_path / "s.db")
    assert state._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert state._db.execute("PRAGMA synchronous").fetchone() == (1,)
    modes = []
    real_transaction = state.transaction

    def spy(*, durable: bool = False):  # type: ignore[no-untyped-def]
        modes.append(durable)
        return real_transaction(durable=durable)

    state.transaction = spy  # type: ignore[method-assign]
    run, job = planned_job(state)
    state.begin_attempt(job, run)
    assert modes[-1] is True
    with real_transaction(durable=True) as db:
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)
    assert state._db.execute("PRAGMA synchronous").fetchone() == (1,)
    state.close()


def test_a_runs_credits_count_each_tags_renders_once(state: StateStore) -> None:
    """Tag by tag, the more of what the answers gave and what the listing shows since the run
    began: a second listed render is a credit (a double charge); an answer naming a video the
    listing does not show beside the one it shows is not one more (a server naming a video it
    never made, or a lagging listing); a video not listed yet counts by its answer."""
    run = state.begin_run("c.csv", dry_run=False)
    jobs = [NewJob(letter * 64, letter, "[]", letter * 12) for letter in "abcd"]
    ids = state.record_plan(run, jobs, [], [])
    for letter, video in zip("abcd", ["forged", "z1", "v1", None], strict=True):
        attempt = state.begin_attempt(ids[letter * 64], run)
        assert attempt is not None
        outcome = AttemptRecord("ok", 0, video_id=video) if video else AttemptRecord("error", 1)
        state.finish_attempt(attempt, ids[letter * 64], outcome, "submitted", run_id=run)
    state.record_listing(
        [
            ("real", "a" * 12, "t", 50.0),  # what a forged answer's row really rendered
            ("z1", "b" * 12, "t", 50.0),
            ("z2", "b" * 12, "t", 60.0),  # rendered twice
            ("old", "b" * 12, "t", 5.0),  # before this run
        ]
    )
    assert state.run_credits(run, since=10.0) == 1 + 2 + 1 + 0


def test_discarded_writes_leave_no_trace(state: StateStore) -> None:
    """plan and --dry-run write inside a savepoint that is rolled back."""
    with state.discarded():
        planned_job(state)
    assert state._db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert state._db.execute("SELECT count(*) FROM runs").fetchone() == (0,)


def test_video_status_keeps_first_completion_and_events_dedupe(state: StateStore) -> None:
    """Status updates apply once; a repeated webhook event is refused."""
    run, job = planned_job(state)
    attempt = state.begin_attempt(job, run)
    assert attempt is not None
    state.finish_attempt(
        attempt, job, AttemptRecord("ok", 0, video_id="v1"), "submitted", run_id=run
    )
    assert [p.video_id for p in state.pending_videos()] == ["v1"]
    done = VideoUpdate("v1", "completed", "http://u", "http://c", 36.0, 1.0, None, seen_at=100.0)
    assert state.record_video_status(done) is True
    assert state.record_video_status(dataclasses.replace(done, seen_at=200.0)) is False
    assert state.pending_videos() == []
    assert state.video_states(["v1"])["v1"]["completed_at"] == "1970-01-01T00:01:40Z"
    assert state.claim_event("e1") is True
    assert state.claim_event("e1") is False


def test_unknown_from_a_results_file_is_entered_once(state: StateStore) -> None:
    """retry enters `unknown` rows so they are reconciled before any resend."""
    state.enter_unknown(NewJob("a" * 64, "k", "[]", "aaaaaaaaaaaa"))
    state.enter_unknown(NewJob("a" * 64, "k", "[]", "aaaaaaaaaaaa"))
    assert state._db.execute("SELECT status FROM jobs").fetchall() == [("unknown",)]
    assert state._db.execute("SELECT started_at FROM attempts").fetchall() == [(0.0,)]


def test_a_results_file_gives_the_request_defaults_of_its_newest_run(state: StateStore) -> None:
    """`retry` finds the defaults the newest run writing that results file used (a dry run's
    planned rows too), else None; pruning those runs keeps them. A run that planned no row
    (it stopped before: a refused key) wrote no file."""

    def planned(run_id: int) -> None:
        state.record_plan(run_id, [], [], [RowPlan(1, None, "invalid", "length: 99")])

    planned(
        state.begin_run(
            "c.csv", dry_run=False, results="/r.csv", request_defaults='{"length":"15"}'
        )
    )
    state.as_worker(60.0)
    planned(state.join_run("c.csv", results="/r.csv", request_defaults='{"length":"60"}'))
    state.begin_run("c.csv", dry_run=False, results="/r.csv", request_defaults='{"length":"45"}')
    assert state.run_defaults("/r.csv") == '{"length":"60"}'
    state.begin_run("c.csv", dry_run=True, results="/r.csv", request_defaults='{"length":"30"}')
    planned(
        state.begin_run(
            "d.csv", dry_run=False, results="/d.csv", request_defaults='{"length":"15"}'
        )
    )
    assert state.run_defaults("/r.csv") == '{"length":"30"}'
    assert state.run_defaults("/elsewhere/r.csv") is None
    assert state.prune(keep_runs=1) == 4  # the runs that wrote /r.csv are gone: not their defaults
    assert state.run_defaults("/r.csv") == '{"length":"30"}'
    assert state.run_defaults("/d.csv") == '{"length":"15"}'


def test_pruning_keeps_the_defaults_of_the_run_that_wrote_the_rows(state: StateStore) -> None:
    """A run that stopped before planning (a refused key, the API down) wrote no row of its
    results file: once both are pruned, the file's defaults are still those of the run that
    wrote its rows, never the stopped run's (retry would rebuild other videos from them)."""
    wrote = state.begin_run(
        "c.csv", dry_run=False, results="/r.csv", request_defaults='{"length":"15"}'
    )
    state.record_plan(wrote, [], [], [RowPlan(1, None, "invalid", "length: 99")])
    state.begin_run("c.csv", dry_run=False, results="/r.csv", request_defaults='{"length":"60"}')
    state.begin_run("d.csv", dry_run=False, results="/d.csv", request_defaults="{}")
    assert state.run_defaults("/r.csv") == '{"length":"15"}'
    assert state.prune(keep_runs=1) == 2
    assert state.run_defaults("/r.csv") == '{"length":"15"}'


def test_newer_schema_is_refused(state_at: StateLocation) -> None:
    """A state written by a newer jogg-batch is not misread."""
    with StateStore(state_at) as state:
        state.set_meta("schema_version", "99")
    with pytest.raises(StateError, match="state schema 99"):
        StateStore(state_at)


def test_a_big_slice_is_planned_whole_and_planning_it_again_changes_nothing(
    state: StateStore,
) -> None:
    """25,000 new jobs in one slice (past every batching bound): each row points at its own job,
    found again by fingerprint; the same slice recorded again adds no job."""
    fingerprints = [f"{i:064x}" for i in range(25_000)]
    jobs = [NewJob(fp, f"k{i}", "[]", f"t{i}") for i, fp in enumerate(fingerprints)]
    rows = [RowPlan(i + 1, fp, "job", None) for i, fp in enumerate(fingerprints)]
    run = state.begin_run("c.csv", dry_run=False)
    ids = state.record_plan(run, jobs, [], rows)
    found = state.jobs_by_fingerprint(fingerprints)
    assert {fp: job.id for fp, job in found.items()} == ids
    assert len(set(ids.values())) == 25_000
    mapped = dict(state._db.execute("SELECT row, job_id FROM run_rows WHERE run_id = ?", (run,)))
    assert mapped == {i + 1: ids[fp] for i, fp in enumerate(fingerprints)}
    state.record_plan(run, jobs, [], rows)
    assert state._db.execute("SELECT count(*) FROM jobs").fetchone() == (25_000,)
    newest = state.newest_jobs_of_keys(["k3", "k24999", "nope"])
    assert newest == {"k3": ids[fingerprints[3]], "k24999": ids[fingerprints[24999]]}


def _runs_seen_by_another_process(path: Path) -> int:
    script = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
        "print(db.execute('SELECT count(*) FROM runs').fetchone()[0]); db.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_opening_the_state_again_in_the_process_keeps_the_first_connections_locks(
    tmp_path: Path,
) -> None:
    """A second store in the same process (the planner's thread opens one) must not drop the
    locks of the connection already open: another process (`status`, a refused run) would then
    take itself for the last one, delete the WAL, and the run's later commits would be lost."""
    path = tmp_path / "state.db"
    with StateStore(path) as run:
        run.join_run("catalog.csv")
        StateStore(path).close()
        assert _runs_seen_by_another_process(path) == 1
        run.join_run("catalog-again.csv")  # committed after the other process closed
        assert _runs_seen_by_another_process(path) == 2


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'", "reads 'abc', not a number"),
        ("DELETE FROM meta WHERE key = 'schema_version'", "records schema 1, but its tables"),
        ("UPDATE meta SET value = '-1' WHERE key = 'schema_version'", "version reads -1"),
    ],
)
def test_a_state_whose_schema_version_was_damaged_is_refused_with_what_to_do(
    tmp_path: Path, edit: str, says: str
) -> None:
    """A schema version edited by hand or lost is a StateError (exit 2) that says so and how to
    go on, never a traceback or a baffling 'duplicate column'."""
    path = tmp_path / "state.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute(edit)
    db.commit()
    db.close()
    with pytest.raises(StateError, match=says) as raised:
        StateStore(path)
    assert "restore a backup, or start a new state" in str(raised.value)


def open_together(path: Path, openers: int) -> list[StateError]:
    """Opens the state at `path` from `openers` threads at once; the errors they met."""
    start, errors = threading.Barrier(openers), []

    def open_it() -> None:
        start.wait()
        try:
            StateStore(path).close()
        except StateError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_processes_opening_a_new_state_together_take_turns(tmp_path: Path) -> None:
    """Six openers of one new state at once (cron lines started together, before any takes the
    run lock): each finds it at the current schema. One could apply a step another had just
    applied, and call a sound state damaged ("restore a backup, or start a new state")."""
    for attempt in range(8):
        path = tmp_path / f"{attempt}.db"
        assert open_together(path, 6) == []
        with sqlite3.connect(path) as db:
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)


def test_a_request_a_later_run_of_its_catalog_asked_otherwise_for_is_superseded(
    state: StateStore,
) -> None:
    """`asked_otherwise_later`: a job whose row key a later run of the same catalog and defaults
    has with another request, and not it, was superseded. One that run still carried (another
    video of the product), or whose key only another catalog's later run, or a later run of the
    same catalog with other defaults (its 16:9 videos beside the 9:16 ones), had, was not."""
    a, b, c, d, e, f = (letter * 64 for letter in "abcdef")
    first = state.begin_run("c.csv", dry_run=False)
    ids = state.record_plan(
        first,
        [NewJob(a, "P", "[]", "ta"), NewJob(b, "P", "[]", "tb"), NewJob(c, "Q", "[]", "tc")],
        [],
        [RowPlan(1, a, "job", None), RowPlan(2, b, "job", None), RowPlan(3, c, "job", None)],
    )
    later = state.begin_run("c.csv", dry_run=False)  # row 1 corrected; row 2 carried as it was
    rows = [RowPlan(1, d, "job", None), RowPlan(2, ids[b], "job", None)]
    state.record_plan(later, [NewJob(d, "P", "[]", "td")], [], rows)
    other = state.begin_run("other.csv", dry_run=False)
    state.record_plan(other, [NewJob(e, "Q", "[]", "te")], [], [RowPlan(1, e, "job", None)])
    wide = state.begin_run("c.csv", dry_run=False, request_defaults='{"aspect_ratio": "16:9"}')
    state.record_plan(wide, [NewJob(f, "Q", "[]", "tf")], [], [RowPlan(3, f, "job", None)])
    asked = [AskedRow(key, ids[fp], None) for key, fp in (("P", a), ("P", b), ("Q", c))]
    assert state.asked_otherwise_later(asked) == {0}


def test_a_catalog_under_another_name_or_put_back_still_supersedes(state: StateStore) -> None:
    """A later run of the catalog under another name (a dated export) that carried most of its
    jobs is a run of it; a row put back as it was before (its older job carried again) leaves
    the request of the night between out; a retry's run, with only its rows, decides nothing;
    a run of a copy with far fewer of the jobs is another catalog."""

    def night(catalog: str, jobs: list[int], **run: str) -> int:
        run_id = state.begin_run(catalog, dry_run=False, **run)
        state.record_plan(
            run_id, [], [], [RowPlan(n, job, "job", None) for n, job in enumerate(jobs, 1)]
        )
        return run_id

    made = [
        NewJob(letter * 64, key, "[]", letter)
        for letter, key in zip("abcdef", "PQRSTP", strict=True)
    ]
    night0 = state.begin_run("c-0.csv", dry_run=False)
    ids = state.record_plan(night0, made, [], [])
    a, b, c, d, e, f = (ids[job.fingerprint] for job in made)
    night("c-1.csv", [f, b, c, d, e])  # row 1 changed: its request is job f, which failed
    retry = night("/tmp/retry.csv", [f], retried_catalog="c-1.csv")
    state.record_plan(retry, [], [JobUpdate("pending", f, "pending")], [])
    asked = [AskedRow("P", f, None)]
    assert state.asked_otherwise_later(asked) == set()  # no later run of the catalog
    night("top.csv", [a, b])  # two of the five jobs: another catalog
    assert state.asked_otherwise_later(asked) == set()
    night("c-2.csv", [a, b, c, d, e])  # row 1 put back: job a carried again
    assert state.asked_otherwise_later(asked) == {0}
    assert state.asked_otherwise_later([AskedRow("P", a, None)]) == set()


def test_jobs_recorded_from_text_written_otherwise_are_found_by_what_it_is_now(
    state: StateStore,
) -> None:
    """`alias_jobs_as_asked`, once per state: a job recorded from NFD text is found under the
    fingerprint of its text made alike, and still under its own; a job of plain text gets no
    alias; a job recorded later is not looked at."""
    base = payload.fields_from_json(
        '["P",null,"15","9:16",false,"x",127,null,null,null,"Storytime","english",null,null,null]'
    )
    nfd = base._replace(name="Cafe\u0301")
    made = [nfd, base._replace(name="plain")]
    fingerprints = [payload.fingerprint(fields) for fields in made]
    run = state.begin_run("c.csv", dry_run=False)
    jobs = [
        NewJob(fp, "P", payload.fields_to_json(f), fp[:12])
        for fp, f in zip(fingerprints, made, strict=True)
    ]
    ids = state.record_plan(run, jobs, [], [RowPlan(1, fingerprints[0], "job", None)])
    alike = payload.fingerprint(payload.fields_made_alike(nfd))
    assert state.jobs_by_fingerprint([alike]) == {}
    assert state.alias_jobs_as_asked() == 1
    found = state.jobs_by_fingerprint([alike, *fingerprints])
    assert {fp: job.id for fp, job in found.items()} == {
        alike: ids[fingerprints[0]],
        **ids,
    }
    later = base._replace(name="Cre\u0300me")
    fp = payload.fingerprint(later)
    state.record_plan(run, [NewJob(fp, "P", payload.fields_to_json(later), fp[:12])], [], [])
    assert state.alias_jobs_as_asked() == 0


def test_a_job_recorded_from_a_corrected_spelling_is_found_by_what_it_asked_for(
    state: StateStore,
) -> None:
    """An earlier version hashed a spelling the account's look-ups corrected as written, and
    kept (and sent) the corrected fields: once aliased, a row spelled as listed finds that
    job, and the spelling as written still does; fields in a layout never written are left."""
    asked = payload.fields_from_json(
        '["P",null,"15","9:16",false,"x",127,null,"en-US-JennyNeural",null,"Storytime",'
        '"english","Elegant Presentation",null,null]'
    )
    written = asked._replace(voice_id="en-us-jennyneural", visual_style="elegant presentation")
    fp = payload.fingerprint(written)
    run = state.begin_run("c.csv", dry_run=False)
    jobs = [
        NewJob(fp, "P", payload.fields_to_json(asked), fp[:12]),
        NewJob("e" * 64, "Q", "[]", "e" * 12),
    ]
    ids = state.record_plan(run, jobs, [], [RowPlan(1, fp, "job", None)])
    assert state.jobs_by_fingerprint([payload.fingerprint(asked)]) == {}
    assert state.alias_jobs_as_asked() == 1
    found = state.jobs_by_fingerprint([payload.fingerprint(asked), fp])
    assert {job.id for job in found.values()} == {ids[fp]}
    assert len(found) == 2


def test_a_job_whose_recorded_url_this_version_refuses_is_left_unaliased(
    state: StateStore,
) -> None:
    """An earlier version took a product page with a port past 65535 (it never looked at the
    port): the one-time scan keeps that URL as recorded, never failing the planning, and
    aliases the other jobs."""
    base = payload.fields_from_json(
        '["P",null,"15","9:16",false,"x",127,null,"v",null,"Storytime","english",null,null,null]'
    )
    product = payload.ProductDetails("https://shop.example:99999/p", None, None, None, ())
    odd = base._replace(product_id=None, product=product)
    cased = base._replace(product_id=None, product=product._replace(url="https://SHOP.example/q"))
    run = state.begin_run("c.csv", dry_run=False)
    jobs = [
        NewJob(payload.fingerprint(fields), key, payload.fields_to_json(fields), key * 12)
        for key, fields in (("a", odd), ("b", cased))
    ]
    state.record_plan(run, jobs, [], [])
    assert state.alias_jobs_as_asked() == 1  # the cased one, under its one spelling


def test_a_later_run_that_only_adds_a_default_webhook_asks_for_the_same_videos(
    state: StateStore,
) -> None:
    """A webhook default says where to report, not what to render: a later run of the catalog
    that added one, and corrected the row, supersedes the request as a run without it does.
    Another length default is another set of videos."""
    plain = '{"defaults":{"length":"15","webhook_url":null},"columns":{}}'
    hooked = '{"defaults":{"length":"15","webhook_url":"https://h.example/x"},"columns":{}}'
    longer = '{"defaults":{"length":"30","webhook_url":null},"columns":{}}'
    a, b = "a" * 64, "b" * 64
    first = state.begin_run("c.csv", dry_run=False, request_defaults=plain)
    ids = state.record_plan(first, [NewJob(a, "P", "[]", "ta")], [], [RowPlan(1, a, "job", None)])
    asked = [AskedRow("P", ids[a], None)]
    other = state.begin_run("c.csv", dry_run=False, request_defaults=longer)
    corrected = state.record_plan(
        other, [NewJob(b, "P", "[]", "tb")], [], [RowPlan(1, b, "job", None)]
    )[b]
    assert state.asked_otherwise_later(asked) == set()
    later = state.begin_run("c.csv", dry_run=False, request_defaults=hooked)
    state.record_plan(later, [], [], [RowPlan(1, corrected, "job", None)])
    assert state.asked_otherwise_later(asked) == {0}


def test_a_current_ledger_opens_while_another_process_holds_its_write_lock(
    tmp_path: Path,
) -> None:
    """Opening took the write lock for a migration step even when the schema was current:
    behind a long `state vacuum`, a run, `status` or `state info` waited 30 s and failed with
    "database is locked" (exit 2, as for a config error). A current ledger is only read to
    open: the command goes on to say it is in use, or to read."""
    path = tmp_path / "s.db"
    StateStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        opened = threading.Thread(target=lambda: StateStore(path).close())
        opened.start()
        opened.join(timeout=10)
        assert not opened.is_alive()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        opened.join()


def test_a_damaged_ledger_says_what_to_do(tmp_path: Path) -> None:
    """A ledger whose pages a disk error overwrote: the message said only "malformed"; it says
    to put it back from a backup or move it aside (a new ledger finds what was sent)."""
    path = tmp_path / "s.db"
    with StateStore(path) as state:
        state.begin_run("c.csv", dry_run=False)
    with path.open("r+b") as ledger:
        ledger.seek(4096 * 2)
        ledger.write(b"\xff" * 8000)
    with pytest.raises(StateError, match="malformed; put it back from a backup, or move it aside"):
        StateStore(path).__enter__()


def test_a_data_directory_that_cannot_hold_the_salt_says_what_to_do(tmp_path: Path) -> None:
    """The salt beside the ledgers cannot be written (a read-only data directory; here a file
    where its folder goes): the message says where a writable one is given."""
    (tmp_path / "ledgers").write_text("")
    with pytest.raises(StateError, match="point XDG_DATA_HOME at one that is"):
        ledger_path("https://api.jogg.ai", "sk-k", root=tmp_path)
