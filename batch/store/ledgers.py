"""Where an account's ledger lives: one state per API account, whatever the files are called.

What was paid for belongs to the account, not to a catalog's file name: a dated hand-off
(`catalog_20261126.csv`, then `catalog_20261127.csv`), a new `--results`, or the same rows as
Parquet must all find the same jobs. So by default the state is

    <user data dir>/jogg-batch/ledgers/<account id>.db

(`~/.local/share/jogg-batch/...` on Linux; `XDG_DATA_HOME` moves it), where the account id is an
HMAC of the API base URL and key under a random salt kept beside the ledgers (0600): the key is
never written, and a copied ledger directory reveals nothing that would confirm a guessed key.
`--state` or `run.state` still choose another place. Whichever ledger a run sends from, it holds
the account's sending lock on this machine (`hold_account`), beside the ledgers: two ledgers
sending for one account at once would each pay for the rows they share.

Versions before 0.2 kept the state beside the results file (`<name>.jogg-state.db`). Such a state
is found and merged into the account's ledger (`StateStore.absorb`), never silently ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import platformdirs

from batch import files
from batch.errors import StateError
from batch.store.backend import StateLocation

APP_NAME = "jogg-batch"


@dataclass(frozen=True, slots=True)
class StateChoice:
    """The state a command uses, and an older per-file state to merge into it first."""

    path: StateLocation
    legacy: Path | None = None


def data_dir() -> Path:
    return platformdirs.user_data_path(APP_NAME)


def ledger_path(base_url: str, api_key: str, *, root: Path | None = None) -> Path:
    """The default state of the account behind this key at this API."""
    folder = (root or data_dir()) / "ledgers"
    account = hmac.new(_salt(folder), f"{base_url}\n{api_key}".encode(), hashlib.sha256)
    return folder / f"{account.hexdigest()[:20]}.db"


class AccountHold:
    """A run's hold of the account's sending lock: what a run cut off before it wrote its
    ledger (`last_write`, None: nothing to wait for), and `sending`, which notes each attempt in
    the lock file before its request leaves."""

    def __init__(self, fd: int, holder: str, ledger_id: str, last_write: float | None) -> None:
        self._fd = fd
        self._holder = holder
        self._ledger_id = ledger_id
        self.last_write = last_write
        # Set by a run that ends with requests whose answer it never had (a signal, a deadline
        # before they settled): the lock then keeps its last attempt for the next run.
        self.unsettled = False
        self.last_sent: float | None = None  # when this run's last request left

    def sending(self, run_id: int, attempt_id: int) -> None:
        """Notes in the lock that attempt `attempt_id` of run `run_id` of this ledger goes out
        now. The next run trusts its ledger only if that ledger knows this attempt: one
        restored from a backup, or made anew after it was deleted, does not, and waits for what
        may be in flight. Same length each time, so one write replaces it in place."""
        noted = f"{run_id}.{attempt_id}.{self._ledger_id}"
        files.write_holder(self._fd, _holder_text(self._holder, noted))
        self.last_sent = time.time()


@contextmanager
def hold_account(
    base_url: str,
    api_key: str,
    state: Path,
    *,
    ledger_id: str = "",
    knows: Callable[[str | None], bool] | None = None,
    settle_seconds: float = 0.0,
    root: Path | None = None,
    account: str | None = None,
) -> Iterator[AccountHold]:
    """Holds the account's sending lock on this machine while a run sends from `state`, or
    raises LockedError at once naming the run that holds it (and its ledger). The lock is the
    key's, or with `account` (`account_id`: the account `whoami` names) the account's whatever
    its key: a run takes both where it knows the account, so two keys of one account (one
    rotated while a run sends, or right after one was cut off) wait and refuse as one key does.

    The lock names the ledger and the last attempt sent (`AccountHold.sending`). A run that
    ends with its ledger where it was leaves no attempt there (at most when it ended, below):
    only a process that died, or one whose ledger was deleted or replaced under it, leaves its
    attempt there. The next run then
    waits out the settle period from that run's last request (`AccountHold.last_write`) unless
    `state` is the ledger it sent from and `knows(attempt)` its last attempt (`run.attempt.`
    and `ledger_id`, the ledger file's own random id): one restored from a backup, made anew,
    or another file would not know the requests it may have had in flight. (A holder an
    earlier version wrote names no attempt: `knows(None)` stands for "the ledger has jobs".)
    A run that waits notes how long in the lock until it sends, so that being stopped or
    killed while it waits leaves the next run the same wait.

    A run that ended leaves when it sent its last request (`ended T`): the account's listing
    may show what it sent only up to the settle period later, so a run from another ledger
    (a new --state, the ledger deleted) waits until then too, its listing sync then finding
    those videos by their tags; one from the same ledger knows them and does not wait."""
    path = ledger_path(account_url(base_url), api_key, root=root).with_suffix(".sending.lock")
    if account is not None:
        path = path.with_name(f"{account}.sending.lock")
    holder, noted_at = _holder(path)
    cut_off = _cut_off_ledger(holder)
    noted = _noted_attempt(holder)
    last_write = _inherited_wait(noted)
    ended = _ended(noted)
    if ended is not None and cut_off is not None:
        at, its_ledger = ended
        # Another ledger, or one made anew at its path (deleted, put back from a backup).
        if not _same_file(cut_off, state) or its_ledger not in ("", ledger_id):
            last_write = max(at, last_write or at)
    # A holder this tool did not write whole (a disk error, a hand edit) cannot say what its
    # run had in flight: it is waited out, as a cut-off run's from another ledger is.
    unreadable = cut_off is None and bool(holder.strip())
    if unreadable or (
        cut_off is not None and not _knows_its_last_attempt(noted, cut_off, state, knows)
    ):
        times = (last_write, noted_at, None if cut_off is None else _last_write(cut_off))
        last_write = max((t for t in times if t is not None), default=time.time())
    if last_write is not None:  # killed while it waits, the next run waits as long
        note = f"after {last_write:.3f}"
    elif noted is not None and noted[0].isdigit():
        # A cut-off run of this ledger, which knows its requests: until this run sends, the
        # lock keeps naming them, so a run from another ledger still waits for them.
        note = noted
    else:
        note = None
    mine = f"pid {os.getpid()}, ledger {state.absolute()}"
    # The note goes in with the holder, in one write: a kill between two would leave `none`.
    fd = files.take_lock(
        path,
        _holder_text(mine, note),
        lambda holder: (
            "another jogg-batch on this machine is sending for this account "
            f"({_ATTEMPT.sub(', ledger ', holder)}); two "
            "ledgers sending at once pay twice for the rows they share: wait for it to finish, "
            "or give both runs one ledger (leave --state out)"
        ),
    )
    ledger_file = _file_id(state)
    hold = AccountHold(fd, mine, ledger_id, last_write)
    try:
        yield hold
    finally:
        # A ledger deleted or replaced under the run lost what it recorded, and requests a run
        # never had an answer to may still commit: then its holder stays, as a killed run's.
        if _file_id(state) == ledger_file and not hold.unsettled:
            # The latest of what the next run may have to wait for, while it may: requests of
            # a cut-off run that may still commit (`after`), or ones answered, awaited and
            # recorded, but maybe not listed yet (`ended`: this run's, or an earlier run's
            # that this one, sending nothing, leaves noted).
            notes = [
                (hold.last_write, "after {:.3f}"),
                (hold.last_sent, "ended {:.3f}:" + ledger_id),
                (None, "") if ended is None else (ended[0], "ended {:.3f}:" + ended[1]),
            ]
            live = [
                (at, note)
                for at, note in notes
                if at is not None and time.time() < at + settle_seconds
            ]
            if live:
                at, note = max(live)
                files.write_holder(fd, _holder_text(mine, note.format(at)))
            else:
                os.ftruncate(fd, 0)  # the run ended here, its answers awaited and recorded
        os.close(fd)  # closing releases the flock


def account_id(base_url: str, name: str, *, root: Path | None = None) -> str:
    """The account `whoami` names (`name`: its email, else its user name) at this API, as the
    lock of its runs is named (an HMAC under the salt: the name is never written)."""
    folder = (root or data_dir()) / "ledgers"
    text = f"{account_url(base_url)}\naccount {name}"
    return "account-" + hmac.new(_salt(folder), text.encode(), hashlib.sha256).hexdigest()[:20]


def remember_account(
    base_url: str, api_key: str, account: str, *, root: Path | None = None
) -> None:
    """Notes which account the key belongs to, so that a run that does not ask (`--offline`)
    takes the account's lock too. A note that cannot be written is left (the key's lock holds)."""
    with contextlib.suppress(OSError):
        if known_account(base_url, api_key, root=root) != account:
            files.write_text(_account_note(base_url, api_key, root), account)


def known_account(base_url: str, api_key: str, *, root: Path | None = None) -> str | None:
    """The account a run with this key noted (`remember_account`), or None."""
    try:
        note = files.read_private(_account_note(base_url, api_key, root))
        account = note.decode(errors="replace").strip()
    except OSError:
        return None
    return account if _ACCOUNT_ID.fullmatch(account) else None


_ACCOUNT_ID: Final = re.compile(r"account-[0-9a-f]{20}")


def _account_note(base_url: str, api_key: str, root: Path | None) -> Path:
    """Beside the key's ledger: the account the key belongs to."""
    return ledger_path(account_url(base_url), api_key, root=root).with_suffix(".account")


def _holder_text(holder: str, attempt: str | None) -> str:
    """`pid 7, attempt 3.120, ledger /path`, the attempt as `run.attempt` (padded to one
    length), `none` before the first request, or `after T` while the run waits for what a run
    cut off at T may have had in flight."""
    pid, _, ledger = holder.partition(", ledger ")
    noted = "none" if attempt is None else attempt
    return f"{pid}, attempt {noted:<60}, ledger {ledger}"


def _knows_its_last_attempt(
    noted: str | None, cut_off: Path, state: Path, knows: Callable[[str | None], bool] | None
) -> bool:
    """Whether `state` is the cut-off run's ledger and holds its last attempt `noted` (so
    also the `sending` record of every request it had in flight)."""
    if noted is not None and not noted[0].isdigit():
        return True  # it sent nothing, or ended: `_inherited_wait`'s and `_ended`'s
    if not _same_file(cut_off, state):
        return False
    return knows is not None and knows(noted)  # None: an earlier version's holder


_ATTEMPT: Final = re.compile(
    r", attempt (none|after [\d.]+|ended [\d.]+(?::[0-9a-f]*)?|\d+\.\d+\.[0-9a-f]+) *, ledger "
)


def _noted_attempt(holder: str) -> str | None:
    """What the holder's note says (`3.7.ab12`, `none`, `after T`); None for a holder an
    earlier version wrote, or none."""
    found = _ATTEMPT.search(holder)
    return None if found is None else found[1]


def _inherited_wait(noted: str | None) -> float | None:
    """When a run cut off before a run that was waiting for it was, itself cut off: that
    waiting run's `after T`."""
    if noted is None or not noted.startswith("after "):
        return None
    return float(noted.removeprefix("after "))


def _ended(noted: str | None) -> tuple[float, str] | None:
    """When the last request of a run that ended left, and its ledger file's own id (its
    `ended T:ID`)."""
    if noted is None or not noted.startswith("ended "):
        return None
    at, _, ledger_id = noted.removeprefix("ended ").partition(":")
    return float(at), ledger_id


def _same_file(ledger: Path, state: Path) -> bool:
    return ledger.resolve() == state.absolute().resolve()


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (device and inode), None when none is."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _holder(lock: Path) -> tuple[str, float | None]:
    """What the last holder of the sending lock wrote in it (empty: it ended, or none yet), and
    when it last wrote it."""
    try:
        return lock.read_text(errors="replace"), lock.stat().st_mtime
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return "", None


def _cut_off_ledger(holder: str) -> Path | None:
    """The ledger the last holder of the sending lock wrote, when it never ended (its
    `pid ..., ledger ...` is still there)."""
    _, found, ledger = holder.partition(", ledger ")
    return Path(ledger) if found and ledger.strip() else None  # a path may end in a space


def _last_write(ledger: Path) -> float | None:
    """When `ledger` (SQLite, written before and after every request) was last written."""
    times = []
    for path in (ledger, ledger.with_name(ledger.name + "-wal")):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=None)


def legacy_state_path(results: Path) -> Path:
    """Where jogg-batch 0.1 kept the state of a results file."""
    stem = results.name.removesuffix(results.suffix).removesuffix(".results")
    return results.with_name(stem + ".jogg-state.db")


def choose_state(
    explicit: StateLocation | None, results: Path | None, base_url: str, api_key: str
) -> StateChoice:
    """`explicit` when given; else the account's ledger, with the 0.1 state beside the results
    (when there is one) to merge into it."""
    if explicit is not None:
        return StateChoice(explicit)
    ledger = ledger_path(account_url(base_url), api_key)
    written = ledger_path(base_url.rstrip("/"), api_key)
    if not ledger.exists() and written.exists():  # named by an earlier version, as spelled
        ledger = written
    legacy = legacy_state_path(results) if results is not None else None
    if legacy is not None and legacy.is_file() and legacy.resolve() != ledger.resolve():
        return StateChoice(ledger, legacy)
    return StateChoice(ledger)


def account_url(base_url: str) -> str:
    """The API base URL as the account's ledger is named by: `https://API.jogg.ai:443/` and
    `https://api.jogg.ai` are one account, so two runs spelling it otherwise share one ledger
    and its lock (each had its own, and both paid for every row). Scheme and host in lower
    case, no default port, no trailing slash, the path's `.` and `..` and empty segments
    resolved, and a host's trailing dot (`api.jogg.ai.`, DNS's root) left out; a URL that
    cannot be read is kept as written (the client refuses it)."""
    try:
        url = urlsplit(base_url.strip())
        port = url.port
    except ValueError:
        return base_url.rstrip("/")
    scheme, host = url.scheme.lower(), (url.hostname or "").rstrip(".")
    if not host:
        return base_url.rstrip("/")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host += f":{port}"
    return f"{scheme}://{host}{_resolved(url.path)}"


def _resolved(path: str) -> str:
    """`/v2/..`, `/.`, `//` -> ``: the path a server resolves (RFC 3986, 5.2.4), no slash last."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return "".join(f"/{segment}" for segment in segments)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _salt(folder: Path) -> bytes:
    """The random salt of this data directory, made once (batch.files makes it race-safe)."""
    try:
        files.private_dir(folder)
        return files.read_or_create_private(folder / "salt", secrets.token_hex(32).encode())
    except OSError as exc:
        raise StateError(
            f"{folder / 'salt'}: cannot read or create the ledger salt ({exc}); make the data "
            "directory writable, or point XDG_DATA_HOME at one that is (the same for every run "
            "of this account: the account's sending lock is there, whatever --state says)"
        ) from exc
