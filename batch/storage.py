"""Where catalogs and results live: a local path, or an object in a store named by its URL.

`s3://bucket/key`, `gs://bucket/key` and `az://container/key` go through fsspec, whose S3 layer
(s3fs, installed with jogg-batch) takes credentials the way every AWS tool does: the environment
(`AWS_ACCESS_KEY_ID`...), a profile in `~/.aws` (`AWS_PROFILE`), or the instance's role;
`AWS_ENDPOINT_URL` points it at an S3-compatible server (MinIO, Ceph, R2). Google Cloud Storage
and Azure need `pip install gcsfs` / `pip install adlfs` (application-default credentials,
`AZURE_STORAGE_*`). A `file://` URL is an ordinary local path. The state always stays local.

Reads stream: an object is read in blocks as it is consumed (flat memory, whatever its size).
A file whose name ends in `.gz` (`catalog.csv.gz`, as warehouse unloads write them) is read
decompressed, from a store too; a damaged or cut-short gzip stream is a `CatalogError` naming it.
Writes are whole or nothing: the file is made in a local temporary file, uploaded as a temporary
object beside the destination, then moved onto it (a server-side copy, itself all or nothing per
object; the temporary object is then deleted), so a reader sees the old object or the new one.
Store errors become `CatalogError`s that name the URL.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import secrets
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote, urlsplit

from batch import files
from batch.errors import CatalogError
from batch.secret import masked_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

STORE_SCHEMES: Final = ("s3", "gs", "gcs", "az", "abfs")
_INSTALL: Final = {"gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
# Bytes fetched per ranged GET while streaming (s3fs would take 50 MiB at a time).
READ_BLOCK: Final = 8 << 20


@dataclass(frozen=True, slots=True)
class ObjectURL:
    """An object in a store: `s3://bucket/folder/catalog.xlsx`. Reads like a Path where it can."""

    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0].lower()

    @property
    def key(self) -> str:
        """`bucket/folder/catalog.xlsx`: the path fsspec takes."""
        return self.url.partition("://")[2]

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.key).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.key).stem

    def with_name(self, name: str) -> ObjectURL:
        folder = self.key.rpartition("/")[0]
        return ObjectURL(f"{self.scheme}://{folder}/{name}")


# Where a catalog or results file is; everything else jogg-batch keeps (state, logs) is a Path.
Location = Path | ObjectURL


def parse_location(text: str | Path) -> Location:
    """`s3://b/k` -> ObjectURL; `file:///x/y.csv` -> Path('/x/y.csv'); anything else a Path."""
    if isinstance(text, Path):
        return _named_in_utf8(text)
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme.isalnum():
        return _named_in_utf8(Path(text))
    scheme = scheme.lower()
    shown = masked_url(text)  # a signed link's query, S3's X-Amz-Signature, or a password
    if _CREDENTIALS.search(rest.split("/", 1)[0]):
        raise CatalogError(
            f"{shown}: a URL holding a user name or password is not taken (it would be "
            "repeated in logs and the state); give store credentials in the environment "
            "(AWS_ACCESS_KEY_ID...) or a profile"
        )
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise CatalogError(f"{shown}: a file:// URL must name a local file (file:///path)")
        return Path(unquote(parts.path))
    if scheme not in STORE_SCHEMES:
        raise CatalogError(
            f"{shown}: {scheme}:// is not a store jogg-batch knows; use a local path, file://, "
            "s3://, gs:// or az:// (a signed https:// link: download the file first)"
        )
    if not rest.strip("/") or "/" not in rest.strip("/"):
        raise CatalogError(f"{shown}: name an object, e.g. {scheme}://bucket/catalog.csv")
    if rest.endswith("/"):
        # The store's client reads `key/` as `key`, and would write beside it, or over it: a
        # catalog given with a stray slash had its results written over it.
        raise CatalogError(f"{shown}: ends with '/', as a folder does; name the object without it")
    return ObjectURL(f"{scheme}://{rest}")


# A user name and password before a URL's first `/` (`bob:pw@`, or `KEY:SECRET` where a secret
# key's own `/` ends it: no bucket or container name holds a `:` or `@`).
_CREDENTIALS: Final = re.compile(r"[:@]")


def _named_in_utf8(path: Path) -> Path:
    """The path, if its whole name is UTF-8. pyarrow opens and writes files by a UTF-8 name and
    the state records the absolute one as text, so one in another encoding (Latin-1 bytes from
    an old share or a ZIP: `caf\\xe9/catalog.csv`) would stop a run with a traceback, and a
    results file's after its requests were sent: refused now, naming the byte. A relative path
    from a working folder deleted since the shell entered it is refused too (a traceback)."""
    if not path.expanduser().is_absolute() and not _working_folder_exists():
        raise CatalogError(
            f"{path}: the path is relative, and the working folder it is relative to was "
            "deleted; cd into a folder that exists, or give the whole path"
        )
    try:
        whole = path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable folder: read as given
        whole = path.absolute()
    name = os.fsencode(whole)
    try:
        name.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = name.decode("utf-8", "backslashreplace")
        raise CatalogError(
            f"{shown}: the path is not UTF-8 text (byte 0x{name[exc.start]:02X}); rename the "
            "file or folder in UTF-8 (`convmv -f latin1 -t utf-8 --notest NAME` does)"
        ) from None
    return path


def _working_folder_exists() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


def identity(location: Location) -> str:
    """The one name of a file whatever the working folder (the state keeps it): an absolute
    path (as UTF-8 text, whatever the locale: see `arrow_name`), or the URL."""
    if isinstance(location, Path):
        return arrow_name(location.expanduser().resolve())
    return str(location)


def version(location: Location) -> str | None:
    """What changes when the file is edited, replaced or moved away (None: it is not there):
    for a local file its inode, size and modification time; for an object what the store says
    of it (ETag or generation, size, modification time)."""
    if isinstance(location, Path):
        try:
            stat = location.stat()
        except OSError:
            return None
        return f"{stat.st_dev}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
    fs = _filesystem(location)
    try:
        fs.invalidate_cache(location.key)
        info = fs.info(location.key)
    except FileNotFoundError:
        return None
    except store_errors() as exc:
        raise _store_error(location, "looking it up", exc) from exc
    return repr(sorted((k, str(v)) for k, v in info.items() if k.lower() in _VERSION_KEYS))


# What the stores' fsspec layers say of an object that changes with its content.
_VERSION_KEYS: Final = (
    "etag",
    "generation",
    "versionid",
    "size",
    "lastmodified",
    "mtime",
    "last_modified",
)


def _filesystem(location: ObjectURL) -> AbstractFileSystem:
    import fsspec

    try:
        return fsspec.filesystem(location.scheme)
    except ImportError as exc:
        package = _INSTALL.get(location.scheme, "s3fs")
        raise CatalogError(
            f"{location}: {location.scheme}:// needs the {package} package; pip install {package}"
        ) from exc
    except store_errors() as exc:  # adlfs refuses to start without an account (ValueError)
        raise CatalogError(
            f"{location}: cannot reach the store ({exc}); give its credentials in the "
            "environment or a profile"
        ) from exc


# What the clients under fsspec raise when a store cannot be reached or refuses, where the
# fsspec layer lets it through (s3fs passes botocore's connection errors on as they are).
_CLIENT_ERRORS: Final = (
    ("botocore.exceptions", ("BotoCoreError", "ClientError")),
    ("aiohttp", ("ClientError",)),
    ("google.auth.exceptions", ("GoogleAuthError",)),
    ("azure.core.exceptions", ("AzureError",)),
)


def store_errors(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """The exceptions a store's answer can raise, and `also`: OSError and ValueError (fsspec's),
    and those of the store clients loaded (a client not imported cannot have raised)."""
    found: list[type[Exception]] = [*also, OSError, ValueError]
    for module, names in _CLIENT_ERRORS:
        if (loaded := sys.modules.get(module)) is not None:
            found += [getattr(loaded, name) for name in names if hasattr(loaded, name)]
    return tuple(found)


def _store_error(location: ObjectURL, what: str, exc: Exception) -> CatalogError:
    if isinstance(exc, FileNotFoundError) and what.startswith("writing"):
        return CatalogError(f"{location}: no such bucket; check its name and region")
    if isinstance(exc, FileNotFoundError):
        return CatalogError(f"{location}: no such object; check the bucket and key")
    if isinstance(exc, PermissionError):
        return CatalogError(
            f"{location}: access denied while {what}; check the credentials "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID...) and the bucket policy"
        )
    return CatalogError(f"{location}: {what} failed: {exc}")


def is_file(location: Location) -> bool:
    """Whether a file (or object) is there now."""
    if isinstance(location, Path):
        return location.is_file()
    fs = _filesystem(location)
    try:
        fs.invalidate_cache(location.key)
        # Not `isfile`: s3fs answers False for a store it cannot reach, and the run would say
        # the path is wrong.
        return bool(fs.info(location.key)["type"] == "file")
    except FileNotFoundError:
        return False
    except store_errors() as exc:
        raise _store_error(location, "looking it up", exc) from exc


def is_gzip(location: Location) -> bool:
    """Whether the name says the file is gzip-compressed (`catalog.csv.gz`): it is read so."""
    return location.suffix.lower() == ".gz"


def inner_name(location: Location) -> str:
    """The name of what the file holds: `catalog.csv.gz` -> `catalog.csv`; others as they are."""
    return location.name[: -len(location.suffix)] if is_gzip(location) else location.name


def open_read(location: Location) -> IO[bytes]:
    """A binary file to read (decompressed, for a `.gz` name), streamed in blocks from a
    store; the caller closes it."""
    if isinstance(location, Path):
        handle: IO[bytes] = location.open("rb")
    else:
        try:
            raw = _filesystem(location).open(location.key, "rb", block_size=READ_BLOCK)
        except store_errors() as exc:
            raise _store_error(location, "opening it", exc) from exc
        handle = cast(IO[bytes], _Streamed(location, raw))
    if not is_gzip(location):
        return handle
    return cast(IO[bytes], _Gunzipped(location, handle))  # a BufferedIOBase, as typeshed has it


def arrow_source(location: Location) -> str | IO[bytes]:
    """What pyarrow's readers take: a local path (its own fast file), or a stream (an object
    in a store, or a gzip file: decompressed here, so that its damage is reported as ours)."""
    if isinstance(location, Path) and not is_gzip(location):
        return arrow_name(location)
    return open_read(location)


def arrow_name(path: Path) -> str:
    """The local path as pyarrow opens it: pyarrow encodes a name as UTF-8, where Python uses
    the locale's encoding, which is ASCII under `LC_ALL=C` without UTF-8 mode (`PYTHONUTF8=0`).
    There Python holds `café` as undecodable bytes, and pyarrow failed with a traceback. Every
    path here is UTF-8 (`parse_location`), so its bytes read as UTF-8 name the same file."""
    return os.fsencode(path).decode("utf-8")


class _Streamed(io.RawIOBase):
    """An object read from a store as it streams, whose store's error mid-read (a connection
    cut, a timeout) is a CatalogError naming it and saying so: the client's own (aiohttp's
    ClientPayloadError) named nothing, and surfaced as a traceback and exit 1, after sending
    too (where the catalog is read again for the results: a CatalogError there is exit 7)."""

    def __init__(self, location: ObjectURL, raw: IO[bytes]) -> None:
        self._location = location
        self._raw = raw

    @contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except store_errors() as exc:
            raise CatalogError(
                f"{self._location}: could not be read to its end (the store's stream was cut: "
                f"{exc}); run again"
            ) from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        with self._named():
            data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        with self._named():
            return self._raw.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with self._named():
            return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


class _Gunzipped(gzip.GzipFile):
    """A gzip file read decompressed, whose damage is a CatalogError naming it: Python's own
    errors (EOFError, zlib.error) say nothing of which file, and would surface as tracebacks.

    Every read goes through `read`, `read1`, `peek` or `readline` (`readinto` and iteration
    call them), so those four translate. The three that consume also count what they give:
    past `BOMB_BYTES`, more than `BOMB_RATIO` times the compressed bytes read is refused (a
    gzip bomb: a few MB that expand to many GB, which the structural pass would read whole,
    and a cell of it as one string). Catalogs compress 5 to 30 times; deflate's limit is 1032.
    """

    def __init__(self, location: Location, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._location = location
        self._raw = raw
        self._given = 0

    @contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except _GZIP_ERRORS as exc:
            raise _damaged(self._location, exc) from exc

    def _counted(self, data: bytes) -> bytes:
        self._given += len(data)
        if self._given > BOMB_BYTES and self._given > BOMB_RATIO * self._raw.tell():
            raise CatalogError(
                f"{self._location}: expands more than {BOMB_RATIO} times "
                f"({self._raw.tell():,} compressed bytes gave {self._given:,}), as no catalog "
                "does (a gzip bomb?); check where it came from, or decompress it yourself"
            )
        return data

    def read(self, size: int | None = -1) -> bytes:
        with self._named():
            return self._counted(super().read(size))

    def read1(self, size: int = -1) -> bytes:
        with self._named():
            return self._counted(super().read1(size))

    def peek(self, n: int) -> bytes:
        with self._named():
            return super().peek(n)

    def readline(self, size: int | None = -1) -> bytes:
        with self._named():
            return self._counted(super().readline(size))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()  # GzipFile leaves a file it was given open


_GZIP_ERRORS: Final = (EOFError, zlib.error, gzip.BadGzipFile)
BOMB_BYTES: Final = 256 << 20
BOMB_RATIO: Final = 200


def refuse_zip_bomb(location: Location, member: zipfile.ZipInfo, what: str) -> None:
    """CatalogError when a workbook's part (`what`: its sheet, its sheets) expands as a gzip
    catalog may not: past `BOMB_BYTES`, more than `BOMB_RATIO` times its compressed size (a ZIP
    bomb, which calamine and the scans of the sheet's XML would read whole)."""
    if member.file_size > BOMB_BYTES and member.file_size > BOMB_RATIO * member.compress_size:
        raise CatalogError(
            f"{location}: {what} expands from {member.compress_size:,} to "
            f"{member.file_size:,} bytes, more than {BOMB_RATIO} times (a ZIP bomb? sheets "
            "compress 5 to 30 times); save the workbook again from the spreadsheet"
        )


def _damaged(location: Location, exc: Exception) -> CatalogError:
    if isinstance(exc, EOFError):
        return CatalogError(
            f"{location}: the gzip data ends before its end marker, so the file is cut short "
            "(an interrupted download or copy?); fetch or compress it again"
        )
    return CatalogError(
        f"{location}: is damaged gzip data ({exc}); compress it again, or drop .gz from its "
        "name if it is not compressed"
    )


def check_writable(destination: ObjectURL) -> None:
    """Before anything is sent: a temporary object can be written beside `destination` (the
    bucket exists, the credentials may write there). It is deleted at once."""
    fs = _filesystem(destination)
    probe = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.probe").key
    try:
        fs.pipe_file(probe, b"")
    except store_errors() as exc:
        raise _store_error(destination, "writing a test object beside it", exc) from exc
    _delete_temporary(fs, destination, probe)


def _delete_temporary(fs: AbstractFileSystem, destination: ObjectURL, key: str) -> None:
    """Deletes a temporary object beside `destination`; one the credentials may not delete (a
    bucket policy of PutObject alone) or a failing delete is left, and said so: what was to be
    written was written."""
    try:
        fs.rm_file(key)
    except store_errors() as exc:
        log.warning(
            "%s: could not delete the temporary object %s beside it (%s); delete it by hand",
            destination,
            key,
            exc,
        )


@contextmanager
def writing(
    destination: Location, before_replace: Callable[[], None] | None = None
) -> Iterator[Path]:
    """A local temporary file for a writer that wants a path; when the block succeeds it
    replaces `destination` whole (see the module docstring), otherwise it is dropped.
    `before_replace` is called just before, and may raise to leave `destination` as it is."""
    if isinstance(destination, Path):
        with files.temporary_beside(destination, before_replace=before_replace) as temporary:
            yield temporary
        return
    fs = _filesystem(destination)
    with tempfile.TemporaryDirectory(prefix="jogg-upload-") as folder:
        local = Path(folder) / destination.name
        yield local
        staged = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp").key
        if before_replace is not None:
            before_replace()
        try:
            fs.put_file(str(local), staged)
            # One object to one key: `mv` would read `?`, `*` or `[` in a key as a pattern and
            # copy the object into a "folder" of that name.
            fs.cp_file(staged, destination.key)
        except store_errors() as exc:
            try:
                if fs.exists(staged):
                    fs.rm_file(staged)
            except store_errors():
                pass  # the first error is the one to report
            raise _store_error(destination, "writing it", exc) from exc
        _delete_temporary(fs, destination, staged)
