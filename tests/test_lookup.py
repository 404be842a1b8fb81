"""Look-ups: every page of every list, the on-disk cache and its TTL, and `jogg-batch lookup`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner

from batch.cli.lookup import lookup as lookup_command
from batch.errors import AccountError, ApiError
from batch.joggai import lookup
from batch.joggai.client import JoggClient
from batch.joggai.lookup import (
    Avatar,
    Item,
    LookupCache,
    LookupConfig,
    LookupDeadline,
    LookupService,
    OutputFormat,
    VisualStyle,
    default_cache_dir,
    list_items,
    render,
)
from batch.sandbox import SandboxConfig, create_app
from batch.sandbox.catalogs import CUSTOM_AVATARS, MUSIC, PUBLIC_AVATARS, VISUAL_STYLES, VOICES

T = TypeVar("T")

KEY = "sk-sandbox"


class Counting(httpx.AsyncBaseTransport):
    """The sandbox in-process, counting the requests per path."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.inner = httpx.ASGITransport(app=create_app(config or SandboxConfig()))
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


def only(kind: type[T], items: list[Item]) -> list[T]:
    """`items`, each checked to be a `kind` (list_items is typed with the union of all four)."""
    checked: list[T] = [item for item in items if isinstance(item, kind)]
    assert len(checked) == len(items)
    return checked


def config(tmp_path: Path, **overrides: Any) -> LookupConfig:
    return LookupConfig(base_url="http://sandbox", api_key=KEY, cache_dir=tmp_path, **overrides)


def test_lists_match_the_sandbox_catalogs(tmp_path: Path) -> None:
    """Public then custom avatars, every voice, track and style, with their fields."""
    transport = Counting()
    avatars = only(Avatar, list_items(config(tmp_path), "avatars", transport=transport))
    assert len(avatars) == len(PUBLIC_AVATARS) + len(CUSTOM_AVATARS)
    assert avatars[-1] == Avatar(9004, "Warehouse walk-through", 1, None, None)
    assert {a.id for a in avatars if a.type == 0} == {a.id for a in PUBLIC_AVATARS}
    assert len(list_items(config(tmp_path), "voices", transport=transport)) == len(VOICES)
    assert len(list_items(config(tmp_path), "music", transport=transport)) == len(MUSIC)
    styles = list_items(config(tmp_path), "styles", "square", transport=transport)
    assert styles[0] == VisualStyle("Simple Product Switch", "square", 2600)
    assert len(styles) == len(VISUAL_STYLES["square"])
    every_style = list_items(config(tmp_path), "styles", transport=transport)
    assert len(every_style) == sum(len(s) for s in VISUAL_STYLES.values())


def test_aspect_ratio_narrows_public_avatars_and_keeps_custom_ones(tmp_path: Path) -> None:
    """Portrait public avatars only, plus custom avatars (which have no aspect ratio)."""
    avatars = only(
        Avatar, list_items(config(tmp_path), "avatars", "portrait", transport=Counting())
    )
    assert {a.aspect_ratio for a in avatars} == {"portrait", None}
    assert sum(a.type == 1 for a in avatars) == len(CUSTOM_AVATARS)


def paged_server(
    total: int,
    key: str,
    *,
    ignore_paging: bool = False,
    extra: Callable[..., dict[str, Any]],
    cap: int = 1_000,
) -> httpx.MockTransport:
    """A remote that pages `total` items, at most `cap` a page whatever is asked (or ignores
    paging and sends them all every time)."""
    items = [{"id": n, "name": f"item {n}", "voice_id": f"v{n}"} for n in range(total)]

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        size = min(int(request.url.params["page_size"]), cap)
        chosen = items if ignore_paging else items[(page - 1) * size : page * size]
        data = {key: chosen, **extra(page=page, size=size, total=total)}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    return httpx.MockTransport(handler)


def no_block(**_: Any) -> dict[str, Any]:
    return {}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "extra"),
    [
        ("avatars", no_block),
        ("voices", lambda page, size, total: {"has_more": page * size < total}),
        (
            "music",
            lambda page, size, total: {"pagination": {"total_pages": -(-total // size)}},
        ),
    ],
)
async def test_every_page_is_followed(key: str, extra: Callable[..., dict[str, Any]]) -> None:
    """250 items over three pages, whichever way the endpoint says where the end is."""
    transport = paged_server(250, key, extra=extra)
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        service = LookupService(client)
        fetch = {"avatars": service.avatars, "voices": service.voices, "music": service.music}
        found = await fetch[key]()
    expected = 500 if key == "avatars" else 250  # public and custom both answer 250
    assert len(found) == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "extra"),
    [
        ("voices", lambda page, size, total: {"has_more": page * size < total}),
        (
            "music",
            lambda page, size, total: {"pagination": {"total_pages": -(-total // size)}},
        ),
    ],
)
async def test_a_server_with_smaller_pages_is_followed_as_it_says(
    key: str, extra: Callable[..., dict[str, Any]]
) -> None:
    """20 items a page for 100 asked: `has_more` or `total_pages` say there are more, so a
    short page does not end the list (a voice on page 2 is no unknown voice)."""
    transport = paged_server(50, key, extra=extra, cap=20)
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        service = LookupService(client)
        found = await (service.voices() if key == "voices" else service.music())
    assert len(found) == 50


@pytest.mark.anyio
async def test_avatars_in_smaller_pages_than_asked_are_read_to_the_empty_page() -> None:
    """Public avatars have no paging block: 50 a page for 100 asked, 627 of them, is read to
    its last avatar (a short page proves no end), so avatar 600 is a known avatar."""
    transport = paged_server(627, "avatars", extra=no_block, cap=50)
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        found = await LookupService(client).avatars()
    assert len(found) == 2 * 627  # public and custom both answer
    assert "600" in {str(avatar.id) for avatar in found}


@pytest.mark.anyio
async def test_a_server_ignoring_page_size_is_read_once() -> None:
    """A listing that sends its whole collection on every page is not read 1,000 times."""
    transport = paged_server(150, "voices", ignore_paging=True, extra=no_block)
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        assert len(await LookupService(client).voices()) == 150


@pytest.mark.anyio
async def test_a_refused_key_is_an_account_error_and_a_broken_answer_an_api_error() -> None:
    """Look-ups fail loudly: a partial list would make valid rows look invalid."""
    async with JoggClient("http://sandbox", "sk-nope", transport=Counting()) as client:
        with pytest.raises(AccountError, match="cannot list public avatars"):
            await LookupService(client).avatars()
    broken = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"code": 0, "msg": "ok", "data": {}})
    )
    async with JoggClient("http://remote", KEY, transport=broken) as client:
        with pytest.raises(ApiError, match="no list of 'visual_styles'"):
            await LookupService(client).styles("portrait")


@pytest.mark.anyio
async def test_a_list_not_read_by_the_deadline_fails_and_is_not_cached(tmp_path: Path) -> None:
    """A list still being read at the run's deadline stops there (a second a page on a fake
    clock, the deadline after three): LookupDeadline, and none of it kept in the cache (a list
    read in part would make valid rows look invalid)."""
    ticks = iter(range(1000))
    cache = LookupCache(tmp_path, "http://remote", KEY, clock=lambda: 0.0)
    transport = paged_server(1000, "voices", extra=lambda page, size, total: {"has_more": True})
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        service = LookupService(client, cache, deadline=3.0, clock=lambda: float(next(ticks)))
        with pytest.raises(LookupDeadline, match="list of voices was not read to its end"):
            await service.voices()
    assert cache.load("voices") is None


def test_second_listing_comes_from_the_cache_until_the_ttl(tmp_path: Path) -> None:
    """Fresh cache: no request; stale (fake clock) or --refresh: asked again."""
    transport = Counting()
    list_items(config(tmp_path), "music", transport=transport)
    asked = len(transport.paths)
    assert asked >= 1
    assert len(list_items(config(tmp_path), "music", transport=transport)) == len(MUSIC)
    assert len(transport.paths) == asked
    list_items(config(tmp_path, refresh=True), "music", transport=transport)
    assert len(transport.paths) == 2 * asked


def test_cache_entries_expire_after_the_ttl(tmp_path: Path) -> None:
    """An entry is fresh for `ttl` seconds, then absent; a clock going backwards distrusts it."""
    now = [1000.0]
    cache = LookupCache(tmp_path, "https://api.jogg.ai", KEY, ttl=60.0, clock=lambda: now[0])
    cache.store("voices", [{"voice_id": "a"}])
    now[0] = 1059.0
    assert cache.load("voices") == [{"voice_id": "a"}]
    now[0] = 1060.0
    assert cache.load("voices") is None
    now[0] = 900.0
    assert cache.load("voices") is None


def test_cache_is_per_base_url_and_key_and_never_holds_the_key(tmp_path: Path) -> None:
    """Another URL or account sees nothing; the key appears in no file or directory name."""
    secret = "sk-very-secret-key-123"
    one = LookupCache(tmp_path, "https://api.jogg.ai", secret)
    one.store("music", [{"id": 1, "name": "x", "duration": None}])
    assert LookupCache(tmp_path, "https://api.jogg.ai/", secret).load("music") is not None
    assert LookupCache(tmp_path, "http://127.0.0.1:8000", secret).load("music") is None
    assert LookupCache(tmp_path, "https://api.jogg.ai", "sk-other").load("music") is None
    for path in tmp_path.rglob("*"):
        assert secret not in str(path)
        if path.is_file():
            assert secret not in path.read_text()


def test_corrupt_or_reshaped_cache_is_fetched_again(tmp_path: Path) -> None:
    """A cache file that is not ours (or from an older shape) is ignored, then rewritten."""
    transport = Counting()
    list_items(config(tmp_path), "music", transport=transport)
    (cached,) = tmp_path.rglob("music.json")
    cached.write_text("{not json")
    assert len(list_items(config(tmp_path), "music", transport=transport)) == len(MUSIC)
    document = json.loads(cached.read_text())
    document["items"] = [{"old_field": 1}]
    cached.write_text(json.dumps(document))
    assert len(list_items(config(tmp_path), "music", transport=transport)) == len(MUSIC)


def test_default_cache_dir_follows_xdg(tmp_path: Path) -> None:
    """$XDG_CACHE_HOME/jogg-batch when set, else ~/.cache/jogg-batch."""
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "jogg-batch"
    assert default_cache_dir({}) == Path.home() / ".cache" / "jogg-batch"


def test_render_table_csv_and_json() -> None:
    """The three formats, exactly; an empty list renders without error."""
    styles = [VisualStyle("Feed Tile", "square", 2611), VisualStyle("Bold", "square", None)]
    assert render(styles, "table") == (
        "name       aspect_ratio  id\nFeed Tile  square        2611\nBold       square"
    )
    assert render(styles, "csv") == "name,aspect_ratio,id\nFeed Tile,square,2611\nBold,square,"
    assert json.loads(render(styles, "json")) == [
        {"name": "Feed Tile", "aspect_ratio": "square", "id": 2611},
        {"name": "Bold", "aspect_ratio": "square", "id": None},
    ]
    assert render([], "json") == "[]"
    accented = [VisualStyle("Café", "square", 1)]
    assert '"name": "Café"' in render(accented, "json")
    assert '"name": "Caf\\u00e9"' in render(accented, "json", ascii_only=True)  # not `Caf?`


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_name_with_terminal_escapes_is_printed_written_out(fmt: OutputFormat) -> None:
    """A server's name that would retitle and clear the terminal: its controls written out
    in the table and in CSV (`lookup --format csv` printed them raw)."""
    shown = render([VisualStyle("\x1b]0;PWNED\x07\x1b[2J", "square", 1)], fmt)
    assert "\x1b" not in shown
    assert "\x07" not in shown
    assert "\\x1b]0;PWNED\\x07\\x1b[2J" in shown


# ---- the command ---------------------------------------------------------------------------


def invoke(args: list[str], tmp_path: Path, key: str = KEY) -> Any:
    env = {"JOGG_API_KEY": key, "XDG_CACHE_HOME": str(tmp_path), "JOGG_BASE_URL": ""}
    return CliRunner().invoke(lookup_command, args, env=env)


def test_help_names_the_lists() -> None:
    """--help shows the usage with the four lists and the options."""
    result = CliRunner().invoke(lookup_command, ["--help"])
    assert result.exit_code == 0
    assert "{avatars|voices|music|styles}" in result.output
    assert "--refresh" in result.output


def test_command_lists_styles_as_csv(sandbox_url: str, tmp_path: Path) -> None:
    """Over a real socket: the portrait styles as CSV on stdout, cached under XDG_CACHE_HOME."""
    args = ["styles", "--aspect-ratio", "portrait", "--format", "csv", "--base-url", sandbox_url]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["name,aspect_ratio,id", "Simple Product Switch,portrait,2400"]
    assert len(lines) == 1 + len(VISUAL_STYLES["portrait"])
    assert list((tmp_path / "jogg-batch").rglob("styles-portrait.json"))


def test_command_bad_key_exits_3_without_the_key(sandbox_url: str, tmp_path: Path) -> None:
    """A refused key: exit 3 and a message naming the problem, never the key."""
    result = invoke(["voices", "--base-url", sandbox_url], tmp_path, key="sk-wrong-key-42")
    assert result.exit_code == 3
    assert "jogg-batch: error: cannot list voices (page 1): the API refused the key" in (
        result.stderr
    )
    assert "sk-wrong-key-42" not in result.output


def test_command_rejects_aspect_ratio_for_voices(tmp_path: Path) -> None:
    """--aspect-ratio with voices or music is a usage error (exit 2), before any request."""
    result = invoke(["music", "--aspect-ratio", "square"], tmp_path)
    assert result.exit_code == 2
    assert "--aspect-ratio applies to avatars and styles, not music" in result.output


@pytest.mark.anyio
async def test_an_avatar_without_a_usable_id_is_left_out() -> None:
    """One odd item in the vendor's list (no id, a null, a word) is skipped, as in the other
    lists; an id sent as digits in text is read."""
    items = [
        {"id": 127, "name": "Ann", "aspect_ratio": 0},
        {"id": None, "name": "broken"},
        {"id": "A-77", "name": "odd"},
        {"name": "no id"},
        {"id": "81", "name": "text id"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        first = request.url.params["page"] == "1" and request.url.path.endswith("/public")
        data = {"avatars": items if first else []}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    async with JoggClient("http://remote", KEY, transport=httpx.MockTransport(handler)) as client:
        found = await LookupService(client).avatars()
    assert [(avatar.id, avatar.name) for avatar in found] == [(127, "Ann"), (81, "text id")]


@pytest.mark.anyio
async def test_music_listed_under_another_key_says_it_was_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every music item under `music_id` rather than the spec's `id` (the API's answer changed
    its shape): the list read as empty with nothing said; it says how many were left out."""
    items = [{"music_id": 13, "name": "Upbeat"}, {"music_id": 14, "name": "Calm"}]

    def handler(request: httpx.Request) -> httpx.Response:
        data = {"music": items if request.url.params["page"] == "1" else []}
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": data})

    async with JoggClient("http://remote", KEY, transport=httpx.MockTransport(handler)) as client:
        with caplog.at_level(logging.WARNING):
            found = await LookupService(client).music()
    assert not found
    assert "2 of the 2 music the API listed have no usable 'id'; left out" in caplog.text


def test_an_empty_list_is_asked_again_next_time(tmp_path: Path) -> None:
    """One answer with no music is not kept for a day: the next look-up asks again and gets
    the tracks the account has."""
    empty = httpx.MockTransport(
        lambda request: httpx.Response(
            200, json={"code": 0, "msg": "ok", "data": {"music": [], "pagination": {}}}
        )
    )
    assert list_items(config(tmp_path), "music", transport=empty) == []
    assert len(list_items(config(tmp_path), "music", transport=Counting())) == len(MUSIC)


def taking_turns(
    served: list[int], *, turns: int = 2, size: int = 100, name: str = "avatar"
) -> httpx.MockTransport:
    """Avatar pages that take `turns` turns (A, B, A, B, ...): never empty, never the page
    before."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        served.append(page)
        turn = page % turns
        avatars = [{"id": 1_000 * turn + n, "name": name, "aspect_ratio": 0} for n in range(size)]
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": {"avatars": avatars}})

    return httpx.MockTransport(handler)


@pytest.mark.anyio
async def test_pages_that_take_turns_end_the_list_once_they_bring_nothing_new() -> None:
    """A, B, A, B, ...: three pages in a row with no avatar not read before end the list,
    each avatar kept once (it read 150 pages and 1.2 GB)."""
    served: list[int] = []
    async with JoggClient("http://remote", KEY, transport=taking_turns(served)) as client:
        found = await LookupService(client).avatars()
    assert served == [1, 2, 3, 4, 5] * 2  # public avatars, then custom ones
    assert len(found) == 2 * 200


@pytest.mark.anyio
async def test_a_list_past_its_page_bound_fails_rather_than_being_used_in_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listing that brings new items on every page and never ends stops at a bound of
    pages, and fails: the items read so far were used as the whole list, and every row naming
    an avatar on a page not read was refused as invalid (and the cut list cached)."""
    monkeypatch.setattr(lookup, "_MAX_PAGES", 5)
    served: list[int] = []
    async with JoggClient(
        "http://remote", KEY, transport=taking_turns(served, turns=10**6)
    ) as client:
        with pytest.raises(ApiError, match="past 5 pages of new items"):
            await LookupService(client).avatars()
    assert served == [1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_a_list_past_its_size_bound_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items a server makes huge stop the list at a bound, not at the machine's memory."""
    monkeypatch.setattr(lookup, "_MAX_LIST_BYTES", 1 << 20)
    served: list[int] = []
    transport = taking_turns(served, turns=10**6, name="n" * 2_000)  # about 0.2 MiB a page
    async with JoggClient("http://remote", KEY, transport=transport) as client:
        with pytest.raises(ApiError, match="past 1 MiB of items by page 6"):
            await LookupService(client).avatars()
