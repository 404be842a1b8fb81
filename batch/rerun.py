"""`jogg-batch retry RESULTS`: run again the rows a results file says did not get through.

It needs nothing but the results file (the data-team hand-off): the file carries every input
column, so the rows to retry become a small catalog of their own; their outcomes are merged back
into the results file in place. Rows whose earlier outcome is `unknown` may have been accepted:
when the state (beside the results file, or `--state`) does not know them, they are entered as
`unknown` first, so they are looked up by their tag before anything is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

from batch import catalog, payload, runner
from batch.config import RunConfig
from batch.planner import tag_for
from batch.runner import RunSummary
from batch.statuses import RETRY_ROWS
from batch.store import StateStore
from batch.store.results import RESULT_COLUMNS, catalog_name, read_results, write_table
from batch.vocabulary import PERMANENT_CODES

log = logging.getLogger(__name__)


def rerun(config: RunConfig, *, handle_signals: bool = False) -> RunSummary:
    """`rerun_async` for synchronous callers, on an event loop of its own."""
    return asyncio.run(rerun_async(config, handle_signals=handle_signals))


async def rerun_async(config: RunConfig, *, handle_signals: bool = False) -> RunSummary:
    """`config.catalog` is the results file; `config.results` is where the merged file goes.
    `handle_signals` as in `runner.run_async`."""
    frame = read_results(config.catalog)
    permanent = {str(int(code)) for code in PERMANENT_CODES}
    wanted = frame["status"].isin(RETRY_ROWS) & (
        config.retry_permanent | ~((frame["status"] == "failed") & frame["code"].isin(permanent))
    )
    todo = frame[wanted]
    if todo.empty:
        log.warning("%s: no failed, not-attempted or unknown rows to retry", config.catalog)
    inputs = todo.drop(columns=[c for c in RESULT_COLUMNS if c in todo.columns])
    inputs = inputs.rename(columns=catalog_name)
    with tempfile.TemporaryDirectory(prefix="jogg-retry-") as folder:
        subset = Path(folder) / "retry.csv"
        inputs.to_csv(subset, index=False)
        subset_config = replace(
            config,
            catalog=subset,
            results=Path(folder) / "retry.results.csv",
            catalog_options=replace(config.catalog_options, format="csv", delimiter=","),
        )
        unknown_rows = {n + 1 for n, status in enumerate(todo["status"]) if status == "unknown"}
        _enter_unknowns(subset_config, unknown_rows)
        summary = await runner.run_async(subset_config, handle_signals=handle_signals)
        retried = read_results(subset_config.results)
    outcome_columns = [c for c in RESULT_COLUMNS if c in retried.columns and c != "row"]
    for position, original in enumerate(todo.index):
        for column in outcome_columns:
            frame.at[original, column] = retried.iloc[position][column]
    write_table(frame, config.results)
    summary.results = str(config.results)
    return summary


def _enter_unknowns(config: RunConfig, rows: set[int]) -> None:
    """Unknown rows the state has never seen become `unknown` jobs: reconciled before resending."""
    if not rows:
        return
    with StateStore(config.state) as state:
        for batch in catalog.read_catalog(config.catalog, config.catalog_options):
            for row in batch.rows:
                if row.number in rows and row.fingerprint and row.fields is not None:
                    state.enter_unknown(
                        row.fingerprint,
                        row.key,
                        payload.fields_to_json(row.fields),
                        tag_for(row.fingerprint),
                    )
