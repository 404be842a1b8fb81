"""End-to-end runs against the sandbox over a real loopback socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import xlsxwriter

from batch import catalog as catalog_module
from batch import payload, planner, rerun, runner
from batch.catalog import CatalogOptions
from batch.catalog.rows import request_settings_to_json
from batch.config import Overrides, RunConfig, Secret, build_run_config
from batch.errors import CatalogError, ConfigError, ExitCode, LockedError
from batch.joggai.backoff import RetryPolicy
from batch.joggai.client import JoggClient, Timeouts
from batch.joggai.quota import RateLimit
from batch.outputs import planned_requests_path
from batch.payload import RequestDefaults
from batch.sandbox import SandboxConfig, create_app
from batch.store import AttemptRecord, NewJob, RowPlan, StateStore
from batch.store.backend import DatabaseURL, state_location
from batch.store.ledgers import account_id, account_url, hold_account, ledger_path
from batch.store.results import read_results
from tests.helpers import product_ids, simple_rows, submissions, write_catalog

SETTLE = 0.3


SANDBOX = {"rate_limit": RateLimit(600, 60.0)}  # the `sandbox_url` of tests/conftest.py


def make_config(
    catalog: Path, url: str, *, rate: str = "600/min", key: str = "sk-sandbox", **flags: Any
) -> RunConfig:
    """`flags`: further Overrides (dry_run, max_videos, ...)."""
    overrides = Overrides(
        base_url=url,
        rate_limit=rate,
        concurrency=4,
        results=catalog.with_suffix(".results.csv"),
        **flags,
    )
    # A short settle period: the sandbox commits at once and lists new videos at once.
    return replace(build_run_config(catalog, overrides, api_key=Secret(key)), settle_seconds=SETTLE)


# (method, path, query, the sandbox's body) -> None to keep the sandbox's answer, or a new one
# as (HTTP status, content type, body).
Rewrite = Callable[[str, str, dict[str, str], bytes], tuple[int, str, bytes] | None]


class RewritingSandbox:
    """The sandbox in-process (httpx.ASGITransport), some of its answers replaced after it
    handled the request: what a server in front of it could send."""

    def __init__(self, rewrite: Rewrite) -> None:
        self.sandbox = create_app(SandboxConfig(rate_limit=None))
        self.rewrite = rewrite

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.sandbox(scope, receive, send)
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.sandbox(scope, receive, capture)
        query = dict(httpx.QueryParams(scope["query_string"].decode()))
        body = b"".join(chunks)
        new = self.rewrite(scope["method"], scope["path"], query, body)
        status, headers = start["status"], list(start.get("headers", []))
        if new is not None:
            status, content_type, body = new
            headers = [(b"content-type", content_type.encode())]
        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def every_create_answered(status: int, content_type: str, body: bytes) -> Rewrite:
    """A rewrite that answers every create with this, whatever the sandbox did with it."""

    def rewrite(method: str, path: str, query: dict[str, str], _: bytes) -> Any:
        return (status, content_type, body) if path == "/v2/create_video_from_product" else None

    return rewrite


def with_an_invalid_and_a_duplicate(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows, then one with a length JoggAI refuses and a copy of the first under a new sku."""
    bad = {"sku": "BAD", "product_id": product_ids(1)[0], "title": "x", "length": "45"}
    return [*rows, bad, dict(rows[0], sku="DUP")]


def run_one_at_a_time(
    catalog: Path, url: str, attempts: int
) -> tuple[RunConfig, runner.RunSummary]:
    """A run sending one request at a time, each tried `attempts` times with short pauses."""
    config = replace(
        make_config(catalog, url),
        concurrency=1,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.02),
    )
    return config, runner.run(config)


def test_every_valid_row_is_submitted_once_and_invalid_rows_never_sent(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Valid rows reach the server exactly once; invalid and duplicate rows never do."""
    rows = with_an_invalid_and_a_duplicate(simple_rows(8))
    catalog = write_catalog(tmp_path / "catalog.csv", rows)

    summary = runner.run(make_config(catalog, sandbox_url))

    accepted = submissions(sandbox_url)["submissions"]
    assert sorted(s["product_id"] for s in accepted) == sorted(r["product_id"] for r in rows[:8])
    assert summary.exit_code == ExitCode.ROWS_FAILED  # one invalid row
    results = read_results(tmp_path / "catalog.results.csv")
    assert list(results["sku"]) == [r["sku"] for r in rows]
    assert list(results["row"]) == [str(n) for n in range(1, 11)]
    assert list(results["status"]) == ["submitted"] * 8 + ["invalid", "duplicate"]
    assert results["video_id"].iloc[9] == results["video_id"].iloc[0]
    assert results["message"].iloc[8] == "length: '45' is not a video length; use 15, 30 or 60"
    assert set(results["video_id"].iloc[:8]) == {s["video_id"] for s in accepted}


def test_a_dry_run_plans_off_the_event_loop_and_stops_planning_when_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`await run_async(config)` of a dry run plans in a worker thread (the loop stays free for
    a notebook's other tasks), and a cancelled one (a notebook's interrupt) stops planning at
    the next slice: `asyncio.run` waits for its threads as it ends, and a catalog planned to its
    end made that half a minute. Nothing is written for a plan nobody waits for."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(20))
    config = make_config(catalog, "http://127.0.0.1:9", dry_run=True, offline=True)
    monkeypatch.setattr(planner, "PLAN_SLICE", 2)  # ten slices
    first_slice, cancelled = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    plan_slice = planner.Planner._plan_slice

    def recorded(self: planner.Planner, *args: Any) -> int:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            first_slice.set()
            cancelled.wait(10)  # on the loop's own thread this would hold the loop up
        return plan_slice(self, *args)

    monkeypatch.setattr(planner.Planner, "_plan_slice", recorded)

    async def interrupted() -> None:
        task = asyncio.create_task(runner.run_async(config))
        await asyncio.to_thread(first_slice.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled.set()

    asyncio.run(interrupted())  # returns once the worker thread has ended
    assert threads[0] is not threading.main_thread()
    assert len(threads) <= 2  # the slice under way, and at most the one after
    assert not config.results.exists()  # type: ignore[union-attr]


def test_second_run_sends_nothing_and_reports_already_submitted(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Finished rows are never paid for twice; the results file stays complete."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(5))
    first = runner.run(make_config(catalog, sandbox_url))
    second = runner.run(make_config(catalog, sandbox_url))
    assert first.exit_code == second.exit_code == ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 5
    assert second.requests_sent == 0
    assert set(read_results(tmp_path / "catalog.results.csv")["status"]) == {"already_submitted"}


def test_nightly_run_sends_exactly_changed_and_new_rows(tmp_path: Path, sandbox_url: str) -> None:
    """Change 10% of rows and add 10%: exactly those are sent the next night."""
    rows = simple_rows(20)
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    runner.run(make_config(catalog, sandbox_url))
    rows[3]["length"] = "30"
    rows[11]["length"] = "60"
    rows += simple_rows(2, start=20)
    write_catalog(catalog, rows)

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.plan.changed, summary.plan.new, summary.plan.already_submitted) == (2, 2, 18)
    sent = submissions(sandbox_url)["submissions"][20:]
    assert sorted(s["product_id"] for s in sent) == sorted(
        rows[i]["product_id"] for i in (3, 11, 20, 21)
    )
    statuses = list(read_results(catalog.with_suffix(".results.csv"))["status"])
    assert [i for i, s in enumerate(statuses) if s == "submitted"] == [3, 11, 20, 21]


def test_rows_that_moved_since_the_last_run_are_still_already_submitted(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Last night's row-to-job map only speeds planning up: rows reordered, a row inserted on
    top and a row repeated still find their jobs, and only the new row is sent."""
    rows = simple_rows(12)
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    runner.run(make_config(catalog, sandbox_url))
    moved = [*simple_rows(1, start=12), *reversed(rows), rows[5]]
    write_catalog(catalog, moved)

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.plan.new, summary.plan.already_submitted, summary.plan.duplicate) == (1, 12, 1)
    sent = submissions(sandbox_url)["submissions"][12:]
    assert [s["product_id"] for s in sent] == [moved[0]["product_id"]]
    statuses = list(read_results(catalog.with_suffix(".results.csv"))["status"])
    assert statuses == ["submitted"] + ["already_submitted"] * 12 + ["duplicate"]


@pytest.mark.parametrize("slice_rows", [1, 5_000])
def test_a_carried_over_row_that_now_repeats_an_earlier_row_is_its_duplicate(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch, slice_rows: int
) -> None:
    """A row unchanged since last run is recorded without being looked at, yet when an earlier
    row now asks for the same video it is that row's duplicate, in one slice or across two."""
    monkeypatch.setattr(planner, "PLAN_SLICE", slice_rows)
    a, b, c = simple_rows(3)
    catalog = write_catalog(tmp_path / "catalog.csv", [a, b, c])
    runner.run(make_config(catalog, sandbox_url))
    write_catalog(catalog, [b, b, c, b])

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.plan.already_submitted, summary.plan.duplicate, summary.plan.new) == (2, 2, 0)
    assert len(submissions(sandbox_url)["submissions"]) == 3
    results = read_results(catalog.with_suffix(".results.csv"))
    assert list(results["status"]) == ["already_submitted", "duplicate"] * 2
    assert list(results["message"])[1::2] == ["same request as row 1"] * 2


def test_plan_counts_the_products_the_rows_to_send_must_create(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`plan` counts one product creation per URL a row to send needs: none once they exist,
    one again for a job to retry whose product is gone from the state."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "product_url,video_name\n"
        "https://shop.example/a,A\nhttps://shop.example/a,A again\nhttps://shop.example/b,B\n"
    )
    config = make_config(catalog, sandbox_url)
    assert runner.plan_only(config).product_posts == 2
    runner.run(config)
    assert runner.plan_only(config).product_posts == 0
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        db.execute("DELETE FROM products WHERE source = 'url:https://shop.example/b'")
        db.execute("UPDATE jobs SET status = 'failed', permanent = 0 WHERE fields LIKE '%/b%'")

    summary = runner.plan_only(config)

    assert (summary.plan.retry, summary.plan.already_submitted, summary.product_posts) == (1, 2, 1)


def test_a_product_page_written_another_way_is_the_same_request(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`https://Shop.Example.COM/p/a` and `https://shop.example.com:443/p/a?` are the page the
    last night sent: no product made again, no second video, in one file or across nights."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("product_url,video_name\nhttps://shop.example.com/p/a,A\n")
    runner.run(make_config(catalog, sandbox_url))
    catalog.write_text(
        "product_url,video_name\n"
        "https://Shop.Example.COM/p/a,A\nhttps://shop.example.com:443/p/a?,A\n"
    )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    assert summary.plan.duplicate == 1
    seen = submissions(sandbox_url)
    assert (len(seen["submissions"]), len(seen["products"])) == (1, 1)


def test_a_product_made_for_rows_and_gone_at_joggai_is_made_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The product made for a page was deleted at JoggAI: its next video was refused with
    10104 for good, every night, whatever was fixed in the row. That row fails once, saying
    so, and the next run makes the product again and sends the video."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("product_url,video_name\nhttps://shop.example.com/p/a,A\n")
    assert runner.run(make_config(catalog, sandbox_url)).requests_sent == 1
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()  # its products too
    catalog.write_text("product_url,video_name\nhttps://shop.example.com/p/a,B\n")

    failed = runner.run(make_config(catalog, sandbox_url))
    results = read_results(catalog.with_suffix(".results.csv"))
    assert (list(results["status"]), list(results["code"])) == (["failed"], ["10104"])
    assert "the product made for this row is gone at JoggAI" in results["message"][0]
    assert failed.exit_code == ExitCode.ROWS_FAILED

    again = runner.run(make_config(catalog, sandbox_url))
    assert again.requests_sent == 1
    assert list(read_results(catalog.with_suffix(".results.csv"))["status"]) == ["submitted"]
    seen = submissions(sandbox_url)
    assert (len(seen["submissions"]), len(seen["products"])) == (1, 1)


def test_a_row_whose_product_was_refused_says_no_video_was_asked_for(tmp_path: Path) -> None:
    """A product page the API refuses (40000): the row read `failed, 40000, Param error` as a
    refused video would, and nobody could tell which step failed, or whether it was charged."""

    def refuse_products(method: str, path: str, *_: object) -> tuple[int, str, bytes] | None:
        if path != "/v2/product":
            return None
        return 200, "application/json", b'{"code": 40000, "msg": "Param error: media"}'

    catalog = tmp_path / "catalog.csv"
    catalog.write_text("product_url,video_name\nhttps://shop.example.com/p/a,A\n")
    sandbox = RewritingSandbox(refuse_products)
    summary = runner.run(make_config(catalog, "http://sandbox.test"), transport=sandbox.transport())
    assert summary.requests_sent == 0
    results = read_results(catalog.with_suffix(".results.csv"))
    assert list(results["status"]) == ["failed"]
    assert results["message"][0].startswith("creating the product (no video was asked for): ")


def sent_by_an_earlier_version(
    config: RunConfig, sent: Callable[[payload.ResolvedFields], payload.ResolvedFields]
) -> payload.ResolvedFields:
    """Runs `config`'s one-row catalog, then rewrites its job as a version that read the row as
    `sent(its fields now)` recorded it: that request's fingerprint, fields and tag, and no
    aliases (they knew none). Returns the row's fields as read now."""
    runner.run(config)
    (batch,) = catalog_module.read_catalog(config.catalog, config.catalog_options)
    (row,) = batch.rows
    assert row.fields is not None
    fields = sent(row.fields)
    old = payload.fingerprint(fields)
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        db.execute("DELETE FROM fingerprint_aliases")
        db.execute(
            "UPDATE jobs SET fingerprint = ?, fields = ?, tag = ?",
            (old, payload.fields_to_json(fields), planner.tag_for(old)),
        )
    return row.fields


def test_free_text_re_saved_with_spaces_at_its_ends_is_not_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A re-export that pads a script and the title a name template takes: nothing new is
    sent; and what was sent first had no such spaces."""
    catalog = tmp_path / "catalog.csv"
    pids = product_ids(2)
    catalog.write_text(
        f"product_id,title,override_script,video_name\n{pids[0]},Mug,Hi.,{{title}} ad\n"
        f'{pids[1]}, Cup ," Hi.",{{title}} ad\n'
    )
    runner.run(make_config(catalog, sandbox_url))
    catalog.write_text(
        f"product_id,title,override_script,video_name\n{pids[0]},Mug ,Hi. ,{{title}} ad\n"
        f"{pids[1]},Cup,Hi.,{{title}} ad\n"
    )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 2)
    sent = submissions(sandbox_url)["submissions"]
    assert [
        (s["payload"]["override_script"], s["payload"]["video_spec"]["name"][-6:]) for s in sent
    ] == [
        ("Hi.", "Mug ad"),
        ("Hi.", "Cup ad"),
    ]


def test_a_catalog_turned_to_text_by_pandas_is_not_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The same catalog after its cells are made text as pandas before 3.0 did (`astype(str)`;
    `map(str)` here) and saved as Parquet: its empty scripts and names are `nan` and `None`,
    still missing, so every row is the job it was."""
    catalog = tmp_path / "catalog.csv"
    pids = product_ids(3)
    catalog.write_text(
        f"product_id,override_script,video_name\n{pids[0]},,\n{pids[1]},Hi,\n{pids[2]},,Ad\n"
    )
    runner.run(make_config(catalog, sandbox_url))
    frame = pd.read_csv(catalog, dtype=object)
    frame.loc[2, "override_script"] = None
    parquet = tmp_path / "export.parquet"
    frame.map(str).to_parquet(parquet)
    assert list(frame.map(str)["override_script"]) == ["nan", "Hi", "None"]

    summary = runner.run(make_config(parquet, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 3)


@pytest.mark.parametrize("missing", ["NA", "NaN", "null"])
def test_a_re_export_that_writes_missing_text_as_a_word_is_not_paid_again(
    tmp_path: Path, sandbox_url: str, missing: str
) -> None:
    """Last night's export left a script and a name empty; tonight's, from R or JavaScript,
    writes them `NA`, `NaN` or `null`: nothing is sent, and no video speaks the word."""
    catalog = tmp_path / "catalog.csv"
    pids = product_ids(2)
    catalog.write_text(f"product_id,override_script,video_name\n{pids[0]},,\n{pids[1]},Hi.,B\n")
    runner.run(make_config(catalog, sandbox_url))
    catalog.write_text(
        f"product_id,override_script,video_name\n{pids[0]},{missing},{missing}\n{pids[1]},Hi.,B\n"
    )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 2)
    bodies = [video["payload"] for video in submissions(sandbox_url)["submissions"]]
    sent = json.dumps(bodies)
    assert f'"{missing}"' not in sent  # no script of the word
    assert f'] {missing}"' not in sent  # no name of it after the tag


@pytest.mark.parametrize("missing", ["NULL", "\\N", "nan", "None", "<NA>"])
def test_a_null_word_in_a_cell_a_name_template_takes_is_an_empty_cell(
    tmp_path: Path, sandbox_url: str, missing: str
) -> None:
    """Last night's export left the title empty; tonight's writes the database's or pandas'
    word for a missing value there, under `{brand} {title} promo`: the name is last night's,
    nothing is sent, and no video is named after the word."""
    catalog = tmp_path / "catalog.csv"
    pid = product_ids(1)[0]
    catalog.write_text(
        f"product_id,brand,title,video_name\n{pid},Acme,,{{brand}} {{title}} promo\n"
    )
    runner.run(make_config(catalog, sandbox_url))
    catalog.write_text(
        f"product_id,brand,title,video_name\n{pid},Acme,{missing},{{brand}} {{title}} promo\n"
    )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    assert missing not in json.dumps(submissions(sandbox_url)["submissions"][0]["payload"])


@pytest.mark.parametrize(
    ("cell", "template", "then", "now"),
    [("NULL", "Acme {title}", "Acme NULL", "Acme"), ("Mug ", "{title}!", "Mug !", "Mug!")],
    ids=["null-word", "padded"],
)
def test_a_name_an_earlier_version_took_from_a_cell_as_written_is_not_paid_again(
    tmp_path: Path, sandbox_url: str, cell: str, template: str, then: str, now: str
) -> None:
    """Versions that took a template's cell into a name as written (a `NULL` cell's word, a
    cell's spaces) recorded the job under that name; tonight the word is an empty cell and
    the spaces are gone, and the row is still that job."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f"product_id,title,video_name\n{product_ids(1)[0]},{cell},{template}\n")
    config = make_config(catalog, sandbox_url)
    tonight = sent_by_an_earlier_version(config, lambda fields: fields._replace(name=then))
    assert tonight.name == now

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)


def test_a_padded_name_the_last_version_recorded_is_found_when_the_file_comes_trimmed(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The last version sent the name `Mug ` and scanned its state for aliases; tonight's file
    is trimmed, so the row has no earlier reading to look under: this version scans the state
    again, and the job's request as sent now (`Mug`) is its alias. No POST."""
    catalog = tmp_path / "catalog.csv"
    pid = product_ids(1)[0]
    catalog.write_text(f"product_id,title,video_name\n{pid},Mug ,{{title}}\n")
    config = make_config(catalog, sandbox_url)
    sent_by_an_earlier_version(config, lambda fields: fields._replace(name="Mug "))
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # as the last version left it: scanned
        db.execute("DELETE FROM meta WHERE key LIKE 'aliased_as_asked%'")
        db.execute("INSERT INTO meta (key, value) VALUES ('aliased_as_asked_2', '1')")
    catalog.write_text(f"product_id,title,video_name\n{pid},Mug,{{title}}\n")

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)


def test_a_name_an_earlier_version_sent_from_a_text_formula_is_not_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Versions that sent `="00123"` as written named the video `v="00123"` and recorded its
    job so; tonight the name is `v00123`, and the row is that job, not a second render."""
    catalog = tmp_path / "catalog.csv"
    pid = product_ids(1)[0]
    catalog.write_text(f'product_id,sku,video_name\n{pid},="00123",v{{sku}}\n')
    config = make_config(catalog, sandbox_url)
    now = sent_by_an_earlier_version(config, lambda fields: fields._replace(name='v="00123"'))
    assert now.name == "v00123"

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    assert len(submissions(sandbox_url)["submissions"]) == 1


def page_sent_as_written(catalog: Path, sandbox_url: str, written: str) -> RunConfig:
    """Runs a one-row catalog of the product page `written`, then leaves its job as versions
    that kept the page as written recorded it: under that URL, and with no alias pass made."""
    catalog.write_text(f"product_url,video_name\n{written},A\n")
    config = make_config(catalog, sandbox_url)

    def as_written(fields: payload.ResolvedFields) -> payload.ResolvedFields:
        assert fields.product is not None
        return fields._replace(product=fields.product._replace(url=written))

    sent_by_an_earlier_version(config, as_written)
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # those versions gave no aliases either
        db.execute("DELETE FROM meta WHERE key LIKE 'aliased_as_asked%'")
    return config


@pytest.mark.parametrize("tonight", ["https://SHOP.example:443/p/a", "https://shop.example/p/a"])
def test_a_product_page_an_earlier_version_sent_as_written_is_not_paid_again(
    tmp_path: Path, sandbox_url: str, tonight: str
) -> None:
    """Versions that sent a product page as written (`https://SHOP.example:443/p/a`) recorded
    its job under that: the file as then (its earlier fingerprint) and the page written
    otherwise (the job's alias) both find it."""
    catalog = tmp_path / "catalog.csv"
    page_sent_as_written(catalog, sandbox_url, "https://SHOP.example:443/p/a")
    catalog.write_text(f"product_url,video_name\n{tonight},A\n")

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    assert len(submissions(sandbox_url)["submissions"]) == 1


def test_a_product_page_written_as_an_iri_one_night_and_a_uri_the_next_is_one_video(
    tmp_path: Path, sandbox_url: str
) -> None:
    """One export writes a page's address as people read it, the next as a browser sends it
    (IDNA host, UTF-8 escapes), a third with its escapes in lower case: one product and one
    video, and the page is sent as a URI."""
    catalog = tmp_path / "catalog.csv"
    uri = "https://xn--caf-dma.example/th%C3%A9?q=%C3%A9"
    for form in ("https://Café.example/thé?q=é", uri, uri.lower()):
        catalog.write_text(f"product_url,video_name\n{form},A\n")

        summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    seen = submissions(sandbox_url)
    assert len(seen["submissions"]) == 1
    assert [product["url"] for product in seen["products"]] == [uri]


def test_a_product_page_an_earlier_version_recorded_as_an_iri_is_not_created_or_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Versions that kept a page's address as written (`https://café.example/thé`) recorded its
    job and its product so; this version sends the page as a URI. The same file is not paid
    again, and a new video of that page does not create its product again."""
    catalog = tmp_path / "catalog.csv"
    written = "https://café.example/thé"
    config = page_sent_as_written(catalog, sandbox_url, written)
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # its product, as those versions recorded it
        db.execute("UPDATE products SET source = ?", (f"url:{written}",))
    catalog.write_text(f"product_url,video_name\n{written},A\n{written},B\n")

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (1, 1)
    seen = submissions(sandbox_url)
    assert [video["name"][-1] for video in seen["submissions"]] == ["A", "B"]
    assert len(seen["products"]) == 1


def test_two_catalogs_of_one_name_do_not_share_the_default_results_file(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`catalog.csv` and `catalog.jsonl` side by side would both write `catalog.results.csv`,
    each over the other's rows: the second is refused before sending (exit 2), naming a results
    file of its own; with it, both files are kept. Once the first catalog is gone (converted),
    the default file is the new one's."""
    csv_catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    runner.run(make_config(csv_catalog, sandbox_url))
    jsonl = tmp_path / "catalog.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"product_id": p, "video_name": "J"}) + "\n" for p in product_ids(2))
    )
    with pytest.raises(ConfigError, match=r"holds the results of .*catalog\.csv, a catalog beside"):
        runner.run(make_config(jsonl, sandbox_url))
    assert len(submissions(sandbox_url)["submissions"]) == 2
    own = tmp_path / "catalog.jsonl.results.csv"
    runner.run(replace(make_config(jsonl, sandbox_url), results=own))
    assert set(read_results(own)["status"]) == {"submitted"}
    assert set(read_results(tmp_path / "catalog.results.csv")["status"]) == {"submitted"}
    csv_catalog.unlink()
    assert runner.run(make_config(jsonl, sandbox_url)).exit_code == ExitCode.OK


def test_two_sheets_of_one_workbook_do_not_share_the_default_results_file(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`--sheet Spring`, then `--sheet Summer` of one workbook: the second would write over the
    first's rows in `book.results.csv`; refused before sending, naming a file of its own."""
    book = xlsxwriter.Workbook(str(tmp_path / "book.xlsx"))
    for name, ids in (("Spring", product_ids(2)), ("Summer", product_ids(3)[2:])):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, ["product_id", "video_name"])
        for row, pid in enumerate(ids, 1):
            sheet.write_row(row, 0, [pid, name])
    book.close()
    catalog = tmp_path / "book.xlsx"
    runner.run(make_config(catalog, sandbox_url, sheet="Spring"))
    with pytest.raises(ConfigError, match=r"holds the results of sheet 'Spring' of this workbook"):
        runner.run(make_config(catalog, sandbox_url, sheet="Summer"))
    assert len(submissions(sandbox_url)["submissions"]) == 2
    own = tmp_path / "book.Summer.results.csv"
    summary = runner.run(replace(make_config(catalog, sandbox_url, sheet="Summer"), results=own))
    assert summary.requests_sent == 1
    assert runner.run(make_config(catalog, sandbox_url, sheet="Spring")).requests_sent == 0


def test_dry_run_sends_nothing_and_writes_planned_results(tmp_path: Path, sandbox_url: str) -> None:
    """--dry-run writes 'planned' rows and leaves the state as it was."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    config = make_config(catalog, sandbox_url, dry_run=True)
    summary = runner.run(config)
    assert summary.exit_code == ExitCode.OK
    assert submissions(sandbox_url)["submissions"] == []
    assert set(read_results(config.results)["status"]) == {"planned"}
    assert isinstance(config.results, Path)
    requests = planned_requests_path(config.results)
    assert isinstance(requests, Path)
    planned = [json.loads(line) for line in requests.read_text().splitlines()]
    assert [p["body"]["product_id"] for p in planned] == product_ids(3)
    assert planned[0]["body"]["video_spec"] == {
        "length": "15", "aspect_ratio": "landscape", "caption": False,
        "name": f"[jb-{planned[0]['body']['video_spec']['name'][4:16]}]",
    }  # fmt: skip
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)


@pytest.mark.parametrize("sandbox_url", [{"credits": 0}], indirect=True)
def test_no_credit_aborts_the_run_with_exit_3(tmp_path: Path, sandbox_url: str) -> None:
    """18020 stops the run: nothing is accepted, every row is not_attempted, exit 3."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(6))
    summary = runner.run(make_config(catalog, sandbox_url))
    assert summary.exit_code == ExitCode.ACCOUNT
    assert set(read_results(catalog.with_suffix(".results.csv"))["status"]) == {"not_attempted"}


def test_a_run_stopped_before_planning_tells_invalid_rows_from_rows_not_attempted(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A bad key stops the run before any row is planned: its first results file said every
    row not_attempted, the invalid one too (which a retry would not mend). Its rows are now
    planned offline for the file, and the ledger keeps none of that plan."""
    catalog = write_catalog(
        tmp_path / "catalog.csv", with_an_invalid_and_a_duplicate(simple_rows(2))
    )
    config = make_config(catalog, sandbox_url, key="sk-wrong")
    summary = runner.run(config)
    assert summary.exit_code == ExitCode.ACCOUNT
    statuses = list(read_results(config.results)["status"])
    assert statuses == ["not_attempted", "not_attempted", "invalid", "duplicate"]
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM run_rows").fetchone() == (0,)


def test_bad_key_aborts_the_run_with_exit_3(tmp_path: Path, sandbox_url: str) -> None:
    """10105 stops the run at once."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(6))
    summary = runner.run(make_config(catalog, sandbox_url, key="sk-wrong"))
    assert summary.exit_code == ExitCode.ACCOUNT
    assert summary.requests_sent <= 4  # only what was already in flight
    assert submissions(sandbox_url)["submissions"] == []


def test_an_html_401_stops_the_run_naming_the_http_status(tmp_path: Path) -> None:
    """A create refused by an HTML 401 page (no code) stops the run with exit 3, saying so; no
    API envelope proves the refusal (the server behind made the video here), so the row is
    looked up, never left `not_attempted` to be sent again."""
    html_401 = every_create_answered(401, "text/html", b"<html>Unauthorized</html>")
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    summary = runner.run(config, transport=RewritingSandbox(html_401).transport())
    assert summary.exit_code == ExitCode.ACCOUNT
    assert summary.stopped == "account error (HTTP 401, no code)"
    statuses = list(read_results(config.results)["status"])
    assert statuses[0] in ("submitted", "unknown")  # as far as the listing could tell
    assert statuses[1] == "not_attempted"


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_a_4xx_page_without_a_code_after_the_commit_is_looked_up_not_failed(
    tmp_path: Path, status: int
) -> None:
    """A proxy or gateway answering 4xx with its own page (no API code) proves nothing of the
    API behind it, which made the video here: each row is looked up and adopted, never
    `failed` (which `retry --retry-permanent` would pay for again)."""
    page = every_create_answered(status, "text/html", b"<html>Bad Request</html>")
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    summary = runner.run(config, transport=RewritingSandbox(page).transport())
    results = read_results(config.results)
    assert list(results["status"]) == ["submitted"] * 3
    assert all(results["video_id"])
    assert summary.credits_spent == 3
    assert summary.exit_code == ExitCode.OK


def test_a_5xx_with_a_rate_limits_body_after_the_commit_is_looked_up_never_resent(
    tmp_path: Path,
) -> None:
    """A gateway's 503 whose body says 429 (an upstream's rate limit) over a create the API
    committed: looked up and adopted, never sent again at once as a rate limit would be. (One
    row: the limiter holds a window after such an answer, as on a 429.)"""
    busy = every_create_answered(503, "application/json", b'{"code":429,"msg":"upstream busy"}')
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(1))
    sandbox = RewritingSandbox(busy)
    summary = runner.run(make_config(catalog, "http://sandbox.test"), transport=sandbox.transport())
    assert list(read_results(catalog.with_suffix(".results.csv"))["status"]) == ["submitted"]
    assert (summary.requests_sent, summary.credits_spent) == (1, 1)
    assert summary.exit_code == ExitCode.OK


def test_an_answer_naming_another_video_is_set_right_from_the_listing(tmp_path: Path) -> None:
    """A 200 naming a video the account does not have (a proxy answering for another request):
    the row kept it, its render was never followed, and a day on it was a failed render that
    `retry` paid for again. The next run's listing shows the row's tag on the video it paid
    for: the row takes that one, and nothing is sent."""
    fake = "ZmFrZS12aWRlby1pZA"
    answered: list[str] = []

    def another_video(method: str, path: str, query: dict[str, str], body: bytes) -> Any:
        if path != "/v2/create_video_from_product" or answered:
            return None
        answer = json.loads(body)
        answered.append(answer["data"]["video_id"])
        answer["data"]["video_id"] = fake
        return 200, "application/json", json.dumps(answer).encode()

    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    sandbox = RewritingSandbox(another_video)
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    runner.run(config, transport=sandbox.transport())
    assert read_results(config.results)["video_id"][0] == fake
    time.sleep(SETTLE + 0.2)  # the listing lacks it past the settle period

    again = runner.run(config, transport=sandbox.transport())

    assert again.requests_sent == 0
    assert read_results(config.results)["video_id"][0] == answered[0]


def test_a_server_clock_behind_ours_neither_pays_twice_nor_undercounts_credits(
    tmp_path: Path,
) -> None:
    """The API's clock 1,000 s behind ours (past the 300 s allowance) and the second create's
    answer lost after its commit: the listing walk widens by the lag the answered videos show,
    the lost one is found, not sent again, and the credits count it."""
    lag, creates = 1_000.0, []

    def behind(method: str, path: str, query: dict[str, str], body: bytes) -> Any:
        if path == "/v2/product_videos":
            answer = json.loads(body)
            for video in answer["data"]["videos"]:
                video["created_at"] -= lag
            return 200, "application/json", json.dumps(answer).encode()
        if path == "/v2/create_video_from_product":
            creates.append(path)
            if len(creates) == 2:
                return 502, "text/html", b"<html>bad gateway</html>"
        return None

    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    summary = runner.run(config, transport=RewritingSandbox(behind).transport())
    assert len(creates) == 3
    assert list(read_results(config.results)["status"]) == ["submitted"] * 3
    assert summary.credits_spent == 3


def test_one_video_id_answered_for_several_rows_goes_to_one_row_only(tmp_path: Path) -> None:
    """A server answering every create with the same video id: only the first row takes it;
    the others are looked up by their tags and get their own videos, nothing sent twice."""
    same_video = every_create_answered(
        200, "application/json", b'{"code": 0, "msg": "ok", "data": {"video_id": "v-1"}}'
    )
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    sandbox = RewritingSandbox(same_video)
    summary = runner.run(config, transport=sandbox.transport())
    results = read_results(config.results)
    assert list(results["status"]) == ["submitted"] * 3
    assert len(set(results["video_id"])) == 3
    again = runner.run(config, transport=sandbox.transport())
    assert (summary.requests_sent, again.requests_sent) == (3, 0)


@pytest.mark.parametrize("sandbox_url", [{"rate_limit": RateLimit(10, 1.0)}], indirect=True)
def test_equal_limits_never_draw_a_429_nor_overfill_a_window(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Client and sandbox both at 10/s (a scaled 20/min): zero 429s, no window over 10."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(35))
    summary = runner.run(make_config(catalog, sandbox_url, rate="10/s"))
    report = submissions(sandbox_url)
    assert summary.exit_code == ExitCode.OK
    assert report["counts"]["rate_limited"] == 0
    times = sorted(s["received_at"] for s in report["submissions"])
    assert len(times) == 35
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 10


@pytest.mark.parametrize(
    "sandbox_url",
    [{"fail_rate": 0.3, "bad_gateway_rate": 0.2, "latency_ms": (0, 30), "seed": 3}],
    indirect=True,
)
def test_server_faults_end_submitted_after_retries(tmp_path: Path, sandbox_url: str) -> None:
    """50000 and 502 HTML answers are looked up, then resent once proven absent: every row ends
    submitted, once."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(12))
    config = replace(
        make_config(catalog, sandbox_url),
        retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05),
    )
    summary = runner.run(config)
    report = submissions(sandbox_url)
    assert report["counts"]["faulted"]["fail"] + report["counts"]["faulted"]["bad_gateway"] > 0
    assert summary.exit_code == ExitCode.OK
    assert len(report["submissions"]) == 12
    assert set(read_results(config.results)["status"]) == {"submitted"}


@pytest.mark.parametrize("sandbox_url", [{"fail_rate": 1.0}], indirect=True)
def test_lost_answers_end_unknown_when_the_listing_cannot_prove_absence(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Only 50000s and no video the ledger knows in the listing: nothing proves that titles
    carry tags, so nothing is resent and the rows end unknown, never failed."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = replace(
        make_config(catalog, sandbox_url),
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
    )
    summary = runner.run(config)
    results = read_results(config.results)
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert list(results["status"]) == ["unknown", "unknown"]
    assert list(results["attempts"]) == ["1", "1"]
    assert submissions(sandbox_url)["counts"]["faulted"]["fail"] == 2


@pytest.mark.parametrize("sandbox_url", [{"fail_rate": 0.6, "seed": 1}], indirect=True)
def test_exhausted_attempts_proven_absent_end_failed_with_the_last_code(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A row whose every attempt drew 50000, each proven absent, ends failed with 50000 after
    max_attempts; the others end submitted, each accepted once."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(8))
    config, summary = run_one_at_a_time(catalog, sandbox_url, attempts=2)
    results = read_results(config.results)
    accepted = [s["product_id"] for s in submissions(sandbox_url)["submissions"]]
    failed = results[results["status"] == "failed"]
    assert set(results["status"]) == {"submitted", "failed"}
    assert set(failed["code"]) == {"50000"}
    assert set(failed["attempts"]) == {"2"}
    assert sorted(accepted) == sorted(results[results["status"] == "submitted"]["product_id"])
    assert summary.exit_code == ExitCode.ROWS_FAILED


def endless_listing(method: str, path: str, query: dict[str, str], _: bytes) -> Any:
    """Every page of the listing is full of new videos, and the total no account holds."""
    if path != "/v2/product_videos":
        return None
    page, size = int(query["page"]), int(query["page_size"])
    videos = [
        {"id": f"fake{page}_{n}", "title": f"x{page}_{n}", "status": "processing", "created_at": 1}
        for n in range(size)
    ]
    data = {"videos": videos, "total": 10**9, "page": page, "page_size": size}
    return 200, "application/json", json.dumps({"code": 0, "msg": "ok", "data": data}).encode()


def test_a_listing_that_never_ends_stops_the_run_before_anything_is_sent(tmp_path: Path) -> None:
    """An endless listing ends the run at once, saying so; nothing sent or stored, and the rows
    are left to send (exit 1: not an account's key, permission or credit)."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    server = RewritingSandbox(endless_listing)
    config = make_config(catalog, "http://sandbox.test")
    summary = runner.run(config, transport=server.transport())
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert summary.stopped == "the video listing is unreadable"
    assert summary.requests_sent == 0
    assert set(read_results(config.results)["status"]) == {"not_attempted"}
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*) FROM listing").fetchone() == (0,)


class FreshListing(httpx.AsyncBaseTransport):
    """The sandbox, but every page of its listing is full of videos never listed before, and
    says no total (each page a moment late, so that a test's own timeout can end the run)."""

    def __init__(self) -> None:
        self.inner = httpx.ASGITransport(app=create_app(SandboxConfig(rate_limit=None)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v2/product_videos":
            return await self.inner.handle_async_request(request)
        await asyncio.sleep(0.001)
        page, size = int(request.url.params["page"]), int(request.url.params["page_size"])
        videos = [
            {"id": f"new{page}_{n}", "title": "t", "created_at": time.time()} for n in range(size)
        ]
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": {"videos": videos}})


@pytest.mark.anyio
async def test_a_deadline_cuts_short_a_listing_that_keeps_going(tmp_path: Path) -> None:
    """--max-duration/--until end a run whose first listing walk would go on for hours: the run
    stops at the deadline, nothing sent or stored, the rows left to send."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = make_config(catalog, "http://sandbox.test", deadline=time.time() + 0.5)
    started = time.monotonic()
    work = runner.run_async(config, transport=FreshListing(), handle_signals=False)
    summary = await asyncio.wait_for(work, 10)
    assert time.monotonic() - started < 5
    assert summary.stopped == "time limit reached"
    assert summary.requests_sent == 0
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*) FROM listing").fetchone() == (0,)


class EndlessAvatars(httpx.AsyncBaseTransport):
    """The sandbox, but its public avatars come a page at a time, slowly, each page full of
    avatars never listed before, and the listing never ends."""

    def __init__(self) -> None:
        self.inner = httpx.ASGITransport(app=create_app(SandboxConfig(rate_limit=None)))
        self.pages = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v2/avatars/public":
            return await self.inner.handle_async_request(request)
        self.pages += 1
        await asyncio.sleep(0.02)
        page = int(request.url.params["page"])
        avatars = [{"id": page * 1000 + n, "name": "a", "aspect_ratio": 0} for n in range(100)]
        return httpx.Response(200, json={"code": 0, "msg": "ok", "data": {"avatars": avatars}})


@pytest.mark.anyio
async def test_a_deadline_cuts_short_a_look_up_list_that_keeps_going(
    tmp_path: Path, private_cache: Path
) -> None:
    """--max-duration/--until end a run whose avatar list is read slowly page after page without
    end: the run stops at the deadline, nothing sent, no row refused on a list read in part, and
    nothing of the list cached."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = make_config(catalog, "http://sandbox.test", deadline=time.time() + 0.5)
    server = EndlessAvatars()
    started = time.monotonic()
    work = runner.run_async(config, transport=server, handle_signals=False)
    summary = await asyncio.wait_for(work, 10)
    assert time.monotonic() - started < 5
    assert server.pages > 1
    assert summary.stopped == "time limit reached"
    assert summary.requests_sent == 0
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert set(read_results(config.results)["status"]) == {"not_attempted"}
    assert not list(private_cache.rglob("avatars.json"))


class UndocumentedCode:
    """Creates go through (the sandbox records and charges them) but are answered with a code
    the reference does not document; the creates the sandbox received are counted."""

    def __init__(self) -> None:
        self.creates = 0

    def __call__(self, method: str, path: str, query: dict[str, str], body: bytes) -> Any:
        if path != "/v2/create_video_from_product":
            return None
        self.creates += 1
        answer = {"code": 50001, "msg": "weird", "data": None}
        return 200, "application/json", json.dumps(answer).encode()


def test_an_undocumented_code_is_looked_up_not_failed_and_never_paid_twice(
    tmp_path: Path,
) -> None:
    """A create answered 50001 was in fact accepted: the row ends submitted from the listing,
    sent once; a later run and a retry send nothing."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    rewrite = UndocumentedCode()
    server = RewritingSandbox(rewrite)
    config = make_config(catalog, "http://sandbox.test")
    summary = runner.run(config, transport=server.transport())
    assert list(read_results(config.results)["status"]) == ["submitted", "submitted"]
    assert summary.exit_code == ExitCode.OK
    assert rewrite.creates == 2
    again = runner.run(config, transport=server.transport())
    assert again.requests_sent == 0
    assert set(read_results(config.results)["status"]) == {"already_submitted"}
    assert rewrite.creates == 2


def test_a_failed_row_whose_tag_is_listed_is_submitted_not_reported_failed(
    tmp_path: Path,
) -> None:
    """A row an older version recorded failed for good (an undocumented code) while the account
    rendered it: the next run finds its tag in the listing and reports it, unsent."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    rewrite = UndocumentedCode()
    server = RewritingSandbox(rewrite)
    config = make_config(catalog, "http://sandbox.test")
    runner.run(config, transport=server.transport())
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # what older versions recorded
        db.execute(
            "UPDATE jobs SET status = 'failed', permanent = 1, code = 50001, video_id = NULL"
        )
    summary = runner.run(config, transport=server.transport())
    assert summary.requests_sent == 0
    assert set(read_results(config.results)["status"]) == {"already_submitted"}
    assert summary.exit_code == ExitCode.OK
    assert rewrite.creates == 2


@pytest.mark.parametrize(
    "sandbox_url", [{"fail_rate": 0.6, "seed": 1}, {"fail_rate": 1.0}], indirect=True
)
def test_the_summary_counts_what_the_results_file_and_the_state_say(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The summary's counts (taken while the results file is written) are the results file's
    statuses, its failed, unknown and invalid rows by code or status, and the state's count."""
    rows = with_an_invalid_and_a_duplicate(simple_rows(8))
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    config, summary = run_one_at_a_time(catalog, sandbox_url, attempts=2)
    results = read_results(config.results)
    coded = results[results["status"].isin(["failed", "unknown", "invalid"])]
    by_code = coded["code"].where(coded["code"] != "", coded["status"])
    assert summary.statuses == dict(sorted(results["status"].value_counts().items()))
    assert summary.codes == dict(sorted(by_code.value_counts().items()))
    assert {"invalid", "duplicate"} <= set(summary.statuses)
    assert set(summary.statuses) & {"failed", "unknown"}
    with StateStore(config.state) as state:
        (run_id,) = state._db.execute("SELECT max(id) FROM runs").fetchone()
        counted = state.count_rows(run_id)
    assert [list(each.items()) for each in counted] == [
        list(summary.statuses.items()),
        list(summary.codes.items()),
    ]


@pytest.mark.parametrize(
    "sandbox_url",
    [{"stall_rate": 0.3, "stall_seconds": 1.0, "reset_rate": 0.2, "seed": 11}],
    indirect=True,
)
def test_lost_answers_are_reconciled_not_paid_twice(tmp_path: Path, sandbox_url: str) -> None:
    """Commit-then-stall and resets: every row accepted exactly once, none lost."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(15))
    config = replace(
        make_config(catalog, sandbox_url),
        timeouts=Timeouts(connect=2, read=0.5),
        retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05),
    )
    summary = runner.run(config)
    report = submissions(sandbox_url)
    products = [s["product_id"] for s in report["submissions"]]
    assert report["counts"]["faulted"]["stall"] > 0
    assert report["counts"]["faulted"]["reset"] > 0
    assert sorted(products) == sorted(product_ids(15))  # once each: no double charge
    results = read_results(config.results)
    assert set(results["status"]) == {"submitted"}
    assert summary.exit_code == ExitCode.OK


@pytest.mark.parametrize(
    "sandbox_url",
    [{"stall_rate": 1.0, "stall_seconds": 1.0, "listing_title": "product-name"}],
    indirect=True,
)
def test_resubmit_unknown_sends_an_unknown_row_once_a_run(tmp_path: Path, sandbox_url: str) -> None:
    """--resubmit-unknown where every answer is lost and the listing carries no tags: the
    unknown row is sent once again and ends unknown again. Its resend's lost answer was given
    up on too, and the row sent a third time: paid three times in two runs."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = replace(
        make_config(catalog, sandbox_url),
        timeouts=Timeouts(connect=2, read=0.3),
        retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.02),
    )
    assert runner.run(config).exit_code == ExitCode.ROWS_FAILED
    assert len(submissions(sandbox_url)["submissions"]) == 2
    again = runner.run(replace(config, resubmit_unknown=True))
    assert again.exit_code == ExitCode.ROWS_FAILED
    assert sorted(
        Counter(s["product_id"] for s in submissions(sandbox_url)["submissions"]).values()
    ) == [2, 2]
    assert list(read_results(config.results)["status"]) == ["unknown", "unknown"]


@pytest.mark.parametrize("sandbox_url", [{"listing_title": "product-name"}], indirect=True)
def test_a_results_file_another_ledger_paid_for_stops_a_run_before_sending(
    tmp_path: Path, sandbox_url: str, postgres_url: str
) -> None:
    """The listing shows product names, and a run from another ledger (a rotated key, another
    --state or HOME) finds the results file naming videos the account lists that it does not
    know: exit 2, nothing sent, saying which ledger to use (every row was paid again, exit
    0); so does a shared PostgreSQL ledger's, and a file saved in a code page, which is not
    read as results (both were let through). The ledger that wrote the file then sends
    nothing either."""
    rows = [{**row, "note": "Café crème"} for row in simple_rows(3)]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    first = make_config(catalog, sandbox_url, state=tmp_path / "first.db")
    assert runner.run(first).exit_code == ExitCode.OK
    other = runner.run(make_config(catalog, sandbox_url, state=tmp_path / "other.db"))
    assert other.exit_code == ExitCode.USAGE
    shared = runner.run(make_config(catalog, sandbox_url, state=DatabaseURL(postgres_url)))
    assert shared.exit_code == ExitCode.USAGE  # a fleet's first run, too
    # Saved by Excel's "CSV (Comma delimited)": not UTF-8, so not read as results; its ids are.
    results = first.results
    assert isinstance(results, Path)
    results.write_bytes(results.read_text(encoding="utf-8-sig").encode("cp1252"))
    saved = runner.run(make_config(catalog, sandbox_url, state=tmp_path / "third.db"))
    assert saved.exit_code == ExitCode.USAGE
    assert len(submissions(sandbox_url)["submissions"]) == 3
    again = runner.run(first)
    assert again.exit_code == ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 3


def test_a_results_file_of_another_account_does_not_stop_a_run(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Videos the results file names that the account does not list (the embedded sandbox's,
    another account's) are not another ledger's of this account: the run sends its rows."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = make_config(catalog, sandbox_url, state=tmp_path / "first.db")
    assert runner.run(config).exit_code == ExitCode.OK
    httpx.post(f"{sandbox_url}/_sandbox/reset").raise_for_status()
    fresh = runner.run(make_config(catalog, sandbox_url, state=tmp_path / "other.db"))
    assert fresh.exit_code == ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 2


def test_a_language_tag_read_otherwise_now_keeps_the_job_sent_as_read_before(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A row whose `zh-yue` earlier versions sent as Mandarin (`chinese`, as a row saying
    chinese sends) reads as Cantonese now: its job is found by that earlier reading, and it
    is not paid for again; a new row with it is sent as Cantonese."""
    rows = simple_rows(2)
    catalog = write_catalog(tmp_path / "catalog.csv", [{**rows[0], "language": "chinese"}])
    assert runner.run(make_config(catalog, sandbox_url)).requests_sent == 1
    write_catalog(catalog, [{**row, "language": "zh-yue"} for row in rows])
    again = runner.run(make_config(catalog, sandbox_url))
    assert again.requests_sent == 1
    assert list(read_results(catalog.with_suffix(".results.csv"))["status"]) == [
        "already_submitted",
        "submitted",
    ]
    sent = submissions(sandbox_url)["submissions"]
    assert [entry["payload"]["script"]["language"] for entry in sent] == ["chinese", "cantonese"]


def test_max_videos_caps_credits_and_leaves_the_rest_not_attempted(
    tmp_path: Path, sandbox_url: str
) -> None:
    """--max-videos 3 spends three credits; the rest go next time."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(8))
    summary = runner.run(make_config(catalog, sandbox_url, max_videos=3))
    statuses = list(read_results(catalog.with_suffix(".results.csv"))["status"])
    assert len(submissions(sandbox_url)["submissions"]) == 3
    assert statuses.count("submitted") == 3
    assert statuses.count("not_attempted") == 5
    assert summary.exit_code == ExitCode.ROWS_FAILED
    again = runner.run(make_config(catalog, sandbox_url))
    assert again.exit_code == ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 8


@pytest.mark.parametrize("sandbox_url", [{"commit_then_error_rate": 1.0}], indirect=True)
def test_a_lost_answer_counts_against_max_videos_until_it_is_settled(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Every create is made, then answered 50000 or 5xx: under --max-videos 1 the first may be
    a paid video, so no second request leaves while it is not proven absent."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    summary = runner.run(make_config(catalog, sandbox_url, max_videos=1))
    statuses = list(read_results(catalog.with_suffix(".results.csv"))["status"])
    assert len(submissions(sandbox_url)["submissions"]) == 1
    assert statuses[0] in ("submitted", "unknown")  # as far as the listing could tell
    assert statuses[1:] == ["not_attempted", "not_attempted"]
    assert summary.exit_code == ExitCode.ROWS_FAILED


def test_a_stop_that_leaves_lost_answers_unknown_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """--max-videos reached with answers still lost (every create answered 502 after the
    commit): the rows left unknown are named in a warning, and the next run settles them first
    (it was silent)."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(4))
    sandbox = RewritingSandbox(every_create_answered(502, "text/html", b"<html>bad</html>"))
    config = replace(make_config(catalog, "http://sandbox.test", max_videos=2), concurrency=2)
    summary = runner.run(config, transport=sandbox.transport())
    unknown = list(read_results(config.results)["status"]).count("unknown")
    assert summary.stopped == "--max-videos 2 reached"
    assert unknown >= 1
    assert (
        f"{unknown} row(s) end unknown for now: the run stopped (--max-videos 2 reached) before "
        "their lost answers were looked up" in caplog.text
    )
    again = runner.run(replace(config, max_videos=None), transport=sandbox.transport())
    assert list(read_results(config.results)["status"]).count("unknown") == 0
    assert again.requests_sent == 2  # the two rows never sent; the lost ones were found


def test_a_second_run_on_the_same_state_is_refused(tmp_path: Path) -> None:
    """The lock keeps overlapping cron runs off one state database; a host program's second
    run on it is told the holder is in its own process, not given its own pid."""
    holder = StateStore(tmp_path / "s.db")
    holder.lock()
    try:
        with pytest.raises(LockedError, match=r"in use by a running jogg-batch \(another run in "):
            StateStore(tmp_path / "s.db").lock()
    finally:
        holder.close()
    StateStore(tmp_path / "s.db").lock()  # released on close


def test_permanent_failures_are_not_resent_unless_asked(tmp_path: Path, sandbox_url: str) -> None:
    """A 10104 row stays failed on the next run; --retry-permanent sends it again."""
    rows = simple_rows(2)
    rows[1]["product_id"] = "bm90LWEtcHJvZHVjdA"  # not a product the sandbox knows
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    first = runner.run(make_config(catalog, sandbox_url))
    second = runner.run(make_config(catalog, sandbox_url))
    results = read_results(catalog.with_suffix(".results.csv"))
    assert first.exit_code == second.exit_code == ExitCode.ROWS_FAILED
    assert list(results["status"]) == ["already_submitted", "failed"]
    assert results["code"][1] == "10104"
    assert (second.requests_sent, second.plan.failed_permanent) == (0, 1)
    third = runner.run(make_config(catalog, sandbox_url, retry_permanent=True))
    assert third.requests_sent == 1
    assert submissions(sandbox_url)["counts"]["rejected"] == {"10104": 2}


def test_force_renders_submitted_rows_again_under_a_new_tag(
    tmp_path: Path, sandbox_url: str
) -> None:
    """--force pays again on purpose, and the new render has its own tag."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    runner.run(make_config(catalog, sandbox_url))
    forced = runner.run(make_config(catalog, sandbox_url, force=True))
    names = [s["name"] for s in submissions(sandbox_url)["submissions"]]
    assert (forced.plan.forced, forced.requests_sent) == (2, 2)
    assert len(names) == len(set(names)) == 4


def test_a_deadline_in_the_past_sends_nothing(tmp_path: Path, sandbox_url: str) -> None:
    """--until/--max-duration: once the deadline passes, the rest is not_attempted."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    summary = runner.run(make_config(catalog, sandbox_url, deadline=time.time() - 1))
    assert summary.stopped == "time limit reached"
    assert submissions(sandbox_url)["submissions"] == []
    assert set(read_results(catalog.with_suffix(".results.csv"))["status"]) == {"not_attempted"}


def test_duplicates_across_catalog_batches_point_at_the_first_row(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Identical rows far apart (different read batches) are still one job."""
    rows = simple_rows(3)
    rows += [dict(rows[0], sku="again-0"), dict(rows[2], sku="again-2")]
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    settings = tmp_path / "small-batches.toml"
    settings.write_text("[catalog]\nbatch_rows = 2\n")
    cli = Overrides(config_path=settings, base_url=sandbox_url, rate_limit="600/min")
    summary = runner.run(build_run_config(catalog, cli, api_key=Secret("sk-sandbox")))
    results = read_results(catalog.with_suffix(".results.csv"))
    assert len(submissions(sandbox_url)["submissions"]) == 3
    assert summary.plan.duplicate == 2
    assert list(results["message"])[3:] == ["same request as row 1", "same request as row 3"]


def test_rows_left_behind_are_sent_even_when_planned_after_new_ones(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job an earlier run left undone is sent though its row comes late in a big catalog."""
    rows = simple_rows(30)
    catalog = write_catalog(tmp_path / "catalog.csv", rows[-1:])
    runner.run(make_config(catalog, sandbox_url, deadline=time.time() - 1))  # left not_attempted
    monkeypatch.setattr(planner, "PLAN_SLICE", 2)  # many slices, the old job in the last one
    write_catalog(catalog, rows)
    summary = runner.run(make_config(catalog, sandbox_url))
    assert summary.exit_code == ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 30


class RefusingForever(httpx.AsyncBaseTransport):
    """The sandbox in-process, but every create is a 429 asking to wait 10**9 seconds."""

    def __init__(self) -> None:
        self.inner = httpx.ASGITransport(app=create_app(SandboxConfig(rate_limit=None)))
        self.creates = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/create_video_from_product":
            self.creates += 1
            body = {"code": 429, "msg": "Rate limit exceeded", "data": None}
            return httpx.Response(429, json=body, headers={"retry-after": "1e9"})
        return await self.inner.handle_async_request(request)


async def run_refused(config: RunConfig, transport: RefusingForever) -> runner.RunSummary:
    """The run, given 10 s to end (it waited 10**9 s before the deadline could cut waits)."""
    work = runner.run_async(config, transport=transport, handle_signals=True)
    return await asyncio.wait_for(work, 10)


@pytest.mark.anyio
async def test_a_deadline_cuts_short_a_servers_endless_retry_after(tmp_path: Path) -> None:
    """--max-duration ends a run held by Retry-After: 1e9; unsent rows are not_attempted."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    transport = RefusingForever()
    config = make_config(catalog, "http://sandbox", deadline=time.time() + 0.5)
    started = time.monotonic()
    summary = await run_refused(config, transport)
    assert time.monotonic() - started < 5
    assert transport.creates >= 1
    assert summary.stopped == "time limit reached"
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert set(read_results(catalog.with_suffix(".results.csv"))["status"]) == {"not_attempted"}


@pytest.mark.anyio
async def test_a_signal_cuts_short_every_wait_and_counts_only_requests_on_the_wire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM while every job waits out a 429: the run ends at once with 143, and says that no
    request is in flight."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    transport = RefusingForever()
    config = make_config(catalog, "http://sandbox")
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        summary = await run_refused(config, transport)
    assert time.monotonic() - started < 5
    assert summary.exit_code == ExitCode.TERMINATED
    assert "stopping: no request is in flight" in caplog.text
    assert set(read_results(catalog.with_suffix(".results.csv"))["status"]) == {"not_attempted"}


@pytest.mark.anyio
async def test_a_signal_at_the_runs_very_end_is_not_lost(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM that lands after the loop's last turn, as the run ends: asyncio's handler only
    wrote it to the loop's wakeup pipe, which nobody read again, and the run exited 0 as if no
    signal had come. It is the signal's exit."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    closed = JoggClient.__aexit__
    clients = []  # the account's check before the run has one, the run the last

    async def then_signalled(self: Any, *exc: Any) -> None:
        await closed(self, *exc)
        clients.append(self)
        if len(clients) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # no await after it: the loop does not turn

    monkeypatch.setattr(JoggClient, "__aexit__", then_signalled)
    summary = await runner.run_async(make_config(catalog, sandbox_url), handle_signals=True)
    assert summary.requests_sent == 2
    assert summary.exit_code == ExitCode.TERMINATED


class SlowListing(RefusingForever):
    """The sandbox in-process, but each page of the video listing takes a minute."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/product_videos":
            await asyncio.sleep(60)
        return await super().handle_async_request(request)


@pytest.mark.anyio
async def test_a_signal_while_the_listing_is_read_stops_the_run_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM while the account's listing is read, before anything is sent: the walk stops at
    once (not after the grace period for requests in flight, of which there are none), 143."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(3))
    config = replace(make_config(catalog, "http://sandbox"), shutdown_grace=30.0)
    asyncio.get_running_loop().call_later(0.5, os.kill, os.getpid(), signal.SIGTERM)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        summary = await run_refused(config, SlowListing())
    assert time.monotonic() - started < 5
    assert summary.exit_code == ExitCode.TERMINATED
    assert summary.requests_sent == 0
    assert "in flight" not in caplog.text.replace("no request is in flight", "")


def replace_catalog_reversed(catalog: Path) -> None:
    """Another export lands on the catalog's name: the same rows, last first."""
    lines = catalog.read_text().splitlines(keepends=True)
    staged = catalog.with_suffix(".new")
    staged.write_text(lines[0] + "".join(reversed(lines[1:])))
    os.replace(staged, catalog)


def append_a_row(catalog: Path) -> None:
    with catalog.open("a") as handle:
        handle.write(f"SKU99,{product_ids(6)[5]},Late,15\n")


def move_away(catalog: Path) -> None:
    catalog.rename(catalog.with_name("archived.csv"))


@pytest.mark.parametrize("change", [replace_catalog_reversed, append_a_row, move_away])
def test_a_catalog_changed_during_the_run_is_never_given_other_rows_outcomes(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    """Replaced, edited or moved once sending began: the results file is not written from it
    (exit 7, what was sent kept), and a run on the catalog as it is now sends nothing again
    and gives every row its own video."""
    rows = simple_rows(5)
    catalog = write_catalog(tmp_path / "catalog.csv", rows)
    changed: list[bool] = []

    def change_at_first_create(method: str, path: str, *_: object) -> None:
        if path == "/v2/create_video_from_product" and not changed:
            change(catalog)
            changed.append(True)

    sandbox = RewritingSandbox(change_at_first_create)
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    summary = runner.run(config, transport=sandbox.transport())
    assert changed
    assert summary.exit_code == ExitCode.LOCAL_IO
    assert 1 <= summary.requests_sent <= 5  # those that left before the change was seen
    assert not (tmp_path / "catalog.results.csv").exists()

    now = catalog if catalog.exists() else catalog.with_name("archived.csv")
    again = runner.run(replace(config, catalog=now), transport=sandbox.transport())
    assert summary.requests_sent + again.requests_sent == (6 if change is append_a_row else 5)

    async def accepted() -> dict[str, str]:
        async with httpx.AsyncClient(transport=sandbox.transport()) as client:
            answer = await client.get("http://sandbox.test/_sandbox/submissions")
        return {s["video_id"]: s["product_id"] for s in answer.json()["submissions"]}

    product_of = asyncio.run(accepted())
    results = read_results(config.results)
    assert [product_of[video] for video in results["video_id"]] == list(results["product_id"])
    assert set(results["status"]) <= {"already_submitted", "submitted"}


def test_rows_cut_from_the_catalog_while_it_is_sent_are_not_sent(tmp_path: Path) -> None:
    """A catalog cut to its first rows while the run paces its requests: no new request leaves
    once the change is seen (within a second, not at the next results write), exit 7, and a
    run on the file as it is now has nothing more to send."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(12))
    cut: list[bool] = []

    def cut_at_first_create(method: str, path: str, *_: object) -> None:
        if path == "/v2/create_video_from_product" and not cut:
            staged = catalog.with_suffix(".new")
            staged.write_text("".join(catalog.read_text().splitlines(keepends=True)[:2]))
            os.replace(staged, catalog)
            cut.append(True)

    sandbox = RewritingSandbox(cut_at_first_create)
    config = replace(make_config(catalog, "http://sandbox.test", rate="4/s"), concurrency=1)
    summary = runner.run(config, transport=sandbox.transport())

    assert cut
    assert summary.exit_code == ExitCode.LOCAL_IO
    assert summary.requests_sent < 12  # all twelve would take three seconds
    again = runner.run(config, transport=sandbox.transport())
    assert (again.requests_sent, again.plan.already_submitted) == (0, 1)


def test_a_state_deleted_under_the_run_stops_its_sending(tmp_path: Path) -> None:
    """A clean-up script deletes the state while the run paces its requests: what it records
    from then on would be lost to the next run (which would pay for it again), and its lock
    keeps no other run out. No request leaves once that is seen (within a second), exit 7."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(12))
    deleted: list[bool] = []
    config = replace(make_config(catalog, "http://sandbox.test", rate="4/s"), concurrency=1)
    assert isinstance(config.state, Path)
    state = config.state

    def delete_at_first_create(method: str, path: str, *_: object) -> None:
        if path == "/v2/create_video_from_product" and not deleted:
            for part in state.parent.glob(state.name + "*"):
                part.unlink()
            deleted.append(True)

    summary = runner.run(config, transport=RewritingSandbox(delete_at_first_create).transport())
    assert deleted
    assert summary.exit_code == ExitCode.LOCAL_IO
    assert summary.requests_sent < 12  # all twelve would take three seconds
    assert summary.stopped == "the state was deleted or replaced"


def test_jobs_a_worker_gives_back_below_the_scan_are_sent_in_the_same_run(
    tmp_path: Path, postgres_url: str
) -> None:
    """A second worker takes rows 3 and 4, then stops early and gives them back after this
    worker's scan has passed them: they are sent in this run, not left `not_attempted` in a
    run that ends `done`."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(8))
    config = make_config(catalog, "http://sandbox.test", state=DatabaseURL(postgres_url))
    other = StateStore(DatabaseURL(postgres_url))
    other.as_worker(60)
    held: list[int] = []
    creates: list[str] = []

    def join() -> int:  # the run of this worker: the same catalog and request defaults
        defaults = request_settings_to_json(config.catalog_options)
        return other.join_run(str(catalog), request_defaults=defaults)

    def second_worker(method: str, path: str, *_: object) -> None:
        if path != "/v2/create_video_from_product":
            return
        creates.append(path)
        if len(creates) == 1:  # this worker sends job 1 and holds 2: the other takes 3 and 4
            held.extend(job.id for job in other.claim_jobs(join(), 0, 2))
        elif len(creates) == 4:  # job 6: this worker's scan is past 4; the other stops
            other.leave_run(join(), str(catalog))

    sandbox = RewritingSandbox(second_worker)
    summary = runner.run(replace(config, concurrency=1), transport=sandbox.transport())
    other.close()

    assert held == [3, 4]
    assert summary.exit_code == ExitCode.OK
    assert set(read_results(config.results)["status"]) == {"submitted"}


@pytest.mark.parametrize("sent_first", [True, False])
def test_a_catalog_that_breaks_off_while_planning_stops_sending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent_first: bool
) -> None:
    """A catalog that cannot be read to its end once the run began (replaced, or a store's
    stream cut off after the structural pass read it whole): no further request leaves, what was
    planned is recorded, and the exit says whether anything was sent: 7 once sending began (the
    rows already paid are kept), else 2 with the results file left unwritten."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(6))
    created = threading.Event()
    read_catalog = catalog_module.read_catalog

    def breaking_off(path: Any, options: Any) -> Any:
        batches = read_catalog(path, options)
        if sent_first:
            yield next(batches)
            assert created.wait(10)
        raise CatalogError(f"{path}: cannot read it as CSV: the connection was reset")

    def note_create(method: str, path: str, *_: object) -> None:
        if path == "/v2/create_video_from_product":
            created.set()

    monkeypatch.setattr(catalog_module, "read_catalog", breaking_off)
    config = replace(make_config(catalog, "http://sandbox.test"), concurrency=1)
    config = replace(config, catalog_options=replace(config.catalog_options, batch_rows=2))
    summary = runner.run(config, transport=RewritingSandbox(note_create).transport())
    if sent_first:
        assert summary.exit_code == ExitCode.LOCAL_IO
        assert 1 <= summary.requests_sent <= 2  # the first batch's rows, no more
        assert read_results(config.results)["status"].tolist()[2:] == ["not_attempted"] * 4
    else:
        assert summary.exit_code == ExitCode.USAGE
        assert summary.requests_sent == 0
        assert not (tmp_path / "catalog.results.csv").exists()


def bad_gateway_on(path: str) -> Rewrite:
    def rewrite(method: str, at: str, query: dict[str, str], _: bytes) -> Any:
        return (502, "text/html", b"<html>bad gateway</html>") if at == path else None

    return rewrite


@pytest.mark.parametrize("path", ["/v2/user/whoami", "/v2/product_videos"])
def test_an_api_outage_before_the_first_post_is_not_an_account_error(
    tmp_path: Path, path: str
) -> None:
    """A gateway that fails the key check or the listing: nothing is sent, the rows stay
    not_attempted in a results file, and the exit is 1 (run again later), not 3 (fix the key)."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    server = RewritingSandbox(bad_gateway_on(path))
    config = replace(make_config(catalog, "http://sandbox.test"), offline=False)
    summary = runner.run(config, transport=server.transport())
    assert summary.exit_code == ExitCode.ROWS_FAILED
    assert summary.requests_sent == 0
    assert set(read_results(config.results)["status"]) == {"not_attempted"}


@pytest.mark.parametrize(("path", "code"), [("/v2/product_videos", 1), ("/v2/user/whoami", 3)])
def test_a_run_stopped_before_planning_leaves_the_last_results_file_as_it_was(
    tmp_path: Path, path: str, code: int
) -> None:
    """The API down or the key refused before any row is planned: the results file the last
    run wrote, with its video ids, is kept (this run knows no row's outcome), and the exit
    still says the run did nothing (1), or why (3)."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    server = RewritingSandbox(lambda *_: None)
    config = replace(make_config(catalog, "http://sandbox.test"), offline=False)
    assert runner.run(config, transport=server.transport()).exit_code == ExitCode.OK
    results = catalog.with_name("catalog.results.csv")
    before = results.read_bytes()
    refused = (401, "application/json", b'{"code": 10105, "msg": "invalid api key"}')
    server.rewrite = bad_gateway_on(path) if code == 1 else lambda *_: refused
    stopped = runner.run(config, transport=server.transport())
    assert (stopped.exit_code, stopped.requests_sent) == (code, 0)
    assert results.read_bytes() == before
    assert set(read_results(results)["status"]) == {"submitted"}


def test_a_ledger_connection_dropped_mid_run_ends_with_exit_7_not_a_traceback(
    tmp_path: Path, postgres_url: str
) -> None:
    """A PostgreSQL ledger whose connection is cut (a failover, a restart) after sending began:
    no further request; the run connects again to close itself and write a results file that
    shows what was paid, ends with exit 7, and the same command again sends only what was never
    accepted."""
    import psycopg

    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(6))
    creates: list[bool] = []

    def cut_at_third_create(method: str, path: str, *_: object) -> None:
        if path != "/v2/create_video_from_product":
            return
        creates.append(True)
        if len(creates) == 3:
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    sandbox = RewritingSandbox(cut_at_third_create)
    config = replace(
        make_config(catalog, "http://sandbox.test", state=state_location(postgres_url)),
        concurrency=1,
        claim_seconds=1.0,  # the dead connection's claims lapse quickly
    )
    summary = runner.run(config, transport=sandbox.transport())
    assert summary.exit_code == ExitCode.LOCAL_IO
    # Connected again to close the run: the results file is this run's, and says what was paid.
    assert summary.results_written
    cut = read_results(config.results)
    assert list(cut["status"]) == ["submitted"] * 2 + ["unknown"] + ["not_attempted"] * 3
    assert cut["video_id"][:2].notna().all()
    with psycopg.connect(postgres_url) as admin:
        closed = admin.execute("SELECT outcome FROM runs WHERE finished_at IS NOT NULL").fetchall()
    assert closed == [("the state could not be written or read",)]
    again = runner.run(config, transport=sandbox.transport())
    assert again.exit_code == ExitCode.OK
    assert len(creates) == 6  # every row accepted once: the cut one looked up, not resent
    assert set(read_results(config.results)["status"]) <= {"submitted", "already_submitted"}


def test_a_store_failing_to_take_the_results_is_named_as_the_results_not_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store's error writing the results file (its bucket deleted mid-run) names the results
    file: it was reported as "reading the catalog again", sending the user to the wrong file."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(2))
    config = make_config(catalog, "http://sandbox.test")

    def bucket_gone(config: RunConfig, *_: object) -> None:
        raise CatalogError(f"{config.results}: no such bucket; check its name")

    monkeypatch.setattr(runner, "_write_results", bucket_gone)
    summary = runner.run(config, transport=RewritingSandbox(lambda *_: None).transport())
    assert summary.exit_code == ExitCode.LOCAL_IO
    said = f"writing the results file: {config.results}: no such bucket"
    assert any(said in record.getMessage() for record in caplog.records), caplog.text
    assert "reading the catalog again" not in caplog.text


def test_a_results_file_left_mid_run_is_named_as_this_runs_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The final results write failing after the run wrote the file mid-run: the run says the
    file is its own as of a time: rows settled since, some paid, show as they were then."""
    catalog = write_catalog(tmp_path / "catalog.csv", simple_rows(8))
    config = replace(
        make_config(catalog, "http://sandbox.test", rate="20/s"), results_interval=0.05
    )
    write = runner._write_results

    def only_snapshots(config: RunConfig, *rest: Any) -> Any:
        if threading.current_thread() is threading.main_thread():  # the final write
            raise CatalogError(f"{config.results}: no space left on device")
        return write(config, *rest)

    monkeypatch.setattr(runner, "_write_results", only_snapshots)
    summary = runner.run(config, transport=RewritingSandbox(lambda *_: None).transport())
    assert (summary.exit_code, summary.results_written) == (ExitCode.LOCAL_IO, False)
    assert len(read_results(config.results)) == 8
    assert f"the results file {config.results} is as this run wrote it at " in caplog.text


# The same words as two tools write them: composed (NFC) and decomposed (NFD, a Mac tool).
CAFE_NFC, CAFE_NFD = "Caf\u00e9 cr\u00e8me", "Cafe\u0301 cre\u0300me"


def script_catalog(path: Path, cafe: str, line_end: str, rows: int = 3) -> Path:
    """Sandbox products, each with a two-line script and a name in `cafe`'s spelling, the
    script's lines ended by `line_end` inside its quoted cell (CRLF: FTP's ASCII mode)."""
    lines = [
        f'{pid},15,{cafe} {n},"{cafe}{line_end}second line {n}"\n'
        for n, pid in enumerate(product_ids(rows))
    ]
    path.write_bytes(("product_id,length,video_name,override_script\n" + "".join(lines)).encode())
    return path


@pytest.mark.parametrize(("cafe", "line_end"), [(CAFE_NFD, "\n"), (CAFE_NFC, "\r\n"),
                                                 (CAFE_NFD, "\r")])  # fmt: skip
def test_the_same_catalog_saved_with_other_text_bytes_is_never_paid_again(
    tmp_path: Path, sandbox_url: str, cafe: str, line_end: str
) -> None:
    """The catalog re-saved with NFD text, or CRLF (or CR) inside its multi-line cells, reads
    the same: no new POST, every row already submitted; what was sent is NFC with LF."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFC, "\n")
    runner.run(make_config(catalog, sandbox_url))
    script_catalog(catalog, cafe, line_end)

    summary = runner.run(make_config(catalog, sandbox_url))

    sent = submissions(sandbox_url)["submissions"]
    assert (len(sent), summary.requests_sent, summary.plan.already_submitted) == (3, 0, 3)
    scripts = sorted(s["payload"]["override_script"] for s in sent)
    assert scripts == [f"{CAFE_NFC}\nsecond line {n}" for n in range(3)]


def test_rows_written_otherwise_in_one_catalog_are_one_request(
    tmp_path: Path, sandbox_url: str
) -> None:
    """An NFC row and the same row in NFD with CRLF, in one catalog: one POST, the second row
    its duplicate."""
    (pid,) = product_ids(1)
    catalog = tmp_path / "catalog.csv"
    catalog.write_bytes(
        f'product_id,override_script\n{pid},"{CAFE_NFC}\nx"\n{pid},"{CAFE_NFD}\r\nx"\n'.encode()
    )
    summary = runner.run(make_config(catalog, sandbox_url))
    assert (summary.requests_sent, summary.plan.duplicate) == (1, 1)
    assert list(read_results(catalog.with_suffix(".results.csv"))["status"]) == [
        "submitted",
        "duplicate",
    ]


def recorded_as_earlier_versions_did(config: RunConfig, rows: list[int], status: str) -> None:
    """The jobs of these rows of a `script_catalog` in NFD with CRLF, rewritten as versions
    that hashed text as the file wrote it recorded them: fingerprint, fields and tag of the
    raw text; and given `status`."""
    (batch,) = catalog_module.read_catalog(config.catalog, config.catalog_options)
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        for number in rows:
            row = batch.rows[number - 1]
            assert row.fields is not None
            name, script = f"{CAFE_NFD} {number - 1}", f"{CAFE_NFD}\r\nsecond line {number - 1}"
            fields = row.fields._replace(name=name, override_script=script)
            old = payload.fingerprint(fields)
            assert old != row.fingerprint
            db.execute(  # those versions knew no aliases
                "DELETE FROM fingerprint_aliases WHERE job_id IN "
                "(SELECT id FROM jobs WHERE fingerprint = ?)",
                (row.fingerprint,),
            )
            db.execute(
                "UPDATE jobs SET fingerprint = ?, fields = ?, tag = ?, status = ?, permanent = 0 "
                "WHERE fingerprint = ?",
                (
                    old,
                    payload.fields_to_json(fields),
                    planner.tag_for(old),
                    status,
                    row.fingerprint,
                ),
            )


def forget_this_versions_renders(config: RunConfig, url: str) -> None:
    """The account's renders, and the state's copy of its listing, emptied: the account as the
    earlier version `recorded_as_earlier_versions_did` stands for left it."""
    httpx.post(f"{url}/_sandbox/reset").raise_for_status()
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        db.execute("DELETE FROM listing")
    db.close()


def rendered_as_earlier_versions_did(catalog: Path, url: str) -> None:
    """POSTs each row of a `script_catalog` in NFD with CRLF as versions that hashed text as
    the file wrote it sent them: the raw text, tagged with its fingerprint's tag."""
    config = make_config(catalog, url)
    (batch,) = catalog_module.read_catalog(config.catalog, config.catalog_options)
    for number, row in enumerate(batch.rows):
        assert row.fields is not None
        assert row.fields.product_id is not None
        name, script = f"{CAFE_NFD} {number}", f"{CAFE_NFD}\r\nsecond line {number}"
        fields = row.fields._replace(name=name, override_script=script)
        request = payload.build_request(fields, row.fields.product_id)
        body = request.to_body(planner.tag_for(payload.fingerprint(fields)))
        answer = httpx.post(
            f"{url}/v2/create_video_from_product", json=body, headers={"x-api-key": "sk-sandbox"}
        )
        assert answer.json()["code"] == 0, answer.text


def test_a_new_state_adopts_what_an_earlier_version_rendered_from_text_written_otherwise(
    tmp_path: Path, sandbox_url: str
) -> None:
    """An earlier version (which hashed NFD and CRLF text as written) sent the catalog, and its
    state was lost: a new state finds those renders in the account's listing by the tags that
    version gave them, and sends nothing again. `--force` still renders each row anew."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFD, "\r\n")
    rendered_as_earlier_versions_did(catalog, sandbox_url)

    summary = runner.run(make_config(catalog, sandbox_url))

    assert summary.requests_sent == 0
    assert len(submissions(sandbox_url)["submissions"]) == 3
    assert (
        list(read_results(catalog.with_suffix(".results.csv"))["status"])
        == ["already_submitted"] * 3
    )
    summary = runner.run(make_config(catalog, sandbox_url, force=True))
    assert summary.requests_sent == 3
    assert len(submissions(sandbox_url)["submissions"]) == 6


@pytest.mark.parametrize("sent_as", [CAFE_NFD + " ", CAFE_NFC + " "], ids=["first", "later"])
def test_a_padded_nfd_script_any_earlier_version_sent_is_not_paid_again(
    tmp_path: Path, sandbox_url: str, sent_as: str
) -> None:
    """A script in NFD with a space at its end: the first versions sent it as written, later
    ones in NFC with the space. A job of either is found; nothing is sent again."""
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f'product_id,override_script\n{product_ids(1)[0]},"{CAFE_NFD} "\n')
    config = make_config(catalog, sandbox_url)
    sent_by_an_earlier_version(config, lambda fields: fields._replace(override_script=sent_as))

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)


@pytest.mark.parametrize(
    ("written", "sent_before", "read"),
    [
        ("Line one\vLine two", None, "Line one\nLine two"),
        ("Line one\u2028Line two", None, "Line one\nLine two"),
        ("Line one\x85Line two", None, "Line one\nLine two"),
        ("Line one\u2029Line two", None, "Line one\nLine two"),
        ("'- Dimmable", None, "- Dimmable"),
        ("'@acme summer", None, "@acme summer"),
        ("\u202aSummer Sale\u202c", None, "Summer Sale"),
        ("\u2066Summer Sale\u2069", None, "Summer Sale"),
        ("Summer Sale\u00ad", None, "Summer Sale"),
        ("'@home' offers", "@home' offers", "'@home' offers"),
    ],
    ids=[
        "filemaker-vt", "u2028", "nel", "u2029", "guarded-dash", "guarded-at", "embedding",
        "isolate", "soft-hyphen", "quoted-at",
    ],
)  # fmt: skip
def test_text_other_tools_write_otherwise_is_no_other_request(
    tmp_path: Path, sandbox_url: str, written: str, sent_before: str | None, read: str
) -> None:
    """FileMaker writes a line break in a cell as a vertical tab, Word as U+2028 or U+2029,
    an EBCDIC export as NEL; a web tool's CSV export guards `- Dimmable` or `@acme` from
    spreadsheets with a `'`; a copy of mixed-direction text (Windows, Android, a browser)
    wraps it in direction embeddings or isolates, a word processor ends it with a soft hyphen.
    Sent as written, and the same rows exported again by another tool were new rows, paid
    again. Read as meant; what an earlier version sent (as written, or: a `'` before a leading
    `@` that a later `'` closes is a quote, kept now and dropped then) is found from either
    file."""
    pid = product_ids(1)[0]
    catalog = tmp_path / "tool.csv"
    catalog.write_text(f'product_id,override_script\n{pid},"{written}"\n', encoding="utf-8")
    config = make_config(catalog, sandbox_url)
    fields = sent_by_an_earlier_version(
        config, lambda fields: fields._replace(override_script=sent_before or written)
    )
    assert fields.override_script == read
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # not yet aliased by this version
        db.execute("DELETE FROM meta WHERE key LIKE 'aliased_as_asked%'")
    re_exported = tmp_path / "excel.csv"
    re_exported.write_text(f'product_id,override_script\n{pid},"{read}"\n', encoding="utf-8")

    for again in (re_exported, catalog):
        summary = runner.run(make_config(again, sandbox_url))
        assert (summary.requests_sent, summary.plan.already_submitted) == (0, 1)
    assert len(submissions(sandbox_url)["submissions"]) == 1


def test_text_a_re_save_lost_to_question_marks_is_refused_not_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Excel's "CSV (Comma delimited)" writes a `?` for each character its code page lacks: a
    catalog whose only such characters were an emoji or Hebrew is then ASCII, and each such
    row was a changed request, paid again, its avatar reading out question marks. Such a row
    is invalid, saying why; a row really changed is still sent."""
    pids = product_ids(3)
    header = "product_id,title,video_name,override_script\n"
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        header + f"{pids[0]},Summer Mug \u2600\ufe0f,{{title}} promo,\n"
        f"{pids[1]},Bottle,,\u05d1\u05e7\u05d1\u05d5\u05e7 \u05de\u05d9\u05dd\n"
        f"{pids[2]},Clock \U0001f570,{{title}},\n",
        encoding="utf-8",
    )
    assert runner.run(make_config(catalog, sandbox_url)).requests_sent == 3
    re_saved = tmp_path / "re-saved.csv"
    re_saved.write_text(
        header + f"{pids[0]},Summer Mug ??,{{title}} promo,\n"
        f"{pids[1]},Bottle,,????? ???\n"
        f"{pids[2]},Clock ?? new,{{title}},\n"
    )

    summary = runner.run(make_config(re_saved, sandbox_url))

    assert (summary.requests_sent, summary.plan.invalid, summary.plan.changed) == (1, 2, 1)
    assert summary.exit_code == ExitCode.ROWS_FAILED
    results = read_results(re_saved.with_suffix(".results.csv"))
    assert list(results["status"]) == ["invalid", "invalid", "submitted"]
    assert "video_name: 'Summer Mug ?? promo' is the text of this row's last request" in str(
        results["message"][0]
    )
    assert "'CSV UTF-8'" in str(results["message"][1])


def test_a_re_save_read_as_windows_1252_is_refused_and_an_emoji_edited_to_ascii_is_sent(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`Café` opened in Excel as Windows-1252 and saved is `CafÃ©`: one such character is no
    proof on its own (`NESCAFÉ®` reads so too), but against the row's last request it is,
    and the row is invalid, not paid again. `Which one ❓` edited to `Which one ?` is an edit:
    sent (it was refused as characters lost, for good)."""
    pids = product_ids(2)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        f"product_id,video_name\n{pids[0]},Café\n{pids[1]},Which one ❓\n", encoding="utf-8"
    )
    assert runner.run(make_config(catalog, sandbox_url)).requests_sent == 2
    catalog.write_text(
        f"product_id,video_name\n{pids[0]},CafÃ©\n{pids[1]},Which one ?\n", encoding="utf-8"
    )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.requests_sent, summary.plan.invalid) == (1, 1)
    results = read_results(catalog.with_suffix(".results.csv"))
    assert list(results["status"]) == ["invalid", "submitted"]
    assert "'CafÃ©' is the text of this row's last request ('Café') as UTF-8 read as" in str(
        results["message"][0]
    )


def test_a_re_save_that_lost_characters_and_a_skus_zeros_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Keyed by SKU, the Excel save that writes `?` for an emoji also drops a SKU's leading
    zeros (`00123` is `123`): the row's key has no job, and it was sent as new, a second
    video reading out a question mark. It is compared with the job of its key as written with
    zeros, and invalid; a row new indeed (`77`) is sent."""
    pids = product_ids(3)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        f"sku,product_id,video_name\n00123,{pids[0]},Stand \U0001f680\n"
        f"00124,{pids[1]},Mug \u2615\n",
        encoding="utf-8",
    )
    sku = replace(CatalogOptions(), row_key="sku")
    assert (
        runner.run(replace(make_config(catalog, sandbox_url), catalog_options=sku)).requests_sent
        == 2
    )
    re_saved = tmp_path / "re-saved.csv"
    re_saved.write_text(
        f"sku,product_id,video_name\n123,{pids[0]},Stand ?\n00124,{pids[1]},Mug ?\n"
        f"77,{pids[2]},Lamp ?\n"
    )

    summary = runner.run(replace(make_config(re_saved, sandbox_url), catalog_options=sku))

    assert (summary.requests_sent, summary.plan.invalid) == (1, 2)
    results = read_results(re_saved.with_suffix(".results.csv"))
    assert list(results["status"]) == ["invalid", "invalid", "submitted"]
    assert "'Stand ?' is the text of this row's last request ('Stand \U0001f680')" in str(
        results["message"][0]
    )


def test_an_upgrade_finds_the_jobs_recorded_under_the_raw_texts_fingerprint(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A state from a version that hashed NFD and CRLF text as written: its submitted rows stay
    already submitted (no POST), its failed row is retried as that same job, no new one."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFD, "\r\n")
    config = make_config(catalog, sandbox_url)
    runner.run(config)
    recorded_as_earlier_versions_did(config, [1, 2], "submitted")
    recorded_as_earlier_versions_did(config, [3], "failed")
    # The account and the state as that version left them: no render of this version's (whose
    # tags a job found under its earlier fingerprint is given, and would be adopted by).
    forget_this_versions_renders(config, sandbox_url)

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.plan.already_submitted, summary.plan.retry, summary.plan.new) == (2, 1, 0)
    sent = submissions(sandbox_url)["submissions"]
    assert len(sent) == 1
    assert sent[0]["payload"]["override_script"] == f"{CAFE_NFD}\r\nsecond line 2"
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*), min(status) FROM jobs").fetchone() == (3, "submitted")
    assert list(read_results(config.results)["status"]) == ["already_submitted"] * 2 + ["submitted"]


def test_a_row_with_a_failed_job_and_an_earlier_versions_submitted_one_is_not_paid_again(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A state holding a row's text twice (an earlier version paid for its NFC and its NFD
    file): the NFC job failed, the NFD one submitted; the row is the submitted job, unsent."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFD, "\r\n", rows=1)
    config = make_config(catalog, sandbox_url)
    runner.run(config)
    recorded_as_earlier_versions_did(config, [1], "submitted")
    (batch,) = catalog_module.read_catalog(config.catalog, config.catalog_options)
    (row,) = batch.rows
    assert row.fields is not None
    assert row.fingerprint is not None
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:
        db.execute(
            "INSERT INTO jobs (fingerprint, row_key, fields, tag, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'failed', 0, 0)",
            (row.fingerprint, row.key, payload.fields_to_json(row.fields), "nfc"),
        )

    summary = runner.run(make_config(catalog, sandbox_url))

    assert (summary.plan.already_submitted, summary.requests_sent) == (1, 0)
    assert len(submissions(sandbox_url)["submissions"]) == 1


def test_a_retry_of_an_earlier_versions_results_file_finds_its_jobs(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The results file of a version that hashed NFD and CRLF text as written, one row failed:
    retry sends that row's job again (one POST), as the run would, instead of refusing the file
    as changed since its run."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFD, "\r\n")
    config = make_config(catalog, sandbox_url)
    runner.run(config)
    recorded_as_earlier_versions_did(config, [1, 2], "submitted")
    recorded_as_earlier_versions_did(config, [3], "failed")
    forget_this_versions_renders(config, sandbox_url)  # as that version left them
    assert isinstance(config.results, Path)
    frame = read_results(config.results)
    frame.loc[2, "status"] = "failed"
    frame.to_csv(config.results, index=False)

    summary = rerun.rerun(replace(config, catalog=config.results))

    assert summary.exit_code == ExitCode.OK
    sent = submissions(sandbox_url)["submissions"]
    assert [s["payload"]["override_script"] for s in sent] == [f"{CAFE_NFD}\r\nsecond line 2"]
    assert list(read_results(config.results)["status"]) == ["submitted"] * 3


def test_an_upgraded_state_finds_its_jobs_when_the_file_comes_made_alike(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A state an earlier version wrote from NFD text with CRLF, then tonight's file already
    NFC with LF (nothing in it is made alike, so it has no earlier fingerprint to look under):
    its jobs are found by the alias their first planning here gave them; no POST, and the file
    as written then finds them too."""
    catalog = script_catalog(tmp_path / "catalog.csv", CAFE_NFD, "\r\n")
    config = make_config(catalog, sandbox_url)
    runner.run(config)
    recorded_as_earlier_versions_did(config, [1, 2, 3], "submitted")
    assert isinstance(config.state, Path)
    with sqlite3.connect(config.state) as db:  # as that version left it: no aliases given yet
        db.execute("DELETE FROM meta WHERE key LIKE 'aliased_as_asked%'")

    for cafe, line_end in ((CAFE_NFC, "\n"), (CAFE_NFD, "\r\n")):
        script_catalog(catalog, cafe, line_end)
        summary = runner.run(make_config(catalog, sandbox_url))
        assert (summary.requests_sent, summary.plan.already_submitted) == (0, 3)
    assert len(submissions(sandbox_url)["submissions"]) == 3
    with sqlite3.connect(config.state) as db:
        assert db.execute("SELECT count(*) FROM fingerprint_aliases").fetchone() == (3,)


def test_a_second_ledger_sending_for_the_same_account_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Two runs of one catalog at once, each with its own --state, each paid for every row:
    while one sends for the account on this machine, another ledger's run is refused (exit 4)
    before it sends anything; once the first is done, it runs."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    first = make_config(catalog, sandbox_url, state=tmp_path / "a.db")
    held = hold_account(first.base_url, first.api_key.reveal(), tmp_path / "a.db")
    refused = pytest.raises(LockedError, match=r"sending for this account \(pid \d+, ledger /")
    with held, refused:
        runner.run(make_config(catalog, sandbox_url, state=tmp_path / "b.db"))
    assert submissions(sandbox_url)["submissions"] == []
    summary = runner.run(make_config(catalog, sandbox_url, state=tmp_path / "b.db"))
    assert summary.requests_sent == 2


@pytest.mark.parametrize("sandbox_url", [{"api_keys": ("sk-sandbox", "sk-rotated")}], indirect=True)
def test_a_run_with_another_key_of_an_account_sending_is_refused(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A run sends for the account `whoami` names with one key; a run with another key of it
    (the key rotated while a cron run sends) had a sending lock of its own and sent at once,
    each paying for the rows they share: refused (exit 4) before it sends anything; `--offline`
    too, once a run with the key has noted its account."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = make_config(catalog, sandbox_url, state=tmp_path / "b.db", key="sk-rotated")
    account = account_id(config.base_url, "sandbox@example.com")
    sending = hold_account(config.base_url, "sk-sandbox", tmp_path / "a.db", account=account)
    with sending, pytest.raises(LockedError, match="sending for this account"):
        runner.run(config)
    assert submissions(sandbox_url)["submissions"] == []
    assert runner.run(config).requests_sent == 2
    sending = hold_account(config.base_url, "sk-sandbox", tmp_path / "a.db", account=account)
    with sending, pytest.raises(LockedError, match="sending for this account"):
        runner.run(replace(config, offline=True, results=tmp_path / "offline.csv"))


@pytest.mark.parametrize("sandbox_url", [{"api_keys": ("sk-sandbox", "sk-rotated")}], indirect=True)
def test_a_run_with_another_key_waits_for_a_run_of_the_account_cut_off(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A run of the account killed while sending with one key: a run with another key of it
    (rotated right after) waits out the settle period from that run's last request, as a run
    with the same key from another ledger does (it sent at once, and paid again for what
    was in flight)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = make_config(catalog, sandbox_url, state=tmp_path / "b.db", key="sk-rotated")
    account = account_id(config.base_url, "sandbox@example.com")
    folder = ledger_path(account_url(config.base_url), "sk-sandbox").parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{account}.sending.lock").write_text(f"pid 999999, ledger {tmp_path / 'a.db'}")
    (tmp_path / "a.db").write_bytes(b"")
    cut_off_at = (tmp_path / "a.db").stat().st_mtime
    assert runner.run(replace(config, settle_seconds=1.0)).requests_sent == 2
    sent = [float(entry["received_at"]) for entry in submissions(sandbox_url)["submissions"]]
    assert min(sent) >= cut_off_at + 1.0


def test_a_run_cut_off_on_another_ledger_is_waited_out_before_sending(
    tmp_path: Path, sandbox_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed while sending from ledger a.db leaves its holder in the account's sending
    lock. A run from a fresh b.db knows nothing of a.db's requests in flight, which may commit
    up to the settle period after a.db's last write: it sends nothing before then. A run that
    ends leaves when its last request left, and a run from a third ledger waits for that too
    (its listing then finds those videos: nothing sent again)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = replace(make_config(catalog, sandbox_url, state=tmp_path / "b.db"), settle_seconds=1.0)
    lock = ledger_path(account_url(config.base_url), config.api_key.reveal())
    lock = lock.with_suffix(".sending.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"pid 999999, ledger {tmp_path / 'a.db'}")
    (tmp_path / "a.db").write_bytes(b"")
    cut_off_at = (tmp_path / "a.db").stat().st_mtime
    assert runner.run(config).requests_sent == 2
    sent = [float(entry["received_at"]) for entry in submissions(sandbox_url)["submissions"]]
    assert min(sent) >= cut_off_at + 1.0
    assert "and this ledger does not record it; waiting" in caplog.text
    assert "attempt ended " in lock.read_text()
    caplog.clear()
    again = replace(config, state=tmp_path / "c.db", results=tmp_path / "again.csv")
    assert runner.run(again).requests_sent == 0
    assert "and this ledger does not record it; waiting" in caplog.text


@pytest.mark.parametrize("cut_off", ["a.db", "b.db"])
def test_a_cut_off_runs_ledger_deleted_since_is_waited_out_from_now(
    tmp_path: Path, sandbox_url: str, cut_off: str
) -> None:
    """A run killed while sending whose ledger was then deleted: its requests in flight may
    still commit, and no ledger knows them. Whether the next run sends from another ledger
    (`a.db` gone) or from a new one at the same path (`b.db` made anew), it waits the settle
    period from its start; it sent at once, and paid for those rows twice."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = replace(make_config(catalog, sandbox_url, state=tmp_path / "b.db"), settle_seconds=1.0)
    lock = ledger_path(account_url(config.base_url), config.api_key.reveal())
    lock = lock.with_suffix(".sending.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"pid 999999, ledger {tmp_path / cut_off}")
    started = time.time()
    assert runner.run(config).requests_sent == 2
    sent = [float(entry["received_at"]) for entry in submissions(sandbox_url)["submissions"]]
    assert min(sent) >= started + 1.0


def test_a_run_stopped_while_waiting_out_a_cut_off_run_leaves_it_for_the_next(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A run stopped (a signal, cron's timeout) while it waits out another ledger's cut-off
    run left the lock empty, and the next run sent at once, paying again for what the cut-off
    run's late commits held. The wait is left in the lock while it is not over: the next run,
    from the stopped run's own ledger, waits it out too."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = replace(make_config(catalog, sandbox_url, state=tmp_path / "b.db"), settle_seconds=60)
    lock = ledger_path(account_url(config.base_url), config.api_key.reveal())
    lock = lock.with_suffix(".sending.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"pid 999999, ledger {tmp_path / 'a.db'}")
    (tmp_path / "a.db").write_bytes(b"")
    cut_off_at = (tmp_path / "a.db").stat().st_mtime

    async def stopped_while_waiting() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(runner.run_async(config), 1.0)

    asyncio.run(stopped_while_waiting())
    assert submissions(sandbox_url)["submissions"] == []
    assert runner.run(replace(config, settle_seconds=2.0)).requests_sent == 2
    sent = [float(entry["received_at"]) for entry in submissions(sandbox_url)["submissions"]]
    assert min(sent) >= cut_off_at + 2.0


def test_a_run_that_ends_with_requests_unanswered_leaves_them_in_the_lock(
    tmp_path: Path,
) -> None:
    """A run stopped (a signal) with requests whose answers never came, which may still
    commit: the lock keeps its last request, and a run from another ledger waits for it; the
    lock was emptied, and that run sent those rows again at once."""
    url, key = "https://api.test", "sk-test"
    with hold_account(url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True) as hold:
        hold.sending(3, 7)
        hold.unsettled = True
    lock = ledger_path(account_url(url), key).with_suffix(".sending.lock")
    assert "attempt 3.7.ab12 " in lock.read_text()
    with hold_account(url, key, tmp_path / "b.db", knows=lambda a: False) as other:
        assert other.last_write is not None
    with hold_account(url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True) as own:
        assert own.last_write is None  # its own ledger knows them: it settles them itself


def test_a_run_from_another_ledger_waits_until_a_finished_runs_requests_are_listed(
    tmp_path: Path,
) -> None:
    """A run that ended cleanly leaves when its last request left: the listing may show its
    videos only up to the settle period later, so a run from another ledger (a new --state,
    the ledger deleted) right after it waits until then (it sent at once, and paid again for
    what a lagging listing did not show yet), and so does one made anew at its path (its
    ledger deleted). Its own ledger does not wait."""
    url, key = "https://api.test", "sk-test"
    with hold_account(
        url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True, settle_seconds=60
    ) as hold:
        hold.sending(3, 7)
        sent_at = hold.last_sent
    assert sent_at is not None
    other = hold_account(url, key, tmp_path / "b.db", knows=lambda a: False, settle_seconds=60)
    with other as waited:
        assert waited.last_write == pytest.approx(sent_at, abs=0.001)
    anew = hold_account(
        url, key, tmp_path / "a.db", ledger_id="cd34", knows=lambda a: False, settle_seconds=60
    )
    with anew as made_again:  # a.db deleted, and made anew at its path: it waits too
        assert made_again.last_write == pytest.approx(sent_at, abs=0.001)
    with hold_account(url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True) as own:
        assert own.last_write is None


def test_a_run_that_trusts_a_cut_off_runs_ledger_keeps_its_requests_in_the_lock(
    tmp_path: Path,
) -> None:
    """A run killed on ledger a.db; the next run on a.db rightly does not wait (a.db records
    the requests), and until it sends, the lock still names the killed run's last request:
    it said `none`, and a run from another ledger after it, killed too, waited for nothing."""
    url, key = "https://api.test", "sk-test"
    lock = ledger_path(account_url(url), key).with_suffix(".sending.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"pid 999999, attempt {'3.7.ab12':<60}, ledger {tmp_path / 'a.db'}")
    with hold_account(url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True) as hold:
        assert hold.last_write is None
        left = lock.read_text()  # what a kill now would leave
    assert "attempt 3.7.ab12 " in left
    lock.write_text(left)
    with hold_account(url, key, tmp_path / "b.db", knows=lambda a: False) as other:
        assert other.last_write is not None


@pytest.mark.parametrize("left", [b"\0" * 120, b"pid 4242, attempt 3.7.ab", b"\xff\xfe garbage"])
def test_a_sending_lock_left_unreadable_is_waited_out(tmp_path: Path, left: bytes) -> None:
    """A lock holding what no run of this tool wrote whole (zeros a crash left, a holder cut
    short, junk) read as a run that ended cleanly: nothing was waited for, and requests its
    run had in flight could be paid for again. It is waited out from its last write, and
    the wait is noted for a run killed while it waits."""
    url, key = "https://api.test", "sk-test"
    lock = ledger_path(account_url(url), key).with_suffix(".sending.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_bytes(left)
    written_at = lock.stat().st_mtime
    with hold_account(url, key, tmp_path / "a.db", ledger_id="ab12", knows=lambda a: True) as hold:
        assert hold.last_write == written_at
        assert f"attempt after {written_at:.3f} " in lock.read_text()


def test_a_ledger_named_in_no_encoding_is_noted_in_the_sending_lock(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A --state path in Latin-1 bytes (SQLite takes it): the sending lock notes each request
    with the path escaped, as it names it at the start; noting it stopped the run with a
    traceback between recording a request and sending it."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    state = Path(os.fsdecode(bytes(tmp_path) + b"/ledger-\xe9.db"))
    assert runner.run(make_config(catalog, sandbox_url, state=state)).requests_sent == 2


def test_a_summary_says_when_the_results_file_is_not_this_runs(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A run refused by the account writes no results (the last run's file says what was
    paid): its summary says so, where the summary line named the file as if it were this
    run's."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    assert runner.run(make_config(catalog, sandbox_url)).results_written
    refused = runner.run(make_config(catalog, sandbox_url, key="sk-not-this-account"))
    assert refused.exit_code == ExitCode.ACCOUNT
    assert not refused.results_written
    assert refused.to_json()["results_written"] is False


@pytest.mark.parametrize(
    ("ran", "ends"),
    [
        (ExitCode.OK, ExitCode.LOCAL_IO),
        (ExitCode.ROWS_FAILED, ExitCode.LOCAL_IO),
        (ExitCode.TIMED_OUT, ExitCode.LOCAL_IO),
        (ExitCode.ACCOUNT, ExitCode.ACCOUNT),
        (ExitCode.DOUBLE_CHARGED, ExitCode.DOUBLE_CHARGED),
    ],
)
def test_a_summary_that_cannot_be_written_is_exit_7_over_a_routine_night(
    tmp_path: Path, ran: ExitCode, ends: ExitCode
) -> None:
    """`--summary-json` that cannot be written after sending: exit 7 over rows failed (a cron
    wrapper that reads the summary would take the night for a routine one), never over a stop
    or a double charge."""
    (tmp_path / "a-file").write_text("")
    config = replace(
        make_config(tmp_path / "c.csv", "http://127.0.0.1:9"),
        summary_json=tmp_path / "a-file" / "summary.json",
    )
    summary = runner.RunSummary("c.csv", "r.csv", "s.db", False, planner.PlanCounts())
    summary.exit_code = int(ran)
    runner.write_summary_json(config, summary)
    assert summary.exit_code == ends


def test_a_row_found_under_an_earlier_versions_fingerprint_is_found_once_the_file_is_clean(
    tmp_path: Path,
) -> None:
    """A name an earlier version sent over a template cell with a zero-width space (`Mug\\u200b
    promo`): tonight's file still has it and the row is found under that version's fingerprint;
    the night after, re-saved clean (`Mug`), it is found again, under tonight's, which the job
    was given as an alias. Before, the clean file paid for the row a second time."""
    pid = simple_rows(1)[0]["product_id"]
    raw = tmp_path / "catalog.csv"
    raw.write_text(f"product_id,title\n{pid},Mug\u200b\n", encoding="utf-8")
    config = replace(
        make_config(raw, "http://sandbox.test"),
        catalog_options=CatalogOptions(defaults=RequestDefaults(video_name="{title} promo")),
    )
    (batch,) = catalog_module.read_catalog(raw, config.catalog_options)
    (row,) = batch.rows
    assert row.fields is not None
    then = row.fields._replace(name="Mug\u200b promo")  # what that version sent
    old = payload.fingerprint(then)
    assert old in batch.rows.earlier_fingerprints(0)
    with StateStore(config.state) as store:
        store.record_plan(
            1,
            [NewJob(old, pid, payload.fields_to_json(then), planner.tag_for(old))],
            [],
            [RowPlan(1, old, "job", None)],
        )
        store.settle(1, "submitted", AttemptRecord("ok", video_id="v-then"), run_id=1)
    sandbox = RewritingSandbox(lambda *_: None)
    tonight = runner.run(config, transport=sandbox.transport())
    assert (tonight.requests_sent, tonight.plan.already_submitted) == (0, 1)
    raw.write_text(f"product_id,title\n{pid},Mug\n", encoding="utf-8")
    clean = runner.run(config, transport=sandbox.transport())
    assert (clean.requests_sent, clean.plan.already_submitted) == (0, 1)
