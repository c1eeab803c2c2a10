"""The document table every stage reads and writes (Parquet, one file per task).

Columns are only ever added downstream, never renamed; `id` is the WARC-Record-ID
and stays stable through every stage.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from shammie.pipeline import storage

DOCUMENT_SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),        # WARC-Record-ID, e.g. <urn:uuid:...>
    pa.field("text", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("dump", pa.string()),                      # CC snapshot, e.g. CC-MAIN-2024-22 ("unknown" if not derivable)
    pa.field("date", pa.string()),                      # WARC-Date, ISO 8601
    pa.field("language", pa.string()),                  # ISO 639-1 from fastText lid.176
    pa.field("language_score", pa.float64()),
    pa.field("warc_file", pa.string()),                 # the input WARC as given (path or URL)
    pa.field("warc_offset", pa.int64()),                # byte offset of the record in that WARC
])


def read_table(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=columns)


def write_table(table: pa.Table, url: str) -> None:
    """Write atomically (temporary name, then rename/PUT)."""
    with storage.atomic_write(url) as local:
        if table.num_rows == 0:
            # pq.write_table would write one row group of 0 rows, which `datasets` refuses to load
            # ("BatchSize must be greater than 0"); a writer closed before any write has none.
            pq.ParquetWriter(local, table.schema, compression="zstd").close()
        else:
            pq.write_table(table, local, compression="zstd")


def empty_documents() -> pa.Table:
    return DOCUMENT_SCHEMA.empty_table()
