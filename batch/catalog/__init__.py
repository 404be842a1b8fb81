"""Reading and normalising catalogs: CSV, Parquet, JSON Lines or spreadsheets in, batches of
resolved rows out.

Owns the catalog file formats, the mapping of headers to canonical columns, the normalisation of
what people type into request values (with row problems for what cannot be sent), video-name
templates, and the pass-through of the original columns for the results file. Reads in record
batches, so memory stays flat and the first batch is ready quickly whatever the catalog size.
A file that cannot be read at all raises `CatalogError`; a bad row is a row with problems.
`check_structure` reads the whole file for shape (quoting, encoding, row widths, headers) before
anything is sent, so that such a file is refused with its line and row while nothing is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pyarrow as pa

from batch.catalog.normalize import (
    CANONICAL_COLUMNS,
    ColumnPlan,
    plan_columns,
    refuse_doubtful_columns,
    refuse_nested_requests,
    resolve_rows,
)
from batch.catalog.readers import FIRST_BATCH_ROWS, JSON_IN_TEXT, open_source
from batch.catalog.rows import (
    CatalogBatch,
    CatalogFormat,
    CatalogOptions,
    CatalogRow,
    ResolvedRows,
    RowProblem,
)
from batch.catalog.structure import check_structure
from batch.payload import RequestDefaults
from batch.storage import Location

__all__ = [
    "CANONICAL_COLUMNS",
    "FIRST_BATCH_ROWS",
    "CatalogBatch",
    "CatalogFormat",
    "CatalogOptions",
    "CatalogRow",
    "ResolvedRows",
    "RowProblem",
    "check_structure",
    "read_catalog",
    "read_passthrough",
]


def read_catalog(path: Location, options: CatalogOptions) -> Iterator[CatalogBatch]:
    """The catalog's rows in batches of `options.batch_rows`, numbered from 1 across batches.

    The file and its columns are checked now (CatalogError); rows are read as batches are taken.
    """
    source = open_source(path, options)
    plan = plan_columns(path, source.headers, options, source.structs)
    json_in_text = {f.name for f in source.schema or () if f.metadata == JSON_IN_TEXT}
    plan = replace(plan, json_in_text=frozenset(json_in_text))
    return _batches(path, source.tables, plan, options.defaults, source.place)


def _batches(
    path: Location,
    tables: Iterator[pa.Table],
    plan: ColumnPlan,
    defaults: RequestDefaults,
    place: Callable[[int], str],
) -> Iterator[CatalogBatch]:
    first = 1
    for table in tables:
        refuse_nested_requests(path, table, plan)
        refuse_doubtful_columns(path, table, plan)
        yield CatalogBatch(resolve_rows(table, plan, defaults, first), table, place)
        first += table.num_rows


def read_passthrough(path: Location, options: CatalogOptions) -> Iterator[pa.Table]:
    """The original columns untouched (CSV cells as typed), in the same batches as read_catalog;
    a catalog without rows gives one empty table, so its columns still reach the results file."""
    source = open_source(path, options)
    plan_columns(path, source.headers, options, source.structs)
    return _at_least_one(source.tables, source.empty_table)


def _at_least_one(tables: Iterator[pa.Table], empty: Callable[[], pa.Table]) -> Iterator[pa.Table]:
    given = False
    for table in tables:
        given = True
        yield table
    if not given:
        yield empty()
