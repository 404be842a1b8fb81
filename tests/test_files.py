"""Files the tool creates: private modes, no symlink followed, a foreign state refused."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from batch import files
from batch.cli import main
from batch.errors import StateError
from batch.joggai.lookup import LookupCache
from batch.store import StateStore
from batch.store.results import read_results, state_outcomes, write_results, write_table
from tests.helpers import simple_rows, write_catalog

VICTIM_TEXT = "a file the attacker wants overwritten\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(VICTIM_TEXT)
    return path


def _store_with_a_run(path: Path) -> None:
    with StateStore(path) as store:
        store.begin_run("catalog.csv", dry_run=False)


# --- the state --------------------------------------------------------------------------------


def test_state_database_wal_shm_and_lock_are_created_0600(tmp_path: Path) -> None:
    """SQLite gives WAL and SHM the database's mode, and the database is made 0600 first."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "state.db"
        with StateStore(path) as store:
            store.lock()
            store.begin_run("catalog.csv", dry_run=False)
            made = {p.name: mode(p) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert made == {
        "state.db": 0o600,
        "state.db-wal": 0o600,
        "state.db-shm": 0o600,
        "state.db.lock": 0o600,
    }


def test_folders_made_for_a_state_and_a_ledger_are_nobody_elses_to_write(tmp_path: Path) -> None:
    """Under a cron job's umask of 000, the folders made for a state (and the account's ledgers)
    were 0777: anyone could delete the ledger there and the next run would pay again."""
    old = os.umask(0)
    try:
        state = tmp_path / "a" / "b" / "state.db"
        with StateStore(state):
            pass
        files.private_dir(tmp_path / "xdg" / "jogg-batch" / "ledgers")
    finally:
        os.umask(old)
    made = [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "xdg", tmp_path / "xdg" / "jogg-batch"]
    assert [mode(folder) for folder in made] == [0o755] * 4
    assert mode(tmp_path / "xdg" / "jogg-batch" / "ledgers") == 0o700


def test_an_existing_state_readable_by_others_is_narrowed_to_0600(tmp_path: Path) -> None:
    """A state made by an older version (0644) keeps working and stops being readable by all."""
    path = tmp_path / "state.db"
    _store_with_a_run(path)
    path.chmod(0o644)
    _store_with_a_run(path)
    assert mode(path) == 0o600


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_state_writable_by_group_or_others_is_refused(tmp_path: Path, suffix: str) -> None:
    """Anyone could have edited which rows count as paid: refused with what to do."""
    path = tmp_path / "state.db"
    _store_with_a_run(path)
    shared = path.with_name(path.name + suffix)  # WAL and SHM: as a killed run leaves them
    shared.touch()
    shared.chmod(0o666)
    with pytest.raises(StateError, match=r"writable by group or others.*chmod 600"):
        StateStore(path)


def test_plan_on_a_shared_state_exits_2_with_the_reason(tmp_path: Path) -> None:
    """The CLI says why and exits 2; no traceback."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    state = tmp_path / "c.jogg-state.db"
    _store_with_a_run(state)
    state.chmod(0o664)
    result = CliRunner().invoke(main, ["plan", str(catalog), "--state", str(state)])
    assert result.exit_code == 2
    assert "is writable by group or others" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_symlink_at_the_state_or_its_wal_is_refused(
    tmp_path: Path, victim: Path, suffix: str
) -> None:
    """SQLite would write through the link; the store refuses it and the target is untouched."""
    path = tmp_path / "state.db"
    if suffix:
        _store_with_a_run(path)
    path.with_name(path.name + suffix).symlink_to(victim)
    with pytest.raises(StateError, match="symbolic link"):
        StateStore(path)
    assert victim.read_text() == VICTIM_TEXT


@pytest.mark.parametrize("suffix", ["", ".lock"])
def test_a_state_with_a_second_name_is_refused(tmp_path: Path, suffix: str) -> None:
    """A hard link gives the ledger a second name, and its own lock file: two runs could send
    at once. The store refuses it, at the state or at its lock."""
    path = tmp_path / "state.db"
    _store_with_a_run(path)
    target = path.with_name(path.name + suffix)
    target.touch()
    os.link(target, tmp_path / "second-name")
    with pytest.raises(StateError, match="2 names"), StateStore(path) as store:
        store.lock()


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path: Path, victim: Path) -> None:
    """The lock used to be truncated and given the pid: through a link, that was any file."""
    path = tmp_path / "state.db"
    path.with_name("state.db.lock").symlink_to(victim)
    with StateStore(path) as store, pytest.raises(StateError, match="symbolic link"):
        store.lock()
    assert victim.read_text() == VICTIM_TEXT


# --- files people read ------------------------------------------------------------------------


SANDBOX = {"rate_limit": None}  # the `sandbox_url` of tests/conftest.py


def test_dry_run_files_are_private_and_planted_links_are_replaced(
    tmp_path: Path, victim: Path, sandbox_url: str
) -> None:
    """Results, requests.jsonl and the summary: 0600, and a link at their path is not followed."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    out = tmp_path / "out"
    out.mkdir()
    results, requests, summary = out / "c.results.csv", out / "c.requests.jsonl", out / "s.json"
    for link in (requests, summary):
        link.symlink_to(victim)
    args = ["run", str(catalog), "--results", str(results), "--summary-json", str(summary)]
    args += ["--dry-run", "--offline", "--base-url", sandbox_url]
    result = CliRunner().invoke(main, args, env={"JOGG_API_KEY": "sk-sandbox"})
    assert result.exit_code == 0, result.stderr
    assert victim.read_text() == VICTIM_TEXT
    for path in (results, requests, summary):
        assert not path.is_symlink()
        assert mode(path) == 0o600, path
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_report_output_is_private_and_a_link_there_is_not_followed(
    tmp_path: Path, victim: Path
) -> None:
    """`report --output` writes a new 0600 file in place of a planted link."""
    results = tmp_path / "r.results.csv"
    write_results(results, [pa.table({"sku": ["a"]})], lambda a, b: state_outcomes([], a, b))
    report = tmp_path / "report.html"
    report.symlink_to(victim)
    args = ["report", str(results), "--format", "html", "--output", str(report)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert victim.read_text() == VICTIM_TEXT
    assert mode(report) == 0o600
    assert "<html" in report.read_text()


def test_a_rewritten_results_file_keeps_its_mode(tmp_path: Path) -> None:
    """A results file shared on purpose (0640) stays shared when status or retry rewrite it."""
    results = tmp_path / "r.results.csv"
    write_results(results, [pa.table({"sku": ["a"]})], lambda a, b: state_outcomes([], a, b))
    assert mode(results) == 0o600
    results.chmod(0o640)
    write_table(read_results(results), results)
    assert mode(results) == 0o640


def test_formula_column_names_are_neutralised_and_read_back(tmp_path: Path) -> None:
    """A catalog column named `=cmd()` is `'=cmd()` in the CSV header and `=cmd()` once read."""
    results = tmp_path / "r.results.csv"
    inputs = pa.table({"=cmd()": ["x"], "+sum": ["=1+1"], "sku": ["a"]})
    write_results(results, [inputs], lambda a, b: state_outcomes([], a, b))
    header = results.read_text().splitlines()[0]
    assert header.startswith('"\'=cmd()","\'+sum","sku","row",')
    frame = read_results(results)
    assert list(frame.columns[:3]) == ["=cmd()", "+sum", "sku"]
    assert frame["+sum"][0] == "=1+1"


def test_results_times_are_iso_utc_seconds_and_formula_cells_quoted(tmp_path: Path) -> None:
    """Unix times become `YYYY-MM-DDTHH:MM:SSZ` (fraction dropped, empty stays empty), and
    only text cells that start like a formula get a leading quote."""
    results = tmp_path / "r.results.csv"
    outcome = (1, "submitted", "v1", 0, "-1 left", 1, 1764199807.9)
    rows: list[tuple[object, ...]] = [
        outcome + (None,) * 6 + (0.0, None),
        (2, "failed", "v2", 1, "ok", 1, None) + (None,) * 8,
    ]
    inputs = pa.table({"sku": ["@a", "b-c"], "note": ["\tx", "x="]})
    write_results(results, [inputs], lambda a, b: state_outcomes(rows, a, b))
    frame = read_results(results)
    assert list(frame["submitted_at"]) == ["2025-11-26T23:30:07Z", ""]
    assert list(frame["completed_at"]) == ["1970-01-01T00:00:00Z", ""]
    lines = results.read_text().splitlines()
    assert lines[1].startswith(""""'@a","'\tx","1","submitted","v1","0","'-1 left",""")
    assert lines[2].startswith('"b-c","x=","2","failed",')


def test_atomic_writer_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    """An error while writing keeps the old file and removes the temporary one."""
    path = tmp_path / "summary.json"
    path.write_text("old")

    def interrupted() -> None:
        with files.atomic_writer(path) as out:
            out.write("half")
            raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        interrupted()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --- the look-up cache -------------------------------------------------------------------------


def test_lookup_cache_is_private_and_named_by_a_salted_hmac(tmp_path: Path) -> None:
    """0700 folders, 0600 files and salt; the same key and URL get another name elsewhere."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(mode=0o755)
    for root in (one, two):
        LookupCache(root, "https://api.jogg.ai", "sk-key").store("music", [{"id": 1}])
    names = [next(p.name for p in root.iterdir() if p.is_dir()) for root in (one, two)]
    assert names[0] != names[1]
    assert mode(one) == 0o700
    assert mode(one / "salt") == 0o600
    assert mode(one / names[0]) == 0o700
    assert mode(one / names[0] / "music.json") == 0o600
    assert LookupCache(one, "https://api.jogg.ai", "sk-key").load("music") == [{"id": 1}]


def test_a_symlinked_cache_folder_is_not_used(tmp_path: Path) -> None:
    """A cache folder that is a link elsewhere is skipped with a warning: look-ups still work."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "cache"
    link.symlink_to(elsewhere)
    cache = LookupCache(link, "https://api.jogg.ai", "sk-key")
    cache.store("music", [{"id": 1}])
    assert cache.load("music") is None
    assert not list(elsewhere.iterdir())


# --- two users ---------------------------------------------------------------------------------


def _nobody() -> int:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a second user (os.setuid in a forked child)")
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no 'nobody' user on this machine")


def _as_user(uid: int, action: Callable[[], int]) -> int:
    """Runs `action` in a forked child as `uid`; returns its exit status (99: it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(pwd.getpwuid(uid).pw_gid)
            os.setuid(uid)
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder both users can reach, like /tmp (sticky, world-writable)."""
    folder = Path(tempfile.mkdtemp(prefix="jogg-two-users-"))
    folder.chmod(0o1777)
    try:
        yield folder
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def _refused(path: Path, expected: str) -> Callable[[], int]:
    def open_it() -> int:
        try:
            with StateStore(path) as store:
                store.lock()
                store.mark_not_attempted(1)  # what a second user's run would write
        except StateError as error:
            return 3 if expected in str(error) else 4
        return 0

    return open_it


def test_a_second_user_cannot_touch_the_state_of_the_first(shared_dir: Path) -> None:
    """Even with the database left writable to all, nobody's run is refused and writes nothing."""
    nobody = _nobody()
    path = shared_dir / "state.db"
    _store_with_a_run(path)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        if (shared_dir / name).exists():
            (shared_dir / name).chmod(0o666)
    before = path.read_bytes()
    assert _as_user(nobody, _refused(path, "belongs to another user")) == 3
    assert path.read_bytes() == before
    assert not (shared_dir / "state.db.lock").exists()


def test_root_refuses_a_state_planted_by_another_user(shared_dir: Path) -> None:
    """A state someone else made (and could change at will) is refused, not used."""
    nobody = _nobody()
    path = shared_dir / "state.db"

    def plant() -> int:
        _store_with_a_run(path)
        return 0

    assert _as_user(nobody, plant) == 0
    assert path.stat().st_uid == nobody
    with pytest.raises(StateError, match=f"belongs to another user \\(uid {nobody}\\)"):
        StateStore(path)


def test_a_cache_folder_of_another_user_is_not_used(shared_dir: Path) -> None:
    """Look-ups go on without a cache rather than trusting a folder somebody else owns."""
    nobody = _nobody()
    root = shared_dir / "cache"
    root.mkdir()
    os.chown(root, nobody, nobody)
    cache = LookupCache(root, "https://api.jogg.ai", "sk-key")
    cache.store("music", [{"id": 1}])
    assert cache.load("music") is None
    assert not list(root.iterdir())
    root.rmdir()


def test_a_named_pipe_or_device_is_written_to_not_replaced(tmp_path: Path) -> None:
    """`--summary-json /dev/null` or a named pipe: the text goes into the stream, and the node
    stays what it was (a rename would have put a regular file there, /dev/null too as root)."""
    pipe = tmp_path / "summary.fifo"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    files.write_text(pipe, '{"exit_code": 0}\n')
    reader.join(timeout=10)
    assert received == ['{"exit_code": 0}\n']
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


def test_temporary_files_a_killed_writer_left_are_swept_by_the_next_write(tmp_path: Path) -> None:
    """A writer killed outright (SIGKILL) leaves its temporary file: the next write of the same
    file removes those untouched for an hour, and leaves a fresh one (a live writer's), another
    file's, and a link alone."""
    results = tmp_path / "c.results.csv"
    stale, fresh = tmp_path / ".c.results.csv.ab12cd.tmp", tmp_path / ".c.results.csv.ef34gh.tmp"
    other, link = tmp_path / ".other.csv.ab12cd.tmp", tmp_path / ".c.results.csv.link.tmp"
    for leftover in (stale, fresh, other):
        leftover.write_text("half a file")
    link.symlink_to(other)
    hour_ago = os.stat(stale).st_mtime - 3700
    for old in (stale, other):
        os.utime(old, (hour_ago, hour_ago))
    os.utime(link, (hour_ago, hour_ago), follow_symlinks=False)
    files.write_text(results, "row\n")
    assert results.read_text() == "row\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [results.name, fresh.name, other.name, link.name]
    )
