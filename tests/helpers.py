"""Small helpers shared by the end-to-end tests: catalogs of valid sandbox products."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pandas as pd

from batch.store.results import read_results

PRODUCTS = Path(__file__).parents[1] / "sample_data" / "sandbox_products.csv"


def python_output(code: str) -> str:
    """What a fresh interpreter running `code` prints: imports and module state measured
    apart from the suite's own process."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def product_ids(count: int) -> list[str]:
    """The first `count` product ids the sandbox knows."""
    with PRODUCTS.open() as handle:
        return [row["product_id"] for row in csv.DictReader(handle)][:count]


def simple_rows(count: int, start: int = 0) -> list[dict[str, str]]:
    """`count` valid rows (sku, product_id, title, length 15) from the sandbox's products."""
    return [
        {"sku": f"SKU{i}", "product_id": pid, "title": f"Item {i}", "length": "15"}
        for i, pid in enumerate(product_ids(start + count)[start:], start)
    ]


def write_catalog(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def settle_past_runs() -> None:
    """As if the settle period of the runs before had passed: their sending locks (in the
    ledgers folder of XDG_DATA_HOME) emptied, so that a run from another ledger does not wait
    for what they sent to be listed."""
    folder = Path(os.environ["XDG_DATA_HOME"]) / "jogg-batch" / "ledgers"
    for lock in folder.glob("*.sending.lock"):
        lock.write_text("")


def submissions(url: str) -> dict[str, Any]:
    """The sandbox's record of what it accepted, rejected and faulted."""
    return httpx.get(f"{url}/_sandbox/submissions").json()  # type: ignore[no-any-return]


@contextmanager
def listen_process(
    state: Path, env: Mapping[str, str], log: list[str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m batch listen -v` on an ephemeral port with `env` added; yields the process and
    the port. Its stderr lines after the port is known go to `log` (read it once it ended)."""
    command = [sys.executable, "-m", "batch", "listen", "--state", str(state), "--port", "0", "-v"]
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        command, cwd=root, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True
    )
    assert child.stderr is not None
    lines = log if log is not None else []
    # Drains stderr once the port is known, so warnings never block the child.
    drain = threading.Thread(target=lambda: lines.extend(child.stderr or ()), daemon=True)
    try:
        port = None
        for line in child.stderr:
            found = re.search(r"listening for webhooks on http://127\.0\.0\.1:(\d+)/webhook", line)
            if found:
                port = int(found[1])
                break
        assert port is not None, "the listener never said where it listens"
        drain.start()
        yield child, port
    finally:
        child.terminate()
        child.wait(timeout=10)
        if drain.is_alive():
            drain.join(timeout=10)
        child.stderr.close()


def accepted_nodelay(listening: socket.socket) -> int:
    """TCP_NODELAY as set on a connection that `listening` accepts under asyncio (what uvicorn
    serves it with): nonzero when Nagle's algorithm is off."""

    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        found: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                found.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=listening)
        async with server:
            _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
            try:
                return await asyncio.wait_for(found, 5)
            finally:
                writer.close()

    return asyncio.run(accept_one())


class RunRewritesAfterFirstRead:
    """A `read_results` under which a run rewrites the results file just after the first read:
    the file it read had row 2 not attempted; the run's has it submitted as `v2`. `reads`: the
    paths read."""

    BEFORE: ClassVar[dict[str, list[str]]] = {
        "row": ["1", "2"], "status": ["submitted", "not_attempted"], "video_id": ["v1", ""],
    }  # fmt: skip
    AFTER: ClassVar[dict[str, list[str]]] = {
        **BEFORE, "status": ["submitted", "submitted"], "video_id": ["v1", "v2"],
    }  # fmt: skip

    def __init__(self, results: Path) -> None:
        self.results = results
        self.reads: list[Path] = []
        pd.DataFrame(self.BEFORE).to_csv(results, index=False)

    def __call__(self, path: Path) -> pd.DataFrame:
        frame = read_results(path)
        if not self.reads:
            pd.DataFrame(self.AFTER).to_csv(self.results, index=False)
        self.reads.append(path)
        return frame
