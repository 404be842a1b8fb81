"""Keeping the ledger small: pruning forgets old runs' row outcomes, never a job or an attempt,
and a job accepted before pruning is still never sent again."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch import runner
from batch.cli import main
from batch.config import CliOverrides, RunConfig, Secret, build_run_config
from batch.errors import ExitCode
from batch.sandbox import SandboxConfig, running_sandbox
from batch.store import StateStore
from batch.store.backend import DatabaseURL, StateLocation
from batch.store.results import read_results
from tests.helpers import product_ids, submissions, write_catalog


def config_for(catalog: Path, url: str, state: StateLocation, keep_runs: int) -> RunConfig:
    overrides = CliOverrides(base_url=url, rate_limit="100000/min", state=state)
    config = build_run_config(catalog, overrides, api_key=Secret("sk-sandbox"))
    return replace(config, keep_runs=keep_runs, settle_seconds=0.3)


def test_pruned_runs_lose_their_rows_but_never_a_job_or_an_attempt(
    tmp_path: Path, state_at: StateLocation
) -> None:
    """Five nights with keep_runs=2: two runs' rows remain, every job and attempt does, and a
    job accepted on the first night is still already_submitted, not sent again."""
    ids = product_ids(6)
    state = state_at
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        for night in range(5):
            rows = [{"sku": f"S{i}", "product_id": ids[i]} for i in range(night + 2)]
            catalog = write_catalog(tmp_path / f"catalog_{night}.csv", rows)
            summary = runner.run(config_for(catalog, url, state, keep_runs=2))
            assert summary.exit_code == ExitCode.OK
        accepted = len(submissions(url)["submissions"])
        with StateStore(state) as store:
            facts = store.info()
            runs = [
                r for (r,) in store._db.execute("SELECT DISTINCT run_id FROM run_rows ORDER BY 1")
            ]
        assert facts.runs == 2
        assert runs == [4, 5]
        assert facts.jobs_by_status == {"submitted": 6}
        assert facts.attempts == 6
        first = runner.run(config_for(tmp_path / "catalog_0.csv", url, state, keep_runs=2))
        assert first.requests_sent == 0
        assert len(submissions(url)["submissions"]) == accepted == 6
    assert set(read_results(tmp_path / "catalog_0.results.csv")["status"]) == {"already_submitted"}


def test_a_prune_that_fails_after_a_finished_run_leaves_its_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The automatic prune at a run's end hits a full disk (it needs room for its write-ahead
    log): every row was done, yet the run said "stopped early" and exited 7. The run is done
    (exit 0, its results written); a warning says how to prune later."""

    def full(self: StateStore, keep_runs: int) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StateStore, "prune", full)
    catalog = write_catalog(tmp_path / "c.csv", [{"product_id": product_ids(1)[0]}])
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        summary = runner.run(config_for(catalog, url, tmp_path / "s.db", keep_runs=1))
    assert summary.exit_code == ExitCode.OK
    assert summary.stopped is None
    assert list(read_results(tmp_path / "c.results.csv")["status"]) == ["submitted"]
    assert "the run is done, but the ledger could not be pruned" in caplog.text


def test_state_info_prune_and_vacuum_commands(tmp_path: Path, state_at: StateLocation) -> None:
    """`state info` names the ledger and counts; `prune` and `vacuum` keep every job."""
    state = state_at
    with running_sandbox(SandboxConfig(rate_limit=None)) as url:
        catalog = write_catalog(tmp_path / "c.csv", [{"product_id": product_ids(1)[0]}])
        for _ in range(3):
            runner.run(config_for(catalog, url, state, keep_runs=10))
    cli = CliRunner()
    given = state.url if isinstance(state, DatabaseURL) else str(state)
    shown = cli.invoke(main, ["state", "info", "--state", given])
    assert shown.exit_code == 0, shown.output
    assert f"ledger          {state}" in shown.output
    assert "runs kept       3  (3 row outcomes)" in shown.output
    assert "jobs submitted  1" in shown.output
    pruned = cli.invoke(main, ["state", "prune", "--keep-runs", "1", "--state", given])
    assert pruned.exit_code == 0
    assert "pruned 2 run(s)" in pruned.output
    vacuumed = cli.invoke(main, ["state", "vacuum", "--state", given])
    assert (vacuumed.exit_code, vacuumed.output.strip()) == (0, f"vacuumed {state}")
    with StateStore(state) as store:
        assert store.info().jobs_by_status == {"submitted": 1}
    missing = cli.invoke(main, ["state", "info", "--state", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2
    assert "no state database here" in missing.output
    assert not (tmp_path / "nope.db").exists()


def test_state_commands_find_the_ledger_as_a_run_does(tmp_path: Path) -> None:
    """`run.state` in the --config, or JOGG_STATE_URL, names the ledger `state` looks after
    (the cron line's nightly.toml), not the account's default one."""
    nightly = tmp_path / "nightly.db"
    StateStore(nightly).close()
    settings = tmp_path / "nightly.toml"
    settings.write_text(f'[run]\nstate = "{nightly}"\n')
    cli = CliRunner()
    env = {"JOGG_API_KEY": "sk-sandbox", "XDG_DATA_HOME": str(tmp_path / "data")}
    by_config = cli.invoke(main, ["state", "info", "--config", str(settings)], env=env)
    assert by_config.exit_code == 0, by_config.output
    assert f"ledger          {nightly}" in by_config.output
    by_env = cli.invoke(main, ["state", "info"], env=env | {"JOGG_STATE_URL": str(nightly)})
    assert by_env.exit_code == 0, by_env.output
    assert f"ledger          {nightly}" in by_env.output


def test_state_commands_never_make_a_ledger_in_a_database_without_one(postgres_url: str) -> None:
    """A database named by mistake (an empty one): `state info` refuses it (exit 2) and leaves
    it as it was, as a missing SQLite file is refused."""
    import psycopg

    shown = CliRunner().invoke(main, ["state", "info", "--state", postgres_url])
    assert shown.exit_code == 2
    assert "holds no jogg-batch ledger" in shown.output
    with psycopg.connect(postgres_url) as db:
        (tables,) = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()  # type: ignore[misc]
    assert tables == 0


def test_state_commands_never_write_into_another_sqlite_file(tmp_path: Path) -> None:
    """An application's SQLite file, or a file that is no database, given to `state info` or
    `prune` by mistake: refused (exit 2), left byte for byte as it was."""
    app = tmp_path / "app.db"
    with contextlib.closing(sqlite3.connect(app)) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        db.commit()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    for path in (app, text):
        before = path.read_bytes()
        for command in (["info"], ["prune", "--keep-runs", "1"]):
            shown = CliRunner().invoke(main, ["state", *command, "--state", str(path)])
            assert shown.exit_code == 2, shown.output
            assert f"{path}: this file holds no jogg-batch ledger" in shown.output
        assert path.read_bytes() == before
