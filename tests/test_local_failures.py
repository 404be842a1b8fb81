"""A local file that cannot be written after sending began (results directory read-only, a file
size limit, a full disk) stops new requests, keeps what was sent, says how to get the results
back, and exits 7: never a traceback, never a lost or doubly paid row."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from batch.errors import ExitCode, StateError
from batch.files import take_lock
from batch.joggai.quota import RateLimit
from batch.store.results import read_results
from tests.helpers import product_ids, submissions, write_catalog


def rows(count: int) -> list[dict[str, str]]:
    products = product_ids(200)
    return [
        {"sku": f"S{i}", "product_id": products[i % 200], "video_name": f"Item {i}"}
        for i in range(count)
    ]


SANDBOX = {"rate_limit": RateLimit(100_000, 60.0)}  # the `sandbox_url` of tests/conftest.py


def jogg(
    *args: str, url: str, tmp: Path, file_limit: int | None = None, **env_also: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process (so a file size limit binds only it)."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = os.environ | {"JOGG_API_KEY": "sk-sandbox", "XDG_DATA_HOME": str(tmp / "data")}
    env |= env_also
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "batch",
            "run",
            *args,
            "--base-url",
            url,
            "--offline",
            "--rate-limit",
            "100000/min",
        ],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=limit,
        check=False,
        timeout=120,
    )


def charged(url: str) -> Counter[str]:
    return Counter(s["name"] for s in submissions(url)["submissions"])


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write: by mode for a normal user; as root (who ignores modes), a
    read-only tmpfs mounted there."""
    folder = tmp_path / "out"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o700)
        return
    with tmpfs(folder, "ro,size=64k"):
        yield folder


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[None]:
    """A tmpfs mounted with `options` on `folder` while in the block (root only; skips saying
    why where even root cannot mount one)."""
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"root cannot mount a tmpfs ({options}) here: {mounted.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_results_folder_is_refused_or_reported_without_losing_rows(
    tmp_path: Path, read_only_folder: Path, sandbox_url: str
) -> None:
    """Results that cannot be written: exit 2 before sending, or exit 7 with the way back;
    no traceback either way, and the path is named."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(20))
    results = read_only_folder / "r.csv"
    done = jogg(
        str(catalog), "--results", str(results), "--state", str(tmp_path / "s.db"),
        url=sandbox_url, tmp=tmp_path,
    )  # fmt: skip
    assert done.returncode in (ExitCode.USAGE, ExitCode.LOCAL_IO), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert str(results) in done.stderr
    if os.geteuid() == 0:  # the folder is a read-only mount: said so, not "permission"
        assert "(a read-only file system)" in done.stderr
    if done.returncode == ExitCode.LOCAL_IO:  # sent before it found out: nothing lost
        again = jogg(str(catalog), "--state", str(tmp_path / "s.db"), url=sandbox_url, tmp=tmp_path)
        assert again.returncode == ExitCode.OK
        assert len(charged(sandbox_url)) == 20
        assert max(charged(sandbox_url).values()) == 1


def test_a_file_size_limit_mid_run_stops_sending_and_loses_nothing(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The state hits RLIMIT_FSIZE mid-run: exit 7, one clear error, no traceback; a rerun
    without the limit sends only what was never accepted, and every row is paid once."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(300))
    state = tmp_path / "state.db"
    args = (str(catalog), "--state", str(state), "--concurrency", "4")
    limited = jogg(*args, url=sandbox_url, tmp=tmp_path, file_limit=2_000_000)
    first = sum(charged(sandbox_url).values())
    assert limited.returncode == ExitCode.LOCAL_IO, limited.stderr[-2000:]
    assert "Traceback" not in limited.stderr
    assert "Task exception was never retrieved" not in limited.stderr
    assert "local failure" in limited.stderr
    assert f"Free space for the state ({state})" in limited.stderr.replace("\n", " ")
    assert "run stopped early: the state could not be written or read" in limited.stderr
    assert 0 < first < 300
    again = jogg(*args, url=sandbox_url, tmp=tmp_path)
    assert again.returncode == ExitCode.OK, again.stderr[-2000:]
    paid = charged(sandbox_url)
    assert len(paid) == 300
    assert max(paid.values()) == 1
    results = read_results(tmp_path / "catalog.results.csv")
    assert set(results["status"]) <= {"submitted", "already_submitted"}


@pytest.mark.parametrize("limit", [300_000, 500_000], ids=["beginning the run", "planning"])
def test_a_local_failure_before_any_request_left_is_exit_2(
    tmp_path: Path, sandbox_url: str, limit: int
) -> None:
    """The state cannot grow past its first pages, as the run begins or as it plans: it stops
    before any POST, so it is exit 2 ("nothing was sent"), not 7 (which says sending began),
    with one line saying so and no traceback."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(300))
    args = (str(catalog), "--state", str(tmp_path / "state.db"))
    limited = jogg(*args, url=sandbox_url, tmp=tmp_path, file_limit=limit)
    assert charged(sandbox_url) == {}
    assert limited.returncode == ExitCode.USAGE, limited.stderr[-2000:]
    assert "disk I/O error" in limited.stderr
    assert "Traceback" not in limited.stderr


@contextlib.contextmanager
def small_disk_at(folder: Path, size: str) -> Iterator[Path]:
    """`folder`, made, on a tmpfs of `size` while in the block (only root may mount one)."""
    if os.geteuid() != 0:
        pytest.skip("only root can mount the small tmpfs this needs (CI runs as root)")
    folder.mkdir()
    with tmpfs(folder, f"size={size}"):
        yield folder


def fill(folder: Path) -> None:
    """Writes into `folder` until its disk is full."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 256 KiB filesystem (a tmpfs; only root may mount one)."""
    with small_disk_at(tmp_path / "small", "256k") as folder:
        yield folder


def test_a_disk_too_full_for_the_results_is_refused_before_sending(
    tmp_path: Path, small_disk: Path, sandbox_url: str
) -> None:
    """A results folder with less room than the catalog (the results carry its columns): exit
    2 before any POST, naming the folder, where the run sent rows and then stopped with 7."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(10_000))
    assert catalog.stat().st_size > 256 * 1024
    done = jogg(
        str(catalog), "--results", str(small_disk / "r.csv"), "--state", str(tmp_path / "s.db"),
        url=sandbox_url, tmp=tmp_path,
    )  # fmt: skip
    assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
    assert f"{small_disk}: 0." in done.stderr
    assert "nothing was sent" in done.stderr
    assert charged(sandbox_url) == Counter()


def test_a_results_folder_without_room_for_the_outcome_columns_is_refused_before_sending(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Room for the catalog and a MiB is not enough: the results file adds each row's outcome
    columns (2.3 times a short-rowed catalog), so the run would be paid and then end without
    one. Exit 2, nothing sent."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(5_000))
    with small_disk_at(tmp_path / "two-mib", "2m") as folder:
        assert catalog.stat().st_size + (1 << 20) < shutil.disk_usage(folder).free
        done = jogg(
            str(catalog), "--results", str(folder / "r.csv"), "--state", str(tmp_path / "s.db"),
            url=sandbox_url, tmp=tmp_path,
        )  # fmt: skip
    assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
    assert "and each row's outcome" in done.stderr
    assert charged(sandbox_url) == Counter()


def test_a_state_folder_without_room_for_its_write_ahead_log_is_refused_before_sending(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The state's folder had room for a MiB, which the check asked for, while the ledger's
    write-ahead log grows by tens of KB a row until it is checkpointed at about 4 MB: a run
    of 1,000 rows was paid for dozens and stopped with exit 7. Exit 2, nothing sent."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(1000))
    with small_disk_at(tmp_path / "four-mib", "4m") as folder:
        done = jogg(str(catalog), "--state", str(folder / "s.db"), url=sandbox_url, tmp=tmp_path)
    assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
    assert "state database (its write-ahead log" in done.stderr
    assert charged(sandbox_url) == Counter()


@pytest.mark.parametrize("command", ["status", "retry"])
def test_a_results_file_a_full_disk_cannot_take_is_exit_7_and_left_as_it_was(
    tmp_path: Path, sandbox_url: str, command: str
) -> None:
    """`status` and `retry` rewrite the results file: on a disk that has filled since the run,
    exit 7 with one line naming the file (a traceback and exit 1 before), the file as it was,
    and a retry sends nothing (its file has no room)."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(10))
    env = os.environ | {"JOGG_API_KEY": "sk-sandbox", "XDG_DATA_HOME": str(tmp_path / "data")}
    with small_disk_at(tmp_path / "small", "2m") as folder:
        results = folder / "r.csv"
        run = jogg(
            str(catalog), "--results", str(results), "--state", str(tmp_path / "s.db"),
            "--max-videos", "4", url=sandbox_url, tmp=tmp_path,
        )  # fmt: skip
        assert run.returncode == ExitCode.ROWS_FAILED, run.stderr[-2000:]
        before = results.read_bytes()
        fill(folder)
        done = subprocess.run(
            [sys.executable, "-m", "batch", command, str(results), "--state",
             str(tmp_path / "s.db"), "--base-url", sandbox_url,
             *(["--rate-limit", "100000/min"] if command == "retry" else [])],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
        assert results.read_bytes() == before
    assert "Traceback" not in done.stderr
    if command == "retry":
        assert done.returncode == ExitCode.USAGE, done.stderr[-2000:]
        assert "free some space, or write elsewhere (nothing was sent)" in done.stderr
        assert sum(charged(sandbox_url).values()) == 4
    else:
        assert done.returncode == ExitCode.LOCAL_IO, done.stderr[-2000:]
        assert f"cannot write the results file {results}" in done.stderr


def test_a_run_lock_a_full_disk_cannot_take_is_a_state_error(tmp_path: Path) -> None:
    """The account's ledger folder full (the state elsewhere, with room): the lock's holder
    cannot be written, which is a StateError naming the lock (exit 2, nothing sent), not an
    OSError's traceback."""
    with small_disk_at(tmp_path / "ledgers", "64k") as folder:
        fill(folder)
        with pytest.raises(StateError, match="cannot write the run lock: No space"):
            take_lock(folder / "a.sending.lock", "pid 1", str)


def test_a_ledger_on_a_full_disk_is_not_called_no_ledger(tmp_path: Path, sandbox_url: str) -> None:
    """`state info` on a disk that filled since the run: SQLite cannot make the ledger's
    shared-memory file, and the message says it cannot be read, where it said "this file holds
    no jogg-batch ledger" (an operator might delete it)."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(3))
    with small_disk_at(tmp_path / "small", "2m") as folder:
        state = folder / "s.db"
        run = jogg(str(catalog), "--state", str(state), url=sandbox_url, tmp=tmp_path)
        assert run.returncode == ExitCode.OK, run.stderr[-2000:]
        for leftover in folder.glob("s.db-*"):
            leftover.unlink()  # as after a clean close
        fill(folder)
        info = subprocess.run(
            [sys.executable, "-m", "batch", "state", "info", "--state", str(state)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert info.returncode == ExitCode.USAGE, info.stderr
    assert f"{state}: cannot read the state database" in info.stderr
    assert "holds no jogg-batch ledger" not in info.stderr


@pytest.mark.parametrize(
    ("catalog_at", "results_at"),
    [
        (b"caf\xe9.csv", None),
        (b"caf\xe9/catalog.csv", None),
        (b"catalog.csv", b"r\xe9sultats.parquet"),
    ],
    ids=["catalog name", "catalog folder", "results name"],
)
def test_a_path_not_in_utf8_is_refused_before_sending(
    tmp_path: Path, sandbox_url: str, catalog_at: bytes, results_at: bytes | None
) -> None:
    """A file or folder named in Latin-1 (an old share, a ZIP), which pyarrow cannot open or
    write and the state cannot record, stops the run before any POST with exit 2 and a line
    naming the byte: never a traceback, nor a results file lost after sending."""
    catalog = Path(os.fsdecode(bytes(tmp_path) + b"/" + catalog_at))
    catalog.parent.mkdir(exist_ok=True)
    write_catalog(catalog, rows(3))
    args = [str(catalog)]
    if results_at is not None:
        args += ["--results", os.fsdecode(bytes(tmp_path) + b"/" + results_at)]
    refused = jogg(*args, url=sandbox_url, tmp=tmp_path)
    assert charged(sandbox_url) == {}
    assert refused.returncode == ExitCode.USAGE, refused.stderr[-2000:]
    assert "is not UTF-8 text (byte 0xE9)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_utf8_path_under_an_ascii_locale_is_run_as_the_same_catalog(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Under `LC_ALL=C` without UTF-8 mode (`PYTHONUTF8=0`), Python holds a UTF-8 name such as
    `café` as undecodable bytes: pyarrow could not open it (a traceback, exit 1). It runs, and
    the state knows it as the same catalog as a run under a UTF-8 locale does: nothing paid
    twice when cron and a person take turns."""
    (tmp_path / "café").mkdir()
    catalog = write_catalog(tmp_path / "café" / "catalogé.csv", rows(3))
    ascii_locale = jogg(str(catalog), url=sandbox_url, tmp=tmp_path, PYTHONUTF8="0", LC_ALL="C")
    assert ascii_locale.returncode == ExitCode.OK, ascii_locale.stderr[-2000:]
    results = catalog.with_name("catalogé.results.csv")
    assert list(read_results(results)["status"]) == ["submitted"] * 3
    utf8_locale = jogg(str(catalog), url=sandbox_url, tmp=tmp_path, PYTHONUTF8="1")
    assert utf8_locale.returncode == ExitCode.OK, utf8_locale.stderr[-2000:]
    assert list(read_results(results)["status"]) == ["already_submitted"] * 3
    assert sorted(charged(sandbox_url).values()) == [1, 1, 1]


def test_the_accounts_ledger_on_a_read_only_disk_says_how_to_put_it_elsewhere(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The default ledger (no --state given) on a file system remounted read-only: exit 2
    before sending, naming it the account's ledger and the way out (--state, XDG_DATA_HOME),
    where the message told to pass another path to --state, which nobody had given."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(3))
    with small_disk_at(tmp_path / "data", "4m") as data:
        assert jogg(str(catalog), url=sandbox_url, tmp=tmp_path).returncode == ExitCode.OK
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(data)], check=False)
        assert remounted.returncode == 0
        refused = jogg(str(catalog), url=sandbox_url, tmp=tmp_path)
    assert refused.returncode == ExitCode.USAGE, refused.stderr[-2000:]
    told = " ".join(refused.stderr.split())
    assert "the account's ledger " in told
    assert "pass --state PATH, or set XDG_DATA_HOME to a folder it may write in" in told
    assert len(charged(sandbox_url)) == 3
