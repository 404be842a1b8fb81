"""Serving the sandbox over a real socket: in the foreground (the CLI) or in a background thread.

The socket is bound before uvicorn starts, so the URL (with the port the OS picked for port 0)
is known at once. uvicorn runs with the h11 protocol because the reset and stall faults abort
the connection through its transport (see faults.py).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from batch.errors import ConfigError
from batch.sandbox.app import create_app
from batch.sandbox.config import SandboxConfig

STARTUP_TIMEOUT = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (port 0: the OS picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, as asyncio's create_server(host, port) names it: asyncio turns Nagle's off
    # (TCP_NODELAY) only on connections whose protocol says TCP, and with it on, a response
    # written as headers then body waited for the client's delayed ACK, 40 ms a request on a
    # kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before the URL is printed: a client connecting at once waits in the
        # backlog until the server accepts, rather than being refused.
        sock.listen(socket.SOMAXCONN)
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(config: SandboxConfig, log_level: str) -> uvicorn.Server:
    return uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            http="h11",
            lifespan="on",
            log_level=log_level,
            log_config=None,  # keep the caller's logging setup (batch.logs)
            timeout_graceful_shutdown=1,  # stalled requests must not hold up a shutdown
        )
    )


def serve(config: SandboxConfig, sock: socket.socket) -> None:
    """Serve on `sock` in the foreground until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    _server(config, "info").run(sockets=[sock])


@contextmanager
def running_sandbox(config: SandboxConfig | None = None) -> Iterator[str]:
    """Run the sandbox on an ephemeral loopback port in a background thread; yield its base URL.

    The URL has no trailing slash and no `/v2` (e.g. `http://127.0.0.1:54321`).
    """
    sock = bind_socket("127.0.0.1", 0)
    # uvicorn sets its loggers' levels for the process: a library must put them back.
    levels = {name: logging.getLogger(name).level for name in _UVICORN_LOGGERS}
    server = _server(config or SandboxConfig(), "warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="jogg-sandbox", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
        sock.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
