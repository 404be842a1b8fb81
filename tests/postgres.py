"""A real PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary folder,
listening on a free loopback port, stopped at the end of the session. Each test gets a database
of its own. As root (CI), the server runs as the `postgres` user, which refuses root.

Where no server can be found: skipped, saying why; under CI (`CI` set) that is a failure,
because `make test` installs it there.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).resolve().parent if on_path else None


BINDIR = _bindir()
MISSING = (
    "no PostgreSQL server on this machine; `make test` installs it as root "
    "(apt-get install postgresql)"
)


def require_postgres() -> Path:
    if BINDIR is None:
        if os.environ.get("CI"):
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return BINDIR


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One cluster; `database()` makes an empty database and returns its URL."""

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir = bindir
        self.folder = folder
        self.port = _free_port()
        self._made = 0
        user = pwd.getpwnam("postgres") if os.getuid() == 0 else None
        self._as = None if user is None else (user.pw_uid, user.pw_gid)
        data = folder / "data"
        data.mkdir()
        if self._as is not None:
            os.chown(folder, *self._as)
            os.chown(data, *self._as)
        self._run(
            "initdb", "-D", str(data), "-U", "jogg", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        with open(folder / "server.log", "wb") as log:  # the server keeps its own descriptor
            self.process = self._start(data, log)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "server.log").read_text(errors="replace"))
            time.sleep(0.05)
        self.admin_url = f"postgresql://jogg@127.0.0.1:{self.port}/postgres"
        self._wait_ready()

    def _start(self, data: Path, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
                "-c", "fsync=off", "-c", "max_connections=200",
            ],
            stdout=log, stderr=subprocess.STDOUT, user=self._uid(), group=self._gid(),
        )  # fmt: skip

    def _uid(self) -> int | None:
        return None if self._as is None else self._as[0]

    def _gid(self) -> int | None:
        return None if self._as is None else self._as[1]

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            user=self._uid(),
            group=self._gid(),
        )

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.admin_url).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def database(self) -> str:
        import psycopg

        self._made += 1
        name = f"jogg_{os.getpid()}_{self._made}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return f"postgresql://jogg@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    bindir = require_postgres()
    with tempfile.TemporaryDirectory(prefix="jogg-pg-") as folder:
        os.chmod(folder, 0o755)  # noqa: S103 - the server's own user must reach its folder
        server = PostgresServer(bindir, Path(folder))
        try:
            yield server
        finally:
            server.stop()
