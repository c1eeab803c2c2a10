"""Exact + MinHash near-duplicate removal, per snapshot, as a chain of Ray phases that
shuffle through files: no process holds an array over all documents.

datatrove's four MinHash stages (signatures, buckets, clusters, filter) are the model,
each re-done because of failure modes datatrove users hit and because the joins must
scale to a Common Crawl snapshot (~3B documents, ~90k files):

* exact (optional, `dedup/exact.py`): hash -> reduce per hash range -> each file's copies;
  copies get no signature and are joined to their first copy by an edge.
* signatures (one task per input file): band keys of every document with shingles,
  written as ONE partitioned file grouped by (band, key range) (`pipeline.partitioned`),
  so a bucket task reads only its range: the stage reads about one pass over the
  signatures whatever the number of ranges (datatrove writes per-bucket files the same
  way). Also the id hashes (the filter's check that its input did not change).
* buckets (one task per band and key range): that partition of every signature file,
  sorted by (key, snapshot, document); every run of equal keys within a snapshot is a
  star of edges around its lowest document. With `--against`, the same task probes the
  earlier jobs' index shards for its range (`dedup/history.py`); with `--keep-index` it
  writes this job's shard for its range.
* clusters (one task): connected components over the documents that have an edge
  (`dedup/clusters.py`: memory ~12-40 bytes per such document, time linear in edges);
  writes, grouped by input file, each clustered document's root (the kept document:
  the smallest number in its component) and its cluster's size.
* filter (one task per input file): reads its own partition of the clusters, checks the
  ids against those recorded at signature time (a changed input is an error, not a
  silent mis-filter), writes `deduped/<same name>.parquet` and the file's statistics.

Documents are numbered by (input file order, row); in each cluster the lowest number is
kept, so the kept set does not depend on task order, worker count or key-range split.

Layout inside the job: `deduped/` holds the output Parquet files with the input's names
and nothing else; its bookkeeping is in `_meta/deduped/`: `_work/` (every phase's files and
task markers, removed on success unless --keep-work), `index/` (see history.py), then
`_SUCCESS`.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from shammie.dedup import history
from shammie.dedup.arrays import load_npy, load_npz, save_npy, save_npz
from shammie.dedup import clusters
from shammie.dedup.clusters import CLUSTER_RECORD, connected_min_labels
from shammie.dedup.exact import (ExactPass, check_rows, file_groups, group_payload, key_range, numbered_tasks,
                                 range_bits, read_for_words, shuffle_summary, start_work, write_file_offsets)
from shammie.dedup.signatures import NORMALISATION, MinHasher, MinhashParams, band_keys, string_hash, word_settings
from shammie.filters.words import dedup_splitters
from shammie.pipeline import documents, jobdir, partitioned, storage
from shammie.pipeline.errors import InputError
from shammie.pipeline.options import option
from shammie.pipeline.runner import RunOptions, run_stage
from shammie.pipeline.stage import DocumentStage, InputFile, Phase, Results, StepLabels, Task, read_documents

STAGE = jobdir.DEDUPED
STATS_SECTION = "dedup"
WORK = "_work"
# Bucket (and exact-reduce) tasks sort at most this many keys each (24 bytes per key plus
# the sort's buffers): the knob that bounds their memory. The number of key ranges per band
# is the smallest power of two that keeps a range below it, from the input's document count.
MAX_BUCKET_DOCS = 4_000_000
SIG_RECORD = np.dtype([("key", "<u8"), ("snap", "<u8"), ("doc", "<i8")])
# Above this many edge endpoints (about 2x the documents with an edge) the components are found
# in distributed large-star/small-star rounds instead of one union-find task (dedup/clusters.py).
MAX_CLUSTER_DOCS = 200_000_000
MAX_STAR_ROUNDS = 200


@dataclass(frozen=True)
class EdgeFiles:
    """The edge files of one run as a pattern (exact-reduce ranges, then bands x key ranges), so a
    task payload names a slice of them instead of carrying every URL."""

    work: str
    exact_ranges: int  # 0 without the exact pass
    bands: int
    ranges: int

    def __len__(self) -> int:
        return self.exact_ranges + self.bands * self.ranges

    def urls(self, start: int = 0, stop: int | None = None) -> list[str]:
        out = []
        for k in range(start, len(self) if stop is None else min(stop, len(self))):
            if k < self.exact_ranges:
                out.append(storage.join(self.work, "exact", "edges", f"r{k:05d}.npy"))
            else:
                b, r = divmod(k - self.exact_ranges, self.ranges)
                out.append(storage.join(self.work, "buckets", f"b{b:02d}-r{r:05d}.npy"))
        return out


def _cpu() -> float:
    return time.process_time()


def _max_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------- signatures

def file_signatures(f: dict, copies: np.ndarray, hasher: MinHasher, across: bool,
                    meta: str) -> tuple[np.ndarray, float, float]:
    """One input file's (key, snapshot, document) records, band-major (bands x its documents
    with shingles), and its id hashes and exact-copy flags saved to `meta`. Also the CPU
    seconds of the hashing loop and of loading word splitters (the worker's set-up)."""
    table, languages, setup = read_for_words(f["input"], ["id", "text", "dump"])
    n = table.num_rows
    check_rows(f, n)
    params = hasher.params
    texts = table.column("text").to_pylist()
    dumps = [d if d is not None else "unknown" for d in table.column("dump").to_pylist()]
    splitters = dedup_splitters(languages)
    sigs = np.zeros((n, params.num_perm), dtype=np.uint32)
    valid = np.zeros(n, dtype=bool)
    hash_cpu = _cpu()
    for i, text in enumerate(texts):
        if not copies[i]:  # exact duplicates (removed anyway) get no signature
            sigs[i], valid[i] = hasher.text_signature(text or "", splitters[i])
    hash_cpu = _cpu() - hash_cpu
    rows = np.flatnonzero(valid)
    keys = band_keys(sigs[rows], params, None)  # (bands, len(rows)); unsalted: snapshots are a separate field
    del sigs
    m, bands = rows.size, params.bands
    records = np.empty(bands * m, dtype=SIG_RECORD)
    records["key"] = keys.reshape(-1)
    if across:
        records["snap"] = 0
    else:
        snap_of = {d: string_hash(d) for d in set(dumps)}
        records["snap"] = np.tile(np.fromiter((snap_of[dumps[r]] for r in rows.tolist()), dtype=np.uint64, count=m),
                                  bands)
    records["doc"] = np.tile(f["offset"] + rows.astype(np.int64), bands)
    ids = np.fromiter((string_hash(x) for x in table.column("id").to_pylist()), dtype=np.uint64, count=n)
    save_npz(meta, idhash=ids, copy=copies)
    return records, hash_cpu, setup


def signature_task(p: dict) -> dict:
    """A run of input files -> their band keys in ONE file grouped by (band, key range), and
    per input file its id hashes and exact-copy flags."""
    params = MinhashParams(**p["params"])
    hasher = MinHasher(params)
    files = p["files"]
    copies = p["exact"].copy_masks(files) if p.get("exact") else [np.zeros(f["rows"], bool) for f in files]
    parts, hash_cpu, setup = [], 0.0, 0.0
    for f, c in zip(files, copies):
        records, seconds, loading = file_signatures(f, c, hasher, p["across_snapshots"],
                                                    p["meta"][f["index"] - files[0]["index"]])
        parts.append(records)
        hash_cpu += seconds
        setup += loading
    bands, bits = params.bands, p["bits"]
    # band-major within each file -> the band of every record, then its key range
    band = np.concatenate([np.repeat(np.arange(bands, dtype=np.int64), r.size // bands) for r in parts]) \
        if parts else np.empty(0, np.int64)
    records = np.concatenate(parts) if parts else np.empty(0, dtype=SIG_RECORD)
    partitioned.write_partitioned(p["output"], records, (band << bits) + key_range(records["key"], bits),
                                  bands << bits)
    return {"documents": sum(f["rows"] for f in files), "with_shingles": int(records.size // bands),
            "exact_removed": int(sum(int(c.sum()) for c in copies)), "hash_cpu_seconds": hash_cpu,
            "setup_cpu_seconds": setup}


# --------------------------------------------------------------------------- buckets

def star_edges(keys: np.ndarray, groups_differ: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """(first document of its group, other document) for every run of a sorted array.

    `groups_differ[i]` is True where row i starts a new group. A star around the lowest
    document is enough for connected components, and fewer edges than all pairs."""
    if not keys.size:
        return np.empty((0, 2), np.int64)
    first = docs[np.maximum.accumulate(np.where(groups_differ, np.arange(keys.size), 0))]
    return np.stack([first[~groups_differ], docs[~groups_differ]], axis=1)


def bucket_task(p: dict) -> dict:
    """One band, one key range of every signature file -> its duplicate edges (and index shard)."""
    band, part, bits = p["band"], p["part"], p["bits"]
    urls = [storage.join(p["signatures"], f"g{g:05d}.prt") for g in range(p["groups"])]
    rec = partitioned.read_partition_of_all(urls, (band << bits) + part, SIG_RECORD)
    order = np.lexsort((rec["doc"], rec["snap"], rec["key"]))
    rec = rec[order]
    del order
    keys, docs = rec["key"], rec["doc"]
    differ = np.ones(keys.size, dtype=bool)
    differ[1:] = (keys[1:] != keys[:-1]) | (rec["snap"][1:] != rec["snap"][:-1])
    edges = star_edges(keys, differ, docs)
    matched = 0
    if p.get("earlier"):
        found = history.probe(keys, docs, band, part, bits, p["earlier"])
        matched = int(found.shape[0])
        edges = np.concatenate([edges, found])
    save_npy(p["output"], edges)
    if p.get("index"):
        shard = np.empty(keys.size, dtype=history.KEY_DOC)
        shard["key"], shard["doc"] = keys, docs
        save_npy(p["index"], shard)
    return {"documents": int(keys.size), "edges": int(edges.shape[0]), "matched": matched,
            "bytes_read": int(keys.size) * SIG_RECORD.itemsize}


# --------------------------------------------------------------------------- clusters

def cluster_task(p: dict) -> dict:
    """Every edge file -> per input file, the root and cluster size of its clustered documents
    (one process; memory ~12-40 bytes per document with an edge, see dedup/clusters.py)."""
    edge_urls = p["edge_files"].urls()
    counted = [0]

    def edge_batches():
        counted[0] = 0
        for url in edge_urls:
            e = load_npy(url)
            counted[0] += e.shape[0]
            yield e

    nodes, root = clusters.components(edge_batches)
    stats = clusters.write_cluster_files(p, nodes, root)
    return {**stats, "nodes": int(nodes.size), "edges": counted[0], "max_rss_mb": _max_rss_mb()}


# --------------------------------------------------------------------------- filter

def filter_task(p: dict) -> dict:
    """One input file minus its removed rows (same schema, same name), and its statistics."""
    table = read_documents(p["input"])
    n = table.num_rows
    meta = load_npz(p["meta"], ["idhash", "copy"])
    ids = np.fromiter((string_hash(x) for x in table.column("id").to_pylist()), dtype=np.uint64, count=n)
    if not np.array_equal(ids, meta["idhash"]):
        raise InputError(f"{p['input']} changed while dedup ran (its ids differ from its signatures); "
                         "run the same `shammie dedup` again: the changed input is refused, or pass --overwrite")
    cl = partitioned.read_partition_of_all(p["clusters"], p["index"], CLUSTER_RECORD)
    rows = cl["doc"] - p["offset"]
    removed_rows = rows[cl["root"] != cl["doc"]]
    keep = np.ones(n, dtype=bool)
    keep[removed_rows] = False
    copies = meta["copy"]
    if keep[copies].any():
        raise RuntimeError(f"{p['input']}: an exact copy is not in any cluster; the dedup work files are "
                           "inconsistent, re-run with --overwrite")
    flagged = cl["flag"] == 1
    is_root = ((cl["root"] == cl["doc"]) | flagged) & (cl["size"] >= 2)

    def mask(r):
        m = np.zeros(n, dtype=bool)
        m[r] = True
        return m

    against, cluster_root = mask(rows[flagged]), mask(rows[is_root])
    dumps = [d if d is not None else "unknown" for d in table.column("dump").to_pylist()]
    names = sorted(set(dumps))
    index_of = {d: i for i, d in enumerate(names)}
    code = np.fromiter((index_of[d] for d in dumps), dtype=np.int64, count=n)

    def count(m):
        return np.bincount(code[m], minlength=len(names)).tolist()

    removed = ~keep
    per_snapshot = {name: {"documents_in": int(d), "clusters": int(c), "removed": int(r), "exact_removed": int(e),
                           "against_removed": int(a), "near_removed": int(r - e - a), "kept": int(d - r)}
                    for name, d, c, r, e, a in zip(names, count(np.ones(n, bool)), count(cluster_root),
                                                   count(removed), count(copies & removed), count(against))}
    against_job = history.virtual_parts(cl["root"][flagged])[0]
    against_by_job = np.bincount(against_job, minlength=p["earlier_jobs"]).tolist() if p["earlier_jobs"] else []
    # Each kept document carries its cluster's size in this job (exact and near copies, itself
    # included) as FineWeb-2's `minhash_cluster_size`: what `shammie shard --rehydrate` upsamples by.
    size_of = np.ones(n, dtype=np.int32)
    size_of[rows] = cl["size"]
    documents.write_table(with_cluster_sizes(table, size_of).filter(keep), p["output"])
    if p.get("index_file"):
        kept_rows = np.flatnonzero(keep)
        order = np.argsort(rows)
        save_npz(p["index_file"], kept_rows=kept_rows, kept_idhash=ids[kept_rows], kept_size=size_of[kept_rows],
                 cluster_rows=rows[order], cluster_root=cl["root"][order])
    return {"documents_in": n, "documents": int(keep.sum()), "kept": int(keep.sum()), "removed": int(removed.sum()),
            "exact_removed": int(copies.sum()), "against_removed": int(against.sum()),
            "against_by_job": against_by_job, "per_snapshot": per_snapshot}


def with_cluster_sizes(table, sizes: np.ndarray):
    """`table` with its `minhash_cluster_size` column set to `sizes` (added, or replaced in place)."""
    import pyarrow as pa

    column = pa.array(sizes.astype(np.int64), pa.int64())
    name = history.CLUSTER_SIZE_COLUMN
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


# --------------------------------------------------------------------------- options and stage

@dataclass(frozen=True)
class DedupOptions:
    job: str = option(help="job directory (local path or s3://...) with a complete documents/ folder",
                      kind="output", positional=True, metavar="DIR", yaml=False)
    across_snapshots: bool = option(False, help="deduplicate the whole input together instead of each snapshot "
                                    "(CC dump) separately, as FineWeb does")
    exact: bool = option(True, help="first remove exact duplicates (same normalised text, a 64-bit content hash), "
                         "so MinHash only hashes the documents that could stay", off_help="skip the exact-duplicate "
                         "pass: MinHash hashes every document (the kept set is the same)")
    threshold: float | None = option(None, help="target Jaccard similarity: choose bands x rows of the 112 hashes "
                                     "with datasketch's optimiser instead of FineWeb's 14 x 8", minimum=0.01,
                                     maximum=0.99)
    input_stage: str | None = option(None, help="document folder to read (default: the most downstream complete "
                                     "one before deduped/)", metavar="STAGE")
    against: tuple[str, ...] | None = option(None, help="earlier deduplicated jobs (e.g. last month's snapshot, "
                                             "deduplicated with --keep-index): documents that duplicate them are "
                                             "removed too, by probing their saved band index instead of recomputing "
                                             "them", kind="inputs", metavar="JOB")
    keep_index: bool = option(False, help="keep this job's band index in _meta/deduped/index (~240 bytes per document) "
                              "so later snapshots can be deduplicated --against it and rehydration counted")
    max_bucket_docs: int = option(MAX_BUCKET_DOCS, help="keys one bucket task sorts at most (bounds its memory; "
                                  "the kept set does not depend on it)", minimum=1, metavar="N")
    max_cluster_docs: int = option(MAX_CLUSTER_DOCS, help="edge endpoints (about twice the documents that have "
                                   "a duplicate) one clustering task holds at most; above it the clusters are found "
                                   "in distributed rounds (the kept set does not depend on it)", minimum=2, metavar="N")
    keep_work: bool = option(False, help="keep _meta/deduped/_work (signatures, edges, clusters) for inspection",
                             yaml=False)

    def params(self) -> MinhashParams:
        return MinhashParams.for_threshold(self.threshold) if self.threshold is not None else MinhashParams()


class DedupStage(DocumentStage):
    """Remove near-duplicates as FineWeb did: word 5-grams of normalised text, 112 MinHash values as
14 bands of 8 (pairs above Jaccard ~0.72 are likely found), one document kept per duplicate
cluster (the first by input file name and row). Within each snapshot (`dump`) by default.
Reads DIR/documents/ (or the most downstream complete document folder before deduped/),
writes DIR/deduped/*.parquet with the same schema and a "dedup" section in DIR/stats.json."""

    name = STATS_SECTION
    output = STAGE
    Options = DedupOptions
    work = WORK

    def __init__(self, job: str, options: DedupOptions | None = None, params: MinhashParams | None = None):
        super().__init__(job, options or DedupOptions(job=job))
        self.params = params or self.options.params()

    def settings(self) -> dict:
        values = {"input_stage": self.input_stage(), "across_snapshots": self.options.across_snapshots,
                  "exact": self.options.exact, "params": self.params.to_dict(),
                  "words": word_settings()}
        if self.options.keep_index:
            values["keep_index"] = True
        if self.options.against:
            values["against"] = [history.index_fingerprint(j) for j in self.options.against]
        return values

    def resolve_inputs(self):
        files = super().resolve_inputs()
        for job in (self.options.against or ()):  # checked before any work
            history.read_index_info(job, self.params.to_dict(), exact=self.options.exact)
        return files

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        return numbered_tasks(inputs, out)

    def keep_work(self) -> bool:
        return self.options.keep_work

    def phases(self, ctx) -> Iterator[Phase]:
        return DedupPhases(self, ctx).phases()

    def summarize(self, results: Results) -> dict:
        total = sum(r["documents_in"] for r in results.values())
        kept = sum(r["kept"] for r in results.values())
        exact_removed = sum(r["exact_removed"] for r in results.values())
        against_removed = sum(r["against_removed"] for r in results.values())
        per_snapshot: dict[str, dict] = {}
        for r in results.values():
            for name, s in r["per_snapshot"].items():
                acc = per_snapshot.setdefault(name, dict.fromkeys(s, 0))
                for k, v in s.items():
                    acc[k] += v
        against_jobs = [history.resolve_job(j) for j in (self.options.against or ())]
        by_job = np.sum([r["against_by_job"] for r in results.values()], axis=0).tolist() if against_jobs else []
        clusters, params = results.phases["clusters"], self.params
        return {
            "documents": kept, "documents_in": total, "clusters": clusters["clusters"],
            "removed": total - kept, "exact_removed": exact_removed, "against_removed": against_removed,
            "near_removed": total - kept - exact_removed - against_removed,
            "against": [{"job": j, "removed": int(n)} for j, n in zip(against_jobs, by_job)],
            "index_documents": kept if self.options.keep_index else None,
            "kept": kept, "largest_cluster": clusters["largest_cluster"],
            "cluster_sizes": clusters["cluster_sizes"], "exact": self.options.exact,
            "per_snapshot": dict(sorted(per_snapshot.items())),
            "scope": "across snapshots" if self.options.across_snapshots else "per snapshot",
            "input_stage": self.input_stage(), "files": len(results),
            "params": {**params.to_dict(), "num_perm": params.num_perm, "threshold": round(params.threshold, 4)},
            "bucket_ranges_per_band": 1 << range_bits(total, self.options.max_bucket_docs),
            "clustered_documents": clusters["nodes"], "cluster_edges": clusters["edges"],
            "cluster_mode": clusters["mode"], "stages": phase_details(results, total),
        }

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """Its rows of the job's filter funnel (report and dataset card): the three kinds of removal, in
        the order dedup applies them, then the documents kept."""
        rows = []
        remaining = section.get("documents_in", previous)
        for key, label in (("exact_removed", "after exact duplicates"), ("near_removed", "after near-duplicates"),
                           ("against_removed", "after earlier snapshots")):
            if section.get(key) and remaining is not None:
                remaining -= int(section[key])
                rows.append((label, remaining))
        return rows + [("after dedup", int(section.get("kept", section.get("documents", 0))))]

    def describe(self, section: dict) -> str:
        return summarise(section)


def phase_details(results: Results, total: int) -> dict[str, dict]:
    """Per phase the runner's timing (wall seconds without Ray's start-up, CPU seconds, tasks) with what
    dedup measures besides: documents per second, bytes its reducers read, the signature loop's own
    rate, the clustering's mode and peak memory."""
    stages = {}
    for place, (name, timing) in enumerate(results.timings.items()):  # in run order
        s = {**timing, **{k: v for k, v in (results.phases.get(name) or {}).items() if k == "bytes_read"}}
        s["order"] = place
        s["docs_per_s"] = round(total / s["seconds"], 1) if s["seconds"] > 0 else None
        stages[name] = s
    sig = stages["signatures"]
    hash_cpu = results.phases["signatures"]["hash_cpu_seconds"]
    sig["docs_per_cpu_s"] = round(total / sig["cpu_seconds"], 1) if sig["cpu_seconds"] > 0 else None
    sig["hash_docs_per_cpu_s"] = round(total / hash_cpu, 1) if hash_cpu > 0 else None
    clusters = results.phases["clusters"]
    stages["clusters"].update(mode=clusters["mode"], nodes=clusters["nodes"],
                              **({"max_rss_mb": clusters["max_rss_mb"]} if "max_rss_mb" in clusters else {}))
    return stages


class DedupPhases:
    """The dedup phases of one run, declared for the stage runner: exact hash and reduce (with --exact),
    signatures, buckets, clusters (one task, or distributed rounds), filter. Each plans its tasks from
    the work folder's layout and what the phases before it found (`ctx.done`)."""

    # the steps of every run (after the exact passes of --exact), for the numbered progress labels
    STEPS = ("signatures", "buckets", "clusters", "filter")

    def __init__(self, stage: DedupStage, ctx):
        self.stage, self.ctx, self.options = stage, ctx, stage.options
        self.tasks: list[Task] = ctx.tasks
        self.work = ctx.book(WORK)
        self.files = len(self.tasks)
        self.total = sum(t.payload["rows"] for t in self.tasks)
        self.bits = range_bits(self.total, self.options.max_bucket_docs)
        self.index = ctx.book(history.INDEX)

    def url(self, *parts: str) -> str:
        return storage.join(self.work, *parts)

    def meta(self, t: Task) -> str:
        return self.url(f"meta/{t.payload['index']:05d}.npz")

    def phases(self) -> Iterator[Phase]:
        params, options = self.stage.params, self.options
        groups = file_groups(self.tasks, self.total)
        earlier = [history.earlier_index(j, params.to_dict(), exact=options.exact) for j in (options.against or ())]
        index = self.index
        start_work(self.work, {"bits": self.bits, "groups": [len(g) for g in groups], "files": self.files,
                               "max_cluster_docs": options.max_cluster_docs}, also=(index,))
        offsets_url = write_file_offsets(self.work, self.tasks)
        self.label = label = StepLabels("dedup", (*(ExactPass.STEPS if options.exact else ()), *self.STEPS))
        exact = None
        if options.exact:
            exact = ExactPass(self.work, WORK, self.bits, self.files)
            yield from exact.phases(groups, options.across_snapshots, offsets_url, label, earlier=earlier,
                                    index=index if options.keep_index else None)

        yield Phase("signatures", plan=lambda done: [
            Task(f"g{g:05d}",
                 {"files": group_payload(group), "params": params.to_dict(), "across_snapshots": options.across_snapshots,
                  "bits": self.bits, "exact": exact, "output": self.url("signatures", f"g{g:05d}.prt"),
                  "meta": [self.meta(t) for t in group]},
                 (self.url("signatures", f"g{g:05d}.prt"),) + tuple(self.meta(t) for t in group))
            for g, group in enumerate(groups)], task=signature_task, markers=f"{WORK}/signatures",
            desc=label("signatures"),
            summary=lambda results: {"hash_cpu_seconds": sum(r.get("hash_cpu_seconds", 0.0) for r in results.values())})

        ranges = 1 << self.bits
        yield Phase("buckets", plan=lambda done: [
            Task(f"b{b:02d}-r{r:05d}",
                 {"signatures": self.url("signatures"), "groups": len(groups), "band": b, "part": r,
                  "bits": self.bits,
                  "earlier": earlier, "output": self.url("buckets", f"b{b:02d}-r{r:05d}.npy"),
                  "index": storage.join(index, history.shard_name(b, r)) if options.keep_index else None},
                 (self.url("buckets", f"b{b:02d}-r{r:05d}.npy"),)
                 + ((storage.join(index, history.shard_name(b, r)),) if options.keep_index else ()))
            for b in range(params.bands) for r in range(ranges)], task=bucket_task, markers=f"{WORK}/buckets",
            desc=label("buckets"), unit="band keys", summary=shuffle_summary)   # one per document and band

        edge_files = EdgeFiles(self.work, exact.ranges if exact else 0, params.bands, ranges)
        edges = self.ctx.done["buckets"]["edges"] + (self.ctx.done["exact_reduce"]["edges"] if exact else 0)
        yield from self.cluster_phases(edge_files, edges, offsets_url, index if earlier else None)

        def index_file(t: Task) -> str:
            return storage.join(index, history.file_record_name(t.payload["index"]))

        cluster_files = self.ctx.done["clusters"]["files"]
        yield Phase("filter", plan=lambda done: [
            Task(t.name, {**t.payload, "meta": self.meta(t), "clusters": cluster_files, "earlier_jobs": len(earlier),
                          "index_file": index_file(t) if options.keep_index else None},
                 t.outputs + ((index_file(t),) if options.keep_index else ()))
            for t in self.tasks], task=filter_task, desc=label("filter"), count_key="documents_in", unit="docs read",
            summary=lambda results: self._write_index_info(params, results, earlier))

    def cluster_phases(self, edge_files: EdgeFiles, edges: int, offsets_url: str,
                       index: str | None) -> Iterator[Phase]:
        """Connected components of all edges: one union-find task, or distributed large-star /
        small-star rounds when the edges' endpoints exceed --max-cluster-docs. The "clusters" phase's
        summary holds the cluster files the filter reads (each grouped by input file) and the cluster
        statistics."""
        common = {"offsets": offsets_url}
        copies = (lambda q: storage.join(index, history.EARLIER_COPIES, f"p{q:05d}.npz")) if index else (lambda q: None)
        copies_out = (lambda q: (copies(q),)) if index else (lambda q: ())
        limit = self.options.max_cluster_docs
        if 2 * edges <= limit:
            out = self.url("clusters", "p00000.prt")
            yield Phase("clusters", plan=lambda done: [Task("clusters", {
                **common, "edge_files": edge_files, "output": out, "earlier_copies": copies(0)},
                (out,) + copies_out(0))], task=cluster_task, markers=f"{WORK}/clusters",
                desc=self.label("clusters"), count_key="nodes", unit="docs in clusters",
                summary=lambda results: {**results["clusters"], "mode": "one task", "files": [out]})
            return
        parts = 1
        while 2 * edges > parts * limit:
            parts *= 2
        group = -(-len(edge_files) // parts)
        previous = self.url("components", "r000")
        yield Phase("clusters_scatter", stats="clusters", plan=lambda done: [
            Task(f"p{q:05d}", {"edge_files": edge_files, "start": q * group, "stop": (q + 1) * group,
                               "partitions": parts, "output": storage.join(previous, f"p{q:05d}.prt")},
                 (storage.join(previous, f"p{q:05d}.prt"),)) for q in range(parts)],
            task=clusters.scatter_task, markers=f"{WORK}/components/r000",
            desc=self.label("clusters", "scatter edges"), count_key="edges", unit="edges")
        rounds = 0
        while True:
            rounds += 1
            if rounds > MAX_STAR_ROUNDS:
                raise RuntimeError(f"connected components did not converge in {MAX_STAR_ROUNDS} rounds")
            current = self.url("components", f"r{rounds:03d}")
            yield Phase(f"clusters_round_{rounds}", stats="clusters", plan=lambda done, prev=previous, cur=current,
                        n=rounds: [
                Task(f"p{q:05d}", {"previous": prev, "files": parts, "partition": q, "partitions": parts,
                                   "large": n % 2 == 1, "output": storage.join(cur, f"p{q:05d}.prt")},
                     (storage.join(cur, f"p{q:05d}.prt"),)) for q in range(parts)],
                task=clusters.star_round_task, markers=f"{WORK}/components/r{rounds:03d}",
                desc=self.label("clusters", f"round {rounds} ({'large' if rounds % 2 else 'small'} star)"),
                count_key="edges_in", unit="edges",
                summary=lambda results: sum(r["unsettled"] for r in results.values()))
            previous = current
            if self.ctx.done[f"clusters_round_{rounds}"] == 0:
                break  # that round's input was already stars around the minima, so is its output
        outs = [self.url("clusters", f"p{q:05d}.prt") for q in range(parts)]
        mode = f"{parts} partitions, {rounds} rounds"
        yield Phase("clusters", plan=lambda done: [
            Task(f"p{q:05d}", {**common, "previous": previous, "files": parts, "partition": q, "output": outs[q],
                               "earlier_copies": copies(q)},
                 (outs[q],) + copies_out(q)) for q in range(parts)],
            task=clusters.roots_task, markers=f"{WORK}/clusters/roots",
            desc=self.label("clusters", "roots"), count_key="nodes", unit="docs in clusters",
            summary=lambda results: {**clusters.merge_cluster_stats(results.values()), "edges": edges, "mode": mode,
                                     "nodes": sum(r["nodes"] for r in results.values()), "files": outs})

    def _write_index_info(self, params: MinhashParams, filtered: dict, earlier: list) -> None:
        """index.json: what later runs need to probe this job (and check they may)."""
        by_job = np.sum([r["against_by_job"] for r in filtered.values()], axis=0).tolist() if earlier else []
        storage.write_json_atomic(storage.join(self.index, "index.json"), {
            "format": history.INDEX_FORMAT, "job_id": history.job_id(self.index), "params": params.to_dict(),
            "bits": self.bits, "normalisation": NORMALISATION, "exact": self.options.exact,
            "across_snapshots": self.options.across_snapshots, "shards": self.options.keep_index,
            "files": [t.name for t in self.tasks], "offsets": [t.payload["offset"] for t in self.tasks],
            "documents": sum(r["kept"] for r in filtered.values()),
            "against": [{"job": e["job"], "job_id": e["job_id"], "removed": int(n)} for e, n in zip(earlier, by_job)]})


def dedup(job: str, *, workers: int | None = None, ray_address: str | None = None,
          across_snapshots: bool = False, input_stage: str | None = None, progress: bool = True,
          params: MinhashParams | None = None, max_bucket_docs: int = MAX_BUCKET_DOCS,
          keep_work: bool = False, overwrite: bool = False, wait: bool = False, exact: bool = True,
          against: tuple[str, ...] = (), keep_index: bool = False, max_cluster_docs: int = MAX_CLUSTER_DOCS) -> dict:
    """Remove exact and near-duplicates from the job's documents into `JOB/deduped/`; return the stats section."""
    options = DedupOptions(job=job, across_snapshots=across_snapshots, input_stage=input_stage,
                           max_bucket_docs=max_bucket_docs, keep_work=keep_work, exact=exact,
                           against=tuple(against) or None, keep_index=keep_index,
                           max_cluster_docs=max_cluster_docs)
    run = RunOptions(workers=workers, ray_address=ray_address, progress=progress, overwrite=overwrite, wait=wait)
    return run_stage(DedupStage(job, options, params=params), run).section


def summarise(stats: dict) -> str:
    lines = [f"dedup ({stats['scope']}): {stats['documents_in']} documents in, {stats['clusters']} duplicate "
             f"clusters, {stats['removed']} removed ({stats.get('exact_removed', 0)} exact copies, "
             f"{stats.get('near_removed', stats['removed'])} near-duplicates"
             + (f", {stats['against_removed']} found in earlier jobs" if stats.get("against_removed") else "")
             + f"), {stats['kept']} kept ({stats['seconds']:.1f} s)"]
    for name, s in sorted(stats["per_snapshot"].items()):
        lines.append(f"  {name}: {s['documents_in']} in, {s['clusters']} clusters, "
                     f"{s['removed']} removed, {s['kept']} kept")
    # in the order they ran (`order`: a summary read back from stats.json has its keys sorted)
    for stage, s in sorted(stats["stages"].items(), key=lambda kv: kv[1].get("order", len(stats["stages"]))):
        lines.append(f"  stage {stage}: {s['seconds']} s, {s.get('docs_per_s')} docs/s, {s['tasks']} tasks")
    return "\n".join(lines)


__all__ = ["dedup", "MinhashParams", "connected_min_labels", "summarise"]
