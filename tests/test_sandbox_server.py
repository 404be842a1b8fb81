"""The sandbox over a real loopback socket: faults that drop connections, webhooks, the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from batch.cli import main
from batch.sandbox import SandboxConfig, running_sandbox
from batch.sandbox.catalogs import SEEDED_PRODUCTS
from batch.sandbox.server import bind_socket
from tests.helpers import accepted_nodelay

KEY = {"x-api-key": "sk-sandbox"}
BODY: dict[str, Any] = {
    "product_id": SEEDED_PRODUCTS[1][0],
    "video_spec": {"length": "15", "name": "Speaker [jb-1]"},
    "avatar": {"id": 81},
    "voice": {"id": "en-US-JennyNeural"},
    "audio": {},
    "script": {"style": "Data", "language": "english"},
}


class Receiver:
    """A loopback webhook target that records requests and answers the given statuses in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None) -> Receiver:
        receiver = Receiver(statuses or [])
        threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_running_sandbox_yields_a_base_url_and_serves() -> None:
    """The context manager serves on 127.0.0.1 and stops on exit."""
    with running_sandbox(SandboxConfig()) as url:
        assert url.startswith("http://127.0.0.1:")
        assert not url.endswith("/")
        assert httpx.get(f"{url}/v2/user/whoami", headers=KEY).json()["code"] == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/user/whoami", headers=KEY)


def test_running_sandbox_leaves_the_log_levels_as_it_found_them() -> None:
    """uvicorn sets its loggers' levels for the whole process: a notebook's `uvicorn.error`
    stayed at WARNING after `batch.local_sandbox()`. They are put back."""
    logger = logging.getLogger("uvicorn.error")
    logger.setLevel(logging.DEBUG)
    try:
        with running_sandbox(SandboxConfig()):
            pass
        assert logger.level == logging.DEBUG
    finally:
        logger.setLevel(logging.NOTSET)


def test_the_sandbox_answers_with_nagles_algorithm_off() -> None:
    """A connection the sandbox's socket accepts has TCP_NODELAY set, as asyncio sets it on
    the TCP connections it knows for TCP: with it off, a response written as headers, then
    body, waited 40 ms for the client's delayed ACK on every kept-alive request, and the
    client-overhead bench measured that wait instead of jogg-batch."""
    assert accepted_nodelay(bind_socket("127.0.0.1", 0)) != 0


def test_reset_fault_drops_the_connection_before_recording() -> None:
    """A reset gives the client no response at all and leaves no submission. (The client
    reads the aborted socket's end as a disconnect or, when the abort came before its request
    was all read, as a reset: either way, no answer.)"""
    with running_sandbox(SandboxConfig(reset_rate=1.0)) as url:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY)
        seen = httpx.get(f"{url}/_sandbox/submissions").json()
        assert seen["submissions"] == []
        assert seen["counts"]["faulted"]["reset"] == 1


def test_stall_fault_times_the_client_out_after_committing() -> None:
    """Commit-then-stall: the client times out, yet the video was recorded and charged."""
    with running_sandbox(SandboxConfig(stall_rate=1.0, stall_seconds=5)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY, timeout=0.3)
        seen = httpx.get(f"{url}/_sandbox/submissions").json()
        assert [s["name"] for s in seen["submissions"]] == ["Speaker [jb-1]"]
        assert seen["credits_left"] == 999


def test_stall_fault_drops_the_connection_after_stall_seconds() -> None:
    """Past stall_seconds the connection is dropped without an answer."""
    config = SandboxConfig(stall_rate=1.0, stall_seconds=0.1)
    with running_sandbox(config) as url, pytest.raises(httpx.RemoteProtocolError):
        httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY, timeout=5)


def test_late_commit_charges_a_client_that_timed_out(receiver_factory: Any) -> None:
    """The client gives up before the late commit; the video is committed and charged later."""
    receiver = receiver_factory()
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=0.4, render_seconds=0)
    with running_sandbox(config) as url:
        body = {**BODY, "webhook_url": receiver.url}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/v2/create_video_from_product",
                json=body,
                headers=KEY,
                timeout=httpx.Timeout(5, read=0.1),
            )
        seen = httpx.get(f"{url}/_sandbox/submissions").json()
        assert seen["submissions"] == []
        assert [p["name"] for p in seen["pending"]] == ["Speaker [jb-1]"]
        assert seen["credits_left"] == 1000
        receiver.wait_for(1)  # the render's webhook: committed with no request to prompt it
        assert len(receiver.received) == 1
        seen = httpx.get(f"{url}/_sandbox/submissions").json()
        [submission] = seen["submissions"]
        assert submission["name"] == "Speaker [jb-1]"
        assert submission["created_at"] - submission["received_at"] == pytest.approx(0.4)
        assert json.loads(receiver.received[0][1])["data"]["video_id"] == submission["video_id"]
        assert seen["credits_left"] == 999


def test_late_commit_answers_a_client_that_waited() -> None:
    """A client still connected at the commit gets the video id, late_commit_seconds later."""
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=0.2)
    with running_sandbox(config) as url:
        started = time.monotonic()
        answer = httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY)
        assert time.monotonic() - started >= 0.2
        [submission] = httpx.get(f"{url}/_sandbox/submissions").json()["submissions"]
        assert answer.json()["data"]["video_id"] == submission["video_id"]


def test_commit_then_error_answers_travel_over_the_socket() -> None:
    """Over HTTP the error answers arrive whole (even the empty 503) while every video is paid."""
    config = SandboxConfig(commit_then_error_rate=1.0, rate_limit=None)
    with running_sandbox(config) as url:
        statuses = {
            httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY).status_code
            for _ in range(16)
        }
        assert statuses == {200, 500, 502, 503}
        seen = httpx.get(f"{url}/_sandbox/submissions").json()
        assert len(seen["submissions"]) == 16
        assert seen["credits_left"] == 984


def test_lagging_cut_listing_over_the_socket() -> None:
    """running_sandbox takes listing_lag_seconds and listing_title like the other knobs."""
    config = SandboxConfig(listing_lag_seconds=0.2, listing_title="cut:7")
    with running_sandbox(config) as url:
        httpx.post(f"{url}/v2/create_video_from_product", json=BODY, headers=KEY)
        listing = f"{url}/v2/product_videos"
        assert httpx.get(listing, headers=KEY).json()["data"]["total"] == 0
        time.sleep(0.25)
        [video] = httpx.get(listing, headers=KEY).json()["data"]["videos"]
        assert video["title"] == "Speaker"


def verify(headers: dict[str, str], body: bytes, secret: str) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Webhook-Signature"])


def test_webhook_is_signed_and_retried_until_2xx(receiver_factory: Any) -> None:
    """A finished render POSTs a signed v2 payload; non-2xx answers are retried."""
    receiver = receiver_factory([500, 503])
    config = SandboxConfig(render_seconds=0.1, webhook_secret="s3cret", webhook_retry_seconds=0.05)
    with running_sandbox(config) as url:
        body = {**BODY, "webhook_url": receiver.url}
        answer = httpx.post(f"{url}/v2/create_video_from_product", json=body, headers=KEY).json()
        receiver.wait_for(3)
        assert len(receiver.received) == 3
        headers, raw = receiver.received[-1]
        assert verify(headers, raw, "s3cret")
        assert not verify(headers, raw, "whsec_sandbox")
        assert headers["X-Webhook-Event"] == "generated_product_video_success"
        assert headers["User-Agent"] == "JoggAI-Webhook/2.0"
        payload = json.loads(raw)
        assert payload["event"] == "generated_product_video_success"
        assert len(payload["event_id"]) == 32
        assert isinstance(payload["timestamp"], int)
        video_id = answer["data"]["video_id"]
        assert payload["data"] == {
            "video_id": video_id,
            "status": "completed",
            "video_url": f"{url}/_sandbox/media/{video_id}.mp4",
            "cover_url": f"{url}/_sandbox/media/{video_id}.jpg",
            "duration": 18.0,
        }
        assert len({json.loads(r)["event_id"] for _, r in receiver.received}) == 1
        log = httpx.get(f"{url}/_sandbox/submissions").json()["webhooks"]
        assert log[0]["attempts"] == [500, 503, 200]
        assert log[0]["delivered"] == 1
        assert httpx.get(payload["data"]["video_url"]).content[4:8] == b"ftyp"


def test_failed_render_webhook_and_duplicates(receiver_factory: Any) -> None:
    """A failed render sends the _failed event with error{code,message}, twice when asked."""
    receiver = receiver_factory()
    config = SandboxConfig(render_seconds=0.05, render_failure_rate=1.0, webhook_duplicates=True)
    with running_sandbox(config) as url:
        body = {**BODY, "webhook_url": receiver.url}
        httpx.post(f"{url}/v2/create_video_from_product", json=body, headers=KEY)
        receiver.wait_for(2)
        assert len(receiver.received) == 2
        (first_headers, first), (_, second) = receiver.received
        assert first == second
        assert first_headers["X-Webhook-Event"] == "generated_product_video_failed"
        data = json.loads(first)["data"]
        assert data["status"] == "failed"
        assert set(data["error"]) == {"code", "message"}


def test_webhook_to_a_non_loopback_host_is_never_called(receiver_factory: Any) -> None:
    """A valid but remote webhook_url is accepted, logged as refused, and not contacted."""
    with running_sandbox(SandboxConfig(render_seconds=0.05)) as url:
        body = {**BODY, "webhook_url": "https://hooks.example.com/jogg"}
        assert (
            httpx.post(f"{url}/v2/create_video_from_product", json=body, headers=KEY).json()["code"]
            == 0
        )
        deadline = time.monotonic() + 3
        log: list[dict[str, Any]] = []
        while not log and time.monotonic() < deadline:
            time.sleep(0.05)
            log = httpx.get(f"{url}/_sandbox/submissions").json()["webhooks"]
        assert log[0]["refused"] is True
        assert log[0]["attempts"] == []


def test_cli_help_lists_the_options() -> None:
    """`jogg-batch sandbox --help` documents the knobs."""
    result = CliRunner().invoke(main, ["sandbox", "--help"])
    assert result.exit_code == 0
    for option in (
        "--rate-limit",
        "--stall-rate",
        "--latency-ms",
        "--http-status-codes",
        "--commit-then-error-rate",
        "--late-commit-rate",
        "--late-commit-seconds",
        "--listing-lag-seconds",
        "--listing-title",
    ):
        assert option in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit", "20/fortnight"], "'20/fortnight' is not a rate"),
        (["--latency-ms", "9-1"], "is not a latency"),
        (["--fail-rate", "0.7", "--reset-rate", "0.7"], "sum must be <= 1"),
        (["--commit-then-error-rate", "0.6", "--late-commit-rate", "0.6"], "sum must be <= 1"),
        (["--listing-title", "cut:zero"], "'cut:zero' is not a listing title"),
        (["--listing-title", "title"], "'title' is not a listing title"),
        (["--late-commit-seconds", "-1"], "--late-commit-seconds"),
    ],
)
def test_cli_rejects_bad_values_with_exit_2(args: list[str], message: str) -> None:
    """Bad option values exit 2 with a message that says what is wrong."""
    result = CliRunner().invoke(main, ["sandbox", "--port", "0", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_the_socket_listens_before_its_url_is_printed() -> None:
    """A client connecting as soon as it reads the URL, before the server runs, waits in the
    backlog rather than being refused."""
    sock = bind_socket("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            pass
    finally:
        sock.close()


@pytest.mark.slow
def test_cli_subprocess_prints_its_url_first_and_serves() -> None:
    """The first stdout line is the URL, listening already: the first request on it is
    answered, never refused."""
    command = [sys.executable, "-m", "batch", "sandbox", "--port", "0", "--api-key", "k1"]
    with subprocess.Popen(
        [*command, "--credits", "7"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().rstrip("\n")
            assert line.startswith("sandbox listening on http://127.0.0.1:")
            url = line.removeprefix("sandbox listening on ")
            quota = httpx.get(
                f"{url}/v2/user/remaining_quota", headers={"x-api-key": "k1"}, timeout=30
            )
            assert quota.json()["data"] == {"remaining_quota": 7.0}
        finally:
            process.terminate()
        # uvicorn shuts down cleanly, then re-raises the signal: exit 143, as every command's
        assert process.wait(timeout=10) == 143
