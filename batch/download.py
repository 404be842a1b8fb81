"""Downloading finished videos (and optionally their covers) named from a results file.

JoggAI does not keep media forever, so `download` fetches every completed video of a results file
into one folder, with at most `concurrency` transfers at a time, and records each file's path in
the results' `local_path` column (the results file is rewritten atomically).

Resumable: every file is written to `<name>.part` and renamed into place only once its length
matches the server's Content-Length, so a file under its final name is complete. On a second run
such a file is skipped after a HEAD request confirms its size (or when the HEAD fails: the URL
may have expired, and the file is the only copy left); a leftover `.part` is fetched again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
import pandas as pd
from tqdm import tqdm

from batch.errors import ConfigError
from batch.results import read_results, write_table

log = logging.getLogger(__name__)

DEFAULT_NAME_TEMPLATE = "{row:05d}-{video_id}.mp4"
_UNSAFE = re.compile(r"[/\\\x00-\x1f]")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class DownloadConfig:
    """What `jogg-batch download` was asked to do."""

    results: Path
    dest: Path
    covers: bool = False
    name_template: str = DEFAULT_NAME_TEMPLATE
    concurrency: int = 4
    progress: bool | None = None  # None: a progress bar only when stderr is a terminal
    timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class DownloadSummary:
    downloaded: int
    skipped: int
    failed: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Fetch:
    index: int  # position in the results frame
    url: str
    path: Path
    is_video: bool


def file_name(template: str, cells: Mapping[str, str]) -> str:
    """The template filled from one results row; path separators become `_`.

    `row` is an int (so `{row:05d}` works); every other column is its text.
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
    return name


def _check_template(template: str) -> None:
    """Rejects a malformed template before any row is read."""
    try:
        list(string.Formatter().parse(template))
    except ValueError as error:
        raise ConfigError(f"--name-template {template!r}: {error}") from None


def _cover_name(video_name: str, cover_url: str) -> str:
    suffix = PurePosixPath(urlsplit(cover_url).path).suffix.lower()
    stem = video_name.rsplit(".", 1)[0] if "." in video_name else video_name
    return f"{stem}.cover{suffix if _SUFFIX.fullmatch(suffix) else '.jpg'}"


def _plan(frame: pd.DataFrame, config: DownloadConfig) -> list[_Fetch]:
    fetches: list[_Fetch] = []
    owners: dict[Path, str] = {}
    for index, cells in enumerate(frame.to_dict("records")):
        text = {str(key): str(value) for key, value in cells.items()}
        if text.get("video_status") != "completed" or not text.get("video_url"):
            continue
        name = file_name(config.name_template, text)
        wanted = [(text["video_url"], name, True)]
        if config.covers and text.get("cover_url"):
            wanted.append((text["cover_url"], _cover_name(name, text["cover_url"]), False))
        for url, file, is_video in wanted:
            path = config.dest / file
            row = text.get("row", str(index + 1))
            if path in owners:
                raise ConfigError(
                    f"--name-template {config.name_template!r} gives {file!r} to rows "
                    f"{owners[path]} and {row}; add a unique column such as {{video_id}}"
                )
            owners[path] = row
            fetches.append(_Fetch(index, url, path, is_video))
    return fetches


async def download(
    config: DownloadConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> DownloadSummary:
    """Fetches what `config` asks for and records `local_path` in the results file."""
    if config.concurrency < 1:
        raise ConfigError(f"--concurrency {config.concurrency}: use 1 or more")
    _check_template(config.name_template)
    frame = read_results(config.results)
    fetches = _plan(frame, config)
    config.dest.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(config.concurrency)
    counts = {"downloaded": 0, "skipped": 0, "failed": 0, "bytes": 0}
    present: dict[int, str] = {}
    show = sys.stderr.isatty() if config.progress is None else config.progress
    async with httpx.AsyncClient(
        transport=transport, timeout=config.timeout, follow_redirects=True
    ) as client:
        with tqdm(total=len(fetches), unit="file", disable=not show, file=sys.stderr) as bar:

            async def one(fetch: _Fetch) -> None:
                async with gate:
                    outcome, size = await _fetch(client, fetch)
                counts[outcome] += 1
                counts["bytes"] += size
                if outcome != "failed" and fetch.is_video:
                    present[fetch.index] = str(fetch.path.resolve())
                bar.update()

            await asyncio.gather(*(one(fetch) for fetch in fetches))
    _record_local_paths(config.results, present)
    summary = DownloadSummary(**counts)
    log.info(
        "downloads: %d fetched, %d already there, %d failed",
        summary.downloaded,
        summary.skipped,
        summary.failed,
    )
    return summary


async def _fetch(client: httpx.AsyncClient, fetch: _Fetch) -> tuple[str, int]:
    """("downloaded" | "skipped" | "failed", bytes written)."""
    if fetch.path.exists() and await _complete(client, fetch):
        return "skipped", 0
    part = fetch.path.with_name(fetch.path.name + ".part")
    written = 0
    try:
        async with client.stream("GET", fetch.url) as response:
            if response.status_code != httpx.codes.OK:
                log.warning("%s: HTTP %d, not downloaded", fetch.path.name, response.status_code)
                return "failed", 0
            expected = response.headers.get("Content-Length")
            with part.open("wb") as handle:
                async for chunk in response.aiter_bytes():
                    handle.write(chunk)
                    written += len(chunk)
    except httpx.HTTPError as error:
        log.warning("%s: transfer interrupted (%s); run again to resume", fetch.path.name, error)
        return "failed", written
    if expected is not None and expected.isdigit() and int(expected) != written:
        log.warning("%s: got %d of %s bytes; run again", fetch.path.name, written, expected)
        part.unlink()
        return "failed", written
    os.replace(part, fetch.path)
    return "downloaded", written


async def _complete(client: httpx.AsyncClient, fetch: _Fetch) -> bool:
    """An existing final file is complete unless the server says another size."""
    try:
        response = await client.head(fetch.url)
    except httpx.HTTPError:
        return True
    expected = response.headers.get("Content-Length")
    if response.status_code != httpx.codes.OK or expected is None or not expected.isdigit():
        return True
    if int(expected) == fetch.path.stat().st_size:
        return True
    log.info("%s: size differs from the server's, fetching again", fetch.path.name)
    return False


def _record_local_paths(results: Path, present: Mapping[int, str]) -> None:
    """Rewrites the results file with `local_path` set for these (0-based) rows."""
    if not present:
        return
    frame = read_results(results)
    if "local_path" not in frame.columns:
        frame["local_path"] = ""
    column = list(frame["local_path"])
    for position, path in present.items():
        column[position] = path
    frame["local_path"] = column
    write_table(frame, results)


def run_download(
    config: DownloadConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> DownloadSummary:
    """`download` for synchronous callers (the CLI)."""
    return asyncio.run(download(config, transport=transport))
