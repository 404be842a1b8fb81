"""The library's face: `import batch` as a data engineer meets it (batch/api.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import types
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import batch
from batch.errors import ConfigError, StateError
from batch.joggai.quota import RateLimit
from batch.sandbox import SandboxConfig, running_sandbox
from batch.store.results import read_results
from tests.helpers import python_output, simple_rows, submissions, write_catalog

ROOT = Path(__file__).parents[1]
SANDBOX = {"rate_limit": None, "render_seconds": 0.0}  # the `sandbox_url` of tests/conftest.py


def configured(catalog: Path, url: str, **flags: Any) -> batch.RunConfig:
    overrides = batch.Overrides(base_url=url, rate_limit="100000/min", **flags)
    return batch.configure(catalog, overrides, env={"JOGG_API_KEY": "sk-sandbox"})


def test_all_names_exactly_the_public_api() -> None:
    """`__all__` lists every public name of the package and nothing else (as httpx keeps it)."""
    assert batch.__all__ == [
        "BatchError",
        "ExitCode",
        "Overrides",
        "PollSummary",
        "RunConfig",
        "RunSummary",
        "Sandbox",
        "Settings",
        "TrackConfig",
        "Validation",
        "__version__",
        "configure",
        "local_sandbox",
        "plan",
        "plan_async",
        "retry",
        "retry_async",
        "run",
        "run_async",
        "track",
        "track_async",
        "track_config",
        "validate",
        "validate_async",
    ]
    assert set(batch.__all__) <= set(dir(batch))
    for name in batch.__all__:  # imported when first used: each is there, and is no module
        assert not isinstance(getattr(batch, name), types.ModuleType), name
    public = {
        name
        for name, value in vars(batch).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public | {"__version__"} == set(batch.__all__)


def test_version_is_the_installed_distributions() -> None:
    """`__version__` comes from the package metadata, not a second copy of the number."""
    assert batch.__version__ == metadata.version("jogg-batch")


@pytest.mark.slow
def test_readme_python_api_example_submits_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's example, run as written: 45 rows submitted and rendered, 5 invalid, exit 1."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Python API", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's Python API section has no python block"
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    monkeypatch.chdir(tmp_path)
    exec(compile(found.group(1), "README.md", "exec"), {})  # noqa: S102 - our own README
    assert capsys.readouterr().out == "{'invalid': 5, 'submitted': 45}\n"
    results = read_results(tmp_path / "out" / "api" / "catalog.results.csv")
    assert list(results["video_status"]).count("completed") == 45


@pytest.mark.anyio
async def test_run_async_sends_and_waits_inside_a_running_loop(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Awaited from a running event loop (where the sync `run` could not go), with `wait`."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(3))
    summary = await batch.run_async(configured(catalog, sandbox_url), wait=30)
    assert summary.statuses == {"submitted": 3}
    assert summary.renders is not None
    assert (summary.renders.completed, summary.exit_code) == (3, batch.ExitCode.OK)
    assert len(submissions(sandbox_url)["submissions"]) == 3
    # Each typed result has its `to_json()`, as the README says.
    assert json.loads(json.dumps(summary.renders.to_json()))["exit_code"] == 0
    assert json.loads(json.dumps(summary.to_json()))["renders"]["completed"] == 3


@pytest.mark.anyio
async def test_the_plain_names_inside_a_running_loop_say_to_await_their_twins(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A notebook's running loop: `batch.run()` and the other plain names raise a BatchError
    naming the twin to await, not asyncio's RuntimeError beside a coroutine never awaited;
    nothing is sent."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    config = configured(catalog, sandbox_url)
    calls: dict[str, Callable[[], object]] = {
        "run": lambda: batch.run(config),
        "retry": lambda: batch.retry(config),
        "validate": lambda: batch.validate(config),
        "track": lambda: batch.track(config),
    }
    for name, call in calls.items():
        with pytest.raises(batch.BatchError, match=rf"write `await batch\.{name}_async\(\.\.\.\)`"):
            call()
    assert submissions(sandbox_url)["submissions"] == []


def test_a_wait_that_ends_with_renders_going_keeps_the_runs_own_code(tmp_path: Path) -> None:
    """`run(wait=...)`: failed or invalid rows (1) win over renders still going when the wait
    ends (5), as the README says; with every row sent, the timed-out wait's 5 is the code."""
    rows = simple_rows(2)
    invalid = [*rows, {**rows[0], "product_id": "", "sku": "none"}]
    with running_sandbox(SandboxConfig(rate_limit=None, render_seconds=600)) as url:
        with_invalid = write_catalog(tmp_path / "a.csv", invalid)
        summary = batch.run(configured(with_invalid, url), wait=0.5)
        assert summary.renders is not None
        assert summary.renders.exit_code == batch.ExitCode.TIMED_OUT
        assert summary.exit_code == batch.ExitCode.ROWS_FAILED
        clean = write_catalog(tmp_path / "b.csv", simple_rows(2, start=2))
        assert batch.run(configured(clean, url), wait=0.5).exit_code == batch.ExitCode.TIMED_OUT


@pytest.mark.anyio
async def test_a_cancelled_run_records_what_was_sent_and_a_resume_finishes(
    tmp_path: Path, sandbox_url: str
) -> None:
    """A host stops a run by cancelling its task: the results file is whole, and the next run
    sends only the rest (a request cut off in flight is looked up, never paid twice)."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(10))
    config = replace(configured(catalog, sandbox_url), rate=RateLimit(600, 60.0))
    task = asyncio.create_task(batch.run_async(config))
    while not (await asyncio.to_thread(submissions, sandbox_url))["submissions"]:
        await asyncio.sleep(0.02)  # cancelled once something was sent
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    statuses = list(read_results(config.results)["status"])
    assert len(statuses) == 10
    assert "not_attempted" in statuses
    assert set(statuses) <= {"submitted", "not_attempted", "unknown"}
    resumed = await batch.run_async(config)
    assert resumed.exit_code == batch.ExitCode.OK
    assert len(submissions(sandbox_url)["submissions"]) == 10


def test_a_library_run_leaves_the_hosts_signal_handlers_alone(
    tmp_path: Path, sandbox_url: str
) -> None:
    """Without handle_signals, SIGTERM still belongs to the host after a run (an Airflow worker)."""

    def host_handler(signum: int, frame: object) -> None:
        raise AssertionError("not to be called")

    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    previous = signal.signal(signal.SIGTERM, host_handler)
    try:
        assert batch.run(configured(catalog, sandbox_url)).exit_code == batch.ExitCode.OK
        assert signal.getsignal(signal.SIGTERM) is host_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_plan_and_validate_send_nothing_and_count_every_row(
    tmp_path: Path, sandbox_url: str
) -> None:
    """plan counts what run would send; validate lists each problem by row and column."""
    rows = simple_rows(3)
    rows[2]["length"] = "45"
    catalog = write_catalog(tmp_path / "c.csv", rows)
    config = configured(catalog, sandbox_url)
    planned = batch.plan(config)
    checked = batch.validate(config, online=True)
    assert (planned.plan.new, planned.plan.invalid) == (2, 1)
    assert [(p.row, p.column, p.value) for p in checked.problems] == [(3, "length", "45")]
    assert checked.exit_code == batch.ExitCode.ROWS_FAILED
    assert submissions(sandbox_url)["submissions"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


def test_paths_given_as_text_work_as_paths(tmp_path: Path, sandbox_url: str) -> None:
    """A Python caller may give the state and results as text, as the CLI does."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(2))
    config = configured(
        catalog, sandbox_url, state=str(tmp_path / "s.db"), results=str(tmp_path / "r.csv")
    )
    assert config.state == tmp_path / "s.db"
    summary = batch.run(config)
    assert summary.exit_code == batch.ExitCode.OK
    assert list(read_results(tmp_path / "r.csv")["status"]) == ["submitted", "submitted"]


@pytest.mark.parametrize("as_path", [False, True])
def test_a_home_relative_path_is_expanded_as_a_shell_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_path: bool
) -> None:
    """`~/catalog.csv` and `results="~/out.csv"` from a notebook name the home folder, as on a
    command line, rather than a folder named `~` in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write_catalog(tmp_path / "c.csv", simple_rows(1))
    wrap: Any = Path if as_path else str  # text as a notebook gives it, which Overrides takes
    config = batch.configure(
        wrap("~/c.csv"),
        batch.Overrides(results=wrap("~/out.csv"), state=wrap("~/s.db")),
        key_required=False,
        env={},
    )
    assert (config.catalog, config.results, config.state) == (
        tmp_path / "c.csv",
        tmp_path / "out.csv",
        tmp_path / "s.db",
    )


@pytest.mark.parametrize("wait", [-1, float("nan"), "60", True])
def test_a_wait_that_is_no_number_of_seconds_is_a_config_error(tmp_path: Path, wait: Any) -> None:
    """`wait=-1` polled nothing and said the renders timed out; `"60"` was a TypeError from deep
    in a run. Both are refused before anything is read or sent, naming the argument; so is a
    deadline that is no time."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    config = batch.configure(catalog, batch.Overrides(offline=True), key_required=False, env={})
    with pytest.raises(batch.BatchError, match=r"^wait=.*: takes seconds") as caught:
        batch.run(config, wait=wait)
    assert caught.value.__context__ is None  # not "during handling of no running event loop"
    with pytest.raises(batch.BatchError, match=r"^wait=.*: takes seconds"):
        batch.track(config, wait=wait)
    assert not config.results.exists()  # type: ignore[union-attr]
    with pytest.raises(batch.BatchError, match=r"^deadline nan: takes a unix time"):
        batch.Overrides(deadline=float("nan"))


@pytest.mark.anyio
async def test_plan_async_gives_the_same_counts(tmp_path: Path) -> None:
    """The async twin of plan, from a running loop, without a key."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(4))
    config = batch.configure(catalog, key_required=False, env={})
    planned = await batch.plan_async(config)
    assert planned.plan.new == 4
    assert not planned.results_written  # a plan writes nothing (it said it wrote '')


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"max_videos": "5"}, "max_videos '5': takes a whole number, not str"),
        ({"deadline": "06:30"}, "deadline '06:30': takes a unix time (seconds), not str"),
        ({"results": 123}, "results 123: takes a path or a store's URL, not int"),
        ({"state": 5}, "state 5: takes a path or a postgresql:// URL, not int"),
        ({"concurrency": True}, "concurrency True: takes a whole number, not bool"),
        # Text is true to Python: `force="false"` paid for every row again.
        ({"force": "false"}, "force 'false': takes True or False, not str"),
        ({"dry_run": "no"}, "dry_run 'no': takes True or False, not str"),
        ({"resubmit_unknown": 2}, "resubmit_unknown 2: takes True or False, not int"),
    ],
)
def test_overrides_of_the_wrong_type_are_a_config_error_naming_them(
    given: dict[str, object], says: str
) -> None:
    """An untyped caller (a notebook, a DAG built from YAML) gets a BatchError naming the
    override, not a TypeError or AttributeError from deep inside a run; None is "not given"."""
    with pytest.raises(batch.BatchError) as caught:
        batch.Overrides(**given)  # type: ignore[arg-type]
    assert str(caught.value) == says
    assert batch.Overrides(fields=None).fields == {}  # type: ignore[arg-type]
    flags = batch.Overrides(force=None, dry_run=1, offline=0)  # type: ignore[arg-type]
    assert (flags.force, flags.dry_run, flags.offline) == (False, True, False)


@pytest.mark.parametrize("cap", [0, -3])
def test_configure_refuses_a_cap_the_cli_refuses(tmp_path: Path, cap: int) -> None:
    """max_videos below 1 is a ConfigError, as `--max-videos 0` is a usage error."""
    with pytest.raises(batch.BatchError, match=f"max_videos {cap}: use 1 or more") as caught:
        batch.configure(tmp_path / "c.csv", batch.Overrides(max_videos=cap), key_required=False)
    assert caught.value.exit_code == batch.ExitCode.USAGE


def test_configure_needs_a_key_unless_told_otherwise(tmp_path: Path) -> None:
    """No JOGG_API_KEY: a ConfigError saying where to put it; key_required=False plans keyless."""
    catalog = tmp_path / "c.csv"
    with pytest.raises(ConfigError, match="set JOGG_API_KEY"):
        batch.configure(catalog, env={})
    assert batch.configure(catalog, key_required=False, env={}).api_key.reveal() == ""


def test_importing_the_library_sets_no_logger_and_a_sandbox_puts_back_what_it_set() -> None:
    """A host's logging is its own: importing `batch` changes no logger's level; a local sandbox
    quiets its own request log while it runs, then puts the level back."""
    probe = (
        "import logging\n"
        "import batch\n"
        "print(logging.getLogger('batch.sandbox').level)\n"
        "with batch.local_sandbox():\n"
        "    print(logging.getLogger('batch.sandbox').level)\n"
        "print(logging.getLogger('batch.sandbox').level)\n"
    )
    assert python_output(probe).split() == ["0", str(logging.WARNING), "0"]


def test_a_sandbox_keeps_its_ledger_unless_a_state_is_given(tmp_path: Path) -> None:
    """The embedded account ends with the sandbox, so its ledger does too; --state still wins."""
    catalog = tmp_path / "c.csv"
    with batch.local_sandbox() as sandbox:
        own = batch.configure(catalog, sandbox=sandbox, env={})
        given = batch.configure(catalog, batch.Overrides(state=tmp_path / "s.db"), sandbox=sandbox)
        assert (own.base_url, own.state, given.state) == (
            sandbox.url,
            sandbox.ledger,
            tmp_path / "s.db",
        )
    assert not sandbox.ledger.parent.exists()


def test_track_config_without_a_ledger_says_so(tmp_path: Path) -> None:
    """Polling an account that never ran here is a StateError naming --state, not an empty poll."""
    results = write_catalog(tmp_path / "c.results.csv", [{"video_id": "v1"}])
    with pytest.raises(StateError, match="pass --state PATH"):
        batch.track_config(results, env={"JOGG_API_KEY": "k"})


def test_a_dataframe_given_as_the_catalog_is_a_config_error_saying_to_save_it() -> None:
    """A notebook passing its DataFrame (as the catalog, or as the results `track` updates): a
    BatchError (exit 2) saying how to give a file, not a bare TypeError from deep inside."""
    frame = pd.DataFrame({"product_id": ["NTQ0MTkzNjg"]})
    with pytest.raises(
        ConfigError, match=r"the catalog is a DataFrame, not a file's path.*to_parquet"
    ):
        batch.configure(frame, key_required=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the results file is a DataFrame, not a file's path"):
        batch.track_config(frame)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the results file is a int"):
        batch.track_config(5)  # type: ignore[arg-type]


untyped: Any = batch  # the package as a caller the type checker does not check


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: untyped.configure(b"catalog.csv", key_required=False), "the catalog is a bytes"),
        (lambda: untyped.configure("c.csv", {"max_videos": 1}, key_required=False), "Overrides"),
        (lambda: untyped.run("catalog.csv"), r"batch.run\(\) takes the config"),
        (lambda: untyped.plan(None), r"batch.plan\(\) takes the config"),
        (lambda: untyped.retry(Path("r.csv")), r"batch.retry\(\) takes the config"),
        (lambda: untyped.validate({"catalog": "c.csv"}), r"batch.validate\(\) takes the config"),
        (lambda: untyped.track("r.csv"), r"batch.track\(\) takes the config"),
    ],
    ids=["bytes path", "dict overrides", "run", "plan", "retry", "validate", "track"],
)
def test_a_call_with_the_wrong_kind_of_argument_is_a_config_error(
    call: Callable[[], object], says: str
) -> None:
    """What the types do not stop at run time (a notebook, a DAG built from YAML): a
    ConfigError (exit 2) saying what to pass, not a TypeError or AttributeError from deep in
    a run."""
    with pytest.raises(ConfigError, match=says):
        call()
