"""The listener over real sockets against abusive clients: memory stays bounded under oversize
bodies (measured in a `jogg-batch listen` child process), slow clients are cut off."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from batch.follow.webhook import ListenerLimits, create_listener_app, listener_server, open_socket
from batch.store import PendingVideo, StateStore, VideoUpdate
from tests.helpers import accepted_nodelay, listen_process

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
# The listener's peak RSS may grow by at most this much while it refuses 2 x 64 MiB unsigned
# bodies; the old code read each body whole (+64 MiB at least).
RSS_GROWTH_LIMIT = 16 * MiB


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M)[1]) * 1024  # type: ignore[index]
            for key in ("VmRSS", "VmHWM")}  # fmt: skip


def read_head(sock: socket.socket) -> bytes:
    """The response's status line and headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    return data


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """False once the server has closed the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_oversize_unsigned_bodies_are_413_with_memory_bounded(tmp_path: Path) -> None:
    """64 MiB announced and 64 MiB chunked, unsigned: 413 each, peak RSS grows < 16 MiB."""
    state = tmp_path / "state.db"
    StateStore(state).close()
    with listen_process(state, {"JOGG_WEBHOOK_SECRET": "whsec_rss"}) as (child, port):
        url = f"http://127.0.0.1:{port}/webhook"
        assert httpx.post(url, content=b"{}").status_code == 401  # warm up every code path
        before = memory(child.pid)
        block = b"x" * MiB

        with closing(socket.create_connection(("127.0.0.1", port))) as sock:
            sock.sendall(
                b"POST /webhook HTTP/1.1\r\nHost: l\r\nContent-Length: %d\r\n\r\n" % (64 * MiB)
            )
            assert read_head(sock).startswith(b"HTTP/1.1 413")
            sent = 0
            while sent < 64 and send_quietly(sock, block):
                sent += 1

        chunk = b"%x\r\n%s\r\n" % (len(block), block)
        with closing(socket.create_connection(("127.0.0.1", port))) as sock:
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n")
            sock.sendall(chunk * 2)
            assert read_head(sock).startswith(b"HTTP/1.1 413")
            sent = 2
            while sent < 64 and send_quietly(sock, chunk):
                sent += 1

        assert httpx.post(url, content=b"{}").status_code == 401  # still serving
        after = memory(child.pid)
    growth = after["VmHWM"] - before["VmRSS"]
    print(
        f"listener RSS {before['VmRSS'] / MiB:.1f} MiB, peak after {after['VmHWM'] / MiB:.1f} MiB"
    )
    assert growth < RSS_GROWTH_LIMIT, f"peak RSS grew by {growth / MiB:.1f} MiB"


class Sink:
    def pending_videos(self) -> list[PendingVideo]:
        return []

    def record_video_status(self, update: VideoUpdate) -> bool:
        return True

    def claim_event(self, event_id: str) -> bool:
        return True

    def video_states(self, video_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        return {}


QUICK = ListenerLimits(header_timeout=0.3, body_timeout=0.3, concurrency=8)


def test_the_listener_answers_with_nagles_algorithm_off() -> None:
    """A connection the listener's socket accepts has TCP_NODELAY set: with Nagle's algorithm
    on, an answer written as headers, then body, waits for the sender's delayed ACK (40 ms) on
    every request of a kept-alive connection."""
    assert accepted_nodelay(open_socket("127.0.0.1", 0)) != 0


@contextmanager
def running(limits: ListenerLimits) -> Iterator[int]:
    """The listener app and server, as `listen` builds them, in a thread; yields the port."""
    sock = open_socket("127.0.0.1", 0)
    server = listener_server(create_listener_app(Sink(), "s", limits=limits), limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_half_sent_requests_are_cut_off() -> None:
    """20 connections that never finish their headers are all closed after header_timeout."""
    with running(QUICK) as port:
        started = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: l\r\nContent-")
        try:
            assert all(closed_within(sock, 2.0) for sock in socks)
        finally:
            for sock in socks:
                sock.close()
        assert time.monotonic() - started < 1.5


def test_a_stalled_body_is_408_then_the_connection_closes() -> None:
    """A body stuck at 10 of 100 bytes: 408; trickling more bytes after that does not keep it."""
    with running(QUICK) as port, closing(socket.create_connection(("127.0.0.1", port))) as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: l\r\nContent-Length: 100\r\n\r\n0123456789")
        assert read_head(sock).startswith(b"HTTP/1.1 408")
        started = time.monotonic()
        while time.monotonic() - started < 2.0 and send_quietly(sock, b"x"):
            sock.settimeout(0.05)
            try:
                if sock.recv(4096) == b"":
                    break
            except TimeoutError:
                pass
        assert time.monotonic() - started < 1.0


def test_idle_connections_beyond_the_limit_are_refused_then_freed() -> None:
    """With `concurrency` idle connections open a request gets 503; once they are cut, 401."""
    with running(QUICK) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(QUICK.concurrency)]
        try:
            url = f"http://127.0.0.1:{port}/webhook"
            assert httpx.post(url, content=b"{}").status_code == 503
            assert all(closed_within(sock, 2.0) for sock in idle)
            assert httpx.post(url, content=b"{}").status_code == 401
        finally:
            for sock in idle:
                sock.close()
