"""Finishing the loop over real sockets: status polling, webhooks, and resumable downloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from batch import runner
from batch.config import Overrides, RunConfig, Secret, build_run_config
from batch.errors import ExitCode
from batch.follow import tracking
from batch.follow.download import DownloadConfig, run_download
from batch.follow.polling import PollSchedule
from batch.follow.webhook import ListenerStats, create_listener_app
from batch.joggai.quota import RateLimit
from batch.sandbox import SandboxConfig, running_sandbox
from batch.sandbox.media import media_bytes
from batch.sandbox.server import bind_socket, url_of
from batch.store import StateStore
from batch.store.results import read_results
from tests.helpers import product_ids, write_catalog

KEY = Secret("sk-sandbox")
SECRET = "whsec_end_to_end"
RENDER_ERROR = "50000: render failed: the sandbox's render farm gave up"
QUICK = PollSchedule(first=0.2, fast=0.2, fast_until=5, medium=0.5, medium_until=10, slow=1)
FAST_SANDBOX: dict[str, Any] = {"rate_limit": RateLimit(600, 60.0), "render_seconds": 0.3}


def catalog_rows(count: int, **extra: str) -> list[dict[str, str]]:
    return [
        {"sku": f"SKU{i}", "product_id": pid, "length": "15", **extra}
        for i, pid in enumerate(product_ids(count))
    ]


def make_config(catalog: Path, url: str) -> RunConfig:
    cli = Overrides(
        base_url=url,
        rate_limit="600/min",
        concurrency=4,
        results=catalog.with_suffix(".results.csv"),
        state=catalog.with_name("catalog.jogg-state.db"),  # where the listener below records
    )
    return build_run_config(catalog, cli, api_key=KEY)


def inspect(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_sandbox/submissions").json()  # type: ignore[no-any-return]


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_status_wait_fills_every_final_status_into_the_results(tmp_path: Path) -> None:
    """Waiting ends every submitted row completed with its media, or failed with its error."""
    # Seed 2 draws exactly one failure among the first six renders at this rate.
    sandbox = SandboxConfig(**FAST_SANDBOX, render_failure_rate=0.3, seed=2)
    with running_sandbox(sandbox) as url:
        catalog = write_catalog(tmp_path / "catalog.csv", catalog_rows(6))
        config = make_config(catalog, url)
        assert runner.run(config).exit_code == ExitCode.OK

        summary = tracking.track(
            config.state, url, KEY, wait=True, timeout=30, results=config.results, schedule=QUICK
        )

    assert (summary.completed, summary.failed, summary.processing) == (5, 1, 0)
    assert not summary.timed_out
    assert summary.exit_code == ExitCode.ROWS_FAILED
    results = read_results(config.results)
    assert list(results["status"]) == ["submitted"] * 6
    assert sorted(results["video_status"]) == ["completed"] * 5 + ["failed"]
    for row in results.to_dict("records"):
        if row["video_status"] == "completed":
            assert row["video_url"] == f"{url}/_sandbox/media/{row['video_id']}.mp4"
            assert row["cover_url"] == f"{url}/_sandbox/media/{row['video_id']}.jpg"
            assert float(row["duration"]) == 18.0  # 15 s requested, the sandbox overshoots 20%
            assert row["error"] == ""
        else:
            assert (row["video_url"], row["cover_url"]) == ("", "")
            assert row["error"] == RENDER_ERROR
        assert row["completed_at"] != ""


@dataclass
class Listener:
    url: str
    app: Starlette

    @property
    def stats(self) -> ListenerStats:
        stats: ListenerStats = self.app.state.stats
        return stats


@contextmanager
def running_listener(state: Path, secret: str) -> Iterator[Listener]:
    """The `listen` app on a loopback port; its state connection lives in the server's thread."""
    sock = bind_socket("127.0.0.1", 0)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        with StateStore(state) as store:
            app = create_listener_app(store, secret)
            config = uvicorn.Config(app, http="h11", lifespan="off", log_config=None)
            holder.update(app=app, server=uvicorn.Server(config))
            ready.set()
            holder["server"].run(sockets=[sock])

    thread = threading.Thread(target=serve, name="jogg-listener", daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        wait_until(lambda: bool(holder["server"].started), timeout=10)
        yield Listener(url_of(sock), holder["app"])
    finally:
        if "server" in holder:
            holder["server"].should_exit = True
        thread.join(timeout=10)
        sock.close()


def webhook_event_count(state: Path) -> int:
    with closing(sqlite3.connect(state)) as db:
        (count,) = db.execute("SELECT count(*) FROM webhook_events").fetchone()
    return int(count)


def test_webhooks_finish_every_video_once_and_forgeries_change_nothing(tmp_path: Path) -> None:
    """Signed deliveries (each sent twice) make every video final once; a bad signature is 401."""
    state = tmp_path / "catalog.jogg-state.db"
    # Seed 4 draws exactly two failures among the first five renders at this rate.
    sandbox = SandboxConfig(
        **FAST_SANDBOX,
        render_failure_rate=0.3,
        seed=4,
        webhook_secret=SECRET,
        webhook_duplicates=True,
    )
    with running_listener(state, SECRET) as listener, running_sandbox(sandbox) as url:
        rows = catalog_rows(5, webhook_url=f"{listener.url}/webhook")
        catalog = write_catalog(tmp_path / "catalog.csv", rows)
        assert runner.run(make_config(catalog, url)).exit_code == ExitCode.OK

        def all_delivered() -> bool:
            hooks = inspect(url)["webhooks"]
            return len(hooks) == 5 and all(hook["delivered"] == 2 for hook in hooks)

        wait_until(all_delivered)
        hooks = inspect(url)["webhooks"]
        assert [hook["attempts"] for hook in hooks] == [[200, 200]] * 5
        assert (listener.stats.applied, listener.stats.duplicates) == (5, 5)

        with StateStore(state) as store:
            assert store.pending_videos() == []
            video_ids = [hook["video_id"] for hook in hooks]
            before = store.video_states(video_ids)
        assert (
            sorted(v["video_status"] for v in before.values()) == ["completed"] * 3 + ["failed"] * 2
        )
        failed = [video_id for video_id, v in before.items() if v["video_status"] == "failed"]
        assert {before[video_id]["error"] for video_id in failed} == {RENDER_ERROR}
        for video_id in set(before) - set(failed):
            assert before[video_id]["video_url"] == f"{url}/_sandbox/media/{video_id}.mp4"
            assert before[video_id]["duration"] == "18"
        assert webhook_event_count(state) == 5

        completed = next(v for v, s in before.items() if s["video_status"] == "completed")
        forged = json.dumps(
            {
                "event_id": "forged-1",
                "event": "generated_product_video_failed",
                "data": {"video_id": completed, "status": "failed", "error": "forged"},
            }
        ).encode()
        answer = httpx.post(
            f"{listener.url}/webhook",
            content=forged,
            headers={"X-Webhook-Signature": sign(forged, "not-the-secret")},
        )
        assert answer.status_code == 401
        assert listener.stats.rejected == 1
        with StateStore(state) as store:
            assert store.video_states(video_ids) == before
        assert webhook_event_count(state) == 5


def test_download_resumes_after_an_interruption(tmp_path: Path) -> None:
    """A deleted file and a half-written .part are fetched again; complete files are not."""
    with running_sandbox(SandboxConfig(**FAST_SANDBOX)) as url:
        catalog = write_catalog(tmp_path / "catalog.csv", catalog_rows(4))
        config = make_config(catalog, url)
        assert runner.run(config).exit_code == ExitCode.OK
        polled = tracking.track(
            config.state, url, KEY, wait=True, timeout=30, results=config.results, schedule=QUICK
        )
        assert polled.exit_code == ExitCode.OK
        dest = tmp_path / "videos"
        assert isinstance(config.results, Path)
        download = DownloadConfig(config.results, dest, progress=False, base_url=url)

        first = run_download(download)
        assert (first.downloaded, first.skipped, first.failed) == (4, 0, 0)
        assert first.bytes == 4 * 300_000
        results = read_results(config.results)
        names = [
            f"{int(row):05d}-{vid}.mp4"
            for row, vid in zip(results["row"], results["video_id"], strict=True)
        ]
        assert sorted(p.name for p in dest.iterdir()) == sorted(names)

        deleted, interrupted, *kept = (dest / name for name in names)
        deleted.unlink()
        interrupted.with_name(interrupted.name + ".part").write_bytes(
            interrupted.read_bytes()[:120_000]
        )
        interrupted.unlink()
        untouched = {path: path.stat().st_mtime_ns for path in kept}

        again = run_download(download)

    assert (again.downloaded, again.skipped, again.failed) == (2, 2, 0)
    assert again.bytes == 2 * 300_000
    assert {path: path.stat().st_mtime_ns for path in kept} == untouched
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)  # no .part left behind
    for name, video_id in zip(names, results["video_id"], strict=True):
        assert (dest / name).read_bytes() == media_bytes(video_id, "mp4")
    recorded = read_results(config.results)
    assert list(recorded["local_path"]) == [str((dest / name).resolve()) for name in names]
    assert list(recorded["video_status"]) == ["completed"] * 4


def test_status_counts_every_render_of_the_file_even_those_seen_failing_before(
    tmp_path: Path,
) -> None:
    """A render that failed before this `status` (seen by `listen`, or an earlier `status`) is
    still a failed render of the file: counted, and the exit is 1 on every later pass."""
    sandbox = SandboxConfig(**FAST_SANDBOX, render_failure_rate=1.0)
    with running_sandbox(sandbox) as url:
        catalog = write_catalog(tmp_path / "catalog.csv", catalog_rows(2))
        config = make_config(catalog, url)
        assert runner.run(config).exit_code == ExitCode.OK
        first = tracking.track(
            config.state, url, KEY, wait=True, timeout=30, results=config.results, schedule=QUICK
        )
        later = [
            tracking.track(config.state, url, KEY, wait=wait, timeout=30, results=config.results)
            for wait in (False, True)
        ]
    for summary in (first, *later):
        assert (summary.completed, summary.failed, summary.processing) == (0, 2, 0)
        assert summary.exit_code == ExitCode.ROWS_FAILED
    assert later[0].checks == 0  # nothing was pending any more
