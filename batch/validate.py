"""Local validation of a catalog: every problem of every row, by row and column, sending nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from batch.catalog import CatalogOptions, read_catalog


def problems(path: Path, options: CatalogOptions) -> Iterator[str]:
    """One line per problem: 'catalog.csv row 7, column 'length': ...'."""
    for batch in read_catalog(path, options):
        for row in batch.rows:
            for problem in row.problems:
                yield problem.message(path, row.number)
