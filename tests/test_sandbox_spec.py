"""Every response shape the sandbox produces validates against the vendor's OpenAPI v2 spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from batch.sandbox import SandboxConfig, create_app
from batch.sandbox.catalogs import SEEDED_PRODUCTS

SPEC_PATH = Path(__file__).parents[2] / "shared" / "reference" / "joggai-openapi-v2.yaml"
KEY = {"x-api-key": "sk-sandbox"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(
            f"vendor spec not found at {SPEC_PATH} (it lives in ../shared/, outside the repo)"
        )
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def inline_refs(node: Any, spec: dict[str, Any]) -> Any:
    """The schema with every local `$ref` replaced by its target (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline_refs(target, spec)
        return {key: inline_refs(value, spec) for key, value in node.items()}
    if isinstance(node, list):
        return [inline_refs(item, spec) for item in node]
    return node


def response_schema(spec: dict[str, Any], path: str, method: str) -> Any:
    operation = spec["paths"][path][method]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return inline_refs(schema, spec)


def assert_valid(spec: dict[str, Any], path: str, method: str, body: Any) -> None:
    OAS30Validator(response_schema(spec, path, method)).validate(body)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_validator_rejects_a_wrong_shape(spec: dict[str, Any]) -> None:
    """The check can fail: a string video_duration is refused."""
    bad = {"code": 0, "msg": "Success", "data": {"videos": [{"video_duration": "long"}]}}
    with pytest.raises(Exception, match="not of type"):
        assert_valid(spec, "/v2/product_videos", "get", bad)


@pytest.mark.anyio
async def test_every_success_shape_matches_the_spec(spec: dict[str, Any]) -> None:
    """Create, product, status (all three states), list and catalog answers fit the spec."""
    clock = FakeClock()
    config = SandboxConfig(clock=clock, render_seconds=1, render_failure_rate=0.5, seed=1)
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
        product = await client.post("/v2/product", json={"name": "Mug"}, headers=KEY)
        assert_valid(spec, "/v2/product", "post", product.json())
        body = {
            "product_id": SEEDED_PRODUCTS[2][0],
            "video_spec": {"length": "60", "name": "Mug [jb-x]", "caption": True},
            "avatar": {"id": 1, "type": 0},
            "voice": {"id": "de-DE-ConradNeural"},
            "audio": {"music_id": 1},
            "script": {"style": "Top 3 reasons", "language": "german"},
        }
        ids = []
        for _ in range(6):
            created = (
                await client.post("/v2/create_video_from_product", json=body, headers=KEY)
            ).json()
            assert_valid(spec, "/v2/create_video_from_product", "post", created)
            ids.append(created["data"]["video_id"])
        path = "/v2/product_video/{product_video_id}"
        processing = (await client.get(f"/v2/product_video/{ids[0]}", headers=KEY)).json()
        assert_valid(spec, path, "get", processing)
        clock.now += 1
        statuses = set()
        for video_id in ids:
            answer = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()
            assert_valid(spec, path, "get", answer)
            statuses.add(answer["data"]["status"])
        assert statuses == {"completed", "failed"}
        listing = (await client.get("/v2/product_videos?page_size=100", headers=KEY)).json()
        assert_valid(spec, "/v2/product_videos", "get", listing)
        for query_path, spec_path in [
            ("/v2/avatars/public?page_size=100", "/v2/avatars/public"),
            ("/v2/avatars/custom", "/v2/avatars/custom"),
            ("/v2/voices?page_size=100", "/v2/voices"),
            ("/v2/musics?page_size=100", "/v2/musics"),
            ("/v2/visual_styles?aspect_ratio=portrait", "/v2/visual_styles"),
            ("/v2/user/whoami", "/v2/user/whoami"),
            ("/v2/user/remaining_quota", "/v2/user/remaining_quota"),
        ]:
            answer = (await client.get(query_path, headers=KEY)).json()
            assert answer["code"] == 0
            assert_valid(spec, spec_path, "get", answer)


@pytest.mark.anyio
async def test_error_envelopes_match_base_response(spec: dict[str, Any]) -> None:
    """Every business error fits BaseResponse: integer code, string msg."""
    base = inline_refs(spec["components"]["schemas"]["BaseResponse"], spec)
    config = SandboxConfig(credits=0, rate_limit=None)
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
        answers = [
            await client.get("/v2/user/whoami"),
            await client.get("/v2/product_video/nope", headers=KEY),
            await client.post("/v2/create_video_from_product", json={}, headers=KEY),
        ]
        for answer in answers:
            OAS30Validator(base).validate(answer.json())
        assert [a.json()["code"] for a in answers] == [10105, 10104, 40000]


@pytest.mark.anyio
async def test_fault_shaped_answers_match_the_spec(spec: dict[str, Any]) -> None:
    """A commit-then-error 50000, a lagging listing and product-name titles still fit the spec."""
    base = inline_refs(spec["components"]["schemas"]["BaseResponse"], spec)
    clock = FakeClock()
    config = SandboxConfig(
        clock=clock,
        rate_limit=None,
        commit_then_error_rate=1.0,
        listing_lag_seconds=5,
        listing_title="product-name",
    )
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test") as client:
        body = {
            "product_id": SEEDED_PRODUCTS[2][0],
            "video_spec": {"length": "15", "name": "Mug [jb-x]"},
            "avatar": {"id": 1},
            "voice": {},
            "audio": {},
            "script": {"style": "Data", "language": "english"},
        }
        coded = []
        for _ in range(12):
            answer = await client.post("/v2/create_video_from_product", json=body, headers=KEY)
            if answer.headers.get("content-type") == "application/json":
                coded.append(answer.json())
        assert coded
        for answer in coded:
            OAS30Validator(base).validate(answer)
            assert answer["code"] == 50000
        hidden = (await client.get("/v2/product_videos", headers=KEY)).json()
        assert_valid(spec, "/v2/product_videos", "get", hidden)
        assert hidden["data"]["videos"] == []
        clock.now += 5
        listing = (await client.get("/v2/product_videos?page_size=100", headers=KEY)).json()
        assert_valid(spec, "/v2/product_videos", "get", listing)
        assert {v["title"] for v in listing["data"]["videos"]} == {SEEDED_PRODUCTS[2][1]}
        video_id = listing["data"]["videos"][0]["id"]
        status = (await client.get(f"/v2/product_video/{video_id}", headers=KEY)).json()
        assert_valid(spec, "/v2/product_video/{product_video_id}", "get", status)
