"""Pre-flight and products from URLs, end to end against the sandbox over a real socket."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from batch import runner
from batch.cli import main
from batch.config import Overrides, RunConfig, Secret, build_run_config
from batch.errors import ExitCode
from batch.joggai.quota import RateLimit
from batch.store.results import read_results
from tests.helpers import write_catalog

BOTTLE, SPEAKER = "MTM3NzE2NTk0MA", "OTEwMTA4NjE4"  # seeded sandbox products
STYLE_PROBLEM = (
    "'simple product swich' is not a visual style for landscape; "
    "did you mean 'Simple Product Switch'?"
)
AVATAR_PROBLEM = (
    "999999 is not a public avatar of this account (list them with `jogg-batch lookup avatars`)"
)
MUSIC_PROBLEM = (
    "9999 is not a music track of this account (list them with `jogg-batch lookup music`)"
)


SANDBOX = {"rate_limit": RateLimit(600, 60.0)}  # the `sandbox_url` of tests/conftest.py


def make_config(catalog: Path, url: str, key: str = "sk-sandbox") -> RunConfig:
    cli = Overrides(
        base_url=url,
        rate_limit="600/min",
        concurrency=4,
        results=catalog.with_suffix(".results.csv"),
    )
    return build_run_config(catalog, cli, api_key=Secret(key))


def inspect(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_sandbox/submissions").json()  # type: ignore[no-any-return]


def row(sku: str, product_id: str, length: str, **cells: str) -> dict[str, str]:
    blank = {"avatar_id": "", "music_id": "", "visual_style": ""}
    return {"sku": sku, "product_id": product_id, "length": length, **blank, **cells}


MIXED_ROWS = [
    row("OK1", BOTTLE, "15"),
    row("STYLE", SPEAKER, "15", visual_style="simple product swich"),
    row("AVATAR", BOTTLE, "30", avatar_id="999999"),
    row("MUSIC", BOTTLE, "60", music_id="9999"),
    row("OK2", SPEAKER, "30", music_id="3", visual_style="simple product switch"),
]


def test_rows_failing_preflight_are_never_sent_and_say_why(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Misspelled style, unknown avatar and music: zero POSTs for them, invalid with a hint."""
    catalog = write_catalog(tmp_path / "catalog.csv", MIXED_ROWS)
    config = make_config(catalog, sandbox_url)

    summary = runner.run(config)

    seen = inspect(sandbox_url)
    assert seen["counts"]["rejected"] == {}
    accepted = sorted(
        (s["product_id"], s["payload"]["video_spec"]["length"]) for s in seen["submissions"]
    )
    assert accepted == [(BOTTLE, "15"), (SPEAKER, "30")]
    (ok2,) = [s for s in seen["submissions"] if s["product_id"] == SPEAKER]
    assert ok2["payload"]["visual_style"] == "Simple Product Switch"  # canonical spelling sent
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert summary.requests_sent == 2
    results = read_results(config.results)
    assert list(results["status"]) == ["submitted", "invalid", "invalid", "invalid", "submitted"]
    assert list(results["message"]) == [
        "",
        f"visual_style: {STYLE_PROBLEM}",
        f"avatar_id: {AVATAR_PROBLEM}",
        f"music_id: {MUSIC_PROBLEM}",
        "",
    ]


def test_a_style_or_voice_spelled_otherwise_is_one_job_with_the_one_spelled_as_listed(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Case and spaces the account's look-ups correct make the same request: rows spelled so
    are one job, in one file and across runs, online or offline, never a second render."""
    spellings = [
        ("simple product switch", "en-us-jennyneural"),
        ("Simple Product Switch", "en-US-JennyNeural"),
        ("SIMPLE  PRODUCT SWITCH", "EN-US-JENNYNEURAL"),
    ]
    rows = [
        row(f"S{i}", SPEAKER, "30", visual_style=style, voice_id=voice)
        for i, (style, voice) in enumerate(spellings)
    ]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    first = runner.run(make_config(catalog, sandbox_url))
    (sent,) = inspect(sandbox_url)["submissions"]
    assert sent["payload"]["visual_style"] == "Simple Product Switch"
    assert sent["payload"]["voice"]["id"] == "en-US-JennyNeural"
    assert first.requests_sent == 1
    statuses = list(read_results(Path(first.results))["status"])
    assert statuses == ["submitted", "duplicate", "duplicate"]

    for index, offline in [(1, False), (2, False), (0, True), (1, True)]:
        again = write_catalog(tmp_path / f"again-{index}-{offline}.csv", [rows[index]])
        config = make_config(again, sandbox_url)
        summary = runner.run(replace(config, offline=offline))
        assert summary.requests_sent == 0, (index, offline)
        assert list(read_results(Path(summary.results))["status"]) == ["already_submitted"]
    assert len(inspect(sandbox_url)["submissions"]) == 1


def test_a_spelling_first_met_after_its_job_was_sent_finds_the_job_offline_too(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The catalog spelled the voice as listed and was sent; tonight's spells it in lower case.
    Online, the look-up corrects it to that job; the spelling is the job's alias from then on,
    so the row run `--offline` is that job too, not a POST of the spelling (refused here, and a
    second render where the API takes it) that left the row `failed`."""
    canonical = write_catalog(
        tmp_path / "a.csv", [row("S1", SPEAKER, "30", voice_id="en-US-JennyNeural")]
    )
    assert runner.run(make_config(canonical, sandbox_url)).requests_sent == 1
    lower = write_catalog(
        tmp_path / "b.csv", [row("S1", SPEAKER, "30", voice_id="en-us-jennyneural")]
    )
    for offline in (False, True, False):
        summary = runner.run(replace(make_config(lower, sandbox_url), offline=offline))
        assert summary.requests_sent == 0, offline
        assert list(read_results(Path(summary.results))["status"]) == ["already_submitted"]
    assert len(inspect(sandbox_url)["submissions"]) == 1


def test_validate_online_prints_the_same_problems_and_exits_1(tmp_path: Path) -> None:
    """`validate --online --sandbox` lists each problem by row and column, sending nothing."""
    catalog = write_catalog(tmp_path / "catalog.csv", MIXED_ROWS)

    result = CliRunner().invoke(main, ["validate", str(catalog), "--online", "--sandbox"])

    assert result.exit_code == ExitCode.ROWS_FAILED
    assert result.stdout.splitlines() == [
        f"catalog.csv row 2, column 'visual_style': {STYLE_PROBLEM}",
        f"catalog.csv row 3, column 'avatar_id': {AVATAR_PROBLEM}",
        f"catalog.csv row 4, column 'music_id': {MUSIC_PROBLEM}",
    ]
    assert f"{catalog}: 3 problem(s)" in result.stderr


def test_products_from_urls_are_created_once_and_videos_once_across_runs(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Each distinct URL becomes one product; a second run sends nothing at all."""
    urls = [f"https://shop.example.com/p/{name}" for name in ("bottle", "speaker", "lamp")]
    rows = [
        {"sku": "B15", "product_url": urls[0], "length": "15"},
        {"sku": "B30", "product_url": urls[0], "length": "30"},
        {"sku": "S15", "product_url": urls[1], "length": "15"},
        {"sku": "L60", "product_url": urls[2], "length": "60"},
        {"sku": "S60", "product_url": urls[1], "length": "60"},
    ]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)

    first = runner.run(make_config(catalog, sandbox_url))

    seen = inspect(sandbox_url)
    product_of = {product["url"]: product["product_id"] for product in seen["products"]}
    assert sorted(product["url"] for product in seen["products"]) == sorted(urls)
    assert first.exit_code == ExitCode.OK
    assert first.requests_sent == 5
    videos = sorted(
        (s["product_id"], s["payload"]["video_spec"]["length"]) for s in seen["submissions"]
    )
    assert videos == sorted((product_of[r["product_url"]], r["length"]) for r in rows)
    assert list(read_results(catalog.with_suffix(".results.csv"))["status"]) == ["submitted"] * 5

    second = runner.run(make_config(catalog, sandbox_url))

    again = inspect(sandbox_url)
    assert second.exit_code == ExitCode.OK
    assert second.requests_sent == 0
    assert (again["products"], again["submissions"]) == (seen["products"], seen["submissions"])
    assert (
        list(read_results(catalog.with_suffix(".results.csv"))["status"])
        == ["already_submitted"] * 5
    )


def test_bad_key_stops_the_run_before_any_post(tmp_path: Path, sandbox_url: str) -> None:
    """Pre-flight refuses a bad key: exit 3, not one POST, every row not_attempted."""
    catalog = write_catalog(tmp_path / "catalog.csv", MIXED_ROWS)
    config = make_config(catalog, sandbox_url, key="sk-wrong")

    summary = runner.run(config)

    seen = inspect(sandbox_url)
    assert summary.exit_code == ExitCode.ACCOUNT
    assert summary.requests_sent == 0
    assert seen["submissions"] == []
    # Only the whoami GET was refused: a POST with this key would have added to the count.
    assert seen["counts"]["rejected"] == {"10105": 1}
    assert list(read_results(config.results)["status"]) == ["not_attempted"] * 5


def test_created_product_ids_appear_in_the_results(tmp_path: Path, sandbox_url: str) -> None:
    """Each URL row's results line names the product id created for its URL."""
    urls = ["https://shop.example.com/p/bottle", "https://shop.example.com/p/lamp"]
    rows = [{"sku": f"R{n}", "product_url": url, "length": "15"} for n, url in enumerate(urls)]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    runner.run(make_config(catalog, sandbox_url))

    product_of = {p["url"]: p["product_id"] for p in inspect(sandbox_url)["products"]}
    results = read_results(catalog.with_suffix(".results.csv"))
    for line in results.to_dict("records"):
        assert line["created_product_id"] == product_of[line["product_url"]]
