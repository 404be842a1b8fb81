"""Every status a job or a results row can have, and the sets the rest of the code asks about.

A *job* is one distinct request in the state (see batch.state for its life); a *row* of the
results file says what happened to one catalog row. Both are `Literal` types, so mypy catches a
misspelt status wherever one is written.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

JobStatus = Literal[
    "pending", "sending", "submitted", "failed", "reconciling", "unknown", "not_attempted"
]
RowStatus = Literal[
    "submitted",
    "already_submitted",
    "failed",
    "invalid",
    "unknown",
    "duplicate",
    "blank",
    "not_attempted",
    "planned",
]

# Jobs whose last request may have been accepted: looked up before anything is sent again.
UNCERTAIN: Final[frozenset[JobStatus]] = frozenset({"sending", "reconciling", "unknown"})
# Rows that make a run exit 1: something is left to do or to look at.
UNFINISHED_ROWS: Final[frozenset[RowStatus]] = frozenset(
    {"failed", "invalid", "unknown", "not_attempted"}
)
# Rows the summary also counts by failure code (without one, by their status).
CODED_ROWS: Final[tuple[RowStatus, ...]] = ("failed", "unknown", "invalid")
# Rows whose request the API accepted: each has the video id of its render.
ACCEPTED_ROWS: Final[frozenset[RowStatus]] = frozenset({"submitted", "already_submitted"})
# Rows `jogg-batch retry` runs again (`planned`: a dry run's, never sent).
RETRY_ROWS: Final[frozenset[RowStatus]] = frozenset(
    {"failed", "not_attempted", "unknown", "planned"}
)
# The order in which reports list row statuses: as the type lists them.
ROW_ORDER: Final[tuple[RowStatus, ...]] = get_args(RowStatus)

_DUPLICATE_OF: Final = re.compile(r"same request as row (\d+)")


def row_status(text: object) -> RowStatus | None:
    """A results row's status as a person may have retyped it (`Not attempted`, `FAILED `), or
    None when it is none jogg-batch writes."""
    folded = re.sub(r"[\s-]+", "_", str(text).strip().lower())
    return folded if folded in ROW_ORDER else None


def duplicate_of(row: int) -> str:
    """A duplicate row's message: the row (number) whose job it shares."""
    return f"same request as row {row}"


def duplicated_row(message: object) -> int | None:
    """The row a duplicate row's message names (`duplicate_of`), or None."""
    found = _DUPLICATE_OF.fullmatch(message) if isinstance(message, str) else None
    return None if found is None else int(found.group(1))
