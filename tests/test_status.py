"""Status normalisation, the poll schedule, and polling against a fake lookup and memory state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from batch.cli.common import render_renders
from batch.errors import AccountError, ExitCode
from batch.follow import polling, tracking
from batch.follow.polling import (
    NOT_FOUND_AFTER,
    PollSchedule,
    PollSummary,
    normalize_video_status,
    poll,
    video_update,
)
from batch.follow.tracking import refresh_results, track_async
from batch.secret import Secret
from batch.store import AttemptRecord, NewJob, PendingVideo, RowPlan, StateStore, VideoUpdate
from batch.store.results import read_results
from tests.helpers import RunRewritesAfterFirstRead


@dataclass
class Outcome:
    kind: str
    data: Any = None
    code: Any = None
    message: Any = None


@dataclass
class MemorySink:
    """The StateStore side of the contract, in memory."""

    submitted: dict[str, float]
    videos: dict[str, VideoUpdate] = field(default_factory=dict)
    events: set[str] = field(default_factory=set)
    records: int = 0

    def pending_videos(self) -> list[PendingVideo]:
        return [
            PendingVideo(video_id, at)
            for video_id, at in self.submitted.items()
            if video_id not in self.videos or self.videos[video_id].status == "processing"
        ]

    def record_video_status(self, update: VideoUpdate) -> bool:
        self.records += 1
        old = self.videos.get(update.video_id)
        if update.video_id not in self.submitted or (
            old is not None and replace(old, seen_at=0) == replace(update, seen_at=0)
        ):
            return False
        self.videos[update.video_id] = update
        return True

    def claim_event(self, event_id: str) -> bool:
        if event_id in self.events:
            return False
        self.events.add(event_id)
        return True


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedLookup:
    """Answers processing until the video's `done_at` time, then the scripted final data."""

    def __init__(self, clock: FakeClock, finals: dict[str, tuple[float, dict[str, Any]]]) -> None:
        self.clock = clock
        self.finals = finals
        self.calls: list[tuple[str, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def get_product_video(self, video_id: str) -> Outcome:
        self.calls.append((video_id, self.clock.now))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)  # yields, so concurrent checks overlap
        self.in_flight -= 1
        done_at, data = self.finals[video_id]
        if self.clock.now >= done_at:
            return Outcome("ok", data)
        return Outcome("ok", {"status": "processing"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("completed", "completed"),
        ("SUCCESS", "completed"),
        ("Succeeded", "completed"),
        (" done ", "completed"),
        ("failed", "failed"),
        ("Error", "failed"),
        ("cancelled", "failed"),
        ("pending", "processing"),
        ("queued", "processing"),
        ("processing", "processing"),
        (None, "processing"),
    ],
)
def test_status_spellings_map_to_three_states(raw: object, expected: str) -> None:
    """Every spelling seen in the wild lands on processing, completed or failed."""
    assert normalize_video_status(raw) == expected


def test_unknown_status_is_processing_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """An unknown status never counts as final, and the warning is not repeated."""
    with caplog.at_level(logging.WARNING, logger="batch.follow.polling"):
        assert normalize_video_status("Transmogrifying") == "processing"
        assert normalize_video_status("transmogrifying") == "processing"
    assert [r.getMessage() for r in caplog.records] == [
        "unknown video status 'Transmogrifying', treated as processing"
    ]


def test_unknown_statuses_are_logged_cut_short_and_so_many_only(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server sending a new 60 KB status in each answer: each line is cut to 40 characters,
    and after a hundred distinct ones no more are kept or logged (memory and log stay flat)."""
    monkeypatch.setattr(polling, "_unknown_seen", set())
    with caplog.at_level(logging.WARNING, logger="batch.follow.polling"):
        for n in range(300):
            assert normalize_video_status(f"{n:05d}" + "x" * 60_000) == "processing"
    assert len(caplog.records) == 100
    assert caplog.records[0].getMessage() == (
        f"unknown video status '00000{'x' * 35}...', treated as processing"
    )
    assert len(polling._unknown_seen) == 100


def test_schedule_follows_the_documented_ages() -> None:
    """Checks at ages 12, 22, ..., 62, then every 30 s to 302, then every 60 s."""
    schedule = PollSchedule()
    ages = [0.0]
    for _ in range(17):
        ages.append(schedule.next_check(100.0, 100.0 + ages[-1]) - 100.0)
    assert ages[1:15] == [12, 22, 32, 42, 52, 62, 92, 122, 152, 182, 212, 242, 272, 302]
    assert ages[15:] == [362, 422, 482]


@pytest.mark.parametrize(
    ("age", "expected"),
    [(-5, 12), (11.9, 12), (12, 22), (61.9, 62), (62, 92), (301, 302), (302, 362), (3600, 3602)],
)
def test_next_check_is_strictly_after_now(age: float, expected: float) -> None:
    """next_check returns the first scheduled age strictly after the given one."""
    assert PollSchedule().next_check(0.0, age) == expected


def test_video_update_reads_every_known_field_shape() -> None:
    """duration falls back to video_duration; error{code,message} becomes one line."""
    update = video_update(
        "v1",
        {
            "status": "failed",
            "video_duration": "35.8",
            "deducted_credit": 1,
            "error": {"code": 50000, "message": "render crashed"},
        },
        5.0,
    )
    expected = VideoUpdate("v1", "failed", None, None, 35.8, 1.0, "50000: render crashed", 5.0)
    assert update == expected
    assert video_update("v2", {"status": "error", "err_msg": "bad"}, 1.0).error == "bad"


@pytest.mark.anyio
async def test_single_pass_checks_every_pending_video_once() -> None:
    """Without wait, each pending video is asked about once, even if not due by the schedule."""
    clock = FakeClock(1000.0)
    sink = MemorySink({"a": 999.0, "b": 500.0, "c": 100.0})
    finals: dict[str, tuple[float, dict[str, Any]]] = {
        "a": (0.0, {"status": "success", "video_url": "https://res/a.mp4", "deducted_credit": 1.0}),
        "b": (0.0, {"status": "failed", "error": {"code": 1, "message": "nope"}}),
        "c": (9999.0, {}),
    }
    lookup = ScriptedLookup(clock, finals)
    summary = await poll(lookup, sink, wait=False, timeout=None, clock=clock, sleep=clock.sleep)
    assert sorted(video for video, _ in lookup.calls) == ["a", "b", "c"]
    assert (summary.completed, summary.failed, summary.processing) == (1, 1, 1)
    assert summary.unread == 0  # "c" answered: still rendering
    assert summary.timed_out is False
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert sink.videos["a"].video_url == "https://res/a.mp4"
    assert sink.videos["b"].error == "1: nope"
    assert [v.video_id for v in sink.pending_videos()] == ["c"]


@pytest.mark.anyio
async def test_wait_follows_the_schedule_until_every_video_is_final() -> None:
    """With wait, a video finishing at age 100 s is checked at 12, 22, ..., 92 and 122 s."""
    clock = FakeClock(1000.0)
    sink = MemorySink({"a": 1000.0})
    lookup = ScriptedLookup(clock, {"a": (1100.0, {"status": "completed"})})
    summary = await poll(lookup, sink, wait=True, timeout=None, clock=clock, sleep=clock.sleep)
    assert [at - 1000.0 for _, at in lookup.calls] == [12, 22, 32, 42, 52, 62, 92, 122]
    assert summary == type(summary)(1, 0, 0, False, 8)
    assert summary.exit_code == ExitCode.OK
    assert sink.videos["a"].seen_at == 1122.0


@pytest.mark.anyio
async def test_wait_times_out_with_videos_still_rendering() -> None:
    """A video that never finishes makes poll give up at the timeout, flagged timed_out, after
    a last look just before it (the schedule's next check, at 92 s, falls past it)."""
    clock = FakeClock(1000.0)
    sink = MemorySink({"slow": 1000.0, "quick": 1000.0})
    finals = {"slow": (1e9, {}), "quick": (1020.0, {"status": "completed"})}
    lookup = ScriptedLookup(clock, finals)
    summary = await poll(lookup, sink, wait=True, timeout=90, clock=clock, sleep=clock.sleep)
    assert summary.timed_out is True
    assert summary.exit_code == ExitCode.TIMED_OUT
    assert (summary.completed, summary.processing) == (1, 1)
    assert clock.now <= 1090.0
    assert max(at for _, at in lookup.calls) == 1088.0


@pytest.mark.anyio
async def test_giving_up_tells_renders_going_on_from_completed_ones_without_a_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A render the API called completed with a URL that cannot be used is asked again, but
    it is not rendering: the line said "2 videos still rendering" beside a summary of 1."""

    class Sink(MemorySink):
        def pending_videos(self) -> list[PendingVideo]:
            return [
                PendingVideo(video_id, at)
                for video_id, at in self.submitted.items()
                if video_id not in self.videos or self.videos[video_id].video_url is None
            ]

    clock = FakeClock(1000.0)
    sink = Sink({"slow": 1000.0, "no-url": 1000.0})
    finals = {"slow": (1e9, {}), "no-url": (1020.0, {"status": "completed", "video_url": "x:y"})}
    with caplog.at_level(logging.WARNING):
        await poll(
            ScriptedLookup(clock, finals),
            sink,
            wait=True,
            timeout=90,
            clock=clock,
            sleep=clock.sleep,
        )
    assert (
        "gave up waiting: 1 videos still rendering, 1 completed without a usable video URL"
        in caplog.text
    )


@pytest.mark.anyio
async def test_a_timeout_before_the_first_scheduled_check_still_takes_one_look() -> None:
    """`status --wait --timeout 10s` right after a run: the schedule's first check (12 s after
    the submission) fell past the deadline, so it gave up at once without asking, calling a
    render done meanwhile still going (exit 5). It looks once just before the deadline."""
    clock = FakeClock(1000.0)
    sink = MemorySink({"v1": 1000.0})
    done = {"status": "completed", "video_url": "https://cdn.example/v1.mp4"}
    lookup = ScriptedLookup(clock, {"v1": (1005.0, done)})
    summary = await poll(lookup, sink, wait=True, timeout=10, clock=clock, sleep=clock.sleep)
    assert [video_id for video_id, _ in lookup.calls] == ["v1"]
    assert 1005.0 <= lookup.calls[0][1] <= 1010.0
    assert summary.exit_code == ExitCode.OK
    assert sink.videos["v1"].status == "completed"


class HangingLookup(ScriptedLookup):
    """The scripted answers, but the status of the videos in `hang` never comes."""

    def __init__(self, clock: FakeClock, finals: dict[str, tuple[float, dict[str, Any]]]) -> None:
        super().__init__(clock, finals)
        self.hang: set[str] = set()

    async def get_product_video(self, video_id: str) -> Outcome:
        if video_id in self.hang:
            await asyncio.Event().wait()
        return await super().get_product_video(video_id)


def _one_check_hangs() -> tuple[FakeClock, MemorySink, HangingLookup]:
    """Two videos rendering: the status GET of `stuck` never answers, `quick` has completed."""
    clock = FakeClock(1000.0)
    sink = MemorySink({"stuck": 900.0, "quick": 900.0})
    lookup = HangingLookup(clock, {"stuck": (0.0, {}), "quick": (0.0, {"status": "completed"})})
    lookup.hang.add("stuck")
    return clock, sink, lookup


@pytest.mark.anyio
async def test_the_timeout_cuts_short_checks_that_never_answer() -> None:
    """A status GET that hangs (each may take three times its own deadline) does not hold
    `--wait --timeout` past the timeout: it is cancelled, and what the others said is kept."""
    clock, sink, lookup = _one_check_hangs()
    started = time.monotonic()
    work = poll(lookup, sink, wait=True, timeout=0.2, clock=clock, sleep=clock.sleep)
    summary = await asyncio.wait_for(work, 10)
    assert time.monotonic() - started < 2
    assert summary.exit_code == ExitCode.TIMED_OUT
    assert (summary.completed, summary.processing) == (1, 1)
    assert sink.videos["quick"].status == "completed"


@pytest.mark.anyio
async def test_a_single_pass_ends_at_the_timeout_and_counts_what_it_did_not_check() -> None:
    """Without wait, a status GET that never answers is cut off at the timeout too: the pass
    ends timed out (exit 5), what the others said is kept, and the video unchecked is counted."""
    clock, sink, lookup = _one_check_hangs()
    started = time.monotonic()
    work = poll(lookup, sink, wait=False, timeout=0.2, clock=clock, sleep=clock.sleep)
    summary = await asyncio.wait_for(work, 10)
    assert time.monotonic() - started < 2
    assert summary.exit_code == ExitCode.TIMED_OUT
    assert (summary.completed, summary.processing, summary.unchecked) == (1, 1, 1)
    assert sink.videos["quick"].status == "completed"


@pytest.mark.anyio
async def test_concurrency_is_bounded() -> None:
    """No more than `concurrency` status requests are in flight at once."""
    clock = FakeClock(1000.0)
    sink = MemorySink({f"v{i}": 0.0 for i in range(10)})
    lookup = ScriptedLookup(clock, {f"v{i}": (0.0, {"status": "completed"}) for i in range(10)})
    await poll(lookup, sink, wait=False, timeout=None, concurrency=3, clock=clock)
    assert lookup.max_in_flight == 3
    assert sink.pending_videos() == []


@pytest.mark.anyio
async def test_transient_errors_leave_the_video_pending() -> None:
    """A retryable answer records nothing; an id the API does not know is failed only a day
    after it was accepted: before, it may just not be visible yet, and is asked again."""

    class Lookup:
        async def get_product_video(self, video_id: str) -> Outcome:
            if video_id in ("gone", "new"):
                return Outcome("permanent", code=10104, message="record not found")
            return Outcome("retryable", code=50000, message="system error")

    day = NOT_FOUND_AFTER
    sink = MemorySink({"flaky": 0.0, "gone": 0.0, "new": day - 60})
    summary = await poll(Lookup(), sink, wait=False, timeout=None, clock=lambda: day)
    assert [v.video_id for v in sink.pending_videos()] == ["flaky", "new"]
    assert sink.videos["gone"].status == "failed"
    assert (summary.failed, summary.processing, summary.unread) == (1, 2, 2)


@pytest.mark.anyio
async def test_an_answer_about_another_video_is_not_taken_for_the_one_asked() -> None:
    """A proxy or cache answering a status request for another video: its URL would be
    downloaded as this row's. Not taken (asked again later); an `id` of another shape is
    another record's, and the answer is taken."""
    done = {"status": "completed", "video_url": "https://cdn.example/v.mp4"}
    asked = "a" * 32

    class Lookup:
        async def get_product_video(self, video_id: str) -> Outcome:
            other = {asked: {"video_id": "b" * 32}, "c" * 32: {"id": "d" * 32}}
            return Outcome("ok", data=done | other.get(video_id, {"id": 17, "task": "x"}))

    sink = MemorySink({asked: 0.0, "c" * 32: 0.0, "e" * 32: 0.0})
    summary = await poll(Lookup(), sink, wait=False, timeout=None, clock=lambda: 60.0)
    assert list(sink.videos) == ["e" * 32]
    assert (summary.completed, summary.processing) == (1, 2)


@pytest.mark.anyio
async def test_a_check_the_api_never_answered_is_not_an_all_clear() -> None:
    """Every status request fails (the API is down): nothing failed, yet nothing was learnt,
    so the exit is not 0; a video answered on a later check is read again."""

    class Down:
        def __init__(self) -> None:
            self.answered: set[str] = set()

        async def get_product_video(self, video_id: str) -> Outcome:
            if video_id in self.answered:
                return Outcome("ok", data={"status": "processing"})
            return Outcome("retryable", code=None, message="connection refused")

    sink, lookup = MemorySink({"a": 0.0, "b": 0.0}), Down()
    summary = await poll(lookup, sink, wait=False, timeout=None, clock=lambda: 7.0)
    assert (summary.processing, summary.unread) == (2, 2)
    assert summary.exit_code == ExitCode.ROWS_FAILED
    lookup.answered = {"a", "b"}
    summary = await poll(lookup, sink, wait=False, timeout=None, clock=lambda: 8.0)
    assert (summary.processing, summary.unread, summary.exit_code) == (2, 0, ExitCode.OK)


@pytest.mark.anyio
async def test_account_error_stops_polling() -> None:
    """An invalid key raises AccountError instead of polling forever."""

    class Lookup:
        async def get_product_video(self, video_id: str) -> Outcome:
            return Outcome("account", code=10105, message="invalid key")

    with pytest.raises(AccountError, match="video x: invalid key"):
        await poll(Lookup(), MemorySink({"x": 0.0}), wait=True, timeout=None, clock=lambda: 50.0)


def test_refreshing_a_results_file_names_the_double_charges_the_ledger_knows(
    tmp_path: Path,
) -> None:
    """The `status` that first finds a tag rendered twice writes it into the rows of both
    videos, as a run's results do; other rows keep their message."""
    results = tmp_path / "r.csv"
    pd.DataFrame(
        {"row": ["1", "2"], "status": ["submitted"] * 2, "video_id": ["v1", "v3"],
         "message": ["", "kept"]}
    ).to_csv(results, index=False)  # fmt: skip
    with StateStore(tmp_path / "s.db") as store:
        store.record_listing([("v1", "jb-1", "[jb-1] a", 1.0), ("v2", "jb-1", "[jb-1] a", 2.0)])
        store.record_double_charges(None)
        refresh_results(results, store)
    frame = read_results(results)
    assert list(frame["message"]) == ["double charge, raise it with JoggAI: videos v1, v2", "kept"]


def test_a_results_file_a_run_rewrites_while_status_reads_it_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status` read the file, a run finishing rewrote it (row 2 now submitted as v2), and
    `status` wrote its older copy over it: a paid row back to not_attempted, its video id lost.
    The file changed since it was read is read again."""
    results = tmp_path / "r.csv"
    read_while_a_run_writes = RunRewritesAfterFirstRead(results)
    monkeypatch.setattr(tracking, "read_results", read_while_a_run_writes)
    with StateStore(tmp_path / "s.db") as store:
        refresh_results(results, store)
    frame = read_results(results)
    assert len(read_while_a_run_writes.reads) == 2
    assert list(frame["status"]) == ["submitted", "submitted"]
    assert list(frame["video_id"]) == ["v1", "v2"]


def _one_submitted_video(state_path: Path) -> None:
    """A state whose one job was accepted as video `v1`."""
    with StateStore(state_path) as store:
        store.record_plan(
            1, [NewJob("f" * 64, "k", "[]", "0" * 12)], [], [RowPlan(1, "f" * 64, "job", None)]
        )
        store.settle(1, "submitted", AttemptRecord("ok", video_id="v1"), run_id=1)


async def _checked_once(
    state_path: Path,
    results: Path,
    server: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
) -> PollSummary:
    """`status` of `results` once, against `server`, every video checked at once (not 12 s
    after its acceptance)."""
    return await track_async(
        state_path,
        "https://api.test",
        Secret("sk-test"),
        wait=False,
        timeout=10,
        results=results,
        transport=httpx.MockTransport(server),
        schedule=PollSchedule(first=0.0),
    )


@pytest.mark.anyio
async def test_videos_of_the_file_the_state_does_not_know_are_untracked_not_rendering(
    tmp_path: Path,
) -> None:
    """A video id a spreadsheet rewrote (`1.36333E+31`), or one of another ledger's file, is
    asked about by no check: it is counted untracked, not "still rendering" (an exit 0), and
    the exit is not an all-clear."""
    state_path, results = tmp_path / "s.db", tmp_path / "r.csv"
    _one_submitted_video(state_path)
    pd.DataFrame(
        {"row": ["1", "2"], "status": ["submitted"] * 2, "video_id": ["v1", "1.36333E+31"]}
    ).to_csv(results, index=False)

    async def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/product_videos":
            data: dict[str, Any] = {"videos": [], "total": 0}
        else:
            data = {"id": "v1", "status": "completed", "video_url": "https://res.jogg.ai/v1.mp4"}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    summary = await _checked_once(state_path, results, server)
    assert (summary.completed, summary.processing, summary.unread) == (1, 0, 0)
    assert summary.untracked == 1
    assert summary.exit_code == ExitCode.ROWS_FAILED


@pytest.mark.anyio
async def test_a_completed_video_whose_url_was_refused_is_asked_again(tmp_path: Path) -> None:
    """A completed render whose URL was refused (an escape sequence in it) is final, and was
    never asked about again: `download` said "run status again" forever. The next `status`
    asks again, and an honest answer's URL is kept."""
    state_path, results = tmp_path / "s.db", tmp_path / "r.csv"
    _one_submitted_video(state_path)
    pd.DataFrame({"row": ["1"], "status": ["submitted"], "video_id": ["v1"]}).to_csv(
        results, index=False
    )
    urls = iter(["https://res.jogg.ai/v1.mp4\x1b[2J", "https://res.jogg.ai/v1.mp4"])
    asked: list[str] = []

    async def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/product_videos":
            data: dict[str, Any] = {"videos": [], "total": 0}
        else:
            asked.append(request.url.path)
            data = {"id": "v1", "status": "completed", "video_url": next(urls)}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    assert (await _checked_once(state_path, results, server)).completed == 1
    assert list(read_results(results)["video_url"]) == [""]
    assert (await _checked_once(state_path, results, server)).completed == 1
    assert asked == ["/v2/product_video/v1"] * 2
    assert list(read_results(results)["video_url"]) == ["https://res.jogg.ai/v1.mp4"]


@pytest.mark.anyio
async def test_accepted_rows_whose_video_id_was_cleared_are_counted_not_passed_over(
    tmp_path: Path,
) -> None:
    """A submitted or already_submitted row whose video id cell a person cleared is checked by
    nothing: it is counted `unnamed`, and the exit is not an all-clear. A failed row has no
    video id to miss."""
    state_path, results = tmp_path / "s.db", tmp_path / "r.csv"
    StateStore(state_path).close()
    pd.DataFrame(
        {"row": ["1", "2", "3"], "status": ["Submitted", "already_submitted", "failed"],
         "video_id": [" ", "", ""]}
    ).to_csv(results, index=False)  # fmt: skip

    async def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"code": 0, "msg": "ok", "data": {"videos": [], "total": 0}}
        )

    summary = await _checked_once(state_path, results, server)
    assert (summary.completed, summary.processing, summary.unnamed) == (0, 0, 2)
    assert summary.exit_code == ExitCode.ROWS_FAILED


@pytest.mark.anyio
@pytest.mark.parametrize(("wait", "render"), [(True, "processing"), (False, "completed")])
async def test_the_double_charge_check_stops_at_the_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, wait: bool, render: str
) -> None:
    """`status --timeout`, with or without --wait, ends by its timeout even when the account's
    listing keeps bringing new videos: the double-charge check after polling is cut short and
    says so, and the exit is a timeout even when every render was read (not an all-clear)."""
    state_path = tmp_path / "s.db"
    _one_submitted_video(state_path)

    async def server(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.001)  # a moment late, so that this test's own timeout can act
        if request.url.path == "/v2/product_videos":
            page = request.url.params["page"]
            videos = [
                {"id": f"{page}-{n}", "title": "t", "created_at": time.time()} for n in range(100)
            ]
            data: dict[str, Any] = {"videos": videos}
        else:
            data = {"id": "v1", "status": render}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    started = time.monotonic()
    work = track_async(
        state_path,
        "https://api.test",
        Secret("sk-test"),
        wait=wait,
        timeout=0.5,
        transport=httpx.MockTransport(server),
    )
    summary = await asyncio.wait_for(work, 10)
    assert time.monotonic() - started < 5
    assert summary.exit_code == ExitCode.TIMED_OUT
    assert "listing was not checked for double charges" in caplog.text
    assert "not read to its end by the deadline" in caplog.text


@pytest.mark.anyio
async def test_a_listing_the_api_does_not_answer_is_no_all_clear(tmp_path: Path) -> None:
    """Every render completed, but the account's listing answers HTTP 500: the double-charge
    check did not happen, so the exit is 1 (it was 0) and the renders line says why."""
    state_path = tmp_path / "s.db"
    _one_submitted_video(state_path)

    async def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/product_videos":
            return httpx.Response(500, text="")
        return httpx.Response(
            200, json={"code": 0, "msg": "ok", "data": {"id": "v1", "status": "completed"}}
        )

    summary = await track_async(
        state_path,
        "https://api.test",
        Secret("sk-test"),
        wait=False,
        timeout=None,
        transport=httpx.MockTransport(server),
    )
    assert (summary.completed, summary.listing_unread) == (1, True)
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert "double charges not checked" in render_renders(summary)
