"""Downloads against a tiny in-process media server: naming, resuming, skipping, local_path."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import ipaddress
import logging
import os
import stat
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpcore
import httpx
import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch.cli.download import download as download_command
from batch.errors import CatalogError, ConfigError, LocalIOError, LockedError
from batch.follow import download as download_module
from batch.follow.addresses import IPAddress, refusal
from batch.follow.download import (
    LABEL,
    DownloadConfig,
    Refused,
    UrlPolicy,
    _GuardedBackend,
    download,
    file_name,
)
from batch.store import results as stored
from batch.store.results import catalog_name, read_results, state_outcomes, write_table
from tests.helpers import RunRewritesAfterFirstRead

MEDIA = {
    "v1.mp4": b"first video " * 1000,
    "v1.jpg": b"cover one",
    "v2.mp4": b"second video " * 700,
    "v9.mp4": b"SECOND VIDEO " * 700,  # another render, of the same size as v2's
}
COLUMNS = [
    "name",
    "row",
    "status",
    "video_id",
    "video_status",
    "video_url",
    "cover_url",
    "local_path",
]


class MediaServer:
    """Serves MEDIA under /_sandbox/media/ and counts requests per method and file."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()

        async def media(request: Request) -> Response:
            name = request.path_params["name"]
            self.requests[(request.method, name)] += 1
            if name not in MEDIA:
                return Response(status_code=404)
            return Response(MEDIA[name], media_type="application/octet-stream")

        app = Starlette(routes=[Route("/_sandbox/media/{name}", media, methods=["GET"])])
        self.transport = httpx.ASGITransport(app=app)

    def gets(self) -> int:
        return sum(n for (method, _), n in self.requests.items() if method == "GET")


SANDBOX = "http://127.0.0.1:8000"  # a loopback base URL: its own origin may serve plain http


def url(name: str) -> str:
    return f"{SANDBOX}/_sandbox/media/{name}"


def write_results(path: Path) -> None:
    rows = [
        ["-dash name", "1", "submitted", "v1", "completed", url("v1.mp4"), url("v1.jpg"), ""],
        ["plain", "2", "submitted", "v2", "completed", url("v2.mp4"), "", ""],
        ["still", "3", "submitted", "v3", "processing", "", "", ""],
        ["broken", "4", "submitted", "v4", "failed", "", "", ""],
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([["'" + r[0] if r[0][0] in "=+-@" else r[0], *r[1:]] for r in rows])


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    write_results(path)
    return path


def config(results: Path, **changes: object) -> DownloadConfig:
    dest = results.parent / "videos"
    return DownloadConfig(results=results, dest=dest, base_url=SANDBOX, **changes)  # type: ignore[arg-type]


class BreaksMidway(httpx.AsyncByteStream):
    """Sends the first 100 bytes, then the connection drops."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[:100]
        raise httpx.ReadError("connection reset")


class Whole(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body


def media_response(name: str) -> httpx.Response:
    """MEDIA's `name` streamed as a server sends it (a mock's `content=` counts no bytes)."""
    headers = {"Content-Length": str(len(MEDIA[name])), "Content-Type": "video/mp4"}
    return httpx.Response(200, headers=headers, stream=Whole(MEDIA[name]))


def interrupted_transport() -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = MEDIA[request.url.path.rsplit("/", 1)[1]]
        headers = {"Content-Length": str(len(body))}
        return httpx.Response(200, headers=headers, stream=BreaksMidway(body))

    return httpx.MockTransport(handler)


def test_file_name_fills_the_template_and_sanitises_separators() -> None:
    """row is an int for formatting; / and \\ inside values become _."""
    cells = {"row": "7", "video_id": "ab/c", "name": "x\\y"}
    assert file_name("{row:05d}-{video_id}.mp4", cells) == "00007-ab_c.mp4"
    assert file_name("{name}/{video_id}.mp4", cells) == "x_y_ab_c.mp4"


def test_file_name_names_an_unknown_column() -> None:
    """A template column that does not exist is a ConfigError listing the columns."""
    with pytest.raises(ConfigError, match=r"no column 'sku' in the results; columns are row, vid"):
        file_name("{sku}.mp4", {"row": "1", "vid": "v"})


@pytest.mark.anyio
async def test_downloads_completed_videos_and_records_local_path(
    results: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only completed rows are fetched; local_path lands in the results, other cells kept; a
    row still rendering is named with the command that asks the API (download said nothing
    of it, and `0 downloaded` before `status` read as all done)."""
    server = MediaServer()
    with caplog.at_level(logging.WARNING):
        summary = await download(config(results), transport=server.transport)
    assert "1 row(s) of" in caplog.text
    assert "have a video whose render the file does not show completed" in caplog.text
    dest = results.parent / "videos"
    assert (summary.downloaded, summary.skipped, summary.failed) == (2, 0, 0)
    assert summary.bytes == len(MEDIA["v1.mp4"]) + len(MEDIA["v2.mp4"])
    assert sorted(p.name for p in dest.iterdir()) == ["00001-v1.mp4", "00002-v2.mp4"]
    assert (dest / "00001-v1.mp4").read_bytes() == MEDIA["v1.mp4"]
    frame = read_results(results)
    assert frame["local_path"].tolist() == [
        str((dest / "00001-v1.mp4").resolve()),
        str((dest / "00002-v2.mp4").resolve()),
        "",
        "",
    ]
    assert frame.loc[0, "name"] == "-dash name"
    assert results.read_text(encoding="utf-8").splitlines()[1].startswith('"\'-dash name",')


@pytest.mark.anyio
async def test_the_folders_made_for_videos_are_nobody_elses_to_write(results: Path) -> None:
    """Under a cron job's umask of 000 the delivery folder and its parents were 0777: anyone on
    the machine could swap a video in before it is handed over."""
    dest = results.parent / "out" / "videos"
    old = os.umask(0)
    try:
        await download(replace(config(results), dest=dest), transport=MediaServer().transport)
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in (dest.parent, dest)] == [0o755, 0o755]


@pytest.mark.anyio
async def test_cells_a_spreadsheet_padded_with_spaces_are_read_as_meant(results: Path) -> None:
    """`completed ` and a URL with a space after it, as a person's spreadsheet saved them:
    the videos are fetched (every row was skipped in silence, exit 0, or failed with 404)."""
    frame = read_results(results)
    padded = {"video_status": "completed ", "video_url": url("v1.mp4") + " ", "video_id": " v1"}
    frame.loc[0, list(padded)] = list(padded.values())
    frame.loc[1, "video_status"] = " Completed".lower()
    write_table(frame, results)
    summary = await download(config(results), transport=MediaServer().transport)
    assert (summary.downloaded, summary.failed) == (2, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("text", ["hello,world\n", "sku,product_id\nA,MTIz\n"])
async def test_a_file_that_is_no_results_file_is_refused(tmp_path: Path, text: str) -> None:
    """A file without the outcome columns (a note, the catalog itself) is not a results file:
    a CatalogError (exit 2) saying so, as status, retry and report say; it was "0 downloaded",
    exit 0."""
    other = tmp_path / "other.csv"
    other.write_text(text)
    with pytest.raises(CatalogError, match="not a results file of jogg-batch"):
        await download(config(other), transport=MediaServer().transport)


@pytest.mark.anyio
async def test_covers_are_optional(results: Path) -> None:
    """--covers also fetches cover images, named after the video."""
    server = MediaServer()
    await download(config(results, covers=True), transport=server.transport)
    cover = results.parent / "videos" / "00001-v1.cover.jpg"
    assert cover.read_bytes() == MEDIA["v1.jpg"]


@pytest.mark.anyio
async def test_complete_files_are_not_fetched_again(results: Path) -> None:
    """A second run only asks HEAD and skips every file already in place."""
    server = MediaServer()
    await download(config(results), transport=server.transport)
    assert server.gets() == 2
    summary = await download(config(results), transport=server.transport)
    assert server.gets() == 2
    assert (summary.downloaded, summary.skipped) == (0, 2)
    assert read_results(results)["local_path"].tolist()[1].endswith("00002-v2.mp4")


@pytest.mark.anyio
async def test_file_of_the_wrong_size_is_fetched_again(results: Path) -> None:
    """A final file whose size differs from the server's Content-Length is replaced."""
    server = MediaServer()
    dest = results.parent / "videos"
    dest.mkdir()
    (dest / "00001-v1.mp4").write_bytes(b"short")
    summary = await download(config(results), transport=server.transport)
    assert summary.downloaded == 2
    assert (dest / "00001-v1.mp4").read_bytes() == MEDIA["v1.mp4"]


@pytest.mark.anyio
async def test_interrupted_download_resumes_on_the_next_run(results: Path) -> None:
    """A dropped connection leaves no file and says why on the row; the next run completes it."""
    dest = results.parent / "videos"
    first = await download(config(results, concurrency=1), transport=interrupted_transport())
    assert (first.downloaded, first.failed) == (0, 2)
    assert list(dest.iterdir()) == []
    recorded = read_results(results)
    assert recorded["local_path"].tolist() == ["", "", "", ""]
    assert (
        recorded["download_error"].tolist()[:2]
        == ["video: transfer interrupted (ReadError: connection reset)"] * 2
    )

    second = await download(config(results), transport=MediaServer().transport)
    assert second.downloaded == 2
    assert (dest / "00001-v1.mp4").read_bytes() == MEDIA["v1.mp4"]
    assert sorted(p.name for p in dest.iterdir()) == ["00001-v1.mp4", "00002-v2.mp4"]
    assert read_results(results)["download_error"].tolist() == ["", "", "", ""]


@pytest.mark.anyio
async def test_missing_media_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    """A 404 counts as failed, creates no file and says so on the row."""
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {"row": ["1"], "video_id": ["gone"], "video_status": ["completed"],
         "video_url": [url("gone.mp4")]}
    ).to_csv(path, index=False)  # fmt: skip
    summary = await download(config(path), transport=MediaServer().transport)
    assert summary.failed == 1
    assert summary.failures[0].reason == "HTTP 404"
    assert list((tmp_path / "videos").iterdir()) == []
    assert read_results(path)["download_error"].tolist() == ["video: HTTP 404"]


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["r.csv", "r.parquet"])
async def test_a_catalog_column_named_download_error_is_kept(tmp_path: Path, name: str) -> None:
    """A catalog's own `download_error` column is written as `input_download_error`: download's
    reasons go beside it, a rewrite keeps both, and a retry reads the catalog's name back."""
    path = tmp_path / name
    inputs = pa.table(
        {"product_id": ["P1"], "download_error": ["the catalog's note"], "local_path": ["x"]}
    )
    state_row = (1, "submitted", "gone", None, None, 1, None, "completed", url("gone.mp4"))
    outcomes = state_outcomes([(*state_row, *[None] * 6)], 1, 1)
    stored.write_results(path, [inputs], lambda first, last: outcomes)
    await download(config(path), transport=MediaServer().transport)
    frame = read_results(path)
    assert frame["input_download_error"].tolist() == ["the catalog's note"]
    assert frame["download_error"].tolist() == ["video: HTTP 404"]
    assert frame["input_local_path"].tolist() == ["x"]
    assert catalog_name("input_download_error") == "download_error"


@pytest.mark.anyio
async def test_a_completed_video_without_a_url_is_a_failure_saying_so(tmp_path: Path) -> None:
    """The spec leaves video_url optional: a completed row without one is counted failed, with
    the reason on the row, never passed over as if there were nothing to fetch."""
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {"row": ["1"], "video_id": ["v9"], "video_status": ["completed"], "video_url": [""]}
    ).to_csv(path, index=False)  # fmt: skip
    server = MediaServer()
    summary = await download(config(path), transport=server.transport)
    assert (summary.downloaded, summary.failed) == (0, 1)
    assert server.gets() == 0
    assert read_results(path)["download_error"].tolist() == [
        "video: completed, but the API gave no video_url yet; run status again"
    ]


@pytest.mark.anyio
async def test_a_path_whose_file_could_not_be_fetched_again_is_cleared(tmp_path: Path) -> None:
    """The file a row's local_path named is gone and its URL answers 404 now: the row says why,
    and names no file."""
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {"row": ["1"], "video_id": ["gone"], "video_status": ["completed"],
         "video_url": [url("gone.mp4")], "local_path": [str(tmp_path / "videos" / "x.mp4")]}
    ).to_csv(path, index=False)  # fmt: skip
    await download(config(path), transport=MediaServer().transport)
    frame = read_results(path)
    assert frame["download_error"].tolist() == ["video: HTTP 404"]
    assert frame["local_path"].tolist() == [""]


@pytest.mark.anyio
async def test_a_file_fetched_before_keeps_its_path_when_fetching_it_again_fails(
    results: Path,
) -> None:
    """A file without its label (a file system without extended attributes) whose size HEAD
    does not confirm, and the GET then fails: the whole file of the last run is still there, so
    its row keeps naming it and says why it was not fetched again; a file no row recorded is
    not claimed."""
    await download(config(results), transport=MediaServer().transport)
    before = read_results(results)["local_path"].tolist()
    for path in before[:2]:
        os.removexattr(path, LABEL)
    frame = read_results(results)
    frame.loc[1, "local_path"] = ""
    frame.to_csv(results, index=False)

    def busy(request: httpx.Request) -> httpx.Response:
        size = len(MEDIA[request.url.path.rsplit("/", 1)[1]]) + 5
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(size)})
        return httpx.Response(503, content=b"busy")

    summary = await download(config(results), transport=httpx.MockTransport(busy))
    assert summary.failed == 2
    frame = read_results(results)
    assert frame["local_path"].tolist() == [before[0], "", "", ""]
    assert Path(before[0]).read_bytes() == MEDIA["v1.mp4"]
    assert frame["download_error"].tolist()[:2] == [
        "video: HTTP 503; the file fetched before is kept",
        "video: HTTP 503",
    ]


@pytest.mark.anyio
async def test_name_collisions_are_refused_before_fetching(results: Path) -> None:
    """A template that gives two rows the same name is a ConfigError naming both rows."""
    server = MediaServer()
    with pytest.raises(ConfigError, match="to rows 1 and 2"):
        await download(config(results, name_template="{status}.mp4"), transport=server.transport)
    assert server.gets() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("names", [("Mug", "MUG"), ("Caf\u00e9", "Cafe\u0301")])
async def test_names_one_only_to_a_file_system_that_folds_them_are_refused(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    """`Mug.mp4` and `MUG.mp4`, or a name composed and decomposed, are one file on macOS,
    Windows, exFAT and SMB shares: the second download would overwrite the first's video."""
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {"row": [1, 2], "video_id": ["v1", "v2"], "sku": list(names),
         "video_status": ["completed"] * 2, "video_url": [url("v1.mp4"), url("v1.mp4")]}
    ).to_csv(path, index=False)  # fmt: skip
    server = MediaServer()
    with pytest.raises(ConfigError, match=r"to rows 1 and 2 \(as a file system that ignores case"):
        await download(config(path, name_template="{sku}.mp4"), transport=server.transport)
    assert server.gets() == 0


def test_file_names_hold_no_control_character_or_direction_override() -> None:
    """C1 controls and the overrides that make a file manager show `gpj.exe` as `exe.jpg`
    become `_`, as separators and C0 controls do."""
    cells = {"row": "1", "name": "a\u0085b\u009bc\u202egpj\u2066d\u2028e"}
    assert file_name("{name}.mp4", cells) == "a_b_c_gpj_d_e.mp4"


@pytest.mark.anyio
async def test_parquet_results_keep_their_types(tmp_path: Path) -> None:
    """local_path is recorded in a Parquet file without turning int columns into text."""
    path = tmp_path / "results.parquet"
    pd.DataFrame(
        {"row": [1, 2], "video_id": ["v1", "v9"], "video_status": ["completed", "processing"],
         "video_url": [url("v1.mp4"), ""]}
    ).to_parquet(path, index=False)  # fmt: skip
    await download(config(path), transport=MediaServer().transport)
    frame = pd.read_parquet(path)
    assert frame["row"].tolist() == [1, 2]
    assert frame["local_path"][0] == str((tmp_path / "videos/00001-v1.mp4").resolve())
    assert pd.isna(frame["local_path"][1])


def test_cli_help() -> None:
    """--help documents the options."""
    outcome = CliRunner().invoke(download_command, ["--help"])
    assert outcome.exit_code == 0
    for option in ("--dest", "--covers", "--name-template", "--concurrency", "--max-size",
                   "--deadline", "--base-url"):  # fmt: skip
        assert option in outcome.stdout


def test_cli_bad_template_is_a_usage_error(results: Path) -> None:
    """An unknown column in --name-template exits 2 before any request."""
    outcome = CliRunner().invoke(
        download_command,
        [str(results), "--dest", str(results.parent / "v"), "--name-template", "{sku}.mp4"],
    )
    assert outcome.exit_code == 2
    assert "jogg-batch: error: --name-template '{sku}.mp4': no column 'sku'" in outcome.stderr


def test_cli_a_dest_that_cannot_be_a_folder_is_a_usage_error(results: Path) -> None:
    """A file where --dest would be: exit 2 naming it, nothing fetched, no traceback."""
    blocker = results.parent / "afile"
    blocker.write_text("x")
    outcome = CliRunner().invoke(download_command, [str(results), "--dest", str(blocker / "sub")])
    assert outcome.exit_code == 2
    assert f"--dest {blocker / 'sub'}: cannot make this folder" in outcome.stderr


@pytest.fixture
def read_only_results(tmp_path: Path) -> Iterator[Path]:
    """A results file in a folder nobody may write: by mode for a normal user; as root (who
    ignores modes), a tmpfs remounted read-only once the file is in it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    root = os.geteuid() == 0
    if root:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"root cannot mount a tmpfs here: {mounted.stderr!r}")
    path = folder / "catalog.results.csv"
    write_results(path)
    if root:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.chmod(0o500)
    try:
        yield path
    finally:
        if root:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o700)


@pytest.mark.anyio
async def test_a_results_file_that_cannot_be_rewritten_is_a_local_error(
    read_only_results: Path, tmp_path: Path
) -> None:
    """The files are fetched, then the results cannot take their paths (a read-only folder):
    LocalIOError (exit 7) saying where the files are; the results file is as it was."""
    before = read_only_results.read_bytes()
    dest = tmp_path / "videos"
    wanted = DownloadConfig(results=read_only_results, dest=dest, base_url=SANDBOX)
    with pytest.raises(
        LocalIOError,
        match=r"cannot write the results file .*the files fetched are in .*videos, where",
    ):
        await download(wanted, transport=MediaServer().transport)
    assert read_only_results.read_bytes() == before
    assert sorted(p.name for p in dest.iterdir()) == ["00001-v1.mp4", "00002-v2.mp4"]


def test_long_names_are_shortened_with_a_hash() -> None:
    """Over 200 bytes: the start, a hash of the whole name and the extension; stable per name."""
    short = file_name("{video_id}.mp4", {"video_id": "a" * 300})
    assert len(short.encode()) == 200
    assert short.startswith("a" * 100)
    assert short.endswith(".mp4")
    assert short == file_name("{video_id}.mp4", {"video_id": "a" * 300})
    assert short != file_name("{video_id}.mp4", {"video_id": "a" * 299 + "b"})
    assert len(file_name("{video_id}", {"video_id": "é" * 200}).encode()) <= 200


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("64:ff9b::a01:203", "private"),  # NAT64 of 10.1.2.3
        ("64:ff9b:1::a01:203", "private"),  # local-use NAT64 (RFC 8215)
        ("2002:a01:203::1", "private"),  # 6to4 of 10.1.2.3
        ("::10.1.2.3", "private"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("64:ff9b::5db8:d822", None),  # NAT64 of a public address
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "private"),  # 0.0.0.0/8 is in Python's private list
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("93.184.216.34", None),
        ("2606:2800:220:1:248:1893:25c8:1946", None),
    ],
)
def test_only_public_unicast_addresses_are_allowed(address: str, why: str | None) -> None:
    """refusal() names the kind of a non-public address, None for a public one."""
    assert refusal(ipaddress.ip_address(address)) == why


def test_plain_http_only_from_a_loopback_base_urls_own_origin() -> None:
    """A loopback base URL allows its own origin; everything else must be https."""
    sandbox = UrlPolicy.for_base_url("http://localhost:8000")
    sandbox.check(httpx.URL("http://LOCALHOST:8000/_sandbox/media/v.mp4"))
    sandbox.check(httpx.URL("https://res.jogg.ai/v.mp4"))
    for url in ("http://localhost:8001/v.mp4", "http://res.jogg.ai/v.mp4", "file:///etc/passwd"):
        with pytest.raises(Refused, match="is not an https URL"):
            sandbox.check(httpx.URL(url))
    real = UrlPolicy.for_base_url("https://api.jogg.ai")
    assert real.sandbox is None
    with pytest.raises(Refused):
        real.check(httpx.URL("http://127.0.0.1:8000/v.mp4"))


class RecordingBackend(httpcore.AsyncMockBackend):
    """Records the host each connection was opened to."""

    def __init__(self) -> None:
        super().__init__([])
        self.hosts: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: object) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await super().connect_tcp(host, port)


@pytest.mark.anyio
async def test_connection_goes_to_the_address_that_was_checked() -> None:
    """One DNS answer per connection, checked, then connected to by address: no rebinding."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]  # a rebinding resolver: public, then loopback

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers.pop(0)]

    inner = RecordingBackend()
    backend = _GuardedBackend(UrlPolicy(), rebinding, inner)
    await backend.connect_tcp("media.example", 443)
    assert inner.hosts == ["93.184.216.34"]
    with pytest.raises(Refused, match=r"'media.example' resolves to 127\.0\.0\.1, a loopback"):
        await backend.connect_tcp("media.example", 443)
    assert inner.hosts == ["93.184.216.34"]


@pytest.mark.anyio
async def test_a_name_with_any_internal_address_is_refused() -> None:
    """Public and private answers mixed: refused before any connection."""

    async def mixed(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.1")]

    inner = RecordingBackend()
    with pytest.raises(Refused, match=r"10\.0\.0\.1, a private address"):
        await _GuardedBackend(UrlPolicy(), mixed, inner).connect_tcp("media.example", 443)
    assert inner.hosts == []


def test_cli_refused_url_exits_1_and_records_why(tmp_path: Path) -> None:
    """Through the CLI (real API base URL): an http URL is not fetched; exit 1, reason recorded."""
    path = tmp_path / "results.csv"
    pd.DataFrame(
        {"row": ["1"], "video_id": ["v"], "video_status": ["completed"],
         "video_url": ["http://169.254.169.254/latest/meta-data"]}
    ).to_csv(path, index=False)  # fmt: skip
    outcome = CliRunner().invoke(
        download_command, [str(path), "--dest", str(tmp_path / "v")], env={"JOGG_BASE_URL": None}
    )
    assert outcome.exit_code == 1
    assert outcome.stdout == "0 downloaded, 0 already there, 1 failed\n"
    assert read_results(path)["download_error"][0] == (
        "video: 'http://169.254.169.254/latest/meta-data' is not an https URL; not fetched"
    )


def test_cli_zero_deadline_is_a_usage_error(results: Path) -> None:
    """--deadline must be positive."""
    outcome = CliRunner().invoke(
        download_command, [str(results), "--dest", str(results.parent / "v"), "--deadline", "0"]
    )
    assert outcome.exit_code == 2
    assert "--deadline" in outcome.stderr


@pytest.mark.anyio
async def test_a_second_download_into_the_same_folder_is_refused(results: Path) -> None:
    """Another download holds the folder: LockedError (exit 4), nothing fetched, no file of
    the other's touched."""
    dest = results.parent / "videos"
    dest.mkdir()
    other = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        server = MediaServer()
        with pytest.raises(LockedError, match="another download is writing into this folder"):
            await download(config(results), transport=server.transport)
    finally:
        os.close(other)
    assert list(dest.iterdir()) == []
    summary = await download(config(results), transport=MediaServer().transport)
    assert summary.downloaded == 2


class _Rewriting(httpx.AsyncBaseTransport):
    """The media server, where the results file is replaced by `rewrite` once the first video
    is fetched: a run of the catalog rewriting it while a long download goes on."""

    def __init__(self, path: Path, rewrite: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        self.server, self.path, self.rewrite = MediaServer(), path, rewrite
        self.rewritten = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.server.transport.handle_async_request(request)
        if request.method == "GET" and not self.rewritten:
            frame = pd.read_csv(self.path, dtype=str, keep_default_na=False)
            self.rewrite(frame).to_csv(self.path, index=False)
            self.rewritten = True
        return response


@pytest.mark.anyio
@pytest.mark.parametrize(
    "rewrite",
    [
        lambda frame: pd.concat([frame.iloc[[0]].assign(video_id="v0", row="0"), frame]),
        lambda frame: frame.iloc[::-1],
        lambda frame: frame.iloc[[1]],
    ],
    ids=["a row added first", "rows reversed", "fewer rows"],
)
async def test_each_row_gets_its_own_videos_file_when_the_results_changed_meanwhile(
    results: Path, rewrite: Callable[[pd.DataFrame], pd.DataFrame]
) -> None:
    """A run rewrote the results file while the videos came: each row is given the file of its
    own video, matched by video id (rows were given the file of the row at their old place,
    and a shorter file was an IndexError)."""
    await download(config(results, concurrency=1), transport=_Rewriting(results, rewrite))
    frame = read_results(results)
    for video, path in zip(frame["video_id"], frame["local_path"], strict=True):
        expected = {"v1": "00001-v1.mp4", "v2": "00002-v2.mp4"}.get(video)
        assert (Path(path).name if path else None) == expected, (video, path)


@pytest.mark.anyio
async def test_a_file_of_another_video_under_the_same_name_is_fetched_again(
    results: Path,
) -> None:
    """A row rendered again (another video id) whose template gives the same name: the file
    of the old video, of the same size, is replaced, not reported as already there."""
    named = config(results, name_template="{name}.mp4")
    await download(named, transport=MediaServer().transport)
    frame = read_results(results)
    frame.loc[1, ["video_id", "video_url"]] = ["v9", url("v9.mp4")]
    frame.to_csv(results, index=False)
    summary = await download(named, transport=MediaServer().transport)
    assert (summary.downloaded, summary.skipped) == (1, 1)
    assert (results.parent / "videos" / "plain.mp4").read_bytes() == MEDIA["v9.mp4"]


@pytest.mark.anyio
@pytest.mark.parametrize("present", [b"", MEDIA["v1.mp4"]], ids=["empty", "whole"])
async def test_a_file_whose_size_the_server_does_not_confirm_is_fetched_again(
    results: Path, present: bytes
) -> None:
    """A file without a label (copied in, another file system) where a HEAD is refused (a
    link signed for GET only): fetched again, not counted whole (an empty file was)."""
    dest = results.parent / "videos"
    dest.mkdir()
    (dest / "00001-v1.mp4").write_bytes(present)

    def signed_for_get(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(403)
        return media_response(request.url.path.rsplit("/", 1)[1])

    summary = await download(config(results), transport=httpx.MockTransport(signed_for_get))
    assert (summary.downloaded, summary.skipped, summary.failed) == (2, 0, 0)
    assert (dest / "00001-v1.mp4").read_bytes() == MEDIA["v1.mp4"]
    again = await download(config(results), transport=httpx.MockTransport(signed_for_get))
    assert (again.downloaded, again.skipped) == (0, 2)  # labelled now: no HEAD needed


@pytest.mark.anyio
async def test_a_name_that_is_the_results_file_is_refused(results: Path) -> None:
    """A template that names a row's video as the results file itself, in --dest: refused
    before any fetch (the video replaced the results, the only record of the video ids)."""
    frame = read_results(results)
    frame.loc[0, "name"] = results.name
    frame.to_csv(results, index=False)
    before = results.read_bytes()
    server = MediaServer()
    named = replace(config(results, name_template="{name}"), dest=results.parent)
    with pytest.raises(ConfigError, match="the name of the results file"):
        await download(named, transport=server.transport)
    assert results.read_bytes() == before
    assert server.gets() == 0


@pytest.mark.anyio
async def test_duplicate_rows_of_one_video_share_its_file(results: Path) -> None:
    """Two rows of one video (a duplicate catalog row) under a `{video_id}` template: one file
    fetched, named on both rows (refused before, advising the template given)."""
    frame = read_results(results)
    frame.loc[2, ["video_id", "video_status", "video_url"]] = ["v1", "completed", url("v1.mp4")]
    frame.to_csv(results, index=False)
    server = MediaServer()
    summary = await download(
        config(results, name_template="{video_id}.mp4"), transport=server.transport
    )
    assert (summary.downloaded, summary.failed) == (2, 0)
    assert server.requests[("GET", "v1.mp4")] == 1
    paths = read_results(results)["local_path"].tolist()
    assert paths[0] == paths[2] == str((results.parent / "videos" / "v1.mp4").resolve())


@pytest.mark.anyio
async def test_files_in_place_when_stopped_are_recorded(results: Path) -> None:
    """Stopped (a signal cancels the command) while one file is still coming: the file already
    in place is recorded on its row, as the command's last line says."""
    stalled = asyncio.Event()

    async def serve(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[1]
        if name == "v2.mp4":
            stalled.set()
            await asyncio.Event().wait()
        return media_response(name)

    task = asyncio.create_task(
        download(config(results, concurrency=2), transport=httpx.MockTransport(serve))
    )
    await stalled.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    paths = read_results(results)["local_path"].tolist()
    assert paths[:2] == [str((results.parent / "videos" / "00001-v1.mp4").resolve()), ""]


@pytest.mark.anyio
async def test_a_results_file_not_rewritable_after_nothing_was_fetched_says_so(
    read_only_results: Path, tmp_path: Path
) -> None:
    """Every file failed and the results cannot take why: the message says nothing was
    fetched (it said the files were in --dest, and that the state kept what was learned)."""
    wanted = DownloadConfig(results=read_only_results, dest=tmp_path / "v", base_url=SANDBOX)
    failing = httpx.MockTransport(lambda request: httpx.Response(503))
    with pytest.raises(LocalIOError, match="no file was fetched") as raised:
        await download(wanted, transport=failing)
    assert "state" not in str(raised.value)


@pytest.mark.anyio
async def test_a_completed_row_without_a_video_id_is_not_fetched_nor_given_to_others(
    results: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A completed row whose video_id cell was cleared: rows are matched by video id, so its
    file would be named on every row without one (the invalid ones): it is left, saying so."""
    frame = read_results(results)
    frame.loc[0, "video_id"] = ""
    frame.loc[3, "video_id"] = ""  # the failed render: no file of its own
    frame.to_csv(results, index=False)
    with caplog.at_level(logging.WARNING):
        summary = await download(config(results), transport=MediaServer().transport)
    assert (summary.downloaded, summary.failed) == (1, 0)
    assert "row 1 is completed but has no video_id; not fetched" in caplog.text
    assert read_results(results)["local_path"].tolist()[0::3] == ["", ""]


def test_a_results_file_a_run_rewrites_while_download_records_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`download` read the file to record its paths, a run rewrote it (row 2 now submitted as
    v2), and `download` wrote its older copy over it: a paid row lost its video id. The file
    changed since it was read is read again, and the run's rows kept."""
    results = tmp_path / "r.csv"
    read_while_a_run_writes = RunRewritesAfterFirstRead(results)
    monkeypatch.setattr(download_module, "read_results", read_while_a_run_writes)
    download_module._record(results, {"v1": "1-v1.mp4"}, {"v1": ""}, "kept")
    frame = read_results(results)
    assert len(read_while_a_run_writes.reads) == 2
    assert list(frame["video_id"]) == ["v1", "v2"]
    assert list(frame["local_path"]) == ["1-v1.mp4", ""]
