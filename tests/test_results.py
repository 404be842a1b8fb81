"""The results file's writer (batch.store.results): what it leaves behind in the process."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.store.results import RESULT_COLUMNS, read_results, state_outcomes, write_results


@pytest.fixture
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


@pytest.mark.usefixtures("collector_restored")
@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_while_writing_and_left_as_it_was(
    tmp_path: Path, enabled: bool
) -> None:
    """Outcomes are read with the cycle collector paused; afterwards it is on or off as before,
    also when writing fails (a long run must not be left without it)."""
    (gc.enable if enabled else gc.disable)()
    seen: list[bool] = []

    def lookup(first: int, last: int) -> pa.Table:
        seen.append(gc.isenabled())
        return state_outcomes([(first, "submitted", "v1") + (None,) * 12], first, last)

    write_results(tmp_path / "r.csv", [pa.table({"sku": ["a"]})], lookup)
    assert seen == [False]
    assert gc.isenabled() is enabled
    assert list(read_results(tmp_path / "r.csv")["video_id"]) == ["v1"]

    def failing(first: int, last: int) -> pa.Table:
        raise RuntimeError("the state went away")

    with pytest.raises(RuntimeError, match="went away"):
        write_results(tmp_path / "r.csv", [pa.table({"sku": ["a"]})], failing)
    assert gc.isenabled() is enabled


@pytest.mark.parametrize("name", ["r.csv", "r.parquet"])
def test_an_empty_catalog_gets_a_results_file_of_its_format(tmp_path: Path, name: str) -> None:
    """No batch at all: the file is still of the format its name says, with the outcome
    columns (a `.parquet` one used to hold CSV text)."""
    write_results(tmp_path / name, [], lambda first, last: state_outcomes([], first, last))
    if name.endswith(".parquet"):
        assert pq.read_table(tmp_path / name).schema.names == list(RESULT_COLUMNS)
    assert list(read_results(tmp_path / name).columns) == list(RESULT_COLUMNS)
    assert read_results(tmp_path / name).empty
