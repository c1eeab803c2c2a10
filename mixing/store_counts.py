"""Global domain-key counts for `shard --group-by`, reduced in tasks rather than in the driver.

Folding (`--top-k`, default 100 for `site`) needs every raw key's document count over
the whole input before a tokenize task can tell which domain a row goes to; without
`--top-k` the driver still needs the number of distinct keys (more than 1000 is refused).
Sending every file's distinct keys to the driver would hold all sites of a snapshot in
one process (~290 GB at 0.6B documents), so the counts go through a shuffle in files:

1. count (`count_task`, one task per contiguous group of input files): the raw key of
   every row, summed per key, written to `<dir>/<task:06d>.parquet` sorted by partition
   (xxh3-64 of the key mod `PARTITIONS`), one row group per partition. Returns only
   `rows` and `distinct`.
2. reduce (`reduce_task`, R tasks, R from the sum of the count tasks' distinct counts):
   reducer r reads from every count file only the row groups of its partitions (byte
   ranges, chosen by the row groups' min/max statistics), sums them per key with Arrow's
   group-by, and returns its distinct count plus its local top-K keys in the fold's
   total order (count descending, then key). A key lives in one partition only, so the
   global top-K is among the union of the local top-Ks: the driver ranks at most R x K
   keys (`fold_domains`). Without `--top-k` a reducer returns all its keys, or none once
   it alone has more than the 1000 a fold without `--top-k` allows.

Why hand-written: Ray Data's groupby would do the shuffle, but through its object
store (memory, spilling) and a dependency the pipeline does not otherwise use; the
same shape in Parquet files is ~100 lines and resumes with the other task markers.

Memory: a count task holds the distinct keys of its files; a reducer those of its
partitions (about total distinct / R, `KEYS_PER_REDUCER`, ~100 B each in Arrow); the
driver R x K keys (R x 1000 without --top-k) and one small dict per count task.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shammie.mixing import domains as dom
from shammie.pipeline import storage

# Hash partitions every count file is cut into; reducers take contiguous ranges of them.
PARTITIONS = 256
# Reducers are sized so each sums about this many keys (an upper bound: the count tasks'
# distinct keys summed, before keys shared between tasks are merged).
KEYS_PER_REDUCER = 4_000_000
# Arrow rows a reducer gathers before it folds them into its running sums.
REDUCE_BATCH_ROWS = 2_000_000
COUNT_SCHEMA = pa.schema([("partition", pa.int32()), ("key", pa.string()), ("count", pa.int64())])


def key_columns(group_by: str, names: Sequence[str]) -> list[str]:
    """The input columns `raw_domain_keys` reads for `group_by`, given the file's column names."""
    if group_by == "edu":
        return ["edu_int_score"] if "edu_int_score" in names else ["edu_score"]
    if group_by == "site":
        return ["url"]
    return [group_by]


def _read_keys(url: str, group_by: str) -> list[str | None]:
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        table = pf.read(columns=key_columns(group_by, pf.schema_arrow.names))
    return dom.raw_domain_keys(table, group_by)


def partition_of(keys: Sequence[str | None]) -> np.ndarray:
    """Stable partition of each key (the same in every process, unlike Python's salted hash())."""
    import xxhash

    return np.fromiter((0 if k is None else xxhash.xxh3_64_intdigest(k.encode("utf-8")) % PARTITIONS
                        for k in keys), dtype=np.int32, count=len(keys))


def count_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Input files -> one Parquet file of (partition, key, count), sorted by partition, a row group each."""
    start = time.monotonic()
    parts, rows = [], 0
    for url in payload["inputs"]:
        keys = _read_keys(url, payload["group_by"])
        rows += len(keys)
        parts.append(pa.table({"key": pa.array(keys, pa.string())}))
    keys = pa.concat_tables(parts) if parts else pa.table({"key": pa.array([], pa.string())})
    summed = keys.group_by("key").aggregate([([], "count_all")]).rename_columns(["key", "count"])
    counts = pa.table({"partition": pa.array(partition_of(summed.column("key").to_pylist()), pa.int32()),
                       "key": summed.column("key"), "count": summed.column("count").cast(pa.int64())},
                      schema=COUNT_SCHEMA)
    counts = counts.sort_by([("partition", "ascending")])
    _write_partitioned(counts, payload["output"])
    return {"rows": rows, "distinct": counts.num_rows, "seconds": round(time.monotonic() - start, 3)}


def _write_partitioned(counts: pa.Table, url: str) -> None:
    """One row group per non-empty partition, so a reducer's byte ranges hold only its keys."""
    with storage.atomic_write(url) as local:
        with pq.ParquetWriter(local, COUNT_SCHEMA, compression="zstd") as writer:
            parts = counts.column("partition").to_numpy()
            bounds = np.flatnonzero(np.diff(parts)) + 1
            for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(parts)]):
                if hi > lo:
                    writer.write_table(counts.slice(int(lo), int(hi - lo)))


def reducer_count(distinct_sum: int) -> int:
    return max(1, min(PARTITIONS, math.ceil(distinct_sum / KEYS_PER_REDUCER)))


def reducer_partitions(r: int, reducers: int) -> tuple[int, int]:
    """Partitions [lo, hi) of reducer r."""
    return PARTITIONS * r // reducers, PARTITIONS * (r + 1) // reducers


def _row_groups_in(pf: pq.ParquetFile, lo: int, hi: int) -> list[int]:
    column = pf.schema_arrow.get_field_index("partition")
    chosen = []
    for g in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max or (stats.min < hi and stats.max >= lo):
            chosen.append(g)
    return chosen


def _sum_keys(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.group_by("key").aggregate([("count", "sum")]).rename_columns(["key", "count"])


def reduce_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Sum partitions [lo, hi) over every count file; return the distinct count and the local top keys."""
    start = time.monotonic()
    lo, hi = payload["partitions"]
    summed: pa.Table | None = None
    batch: list[pa.Table] = []
    batch_rows = 0
    for i in range(payload["count_files"]):
        fs, path = storage.get_fs(storage.join(payload["dir"], f"{i:06d}.parquet"))
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            groups = _row_groups_in(pf, lo, hi)
            if not groups:
                continue
            part = pf.read_row_groups(groups, columns=["partition", "key", "count"])
        part = part.filter(pc.and_(pc.greater_equal(part.column("partition"), lo),
                                   pc.less(part.column("partition"), hi))).select(["key", "count"])
        batch.append(part)
        batch_rows += part.num_rows
        if batch_rows >= REDUCE_BATCH_ROWS:
            summed = _sum_keys(batch + ([summed] if summed is not None else []))
            batch, batch_rows = [], 0
    if batch or summed is None:
        summed = _sum_keys(batch + ([summed] if summed is not None else [])) if batch else \
            pa.table({"key": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    return {"distinct": summed.num_rows, "top": top_keys(summed, payload["top_k"]),
            "seconds": round(time.monotonic() - start, 3)}


def top_keys(summed: pa.Table, top_k: int | None) -> list[list]:
    """[key, count] of the keys the driver needs from one reducer.

    With `top_k`: the first `top_k` in DomainFolder's total order (count descending, then
    key): a key in the global top-K has fewer than K keys before it anywhere, so fewer
    than K in its own partition. Without: every key, unless there are more than the
    refusal limit (the driver then refuses on the distinct counts alone)."""
    if top_k is None:
        if summed.num_rows > dom.MAX_DOMAINS_WITHOUT_TOP_K:
            return []
        chosen = summed
    elif summed.num_rows <= top_k:
        chosen = summed
    else:
        counts = summed.column("count").to_numpy()
        cut = np.partition(counts, len(counts) - top_k)[len(counts) - top_k]  # the K-th largest count
        chosen = summed.filter(pc.greater_equal(summed.column("count"), cut))  # K keys plus any tied at the cut
    pairs = [[k, int(c)] for k, c in zip(chosen.column("key").to_pylist(), chosen.column("count").to_pylist())]
    pairs.sort(key=dom.rank_key)
    return pairs if top_k is None else pairs[:top_k]


def fold_domains(reduced: Sequence[dict[str, Any]], group_by: str, top_k: int | None) -> dom.DomainFolder:
    """The DomainFolder of the whole input from the reducers' results (exact: see the module docstring)."""
    from collections import Counter

    counts: Counter = Counter()
    for result in reduced:
        for key, count in result["top"]:
            counts[key] += count  # a key comes from one reducer only; += is just the insert
    return dom.DomainFolder(counts, group_by, top_k, distinct=sum(int(r["distinct"]) for r in reduced))
