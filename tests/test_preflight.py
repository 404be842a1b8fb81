"""Pre-flight: rows checked against the account's look-ups, suggestions, the account at start."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.catalog import CatalogOptions, CatalogRow, read_catalog
from batch.errors import AccountError, ApiError
from batch.joggai.client import JoggClient
from batch.joggai.lookup import LookupConfig, LookupService, VisualStyle
from batch.payload import build_request, fingerprint
from batch.preflight import (
    Preflight,
    check_account,
    credit_warning,
    load_preflight,
    remaining_credits,
)
from batch.sandbox import SandboxConfig, create_app

HEADER = "product_id,aspect_ratio,avatar_id,avatar_type,voice_id,music_id,visual_style"
GOOD = "MTM3NzE2NTk0MA"  # a seeded sandbox product


@pytest.fixture
def transport() -> httpx.ASGITransport:
    return httpx.ASGITransport(app=create_app(SandboxConfig()))


@pytest.fixture
async def client(transport: httpx.ASGITransport) -> AsyncIterator[JoggClient]:
    async with JoggClient("http://sandbox", "sk-sandbox", transport=transport) as jogg:
        yield jogg


@pytest.fixture
async def preflight(client: JoggClient) -> Preflight:
    return await Preflight.fetch(LookupService(client))


def rows(tmp_path: Path, *lines: str) -> list[CatalogRow]:
    path = tmp_path / "catalog.csv"
    path.write_text("\n".join((HEADER, *lines)) + "\n")
    return [row for batch in read_catalog(path, CatalogOptions()) for row in batch.rows]


def reasons(row: CatalogRow) -> dict[str, str]:
    return {problem.column: problem.reason for problem in row.problems}


@pytest.mark.anyio
async def test_misspelled_style_gets_a_suggestion(preflight: Preflight, tmp_path: Path) -> None:
    """A near miss names the closest style of the row's aspect ratio, and the row is invalid."""
    (row,) = rows(tmp_path, f"{GOOD},landscape,127,0,,,simple product swich")
    checked = preflight.check(row)
    assert checked.fields is None
    assert checked.fingerprint is None
    assert reasons(checked) == {
        "visual_style": "'simple product swich' is not a visual style for landscape; "
        "did you mean 'Simple Product Switch'?"
    }


@pytest.mark.anyio
async def test_unknown_avatar_and_music_are_reported_together(
    preflight: Preflight, tmp_path: Path
) -> None:
    """Every problem of a row is reported at once, each with its suggestion when there is one."""
    (row,) = rows(tmp_path, f"{GOOD},landscape,1270,0,en-US-JenyNeural,410,")
    found = reasons(preflight.check(row))
    assert found["avatar_id"] == (
        "1270 is not a public avatar of this account; did you mean 127 (Brian news)?"
    )
    assert found["voice_id"] == (
        "'en-US-JenyNeural' is not a voice of this account; did you mean 'en-US-JennyNeural'?"
    )
    assert found["music_id"].startswith("410 is not a music track of this account; did you mean 4")


@pytest.mark.anyio
async def test_nothing_close_points_to_the_lookup_command(
    preflight: Preflight, tmp_path: Path
) -> None:
    """Without a near miss, the message says how to list what exists."""
    (row,) = rows(tmp_path, f"{GOOD},portrait,127,0,,,zzzz qqqq")
    assert reasons(preflight.check(row)) == {
        "visual_style": "'zzzz qqqq' is not a visual style for portrait "
        "(list them with `jogg-batch lookup styles --aspect-ratio portrait`)"
    }


@pytest.mark.anyio
async def test_style_of_another_aspect_ratio_says_where_it_exists(
    preflight: Preflight, tmp_path: Path
) -> None:
    """A style that exists, but not for the row's aspect ratio, says for which it does."""
    (row,) = rows(tmp_path, f"{GOOD},landscape,127,0,,,Swipe Up Reveal")
    assert reasons(preflight.check(row))["visual_style"] == (
        "'Swipe Up Reveal' is not a visual style for landscape; it exists for portrait only"
    )


@pytest.mark.anyio
async def test_custom_avatar_with_the_public_type_says_which_type(
    preflight: Preflight, tmp_path: Path
) -> None:
    """A custom avatar id sent as public is caught, and the fix is named."""
    (wrong,) = rows(tmp_path, f"{GOOD},landscape,9001,0,,,")
    assert reasons(preflight.check(wrong)) == {
        "avatar_type": "avatar 9001 is a custom avatar, not a public one; "
        "set avatar_type to 1 (custom)"
    }
    (right,) = rows(tmp_path, f"{GOOD},landscape,9001,custom,,,")
    assert preflight.check(right) == right


@pytest.mark.anyio
async def test_case_differences_are_normalised_with_a_new_fingerprint(
    preflight: Preflight, tmp_path: Path
) -> None:
    """`simple  product SWITCH` and a lower-case voice become the canonical names."""
    (row,) = rows(tmp_path, f"{GOOD},landscape,127,0,en-us-jennyneural,4,simple  product SWITCH")
    checked = preflight.check(row)
    assert checked.fields is not None
    assert checked.fields.visual_style == "Simple Product Switch"
    assert checked.fields.voice_id == "en-US-JennyNeural"
    assert checked.fingerprint == fingerprint(checked.fields)
    assert checked.fingerprint != row.fingerprint
    assert checked.problems == ()


@pytest.mark.anyio
async def test_a_name_listed_as_it_is_is_kept_and_a_fold_of_several_is_refused(
    preflight: Preflight, tmp_path: Path
) -> None:
    """An account listing `Dynamic Showcase` and `dynamic  showcase`: a row naming either
    exactly keeps it; a third spelling of both is refused, never sent as one of them."""
    lookups = preflight.lookups
    extra = VisualStyle("dynamic  showcase", "landscape", 9999)
    styles = {**lookups.styles, "landscape": (*lookups.styles["landscape"], extra)}
    twins = Preflight(dataclasses.replace(lookups, styles=styles))
    exact, other, folded = (
        twins.check(row)
        for row in rows(
            tmp_path,
            f"{GOOD},landscape,127,0,,,Dynamic Showcase",
            f"{GOOD},landscape,127,0,,,dynamic  showcase",
            f"{GOOD},landscape,127,0,,,DYNAMIC SHOWCASE",
        )
    )
    assert exact.fields is not None
    assert exact.fields.visual_style == "Dynamic Showcase"
    assert other.fields is not None
    assert other.fields.visual_style == "dynamic  showcase"
    assert "matches several visual styles for landscape" in reasons(folded)["visual_style"]


@pytest.mark.anyio
async def test_rows_sharing_checked_values_get_the_same_verdict(
    preflight: Preflight, tmp_path: Path
) -> None:
    """A verdict remembered for one row serves the next row with the same avatar, voice, music
    and style: corrected alike, refused alike, each with its own other fields kept."""
    misspelt = "landscape,127,0,en-us-jennyneural,4,simple  product SWITCH"
    unknown = "landscape,127,0,en-US-JenyNeural,4,"
    first, second, bad_one, bad_two = (
        preflight.check(row)
        for row in rows(
            tmp_path, f"{GOOD},{misspelt}", f"OTHER,{misspelt}", f"{GOOD},{unknown}", f"X,{unknown}"
        )
    )
    assert first.fields is not None
    assert second.fields is not None
    assert (second.fields.voice_id, second.fields.visual_style, second.fields.product_id) == (
        "en-US-JennyNeural",
        "Simple Product Switch",
        "OTHER",
    )
    assert second.fingerprint == fingerprint(second.fields) != first.fingerprint
    assert bad_one.fields is None
    assert bad_two.fields is None
    assert reasons(bad_one) == reasons(bad_two) != {}


@pytest.mark.anyio
async def test_valid_and_invalid_rows_pass_unchanged(preflight: Preflight, tmp_path: Path) -> None:
    """A row that is right already is returned as is; one invalid already is not re-checked."""
    good, bad = rows(
        tmp_path,
        f"{GOOD},portrait,127,0,en-US-JennyNeural,4,Swipe Up Reveal",
        f"{GOOD},sideways,99999,0,,,",
    )
    assert preflight.check(good) is good
    assert bad.fields is None
    assert preflight.check(bad) is bad


@pytest.mark.anyio
async def test_rows_that_fail_preflight_would_send_zero_posts(
    preflight: Preflight, client: JoggClient, transport: httpx.ASGITransport, tmp_path: Path
) -> None:
    """Sending only what passes: the sandbox accepts all of it and rejects nothing."""
    catalog = rows(
        tmp_path,
        f"{GOOD},landscape,127,0,,,simple product swich",
        f"{GOOD},landscape,99999,0,,,",
        f"{GOOD},landscape,127,0,,999,",
        f"{GOOD},landscape,127,0,,,simple product switch",
        f"{GOOD},portrait,81,0,,7,",
    )
    checked = [preflight.check(row) for row in catalog]
    sendable = [row.fields for row in checked if row.fields is not None]
    assert [row.number for row in checked if row.fields is None] == [1, 2, 3]
    for fields in sendable:
        outcome = await client.create_video(build_request(fields).to_body())
        assert outcome.kind == "ok", outcome
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as inspect:
        seen: dict[str, Any] = (await inspect.get("/_sandbox/submissions")).json()
    assert len(seen["submissions"]) == 2
    assert seen["counts"]["rejected"] == {}
    assert seen["submissions"][0]["payload"]["visual_style"] == "Simple Product Switch"


@pytest.mark.anyio
async def test_bad_key_is_refused_before_anything(transport: httpx.ASGITransport) -> None:
    """whoami with a wrong key raises AccountError (exit 3) naming the code, and both places a
    key comes from (a cron job's key is often in api.key_file, with no JOGG_API_KEY set)."""
    async with JoggClient("http://sandbox", "sk-nope", transport=transport) as wrong:
        with pytest.raises(AccountError, match=r"10105.*JOGG_API_KEY, or the file api\.key_file"):
            await check_account(wrong)


@pytest.mark.anyio
async def test_good_key_names_the_account(client: JoggClient) -> None:
    """whoami with a good key returns who it is."""
    account = await check_account(client)
    assert account.username == "sandbox"


@pytest.mark.anyio
async def test_unreachable_api_is_an_api_error() -> None:
    """A refused connection at start is an ApiError, not a silent go-ahead."""
    async with JoggClient("http://127.0.0.1:9", "sk-sandbox") as nowhere:
        with pytest.raises(ApiError, match="cannot check the account"):
            await check_account(nowhere)


@pytest.mark.anyio
async def test_credit_warning_when_fewer_credits_than_jobs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warning says the figure is unreliable; enough credits, or none known, say nothing."""
    transport = httpx.ASGITransport(app=create_app(SandboxConfig(credits=3)))
    async with JoggClient("http://sandbox", "sk-sandbox", transport=transport) as jogg:
        remaining = await remaining_credits(jogg)
    assert remaining == 3.0
    warning = credit_warning(remaining, 5)
    assert warning is not None
    assert warning.startswith("the account reports 3 credit(s) left for 5 video(s) planned")
    assert "unreliable" in warning
    assert credit_warning(remaining, 3) is None
    assert credit_warning(None, 5) is None
    async with JoggClient("http://sandbox", "sk-nope", transport=transport) as wrong:
        with caplog.at_level(logging.INFO, logger="batch.preflight"):
            assert await remaining_credits(wrong) is None
    assert "cannot read the remaining credits" in caplog.text


def test_load_preflight_checks_the_key_then_fetches(tmp_path: Path) -> None:
    """The synchronous loader refuses a bad key before any look-up, and works with a good one."""
    transport = httpx.ASGITransport(app=create_app(SandboxConfig()))
    wrong = LookupConfig("http://sandbox", "sk-nope", cache_dir=tmp_path)
    with pytest.raises(AccountError, match="JOGG_API_KEY"):
        load_preflight(wrong, transport=transport)
    assert not list(tmp_path.iterdir())
    good = LookupConfig("http://sandbox", "sk-sandbox", cache_dir=tmp_path)
    preflight = load_preflight(good, transport=transport)
    (row,) = rows(tmp_path, f"{GOOD},square,127,0,,,feed tile")
    checked = preflight.check(row)
    assert checked.fields is not None
    assert checked.fields.visual_style == "Feed Tile"
