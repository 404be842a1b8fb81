"""Output paths checked before anything is sent: where a run writes must be writable and must
not be one of its inputs.

A run writes its results file, its state database, `--summary-json` and, for `--dry-run`, the
request bodies it would send. Each is refused (ConfigError, exit 2, naming the path and the fix)
when it is the catalog or another of these outputs (see `same_file`), an existing directory, or
in a folder that cannot be created or written. Missing folders are created here, before the
first POST, so that no answer is ever lost for want of a place to write it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from batch import files, storage
from batch.config import RunConfig
from batch.errors import CatalogError, ConfigError
from batch.storage import Location
from batch.store.ledgers import data_dir
from batch.store.results import results_format


@dataclass(frozen=True, slots=True)
class Output:
    """One file a run writes, and the option that names it (for the message)."""

    path: Location
    what: str
    option: str
    fix: str | None = None  # what to do, when not "pass another path to `option`"


def planned_requests_path(results: Location) -> Location:
    """Where --dry-run writes the request bodies it would send (JSON Lines)."""
    stem = results.name.removesuffix(results.suffix).removesuffix(".results")
    return results.with_name(stem + ".requests.jsonl")


def outputs_of(config: RunConfig) -> list[Output]:
    """Every file the run described by `config` writes."""
    outputs = [Output(config.results, "results file", "--results")]
    if isinstance(config.state, Path) and config.state.parent == data_dir() / "ledgers":
        # The account's ledger, which no option named: say how to put it elsewhere.
        fix = "pass --state PATH, or set XDG_DATA_HOME to a folder it may write in"
        outputs.append(Output(config.state, "state database", "the account's ledger", fix))
    elif isinstance(config.state, Path):  # a PostgreSQL state is no file of ours
        outputs.append(Output(config.state, "state database", "--state"))
    if config.summary_json is not None:
        outputs.append(Output(config.summary_json, "summary", "--summary-json"))
    if config.dry_run:
        requests = planned_requests_path(config.results)
        outputs.append(Output(requests, "dry-run requests file", "--results"))
    return outputs


def check_outputs(config: RunConfig, *, create: bool = True, rows: int = 0) -> None:
    """Refuse any output the run could not write, or that would overwrite an input.

    With `create`, missing folders are made now; without (for `validate`), it is enough that
    the nearest existing folder could hold them. `rows`: the catalog's, when known.
    """
    outputs = outputs_of(config)
    results_format(config.results)
    inputs = [Output(config.catalog, "catalog", "CATALOG")]
    for index, output in enumerate(outputs):
        for other in inputs + outputs[:index]:
            strict = other in inputs or "state database" in (output.what, other.what)
            if same_file(output.path, other.path, strict=strict):
                raise ConfigError(
                    f"{output.option} {output.path}: is also the {other.what}; writing the "
                    f"{output.what} there would destroy it. Pass another path to {output.option}"
                )
        check_writable(output.path, output.what, output.option, create=create, fix=output.fix)
    check_room(config, rows)


# Room every local output folder must have before a run sends: the state grows by a few pages
# as rows are planned and sent.
_MARGIN = 1 << 20
# What a results file adds to each catalog row: its outcome columns (row, status, video id,
# code, attempts, times, the render's URLs once polled) and the quotes around every cell.
_OUTCOME_BYTES = 400
# SQLite's write-ahead log grows by tens of KB a row (each request is written before and after
# it is sent: 4 MB for 76 rows of 200 bytes) until it is checkpointed, at about 1,000 pages.
_WAL_ROOM = 6 << 20
_WAL_PER_CATALOG_BYTE = 512


def check_room(config: RunConfig, rows: int = 0) -> None:
    """ConfigError (nothing sent) when a disk is too full for the run's outputs: the results
    file takes the catalog's size (it carries the catalog's columns) and `_OUTCOME_BYTES` a
    row, and the state its write-ahead log's room and the catalog's size (a new job keeps its
    row's request). A disk found full after the first POSTs would stop the run with exit 7."""
    try:
        catalog = config.catalog.stat().st_size if isinstance(config.catalog, Path) else 0
    except OSError:
        catalog = 0  # no such catalog: said where it is read
    needs: list[tuple[object, int, str]] = [
        (
            config.results,
            catalog + rows * _OUTCOME_BYTES + _MARGIN,
            "results file (it carries the catalog's columns, and each row's outcome)",
        ),
        (
            config.state,
            _MARGIN + min(_WAL_ROOM, _WAL_PER_CATALOG_BYTE * catalog) + catalog,
            "state database (its write-ahead log, and each new row's request)",
        ),
    ]
    for path, size, what in needs:
        if not isinstance(path, Path):
            continue  # an object store, a PostgreSQL ledger
        folder = _existing_folder(path)
        free = shutil.disk_usage(folder).free
        if free < size:
            raise ConfigError(
                f"{folder}: {free / 1e6:.1f} MB free, and the {what} needs about "
                f"{size / 1e6:.1f} MB; free some space, or write elsewhere (nothing was sent)"
            )


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _existing_folder(path: Path) -> Path:
    """The folder `path` goes in, or its nearest ancestor that exists (for one not made yet)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def same_file(one: Location, other: Location, *, strict: bool = True) -> bool:
    """Whether writing `one` would destroy (or, `strict`, might be mistaken for) `other`.

    Files are written to a temporary file and renamed over their name, so a link planted at
    `one` is replaced, not followed: between two outputs what counts is the directory entry
    (`..` and the folders' links resolved, not the last link). Against an input, and for the
    state database (SQLite writes into the file itself), `strict` also counts the file any link
    leads to and the same file on disk (a hard link): nobody means to write results over their
    catalog, whatever the spelling. Objects in a store: the same URL.
    """
    if not (isinstance(one, Path) and isinstance(other, Path)):
        return str(one) == str(other)
    entry = one.parent.resolve() / one.name
    if entry in (other.parent.resolve() / other.name, other.resolve()):
        return True
    if not strict:
        return False
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False  # one of them does not exist yet


def check_writable(
    path: Location, what: str, option: str, *, create: bool = True, fix: str | None = None
) -> None:
    """The file at `path` could be written: not a folder, in a folder that exists (or is made
    now, with `create`) and may be written in. In a store: a test object can be written."""
    fix = fix or f"pass another path to {option}"
    if not isinstance(path, Path):
        try:
            storage.check_writable(path)
        except CatalogError as exc:
            raise ConfigError(f"{option} {exc}; {fix}") from None
        return
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; name a file for the {what}")
    folder = _existing_folder(path)
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: {folder} is not a folder; {fix}")
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(folder) else "permission"
        raise ConfigError(f"{option} {path}: cannot write in {folder} ({why}); {fix}")
    if folder != path.parent and create:
        try:
            files.make_folders(path.parent)
        except OSError as exc:
            raise ConfigError(
                f"{option} {path}: cannot create the folder {path.parent} ({exc.strerror}); "
                f"create it, or {fix}"
            ) from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(
            f"{option} {path}: cannot write the existing {what} (permission; owned by another "
            f"user?); fix its permissions, or {fix}"
        )
    if path.parent.is_dir():
        _try_writing_beside(path, option, fix)


def _try_writing_beside(path: Path, option: str, fix: str) -> None:
    """Makes and removes a temporary file where the real one will be written: a folder that
    grants the permission may still refuse files (a read-only mount, /proc, a full quota)."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    except OSError as exc:
        raise ConfigError(
            f"{option} {path}: cannot create a file in {path.parent} ({exc.strerror}); {fix}"
        ) from None
    os.close(handle)
    os.unlink(name)
