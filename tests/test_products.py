"""Products created at run time: once per URL (or details), across jobs, tasks and runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.errors import AccountError
from batch.joggai.client import JoggClient
from batch.joggai.quota import RateLimit
from batch.joggai.ratelimit import SlidingWindowLimiter
from batch.payload import ProductDetails, RequestDefaults, ResolvedFields, fingerprint
from batch.products import ProductError, ensure_product, product_body, product_source
from batch.sandbox import SandboxConfig, create_app, running_sandbox
from batch.store import Job, NewJob, RowPlan, StateStore

URL = "https://shop.example.com/p/water-bottle"


class JumpingClock:
    """Time that moves only when someone sleeps, by exactly the time slept."""

    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.now += max(0.0, delay)
        await asyncio.sleep(0)


@dataclass
class Sandbox:
    client: JoggClient
    inspect: httpx.AsyncClient

    async def products(self) -> list[dict[str, Any]]:
        response = await self.inspect.get("/_sandbox/submissions")
        products: list[dict[str, Any]] = response.json()["products"]
        return products


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    transport = httpx.ASGITransport(app=create_app(SandboxConfig()))
    async with (
        JoggClient("http://sandbox", "sk-sandbox", transport=transport) as client,
        httpx.AsyncClient(transport=transport, base_url="http://sandbox") as inspect,
    ):
        yield Sandbox(client, inspect)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.db") as store:
        yield store


def limiter(clock: JumpingClock) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RateLimit(20, 60.0), clock=clock.clock, sleep=clock.sleep)


def fields_for(product: ProductDetails | None, *, product_id: str | None = None,
               name: str = "video") -> ResolvedFields:  # fmt: skip
    d = RequestDefaults()
    return ResolvedFields(product_id, product, d.length, d.aspect_ratio, d.caption, name,
                          d.avatar_id, d.avatar_type, d.voice_id, None, d.script_style,
                          d.language, None, None, None)  # fmt: skip


def url_product(url: str = URL) -> ProductDetails:
    return ProductDetails(url, None, None, None, ())


def jobs_in(state: StateStore, *all_fields: ResolvedFields) -> list[Job]:
    """Jobs as the planner records them (fields through JSON) and the sender reads them."""
    run_id = state.begin_run("catalog.csv", dry_run=False)
    new = [
        NewJob(fingerprint(f), f"key-{n}", json.dumps(f), fingerprint(f)[:12])
        for n, f in enumerate(all_fields, 1)
    ]
    state.record_plan(
        run_id, new, [], [RowPlan(n, job[0], "job", None) for n, job in enumerate(new, 1)]
    )
    return state.next_jobs(run_id, 0, 100)


@pytest.mark.anyio
async def test_same_url_twice_creates_one_product(sandbox: Sandbox, state: StateStore) -> None:
    """Two jobs with the same product URL share one created product."""
    first, second = jobs_in(state, fields_for(url_product(), name="a"),
                            fields_for(url_product(), name="b"))  # fmt: skip
    clock = JumpingClock()
    posts = limiter(clock)
    id_one = await ensure_product(first, sandbox.client, posts, state)
    id_two = await ensure_product(second, sandbox.client, posts, state)
    assert id_one == id_two
    products = await sandbox.products()
    assert [(p["product_id"], p["url"]) for p in products] == [(id_one, URL)]
    assert posts.stats.sent == 1
    assert {job.product_id for job in state.next_jobs(1, 0, 10)} == {id_one}


@pytest.mark.anyio
async def test_jobs_record_their_product_id(sandbox: Sandbox, state: StateStore) -> None:
    """After ensure_product, the job itself carries the product id (what the video POST uses)."""
    (job,) = jobs_in(state, fields_for(url_product()))
    product_id = await ensure_product(job, sandbox.client, None, state)
    (reloaded,) = state.next_jobs(1, 0, 10)
    assert reloaded.product_id == product_id
    assert state.product_for(f"url:{URL}") == product_id


@pytest.mark.anyio
async def test_concurrent_jobs_of_one_product_create_it_once(
    sandbox: Sandbox, state: StateStore
) -> None:
    """Jobs in flight at the same time for one URL wait for one create instead of racing."""
    jobs = jobs_in(state, *(fields_for(url_product(), name=f"v{n}") for n in range(5)))
    ids = await asyncio.gather(*(ensure_product(j, sandbox.client, None, state) for j in jobs))
    assert len(set(ids)) == 1
    assert len(await sandbox.products()) == 1


@pytest.mark.anyio
async def test_a_later_run_reuses_the_recorded_product(sandbox: Sandbox, tmp_path: Path) -> None:
    """A product recorded by an earlier run (another StateStore, same file) is not re-created."""
    path = tmp_path / "runs.db"
    with StateStore(path) as first_run:
        (job,) = jobs_in(first_run, fields_for(url_product()))
        created = await ensure_product(job, sandbox.client, None, first_run)
    with StateStore(path) as second_run:
        (job,) = jobs_in(second_run, fields_for(url_product(), name="changed title"))
        clock = JumpingClock()
        posts = limiter(clock)
        assert await ensure_product(job, sandbox.client, posts, second_run) == created
    assert posts.stats.sent == 0
    assert len(await sandbox.products()) == 1


@pytest.mark.anyio
async def test_different_urls_make_different_products_through_the_limiter(
    sandbox: Sandbox, state: StateStore
) -> None:
    """Each distinct URL costs one POST, spaced by the limiter like the video POSTs."""
    jobs = jobs_in(state, *(fields_for(url_product(f"{URL}-{n}")) for n in range(3)))
    clock = JumpingClock()
    posts = limiter(clock)
    ids = [await ensure_product(job, sandbox.client, posts, state) for job in jobs]
    assert len(set(ids)) == 3
    assert posts.stats.sent == 3
    assert clock.now >= 1000.0 + 2 * 3.0  # 20/min: sends spread 3 s apart
    assert sorted(p["url"] for p in await sandbox.products()) == [f"{URL}-{n}" for n in range(3)]


@pytest.mark.anyio
async def test_details_without_url_are_sent_and_keyed_by_their_content(
    sandbox: Sandbox, state: StateStore
) -> None:
    """A product from details alone: name, description, audience and images go in the body."""
    details = ProductDetails(None, "Desk Lamp", "Warm light", "students",
                             ("https://img.example.com/1.jpg",))  # fmt: skip
    (job,) = jobs_in(state, fields_for(details))
    await ensure_product(job, sandbox.client, None, state)
    (product,) = await sandbox.products()
    assert (product["name"], product["description"], product["target_audience"]) == (
        "Desk Lamp", "Warm light", "students")  # fmt: skip
    assert product["media"] == [{"type": 1, "url": "https://img.example.com/1.jpg"}]
    source = product_source(fields_for(details))
    assert source is not None
    assert source.startswith("details:")
    assert state.product_for(source) == product["product_id"]


def test_product_source_tells_products_apart_and_ignores_rows_with_ids() -> None:
    """Sources differ for different URLs or details, and are None when there is a product_id."""
    lamp = ProductDetails(None, "Lamp", None, None, ())
    assert product_source(fields_for(url_product())) == f"url:{URL}"
    assert product_source(fields_for(lamp)) != product_source(
        fields_for(lamp._replace(name="Lamp 2"))
    )
    assert product_source(fields_for(url_product(), product_id="abc")) is None
    assert product_source(fields_for(None, product_id="abc")) is None
    assert product_body(url_product()) == {"url": URL}


@pytest.mark.anyio
async def test_a_row_with_a_product_id_sends_nothing(sandbox: Sandbox, state: StateStore) -> None:
    """A job whose row names its product_id gets it back without a POST."""
    (job,) = jobs_in(state, fields_for(None, product_id="MTM3NzE2NTk0MA"))
    assert await ensure_product(job, sandbox.client, None, state) == "MTM3NzE2NTk0MA"
    assert await sandbox.products() == []


@pytest.mark.anyio
async def test_a_refused_product_is_a_permanent_product_error(
    sandbox: Sandbox, state: StateStore
) -> None:
    """The API's 40000 (no url nor name) is a permanent ProductError; nothing is recorded."""
    details = ProductDetails(None, None, "only a description", None, ())
    (job,) = jobs_in(state, fields_for(details))
    with pytest.raises(ProductError) as caught:
        await ensure_product(job, sandbox.client, None, state)
    assert caught.value.outcome.kind == "permanent"
    assert caught.value.code == 40000
    source = product_source(fields_for(details))
    assert source is not None
    assert state.product_for(source) is None


@pytest.mark.anyio
async def test_a_refused_key_is_an_account_error(state: StateStore) -> None:
    """A bad key stops the run (AccountError), and nothing is recorded."""
    transport = httpx.ASGITransport(app=create_app(SandboxConfig()))
    (job,) = jobs_in(state, fields_for(url_product()))
    async with JoggClient("http://sandbox", "sk-wrong", transport=transport) as client:
        with pytest.raises(AccountError, match="10105"):
            await ensure_product(job, client, None, state)
    assert state.product_for(f"url:{URL}") is None


@pytest.mark.anyio
async def test_over_a_real_socket_with_a_slow_product_endpoint(state: StateStore) -> None:
    """End to end over loopback, with the sandbox taking its time to 'scrape' the page."""
    (job,) = jobs_in(state, fields_for(url_product()))
    with running_sandbox(SandboxConfig(product_delay_seconds=0.2)) as url:
        async with JoggClient(url, "sk-sandbox") as client:
            product_id = await ensure_product(job, client, None, state)
        async with httpx.AsyncClient(base_url=url) as inspect:
            products = (await inspect.get("/_sandbox/submissions")).json()["products"]
    assert [p["product_id"] for p in products] == [product_id]


@pytest.mark.anyio
@pytest.mark.parametrize("given", ["\x1b[2JNTQ0MTkzNjg", "N" * 20_000, "..", "two words"])
async def test_a_product_id_that_is_no_id_is_never_sent_nor_kept(
    state: StateStore, given: str
) -> None:
    """A server's product id with an escape sequence, 20,000 characters, `..` or a space: the
    answer is taken as unknown (a ProductError), and nothing is recorded, so the video's
    request never carries it and no results cell or terminal receives it."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": {"product_id": given}})

    (job,) = jobs_in(state, fields_for(url_product()))
    transport = httpx.MockTransport(answer)
    async with JoggClient("http://sandbox", "sk-sandbox", transport=transport) as client:
        with pytest.raises(ProductError, match="is no id") as caught:
            await ensure_product(job, client, None, state)
    assert caught.value.outcome.kind == "unknown"
    assert state.product_for(f"url:{URL}") is None
