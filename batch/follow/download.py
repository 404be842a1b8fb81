"""Downloading finished videos (and optionally their covers) named from a results file.

JoggAI does not keep media forever, so `download` fetches every completed video of a results file
into one folder, with at most `concurrency` transfers at a time, and records each file's path in
the results' `local_path` column, and why a file was not fetched in `download_error` (the results
file is rewritten atomically).

Resumable: every file is written to `<name>.part` and renamed into place only once its length
matches the server's Content-Length, so a file under its final name is complete. It is labelled
with its video id and size (on Linux, an extended attribute, `user.jogg-batch.holds`, which
ext4, XFS, Btrfs, ZFS and tmpfs keep): on a second run a file labelled for the same video at
the same size is skipped without asking the server, and a file under a name the template now
gives another video (a row rendered again) is fetched again. A file without a label (copied
in, or on a file system without them) is skipped only when a HEAD request confirms its size,
else fetched again, and kept if that fails. A leftover `.part` is fetched again.

The URLs come from a server this tool does not control, so each one is treated as hostile:
- only `https` is fetched; plain `http` only from the API's own origin when the base URL is a
  loopback address (the sandbox serves its media there);
- every connection goes through `_GuardedBackend`, which resolves the name once, refuses it when
  any address is loopback, private, link-local, multicast or otherwise not public (loopback is
  allowed for the sandbox's origin only), and then connects to that very address, so a second,
  different DNS answer (rebinding) is never used. TLS still checks the certificate against the
  host name. Environment proxies are ignored: a proxy would resolve the name itself;
- redirects are followed by hand, each hop checked the same way, at most `max_redirects`;
- a file may not exceed `max_bytes` (announced or actually sent) nor take longer than
  `file_deadline` seconds in all;
- the disk keeps `min_free_bytes` free (`_Reserve`): a file is only started when that much stays
  free beyond its announced size and what the other transfers under way have announced and not
  yet written, and it is stopped when a piece it sends would go below (a body without
  Content-Length, or longer than announced, is only known as it comes). A body sent with a
  Content-Encoding is refused: `Accept-Encoding: identity` asked for none, and a decoded body's
  size is not the Content-Length that the reserve and the next run's completeness check go by;
- names are made here, never taken from the server: separators and control characters become `_`,
  long names are shortened with a hash, a cover's extension comes from an allow-list;
- `.part` files are created with O_EXCL|O_NOFOLLOW (a planted symlink is refused, never
  followed), readable by the owner only unless the results file is readable by more people.
A failure of one file (refused, too big, too slow, HTTP error, OSError) is recorded on its row and
never stops the others. Its reason quotes what the server sent (a redirect's URL, a host name, a
content type, httpx's error text): the API key, when the command knows it, is scrubbed from it
(`Secret.scrub`) before it is logged or recorded, as the client scrubs the API's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import ipaddress
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import string
import sys
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final, Literal
from urllib.parse import urlsplit

import httpcore
import httpx
import pandas as pd
from tqdm import tqdm

from batch import files, storage
from batch.config import DEFAULT_BASE_URL
from batch.errors import ConfigError, LocalIOError, LockedError
from batch.follow.addresses import IPAddress, refusal
from batch.joggai.client import parse_base_url
from batch.secret import Secret, masked_url
from batch.store.results import (
    DOWNLOAD_ERROR,
    read_again_if_rewritten,
    read_results,
    require_columns,
    write_table,
)

log = logging.getLogger(__name__)

DEFAULT_NAME_TEMPLATE = "{row:05d}-{video_id}.mp4"
MiB = 1024 * 1024
# A 60 s 1080p render is tens of MiB; 512 MiB leaves room for any bitrate JoggAI might use.
DEFAULT_MAX_BYTES = 512 * MiB
DEFAULT_FILE_DEADLINE = 600.0
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_MIN_FREE_BYTES = 64 * MiB
# Most file systems allow 255 bytes; this leaves room for ".cover.jpeg.part".
MAX_NAME_BYTES = 200
# Each file put in place is labelled with the video it holds and its size then: an extended
# attribute, where the file system keeps them (`_label`).
LABEL: Final = "user.jogg-batch.holds"
COVER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif"})
_OCTET_STREAMS = frozenset({"application/octet-stream", "binary/octet-stream"})
# Separators, C0 and C1 controls, line separators and the direction overrides that make a file
# manager show a name other than it is (as `logs` escapes them).
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """What `jogg-batch download` was asked to do."""

    results: Path
    dest: Path
    covers: bool = False
    name_template: str = DEFAULT_NAME_TEMPLATE
    concurrency: int = 4
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal
    timeout: float = 60.0  # per read, connect or write
    base_url: str = DEFAULT_BASE_URL  # a loopback base URL (the sandbox) may serve plain http
    max_bytes: int = DEFAULT_MAX_BYTES
    file_deadline: float = DEFAULT_FILE_DEADLINE  # seconds for one file, redirects included
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    api_key: Secret | None = None  # scrubbed from every reason recorded or logged


@dataclass(frozen=True, slots=True)
class DownloadFailure:
    row: str
    file: str
    reason: str


@dataclass(frozen=True, slots=True)
class DownloadSummary:
    downloaded: int
    skipped: int
    failed: int
    bytes: int
    failures: tuple[DownloadFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class _Fetch:
    video_id: str  # rows are matched by it when the results file is written again
    row: str
    url: str
    path: Path
    is_video: bool
    recorded: str = ""  # the row's local_path before this run


class Refused(Exception):
    """One file is not fetched, for the reason in the message (recorded on its row)."""


# --- names ---------------------------------------------------------------------------------------


def file_name(template: str, cells: Mapping[str, str]) -> str:
    """The template filled from one results row; path separators become `_`.

    `row` is an int (so `{row:05d}` works); every other column is its text. A name longer than
    MAX_NAME_BYTES keeps its start and extension around a hash of the whole name.
    """
    values: dict[str, object] = dict(cells)
    if str(values.get("row", "")).isdigit():
        values["row"] = int(str(values["row"]))
    try:
        name = template.format_map(values)
    except KeyError as error:
        raise ConfigError(
            f"--name-template {template!r}: no column {error.args[0]!r} in the results; "
            f"columns are {', '.join(cells)}"
        ) from None
    except (ValueError, IndexError, AttributeError) as error:
        raise ConfigError(f"--name-template {template!r}: {error}") from None
    name = _UNSAFE.sub("_", name).strip()
    if name in ("", ".", "..") or name.endswith(".part"):
        raise ConfigError(
            f"--name-template {template!r} gives the file name {name!r}; use one with an extension"
        )
    return _shortened(name)


def _shortened(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    suffix = f".{suffix}" if dot and _SUFFIX.fullmatch(f".{suffix.lower()}") else ""
    stem = stem if suffix else name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    room = MAX_NAME_BYTES - len(digest) - 1 - len(suffix.encode())
    head = stem.encode()[:room].decode(errors="ignore")
    return f"{head}-{digest}{suffix}"


def _check_template(template: str) -> None:
    """Rejects a malformed template before any row is read."""
    try:
        list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(f"--name-template {template!r}: {error}") from None


def _cover_name(video_name: str, cover_url: str) -> str:
    """`<video stem>.cover<ext>`, the extension only from COVER_SUFFIXES (else `.jpg`)."""
    suffix = PurePosixPath(urlsplit(cover_url).path).suffix.lower()
    stem = video_name.rsplit(".", 1)[0] if "." in video_name else video_name
    return f"{stem}.cover{suffix if suffix in COVER_SUFFIXES else '.jpg'}"


def _plan(frame: pd.DataFrame, config: DownloadConfig) -> list[_Fetch]:
    fetches: list[_Fetch] = []
    # By the name a file system that ignores case or Unicode normalisation sees (macOS, Windows,
    # exFAT, SMB shares): `Mug.mp4` and `MUG.mp4` are one file there.
    owners: dict[str, tuple[str, str, bool]] = {}
    results = config.results.resolve()
    for index, cells in enumerate(frame.to_dict("records")):
        text = {str(key): str(value) for key, value in cells.items()}
        if text.get("video_status") != "completed":
            continue
        video_id = text.get("video_id", "").strip()
        if not video_id:  # a cleared cell: its file could not be told from other rows'
            log.warning(
                "%s: row %s is completed but has no video_id; not fetched (run the catalog "
                "again to write the ids back)",
                config.results,
                text.get("row", str(index + 1)),
            )
            continue
        name = file_name(config.name_template, text)
        # One without a URL is tried too, to fail saying so (`_Downloader._fetch`).
        wanted = [(text.get("video_url", ""), name, True)]
        if config.covers and text.get("cover_url"):
            wanted.append((text["cover_url"], _cover_name(name, text["cover_url"]), False))
        for url, file, is_video in wanted:
            path = config.dest / file
            row = text.get("row", str(index + 1))
            if path.resolve() == results:
                raise ConfigError(
                    f"--name-template {config.name_template!r} gives row {row}'s file the name "
                    f"of the results file {config.results}, which a video would replace"
                )
            seen = unicodedata.normalize("NFC", file).casefold()
            if seen in owners:
                if owners[seen][1:] == (video_id, is_video):
                    continue  # a duplicate row of the same video: one file, named on both rows
                raise ConfigError(
                    f"--name-template {config.name_template!r} gives {file!r} to rows "
                    f"{owners[seen][0]} and {row} (as a file system that ignores case sees "
                    "it); add a unique column such as {video_id}"
                )
            owners[seen] = (row, video_id, is_video)
            recorded = text.get("local_path", "") if is_video else ""
            fetches.append(_Fetch(video_id, row, url, path, is_video, recorded))
    return fetches


# --- where we may connect --------------------------------------------------------------------


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which URLs a download may ask for; `sandbox` is the origin of a loopback base URL."""

    sandbox: tuple[str, int] | None = None

    @classmethod
    def for_base_url(cls, base_url: str, api_key: Secret | None = None) -> UrlPolicy:
        url = parse_base_url(base_url, api_key)
        if _is_loopback_host(url.host):
            return cls((url.host.lower(), url.port or _default_port(url.scheme)))
        return cls()

    def is_sandbox(self, host: str, port: int) -> bool:
        return self.sandbox is not None and (host.lower(), port) == self.sandbox

    def check(self, url: httpx.URL) -> None:
        """Refused unless https with a host, or any scheme on the sandbox's origin."""
        if url.scheme in ("http", "https") and url.host:
            if self.is_sandbox(url.host, url.port or _default_port(url.scheme)):
                return
            if url.scheme == "https":
                return
        raise Refused(f"{_shown(url)} is not an https URL; not fetched")

    def address_refusal(self, host: str, port: int, address: IPAddress) -> str | None:
        if self.is_sandbox(host, port):
            return None if address.is_loopback else "non-loopback (for the sandbox's origin)"
        return refusal(address)


def _shown(url: httpx.URL | str) -> str:
    """A URL for a message (the results' `download_error`, the log): quoted (control
    characters escaped), kept short, with what may sign or open it as `***`: its user name and
    password, query and fragment, and a path segment holding `=` (a CDN's token in the path,
    `hdnts=exp~hmac=...`)."""
    text = _SIGNED_SEGMENT.sub("/***", masked_url(str(url)))
    return repr(text if len(text) <= 120 else text[:117] + "...")


_SIGNED_SEGMENT: Final = re.compile(r"/[^/?#]*=[^/?#]*")


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Refused(f"cannot resolve {host!r}: {error.strerror}") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, address in infos:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, connects to a checked address and verifies the peer."""

    def __init__(
        self,
        policy: UrlPolicy,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        if not addresses:
            raise Refused(f"{host!r} resolves to no address; not fetched")
        for address in addresses:
            reason = self._policy.address_refusal(host, port, address)
            if reason is not None:
                raise Refused(f"{host!r} resolves to {address}, a {reason} address; not fetched")
        failure: Exception = Refused(f"cannot connect to {host!r}")
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
                continue
            peer = stream.get_extra_info("server_addr")
            if peer is not None and ipaddress.ip_address(str(peer[0]).split("%")[0]) != address:
                await stream.aclose()
                raise Refused(f"{host!r}: connected to {peer[0]}, not the checked {address}")
            return stream
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise Refused("unix sockets are not used for downloads")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: UrlPolicy, resolver: Resolver = resolve) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `_GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx has no public way to give its pool a network backend; the pool is its only state.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=_GuardedBackend(policy, resolver),
    )
    return transport


# --- fetching ----------------------------------------------------------------------------------


Outcome = Literal["downloaded", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: Outcome
    size: int = 0
    reason: str = ""


class _Downloader:
    """One download run: the client, the limits, and where files go."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: DownloadConfig,
        policy: UrlPolicy,
        reserve: _Reserve,
        mode: int,
    ) -> None:
        self.client = client
        self.config = config
        self.policy = policy
        self.reserve = reserve
        self.mode = mode

    async def fetch(self, fetch: _Fetch) -> _Result:
        part = fetch.path.with_name(fetch.path.name + ".part")
        created: list[Path] = []
        try:
            async with asyncio.timeout(self.config.file_deadline):
                return await self._fetch(fetch, part, created)
        except TimeoutError:
            reason = f"not finished within {self.config.file_deadline:g} s"
        except Refused as error:
            reason = str(error)
        except httpx.HTTPError as error:
            reason = f"transfer interrupted ({type(error).__name__}: {error})"
        except OSError as error:
            reason = f"cannot write {fetch.path.name!r}: {error.strerror or error}"
        if self.config.api_key is not None:
            reason = self.config.api_key.scrub(reason)
        for path in created:
            path.unlink(missing_ok=True)
        log.warning("%s: %s", fetch.path.name, reason)
        return _Result("failed", 0, reason)

    async def _fetch(self, fetch: _Fetch, part: Path, created: list[Path]) -> _Result:
        if not fetch.url:
            raise Refused("completed, but the API gave no video_url yet; run status again")
        if await self._complete(fetch):
            return _Result("skipped")
        async with self._follow("GET", fetch.url) as response:
            if response.status_code != httpx.codes.OK:
                raise Refused(f"HTTP {response.status_code}")
            _check_content_type(response, fetch.is_video)
            _check_encoding(response)
            expected = _content_length(response)
            limit = self.config.max_bytes
            if expected is not None and expected > limit:
                raise Refused(f"{expected} bytes announced, over the {limit} byte limit")
            written = 0
            with self.reserve.claim(expected) as claim, _Part(part, self.mode) as handle:
                created.append(part)
                async for chunk in response.aiter_bytes():
                    written += len(chunk)
                    if written > limit:
                        raise Refused(f"more than {limit} bytes sent, over the limit; stopped")
                    claim.take(len(chunk))
                    handle.write(chunk)
                handle.label(_label(fetch, written))
            received = response.num_bytes_downloaded
        if expected is not None and received != expected:
            raise Refused(f"got {received} of {expected} bytes; run again")
        os.replace(part, fetch.path)
        created.clear()
        return _Result("downloaded", written)

    async def _complete(self, fetch: _Fetch) -> bool:
        """An existing regular final file is complete when it is labelled for its video at its
        size; one without a label, when the server confirms its size. Anything else is fetched
        again (into a `.part`: the file stays until a whole one replaces it)."""
        try:
            info = fetch.path.lstat()
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode):
            log.warning("%s: not a regular file; replacing it", fetch.path.name)
            return False
        wanted = _label(fetch, info.st_size)
        if (label := _label_of(fetch.path)) is not None:
            if label != wanted:
                log.info("%s: holds another video, or was changed; fetching", fetch.path.name)
            return label == wanted
        try:
            async with self._follow("HEAD", fetch.url) as response:
                expected = _content_length(response)
                status = response.status_code
        except (httpx.HTTPError, Refused):
            return False
        if status == httpx.codes.OK and expected == info.st_size and expected > 0:
            _put_label(fetch.path, wanted)
            return True
        log.info("%s: the server does not confirm its size; fetching again", fetch.path.name)
        return False

    @asynccontextmanager
    async def _follow(self, method: str, url: str) -> AsyncIterator[httpx.Response]:
        """The response to `method url` after redirects, each hop checked by the policy."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise Refused(f"{_shown(url)} is not a URL") from None
        for _hop in range(self.config.max_redirects + 1):
            self.policy.check(target)
            request = self.client.build_request(
                method, target, headers={"Accept-Encoding": "identity"}
            )
            response = await self.client.send(request, stream=True)
            if not response.is_redirect:
                try:
                    yield response
                finally:
                    await response.aclose()
                return
            await response.aclose()
            try:
                target = response.url.join(response.headers["Location"])
            except httpx.InvalidURL:
                raise Refused("a redirect to something that is not a URL") from None
        raise Refused(f"more than {self.config.max_redirects} redirects; not followed")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length", "").strip()
    return int(value) if value.isdigit() else None


def _check_encoding(response: httpx.Response) -> None:
    """Refused when the server compressed the body though asked not to: httpx would decode it
    (a few KiB of gzip can become hundreds of MiB), and the file on disk would not have the
    Content-Length size that the reserve and the next run's completeness check rely on."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise Refused(
            f"sent with Content-Encoding {encoding[:40]!r}, not as is (identity) as asked; "
            "not fetched"
        )


def _check_content_type(response: httpx.Response, is_video: bool) -> None:
    """A cover must be an image, a video a video (or unlabelled bytes), never a web page."""
    media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    wanted = "video/" if is_video else "image/"
    if not media or media.startswith(wanted) or media in _OCTET_STREAMS:
        return
    if is_video and media == "application/mp4":
        return
    raise Refused(f"content type {media!r} is not {'a video' if is_video else 'an image'}")


class _Part:
    """A `.part` file opened for writing: created here (O_EXCL), never through a symlink."""

    def __init__(self, path: Path, mode: int) -> None:
        try:
            info = path.lstat()
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
                raise Refused(
                    f"{path.name!r} exists and is not a regular file of ours (a symlink?); "
                    "not followed, remove it"
                )
            path.unlink()  # a leftover of an interrupted run
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._handle = os.fdopen(os.open(path, flags, mode), "wb")

    def __enter__(self) -> _Part:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._handle.flush()  # on disk now, so the next free-space probe counts it

    def label(self, text: str) -> None:
        _put_label(self._handle.fileno(), text)


def _label(fetch: _Fetch, size: int) -> str:
    """What a whole file of `fetch` of `size` bytes is labelled with."""
    return f"{'video' if fetch.is_video else 'cover'} {fetch.video_id} {size}"


def _label_of(path: Path) -> str | None:
    """The file's label; None where it has none (Python has no extended attributes on macOS
    or Windows, and some file systems keep none: NFSv3, FAT, SMB)."""
    if not hasattr(os, "getxattr"):
        return None
    try:
        return os.getxattr(path, LABEL, follow_symlinks=False).decode("utf-8", "replace")
    except OSError:
        return None


def _put_label(file: Path | int, text: str) -> None:
    """Labels an open file (`int`), or one by its path, never through a symlink."""
    if hasattr(os, "setxattr"):
        with contextlib.suppress(OSError):
            os.setxattr(file, LABEL, text.encode(), follow_symlinks=isinstance(file, int))


def _file_mode(results: Path) -> int:
    """0600, plus read for group/others when the results file grants it."""
    try:
        return 0o600 | (results.stat().st_mode & 0o044)
    except OSError:
        return 0o600


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _amount(size: int) -> str:
    if size >= MiB:
        return f"{size // MiB} MiB"
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} bytes"


class _Claim:
    """One transfer's share of the reserve: what it announced, and what it has written."""

    def __init__(self, reserve: _Reserve, announced: int) -> None:
        self.reserve = reserve
        self.announced = announced
        self.written = 0

    @property
    def pending(self) -> int:
        return max(self.announced - self.written, 0)

    def take(self, size: int) -> None:
        """Before `size` more bytes are written: Refused (stopped) if they would break the
        reserve."""
        self.reserve.check(self, size)
        self.written += size


class _Reserve:
    """Keeps `min_free` bytes free in `folder` however many transfers write into it.

    Before a transfer starts, and before each piece it writes:
    `free now - what the other transfers announced and have not written yet
    - max(what this one still announces, the piece) >= min_free`.
    The free space is probed each time (`disk_free`, a statvfs call), so the bytes written so
    far, and other programs' writes, count as they happen. A transfer that would break it is
    refused, or stopped, and its partial file removed; the others go on.
    """

    def __init__(self, folder: Path, min_free: int, disk_free: Callable[[Path], int]) -> None:
        self.folder = folder
        self.min_free = min_free
        self.disk_free = disk_free
        self._claims: list[_Claim] = []

    @contextmanager
    def claim(self, announced: int | None) -> Iterator[_Claim]:
        claim = _Claim(self, announced or 0)
        self.check(claim, 0)
        self._claims.append(claim)
        try:
            yield claim
        finally:
            self._claims.remove(claim)

    def check(self, claim: _Claim, size: int) -> None:
        free = self.disk_free(self.folder)
        others = sum(other.pending for other in self._claims if other is not claim)
        if free - others - max(claim.pending, size) >= self.min_free:
            return
        shortage = f"only {_amount(free)} free in {str(self.folder)!r}"
        if others:
            shortage += f", {_amount(others)} of it promised to the files fetched alongside"
        keeping = f"keeping {_amount(self.min_free)} free"
        if claim.written or size:
            raise Refused(f"stopped after {_amount(claim.written)}: {shortage}; {keeping}")
        raise Refused(f"{shortage}; {keeping}")


async def download(
    config: DownloadConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver = resolve,
    disk_free: Callable[[Path], int] = _disk_free,
) -> DownloadSummary:
    """Fetches what `config` asks for and records `local_path` in the results file.

    `transport` replaces the network (and with it the address checks; URL checks remain),
    `resolver` the DNS look-up, `disk_free` the free-space probe: seams for tests.
    """
    if config.concurrency < 1:
        raise ConfigError(f"--concurrency {config.concurrency}: use 1 or more")
    if config.max_bytes < 1 or config.file_deadline <= 0 or config.max_redirects < 0:
        raise ConfigError("--max-size and --deadline must be positive")
    _check_template(config.name_template)
    frame = read_results(config.results)
    require_columns(frame, config.results, ("video_id", "video_status", "video_url"), "download")
    fetches = _plan(frame, config)
    final = frame["video_status"].str.strip().isin(("completed", "failed"))
    rendering = frame["video_id"].str.strip().ne("") & ~final
    if waiting := int(rendering.sum()):
        log.warning(
            "%d row(s) of %s have a video whose render the file does not show completed: "
            "`jogg-batch status %s` asks the API (with --wait, until they are), then download "
            "fetches them",
            waiting,
            config.results,
            shlex.quote(str(config.results)),
        )
    if failed := int(frame["video_status"].str.strip().eq("failed").sum()):
        log.warning(
            "%d row(s) of %s have a video whose render failed: nothing to fetch",
            failed,
            config.results,
        )
    try:  # 0755 whatever the umask (a cron job's may be 000): nobody else swaps a video in
        files.make_folders(config.dest)
        if not config.dest.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file is there")
    except OSError as exc:  # a file, or a dangling link, where the folder would be
        raise ConfigError(
            f"--dest {config.dest}: cannot make this folder ({exc.strerror})"
        ) from None
    with _alone_in(config.dest):
        return await _fetch_all(config, fetches, transport, resolver, disk_free)


@contextmanager
def _alone_in(dest: Path) -> Iterator[None]:
    """One download at a time into a folder (an flock on the folder itself): two would share
    each file's `.part`, and one could rename the other's unfinished file into place."""
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"--dest {dest}: another download is writing into this folder; let it finish, "
                "or give another --dest"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the flock


async def _fetch_all(
    config: DownloadConfig,
    fetches: list[_Fetch],
    transport: httpx.AsyncBaseTransport | None,
    resolver: Resolver,
    disk_free: Callable[[Path], int],
) -> DownloadSummary:
    policy = UrlPolicy.for_base_url(config.base_url, config.api_key)
    gate = asyncio.Semaphore(config.concurrency)
    counts = {"downloaded": 0, "skipped": 0, "failed": 0, "bytes": 0}
    present: dict[str, str] = {}  # by video id
    errors: dict[str, list[str]] = {}  # by video id, of each one tried
    failures: list[DownloadFailure] = []
    show = sys.stderr.isatty() if config.progress is None else config.progress
    async with httpx.AsyncClient(
        transport=transport or guarded_transport(policy, resolver),
        timeout=config.timeout,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        reserve = _Reserve(config.dest, config.min_free_bytes, disk_free)
        downloader = _Downloader(client, config, policy, reserve, _file_mode(config.results))
        with tqdm(total=len(fetches), unit="file", disable=not show, file=sys.stderr) as bar:

            async def one(fetch: _Fetch) -> None:
                async with gate:
                    result = await downloader.fetch(fetch)
                counts[result.outcome] += 1
                counts["bytes"] += result.size
                why = errors.setdefault(fetch.video_id, [])
                if result.outcome == "failed":
                    kind, reason = "video" if fetch.is_video else "cover", result.reason
                    if _kept(fetch):
                        present[fetch.video_id] = fetch.recorded
                        reason += "; the file fetched before is kept"
                    why.append(f"{kind}: {reason}")
                    failures.append(DownloadFailure(fetch.row, fetch.path.name, reason))
                elif fetch.is_video:
                    present[fetch.video_id] = str(fetch.path.resolve())
                bar.update()

            try:
                await asyncio.gather(*(one(fetch) for fetch in fetches))
            finally:  # stopped by a signal too: what is in place is recorded
                _record_or_say(config, present, errors, fetched=bool(counts["downloaded"]))
    summary = DownloadSummary(**counts, failures=tuple(failures))
    log.info(
        "downloads: %d fetched, %d already there, %d failed",
        summary.downloaded,
        summary.skipped,
        summary.failed,
    )
    return summary


def _kept(fetch: _Fetch) -> bool:
    """The video this run failed to fetch is still the file an earlier run recorded whole:
    its row named it, and it is a regular file this run did not replace (a file is only renamed
    into place complete). The server announcing another size, then failing, leaves it so."""
    if not fetch.recorded or fetch.recorded != str(fetch.path.resolve()):
        return False
    try:
        return stat.S_ISREG(fetch.path.lstat().st_mode)
    except OSError:
        return False


def _record_or_say(
    config: DownloadConfig,
    present: Mapping[str, str],
    errors: Mapping[str, list[str]],
    *,
    fetched: bool,
) -> None:
    kept = (
        f"the files fetched are in {config.dest}, where the same command finds them without "
        "fetching them again"
        if fetched
        else "no file was fetched"
    )
    reasons = {video: "; ".join(why) for video, why in errors.items()}
    try:
        _record(config.results, present, reasons, kept)
    except OSError as exc:  # read again: a folder made unreadable meanwhile
        raise LocalIOError(
            f"{config.results}: cannot record where the files went ({exc.strerror or exc}); "
            f"{kept}, once the problem is fixed"
        ) from None


def _record(
    results: Path, present: Mapping[str, str], errors: Mapping[str, str], kept: str
) -> None:
    """Rewrites the results file: `local_path` of fetched rows, `download_error` of every row
    this run tried (empty when it worked). A row whose video this run could not fetch has no
    `local_path` any more, unless it still names the whole file an earlier run fetched
    (`_kept`): otherwise the file it named is gone or not whole. Nothing is rewritten when
    there is nothing to say.

    Rows are matched by video id in the file as it is now: a run may have rewritten it while
    the videos came (new rows, another order, a row rendered again), and a row is only given
    the file of its own video."""
    failed = any(errors.values())
    if not present and not failed:
        return
    read_again_if_rewritten(results, lambda: _record_in(results, present, errors, kept))


def _record_in(
    results: Path, present: Mapping[str, str], errors: Mapping[str, str], kept: str
) -> None:
    failed = any(errors.values())
    version = storage.version(results)
    frame = read_results(results)
    if "local_path" not in frame.columns:
        frame["local_path"] = ""
    videos = frame["video_id"].str.strip() if "video_id" in frame.columns else None
    if videos is None:
        return  # the file lost its video ids meanwhile: nothing names a row
    tried = videos.isin(list(errors))
    frame["local_path"] = frame["local_path"].where(
        ~tried, videos.map(lambda video: present.get(video, ""))
    )
    if failed or DOWNLOAD_ERROR in frame.columns:
        if DOWNLOAD_ERROR not in frame.columns:
            frame[DOWNLOAD_ERROR] = ""
        reasons = videos.map(lambda video: errors.get(video, ""))
        frame[DOWNLOAD_ERROR] = frame[DOWNLOAD_ERROR].where(~tried, reasons)
    write_table(frame, results, kept=kept, read_as=version)


def run_download(
    config: DownloadConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver = resolve,
    disk_free: Callable[[Path], int] = _disk_free,
) -> DownloadSummary:
    """`download` for synchronous callers (the CLI)."""
    return asyncio.run(
        download(config, transport=transport, resolver=resolver, disk_free=disk_free)
    )
