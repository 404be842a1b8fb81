"""Validation of a catalog (every problem of every row, by row and column, sending nothing), and
the checks a run passes before it sends anything."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from batch.catalog import CatalogOptions, check_structure, read_catalog, read_passthrough
from batch.config import RunConfig
from batch.outputs import check_outputs
from batch.preflight import Preflight
from batch.storage import Location
from batch.store import xlsx
from batch.store.results import WRITTEN_COLUMNS, results_format


def before_sending(config: RunConfig) -> None:
    """Everything that would stop a run part-way, refused before its first request: the
    catalog's structure and header (CatalogError) and the output paths (ConfigError)."""
    rows = check_structure(config.catalog, config.catalog_options)
    check_outputs(config, rows=rows)
    if results_format(config.results) == "xlsx":
        width = next(read_passthrough(config.catalog, config.catalog_options)).num_columns
        xlsx.check_fits(config.results, rows, width + len(WRITTEN_COLUMNS))


class Problem(NamedTuple):
    """One problem of one row, by its 1-based row number and the column as the catalog spells it."""

    row: int
    column: str
    value: str
    reason: str
    message: str  # the line people read: "catalog.csv row 7, column 'length': ..."


def problems(
    path: Location, options: CatalogOptions, preflight: Preflight | None = None
) -> Iterator[Problem]:
    """Every problem of every row. With a pre-flight, ids and names are also checked against the
    account's look-ups (GET requests only).

    A file `run` would refuse as a whole raises CatalogError first, as `run` does."""
    check_structure(path, options)
    for batch in read_catalog(path, options):
        for row in batch.rows:
            checked = row if preflight is None else preflight.check(row)
            for problem in checked.problems:
                yield Problem(
                    row.number,
                    problem.column,
                    problem.value,
                    problem.reason,
                    problem.message(path, row.number, batch.place(row.number)),
                )
