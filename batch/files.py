"""Creating files safely: private modes, no symlink followed, whole files or nothing.

Every file jogg-batch creates goes through here. New files are 0600 (only the user who ran the
tool reads them: results carry catalog data and signed video URLs, the state carries every
request); a file that already exists keeps its mode when it is rewritten, so a results file
shared on purpose stays shared. Nothing here follows a symbolic link planted where a file is
expected: whole files are written to a fresh temporary file in the same folder and renamed over
the destination (a rename replaces a link, it never writes through it), and files opened in place
(the run lock, the state database) are opened with `O_NOFOLLOW` and checked with `fstat`.

A state database is a shared secret between runs of one user. One owned by somebody else, or
writable by group or others, is refused: a second user must never reset jobs in it, and
nobody but its owner should be able to make the tool believe a row was already paid for.
"""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Final

from batch.errors import LockedError, StateError

PRIVATE: Final = 0o600
PRIVATE_DIR: Final = 0o700
# A folder made for an output: nobody else may write in it (and delete the ledger there), even
# under a umask of 000, as a cron job may have.
SHARED_DIR: Final = 0o755


def make_folders(folder: Path) -> None:
    """Creates `folder` and its missing parents, each `SHARED_DIR` (less the umask)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(mode=SHARED_DIR, exist_ok=True)


_NOFOLLOW: Final = os.O_NOFOLLOW | os.O_CLOEXEC
# SQLite names these beside the database and gives them the database file's mode.
STATE_COMPANIONS: Final = ("-wal", "-shm", "-journal")


def kept_mode(path: Path, default: int = PRIVATE) -> int:
    """The permission bits a rewrite of `path` should have: its own if it is a regular file."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return default
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else default


@contextmanager
def atomic_writer(path: Path, *, perms: int | None = None) -> Iterator[IO[str]]:
    """Yields a text file to write; when the block succeeds it replaces `path` whole.

    `perms` defaults to the existing file's mode, else 0600. A device or a named pipe
    (`/dev/null`, `/dev/stdout`) is a stream, not a file to replace: it is written as it is
    (as root, a rename would put a regular file in place of the machine's /dev/null).
    """
    if _is_stream(path):
        with path.open("w", encoding="utf-8") as stream:
            yield stream
        return
    with (
        temporary_beside(path, perms=perms) as temporary,
        temporary.open("w", encoding="utf-8") as handle,
    ):
        yield handle


def _is_stream(path: Path) -> bool:
    try:
        mode = path.stat().st_mode  # through links: /dev/stdout is one
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


@contextmanager
def temporary_beside(
    path: Path, *, perms: int | None = None, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """A fresh private file in `path`'s folder for a writer that wants a path (pyarrow, pandas).

    When the block ends without error it is renamed over `path` with `perms` (default: the
    existing file's mode, else 0600); otherwise it is removed. `before_replace` is called just
    before the rename, and may raise to leave `path` as it is.
    """
    make_folders(path.parent)
    final_perms = kept_mode(path) if perms is None else perms
    # mkstemp: O_EXCL (never an existing file or link), mode 0600, an unguessable name.
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, final_perms)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sweep_leftovers(path)


# A temporary file untouched this long is no live writer's.
_LEFTOVER_SECONDS: Final = 3600


def _sweep_leftovers(path: Path) -> None:
    """Removes the temporary files of `path` that writers killed outright (SIGKILL, a power cut)
    left behind: a results file rewritten every 30 s piled them up, each as big as the file.
    Only regular files of ours, untouched for an hour."""
    cutoff = time.time() - _LEFTOVER_SECONDS
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with suppress(OSError):
            info = leftover.lstat()
            if (
                stat.S_ISREG(info.st_mode)
                and info.st_uid == os.geteuid()
                and info.st_mtime < cutoff
            ):
                leftover.unlink()


def write_text(path: Path, text: str, *, perms: int | None = None) -> None:
    """`path.write_text`, atomically, privately, never through a symlink."""
    with atomic_writer(path, perms=perms) as handle:
        handle.write(text)


def private_dir(path: Path) -> Path:
    """Creates `path` (and parents) if needed; it must be a real folder of ours, left 0700.

    Raises OSError when it is a symlink or belongs to another user.
    """
    make_folders(path.parent)
    path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a folder (a symbolic link?)")
    if info.st_uid != os.geteuid():
        raise OSError(f"{path} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, PRIVATE_DIR)
    return path


def read_or_create_private(path: Path, make: bytes) -> bytes:
    """The bytes of a private file of ours at `path`, writing `make` there first if it is absent.

    Two processes racing read the same bytes: the file appears whole through a hard link, which
    fails when another process got there first. Raises OSError for a link or a foreign file.
    """
    try:
        return read_private(path)
    except FileNotFoundError:
        pass
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.write(handle, make)
        os.fsync(handle)
        with suppress(FileExistsError):
            os.link(name, path)
    finally:
        os.close(handle)
        os.unlink(name)
    return read_private(path)


def read_private(path: Path) -> bytes:
    """The bytes of a regular file of this user, opened without following a link (0600 kept)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(f"{path} is not a regular file of this user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, PRIVATE)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# --- the state database and its lock ---------------------------------------------------------


def prepare_state(path: Path) -> None:
    """Checks a state database (and its WAL/SHM) before SQLite opens it; creates it 0600 if new.

    Raises StateError (exit 2) for a symlink, a file of another user, or one writable by group
    or others. A database of ours readable by others is narrowed to 0600.

    An existing database is checked by `lstat`, never opened: closing any descriptor of a file
    drops every POSIX lock this process holds on it, SQLite's included. Another process would
    then take itself for the database's last connection and delete the WAL under a run.
    """
    try:
        make_folders(path.parent)
        for companion in STATE_COMPANIONS:
            _check_state_file(path.with_name(path.name + companion))
        try:
            # SQLite would create it with the umask's mode; create it first so WAL/SHM are 0600.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, PRIVATE))
        except FileExistsError:
            _check_state_file(path)
    except OSError as exc:
        raise StateError(f"{path}: cannot open the state database: {_why(exc)}") from None


def open_lock(path: Path) -> int:
    """Opens (creating 0600) the run lock file without following a link; returns its fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, PRIVATE)
    except OSError as exc:
        raise StateError(f"{path}: cannot open the run lock: {_why(exc)}") from None
    try:
        _refuse_foreign(path, os.fstat(fd))
    except StateError:
        os.close(fd)
        raise
    return fd


def take_lock(path: Path, holder: str, held: Callable[[str], str]) -> int:
    """Takes the exclusive flock of the lock file `path` at once and writes `holder` (who holds
    it) in it; returns its fd, whose closing releases the lock. LockedError with the message
    `held(what the holder wrote)` when another process holds it."""
    fd = open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        written = os.read(fd, 4096).decode(errors="replace").strip()
        os.close(fd)
        raise LockedError(held(written or "another process")) from None
    try:
        write_holder(fd, holder)
    except OSError as exc:  # a full disk: the ledger beside it could not grow either
        os.close(fd)
        raise StateError(f"{path}: cannot write the run lock: {_why(exc)}") from None
    return fd


def write_holder(fd: int, holder: str) -> None:
    """Writes `holder` over what a lock file holds, then cuts the file to it: a kill between
    the two leaves a holder (with the old one's tail), never an empty lock that reads as a
    clean end. Encoded so that a path in no encoding is written too."""
    text = holder.encode(errors="backslashreplace")
    os.pwrite(fd, text, 0)
    os.ftruncate(fd, len(text))


def _check_state_file(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    _refuse_foreign(path, info)
    if stat.S_IMODE(info.st_mode) & 0o044:
        os.chmod(path, PRIVATE)


def _refuse_foreign(path: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise StateError(
            f"{path} is a symbolic link; jogg-batch does not follow links for its state. "
            f"Remove it, or pass --state with a real path"
        )
    if not stat.S_ISREG(info.st_mode):
        raise StateError(f"{path} is not a regular file; remove it or pass another --state")
    if info.st_nlink > 1:
        raise StateError(
            f"{path} has {info.st_nlink} names (hard links): the run lock goes by the name, so a "
            "run through another name would send beside this one and pay twice. Keep one name "
            "(copy the file for a backup instead of linking it), or pass another --state"
        )
    if info.st_uid != os.geteuid():
        raise StateError(
            f"{path} belongs to another user (uid {info.st_uid}); this state is theirs. "
            f"Run jogg-batch as that user, or pass --state with a file of your own"
        )
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise StateError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}), so "
            f"anyone could have changed which rows count as paid for. Check it, then "
            f"`chmod 600 {path}` (and its -wal/-shm files) to use it, or pass another --state"
        )


def _why(exc: OSError) -> str:
    if exc.errno == getattr(os, "ELOOP", None) or "Too many levels" in str(exc.strerror):
        return "it is a symbolic link; jogg-batch does not follow links for its state"
    return str(exc.strerror or exc)
