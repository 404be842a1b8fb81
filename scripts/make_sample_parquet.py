"""Write sample_data/catalog.parquet from sample_data/catalog.csv (run from the repository root).

The same rows, stored the way pandas and Spark write Parquet: several row groups, dictionary-encoded
strings, a float price, and a nullable integer music_id; other cells stay text as typed.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

SOURCE = Path("sample_data/catalog.csv")
TARGET = Path("sample_data/catalog.parquet")


def main() -> None:
    header = SOURCE.read_text(encoding="utf-8").splitlines()[0].split(",")
    table = pa_csv.read_csv(
        SOURCE,
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
        ),
    )
    price = table.column("price").cast(pa.float64())
    music = pc.if_else(pc.equal(table.column("music_id"), ""), None, table.column("music_id"))
    table = table.set_column(header.index("price"), "price", price)
    table = table.set_column(header.index("music_id"), "music_id", music.cast(pa.int64()))
    pq.write_table(table, TARGET, row_group_size=20, use_dictionary=True, compression="zstd")
    print(f"wrote {TARGET} ({table.num_rows} rows)")


if __name__ == "__main__":
    main()
