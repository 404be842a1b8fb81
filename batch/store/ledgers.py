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

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


@contextmanager
def hold_account(
    base_url: str,
    api_key: str,
    state: Path,
    *,
    knows_jobs: bool = True,
    settle_seconds: float = 0.0,
    root: Path | None = None,
) -> Iterator[float | None]:
    """Holds the account's sending lock on this machine while a run sends from `state`, or
    raises LockedError at once naming the run that holds it (and its ledger).

    Gives the last write of the ledger a run cut off (killed, the machine lost) was sending
    from, when that was another ledger: its last requests may still be in flight, unknown to
    `state`, and committed later (None: nothing to wait for). So is a ledger at the same path
    that `knows_jobs` not (deleted and made anew since), and one gone: when it last wrote is
    unknown, so it is taken as now. A run that ends, by an error or a
    signal too, leaves the lock empty: only a process that died leaves its holder there. One
    that ends within `settle_seconds` of that last write (stopped while it waited) leaves the
    cut-off run's holder there again, for the next run to wait out."""
    path = ledger_path(account_url(base_url), api_key, root=root).with_suffix(".sending.lock")
    holder = _holder(path)
    cut_off = _cut_off_ledger(holder)
    fd = files.take_lock(
        path,
        f"pid {os.getpid()}, ledger {state.absolute()}",
        lambda holder: (
            f"another jogg-batch on this machine is sending for this account ({holder}); two "
            "ledgers sending at once pay twice for the rows they share: wait for it to finish, "
            "or give both runs one ledger (leave --state out)"
        ),
    )
    last_write = None
    try:
        same = cut_off is not None and cut_off.resolve() == state.absolute().resolve()
        if cut_off is not None and not (same and knows_jobs):  # else it knows its `sending`
            last_write = _last_write(cut_off) or time.time()
        yield last_write
    finally:
        os.ftruncate(fd, 0)  # the run ended here, its answers awaited: no process was lost
        if last_write is not None and time.time() < last_write + settle_seconds:
            os.pwrite(fd, holder.encode(), 0)  # but the cut-off run's may still commit
        os.close(fd)  # closing releases the flock


def _holder(lock: Path) -> str:
    """What the last holder of the sending lock wrote in it (empty: it ended, or none yet)."""
    try:
        return lock.read_text(errors="replace")
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return ""


def _cut_off_ledger(holder: str) -> Path | None:
    """The ledger the last holder of the sending lock wrote, when it never ended (its
    `pid ..., ledger ...` is still there)."""
    _, found, ledger = holder.partition(", ledger ")
    return Path(ledger.strip()) if found and ledger.strip() else None


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
    case, no default port, no trailing slash; a URL that cannot be read is kept as written
    (the client refuses it)."""
    try:
        url = urlsplit(base_url.strip())
        port = url.port
    except ValueError:
        return base_url.rstrip("/")
    scheme, host = url.scheme.lower(), url.hostname
    if not host:
        return base_url.rstrip("/")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host += f":{port}"
    return f"{scheme}://{host}{url.path.rstrip('/')}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _salt(folder: Path) -> bytes:
    """The random salt of this data directory, made once (batch.files makes it race-safe)."""
    try:
        files.private_dir(folder)
        return files.read_or_create_private(folder / "salt", secrets.token_hex(32).encode())
    except OSError as exc:
        raise StateError(
            f"{folder / 'salt'}: cannot read or create the ledger salt ({exc})"
        ) from exc
