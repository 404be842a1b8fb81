"""Per-run outcomes: what the results file says of every catalog row, and the run's counts."""

from __future__ import annotations

from typing import Any

from batch.statuses import CODED_ROWS
from batch.store.connection import Connection

# What a row whose tag the account rendered more than once says, before its videos' ids.
DOUBLE_CHARGED = "double charge, raise it with JoggAI: videos "
# double_charges.video_ids is a JSON list of ids (letters, digits, dashes): spelt out as "a, b"
# with string functions both databases have.
_DOUBLE_CHARGE = (
    f"WHEN d.tag IS NOT NULL THEN '{DOUBLE_CHARGED}' || "
    "replace(replace(replace(replace(d.video_ids, '[', ''), ']', ''), '\"', ''), ',', ', ') "
)
# What the results file says of a row, from its plan (run_rows) and its job.
_RESULT_STATUS = """CASE
    WHEN r.row_status IN ('invalid', 'duplicate', 'blank') THEN r.row_status
    WHEN j.status = 'submitted' THEN
        CASE WHEN j.submitted_run = r.run_id THEN 'submitted' ELSE 'already_submitted' END
    WHEN j.status IN ('pending', 'not_attempted') THEN
        CASE WHEN r.row_status = 'planned' THEN 'planned' ELSE 'not_attempted' END
    WHEN j.status IN ('sending', 'reconciling', 'unknown') THEN 'unknown'
    ELSE j.status END"""


class OutcomeQueries(Connection):
    def outcome_rows(self, run_id: int, first: int, last: int) -> list[tuple[Any, ...]]:
        """Rows first..last of a run with their job's outcome, in catalog order, as tuples of
        `OUTCOME_FIELDS` (the results file is built from these columns, not row objects)."""
        # An account with no double charge (nearly every one) skips that join: a fifth of the
        # query's time on a million rows.
        charged = self._db.execute("SELECT EXISTS (SELECT 1 FROM double_charges)").fetchone()[0]
        message = (
            f"CASE WHEN r.detail IS NOT NULL THEN r.detail {_DOUBLE_CHARGE if charged else ''}"
        )
        rows = self._db.execute(
            f"SELECT r.row, {_RESULT_STATUS}, j.video_id, j.code, {message}ELSE j.message END, "
            "j.attempts, j.submitted_at, j.video_status, j.video_url, j.cover_url, j.duration, "
            "j.deducted_credit, j.error, j.completed_at, j.product_id "
            "FROM run_rows r LEFT JOIN jobs j ON j.id = r.job_id "
            f"{'LEFT JOIN double_charges d ON d.tag = j.tag ' if charged else ''}"
            "WHERE r.run_id = ? AND r.row BETWEEN ? AND ? ORDER BY r.row",
            (run_id, first, last),
        ).fetchall()
        return rows

    def count_rows(self, run_id: int) -> tuple[dict[str, int], dict[str, int]]:
        """A run's rows counted by result status, and its failed, unknown and invalid rows by
        code (or status), each sorted by name: what the summary prints, in one pass. Writing the
        results file counts the same on the way (`batch.store.results.OutcomeCounts`)."""
        statuses: dict[str, int] = {}
        codes: dict[str, int] = {}
        coded = ", ".join(f"'{status}'" for status in CODED_ROWS)
        for status, failure, count in self._db.execute(
            f"SELECT status, CASE WHEN status IN ({coded}) THEN coalesce(code, status) END, "
            f"count(*) FROM (SELECT {_RESULT_STATUS} AS status, CAST(j.code AS TEXT) AS code "
            "FROM run_rows r LEFT JOIN jobs j ON j.id = r.job_id WHERE r.run_id = ?) outcomes "
            "GROUP BY 1, 2",
            (run_id,),
        ):
            statuses[status] = statuses.get(status, 0) + count
            if failure is not None:
                codes[str(failure)] = codes.get(str(failure), 0) + count
        return dict(sorted(statuses.items())), dict(sorted(codes.items()))

    def run_attempt_times(self, run_id: int) -> list[float]:
        return [
            float(t)
            for (t,) in self._db.execute(
                "SELECT started_at FROM attempts WHERE run_id = ? ORDER BY started_at", (run_id,)
            )
        ]
