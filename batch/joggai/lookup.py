"""What the account can use: avatars (public and custom), voices, music and visual styles.

Owns fetching the look-up lists through `JoggClient` (every page of them), their typed items, and
an on-disk JSON cache with a time-to-live under `$XDG_CACHE_HOME/jogg-batch/` (else
`~/.cache/jogg-batch/`). A cache directory belongs to one base URL and one account: it is named by
an HMAC of both under a random salt kept in the cache folder (`salt`, 0600), so the key is never
written anywhere and a name cannot be checked against a guessed key on another machine. Folders
are 0700 and files 0600. GETs are not rate-limited by the API, so nothing here goes through the
POST limiter.

Paging differs per endpoint (reference §3.7): voices say `has_more`, music gives `total_pages`,
avatars give nothing. What a page says of the pages left is followed (a server may send fewer a
page than asked); without it, only an empty page ends a listing, or one that repeats the page
before it (a server that ignores `page` and sends the whole collection each time), or
`_STALLED_PAGES` pages in a row that bring no item not read before (pages that take turns). A
short page proves nothing: a server may page by 50 where 100 were asked, and a valid avatar on its
next page would make rows invalid. An item read twice is kept once, and a list whose items pass
`_MAX_LIST_BYTES` (as JSON) fails: a server chooses how long names are.

Nor does a walk go past the run's deadline (`--max-duration`, `--until`): a server may answer each
page slowly and never end. A list not read to its end by then fails with LookupDeadline (a page in
flight cut off), and is neither cached nor used: an avatar not read yet is not known to be missing,
and a row naming it must not be refused as invalid.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeGuard, TypeVar

import httpx

from batch import files, untrusted
from batch.errors import AccountError, ApiError, ConfigError
from batch.joggai.client import ApiOutcome, JoggClient, Timeouts
from batch.logs import escape_controls
from batch.secret import Secret
from batch.vocabulary import ASPECT_RATIOS

log = logging.getLogger(__name__)

LookupKind = Literal["avatars", "voices", "music", "styles"]
LOOKUP_KINDS: Final = ("avatars", "voices", "music", "styles")
OutputFormat = Literal["table", "csv", "json"]
DEFAULT_TTL: Final = 24 * 3600.0
PAGE_SIZE: Final = 100  # the API's maximum
_MAX_PAGES: Final = 1000  # a listing that never ends is a server bug, not 100,000 avatars
_STALLED_PAGES: Final = 3
_MAX_LIST_BYTES: Final = 64 << 20  # some hundred times what a real account's lists take
_RATIO_NAMES: Final = {0: "portrait", 1: "landscape", 2: "square"}  # v2 responses use ints
_SALT_FILE: Final = "salt"
_FORMULA_START: Final = re.compile(r"^[=+\-@\t\r]")  # as in batch.store.results


class LookupDeadline(ApiError):
    """A look-up list that was not read to its end by the run's deadline."""


class Avatar(NamedTuple):
    id: int
    name: str
    type: int  # 0 public, 1 custom: the value `avatar.type` takes in a create request
    aspect_ratio: str | None  # public avatars only
    gender: str | None


class Voice(NamedTuple):
    voice_id: str
    name: str
    language: str | None
    gender: str | None


class Music(NamedTuple):
    id: int
    name: str
    duration: float | None


class VisualStyle(NamedTuple):
    name: str
    aspect_ratio: str
    id: int | None


Item = Avatar | Voice | Music | VisualStyle
_T = TypeVar("_T", Avatar, Voice, Music, VisualStyle)


@dataclass(frozen=True, slots=True)
class Lookups:
    """Every look-up list at once, as the pre-flight check needs them."""

    avatars: tuple[Avatar, ...]
    voices: tuple[Voice, ...]
    music: tuple[Music, ...]
    styles: Mapping[str, tuple[VisualStyle, ...]]  # by aspect ratio


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "jogg-batch"


class LookupCache:
    """JSON files of look-up items, one per list, fresh for `ttl` seconds after they were fetched.

    An unreadable, corrupt or stale file counts as absent, and a cache folder that cannot be
    made private (a link, another user's) is not used: the cache only ever saves GETs.
    """

    def __init__(
        self,
        directory: Path,
        base_url: str,
        api_key: Secret | str,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = directory
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self._clock = clock
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self._folder: Path | None = None

    def folder(self, *, create: bool = False) -> Path | None:
        """This account's folder: `root/<HMAC(salt, base URL + key)>`; None without a salt yet
        (nothing was ever stored) or when the cache folder is not private to this user."""
        if self._folder is not None:
            return self._folder
        salt_path = self.root / _SALT_FILE
        try:
            if create:
                files.private_dir(self.root)
                salt = files.read_or_create_private(salt_path, secrets.token_hex(32).encode())
            else:
                salt = files.read_private(salt_path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot use the look-up cache %s (%s); going on without it", self.root, exc)
            return None
        message = f"{self.base_url}\n{self._key.reveal()}".encode()
        self._folder = self.root / hmac.new(salt, message, hashlib.sha256).hexdigest()[:32]
        return self._folder

    def load(self, name: str) -> list[dict[str, Any]] | None:
        folder = self.folder()
        if folder is None:
            return None
        try:
            document = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict):
            return None
        fetched, items = document.get("fetched_at"), document.get("items")
        if not isinstance(fetched, int | float) or not isinstance(items, list):
            return None
        if not 0 <= self._clock() - fetched < self.ttl:
            return None
        return items

    def store(self, name: str, items: Sequence[dict[str, Any]]) -> None:
        folder = self.folder(create=True)
        if folder is None:
            return
        document = {"base_url": self.base_url, "fetched_at": self._clock(), "items": list(items)}
        path = folder / f"{name}.json"
        try:
            files.private_dir(folder)
            files.write_text(path, json.dumps(document), perms=files.PRIVATE)
        except OSError as exc:
            log.warning("cannot write the look-up cache %s (%s); going on without it", path, exc)


class LookupService:
    """The look-up lists of one account, from the cache when fresh, else from the API."""

    def __init__(
        self,
        client: JoggClient,
        cache: LookupCache | None = None,
        *,
        refresh: bool = False,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.cache = cache
        self.refresh = refresh
        self.deadline = deadline  # unix time (by `clock`): the run's
        self._clock = clock

    async def avatars(self) -> tuple[Avatar, ...]:
        """Public avatars, then custom ones (`type` 1)."""
        return await self._cached("avatars", Avatar, self._fetch_avatars)

    async def voices(self) -> tuple[Voice, ...]:
        return await self._cached("voices", Voice, self._fetch_voices)

    async def music(self) -> tuple[Music, ...]:
        return await self._cached("music", Music, self._fetch_music)

    async def styles(self, aspect_ratio: str) -> tuple[VisualStyle, ...]:
        if aspect_ratio not in ASPECT_RATIOS:
            raise ConfigError(
                f"{aspect_ratio!r} is not an aspect ratio; use {', '.join(ASPECT_RATIOS)}"
            )

        async def fetch() -> list[VisualStyle]:
            return await self._fetch_styles(aspect_ratio)

        return await self._cached(f"styles-{aspect_ratio}", VisualStyle, fetch)

    async def all(self) -> Lookups:
        """Every list, fetched concurrently (GETs do not count against the POST limit)."""
        style_lists = asyncio.gather(*(self.styles(ratio) for ratio in ASPECT_RATIOS))
        avatars, voices, music, styles = await asyncio.gather(
            self.avatars(), self.voices(), self.music(), style_lists
        )
        return Lookups(avatars, voices, music, dict(zip(ASPECT_RATIOS, styles, strict=True)))

    async def _cached(
        self, name: str, kind: type[_T], fetch: Callable[[], Awaitable[list[_T]]]
    ) -> tuple[_T, ...]:
        if self.cache is not None and not self.refresh:
            cached = self.cache.load(name)
            if cached is not None:
                try:
                    return tuple(kind(**item) for item in cached)
                except TypeError:
                    log.debug("look-up cache %s has another shape; fetching again", name)
        items = await self._by_deadline(name, fetch)
        # An empty list is not kept: one odd answer would refuse a day of rows (an account
        # with no music at all asks again each run, which costs a free GET).
        if self.cache is not None and items:
            self.cache.store(name, [item._asdict() for item in items])
        return tuple(items)

    async def _by_deadline(self, name: str, fetch: Callable[[], Awaitable[list[_T]]]) -> list[_T]:
        """`fetch()`, a page in flight cut off at the deadline (module docstring)."""
        left = None if self.deadline is None else max(0.0, self.deadline - self._clock())
        try:
            async with asyncio.timeout(left) as cut:
                return await fetch()
        except TimeoutError:
            if not cut.expired():
                raise
        raise _cut_short(name)

    def _check_deadline(self, what: str) -> None:
        """Raises LookupDeadline when the deadline has come: asked before each page, as an
        in-process server may answer page after page without the cut above getting a turn."""
        if self.deadline is not None and self._clock() >= self.deadline:
            raise _cut_short(what)

    async def _fetch_avatars(self) -> list[Avatar]:
        public = await _all_pages(
            self.client.avatars_public, "avatars", "public avatars", self._check_deadline
        )
        custom = await _all_pages(
            self.client.avatars_custom, "avatars", "custom avatars", self._check_deadline
        )
        # An item without a usable id is left out, as in the other lists: one odd entry of a
        # vendor's 600 avatars must not stop every run.
        avatars = [_avatar(item, 0) for item in _usable(public, "public avatars", "id")]
        usable = _usable(custom, "custom avatars", "id")
        avatars.extend(_avatar(item, 1) for item in usable if _trained(item))
        return avatars

    async def _fetch_voices(self) -> list[Voice]:
        items = await _all_pages(self.client.voices, "voices", "voices", self._check_deadline)
        return [
            Voice(
                voice_id=str(item["voice_id"]),
                name=str(item.get("name") or ""),
                language=_optional_text(item.get("language")),
                gender=_optional_text(item.get("gender")),
            )
            for item in _usable(items, "voices", "voice_id")
        ]

    async def _fetch_music(self) -> list[Music]:
        items = await _all_pages(self.client.musics, "music", "music", self._check_deadline)
        return [
            Music(
                id=int(item["id"]),
                name=str(item.get("name") or ""),
                duration=_optional_number(item.get("duration")),
            )
            for item in _usable(items, "music", "id")
        ]

    async def _fetch_styles(self, aspect_ratio: str) -> list[VisualStyle]:
        outcome = await self.client.visual_styles(aspect_ratio)
        items = _items(outcome, "visual_styles", f"visual styles for {aspect_ratio}")
        return [
            VisualStyle(
                name=str(item["name"]),
                aspect_ratio=aspect_ratio,
                id=int(item["id"]) if _is_int(item.get("id")) else None,
            )
            for item in _usable(items, f"visual styles for {aspect_ratio}", "name")
        ]


async def _all_pages(
    fetch: Callable[..., Awaitable[ApiOutcome]],
    key: str,
    what: str,
    check_deadline: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every item of a paged listing; see the module docstring for how the end is found.
    `check_deadline(what)` is called before each page (it raises to stop the walk)."""
    items: list[dict[str, Any]] = []
    seen: set[bytes] = set()  # digests of the items read
    size, stalled = 0, 0
    previous: list[dict[str, Any]] | None = None
    for page in range(1, _MAX_PAGES + 1):
        check_deadline(what)
        outcome = await fetch(page=page, page_size=PAGE_SIZE)
        batch = _items(outcome, key, f"{what} (page {page})")
        if batch and batch == previous:  # a server that ignores `page`
            break
        new = 0
        for item in batch:
            text = json.dumps(item, sort_keys=True, default=str)
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
            new += 1
            size += len(text)
            if size > _MAX_LIST_BYTES:
                raise ApiError(
                    f"cannot list {what}: past {_MAX_LIST_BYTES >> 20} MiB of items by page "
                    f"{page}, and it goes on; report it to JoggAI"
                )
            items.append(item)
        stalled = stalled + 1 if batch and not new else 0
        if stalled >= _STALLED_PAGES:
            break
        data = outcome.data or {}
        paging = data.get("pagination")
        total_pages = paging.get("total_pages") if isinstance(paging, dict) else None
        more: bool | None = data.get("has_more") if isinstance(data.get("has_more"), bool) else None
        if more is None and _is_int(total_pages):
            more = page < total_pages
        if not batch or more is False:
            break
        previous = batch
    else:  # what it read is not all: an avatar on a page not read would make rows invalid
        raise ApiError(
            f"cannot list {what}: past {_MAX_PAGES} pages of new items, and it goes on; "
            "report it to JoggAI"
        )
    return items


def _cut_short(what: str) -> LookupDeadline:
    return LookupDeadline(
        f"the look-up list of {what} was not read to its end by the deadline; none of it was used"
    )


def _items(outcome: ApiOutcome, key: str, what: str) -> list[dict[str, Any]]:
    if outcome.kind != "ok":
        if outcome.kind == "account":
            raise AccountError(
                f"cannot list {what}: the API refused the key ({outcome}); check it (JOGG_API_KEY, "
                "or the file api.key_file names)",
                code=outcome.code,
                http_status=outcome.http_status,
            )
        raise ApiError(
            f"cannot list {what}: {outcome}", code=outcome.code, http_status=outcome.http_status
        )
    value = (outcome.data or {}).get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ApiError(f"cannot list {what}: the answer has no list of {key!r}")
    return value


def _avatar(item: dict[str, Any], avatar_type: int) -> Avatar:
    ratio = item.get("aspect_ratio")
    avatar_id = _id_of(item)
    assert avatar_id is not None  # the callers keep only items with one
    return Avatar(
        id=avatar_id,
        name=str(item.get("name") or ""),
        type=avatar_type,
        aspect_ratio=_RATIO_NAMES.get(ratio) if _is_int(ratio) else _optional_text(ratio),
        gender=_optional_text(item.get("gender")),
    )


def _usable(items: list[dict[str, Any]], what: str, key: str) -> list[dict[str, Any]]:
    """The items with a usable `key` (an id a whole number, a name or voice id not empty). The
    others are left out, saying how many: one odd entry must not stop every run, and a list
    all of whose items were left out (the API's answer changed its shape) read as empty."""
    usable = [
        item for item in items if (_id_of(item) is not None if key == "id" else bool(item.get(key)))
    ]
    if dropped := len(items) - len(usable):
        log.warning(
            "%d of the %d %s the API listed have no usable %r; left out",
            dropped,
            len(items),
            what,
            key,
        )
    return usable


def _trained(item: dict[str, Any]) -> bool:
    # A custom avatar still training (or failed) cannot render yet.
    return item.get("avatar_status") in (None, "", "completed")


def _id_of(item: dict[str, Any]) -> int | None:
    """An item's whole-number id (`127` or `"127"`), or None."""
    value = item.get("id")
    if _is_int(value):
        return value
    if isinstance(value, str):
        return untrusted.whole_number(value, digits=19)
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _optional_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# ---- `jogg-batch lookup`: one list, rendered ---------------------------------------------------


@dataclass(frozen=True)
class LookupConfig:
    """What `jogg-batch lookup` needs: where the API is, the key, and how to use the cache."""

    base_url: str
    api_key: Secret | str = field(repr=False)
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # None: no cache
    ttl: float = DEFAULT_TTL
    refresh: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    deadline: float | None = None  # unix time: a list not read by then fails (LookupDeadline)

    def cache(self) -> LookupCache | None:
        if self.cache_dir is None:
            return None
        return LookupCache(self.cache_dir, self.base_url, self.api_key, ttl=self.ttl)

    def service(self, client: JoggClient) -> LookupService:
        """A look-up service over `client`, with this configuration's cache and deadline."""
        return LookupService(client, self.cache(), refresh=self.refresh, deadline=self.deadline)


@asynccontextmanager
async def open_service(
    config: LookupConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[tuple[JoggClient, LookupService]]:
    """A client and a look-up service over it, with the configured cache."""
    async with JoggClient(
        config.base_url, config.api_key, timeouts=config.timeouts, transport=transport
    ) as client:
        yield client, config.service(client)


def list_items(
    config: LookupConfig,
    kind: LookupKind,
    aspect_ratio: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[Item]:
    """One look-up list. `aspect_ratio` narrows styles (default: all three) and public avatars."""

    async def fetch() -> list[Item]:
        async with open_service(config, transport=transport) as (_, service):
            if kind == "avatars":
                return [
                    avatar
                    for avatar in await service.avatars()
                    if aspect_ratio is None or avatar.aspect_ratio in (None, aspect_ratio)
                ]
            if kind == "voices":
                return list(await service.voices())
            if kind == "music":
                return list(await service.music())
            styles: list[Item] = []
            for ratio in (aspect_ratio,) if aspect_ratio else ASPECT_RATIOS:
                styles.extend(await service.styles(ratio))
            return styles

    return asyncio.run(fetch())


def render(items: Sequence[Item], fmt: OutputFormat, *, ascii_only: bool = False) -> str:
    """Items as an aligned table, CSV with a header, or a JSON array (no trailing newline);
    `ascii_only`: the JSON's text escaped (`\\u00e9`), for an output that is not UTF-8.

    The text comes from the server: CSV cells that a spreadsheet would run as a formula get a
    leading `'`, and the table and CSV escape control characters (a name printed to a terminal
    cannot retitle or clear it, nor move the cursor).
    """
    rows = [item._asdict() for item in items]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=ascii_only)
    columns = list(type(items[0])._fields) if items else []
    cells = [
        ["" if row[name] is None else escape_controls(str(row[name])) for name in columns]
        for row in rows
    ]
    if fmt == "csv":
        cells = [
            [f"'{text}" if _FORMULA_START.match(text) else text for text in line] for line in cells
        ]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return out.getvalue().rstrip("\n")
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [columns, *cells]
    ]
    return "\n".join(lines)
