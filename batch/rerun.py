"""`jogg-batch retry RESULTS`: run again the rows a results file says did not get through.

It needs nothing but the results file (the data-team hand-off): the file carries every input
column, so the rows to retry become a small catalog of their own; their outcomes are merged back
into the results file in place. Rows whose earlier outcome is `unknown` may have been accepted:
when the state (beside the results file, or `--state`) does not know them, they are entered as
`unknown` first, so they are looked up by their tag before anything is sent again.

A row's request also depends on the run's request defaults (`run --length 15` fills the empty
length cells) and column mapping (`[columns]`: which of the team's columns is the length): the
state records both with the results file each run writes, and the rows are rebuilt with those of
the newest run that wrote this file, so each is the very request (and fingerprint) that run
planned, never a second, paid one (pruning the run keeps them). When the state knows no such run
(the file was moved or comes from another machine or state), a warning says so and the
settings' (`--config`) are used.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import shlex
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from batch import catalog, payload, runner, storage
from batch.catalog.rows import CatalogOptions, request_settings_from_json
from batch.config import RunConfig
from batch.errors import CatalogError, ExitCode, LocalIOError
from batch.outputs import check_room
from batch.planner import PlanCounts, tag_for
from batch.runner import RunSummary
from batch.statuses import (
    RETRY_ROWS,
    ROW_ORDER,
    UNFINISHED_ROWS,
    duplicate_of,
    duplicated_row,
    row_status,
)
from batch.storage import Location
from batch.store import AskedRow, NewJob, StateStore, xlsx
from batch.store.results import (
    RESULT_COLUMNS,
    WRITTEN_COLUMNS,
    ResultsChanged,
    catalog_name,
    read_results,
    require_columns,
    results_format,
    write_table,
)
from batch.vocabulary import PERMANENT_CODES

log = logging.getLogger(__name__)


def rerun(config: RunConfig, *, handle_signals: bool = False) -> RunSummary:
    """`rerun_async` for synchronous callers, on an event loop of its own."""
    return asyncio.run(rerun_async(config, handle_signals=handle_signals))


async def rerun_async(config: RunConfig, *, handle_signals: bool = False) -> RunSummary:
    """`config.catalog` is the results file; `config.results` is where the merged file goes.
    `handle_signals` as in `runner.run_async`."""
    version = storage.version(config.catalog)  # what the file must still be when rewritten
    frame = read_results(config.catalog)
    require_columns(frame, config.catalog, ("status", "code"), "retry")
    statuses = _statuses(config.catalog, frame)
    options = _run_options(config, frame)
    permanent = {str(int(code)) for code in PERMANENT_CODES}
    wanted = statuses.isin(RETRY_ROWS) & (
        config.retry_permanent | ~((statuses == "failed") & frame["code"].isin(permanent))
    )
    # A person filtered the workbook to look at some rows: retry reads every row. Excel row
    # N is the frame's N - 2 (the header is row 1).
    hidden = [
        number
        for number in frame.attrs.get("hidden_rows", [])
        if 0 <= number - 2 < len(frame) and wanted.iloc[number - 2]
    ]
    if hidden:
        raise CatalogError(
            f"{config.catalog}: rows {', '.join(map(str, hidden[:10]))} are hidden in the "
            "workbook (by a filter, or by hand), and retry would send them as any other; clear "
            "the filter, or delete the rows not to send, save, and retry"
        )
    todo = frame[wanted]
    _refuse_added(config.catalog, frame, todo)
    _warn_of_rows_left_out(config, frame)
    invalid = int((statuses == "invalid").sum())
    refused = int((statuses.isin(RETRY_ROWS) & ~wanted).sum())  # failed for good
    # Said whether or not other rows are sent: a cell corrected in this file on such a row
    # is not sent by retry, and nothing else said so.
    not_retried = []
    if refused:
        not_retried.append(
            f"{refused} row(s) the API refused for good, by their codes: sent again only with "
            "--retry-permanent, as they were asked (a correction goes in the catalog, which "
            "`run` sends)"
        )
    if invalid:
        not_retried.append(
            f"{invalid} invalid row(s): they are fixed in the catalog, which `run` sends, not in "
            "this file"
        )
    not_sent = "; ".join(not_retried)
    if todo.empty:
        log.warning(
            "%s: no %srows to retry%s",
            config.catalog,
            "other " if refused else "failed, not-attempted, unknown or planned ",
            f" ({not_sent})" if not_sent else "",
        )
        return _nothing_to_retry(config, statuses)
    if not_sent:
        log.warning("%s: not retried: %s", config.catalog, not_sent)
    # The merged file is written where the retry's own run does not look: its room first.
    check_room(config, rows=len(frame))
    inputs = todo.drop(columns=[c for c in WRITTEN_COLUMNS if c in todo.columns])
    inputs = inputs.rename(columns=catalog_name)
    if results_format(config.catalog) == "xlsx":
        _refuse_cut_cells(config.catalog, inputs, todo["row"])
    with tempfile.TemporaryDirectory(prefix="jogg-retry-") as folder:
        subset = Path(folder) / "retry.csv"
        # Every cell quoted: pandas leaves a lone carriage return bare, which reads as a line end.
        inputs.to_csv(subset, index=False, quoting=csv.QUOTE_ALL)
        subset_config = replace(
            config,
            catalog=subset,
            results=Path(folder) / "retry.results.csv",
            recorded_results=config.results,  # the next retry of that file finds these defaults
            summary_json=None,  # written below, naming the results file rather than `subset`
            catalog_options=replace(options, format="csv", delimiter=","),
        )
        by_row = dict(enumerate(statuses[wanted], start=1))
        unknown_rows = {n for n, status in by_row.items() if status == "unknown"}
        recorded = {n for n, status in by_row.items() if status in ("failed", "not_attempted")}
        planned = {n for n, status in by_row.items() if status == "planned"}
        videos = _videos_named(todo)
        try:
            checked = _check_requests(
                subset_config,
                storage.identity(config.catalog),
                _Asked(unknown_rows, recorded, planned, videos),
            )
        except CatalogError as exc:
            raise _of_the_file(exc, subset, config.catalog) from exc
        drifted, changed, superseded = checked.drifted, checked.changed, checked.superseded
        subset_config = replace(subset_config, retried_catalog=checked.catalog)
        if superseded:
            raise CatalogError(
                f"{config.catalog}: rows whose request a later run of the catalog no longer "
                f"made: {_told(todo, dict.fromkeys(superseded, ''))} (their catalog rows were "
                "corrected, or put back, since this file was written, and that run asked for "
                "what the catalog gives now). Sending them would pay for a second video of the "
                "same rows, so nothing was sent: retry the newest results file, or run the catalog"
            )
        if drifted:
            raise CatalogError(
                f"{config.catalog}: unknown rows (answers lost) whose request the file now "
                f"gives otherwise than it was sent: {_told(todo, dict.fromkeys(drifted, ''))}. "
                "Sending that would pay for another video while the first may have been made, "
                "so nothing was sent. Run the catalog again: it looks the lost requests up in "
                "the account"
            )
        if changed:
            raise CatalogError(
                f"{config.catalog}: rows whose request the file now gives otherwise than their "
                f"run planned: {_told(todo, changed)}. A spreadsheet rewrote a cell (as 00123 "
                "to 123), or it was edited. retry sends the requests a run planned, no others: "
                "the catalog's next run would pay for its own as well. Nothing was sent: put "
                "those cells back as they were, or change the catalog and run it"
            )
        try:
            summary = await runner.run_async(subset_config, handle_signals=handle_signals)
        except CatalogError as exc:
            raise _of_the_file(exc, subset, config.catalog) from exc
        if not summary.plan.rows:
            # Stopped before planning (the API down, the key refused): the retry knows no row's
            # outcome, and the file still says which were paid or may have been.
            log.warning(
                "the results file %s is left as it was: the retry stopped before planning any row",
                config.results,
            )
            summary.catalog = str(config.catalog)
            summary.results = str(config.results)
            summary.results_written = False
            runner.write_summary_json(config, summary)
            return summary
        retried = read_results(subset_config.results)
    _merge(frame, todo, retried)
    left = _unfinished(frame["status"].map(row_status))
    if not left.empty:
        # The summary counts the rows sent again; these others make the exit 1 too.
        counts = ", ".join(
            f"{status} {count}" for status, count in sorted(left.value_counts().items())
        )
        log.warning(
            "the file still holds %d row(s) not finished (%s): `jogg-batch report %s` lists "
            "them and what to do",
            len(left),
            counts,
            shlex.quote(str(config.results)),
        )
    if summary.exit_code == ExitCode.OK and not left.empty:
        summary.exit_code = int(ExitCode.ROWS_FAILED)  # as a run of the whole file would say
    try:
        # Whether the file changed is asked just before the rename: writing it takes seconds.
        write_table(
            frame, config.results, read_as=version if config.results == config.catalog else None
        )
    except ResultsChanged:
        raise LocalIOError(
            f"{config.catalog}: changed while the retry went on (edited, replaced or moved), so "
            "it was not rewritten. What was sent is kept in the state: retry the file as it is "
            "now, and nothing accepted is sent again"
        ) from None
    except LocalIOError as exc:
        raise LocalIOError(
            f"{exc}: every outcome is kept in the state {config.state}, and a retry of "
            f"{config.catalog} (or with --results OTHER) sends nothing already accepted"
        ) from None
    summary.catalog = str(config.catalog)
    summary.results = str(config.results)
    runner.write_summary_json(config, summary)
    return summary


def _warn_of_rows_left_out(config: RunConfig, frame: pd.DataFrame) -> None:
    """Says which rows of the run that wrote the file are not in it and not paid for (deleted
    or filtered out by a person): this retry does not send them, and nothing else said so."""
    if "row" not in frame.columns:
        return
    with StateStore(config.state) as state:
        to_send = state.rows_left_to_send(storage.identity(config.catalog))
    present = set(pd.to_numeric(frame["row"], errors="coerce").dropna().astype(int))
    left_out = [row for row in to_send if row not in present]
    if left_out:
        shown = ", ".join(map(str, left_out[:10])) + (", ..." if len(left_out) > 10 else "")
        log.warning(
            "%s: %d row(s) of the run that wrote it are no longer in it and not paid for "
            "(rows %s): this retry does not send them; put them back, or run the catalog",
            config.catalog,
            len(left_out),
            shown,
        )


def _statuses(path: Location, frame: pd.DataFrame) -> pd.Series:
    """The rows' statuses as jogg-batch spells them (`Not attempted` is not_attempted: a person
    retyped it); CatalogError naming the rows whose status is none it writes, which retry would
    otherwise pass over in silence."""
    statuses = frame["status"].map(row_status)
    unknown = statuses.isna()
    if unknown.any():
        rows = ", ".join(_line_of(frame, index) for index in frame.index[unknown][:10])
        values = ", ".join(repr(str(v)) for v in frame["status"][unknown].unique()[:5])
        raise CatalogError(
            f"{path}: status {values} of {rows} is none jogg-batch writes; put back the status "
            f"the run wrote (one of {', '.join(ROW_ORDER)}), so that retry knows what to send"
        )
    return statuses


def _refuse_added(path: Location, frame: pd.DataFrame, todo: pd.DataFrame) -> None:
    """Rows to retry that no run wrote, added by hand: nothing says which request their run
    planned. A row whose `row` is empty or no number (or the cell was cleared); and one whose
    number another line has with other cells (a line copied, then edited: two files merged
    repeat rows, with the same cells, and those are duplicates)."""
    if "row" not in todo.columns or frame["row"].astype(str).str.strip().eq("").all():
        # A file cut down by hand (or written back from one: its `row` column is empty): its
        # rows cannot be named, and retry still serves.
        return
    numbers = todo["row"].astype(str).str.strip()
    unnumbered = ~numbers.str.fullmatch(r"\d+")
    if unnumbered.any():
        lines = ", ".join(_line_of(todo, index) for index in todo.index[unnumbered][:10])
        raise CatalogError(
            f"{path}: {lines} to retry {'has' if unnumbered.sum() == 1 else 'have'} no row "
            "number: retry takes the rows a run wrote. Add new rows to the catalog and run it; "
            "nothing was sent"
        )
    cells = frame.drop(columns=[c for c in WRITTEN_COLUMNS if c in frame.columns]).astype(str)
    hashed = pd.util.hash_pandas_object(cells.apply(lambda cell: cell.str.strip()), index=False)
    spellings = hashed.groupby(frame["row"].astype(str).str.strip()).nunique()
    repeated = todo.index[numbers.map(spellings).gt(1)]
    if len(repeated):
        lines = ", ".join(_line_of(todo, index) for index in repeated[:10])
        raise CatalogError(
            f"{path}: {lines} to retry {'shares its' if len(repeated) == 1 else 'share their'} "
            "row number with another line of other cells: a line copied, then edited? retry "
            "takes the rows a run wrote. Add new rows to the catalog and run it; nothing was "
            "sent"
        )


def _videos_named(todo: pd.DataFrame) -> dict[int, str]:
    """The video id cell of each row to retry that has one, by the retry's own row numbers
    (1, 2, ...): a row jogg-batch writes as failed, not attempted or planned has none, so one
    there was accepted before a person retyped its status."""
    if "video_id" not in todo.columns:
        return {}
    cells = todo["video_id"].astype(str).str.strip()
    return {n: cell for n, cell in enumerate(cells, start=1) if cell and cell != "nan"}


def _line_of(frame: pd.DataFrame, index: int) -> str:
    """A row of the results file as a spreadsheet shows it: its line (`read_results` numbers
    the rows below the header from 0), and its `row` when it has one."""
    line = index + 2
    number = str(frame.at[index, "row"]).strip() if "row" in frame.columns else ""
    return f"line {line} (row {number})" if number.isdigit() else f"line {line}"


def _named(todo: pd.DataFrame, number: int) -> str:
    """A row of the retry's own catalog (1, 2, ...) as the results file names it."""
    if "row" not in todo.columns:
        return _line_of(todo, todo.index[number - 1])
    return f"row {todo['row'].iloc[number - 1]}"


def _told(todo: pd.DataFrame, changed: dict[int, str], most: int = 10) -> str:
    """The first changed rows (the retry's own numbers -> what they ask otherwise) as the
    results file numbers them, each with its difference."""
    numbers = sorted(changed)
    told = [_named(todo, n) + (f" ({changed[n]})" if changed[n] else "") for n in numbers[:most]]
    more = f" and {len(numbers) - most} more" if len(numbers) > most else ""
    return ", ".join(told) + more


# The catalog column of each request field, where the two are named otherwise.
_FIELD_COLUMNS = {"name": "video_name"}
_PRODUCT_COLUMNS = ("product_url", "product_name", "description", "target_audience", "image_urls")


def _by_column(fields: payload.ResolvedFields) -> dict[str, object]:
    values = {
        _FIELD_COLUMNS.get(name, name): value
        for name, value in fields._asdict().items()
        if name != "product"
    }
    details = fields.product or payload.ProductDetails(None, None, None, None, ())
    return values | dict(zip(_PRODUCT_COLUMNS, details, strict=True))


def _difference(now: payload.ResolvedFields, planned: payload.ResolvedFields) -> str:
    """What a row asks otherwise than its run planned: the first column whose value differs
    (as the request reads it: defaults filled in, ids and names normalised), both values."""
    ours, theirs = _by_column(now), _by_column(planned)
    differ = [column for column, value in ours.items() if theirs[column] != value]
    if not differ:
        return ""
    column = differ[0]
    more = f"; {len(differ) - 1} more column(s) differ" if len(differ) > 1 else ""
    return (
        f"{column}: {_shown(ours[column])} in the file, {_shown(theirs[column])} as its run "
        f"planned{more}"
    )


def _shown(value: object) -> str:
    if value is None or value == "" or value == ():
        return "empty"
    text = ", ".join(value) if isinstance(value, tuple) else str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _of_the_file(error: CatalogError, subset: Path, results: Location) -> CatalogError:
    """The rows to retry are a catalog of their own here; the person knows the results file."""

    def told(text: str) -> str:
        return text.replace(str(subset), f"{results} (its rows to retry)")

    return CatalogError(
        f"{told(str(error))}. If its run was given a settings file (--config: column names, "
        "defaults), retry with the same --config",
        problems=tuple(map(told, error.problems)),
    )


def _unfinished(statuses: pd.Series) -> pd.Series:
    """The statuses that make a run of the file exit 1: failed, invalid, unknown, not
    attempted."""
    return statuses[statuses.isin(UNFINISHED_ROWS)]


def _nothing_to_retry(config: RunConfig, statuses: pd.Series) -> RunSummary:
    """The summary of a retry that sends nothing: the file's rows as they are, left unwritten."""
    counts = statuses.value_counts()
    summary = RunSummary(
        catalog=str(config.catalog),
        results=str(config.catalog),
        state=str(config.state),
        dry_run=config.dry_run,
        plan=PlanCounts(),
        statuses={str(status): int(count) for status, count in sorted(counts.items())},
        exit_code=0 if _unfinished(statuses).empty else 1,  # as the run's would be
    )
    runner.write_summary_json(config, summary)
    return summary


def _merge(frame: pd.DataFrame, todo: pd.DataFrame, retried: pd.DataFrame) -> None:
    """The retried rows' outcomes into `frame`, in place, with their row numbers as the file's.

    A duplicate row's message names its first row; the retry numbered its own rows, so those
    are named by the file's numbers again. A duplicate row left out of the retry shows the
    outcome of the row it repeats (its video), which the retry may just have changed.
    """
    outcome_columns = [c for c in RESULT_COLUMNS if c in retried.columns and c != "row"]
    for column in outcome_columns:
        if column not in frame.columns:  # a file cut down by hand gets them back
            frame[column] = ""
    for position, original in enumerate(todo.index):
        for column in outcome_columns:
            frame.at[original, column] = retried.iloc[position][column]
    if "row" not in frame.columns:
        return  # a file cut down by hand: its rows cannot be named
    numbers = [str(number) for number in todo["row"]]
    for original in todo.index:
        if (subset_row := duplicated_row(frame.at[original, "message"])) is not None:
            frame.at[original, "message"] = duplicate_of(int(numbers[subset_row - 1]))
    by_number = dict(zip(numbers, todo.index, strict=True))
    shared = [c for c in outcome_columns if c not in ("status", "message")]
    for index in frame.index[frame["status"] == "duplicate"]:
        first = by_number.get(str(duplicated_row(frame.at[index, "message"])))
        if first is not None and index not in todo.index:
            frame.loc[index, shared] = frame.loc[first, shared]


def _refuse_cut_cells(path: Location, inputs: pd.DataFrame, rows: pd.Series) -> None:
    """A workbook cuts a cell at Excel's 32,767 characters: a row rebuilt from a cut cell would
    be another request (another paid video) than the one its run planned."""
    for column in inputs.columns:
        cut = inputs[column].astype(str).str.len() >= xlsx.MAX_CELL
        if cut.any():
            row = rows[cut].iloc[0]
            raise CatalogError(
                f"{path}: row {row}, column {column!r} holds {xlsx.MAX_CELL:,} characters, "
                "Excel's most: the workbook cut it, and the rebuilt request would not be the "
                "one the run planned. Retry from a .csv or .parquet results file, or run the "
                "catalog again"
            )


def _run_options(config: RunConfig, frame: pd.DataFrame) -> CatalogOptions:
    """The request defaults and column mapping of the newest run in the state that wrote the
    results file `config.catalog` (`frame`), or of the run whose rows held the videos it lists
    (a copy, a renamed file); the settings' (with a warning) when the state knows none."""
    settings = config.catalog_options
    with StateStore(config.state) as state:
        recorded = state.run_defaults(storage.identity(config.catalog))
        if recorded is None and (videos := _listed_videos(frame)):
            recorded = state.defaults_of_videos(videos)
    if recorded is not None:
        try:
            options = request_settings_from_json(recorded, settings)
        except ValueError as exc:
            log.warning("%s: the state's record of its run is unreadable: %s", config.catalog, exc)
        else:
            if (options.defaults, options.columns) != (settings.defaults, settings.columns):
                log.warning(
                    "%s: its rows are rebuilt with the request defaults and column names of the "
                    "run that wrote it, not the settings' (which differ): the requests that run "
                    "planned",
                    config.catalog,
                )
            return options
    log.warning(
        "%s: no run in the state %s wrote this results file (it was moved or copied, or written "
        "with another state): its rows are rebuilt with the settings' request defaults and "
        "column names. If the run was given others (--length, --aspect-ratio, a --config with "
        "[defaults] or [columns]), retry with the same --config: otherwise those rows are new "
        "requests, paid again",
        config.catalog,
        config.state,
    )
    return settings


def _listed_videos(frame: pd.DataFrame, most: int = 20) -> list[tuple[int, str]]:
    """(row, video id) of the first rows of a results file that name a video."""
    if "video_id" not in frame.columns or "row" not in frame.columns:
        return []
    named = frame[frame["video_id"].str.strip().ne("") & frame["row"].str.fullmatch(r"\d+")]
    return [
        (int(row), video.strip()) for row, video in named[["row", "video_id"]].head(most).values
    ]


class _Asked(NamedTuple):
    """The rows to retry, by the retry's own row numbers: by status, and their video ids."""

    unknown: set[int]
    recorded: set[int]  # failed or not attempted, as their run recorded them
    planned: set[int]  # a dry run's
    videos: dict[int, str]  # `_videos_named`


class _Checked(NamedTuple):
    """`_check_requests`: rows to refuse, by kind, and the catalog the rows came from."""

    drifted: list[int]
    changed: dict[int, str]  # row -> what it asks otherwise than its run planned (`_difference`)
    superseded: list[int]
    catalog: str | None  # recorded with the retry's run (`StateStore.catalog_retried`)


def _check_requests(config: RunConfig, results: str, asked: _Asked) -> _Checked:
    """The rows to retry (`config.catalog`, numbered from 1; a copy of those of the results
    file `results`), rebuilt as requests and held up against the ledger before anything is
    sent.

    Unknown rows the state has never seen become `unknown` jobs: reconciled before resending
    (not in a dry run, which writes nothing to the ledger). Drifted: an unknown row whose
    request is not the uncertain one the state holds for its row key: the file no longer gives
    what was sent (a workbook wrote a typed cell back otherwise, a person edited it), and
    sending it would be another paid video while the first may have been accepted. Those are
    not entered.

    Changed: a row its run recorded (`recorded`: failed or not attempted; a dry run records
    none) whose request the ledger does not hold while it holds requests of its row key: its run
    planned another one (a spreadsheet turned 00123 into 123, a workbook wrote
    a date back otherwise, the file was retried with other defaults). Sending it, then running
    the catalog, would pay for the row twice. A row key the ledger does not know (a file from
    another machine) passes: nothing planned it here. So is a row whose video id the ledger
    has for another request than the row's (a paid row edited, its status retyped): sending it
    would pay for a request no run planned, and the file would lose the video it had.

    Superseded: a recorded, unknown or planned (a dry run's) row whose request a later run of
    the catalog asked otherwise for (`StateStore.asked_otherwise_later`): the file is older
    than the catalog's correction, and the row was paid for as corrected.
    """
    drifted: list[int] = []
    planned_by: dict[int, int] = {}  # a changed row -> the job its run planned
    asking: dict[int, payload.ResolvedFields] = {}  # a changed row -> what it asks now
    unknown, recorded, planned = asked.unknown, asked.recorded, asked.planned
    wanted = recorded | unknown | planned
    questions: list[tuple[int, AskedRow]] = []  # (row, its request), held up against later runs
    with StateStore(config.state) as state:
        dry_run = state.dry_run_that_wrote(results)
        made_for = state.jobs_of_videos(list(asked.videos.values()))
        for batch in catalog.read_catalog(config.catalog, config.catalog_options):
            rows = batch.rows
            held = [r for r in rows if r.number in wanted and r.fingerprint]
            # A file an earlier version wrote: its jobs are under the fingerprint its raw text
            # (NFD, CRLF) gave, as planning finds them.
            earlier = {r.number: rows.earlier_fingerprints(r.number - rows.first) for r in held}
            known = state.jobs_by_fingerprint(
                [r.fingerprint for r in held if r.fingerprint]
                + [old for olds in earlier.values() for old in olds]
            )
            jobs = {}
            for r in held:
                found = [fp for fp in (r.fingerprint, *earlier[r.number]) if fp in known]
                if found:
                    jobs[r.number] = known[found[0]]
            questions += [
                (r.number, AskedRow(r.key, jobs[r.number].id, None))
                if r.number in jobs
                else (r.number, AskedRow(r.key, None, dry_run))
                for r in held
                if r.number in jobs or r.number in planned
            ]
            others = [r for r in held if r.number in recorded and r.number not in jobs]
            newest = state.newest_jobs_of_keys([r.key for r in others if r.key])
            planned_by |= {r.number: newest[r.key] for r in others if r.key in newest}
            for r in held:
                video = asked.videos.get(r.number)
                if video in made_for and (
                    r.number not in jobs or jobs[r.number].id != made_for[video]
                ):
                    planned_by.setdefault(r.number, made_for[video])
            asking |= {r.number: r.fields for r in held if r.number in planned_by and r.fields}
            for row in held:
                if row.number not in unknown or row.fingerprint is None or row.fields is None:
                    continue
                uncertain = state.uncertain_fingerprints(row.key)
                if uncertain and not uncertain & {row.fingerprint, *earlier[row.number]}:
                    drifted.append(row.number)
                    continue
                if config.dry_run or row.number in jobs:
                    continue  # a dry run leaves the ledger as it was; a known job is entered
                state.enter_unknown(
                    NewJob(
                        row.fingerprint,
                        row.key,
                        payload.fields_to_json(row.fields),
                        tag_for(row.fingerprint),
                        earlier[row.number],
                    )
                )
        # Once for the whole file: each later run's jobs are read once, however many batches.
        gone = state.asked_otherwise_later([question for _, question in questions])
        superseded = [number for i, (number, _) in enumerate(questions) if i in gone]
        job_ids = [question.job_id for _, question in questions if question.job_id is not None]
        catalog_retried = state.catalog_retried(results, job_ids)
        planned_fields = state.fields_of_jobs(sorted(set(planned_by.values())))
    changed = {
        number: _difference(asking[number], planned_fields[job_id])
        if number in asking and job_id in planned_fields
        else ""
        for number, job_id in planned_by.items()
    }
    return _Checked(drifted, changed, superseded, catalog_retried)
