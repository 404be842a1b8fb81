"""The client SIGKILLed at random moments and resumed until done: never paid twice, no row lost.

The sandbox runs in its own process (as JoggAI would), the client as a fresh `python -m batch run`
each time; kill times are drawn from a seeded RNG so a failure replays.
"""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batch.store.results import read_results
from tests.helpers import product_ids

TAG = re.compile(r"\[jb-([0-9a-f]+)\]")


def start_sandbox(log: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "batch", "sandbox", "--port", "0", "-q", *options],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("sandbox listening on "), line
    url = line.split()[-1]
    deadline = time.monotonic() + 30  # the URL is printed before the server accepts (busy CI)
    while True:
        try:
            httpx.get(f"{url}/_sandbox/submissions", timeout=5).raise_for_status()
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.05)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    products = product_ids(80)
    with (tmp_path / "catalog.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "product_id", "length", "video_name"])
        for i, product in enumerate(products):
            writer.writerow([f"SKU{i:03d}", product, ("15", "30", "60")[i % 3], f"Promo {i}"])
    (tmp_path / "client.toml").write_text(
        '[api]\nrate_limit = "150/min"\nconcurrency = 4\nread_timeout = 0.5\n'
        "[retry]\nmax_attempts = 20\nbase_delay = 0.05\nmax_delay = 0.2\n"
        "[run]\nresults_interval = 0.5\nshutdown_grace = 1\nsettle_seconds = 1\n"
    )
    return tmp_path


def client(workdir: Path, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch",
            "run",
            str(workdir / "catalog.csv"),
            "--config",
            str(workdir / "client.toml"),
            "--base-url",
            url,
            "-q",
        ],
        env={**os.environ, "JOGG_API_KEY": "sk-sandbox"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def accepted_count(url: str) -> int:
    return len(httpx.get(f"{url}/_sandbox/submissions").json()["submissions"])


def kill_and_resume(workdir: Path, url: str, *, kills: int, seed: int) -> int:
    """SIGKILLs `kills` runs at random moments, then resumes until a run ends cleanly."""
    rng = random.Random(seed)
    for _ in range(kills):
        before = accepted_count(url)
        process = client(workdir, url)
        # Kill while rows are being sent: once this run's first create landed (a slow start
        # on a busy machine must not turn the kills into kills before sending), then later.
        deadline = time.monotonic() + 20
        while accepted_count(url) == before and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert 0 < accepted_count(url) < 80  # the kills landed while rows were still being sent
    code = -1
    for _ in range(5):
        code = client(workdir, url).wait(timeout=120)
        if code == 0:
            return code
    return code


def check_exactly_once(workdir: Path, url: str) -> dict[str, object]:
    report = httpx.get(f"{url}/_sandbox/submissions").json()
    tags = Counter(TAG.search(s["name"]).group(1) for s in report["submissions"])  # type: ignore[union-attr]
    products = Counter(s["product_id"] for s in report["submissions"])
    results = read_results(workdir / "catalog.results.csv")
    assert [tag for tag, n in tags.items() if n > 1] == []  # no job accepted twice
    assert len(products) == 80
    assert set(products.values()) == {1}  # every valid row accepted once
    assert list(results["sku"]) == [f"SKU{i:03d}" for i in range(80)]  # every row, in order
    assert set(results["status"]) <= {"submitted", "already_submitted"}
    assert set(results["video_id"]) == {s["video_id"] for s in report["submissions"]}
    return report  # type: ignore[no-any-return]


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "sandbox.log"
    process, url = start_sandbox(
        log, "--rate-limit", "150/min", "--seed", "5", *getattr(request, "param", ())
    )
    try:
        yield url
        assert process.poll() is None, f"the sandbox died: {log.read_text()[-3000:]}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.slow
def test_twenty_sigkills_never_pay_twice_nor_lose_a_row(workdir: Path, sandbox: str) -> None:
    """20 SIGKILLs at random moments, resumed: every row accepted exactly once."""
    assert kill_and_resume(workdir, sandbox, kills=20, seed=1) == 0
    check_exactly_once(workdir, sandbox)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox",
    [("--stall-rate", "0.1", "--stall-seconds", "1", "--reset-rate", "0.1")],
    indirect=True,
)
def test_kills_with_stalls_and_resets_never_pay_twice(workdir: Path, sandbox: str) -> None:
    """Commit-then-stall and resets at 10% each, plus kills: still exactly once."""
    assert kill_and_resume(workdir, sandbox, kills=8, seed=2) == 0
    report = check_exactly_once(workdir, sandbox)
    assert report["counts"]["faulted"]["stall"] > 0  # type: ignore[index]


def run_catalog(workdir: Path, url: str, rows: range) -> subprocess.Popen[bytes]:
    """A run of the catalog of `rows` (rows of `workdir`'s catalog.csv) from the default
    ledger, with a settle period longer than the sandbox's late commits."""
    catalog = workdir / f"rows-{rows.start}-{rows.stop}.csv"
    lines = (workdir / "catalog.csv").read_text().splitlines()
    catalog.write_text("\n".join([lines[0], *lines[1 + rows.start : 1 + rows.stop]]) + "\n")
    (workdir / "settle.toml").write_text(
        '[api]\nrate_limit = "600/min"\nread_timeout = 0.5\n[run]\nsettle_seconds = 3\n'
    )
    return subprocess.Popen(
        [sys.executable, "-m", "batch", "run", str(catalog), "--config",
         str(workdir / "settle.toml"), "--base-url", url, "--offline", "-q"],
        env={**os.environ, "JOGG_API_KEY": "sk-sandbox"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "sandbox", [("--late-commit-rate", "1", "--late-commit-seconds", "1.5")], indirect=True
)
@pytest.mark.parametrize(
    ("cut", "ledger"),
    [("killed", "restored from a backup"), ("killed", "deleted"),
     ("its ledger deleted under it", "restored from a backup"),
     ("killed sending from a ledger made anew", "restored from a backup")],
)  # fmt: skip
def test_a_ledger_restored_or_deleted_under_a_run_waits_out_its_requests_in_flight(
    workdir: Path, sandbox: str, cut: str, ledger: str
) -> None:
    """A run killed with requests in flight, or stopped (exit 7) by its ledger deleted under
    it, the ledger then put back from a backup (as the exit-7 message advises) or made anew:
    the next run's ledger knows nothing of those requests, and they commit later. It waits
    them out and adopts them; it sent them again, paying twice."""
    # The first run's attempts outnumber the cut-off run's: a ledger made anew reuses its ids.
    assert run_catalog(workdir, sandbox, range(0, 6)).wait(timeout=60) == 0
    (ledger_file,) = (Path(os.environ["XDG_DATA_HOME"]) / "jogg-batch" / "ledgers").glob("*.db")
    backup = ledger_file.read_bytes()
    if cut == "killed sending from a ledger made anew":  # its run and attempt ids: the backup's
        for path in ledger_file.parent.glob(ledger_file.name + "*"):
            path.unlink()
    cut_off = run_catalog(workdir, sandbox, range(6, 10))
    deadline = time.monotonic() + 30
    while len(httpx.get(f"{sandbox}/_sandbox/submissions").json()["pending"]) < 4:
        assert time.monotonic() < deadline
        assert cut_off.poll() is None
        time.sleep(0.02)
    if cut.startswith("killed"):
        cut_off.send_signal(signal.SIGKILL)
    for path in ledger_file.parent.glob(ledger_file.name + "*"):
        path.unlink()
    assert cut_off.wait(timeout=60) == (-signal.SIGKILL if cut.startswith("killed") else 7)
    if ledger == "restored from a backup":
        ledger_file.write_bytes(backup)
    assert run_catalog(workdir, sandbox, range(6, 10)).wait(timeout=60) == 0
    report = httpx.get(f"{sandbox}/_sandbox/submissions").json()
    products = Counter(s["product_id"] for s in report["submissions"])
    assert len(products) == 10
    assert set(products.values()) == {1}
