"""One account, one ledger: no render is paid twice across file names, machines and every kind
of lost answer. End to end against the sandbox over a real socket; the sandbox's own record of
accepted creates is the judge."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import batch
from batch import runner
from batch.config import Overrides, RunConfig, Secret, build_run_config
from batch.errors import ExitCode, StateError
from batch.joggai import reconcile
from batch.joggai.backoff import RetryPolicy
from batch.joggai.client import Timeouts
from batch.joggai.listing import Sync
from batch.store import SCHEMA_VERSION, StateStore, UncertainJob
from batch.store.backend import DatabaseURL
from batch.store.ledgers import ledger_path, legacy_state_path
from batch.store.results import read_results
from tests.helpers import product_ids, submissions, write_catalog

TAG = re.compile(r"\[jb-([0-9a-f]+)\]")


def rows(count: int) -> list[dict[str, str]]:
    """Distinct requests (their names differ) over the sandbox's products, reused as needed."""
    products = product_ids(200)
    return [
        {"sku": f"SKU{i}", "product_id": products[i % 200], "video_name": f"Item {i}"}
        for i in range(count)
    ]


SANDBOX = {"rate_limit": None}  # the `sandbox_url` of tests/conftest.py


def config_for(catalog: Path, url: str, **cli: Any) -> RunConfig:
    """No rate limit on either side, a short settle period, patient retries."""
    overrides = Overrides(base_url=url, rate_limit="100000/min", concurrency=8, **cli)
    config = build_run_config(catalog, overrides, api_key=Secret("sk-sandbox"))
    return replace(
        config,
        settle_seconds=0.4,
        timeouts=Timeouts(connect=2, read=0.3),
        retry=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05),
    )


def accepted_per_tag(url: str) -> Counter[str]:
    """Creates the sandbox charged for, by tag, once late commits have landed."""
    for _ in range(100):
        report = submissions(url)
        if not report.get("pending"):
            break
        time.sleep(0.05)
    return Counter(TAG.search(s["name"]).group(1) for s in report["submissions"])  # type: ignore[union-attr]


def test_dated_catalogs_new_results_and_parquet_find_the_same_jobs(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The same rows as catalog_20261126.csv, catalog_20261127.csv with another --results, and
    as Parquet are paid once: the ledger belongs to the account, not to a file name."""
    first = write_catalog(tmp_path / "catalog_20261126.csv", rows(45))
    assert runner.run(config_for(first, sandbox_url)).exit_code == ExitCode.OK
    second = write_catalog(tmp_path / "catalog_20261127.csv", rows(45))
    night2 = tmp_path / "reports" / "night2.csv"
    summary = runner.run(config_for(second, sandbox_url, results=night2))
    parquet = tmp_path / "catalog.parquet"
    pd.read_csv(first, dtype=str).to_parquet(parquet)
    again = runner.run(config_for(parquet, sandbox_url))
    assert len(submissions(sandbox_url)["submissions"]) == 45
    assert summary.requests_sent == again.requests_sent == 0
    assert set(read_results(night2)["status"]) == {"already_submitted"}
    assert set(read_results(tmp_path / "catalog.results.csv")["status"]) == {"already_submitted"}


@pytest.mark.parametrize(
    "spelled",
    [
        "https://api.jogg.ai:443",
        "https://API.jogg.ai/",
        "HTTPS://api.jogg.ai//",
        " https://api.jogg.ai",
        "https://api.jogg.ai/.",  # dot segments, as a server resolves them
        "https://api.jogg.ai/v2/..",
        "https://api.jogg.ai.",  # DNS's root: the same host
    ],
)
def test_one_account_spelled_otherwise_is_one_ledger_and_one_lock(
    tmp_path: Path, spelled: str
) -> None:
    """The base URL with its default port, another case, a trailing slash, dot segments or a
    host's trailing dot names the same ledger (and so the same lock): two overlapping runs
    spelling it otherwise had a ledger each, and both paid for every row. Another port or path
    is another API."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(1))

    def state_of(url: str) -> object:
        return build_run_config(catalog, Overrides(base_url=url), api_key=Secret("sk-k")).state

    assert state_of(spelled) == state_of("https://api.jogg.ai")
    assert state_of("https://api.jogg.ai:8443") != state_of("https://api.jogg.ai")
    assert state_of("https://api.jogg.ai/v3") != state_of("https://api.jogg.ai")


def test_a_ledger_an_earlier_version_named_by_the_url_as_spelled_is_kept(tmp_path: Path) -> None:
    """A ledger named from a base URL spelled with its default port (before the spelling was
    made one) is still the account's ledger, not left behind for a new, empty one."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(1))
    spelled = "https://api.jogg.ai:443"
    written = ledger_path(spelled, "sk-k")
    written.parent.mkdir(parents=True, exist_ok=True)
    StateStore(written).close()
    config = build_run_config(catalog, Overrides(base_url=spelled), api_key=Secret("sk-k"))
    assert config.state == written


def test_a_second_machine_adopts_what_the_account_already_rendered(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh ledger (another data directory) finds every render by its tag in the account's
    listing and sends nothing."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(45))
    runner.run(config_for(catalog, sandbox_url))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "other-machine"))
    summary = runner.run(config_for(catalog, sandbox_url))
    results = read_results(tmp_path / "catalog.results.csv")
    assert len(submissions(sandbox_url)["submissions"]) == 45
    assert summary.requests_sent == 0
    assert set(results["status"]) == {"already_submitted"}
    assert all(results["video_id"])


def test_a_state_beside_the_results_is_merged_not_ignored(tmp_path: Path, sandbox_url: str) -> None:
    """A 0.1 state (beside the results) is merged into the account's ledger: its jobs are not
    paid again, even where the listing could not tell (tags off)."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(10))
    results = tmp_path / "catalog.results.csv"
    old = config_for(catalog, sandbox_url, state=legacy_state_path(results))
    runner.run(replace(old, reconcile_tag=False))
    summary = runner.run(replace(config_for(catalog, sandbox_url), reconcile_tag=False))
    assert summary.requests_sent == 0
    assert len(submissions(sandbox_url)["submissions"]) == 10
    assert set(read_results(results)["status"]) == {"already_submitted"}


def test_a_merged_state_that_paid_a_job_the_ledger_has_unsent_keeps_it_paid(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The account's ledger met the rows first in a run capped before sending them (another
    file), and holds them unsent; the 0.1 state beside the results paid them: the merge takes
    the paid record, and the run sends nothing again (tags off: the listing cannot tell)."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(10))
    results = tmp_path / "catalog.results.csv"
    old = config_for(catalog, sandbox_url, state=legacy_state_path(results))
    runner.run(replace(old, reconcile_tag=False))
    other = write_catalog(tmp_path / "other.csv", rows(10))
    runner.run(replace(config_for(other, sandbox_url), reconcile_tag=False, max_videos=1))
    assert len(submissions(sandbox_url)["submissions"]) == 11
    summary = runner.run(replace(config_for(catalog, sandbox_url), reconcile_tag=False))
    assert summary.requests_sent == 0
    assert len(submissions(sandbox_url)["submissions"]) == 11
    assert set(read_results(results)["status"]) == {"already_submitted"}
    assert all(read_results(results)["video_id"])


@pytest.mark.parametrize(
    ("sandbox_url", "warned"),
    [({"listing_title": "product-name"}, True), ({"listing_title": "echo"}, False)],
    indirect=["sandbox_url"],
)
def test_a_fresh_ledger_says_so_when_no_listed_title_carries_a_tag(
    tmp_path: Path, sandbox_url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh ledger finds another ledger's renders by the tags their titles start with. A
    listing whose titles carry none (the product's name) gives it nothing to find them by: it
    pays for them again, and says so before sending, rather than in silence. Titles as sent
    are found, and nothing is said."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(3))
    runner.run(config_for(catalog, sandbox_url, state=tmp_path / "a.db"))
    caplog.clear()
    again = runner.run(
        config_for(catalog, sandbox_url, state=tmp_path / "b.db", results=tmp_path / "b.csv")
    )
    said = "none titled with a jogg-batch tag, and this ledger has had nothing accepted"
    assert (said in caplog.text) is warned
    assert again.requests_sent == (3 if warned else 0)


FAULTS = [
    pytest.param({"commit_then_error_rate": 0.2}, True, id="commit-then-error"),
    pytest.param({"late_commit_rate": 0.2, "late_commit_seconds": 0.35}, True, id="late-commit"),
    pytest.param(
        {"listing_lag_seconds": 0.3, "reset_rate": 0.2}, True, id="listing-lag-and-resets"
    ),
    pytest.param({"listing_title": "cut:30", "reset_rate": 0.2}, True, id="cut-titles"),
    pytest.param(
        {"listing_title": "product-name", "reset_rate": 0.2}, False, id="titles-without-tags"
    ),
    pytest.param(
        {
            "commit_then_error_rate": 0.2,
            "late_commit_rate": 0.15,
            "late_commit_seconds": 0.35,
            "reset_rate": 0.15,
            "listing_lag_seconds": 0.3,
        },
        True,
        id="half-of-all-answers-lost",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("sandbox_url", "echoes"), FAULTS, indirect=["sandbox_url"])
def test_lost_answers_never_pay_twice(tmp_path: Path, sandbox_url: str, echoes: bool) -> None:
    """300 rows with a fifth (or half) of the answers lost: every row accepted at most once,
    every row submitted or unknown (never failed), all submitted when titles echo tags, and
    the credits reported are the creates the sandbox charged."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(300))
    config = config_for(catalog, sandbox_url)
    summary = runner.run(config)
    charged = accepted_per_tag(sandbox_url)
    results = read_results(config.results)
    assert charged
    assert max(charged.values()) == 1
    assert set(results["status"]) <= {"submitted", "unknown"}
    if echoes:
        assert set(results["status"]) == {"submitted"}
        assert summary.exit_code == ExitCode.OK
        assert len(charged) == 300
    else:
        assert summary.exit_code == ExitCode.ROWS_FAILED
    assert summary.credits_spent == sum(charged.values())


@pytest.mark.slow
@pytest.mark.parametrize("sandbox_url", [FAULTS[-1].values[0]], indirect=True)
def test_a_postgresql_ledger_never_pays_twice_for_lost_answers(
    tmp_path: Path, sandbox_url: str, postgres_url: str
) -> None:
    """The mix of lost answers on a PostgreSQL ledger: at most one create per row, every row
    submitted, the credits as charged; a second run from another machine sends nothing."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(300))
    config = config_for(catalog, sandbox_url, state=DatabaseURL(postgres_url))
    summary = runner.run(config)
    charged = accepted_per_tag(sandbox_url)
    assert max(charged.values()) == 1
    assert set(read_results(config.results)["status"]) == {"submitted"}
    assert summary.credits_spent == sum(charged.values()) == 300
    again = runner.run(replace(config, results=tmp_path / "elsewhere.csv"))
    assert again.requests_sent == 0
    assert set(read_results(tmp_path / "elsewhere.csv")["status"]) == {"already_submitted"}


@pytest.mark.parametrize(
    "sandbox_url", [{"late_commit_rate": 0.5, "late_commit_seconds": 2.0, "seed": 3}], indirect=True
)
def test_a_commit_later_than_the_settle_period_is_detected_as_a_double_charge(
    tmp_path: Path, sandbox_url: str
) -> None:
    """The residual risk, shown: commits 2 s late against a 0.4 s settle period are resent and
    charged twice. The next run finds each tag listed twice, reports the rows and exits 6."""
    catalog = write_catalog(tmp_path / "catalog.csv", rows(8))
    config = config_for(catalog, sandbox_url)
    runner.run(config)
    twice = {tag for tag, count in accepted_per_tag(sandbox_url).items() if count > 1}
    assert twice
    summary = runner.run(config)
    assert summary.requests_sent == 0
    assert summary.exit_code == ExitCode.DOUBLE_CHARGED
    with StateStore(config.state) as state:
        assert {charge.tag for charge in state.double_charges()} == twice
    messages = [m for m in read_results(config.results)["message"] if "double charge" in m]
    assert len(messages) == len(twice)
    assert runner.run(config).exit_code == ExitCode.OK  # reported once, kept in the ledger


@pytest.mark.parametrize(
    "sandbox_url", [{"late_commit_rate": 1.0, "late_commit_seconds": 0.5}], indirect=True
)
def test_a_wall_clock_stepped_forward_does_not_cut_the_settle_period_short(
    tmp_path: Path, sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time sync stepping the wall clock an hour at each listing read (a VM fighting NTP):
    by the ledger's times the settle periods pass at once, and each lost answer was proven
    absent and sent again before its request committed, paid twice. Absence also waits the
    two settle periods in real time since the request left: the late commits are found."""
    steps = iter(range(1, 10_000))
    judge = reconcile.judge

    def stepped(job: UncertainJob, sync: Sync, **given: Any) -> reconcile.Judgement:
        hours = next(steps) * 3600.0
        return judge(job, dataclasses.replace(sync, started_at=sync.started_at + hours), **given)

    first = config_for(write_catalog(tmp_path / "first.csv", rows(6)[:3]), sandbox_url)
    assert runner.run(first).exit_code == ExitCode.OK  # videos the listing is seen to echo
    monkeypatch.setattr(reconcile, "judge", stepped)
    config = config_for(write_catalog(tmp_path / "c.csv", rows(6)[3:]), sandbox_url)
    summary = runner.run(replace(config, settle_seconds=0.5))

    assert max(accepted_per_tag(sandbox_url).values()) == 1
    assert summary.exit_code == ExitCode.OK


@pytest.mark.parametrize(
    "sandbox_url", [{"late_commit_rate": 0.5, "late_commit_seconds": 2.0, "seed": 3}], indirect=True
)
def test_a_run_that_finds_a_double_charge_still_waits_for_its_renders(
    tmp_path: Path, sandbox_url: str
) -> None:
    """`run --wait` polls the renders when the run exits 6 too (a double charge found in the
    listing, maybe an old one): it skipped them without a word, and `download` had no URLs."""
    config = config_for(write_catalog(tmp_path / "catalog.csv", rows(8)), sandbox_url)
    runner.run(config)
    assert max(accepted_per_tag(sandbox_url).values()) > 1  # the late commits have landed
    summary = batch.run(config, wait=30)
    assert summary.exit_code == ExitCode.DOUBLE_CHARGED
    assert summary.renders is not None
    assert summary.renders.completed + summary.renders.failed == 8


def test_a_data_directory_that_cannot_hold_the_salt_says_what_to_do(tmp_path: Path) -> None:
    """The salt names the account's ledger and sending lock: with `--state` given the lock still
    needs it, so the message does not offer `--state` (it did)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(StateError) as caught:
        ledger_path("https://api.jogg.ai", "sk-key", root=blocker / "jogg-batch")
    message = str(caught.value)
    assert "cannot read or create the ledger salt" in message
    assert "point XDG_DATA_HOME at one that is" in message
    assert "pass --state" not in message


def test_state_of_version_1_is_upgraded_in_place(tmp_path: Path) -> None:
    """A state written by jogg-batch 0.1 opens, gains the listing tables, and keeps its jobs."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL UNIQUE, "
            "row_key TEXT, fields TEXT NOT NULL, tag TEXT NOT NULL, status TEXT NOT NULL, "
            "planned_run INTEGER, video_id TEXT, code INTEGER, message TEXT, "
            "attempts INTEGER NOT NULL DEFAULT 0, permanent INTEGER NOT NULL DEFAULT 0, "
            "recovered INTEGER NOT NULL DEFAULT 0, submitted_at REAL, submitted_run INTEGER, "
            "product_id TEXT, video_status TEXT, video_url TEXT, cover_url TEXT, duration REAL, "
            "deducted_credit REAL, error TEXT, completed_at REAL, created_at REAL NOT NULL, "
            "updated_at REAL NOT NULL);"
            "INSERT INTO jobs (fingerprint, fields, tag, status, video_id, created_at, "
            "updated_at) VALUES ('f1', '[]', 'aaaaaaaaaaaa', 'submitted', 'v1', 0, 0);"
        )
    with StateStore(path) as state:
        assert state.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert state.accepted_tags(["v1"]) == {"v1": "aaaaaaaaaaaa"}
        state.record_listing([("v1", "aaaaaaaaaaaa", "[jb-aaaaaaaaaaaa] x", 1.0)])
        assert state.listed_video("aaaaaaaaaaaa") == "v1"
