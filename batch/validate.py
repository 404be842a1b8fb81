"""Validation of a catalog: every problem of every row, by row and column, sending nothing."""

from __future__ import annotations

from collections.abc import Iterator

from batch.catalog import CatalogOptions, read_catalog
from batch.preflight import Preflight
from batch.storage import Location


def problems(
    path: Location, options: CatalogOptions, preflight: Preflight | None = None
) -> Iterator[str]:
    """One line per problem: "catalog.csv row 7, column 'length': ...". With a pre-flight, ids and
    names are also checked against the account's look-ups (GET requests only)."""
    for batch in read_catalog(path, options):
        for row in batch.rows:
            checked = row if preflight is None else preflight.check(row)
            for problem in checked.problems:
                yield problem.message(path, row.number, batch.place(row.number))
