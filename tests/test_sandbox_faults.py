"""In-process tests of the faults a server inflicts on a client without idempotency keys.

Commit-then-error, late commit, a lagging listing and listing titles that do not echo the sent
name (httpx.ASGITransport, fake clock; the loopback-socket cases are in test_sandbox_server.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from batch.errors import ConfigError
from batch.sandbox import SandboxConfig
from batch.sandbox.catalogs import SEEDED_PRODUCTS
from batch.sandbox.faults import Fault, FaultDraw
from tests.test_sandbox_app import KEY, PRODUCT, FakeClock, client_for, create, valid_body

NAME = "Bottle [jb-abc]"


async def inspection(client: httpx.AsyncClient) -> dict[str, Any]:
    seen: dict[str, Any] = (await client.get("/_sandbox/submissions")).json()
    return seen


async def listing(client: httpx.AsyncClient, query: str = "page_size=100") -> dict[str, Any]:
    data: dict[str, Any] = (await client.get(f"/v2/product_videos?{query}", headers=KEY)).json()[
        "data"
    ]
    return data


async def wait_until_pending(client: httpx.AsyncClient, count: int) -> None:
    """Let waiting creates run until the sandbox holds `count` of them back (no clock moves)."""
    for _ in range(100):
        if len((await inspection(client))["pending"]) == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the sandbox never held {count} creates back")


def error_kind(response: httpx.Response) -> str:
    """Name the shape of an error answer, as a client without the body's code would see it."""
    if response.status_code == 503 and response.content == b"":
        return "empty_503"
    if response.headers.get("content-type", "").startswith("text/html"):
        return f"html_{response.status_code}"
    answer = response.json()
    assert answer["data"] is None
    return f"code_{answer['code']}"


# --- commit then error ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_commit_then_error_charges_every_video_and_answers_each_error_kind() -> None:
    """Every create is recorded, charged and listed, yet its answer is 50000 or a 5xx."""
    config = SandboxConfig(commit_then_error_rate=1.0, rate_limit=None, render_seconds=0)
    async with client_for(config) as client:
        responses = []
        for n in range(40):
            spec = {"length": "30", "aspect_ratio": "portrait", "name": f"Bottle [jb-{n}]"}
            responses.append(await create(client, valid_body(video_spec=spec)))
        kinds = Counter(error_kind(response) for response in responses)
        assert set(kinds) == {"code_50000", "html_500", "html_502", "empty_503"}
        for response in responses:
            if error_kind(response) == "code_50000":
                assert response.status_code == 200
        seen = await inspection(client)
        assert [s["name"] for s in seen["submissions"]] == [f"Bottle [jb-{n}]" for n in range(40)]
        assert {s["fault"] for s in seen["submissions"]} == {"commit_then_error"}
        assert seen["credits_left"] == 960
        assert seen["counts"]["faulted"]["commit_then_error"] == 40
        assert (await listing(client))["total"] == 40


@pytest.mark.anyio
async def test_commit_then_error_50000_is_http_500_in_status_code_mode() -> None:
    """With http_status_codes the 50000 answer comes as HTTP 500 with the JSON envelope."""
    config = SandboxConfig(commit_then_error_rate=1.0, rate_limit=None, http_status_codes=True)
    async with client_for(config) as client:
        responses = [await create(client) for _ in range(12)]
        coded = [r for r in responses if r.headers.get("content-type") == "application/json"]
        assert coded
        assert {(r.status_code, r.json()["code"]) for r in coded} == {(500, 50000)}
        assert len((await inspection(client))["submissions"]) == 12


@pytest.mark.anyio
async def test_commit_then_error_leaves_invalid_creates_and_products_alone() -> None:
    """A rejected body is answered 40000 uncharged; POST /v2/product is answered normally."""
    async with client_for(SandboxConfig(commit_then_error_rate=1.0, rate_limit=None)) as client:
        rejected = await create(client, {"product_id": PRODUCT})
        assert rejected.json()["code"] == 40000
        product = await client.post("/v2/product", json={"name": "Mug"}, headers=KEY)
        assert product.json()["code"] == 0
        seen = await inspection(client)
        assert seen["submissions"] == []
        assert seen["credits_left"] == 1000
        assert seen["counts"]["faulted"]["commit_then_error"] == 0


# --- late commit ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_late_commit_answers_and_charges_only_at_commit_time() -> None:
    """The answer and the charge come late_commit_seconds after arrival; created_at is then."""
    clock = FakeClock()
    arrived = clock.now
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=5, clock=clock)
    async with client_for(config) as client:
        waiting = asyncio.create_task(create(client))
        await wait_until_pending(client, 1)
        seen = await inspection(client)
        assert seen["submissions"] == []
        assert seen["credits_left"] == 1000
        assert seen["pending"] == [
            {"product_id": PRODUCT, "name": NAME, "received_at": arrived, "commit_at": arrived + 5}
        ]
        assert (await listing(client))["total"] == 0
        clock.now += 4.9
        await asyncio.sleep(0.06)  # one polling round of the waiting create
        assert not waiting.done()

        clock.now = arrived + 5
        answer = (await asyncio.wait_for(waiting, 1)).json()
        assert answer["code"] == 0
        video_id = answer["data"]["video_id"]
        seen = await inspection(client)
        [submission] = seen["submissions"]
        assert submission["video_id"] == video_id
        assert submission["name"] == NAME
        assert submission["received_at"] == arrived
        assert submission["created_at"] == arrived + 5
        assert submission["fault"] == "late_commit"
        assert seen["pending"] == []
        assert seen["credits_left"] == 999
        assert seen["counts"]["faulted"]["late_commit"] == 1
        status = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()["data"]
        assert status["created_at"] == int(arrived + 5)
        assert status["status"] == "processing"  # rendering starts at the commit


@pytest.mark.anyio
async def test_late_commit_charges_a_client_that_hung_up() -> None:
    """A client that gives up before the commit is charged all the same, at the commit time."""
    clock = FakeClock()
    arrived = clock.now
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=5, clock=clock)
    async with client_for(config) as client:
        waiting = asyncio.create_task(create(client))
        await wait_until_pending(client, 1)
        waiting.cancel()  # in process, hanging up cancels the request's coroutine
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await inspection(client))["credits_left"] == 1000

        clock.now += 60
        seen = await inspection(client)
        assert [(s["name"], s["created_at"]) for s in seen["submissions"]] == [(NAME, arrived + 5)]
        assert seen["credits_left"] == 999
        [video] = (await listing(client))["videos"]
        assert video["created_at"] == int(arrived + 5)


@pytest.mark.anyio
async def test_late_commit_rejects_a_bad_body_at_once() -> None:
    """Validation errors are answered immediately; nothing is held back or charged."""
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=3600)
    async with client_for(config) as client:
        answer = await asyncio.wait_for(create(client, valid_body(product_id="OTk5")), 1)
        assert answer.json()["code"] == 10104
        seen = await inspection(client)
        assert seen["pending"] == []
        assert seen["counts"]["faulted"]["late_commit"] == 0


@pytest.mark.anyio
async def test_late_commit_runs_out_of_credit_at_commit_time() -> None:
    """Two late creates on one credit: the first commit is charged, the second answered 18020."""
    clock = FakeClock()
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=5, clock=clock, credits=1)
    async with client_for(config) as client:
        first = asyncio.create_task(create(client))
        await wait_until_pending(client, 1)
        clock.now += 1
        second = asyncio.create_task(create(client))
        await wait_until_pending(client, 2)
        clock.now += 10
        answers = await asyncio.wait_for(asyncio.gather(first, second), 1)
        assert [a.json()["code"] for a in answers] == [0, 18020]
        seen = await inspection(client)
        assert len(seen["submissions"]) == 1
        assert seen["credits_left"] == 0
        assert seen["counts"]["rejected"] == {"18020": 1}


@pytest.mark.anyio
async def test_reset_answers_a_held_back_create_with_50000_and_never_commits_it() -> None:
    """POST /_sandbox/reset drops held-back creates: their waiting client gets 50000."""
    clock = FakeClock()
    config = SandboxConfig(late_commit_rate=1.0, late_commit_seconds=5, clock=clock)
    async with client_for(config) as client:
        waiting = asyncio.create_task(create(client))
        await wait_until_pending(client, 1)
        await client.post("/_sandbox/reset")
        assert (await asyncio.wait_for(waiting, 1)).json()["code"] == 50000
        clock.now += 10
        seen = await inspection(client)
        assert seen["submissions"] == []
        assert seen["credits_left"] == 1000


# --- the listing ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_listing_lag_hides_young_videos_from_the_list_only() -> None:
    """The list omits videos younger than the lag (total too); the status endpoint does not."""
    clock = FakeClock()
    config = SandboxConfig(listing_lag_seconds=5, clock=clock, rate_limit=None)
    async with client_for(config) as client:
        first = (await create(client)).json()["data"]["video_id"]
        status = await client.get(f"/v2/product_video/{first}", headers=KEY)
        assert status.json()["data"]["id"] == first
        assert await listing(client) == {"videos": [], "total": 0, "page": 1, "page_size": 100}
        clock.now += 4.9
        assert (await listing(client))["total"] == 0
        second = (await create(client)).json()["data"]["video_id"]
        clock.now += 0.1
        shown = await listing(client)
        assert [v["id"] for v in shown["videos"]] == [first]
        assert shown["total"] == 1
        clock.now += 5
        assert [v["id"] for v in (await listing(client, "page_size=1"))["videos"]] == [second]
        assert (await listing(client, "page_size=1"))["total"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setting", "title"),
    [
        ("echo", "Bottle [jb-abc]"),
        ("cut:9", "Bottle [j"),
        ("cut:99", "Bottle [jb-abc]"),
        ("product-name", SEEDED_PRODUCTS[0][1]),
    ],
)
async def test_listing_title_shapes_the_title_in_list_and_status(setting: str, title: str) -> None:
    """listing_title decides `title` in both GETs; the submissions keep the sent name."""
    async with client_for(SandboxConfig(listing_title=setting)) as client:
        video_id = (await create(client)).json()["data"]["video_id"]
        [listed] = (await listing(client))["videos"]
        assert listed["title"] == title
        status = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()
        assert status["data"]["title"] == title
        assert [s["name"] for s in (await inspection(client))["submissions"]] == [NAME]


@pytest.mark.anyio
async def test_product_name_title_uses_an_api_created_product_name() -> None:
    """product-name shows the name of a product made through POST /v2/product, no tag."""
    async with client_for(SandboxConfig(listing_title="product-name")) as client:
        product = (await client.post("/v2/product", json={"name": "Mug"}, headers=KEY)).json()
        await create(client, valid_body(product_id=product["data"]["product_id"]))
        [listed] = (await listing(client))["videos"]
        assert listed["title"] == "Mug"


@pytest.mark.parametrize(
    "setting", ["", "Echo", "cut", "cut:", "cut:0", "cut:-3", "cut:x", "cut:²"]
)
def test_a_misspelt_listing_title_is_a_config_error_naming_it(setting: str) -> None:
    """Only echo, cut:N (N >= 1) and product-name are accepted; the error quotes the value."""
    with pytest.raises(ConfigError, match=f"listing_title: {setting!r} is not a listing title"):
        SandboxConfig(listing_title=setting)


# --- the one draw ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rates",
    [
        {"commit_then_error_rate": 0.6, "late_commit_rate": 0.5},
        {"late_commit_rate": 0.5, "stall_rate": 0.3, "fail_rate": 0.3},
        {"commit_then_error_rate": 0.9, "reset_rate": 0.2},
    ],
)
def test_new_fault_rates_count_in_the_sum(rates: dict[str, Any]) -> None:
    """commit_then_error_rate and late_commit_rate join the one draw, so the sum stays <= 1."""
    with pytest.raises(ConfigError, match="sum must be <= 1"):
        SandboxConfig(**rates)


def test_rates_that_add_up_to_exactly_one_are_accepted() -> None:
    """0.1 + 0.2 + 0.7 is 1 despite floating point."""
    config = SandboxConfig(fail_rate=0.1, commit_then_error_rate=0.2, late_commit_rate=0.7)
    assert config.late_commit_rate == 0.7


def test_new_fault_bands_do_not_move_the_old_faults() -> None:
    """The new bands come after the old ones: a seed's old faults stay on the same POSTs."""
    new_bands = {Fault.COMMIT_THEN_ERROR, Fault.LATE_COMMIT}
    before = FaultDraw(SandboxConfig(seed=3, fail_rate=0.2, stall_rate=0.2))
    after = FaultDraw(
        SandboxConfig(
            seed=3, fail_rate=0.2, stall_rate=0.2, commit_then_error_rate=0.2, late_commit_rate=0.2
        )
    )
    pairs = [(before.next(), after.next()) for _ in range(200)]
    assert {new for _, new in pairs} >= new_bands
    for old, new in pairs:
        assert old is None if new in new_bands else old is new


@pytest.mark.anyio
async def test_new_faults_replay_with_the_seed() -> None:
    """The same seed hits the same creates with the same fault and error kind; another differs."""

    async def outcomes(seed: int) -> list[tuple[str, str | None]]:
        config = SandboxConfig(
            seed=seed,
            rate_limit=None,
            fail_rate=0.2,
            commit_then_error_rate=0.3,
            late_commit_rate=0.3,
            late_commit_seconds=0,
        )
        async with client_for(config) as client:
            seen = []
            for n in range(30):
                spec = {"length": "30", "aspect_ratio": "portrait", "name": f"[jb-{n}]"}
                response = await create(client, valid_body(video_spec=spec))
                ok = response.status_code == 200 and response.json()["code"] == 0
                seen.append("ok" if ok else error_kind(response))
            faults = {s["name"]: s["fault"] for s in (await inspection(client))["submissions"]}
            return [(kind, faults.get(f"[jb-{n}]", "-")) for n, kind in enumerate(seen)]

    first = await outcomes(5)
    assert first == await outcomes(5)
    assert first != await outcomes(6)
    assert {fault for _, fault in first} == {"-", None, "commit_then_error", "late_commit"}
