"""Partitioned record files: the shuffle format between multi-pass phases (dedup, exact dedup).

A map task writes ONE file holding its records grouped by partition; a reduce task
reads only its partition (or a run of consecutive partitions) of every map file, with two
small ranged reads per file (the header and the partition's bounds, then its bytes), so the bytes read by a shuffle are one pass over
what the map side wrote, whatever the number of partitions. This is how datatrove's
MinHash stages split a band by hash range, and how Spark/Ray Data shuffle; it is
hand-written because neither offers a file format a Ray task can read one partition of
without reading (or listing) the rest, and pyarrow's Parquet row groups cost a footer
read plus per-group metadata for what is here two ranged GETs.

Layout (little-endian):

    b"SHPRT001"                 8 bytes magic
    P                           uint64, number of partitions
    row_bytes                   uint64, size of one record (checked against the reader's dtype)
    bounds[P + 1]               uint64, cumulative record counts: partition p is rows [bounds[p], bounds[p+1])
    records                     row-major numpy structured records, partition 0 first

Records within a partition keep the order they were given in (the sort is stable), so a
writer that sorts first gets sorted partitions.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from shammie.pipeline import storage

MAGIC = b"SHPRT001"
_HEADER = 24  # magic, P, row_bytes
# Ranged reads of many small partitions are latency-bound on object stores: a reduce task
# reads the files of its partition with this many requests in flight.
REMOTE_READ_THREADS = 16


def write_partitioned(url: str, records: np.ndarray, partition: np.ndarray, num_partitions: int) -> np.ndarray:
    """Write `records` grouped by `partition` (ints in [0, num_partitions)); return the bounds."""
    records = np.ascontiguousarray(records)
    partition = np.asarray(partition)
    if partition.shape != (records.shape[0],):
        raise ValueError("one partition number per record is required")
    if num_partitions < 1:
        raise ValueError("num_partitions must be >= 1")
    counts = np.bincount(partition, minlength=num_partitions) if partition.size else np.zeros(num_partitions, np.int64)
    if counts.size != num_partitions:
        raise ValueError(f"partition numbers must be < {num_partitions}")
    bounds = np.zeros(num_partitions + 1, dtype="<u8")
    np.cumsum(counts, out=bounds[1:])
    if num_partitions > 1 and partition.size:
        # numpy's stable sort is a radix sort for 16-bit keys: linear in the records
        keys = partition.astype(np.uint16) if num_partitions <= 1 << 16 else partition
        records = records[np.argsort(keys, kind="stable")]
    header = np.array([num_partitions, records.dtype.itemsize], dtype="<u8")
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        f.write(MAGIC)
        f.write(header.tobytes())
        f.write(bounds.tobytes())
        f.write(memoryview(records).cast("B") if records.size else b"")
    return bounds


def _check_header(url: str, head: bytes, dtype: np.dtype, p: int) -> int:
    if len(head) < _HEADER or head[:8] != MAGIC:
        raise ValueError(f"{url} is not a partitioned record file (bad magic); delete it and re-run")
    num_partitions, row_bytes = np.frombuffer(head[8:_HEADER], dtype="<u8").tolist()
    if row_bytes != dtype.itemsize:
        raise ValueError(f"{url}: records of {row_bytes} bytes, expected {dtype.itemsize}; delete it and re-run")
    if not 0 <= p < num_partitions:
        raise ValueError(f"{url}: no partition {p} (it has {num_partitions})")
    return int(num_partitions)


def read_partition_range(url: str, first: int, stop: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Partitions [first, stop) of one file in one read: (their records, the stop - first + 1
    record offsets of each partition within them). A copy, safe to keep after the file is gone."""
    dtype = np.dtype(dtype)
    if stop <= first:
        raise ValueError(f"empty partition range [{first}, {stop})")
    span = slice(_HEADER + 8 * first, _HEADER + 8 * (stop + 1))
    if not storage.is_remote(url):
        raw = np.memmap(storage.strip_file_scheme(url), dtype=np.uint8, mode="r")
        num_partitions = _check_header(url, bytes(raw[:_HEADER]), dtype, stop - 1)
        bounds = np.frombuffer(raw[span], dtype="<u8").astype(np.int64)
        data = _HEADER + 8 * (num_partitions + 1)
        out = np.frombuffer(raw[data + bounds[0] * dtype.itemsize:data + bounds[-1] * dtype.itemsize],
                            dtype=dtype).copy()
        del raw
        return out, bounds - bounds[0]
    fs, path = storage.get_fs(url)
    head, raw_bounds = fs.cat_ranges([path, path], [0, span.start], [_HEADER, span.stop])
    num_partitions = _check_header(url, head, dtype, stop - 1)
    bounds = np.frombuffer(raw_bounds, dtype="<u8").astype(np.int64)
    data = _HEADER + 8 * (num_partitions + 1)
    if bounds[-1] == bounds[0]:
        return np.empty(0, dtype=dtype), bounds - bounds[0]
    raw = fs.cat_file(path, start=data + int(bounds[0]) * dtype.itemsize, end=data + int(bounds[-1]) * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype).copy(), bounds - bounds[0]


def read_partition(url: str, p: int, dtype: np.dtype) -> np.ndarray:
    """Partition `p` of one file (a copy, safe to keep after the file is gone)."""
    return read_partition_range(url, p, p + 1, dtype)[0]


def read_partition_of_all(urls: Sequence[str], p: int, dtype: np.dtype, stop: int | None = None) -> np.ndarray:
    """Partition `p` (or partitions [p, stop)) of every file, concatenated in the order of `urls`."""
    dtype = np.dtype(dtype)
    stop = p + 1 if stop is None else stop

    def one(url: str) -> np.ndarray:
        return read_partition_range(url, p, stop, dtype)[0]

    if urls and storage.is_remote(urls[0]):
        with ThreadPoolExecutor(REMOTE_READ_THREADS) as pool:
            parts = list(pool.map(one, urls))
    else:
        parts = [one(u) for u in urls]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def partition_count(url: str) -> int:
    fs, path = storage.get_fs(url)
    head = fs.cat_file(path, start=0, end=_HEADER)
    if head[:8] != MAGIC:
        raise ValueError(f"{url} is not a partitioned record file")
    return int(np.frombuffer(head[8:16], dtype="<u8")[0])
