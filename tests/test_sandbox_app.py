"""In-process tests of the sandbox app (httpx.ASGITransport, fake clock)."""

from __future__ import annotations

import base64
import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.errors import ConfigError
from batch.joggai.quota import RateLimit
from batch.sandbox import SandboxConfig, create_app
from batch.sandbox.catalogs import SEEDED_PRODUCTS, VISUAL_STYLES
from batch.sandbox.faults import ConnectionDropped
from batch.sandbox.media import media_bytes

KEY = {"x-api-key": "sk-sandbox"}
PRODUCT = SEEDED_PRODUCTS[0][0]


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product_id": PRODUCT,
        "video_spec": {"length": "30", "aspect_ratio": "portrait", "name": "Bottle [jb-abc]"},
        "avatar": {"id": 127, "type": 0},
        "voice": {"id": "en-US-ChristopherNeural"},
        "audio": {"music_id": 13},
        "script": {"style": "Storytime", "language": "english"},
        "visual_style": "Vertical Story Stack",
    }
    body.update(changes)
    return body


def client_for(config: SandboxConfig) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(config))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox.test")


async def create(client: httpx.AsyncClient, body: Any = None, **headers: str) -> httpx.Response:
    return await client.post(
        "/v2/create_video_from_product",
        json=valid_body() if body is None else body,
        headers={**KEY, **headers},
    )


@pytest.mark.anyio
async def test_accepted_create_is_charged_recorded_and_renders_on_the_clock() -> None:
    """A valid create returns a 32-hex id, costs one credit, and completes after render_seconds."""
    clock = FakeClock()
    async with client_for(SandboxConfig(clock=clock, render_seconds=10, credits=5)) as client:
        answer = (await create(client)).json()
        assert answer["code"] == 0
        assert answer["data"]["status"] == "processing"
        video_id = answer["data"]["video_id"]
        assert len(video_id) == 32
        assert int(video_id, 16) >= 0
        assert video_id == video_id.lower()

        status = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()["data"]
        assert status["status"] == "processing"
        assert status["title"] == "Bottle [jb-abc]"
        clock.now += 10
        status = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()["data"]
        assert status["status"] == "completed"
        assert status["video_url"] == f"http://sandbox.test/_sandbox/media/{video_id}.mp4"
        assert status["cover_url"].endswith(f"{video_id}.jpg")
        assert status["duration"] == 36.0
        assert status["deducted_credit"] == 1.0
        assert status["id"] == video_id
        assert status["created_at"] == int(clock.now - 10)

        quota = (await client.get("/v2/user/remaining_quota", headers=KEY)).json()["data"]
        assert quota["remaining_quota"] == 4.0
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["credits_left"] == 4
        [submission] = seen["submissions"]
        assert submission == {
            "video_id": video_id,
            "product_id": PRODUCT,
            "name": "Bottle [jb-abc]",
            "payload": valid_body(),
            "received_at": clock.now - 10,
            "created_at": clock.now - 10,
            "fault": None,
        }


@pytest.mark.anyio
async def test_same_seed_gives_same_failures_and_never_the_same_video_ids() -> None:
    """Render outcomes replay with the seed and change with it; video ids never repeat, not
    even in a sandbox of the same seed (an account never gives one twice: a ledger kept from
    one sandbox to the next took a new render for another row's, and left the row unknown)."""

    async def run(seed: int) -> list[tuple[str, str]]:
        clock = FakeClock()
        config = SandboxConfig(seed=seed, clock=clock, render_seconds=1, render_failure_rate=0.5)
        async with client_for(config) as client:
            ids = [(await create(client)).json()["data"]["video_id"] for _ in range(8)]
            clock.now += 1
            return [
                (
                    i,
                    (await client.get(f"/v2/product_video/{i}", headers=KEY)).json()["data"][
                        "status"
                    ],
                )
                for i in ids
            ]

    first, again = await run(3), await run(3)
    assert [status for _, status in first] == [status for _, status in again]
    assert [status for _, status in first] != [status for _, status in await run(4)]
    assert {status for _, status in first} == {"completed", "failed"}
    assert not {video for video, _ in first} & {video for video, _ in again}


@pytest.mark.anyio
async def test_failed_render_reports_error_and_no_media() -> None:
    """At failure rate 1 the status is failed with error{code,message} and media is 404."""
    clock = FakeClock()
    async with client_for(
        SandboxConfig(clock=clock, render_seconds=1, render_failure_rate=1)
    ) as client:
        video_id = (await create(client)).json()["data"]["video_id"]
        clock.now += 5
        data = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()["data"]
        assert data["status"] == "failed"
        assert data["error"]["code"] == 50000
        assert data["error"]["message"]
        assert (await client.get(f"/_sandbox/media/{video_id}.mp4")).status_code == 404


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"product_id": None}, "product_id"),
        ({"video_spec": None}, "video_spec"),
        ({"video_spec": {"length": 30}}, "video_spec.length"),
        ({"video_spec": {"length": "45"}}, "video_spec.length"),
        ({"video_spec": {"length": "30", "aspect_ratio": "wide"}}, "video_spec.aspect_ratio"),
        ({"video_spec": {"length": "30", "caption": "yes"}}, "video_spec.caption"),
        ({"avatar": {"type": 0}}, "avatar.id"),
        ({"avatar": {"id": "127"}}, "avatar.id"),
        ({"avatar": {"id": 127, "type": 2}}, "avatar.type"),
        ({"avatar": {"id": 127, "type": 1}}, "avatar.id"),
        ({"avatar": {"id": 9001}}, "avatar.id"),
        ({"voice": None}, "voice"),
        ({"voice": {"id": "xx-XX-Nobody"}}, "voice.id"),
        ({"audio": None}, "audio"),
        ({"audio": {"music_id": 0}}, "audio.music_id"),
        ({"script": {"style": "Haiku", "language": "english"}}, "script.style"),
        ({"script": {"style": "Data", "language": "klingon"}}, "script.language"),
        ({"script": {"style": "Data"}}, "script.language"),
        ({"visual_style": "Simple split screen template"}, "visual_style"),
        ({"webhook_url": "not a url"}, "webhook_url"),
        ({"override_script": 5}, "override_script"),
    ],
)
async def test_invalid_body_is_40000_naming_the_field(change: dict[str, Any], field: str) -> None:
    """Each violation is rejected with 40000 whose msg names the field, and nothing is charged."""
    body = {k: v for k, v in valid_body(**change).items() if v is not None}
    async with client_for(SandboxConfig()) as client:
        answer = (await create(client, body)).json()
        assert answer["code"] == 40000
        assert answer["data"] is None
        assert field in answer["msg"]
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["submissions"] == []
        assert seen["credits_left"] == 1000
        assert seen["counts"]["rejected"] == {"40000": 1}


@pytest.mark.anyio
async def test_custom_avatar_and_landscape_only_style_are_accepted() -> None:
    """avatar.type 1 names a custom avatar; visual styles are checked per aspect ratio."""
    body = valid_body(
        avatar={"id": 9001, "type": 1},
        video_spec={"length": "15", "aspect_ratio": "landscape"},
        visual_style="Simple split screen template",
        voice={},
        audio={},
    )
    async with client_for(SandboxConfig()) as client:
        assert (await create(client, body)).json()["code"] == 0


def error_cases() -> list[tuple[str, SandboxConfig, dict[str, str], Any, int, int]]:
    unknown_product = valid_body(product_id="OTk5")
    return [
        ("missing key", SandboxConfig(), {"x-api-key": ""}, None, 10105, 401),
        ("unknown key", SandboxConfig(), {"x-api-key": "sk-nope"}, None, 10105, 401),
        ("no permission", SandboxConfig(no_permission_keys=("sk-free",)),
         {"x-api-key": "sk-free"}, None, 18025, 403),
        ("no credit", SandboxConfig(credits=0), {}, None, 18020, 402),
        ("bad body", SandboxConfig(), {}, {"product_id": PRODUCT}, 40000, 400),
        ("unknown product", SandboxConfig(), {}, unknown_product, 10104, 404),
        ("fail fault", SandboxConfig(fail_rate=1.0), {}, None, 50000, 500),
    ]  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize("status_codes", [False, True])
@pytest.mark.parametrize(("case", "config", "headers", "body", "code", "http"), error_cases())
async def test_post_error_codes_in_both_modes(
    status_codes: bool,
    case: str,
    config: SandboxConfig,
    headers: dict[str, str],
    body: Any,
    code: int,
    http: int,
) -> None:
    """Each business error has its code in the body; HTTP 200 unless http_status_codes maps it."""
    config = dataclasses.replace(config, http_status_codes=status_codes)
    async with client_for(config) as client:
        response = await create(client, body, **headers)
        assert response.status_code == (http if status_codes else 200), case
        answer = response.json()
        assert answer["code"] == code
        assert answer["data"] is None
        assert answer["msg"]
        assert len(answer["rid"]) == 32
        assert "x-ratelimit-remaining" in response.headers
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["submissions"] == []
        assert seen["credits_left"] == config.credits


@pytest.mark.anyio
@pytest.mark.parametrize("status_codes", [False, True])
async def test_get_errors_in_both_modes(status_codes: bool) -> None:
    """GETs check the key and answer 10104 for an unknown video, 40000 for bad paging."""
    http = {10105: 401, 10104: 404, 40000: 400, 18025: 403}
    config = SandboxConfig(http_status_codes=status_codes, no_permission_keys=("sk-free",))
    async with client_for(config) as client:
        for path, headers, code in [
            ("/v2/user/whoami", {}, 10105),
            ("/v2/user/whoami", {"x-api-key": "sk-free"}, 18025),
            ("/v2/product_video/" + "0" * 32, KEY, 10104),
            ("/v2/product_videos?page_size=101", KEY, 40000),
            ("/v2/product_videos?page_size=0", KEY, 40000),
            ("/v2/product_videos?page=0", KEY, 40000),
            ("/v2/product_videos?status=6", KEY, 40000),
            ("/v2/product_videos?sort_order=up", KEY, 40000),
            ("/v2/visual_styles?aspect_ratio=round", KEY, 40000),
        ]:
            response = await client.get(path, headers=headers)
            assert response.json()["code"] == code, path
            assert response.status_code == (http[code] if status_codes else 200), path
            assert "x-ratelimit-remaining" not in response.headers  # GETs are not limited


@pytest.mark.anyio
async def test_rate_limit_21_posts_in_a_minute_give_20_successes_and_one_429() -> None:
    """With 20/min the 21st POST inside the window is refused, uncharged, then allowed later."""
    clock = FakeClock()
    config = SandboxConfig(rate_limit=RateLimit(20, 60.0), clock=clock)
    async with client_for(config) as client:
        answers = []
        for _ in range(21):
            answers.append(await create(client))
            clock.now += 1
        codes = [a.json()["code"] for a in answers]
        assert codes == [0] * 20 + [429]
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == [
            *(str(n) for n in range(19, -1, -1)),
            "0",
        ]
        refused = answers[-1]
        assert refused.status_code == 200
        # first POST at t0, refused at t0+20: a slot frees at t0+60, 40 s later
        assert refused.headers["retry-after"] == "40"
        seen = (await client.get("/_sandbox/submissions")).json()
        assert len(seen["submissions"]) == 20
        assert seen["credits_left"] == 980
        assert seen["counts"]["rate_limited"] == 1

        other = await client.get("/v2/user/whoami", headers=KEY)
        assert other.json()["code"] == 0  # GETs are not limited

        clock.now = 1_700_000_000.0 + 60.0  # the first POST leaves the window
        again = await create(client)
        assert again.json()["code"] == 0
        assert again.headers["x-ratelimit-remaining"] == "0"


@pytest.mark.anyio
async def test_rate_limit_is_per_key_and_429_maps_to_http_429() -> None:
    """Another key has its own window; the status-code mode answers 429 with Retry-After >= 1."""
    clock = FakeClock()
    config = SandboxConfig(
        api_keys=("a", "b"), rate_limit=RateLimit(1, 1.0), clock=clock, http_status_codes=True
    )
    async with client_for(config) as client:
        assert (await create(client, **{"x-api-key": "a"})).status_code == 200
        clock.now += 0.5
        refused = await create(client, **{"x-api-key": "a"})
        assert refused.status_code == 429
        assert refused.json()["code"] == 429
        assert refused.headers["retry-after"] == "1"
        assert (await create(client, **{"x-api-key": "b"})).status_code == 200


@pytest.mark.anyio
async def test_no_rate_limit_means_no_429_and_no_remaining_header() -> None:
    """rate_limit=None turns the limit off."""
    async with client_for(SandboxConfig(rate_limit=None)) as client:
        answers = [await create(client) for _ in range(25)]
        assert {a.json()["code"] for a in answers} == {0}
        assert "x-ratelimit-remaining" not in answers[0].headers


@pytest.mark.anyio
async def test_bad_gateway_fault_is_html_502_and_not_charged() -> None:
    """A bad-gateway fault answers HTTP 502 with HTML and records nothing."""
    async with client_for(SandboxConfig(bad_gateway_rate=1.0)) as client:
        response = await create(client)
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert "502 Bad Gateway" in response.text
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["submissions"] == []
        assert seen["counts"]["faulted"]["bad_gateway"] == 1


@pytest.mark.anyio
async def test_reset_fault_records_nothing() -> None:
    """In process, a reset surfaces as a dropped connection and nothing is recorded or charged."""
    async with client_for(SandboxConfig(reset_rate=1.0)) as client:
        with pytest.raises(ConnectionDropped):
            await create(client)
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["submissions"] == []
        assert seen["credits_left"] == 1000
        assert seen["counts"]["faulted"]["reset"] == 1


@pytest.mark.anyio
async def test_stall_fault_commits_and_charges_before_dropping() -> None:
    """Commit-then-stall: no answer reaches the client, but the video exists and was paid."""
    async with client_for(SandboxConfig(stall_rate=1.0, stall_seconds=0.01)) as client:
        with pytest.raises(ConnectionDropped):
            await create(client)
        seen = (await client.get("/_sandbox/submissions")).json()
        assert len(seen["submissions"]) == 1
        assert seen["credits_left"] == 999
        assert seen["counts"]["faulted"]["stall"] == 1


@pytest.mark.anyio
async def test_faults_replay_with_the_seed() -> None:
    """The same seed draws the same sequence of faults."""

    async def outcomes(seed: int) -> list[int]:
        config = SandboxConfig(seed=seed, fail_rate=0.3, bad_gateway_rate=0.3, rate_limit=None)
        async with client_for(config) as client:
            return [(await create(client)).status_code for _ in range(20)]

    first = await outcomes(11)
    assert first == await outcomes(11)
    assert set(first) == {200, 502}
    assert first != await outcomes(12)


def test_fault_rates_must_fit_in_one_draw() -> None:
    """Fault rates that add up to more than 1 are a config error."""
    with pytest.raises(ConfigError, match="sum"):
        SandboxConfig(fail_rate=0.6, reset_rate=0.6)
    with pytest.raises(ConfigError, match="latency"):
        SandboxConfig(latency_ms=(10, 5))


@pytest.mark.anyio
async def test_product_videos_list_pages_filters_and_sorts() -> None:
    """The list echoes titles, pages, filters on 3/4/5 and sorts by created_at."""
    clock = FakeClock()
    config = SandboxConfig(clock=clock, render_seconds=5, render_failure_rate=0.0, rate_limit=None)
    async with client_for(config) as client:
        ids = []
        for n in range(5):
            spec = {"length": "15", "aspect_ratio": "portrait", "name": f"video {n}"}
            body = valid_body(video_spec=spec)
            ids.append((await create(client, body)).json()["data"]["video_id"])
            clock.now += 2
        # videos 0-2 were created >= 5 s ago: completed; 3 and 4 are processing
        listing = (await client.get("/v2/product_videos?page_size=2", headers=KEY)).json()["data"]
        assert listing["total"] == 5
        assert listing["page"] == 1
        assert listing["page_size"] == 2
        assert [v["id"] for v in listing["videos"]] == [ids[4], ids[3]]
        asc = await client.get("/v2/product_videos?sort_order=asc&page=2&page_size=2", headers=KEY)
        assert [v["title"] for v in asc.json()["data"]["videos"]] == ["video 2", "video 3"]
        done = (await client.get("/v2/product_videos?status=4", headers=KEY)).json()["data"]
        assert {v["id"] for v in done["videos"]} == set(ids[:3])
        assert done["total"] == 3
        assert all(v["video_duration"] == 18.0 for v in done["videos"])
        running = (await client.get("/v2/product_videos?status=3", headers=KEY)).json()["data"]
        assert {v["id"] for v in running["videos"]} == set(ids[3:])
        failed = (await client.get("/v2/product_videos?status=5", headers=KEY)).json()["data"]
        assert failed["videos"] == []
        assert failed["total"] == 0


@pytest.mark.anyio
async def test_catalog_endpoints() -> None:
    """Avatars, voices, music and visual styles list what the create endpoint accepts."""
    async with client_for(SandboxConfig()) as client:

        async def data(path: str) -> Any:
            answer = (await client.get(path, headers=KEY)).json()
            assert answer["code"] == 0, path
            return answer["data"]

        avatars = (await data("/v2/avatars/public?page_size=100"))["avatars"]
        assert len(avatars) >= 24
        assert {1, 2, 3, 81, 127} <= {a["id"] for a in avatars}
        portrait = (await data("/v2/avatars/public?aspect_ratio=portrait&page_size=100"))["avatars"]
        assert portrait
        assert {a["aspect_ratio"] for a in portrait} == {0}
        women = (await data("/v2/avatars/public?gender=female&page_size=100"))["avatars"]
        assert women
        assert {a["gender"] for a in women} == {"female"}
        assert len((await data("/v2/avatars/public"))["avatars"]) == 10
        custom = (await data("/v2/avatars/custom"))["avatars"]
        assert custom
        assert all(a["avatar_status"] == "completed" for a in custom)

        voices = await data("/v2/voices?page_size=100")
        ids = {v["voice_id"] for v in voices["voices"]}
        assert {"en-US-JennyNeural", "fr-FR-DeniseNeural", "GzE4TcXfh9rYCU9gVgPp"} <= ids
        assert voices["has_more"] is False
        assert (await data("/v2/voices?page_size=5"))["has_more"] is True
        french = (await data("/v2/voices?language=french"))["voices"]
        assert french
        assert {v["language"] for v in french} == {"french"}

        music = await data("/v2/musics?page=4&page_size=10")
        assert [m["id"] for m in music["music"]] == list(range(31, 41))
        assert music["pagination"] == {
            "page": 4,
            "page_size": 10,
            "total_items": 40,
            "total_pages": 4,
        }

        for ratio in ("portrait", "landscape", "square"):
            names = [
                s["name"]
                for s in (await data(f"/v2/visual_styles?aspect_ratio={ratio}"))["visual_styles"]
            ]
            assert {"Simple Product Switch", "Dynamic Showcase", "Elegant Presentation"} <= set(
                names
            )
            assert 10 <= len(names) <= 14
        default = (await data("/v2/visual_styles"))["visual_styles"]
        assert default == list(VISUAL_STYLES["landscape"])

        assert await data("/v2/user/whoami") == {
            "email": "sandbox@example.com",
            "username": "sandbox",
        }


@pytest.mark.anyio
async def test_created_product_becomes_valid_for_videos() -> None:
    """POST /v2/product returns a base64-of-integer id that create then accepts."""
    async with client_for(SandboxConfig()) as client:
        answer = await client.post(
            "/v2/product",
            json={"url": "https://shop.example.com/p/1", "media": [{"type": 1, "url": "x"}]},
            headers=KEY,
        )
        product = answer.json()["data"]
        assert answer.headers["x-ratelimit-remaining"] == "19"
        assert base64.b64decode(product["product_id"] + "==").decode().isdigit()
        assert product["name"] == "Product from shop.example.com"
        assert (await create(client, valid_body(product_id=product["product_id"]))).json()[
            "code"
        ] == 0
        bad_bodies = [
            ({}, "url or name"),
            ({"name": "x", "media": [{"type": 3}]}, "media[0].type"),
            ({"url": "ftp://x"}, "url"),
            ([1], "body"),
        ]
        for bad, field in bad_bodies:
            rejected = (await client.post("/v2/product", json=bad, headers=KEY)).json()
            assert rejected["code"] == 40000
            assert field in rejected["msg"]
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["products"] == [product]


@pytest.mark.anyio
async def test_malformed_json_is_40000() -> None:
    """A body that is not JSON is a parameter error."""
    async with client_for(SandboxConfig()) as client:
        response = await client.post("/v2/create_video_from_product", content=b"{nope", headers=KEY)
        assert response.json()["code"] == 40000


@pytest.mark.anyio
async def test_reset_clears_state_and_restores_credits() -> None:
    """POST /_sandbox/reset forgets submissions, products, counts and rate windows."""
    clock = FakeClock()
    async with client_for(
        SandboxConfig(credits=2, rate_limit=RateLimit(2, 60), clock=clock)
    ) as client:
        await create(client)
        await client.post("/v2/product", json={"name": "Mug"}, headers=KEY)
        assert (await create(client)).json()["code"] == 429
        await create(client, {"product_id": PRODUCT})
        assert (await client.post("/_sandbox/reset")).status_code == 200
        seen = (await client.get("/_sandbox/submissions")).json()
        assert seen["submissions"] == []
        assert seen["products"] == []
        assert seen["credits_left"] == 2
        assert seen["counts"] == {
            "rejected": {},
            "rate_limited": 0,
            "faulted": {
                "reset": 0,
                "stall": 0,
                "bad_gateway": 0,
                "fail": 0,
                "commit_then_error": 0,
                "late_commit": 0,
            },
        }
        assert (await create(client)).json()["code"] == 0


@pytest.mark.anyio
async def test_media_is_deterministic_with_range_support() -> None:
    """Completed renders serve fixed bytes with Content-Length, 206 ranges and 416."""
    clock = FakeClock()
    async with client_for(SandboxConfig(clock=clock, render_seconds=1)) as client:
        video_id = (await create(client)).json()["data"]["video_id"]
        assert (await client.get(f"/_sandbox/media/{video_id}.mp4")).status_code == 404
        clock.now += 1
        full = await client.get(f"/_sandbox/media/{video_id}.mp4")
        assert full.status_code == 200
        assert full.headers["content-type"] == "video/mp4"
        assert int(full.headers["content-length"]) == len(full.content) == 300_000
        assert full.content == media_bytes(video_id, "mp4")
        part = await client.get(
            f"/_sandbox/media/{video_id}.mp4", headers={"Range": "bytes=100-199"}
        )
        assert part.status_code == 206
        assert part.content == full.content[100:200]
        assert part.headers["content-range"] == "bytes 100-199/300000"
        tail = await client.get(f"/_sandbox/media/{video_id}.mp4", headers={"Range": "bytes=-10"})
        assert tail.content == full.content[-10:]
        bad = await client.get(
            f"/_sandbox/media/{video_id}.mp4", headers={"Range": "bytes=400000-"}
        )
        assert bad.status_code == 416
        cover = await client.get(f"/_sandbox/media/{video_id}.jpg")
        assert cover.content.startswith(b"\xff\xd8")
        assert len(cover.content) == 40_000
        assert (await client.get(f"/_sandbox/media/{video_id}.gif")).status_code == 404


def test_seeded_products_match_the_sample_csv() -> None:
    """sample_data/sandbox_products.csv lists exactly the products seeded in code."""
    path = Path(__file__).parents[1] / "sample_data" / "sandbox_products.csv"
    with path.open(newline="") as handle:
        rows = [(row["product_id"], row["name"]) for row in csv.DictReader(handle)]
    assert rows == list(SEEDED_PRODUCTS)
    assert len(rows) == 200


@pytest.mark.anyio
async def test_latency_and_product_delay_slow_answers_down() -> None:
    """latency_ms delays every /v2 request; product_delay_seconds delays POST /v2/product."""

    config = SandboxConfig(latency_ms=(30, 30), product_delay_seconds=0.05)
    async with client_for(config) as client:
        started = time.monotonic()
        await client.get("/v2/user/whoami", headers=KEY)
        assert time.monotonic() - started >= 0.03
        started = time.monotonic()
        await client.post("/v2/product", json={"name": "Mug"}, headers=KEY)
        assert time.monotonic() - started >= 0.08
