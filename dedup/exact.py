"""Exact-duplicate removal: one document per normalised text, per snapshot (documents/ -> exact-deduped/).

The cheap pass every peer pipeline runs before MinHash: the text is normalised as the
MinHash signatures normalise it (FineWeb's simplify_text, then whitespace words), hashed
to 64 bits (xxh3, seeded by the snapshot unless across snapshots), and in each hash the
first document (by input file name, then row) is kept.

It runs as a shuffle through files, so no process holds a per-document array of the
whole input (docs/dedup.md, "How it runs"):

1. **hash** (one task per input file): each row's hash and document number, written as
   one partitioned file grouped by hash range (`pipeline.partitioned`);
2. **reduce** (one task per hash range): that range of every hash file, sorted; every
   document after the first of a hash is a copy. Writes the copies grouped by the input
   file they belong to, and the (first, copy) edges MinHash dedup adds to its clusters;
3. the consumer of file i (the exact-dedup filter, or dedup's signature task) reads
   partition i of every reduce output: its own copies, nothing else.

Documents are numbered by (input file order, row): `offset(file) + row`, with offsets
from the row counts the upstream stage recorded, so map tasks can number their rows
before anything else has run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shammie.dedup.arrays import load_npy, save_npy
from shammie.dedup.signatures import normalise_words
from shammie.pipeline import documents, jobdir, partitioned, storage
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, InputFile, Task, read_documents

HASH_RECORD = np.dtype([("hash", "<u8"), ("doc", "<i8")])
DOC_RECORD = np.dtype([("doc", "<i8")])
# Reduce tasks sort at most this many (hash, document) pairs each (16 bytes each plus the
# sort's buffers); the number of hash ranges is the smallest power of two that keeps them below.
MAX_RANGE_DOCS = 4_000_000
FILES = "files.npy"


@dataclass(frozen=True)
class ExactDedupOptions:
    job: str = option(help="job directory with a complete documents/ folder", kind="output", positional=True,
                      metavar="DIR", yaml=False)
    across_snapshots: bool = option(False, help="one copy in the whole input instead of one per snapshot")
    input_stage: str | None = option(None, help="document folder to read (default: documents/)", metavar="STAGE")


# --------------------------------------------------------------------------- numbering and ranges

def numbered_tasks(inputs: list[InputFile], out: str) -> list[Task]:
    """One task per input file, carrying its position, first document number and row count.

    Row counts come from the upstream `_SUCCESS` manifest; a folder written without them
    (an older Shammie) has each file's Parquet footer read here instead (one small read per file)."""
    import pyarrow.parquet as pq

    tasks, offset = [], 0
    for i, f in enumerate(inputs):
        rows = f.fingerprint.get("rows")
        if rows is None:
            fs, path = storage.get_fs(f.url)
            with fs.open(path, "rb") as fh:
                rows = pq.read_metadata(fh).num_rows
        tasks.append(Task(f.name.removesuffix(".parquet"),
                          {"input": f.url, "output": storage.join(out, f.name), "index": i, "offset": offset,
                           "rows": int(rows)}, (f.name,)))
        offset += int(rows)
    return tasks


def range_bits(documents_count: int, max_range_docs: int) -> int:
    """log2 of the number of hash ranges so that one range holds <= max_range_docs documents (uniform hashes)."""
    bits = 0
    while (documents_count >> bits) > max_range_docs:
        bits += 1
    return bits


def key_range(keys: np.ndarray, bits: int) -> np.ndarray:
    """The range of each 64-bit key: its top `bits` bits."""
    if bits == 0:
        return np.zeros(keys.shape[0], dtype=np.int64)
    return (keys >> np.uint64(64 - bits)).astype(np.int64)


def write_file_offsets(work_url: str, tasks: list[Task]) -> str:
    """Document-number bounds of the input files (F + 1 values): how reducers route a document to its file."""
    end = tasks[-1].payload["offset"] + tasks[-1].payload["rows"] if tasks else 0
    offsets = np.array([t.payload["offset"] for t in tasks] + [end], dtype=np.int64)
    url = storage.join(work_url, FILES)
    save_npy(url, offsets)
    return url


def file_of(docs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.searchsorted(offsets, docs, side="right") - 1


# --------------------------------------------------------------------------- tasks

def text_hashes(texts: list[str], dumps: list[str], across_snapshots: bool) -> np.ndarray:
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(b" ".join(normalise_words(t or "")),
                                                 seed=0 if across_snapshots else xxhash.xxh32_intdigest((d or "").encode()))
                        for t, d in zip(texts, dumps)), dtype=np.uint64, count=len(texts))


def hash_task(p: dict) -> dict:
    """One input file -> its (hash, document number) pairs, grouped by hash range."""
    cpu = time.process_time()
    table = read_documents(p["input"], columns=["text", "dump"])
    hashes = text_hashes(table["text"].to_pylist(), table["dump"].to_pylist(), p["across"])
    records = np.empty(hashes.size, dtype=HASH_RECORD)
    records["hash"] = hashes
    records["doc"] = p["offset"] + np.arange(hashes.size, dtype=np.int64)
    partitioned.write_partitioned(p["output"], records, key_range(hashes, p["bits"]), 1 << p["bits"])
    return {"documents": int(hashes.size), "cpu_seconds": time.process_time() - cpu}


def reduce_task(p: dict) -> dict:
    """One hash range of every file -> the copies (by file) and (first copy, copy) edges."""
    cpu = time.process_time()
    urls = [storage.join(p["hashes"], f"{i:05d}.prt") for i in range(p["files"])]
    records = partitioned.read_partition_of_all(urls, p["range"], HASH_RECORD)
    order = np.lexsort((records["doc"], records["hash"]))
    hashes, docs = records["hash"][order], records["doc"][order]
    del records, order
    new = np.ones(hashes.size, dtype=bool)
    new[1:] = hashes[1:] != hashes[:-1]
    first = docs[np.maximum.accumulate(np.where(new, np.arange(hashes.size), 0))] if hashes.size else docs
    copies = docs[~new]
    save_npy(p["edges"], np.stack([first[~new], copies], axis=1) if copies.size else np.empty((0, 2), np.int64))
    offsets = load_npy(p["offsets"])
    out = np.empty(copies.size, dtype=DOC_RECORD)
    out["doc"] = copies
    partitioned.write_partitioned(p["copies"], out, file_of(copies, offsets), p["files"])
    return {"documents": int(docs.size), "copies": int(copies.size), "bytes_read": int(docs.size) * HASH_RECORD.itemsize,
            "cpu_seconds": time.process_time() - cpu}


def copy_mask(copies_dir: str, ranges: int, index: int, offset: int, rows: int) -> np.ndarray:
    """True for the rows of input file `index` that are exact copies of an earlier document."""
    urls = [storage.join(copies_dir, f"r{r:05d}.prt") for r in range(ranges)]
    docs = partitioned.read_partition_of_all(urls, index, DOC_RECORD)["doc"] - offset
    if docs.size and (docs.min() < 0 or docs.max() >= rows):
        raise RuntimeError(f"exact-duplicate work files do not match input file {index}; re-run the same command")
    mask = np.zeros(rows, dtype=bool)
    mask[docs] = True
    return mask


# --------------------------------------------------------------------------- the pass, for any stage

@dataclass
class ExactPass:
    """Where the exact pass of one run keeps its files (inside the stage's work folder)."""

    work: str        # URL of the work folder
    folder: str      # the work folder relative to the stage output (task markers live under it)
    bits: int
    files: int

    @property
    def ranges(self) -> int:
        return 1 << self.bits

    @property
    def copies_dir(self) -> str:
        return storage.join(self.work, "exact", "copies")

    def edge_urls(self) -> list[str]:
        return [storage.join(self.work, "exact", "edges", f"r{r:05d}.npy") for r in range(self.ranges)]

    def copy_mask(self, payload: dict) -> np.ndarray:
        return copy_mask(self.copies_dir, self.ranges, payload["index"], payload["offset"], payload["rows"])

    def run(self, ctx, tasks: list[Task], across: bool, offsets_url: str, stats: dict) -> dict[str, dict]:
        """Hash every file, then reduce every range; adds per-phase stats to `stats`, returns the
        reduce tasks' results (their `copies` add up to the exact edges)."""
        hashes = storage.join(self.work, "exact", "hashes")
        t = time.monotonic()
        hashed = ctx.run_tasks([
            Task(f"{t_.payload['index']:05d}", {"input": t_.payload["input"], "offset": t_.payload["offset"],
                                                 "across": across, "bits": self.bits,
                                                 "output": storage.join(hashes, f"{t_.payload['index']:05d}.prt")},
                 (f"{self.folder}/exact/hashes/{t_.payload['index']:05d}.prt",))
            for t_ in tasks], hash_task, folder=f"{self.folder}/exact/hashes", desc="exact duplicates: hash")
        stats["exact_hash"] = phase_stats(hashed, time.monotonic() - t)
        t = time.monotonic()
        reduced = ctx.run_tasks([
            Task(f"r{r:05d}", {"hashes": hashes, "files": self.files, "range": r, "offsets": offsets_url,
                               "copies": storage.join(self.copies_dir, f"r{r:05d}.prt"),
                               "edges": self.edge_urls()[r]},
                 (f"{self.folder}/exact/copies/r{r:05d}.prt", f"{self.folder}/exact/edges/r{r:05d}.npy"))
            for r in range(self.ranges)], reduce_task, folder=f"{self.folder}/exact/reduce",
            desc="exact duplicates: find copies")
        stats["exact_reduce"] = phase_stats(reduced, time.monotonic() - t)
        return reduced


def phase_stats(results: dict[str, dict], seconds: float) -> dict:
    """Wall seconds, tasks and the CPU seconds the tasks measured themselves."""
    cpu = sum(float(r.get("cpu_seconds", 0.0) or 0.0) for r in results.values())
    stats = {"seconds": round(seconds, 3), "tasks": len(results), "cpu_seconds": round(cpu, 3)}
    if any("bytes_read" in r for r in results.values()):
        stats["bytes_read"] = sum(int(r.get("bytes_read", 0)) for r in results.values())
    return stats


def filter_task(p: dict) -> dict:
    table = read_documents(p["input"])
    if table.num_rows != p["rows"]:
        raise RuntimeError(f"{p['input']} has {table.num_rows} rows, {p['rows']} were recorded; it changed while "
                           "exact-dedup ran: run the same command again")
    keep = ~copy_mask(p["copies"], p["ranges"], p["index"], p["offset"], p["rows"])
    documents.write_table(table.filter(keep), p["output"])
    return {"documents": int(keep.sum()), "removed": int((~keep).sum())}


class ExactDedupStage(DocumentStage):
    """Remove exact duplicates (same normalised text), keeping the first, per snapshot."""

    name = "exact_dedup"
    output = jobdir.EXACT_DEDUPED
    Options = ExactDedupOptions
    WORK = "_work"

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        return numbered_tasks(inputs, out)

    def execute(self, ctx) -> dict[str, dict]:
        tasks = ctx.tasks
        documents_count = sum(t.payload["rows"] for t in tasks)
        work = storage.join(ctx.out, self.WORK)
        exact = ExactPass(work, self.WORK, range_bits(documents_count, MAX_RANGE_DOCS), len(tasks))
        offsets_url = write_file_offsets(work, tasks)
        exact.run(ctx, tasks, self.options.across_snapshots, offsets_url, {})
        filters = [Task(t.name, {**t.payload, "copies": exact.copies_dir, "ranges": exact.ranges}, t.outputs)
                   for t in tasks]
        results = ctx.run_tasks(filters, filter_task, desc="exact dedup 3/3 filter")
        storage.remove(work)
        return results

    def summarize(self, results: dict[str, dict]) -> dict:
        kept = sum(r["documents"] for r in results.values())
        removed = sum(r["removed"] for r in results.values())
        return {"documents": kept, "documents_in": kept + removed, "removed": removed, "kept": kept,
                "scope": "across snapshots" if self.options.across_snapshots else "per snapshot",
                "input_stage": self.input_stage(), "files": len(results)}

    def describe(self, section: dict) -> str:
        return (f"exact dedup ({section['scope']}): {section['documents_in']} documents in, {section['removed']} "
                f"exact duplicates removed, {section['kept']} kept -> {self.output}/")
