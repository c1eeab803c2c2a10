"""Exact-duplicate removal: one document per normalised text, per snapshot (documents/ -> exact-deduped/).

The cheap pass every peer pipeline runs before MinHash: the text is normalised as the
MinHash signatures normalise it (FineWeb's simplify_text, then its words: split on every
Unicode space, or by the language's word splitter for languages written without spaces,
`normalise_words`), the words joined by single spaces are hashed to 64 bits (xxh3, seeded by
the snapshot unless across snapshots), and in each hash the first document (by input file
name, then row) is kept. Equal hashes mean equal words, so an exact copy is also a MinHash
duplicate (same shingles) whenever it has shingles.

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

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from shammie.dedup.arrays import load_npy, save_npy
from shammie.dedup import history
from shammie.dedup.signatures import normalise_words, string_hash, word_settings
from shammie.filters.words import dedup_splitters, load_dedup_splitters
from shammie.pipeline import documents, jobdir, partitioned, storage
from shammie.pipeline.errors import InputError
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, InputFile, Phase, StepLabels, Task, read_documents

# The hash of the words is not salted: the snapshot is its own field (0 across snapshots), so the
# same hashes serve the dedup index that later jobs probe (dedup/history.py).
HASH_RECORD = np.dtype([("hash", "<u8"), ("snap", "<u8"), ("doc", "<i8")])
DOC_RECORD = np.dtype([("doc", "<i8")])
# Reduce tasks sort at most this many (hash, document) pairs each (16 bytes each plus the
# sort's buffers); the number of hash ranges is the smallest power of two that keeps them below.
MAX_RANGE_DOCS = 4_000_000
FILES = "files.npy"
PLAN = "plan.json"


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


# A map task (exact hashing, MinHash signatures) reads a run of consecutive input files of at most
# this many documents (one file at least): a reduce task then reads one partition per map task, so
# at 90k input files of ~30k documents the shuffles have ~3k map files instead of 90k (requests
# per reduce task divided by ~30). Small inputs keep one file per task (at most 1/256 of the input).
MAX_GROUP_DOCS = 1_000_000


def file_groups(tasks: list[Task], total: int, max_group_docs: int = MAX_GROUP_DOCS) -> list[list[Task]]:
    """Consecutive input files per map task: up to min(max_group_docs, total / 256) documents, one file at least.
    Depends on the input only (never on workers), so a resumed run plans the same groups."""
    target = max(1, min(max_group_docs, total // 256))
    groups: list[list[Task]] = []
    size = 0
    for t in tasks:
        if groups and size + t.payload["rows"] <= target:
            groups[-1].append(t)
            size += t.payload["rows"]
        else:
            groups.append([t])
            size = t.payload["rows"]
    return groups


def group_payload(group: list[Task]) -> list[dict]:
    """What a map task needs of each of its files."""
    return [{k: t.payload[k] for k in ("input", "index", "offset", "rows")} for t in group]


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


def start_work(work_url: str, plan: dict, also: tuple[str, ...] = ()) -> None:
    """Keep `work_url` (and the folders in `also` that its tasks write) only if they were made
    for this plan (key-range bits, map groups, ...).

    Work files are named by range and group numbers, so files of another plan (a resumed
    run with another --max-bucket-docs, or an older Shammie's layout) would pass their task
    markers under the same names and be read as if they were this plan's."""
    url = storage.join(work_url, PLAN)
    try:
        old = storage.read_json(url)
    except ValueError:
        old = None
    if old == plan:
        return
    for folder in (work_url, *also):
        if storage.exists(folder):
            storage.remove(folder)
    storage.write_json_atomic(url, plan)


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

def languages_of(table) -> list[str | None]:
    """The `language` column (the crawl's lid.176 code per row); all None for a table without one."""
    if "language" not in table.column_names:
        return [None] * table.num_rows
    return table.column("language").to_pylist()


def text_hashes(texts: list[str], languages: list[str | None] | None = None) -> np.ndarray:
    """The 64-bit hash of each text's normalised words (its language's words, see normalise_words)."""
    import xxhash

    splitters = dedup_splitters(languages) if languages is not None else [None] * len(texts)
    return np.fromiter((xxhash.xxh3_64_intdigest(b" ".join(normalise_words(t or "", split)))
                        for t, split in zip(texts, splitters)), dtype=np.uint64, count=len(texts))


def snapshot_hashes(dumps: list[str | None], across_snapshots: bool) -> np.ndarray:
    """The group each document is deduplicated within: its snapshot's hash, or 0 for all."""
    if across_snapshots:
        return np.zeros(len(dumps), dtype=np.uint64)
    of = {d: string_hash(d if d is not None else "unknown") for d in set(dumps)}
    return np.fromiter((of[d] for d in dumps), dtype=np.uint64, count=len(dumps))


def read_for_words(url: str, columns: list[str]):
    """A document file's `columns` plus its languages, with the languages' word splitters loaded
    (returns the table, the languages and the CPU seconds the loading took: a worker's set-up,
    billed apart from the documents)."""
    table = read_documents(url)
    languages = languages_of(table)
    setup = load_dedup_splitters(set(languages))
    return table.select(columns), languages, setup


def hash_task(p: dict) -> dict:
    """A run of input files -> their (hash, document number) pairs, grouped by hash range."""
    parts, setup = [], 0.0
    for f in p["files"]:
        table, languages, seconds = read_for_words(f["input"], ["text", "dump"])
        setup += seconds
        check_rows(f, table.num_rows)
        hashes = text_hashes(table["text"].to_pylist(), languages)
        records = np.empty(hashes.size, dtype=HASH_RECORD)
        records["hash"] = hashes
        records["snap"] = snapshot_hashes(table["dump"].to_pylist(), p["across"])
        records["doc"] = f["offset"] + np.arange(hashes.size, dtype=np.int64)
        parts.append(records)
    records = np.concatenate(parts) if parts else np.empty(0, dtype=HASH_RECORD)
    partitioned.write_partitioned(p["output"], records, key_range(records["hash"], p["bits"]), 1 << p["bits"])
    return {"documents": int(records.size), "setup_cpu_seconds": setup}


def check_rows(f: dict, rows: int) -> None:
    if rows != f["rows"]:
        raise InputError(f"{f['input']} has {rows} rows, its folder's _SUCCESS recorded {f['rows']}; it changed "
                         "after its stage finished: re-run that stage first")


def reduce_task(p: dict) -> dict:
    """One hash range of every file -> the copies (by file) and (first copy, copy) edges; with
    `earlier` (dedup --against) also edges to the earlier jobs' documents of the same text, and
    with `index` this job's exact index shard for the range (dedup --keep-index)."""
    urls = [storage.join(p["hashes"], f"g{g:05d}.prt") for g in range(p["groups"])]
    records = partitioned.read_partition_of_all(urls, p["range"], HASH_RECORD)
    order = np.lexsort((records["doc"], records["snap"], records["hash"]))
    hashes, snaps, docs = records["hash"][order], records["snap"][order], records["doc"][order]
    del records, order
    new = np.ones(hashes.size, dtype=bool)
    new[1:] = (hashes[1:] != hashes[:-1]) | (snaps[1:] != snaps[:-1])
    first = docs[np.maximum.accumulate(np.where(new, np.arange(hashes.size), 0))] if hashes.size else docs
    copies = docs[~new]
    edges = np.stack([first[~new], copies], axis=1) if copies.size else np.empty((0, 2), np.int64)
    matched = 0
    if p.get("earlier"):
        # Only the first document of each text here needs probing: its copies join its cluster.
        found = history.probe(hashes[new], docs[new], None, p["range"], p["bits"], p["earlier"])
        matched = int(found.shape[0])
        edges = np.concatenate([edges, found])
    save_npy(p["edges"], edges)
    if p.get("index"):
        # the first document of each distinct text (whatever the snapshot): what a later job can match
        distinct = np.ones(hashes.size, dtype=bool)
        distinct[1:] = hashes[1:] != hashes[:-1]
        shard = np.empty(int(distinct.sum()), dtype=history.KEY_DOC)
        shard["key"], shard["doc"] = hashes[distinct], docs[distinct]
        save_npy(p["index"], shard)
    offsets = load_npy(p["offsets"])
    out = np.empty(copies.size, dtype=DOC_RECORD)
    out["doc"] = copies
    partitioned.write_partitioned(p["copies"], out, file_of(copies, offsets), p["files"])
    return {"documents": int(docs.size), "copies": int(copies.size), "edges": int(edges.shape[0]),
            "matched": matched, "bytes_read": int(docs.size) * HASH_RECORD.itemsize}


def copy_masks(copies_dir: str, ranges: int, files: list[dict]) -> list[np.ndarray]:
    """Per input file of `files` (consecutive files), True for its rows that are exact copies of an
    earlier document: one read of their run of partitions from every copies file."""
    urls = [storage.join(copies_dir, f"r{r:05d}.prt") for r in range(ranges)]
    docs = partitioned.read_partition_of_all(urls, files[0]["index"], DOC_RECORD, stop=files[-1]["index"] + 1)["doc"]
    masks = []
    for f in files:
        rows = docs[(docs >= f["offset"]) & (docs < f["offset"] + f["rows"])] - f["offset"]
        mask = np.zeros(f["rows"], dtype=bool)
        mask[rows] = True
        masks.append(mask)
    if sum(int(m.sum()) for m in masks) != docs.size:
        raise RuntimeError(f"exact-duplicate work files do not match input files {files[0]['index']}.."
                           f"{files[-1]['index']}; re-run the same command")
    return masks


# --------------------------------------------------------------------------- the pass, for any stage

@dataclass
class ExactPass:
    """Where the exact pass of one run keeps its files (inside the stage's work folder)."""

    work: str        # URL of the work folder
    folder: str      # the work folder relative to the stage's bookkeeping folder (task markers live under it)
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

    def copy_masks(self, files: list[dict]) -> list[np.ndarray]:
        return copy_masks(self.copies_dir, self.ranges, files)

    # the steps it adds to a run, for its `StepLabels`
    STEPS = ("exact hash", "exact copies")

    def phases(self, groups: list[list[Task]], across: bool, offsets_url: str, label: StepLabels,
               earlier: list | None = None, index: str | None = None) -> Iterator[Phase]:
        """Hash every run of files, then reduce every range. The reduce phase's summary holds the
        exact edges' count (`edges`); `label`: the run's numbered progress labels (holding `STEPS`);
        `earlier`: the earlier jobs to probe (dedup --against); `index`: where this job's exact index
        shards go (dedup --keep-index). Task markers go under `folder` of the stage's bookkeeping folder."""
        hashes = storage.join(self.work, "exact", "hashes")
        yield Phase("exact_hash", plan=lambda done: [
            Task(f"g{g:05d}", {"files": group_payload(group), "across": across, "bits": self.bits,
                               "output": storage.join(hashes, f"g{g:05d}.prt")},
                 (storage.join(hashes, f"g{g:05d}.prt"),))
            for g, group in enumerate(groups)], task=hash_task, markers=f"{self.folder}/exact/hashes",
            desc=label("exact hash"), summary=shuffle_summary)
        yield Phase("exact_reduce", plan=lambda done: [
            Task(f"r{r:05d}", {"hashes": hashes, "groups": len(groups), "files": self.files, "range": r,
                               "offsets": offsets_url, "bits": self.bits, "earlier": earlier or [],
                               "copies": storage.join(self.copies_dir, f"r{r:05d}.prt"),
                               "edges": self.edge_urls()[r],
                               "index": storage.join(index, history.exact_shard_name(r)) if index else None},
                 (storage.join(self.copies_dir, f"r{r:05d}.prt"), self.edge_urls()[r])
                 + ((storage.join(index, history.exact_shard_name(r)),) if index else ()))
            for r in range(self.ranges)], task=reduce_task, markers=f"{self.folder}/exact/reduce",
            desc=label("exact copies"), summary=shuffle_summary)


def shuffle_summary(results: dict[str, dict]) -> dict:
    """What a shuffle phase's tasks add up to: bytes read by its reducers, edges found (when they find any)."""
    summary = {"tasks": len(results)}
    if any("bytes_read" in r for r in results.values()):
        summary["bytes_read"] = sum(int(r.get("bytes_read", 0)) for r in results.values())
    if any("edges" in r for r in results.values()):
        summary["edges"] = sum(int(r.get("edges", 0)) for r in results.values())
    return summary


def filter_task(p: dict) -> dict:
    table = read_documents(p["input"])
    if table.num_rows != p["rows"]:
        raise RuntimeError(f"{p['input']} has {table.num_rows} rows, {p['rows']} were recorded; it changed while "
                           "exact-dedup ran: run the same command again")
    keep = ~copy_masks(p["copies"], p["ranges"], [p])[0]
    documents.write_table(table.filter(keep), p["output"])
    return {"documents": int(keep.sum()), "removed": int((~keep).sum())}


class ExactDedupStage(DocumentStage):
    """Remove exact duplicates (same normalised text), keeping the first, per snapshot."""

    name = "exact_dedup"
    output = jobdir.EXACT_DEDUPED
    Options = ExactDedupOptions
    work = "_work"

    def settings(self) -> dict:
        return {**super().settings(), "words": word_settings()}

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        return numbered_tasks(inputs, out)

    def phases(self, ctx) -> Iterator[Phase]:
        tasks = ctx.tasks
        documents_count = sum(t.payload["rows"] for t in tasks)
        work = ctx.book(self.work)
        bits, groups = range_bits(documents_count, MAX_RANGE_DOCS), file_groups(tasks, documents_count)
        start_work(work, {"bits": bits, "groups": [len(g) for g in groups], "files": len(tasks)})
        exact = ExactPass(work, self.work, bits, len(tasks))
        offsets_url = write_file_offsets(work, tasks)
        label = StepLabels("exact dedup", (*ExactPass.STEPS, "filter"))
        yield from exact.phases(groups, self.options.across_snapshots, offsets_url, label)
        yield Phase("filter", plan=lambda done: [
            Task(t.name, {**t.payload, "copies": exact.copies_dir, "ranges": exact.ranges}, t.outputs) for t in tasks],
            task=filter_task, desc=label("filter"), unit="docs kept")

    def summarize(self, results: dict[str, dict]) -> dict:
        kept = sum(r["documents"] for r in results.values())
        removed = sum(r["removed"] for r in results.values())
        return {"documents": kept, "documents_in": kept + removed, "removed": removed, "kept": kept,
                "scope": "across snapshots" if self.options.across_snapshots else "per snapshot",
                "input_stage": self.input_stage(), "files": len(results)}

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """Its row of the job's filter funnel (report and dataset card)."""
        return [("after exact dedup", int(section.get("kept", section.get("documents", 0))))]

    def describe(self, section: dict) -> str:
        return (f"exact dedup ({section['scope']}): {section['documents_in']} documents in, {section['removed']} "
                f"exact duplicates removed, {section['kept']} kept -> {self.output}/")
