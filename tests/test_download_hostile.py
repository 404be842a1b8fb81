"""Downloads from a malicious media server on loopback: nothing internal fetched, nothing written
outside --dest, every refused file recorded on its row with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from batch.cli.download import download as download_command
from batch.follow.addresses import IPAddress
from batch.follow.download import DownloadConfig, DownloadSummary, download
from batch.store.results import read_results

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]
KiB = 1024


def head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def body(data: bytes, content_type: str = "video/mp4", length: int | None = None) -> Handler:
    """A response with `data`, announcing `length` (default: the true length)."""

    async def send(writer: asyncio.StreamWriter) -> None:
        claimed = len(data) if length is None else length
        writer.write(head("200 OK", {"Content-Type": content_type, "Content-Length": str(claimed)}))
        writer.write(data)

    return send


def redirect(location: str) -> Handler:
    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(head("302 Found", {"Location": location, "Content-Length": "0"}))

    return send


def endless(chunked: bool) -> Handler:
    """64 KiB pieces until the client hangs up (10 MiB at most): chunked, or until close."""

    async def send(writer: asyncio.StreamWriter) -> None:
        framing = {"Transfer-Encoding": "chunked"} if chunked else {}
        writer.write(head("200 OK", {"Content-Type": "video/mp4", **framing}))
        piece = b"x" * (64 * KiB)
        for _ in range(160):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()

    return send


def trickle(delay: float) -> Handler:
    """Announces 1000 bytes and sends one every `delay` seconds."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(head("200 OK", {"Content-Type": "video/mp4", "Content-Length": "1000"}))
        for _ in range(1000):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(delay)

    return send


def slowly(size: int, pieces: int = 20) -> Handler:
    """Announces `size` bytes and sends them in `pieces`, 10 ms apart: transfers overlap."""

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(head("200 OK", {"Content-Type": "video/mp4", "Content-Length": str(size)}))
        for _ in range(pieces):
            writer.write(b"s" * (size // pieces))
            await writer.drain()
            await asyncio.sleep(0.01)

    return send


def gzipped(data: bytes) -> Handler:
    """`data` gzip-encoded, announcing the (honest) compressed length, whatever was asked."""

    async def send(writer: asyncio.StreamWriter) -> None:
        packed = gzip.compress(data)
        headers = {"Content-Type": "video/mp4", "Content-Encoding": "gzip"}
        writer.write(head("200 OK", {**headers, "Content-Length": str(len(packed))}))
        writer.write(packed)

    return send


def silent() -> Handler:
    """Never answers (until the client gives up)."""

    async def send(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    return send


class RawServer:
    """An HTTP/1.1 server on loopback answering paths with raw bytes; records every request."""

    def __init__(self, routes: dict[str, Handler] | None = None) -> None:
        self.routes = routes or {}
        self.hits: list[tuple[str, str]] = []
        self.connections = 0
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
            self.hits.append((method, target))
            handler = self.routes.get(target)
            if handler is None:
                writer.write(head("404 Not Found", {"Content-Length": "0"}))
            else:
                await handler(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


@pytest.fixture
async def internal() -> AsyncIterator[RawServer]:
    """A service that must never be reached: it serves a secret everywhere."""
    secret = body(b"internal secret", "text/plain")
    server = RawServer({"/secret": secret, "/latest/meta-data": secret})
    async with server.running():
        yield server


@pytest.fixture
async def hostile() -> AsyncIterator[RawServer]:
    """The API's own origin (the base URL), which turns malicious."""
    async with RawServer().running() as server:
        yield server


def fake_dns(names: dict[str, str]) -> Callable[[str, int], Awaitable[list[IPAddress]]]:
    """Resolves the given names; IP literals resolve to themselves."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(names.get(host, host))]

    return resolve


def write_results(path: Path, rows: list[dict[str, str]]) -> Path:
    frame = pd.DataFrame(
        [
            {"row": str(n), "video_id": f"v{n}", "video_status": "completed", "cover_url": "", **r}
            for n, r in enumerate(rows, start=1)
        ]
    )
    frame.to_csv(path, index=False)
    return path


def tree(root: Path, skip: tuple[Path, ...]) -> dict[str, bytes]:
    """Every file under root (symlinks as their target), except the `skip` paths."""
    found: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if any(path == s or s in path.parents for s in skip):
            continue
        if path.is_symlink():
            found[str(path)] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[str(path)] = path.read_bytes()
    return found


class Scene:
    """A results file in tmp_path, the download's --dest, and what lay around them before."""

    def __init__(self, tmp_path: Path, base_url: str, rows: list[dict[str, str]]) -> None:
        self.root = tmp_path
        self.results = write_results(tmp_path / "results.csv", rows)
        self.dest = tmp_path / "videos"
        self.base_url = base_url
        (tmp_path / "outside.txt").write_bytes(b"precious")
        self.before = self.outside()

    def outside(self) -> dict[str, bytes]:
        return tree(self.root, (self.dest, self.results))

    def config(self, **changes: object) -> DownloadConfig:
        return DownloadConfig(
            self.results,
            self.dest,
            base_url=self.base_url,
            progress=False,
            **changes,  # type: ignore[arg-type]
        )

    async def run(self, names: dict[str, str] | None = None, **changes: object) -> DownloadSummary:
        summary = await download(self.config(**changes), resolver=fake_dns(names or {}))
        assert self.outside() == self.before, "something was written outside --dest"
        return summary

    def errors(self) -> list[str]:
        return [str(e) for e in read_results(self.results)["download_error"]]

    def files(self) -> dict[str, int]:
        return {path.name: path.lstat().st_size for path in self.dest.iterdir()}


@pytest.mark.anyio
async def test_internal_addresses_are_never_fetched(
    tmp_path: Path, hostile: RawServer, internal: RawServer
) -> None:
    """Loopback, private, link-local, multicast, mapped and plain-http URLs: refused, recorded."""
    port = internal.port
    urls = [
        f"http://127.0.0.1:{port}/secret",
        f"https://127.0.0.1:{port}/secret",
        f"https://internal.test:{port}/secret",
        "https://metadata.test/latest/meta-data",
        "https://10.0.0.7/secret",
        "https://[ff02::1]/secret",
        f"https://[::ffff:127.0.0.1]:{port}/secret",
        "ftp://files.test/v.mp4",
    ]
    scene = Scene(tmp_path, hostile.origin, [{"video_url": url} for url in urls])
    summary = await scene.run({"internal.test": "127.0.0.1", "metadata.test": "169.254.169.254"})
    assert (summary.downloaded, summary.failed) == (0, len(urls))
    assert (internal.connections, hostile.connections) == (0, 0)
    assert scene.files() == {}
    assert scene.errors() == [
        f"video: 'http://127.0.0.1:{port}/secret' is not an https URL; not fetched",
        "video: '127.0.0.1' resolves to 127.0.0.1, a loopback address; not fetched",
        "video: 'internal.test' resolves to 127.0.0.1, a loopback address; not fetched",
        "video: 'metadata.test' resolves to 169.254.169.254, a link-local address; not fetched",
        "video: '10.0.0.7' resolves to 10.0.0.7, a private address; not fetched",
        "video: 'ff02::1' resolves to ff02::1, a multicast address; not fetched",
        "video: '::ffff:127.0.0.1' resolves to ::ffff:7f00:1, a loopback address; not fetched",
        "video: 'ftp://files.test/v.mp4' is not an https URL; not fetched",
    ]


@pytest.mark.anyio
async def test_redirects_are_checked_at_every_hop(
    tmp_path: Path, hostile: RawServer, internal: RawServer
) -> None:
    """A redirect to an internal host or scheme is refused; loops stop; same-origin hops work."""
    port = internal.port
    hostile.routes.update(
        {
            "/to-loopback": redirect(f"http://127.0.0.1:{port}/secret"),
            "/to-name": redirect(f"https://internal.test:{port}/secret"),
            "/hop": redirect("/hop-2"),
            "/hop-2": redirect("/to-name"),
            "/loop": redirect("/loop"),
            "/fine": redirect("/video.mp4"),
            "/video.mp4": body(b"v" * 5000),
        }
    )
    paths = ["/to-loopback", "/to-name", "/hop", "/loop", "/fine"]
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + p} for p in paths])
    summary = await scene.run({"internal.test": "127.0.0.1"}, max_redirects=3)
    assert (summary.downloaded, summary.failed) == (1, 4)
    assert internal.connections == 0
    assert scene.files() == {"00005-v5.mp4": 5000}
    assert scene.errors() == [
        f"video: 'http://127.0.0.1:{port}/secret' is not an https URL; not fetched",
        "video: 'internal.test' resolves to 127.0.0.1, a loopback address; not fetched",
        "video: 'internal.test' resolves to 127.0.0.1, a loopback address; not fetched",
        "video: more than 3 redirects; not followed",
        "",
    ]
    assert hostile.hits.count(("GET", "/loop")) == 4


@pytest.mark.anyio
async def test_oversize_bodies_are_cut_at_the_limit(tmp_path: Path, hostile: RawServer) -> None:
    """Chunked, read-until-close and over-announced bodies stop at --max-size, leaving nothing."""
    limit = 64 * KiB
    hostile.routes.update(
        {
            "/chunked": endless(chunked=True),
            "/until-close": endless(chunked=False),
            "/announced": body(b"y" * (limit + 1)),
            "/lying": body(b"z" * (4 * limit), length=100),
            "/fits": body(b"f" * limit),
        }
    )
    paths = ["/chunked", "/until-close", "/announced", "/lying", "/fits"]
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + p} for p in paths])
    summary = await scene.run(max_bytes=limit)
    # A Content-Length that understates the body ends the body there: the rest is never read.
    assert scene.files() == {"00004-v4.mp4": 100, "00005-v5.mp4": limit}
    assert (summary.downloaded, summary.failed) == (2, 3)
    assert summary.bytes == 100 + limit
    assert scene.errors() == [
        "video: more than 65536 bytes sent, over the limit; stopped",
        "video: more than 65536 bytes sent, over the limit; stopped",
        "video: 65537 bytes announced, over the 65536 byte limit",
        "",
        "",
    ]


@pytest.mark.anyio
async def test_slow_servers_hit_the_deadline(tmp_path: Path, hostile: RawServer) -> None:
    """A trickling body and a server that never answers both stop at the per-file deadline."""
    hostile.routes.update({"/trickle": trickle(0.02), "/silent": silent()})
    rows = [{"video_url": hostile.origin + p} for p in ("/trickle", "/silent")]
    scene = Scene(tmp_path, hostile.origin, rows)
    started = time.monotonic()
    summary = await scene.run(file_deadline=0.3)
    assert time.monotonic() - started < 2.0
    assert summary.failed == 2
    assert scene.files() == {}
    assert scene.errors() == ["video: not finished within 0.3 s"] * 2


@pytest.mark.anyio
async def test_cover_extension_comes_from_an_allow_list(tmp_path: Path, hostile: RawServer) -> None:
    """A `.html` cover is never saved as html: a web page is refused, an image becomes .jpg."""
    page = b"<script>alert(document.cookie)</script>"
    hostile.routes.update(
        {
            "/v.mp4": body(b"v" * 100),
            "/cover.html": body(page, "text/html"),
            "/image.html": body(b"\x89PNG....", "image/png"),
            "/cover.png": body(b"\x89PNG....", "image/png"),
        }
    )
    video = hostile.origin + "/v.mp4"
    covers = ["/cover.html", "/image.html", "/cover.png"]
    rows = [{"video_url": video, "cover_url": hostile.origin + c} for c in covers]
    scene = Scene(tmp_path, hostile.origin, rows)
    summary = await scene.run(covers=True)
    assert summary.failed == 1
    assert scene.files() == {
        "00001-v1.mp4": 100,
        "00002-v2.mp4": 100,
        "00002-v2.cover.jpg": 8,
        "00003-v3.mp4": 100,
        "00003-v3.cover.png": 8,
    }
    assert scene.errors() == ["cover: content type 'text/html' is not an image", "", ""]


@pytest.mark.anyio
async def test_long_ids_are_shortened_and_write_errors_stay_on_their_row(
    tmp_path: Path, hostile: RawServer
) -> None:
    """A 300-character id gets a hashed name; a file that cannot be written fails alone."""
    hostile.routes["/v.mp4"] = body(b"v" * 100)
    video = hostile.origin + "/v.mp4"
    long_id = "a" * 300
    rows = [{"video_url": video, "video_id": long_id}, {"video_url": video}]
    scene = Scene(tmp_path, hostile.origin, rows)
    (scene.dest / "00002-v2.mp4").mkdir(parents=True)  # os.replace onto a directory fails
    summary = await scene.run()
    assert (summary.downloaded, summary.failed) == (1, 1)
    [saved] = [name for name in scene.files() if name.endswith(".mp4") and "aaa" in name]
    assert len(saved.encode()) <= 200
    assert saved.startswith("00001-aaaa")
    assert saved.endswith(".mp4")
    assert read_results(scene.results)["local_path"][0] == str((scene.dest / saved).resolve())
    assert scene.errors() == ["", "video: cannot write '00002-v2.mp4': Is a directory"]


@pytest.mark.anyio
async def test_planted_symlinks_are_never_followed(tmp_path: Path, hostile: RawServer) -> None:
    """A `.part` symlink is refused and left alone; a final-name symlink is replaced, not written
    through."""
    hostile.routes["/v.mp4"] = body(b"v" * 100)
    video = hostile.origin + "/v.mp4"
    scene = Scene(tmp_path, hostile.origin, [{"video_url": video}, {"video_url": video}])
    scene.dest.mkdir()
    outside = tmp_path / "outside.txt"
    (scene.dest / "00001-v1.mp4.part").symlink_to(outside)
    (scene.dest / "00002-v2.mp4").symlink_to(outside)
    summary = await scene.run()
    assert (summary.downloaded, summary.failed) == (1, 1)
    assert outside.read_bytes() == b"precious"
    assert (scene.dest / "00001-v1.mp4.part").is_symlink()
    assert not (scene.dest / "00002-v2.mp4").is_symlink()
    assert (scene.dest / "00002-v2.mp4").read_bytes() == b"v" * 100
    assert scene.errors() == [
        "video: '00001-v1.mp4.part' exists and is not a regular file of ours (a symlink?); "
        "not followed, remove it",
        "",
    ]


@pytest.mark.anyio
async def test_a_full_disk_is_checked_before_each_file(tmp_path: Path, hostile: RawServer) -> None:
    """Too little free space beyond the announced size: not started, and the row says so."""
    hostile.routes["/v.mp4"] = body(b"v" * 100)
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + "/v.mp4"}])
    summary = await download(scene.config(), disk_free=lambda _: 10 * 1024 * KiB)
    assert summary.failed == 1
    assert scene.files() == {}
    assert scene.errors() == [
        f"video: only 10 MiB free in {str(scene.dest)!r}; keeping 64 MiB free"
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(("results_mode", "file_mode"), [(0o600, 0o600), (0o644, 0o644)])
async def test_files_are_private_unless_the_results_are_not(
    tmp_path: Path, hostile: RawServer, results_mode: int, file_mode: int
) -> None:
    """Downloads are 0600, or readable by as many people as the results file."""
    hostile.routes["/v.mp4"] = body(b"v" * 100)
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + "/v.mp4"}])
    scene.results.chmod(results_mode)
    old = os.umask(0o022)
    try:
        await scene.run()
    finally:
        os.umask(old)
    assert (scene.dest / "00001-v1.mp4").stat().st_mode & 0o777 == file_mode


class Disk:
    """A disk of `capacity` bytes that holds --dest alone: free is what its files leave, and
    `lowest` the least free space any probe saw."""

    def __init__(self, dest: Path, capacity: int) -> None:
        self.dest = dest
        self.capacity = capacity
        self.lowest = capacity

    def __call__(self, folder: Path) -> int:
        self.lowest = min(self.lowest, self.free())
        return self.free()

    def free(self) -> int:
        files = self.dest.iterdir() if self.dest.exists() else iter(())
        return self.capacity - sum(path.lstat().st_size for path in files)


@pytest.mark.anyio
async def test_a_body_without_length_stops_at_the_reserve(
    tmp_path: Path, hostile: RawServer
) -> None:
    """Chunked and read-until-close bodies are stopped before the disk goes under the reserve;
    their partial files go, and a file that fits is fetched after them."""
    reserve = 256 * KiB
    hostile.routes.update(
        {
            "/chunked": endless(chunked=True),
            "/until-close": endless(chunked=False),
            "/fits": body(b"f" * 1000),
        }
    )
    paths = ["/chunked", "/until-close", "/fits"]
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + p} for p in paths])
    disk = Disk(scene.dest, 1024 * KiB)
    config = scene.config(min_free_bytes=reserve, concurrency=1)
    summary = await download(config, resolver=fake_dns({}), disk_free=disk)
    assert (summary.downloaded, summary.failed) == (1, 2)
    assert scene.files() == {"00003-v3.mp4": 1000}
    assert disk.lowest >= reserve
    assert disk.free() >= reserve
    folder = re.escape(repr(str(scene.dest)))
    stopped = re.compile(
        rf"video: stopped after (\d+) KiB: only \d+ KiB free in {folder}; keeping 256 KiB free"
    )
    *errors, last = scene.errors()
    assert last == ""
    for error in errors:
        found = stopped.fullmatch(error)
        assert found, error
        assert 0 < int(found[1]) <= 768


@pytest.mark.anyio
async def test_a_compressed_body_is_refused(tmp_path: Path, hostile: RawServer) -> None:
    """A server that gzips though asked for identity: a few KiB announced would decode to
    4 MiB on a 1 MiB disk. Refused before anything is written."""
    hostile.routes["/v.mp4"] = gzipped(b"\0" * (4 * 1024 * KiB))
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + "/v.mp4"}])
    disk = Disk(scene.dest, 1024 * KiB)
    config = scene.config(min_free_bytes=256 * KiB)
    summary = await download(config, resolver=fake_dns({}), disk_free=disk)
    assert summary.failed == 1
    assert scene.files() == {}
    assert disk.lowest == 1024 * KiB
    assert scene.errors() == [
        "video: sent with Content-Encoding 'gzip', not as is (identity) as asked; not fetched"
    ]


@pytest.mark.anyio
async def test_transfers_under_way_count_against_the_reserve(
    tmp_path: Path, hostile: RawServer
) -> None:
    """Four 60 KiB files at once on a 200 KiB disk keeping 64 KiB: two fit and are fetched, the
    other two are refused, saying what the ones under way still need; the reserve holds."""
    size = 60 * KiB
    paths = [f"/v{n}.mp4" for n in range(4)]
    hostile.routes.update({path: slowly(size) for path in paths})
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + p} for p in paths])
    disk = Disk(scene.dest, 200 * KiB)
    config = scene.config(min_free_bytes=64 * KiB, concurrency=4)
    summary = await download(config, resolver=fake_dns({}), disk_free=disk)
    assert (summary.downloaded, summary.failed) == (2, 2)
    assert sorted(scene.files().values()) == [size, size]
    assert disk.lowest >= 64 * KiB
    folder = re.escape(repr(str(scene.dest)))
    refused = re.compile(
        rf"video: only \d+ KiB free in {folder}, \d+ KiB of it promised to the files fetched "
        r"alongside; keeping 64 KiB free"
    )
    errors = [error for error in scene.errors() if error]
    assert len(errors) == 2
    assert all(refused.fullmatch(error) for error in errors), errors


KEY = "sk-live-9f8e7d6c5b4a3210ZZqq"


@pytest.mark.anyio
async def test_the_api_key_never_travels_from_a_server_into_results_or_logs(
    tmp_path: Path, hostile: RawServer
) -> None:
    """The API's own origin echoes the key in a redirect's Location, a content encoding and a
    content type: `download` (JOGG_API_KEY set) records and logs every reason with it masked."""

    async def encoded(writer: asyncio.StreamWriter) -> None:
        headers = {"Content-Type": "video/mp4", "Content-Encoding": KEY, "Content-Length": "0"}
        writer.write(head("200 OK", headers))

    hostile.routes.update(
        {
            "/to-ftp": redirect(f"ftp://files.example/{KEY}/v.mp4"),
            "/encoded": encoded,
            "/page": body(b"<html>", f"text/{KEY}"),
        }
    )
    paths = ["/to-ftp", "/encoded", "/page"]
    scene = Scene(tmp_path, hostile.origin, [{"video_url": hostile.origin + p} for p in paths])
    args = [str(scene.results), "--dest", str(scene.dest), "--base-url", hostile.origin]
    env = {"JOGG_API_KEY": KEY, "JOGG_BASE_URL": None}
    outcome = await asyncio.to_thread(CliRunner().invoke, download_command, args, env=env)
    assert outcome.exit_code == 1
    assert scene.errors() == [
        "video: 'ftp://files.example/***/v.mp4' is not an https URL; not fetched",
        "video: sent with Content-Encoding '***', not as is (identity) as asked; not fetched",
        "video: content type 'text/***' is not a video",
    ]
    assert KEY.lower() not in scene.results.read_text().lower()
    assert "ftp://files.example/***/v.mp4" in outcome.stderr
    assert KEY.lower() not in outcome.stderr.lower()
