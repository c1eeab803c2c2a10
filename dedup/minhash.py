"""MinHash near-duplicate removal, per snapshot, as four Ray stages.

datatrove's four MinHash stages (signatures, buckets, clusters, filter) are the
model, but each is re-done here because of failure modes datatrove users hit:

* signatures: datatrove appends to open files and sorts them in place, so a
  killed task leaves truncated files that later stages read. Here each input
  Parquet file gives one `.npz` written atomically, and its task marker records
  the row count; later stages check the count.
* buckets: datatrove merges sorted files with a Python heap (slow) and its
  hash-range split depends on the worker count. Here a task is (band, hash
  range) where the number of ranges depends only on the number of documents,
  and is a numpy sort of (key, document index) pairs; memory per task is
  bounded by `max_bucket_docs`.
* clusters: datatrove's single process keeps every pair in a Python dict
  (memory grows with pairs, ~100+ bytes each). Here union-find is min-label
  propagation with pointer jumping over a numpy int array: memory O(documents)
  (8 bytes each), edges streamed one bucket file at a time.
* filter: datatrove's `.remove` files hold positions in the order a task read
  its input, which changes with the number of tasks. Here removals are row
  numbers of one named Parquet file, checked against the 64-bit hashes of the
  ids recorded at signature time, so a changed input is detected, not
  silently mis-filtered.

Deterministic keep rule: documents are numbered by (input file name, row); in
each duplicate cluster the lowest number is kept. Components and their minimum
do not depend on task order or worker count, so neither does the kept set.

Layout inside the job: `deduped/_work/{signatures,buckets,clusters}` (task
markers in each `_tasks/`), `deduped/_config.json` (what the work was computed
for; a different input or setting restarts from scratch), output Parquet files
with the input's names, then `deduped/_SUCCESS`. `_work` is removed on success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from shammie.dedup import history
from shammie.dedup.arrays import load_npy, load_npz, save_npz
from shammie.dedup.exact import exact_keep_masks
from shammie.dedup.signatures import MinHasher, MinhashParams, band_keys, string_hash
from shammie.pipeline import documents, jobdir, storage
from shammie.pipeline.options import option
from shammie.pipeline.runner import RunOptions, run_stage
from shammie.pipeline.errors import InputError
from shammie.pipeline.stage import DocumentStage, Task, read_documents

STAGE = jobdir.DEDUPED
STATS_SECTION = "dedup"
WORK = "_work"
CONFIG = "_config.json"
SIGNATURES = f"{STAGE}/{WORK}/signatures"
BUCKETS = f"{STAGE}/{WORK}/buckets"
CLUSTERS = f"{STAGE}/{WORK}/clusters"
# Bucket tasks sort (key, index) pairs of at most this many documents (16 bytes each
# plus sort buffers): the knob that bounds memory of the bucket stage.
MAX_BUCKET_DOCS = 4_000_000
ALL_SNAPSHOTS = "*"


# --------------------------------------------------------------------------- stage 1

def signature_task(p: dict) -> dict:
    """One input Parquet file -> band keys, id hashes and snapshot of every row."""
    wall, cpu = time.monotonic(), time.process_time()
    params = MinhashParams(**p["params"])
    table = read_documents(p["input"], columns=["id", "text", "dump"])
    hasher = MinHasher(params)
    n = table.num_rows
    texts = table.column("text").to_pylist()
    dumps = [d if d is not None else "unknown" for d in table.column("dump").to_pylist()]
    # Exact duplicates (removed anyway) get no signature: MinHash only hashes what could stay.
    exact_keep = _load_mask(p.get("exact_keep"), n)
    sigs = np.zeros((n, params.num_perm), dtype=np.uint32)
    valid = np.zeros(n, dtype=bool)
    hash_cpu = time.process_time()
    for i, text in enumerate(texts):
        if exact_keep[i]:
            sigs[i], valid[i] = hasher.text_signature(text or "")
    hash_cpu = time.process_time() - hash_cpu
    snapshot_names = sorted(set(dumps))
    code = {d: i for i, d in enumerate(snapshot_names)}
    snapshot = np.fromiter((code[d] for d in dumps), dtype=np.uint32, count=n)
    exact_removed = np.bincount(snapshot[~exact_keep], minlength=len(snapshot_names)) if n else []
    salt = None
    if not p["across_snapshots"]:
        salt = np.array([string_hash(d) for d in snapshot_names], dtype=np.uint64)[snapshot] if n else None
    keys = band_keys(sigs, params, salt)
    ids = np.fromiter((string_hash(x) for x in table.column("id").to_pylist()), dtype=np.uint64, count=n)
    arrays = {f"k{b:02d}": keys[b] for b in range(params.bands)}
    if salt is not None:
        # Unsalted keys too: the job's index (dedup/history.py) must match other snapshots' documents.
        unsalted = band_keys(sigs, params, None)
        arrays.update({f"u{b:02d}": unsalted[b] for b in range(params.bands)})
    save_npz(p["output"], valid=valid, snapshot=snapshot, idhash=ids, **arrays)
    return {"documents": n, "with_shingles": int(valid.sum()), "snapshots": snapshot_names,
            "snapshot_counts": [int(c) for c in np.bincount(snapshot, minlength=len(snapshot_names))],
            "exact_removed": [int(c) for c in exact_removed],
            "task_seconds": time.monotonic() - wall, "cpu_seconds": time.process_time() - cpu,
            "hash_cpu_seconds": hash_cpu}


# --------------------------------------------------------------------------- stage 2

def bucket_task(p: dict) -> dict:
    """One band, one range of its keys -> edges (first document of a key, other document).

    Sorting (key, index) puts equal keys together with the lowest index first,
    so each group becomes a star around its lowest index: enough for the
    connected components, and fewer edges than all pairs."""
    band, part, bits = p["band"], p["part"], p["bits"]
    keys_parts, idx_parts = [], []
    for f in p["files"]:
        z = load_npz(f["url"], [f"k{band:02d}", "valid"])
        k = z[f"k{band:02d}"]
        if k.shape[0] != f["rows"]:
            raise RuntimeError(f"{f['url']}: {k.shape[0]} rows, expected {f['rows']}; delete it and re-run")
        mask = z["valid"]
        if bits:
            mask = mask & ((k >> np.uint64(64 - bits)) == np.uint64(part))
        rows = np.nonzero(mask)[0]
        keys_parts.append(k[rows])
        idx_parts.append(rows.astype(np.int64) + f["offset"])
    keys = np.concatenate(keys_parts) if keys_parts else np.empty(0, np.uint64)
    idx = np.concatenate(idx_parts) if idx_parts else np.empty(0, np.int64)
    del keys_parts, idx_parts
    order = np.lexsort((idx, keys))
    keys, idx = keys[order], idx[order]
    new_group = np.ones(keys.shape[0], dtype=bool)
    new_group[1:] = keys[1:] != keys[:-1]
    first = idx[np.maximum.accumulate(np.where(new_group, np.arange(keys.shape[0]), 0))] if keys.size else idx
    edges = np.stack([first[~new_group], idx[~new_group]], axis=1) if keys.size else np.empty((0, 2), np.int64)
    save_npz(p["output"], edges=edges)
    return {"documents": int(keys.shape[0]), "edges": int(edges.shape[0])}


# --------------------------------------------------------------------------- stage 3

def connected_min_labels(n: int, edge_batches) -> np.ndarray:
    """label[i] = smallest document index in i's component.

    `edge_batches` is a callable returning a fresh iterator of (m, 2) arrays, so
    edges are streamed from disk on every pass and never all held at once.
    Hook roots to the smaller root, then compress paths fully; repeat until no
    edge joins two different roots (a few passes for star-shaped edges)."""
    dtype = np.int32 if n < 2**31 - 1 else np.int64
    label = np.arange(n, dtype=dtype)
    while True:
        changed = False
        for e in edge_batches():
            if e.size == 0:
                continue
            a, b = label[e[:, 0]], label[e[:, 1]]
            diff = a != b
            if not diff.any():
                continue
            changed = True
            a, b = a[diff], b[diff]
            low = np.minimum(a, b)
            np.minimum.at(label, a, low)
            np.minimum.at(label, b, low)
            while True:
                nxt = label[label]
                if np.array_equal(nxt, label):
                    break
                label = nxt
        if not changed:
            return label


def cluster_task(p: dict) -> dict:
    """All bucket edges -> per input file, the rows to remove; per snapshot counts."""
    n = p["documents"]
    edge_urls = p["edges"]

    def batches():
        for url in edge_urls:
            yield load_npz(url, ["edges"])["edges"]

    label = connected_min_labels(n, batches)
    removed = np.nonzero(label != np.arange(n, dtype=label.dtype))[0]
    # copies per kept document (itself included): what rehydration upsamples by
    row_sizes = np.bincount(label, minlength=n).astype(np.int32)[label] if n else np.empty(0, np.int32)
    roots = np.unique(label[removed])
    sizes = np.bincount(np.searchsorted(roots, label[removed]), minlength=roots.size) + 1 if roots.size else np.empty(0)

    snapshot_names = p["snapshots"]
    snapshot = np.empty(n, dtype=np.uint32)
    for f in p["files"]:
        local = load_npz(f["signatures"], ["snapshot"])["snapshot"]
        remap = np.array([snapshot_names.index(s) for s in f["snapshots"]], dtype=np.uint32)
        snapshot[f["offset"]:f["offset"] + f["rows"]] = remap[local] if local.size else local
        rows = removed[(removed >= f["offset"]) & (removed < f["offset"] + f["rows"])] - f["offset"]
        part = slice(f["offset"], f["offset"] + f["rows"])
        save_npz(f["remove"], rows=rows.astype(np.int64), sizes=row_sizes[part], label=label[part].astype(np.int64))
    k = len(snapshot_names)
    per = {
        name: {"documents_in": int(d), "clusters": int(c), "removed": int(r), "kept": int(d - r)}
        for name, d, c, r in zip(
            snapshot_names,
            np.bincount(snapshot, minlength=k),
            np.bincount(snapshot[roots], minlength=k) if roots.size else np.zeros(k, int),
            np.bincount(snapshot[removed], minlength=k) if removed.size else np.zeros(k, int),
        )
    }
    size_values, size_counts = np.unique(sizes, return_counts=True) if roots.size else (np.empty(0), np.empty(0))
    return {"documents": n, "clusters": int(roots.size), "removed": int(removed.size),
            "largest_cluster": int(sizes.max()) if roots.size else 0, "per_snapshot": per,
            "cluster_sizes": {str(int(v)): int(c) for v, c in zip(size_values, size_counts)}}


# --------------------------------------------------------------------------- stage 4

def filter_task(p: dict) -> dict:
    """One input Parquet file minus its removed rows, same schema, same file name."""
    table = read_documents(p["input"])
    expect = load_npz(p["signatures"], ["idhash"])["idhash"]
    ids = np.fromiter((string_hash(x) for x in table.column("id").to_pylist()), dtype=np.uint64,
                      count=table.num_rows)
    if not np.array_equal(ids, expect):
        raise InputError(f"{p['input']} changed while dedup ran (its ids differ from its signatures); "
                         "run the same `shammie dedup` again: the changed input is refused, or pass --overwrite")
    rows = load_npz(p["remove"], ["rows"])["rows"]
    keep = _load_mask(p.get("exact_keep"), table.num_rows).copy()
    exact_removed = int((~keep).sum())
    keep[rows] = False  # the clusters include the exact copies (edges to their first copy)
    against_removed = 0
    if p.get("against"):
        matched = load_npz(p["against"], ["rows"])["rows"]
        against_removed = int(keep[matched].sum())
        keep[matched] = False
    documents.write_table(table.filter(keep), p["output"])
    return {"documents": int(table.num_rows), "removed": int((~keep).sum()), "exact_removed": exact_removed,
            "against_removed": against_removed, "kept": int(keep.sum())}


def _load_mask(url: str | None, n: int) -> np.ndarray:
    """The exact-duplicate pass's keep mask of one file (all True when the pass is off)."""
    if url is None:
        return np.ones(n, dtype=bool)
    mask = load_npy(url)
    if mask.shape != (n,):
        raise InputError(f"{url}: {mask.shape[0]} rows, the input has {n}; run the same `shammie dedup` again")
    return mask


# --------------------------------------------------------------------------- driver

def _bucket_bits(documents_with_shingles: int, max_bucket_docs: int) -> int:
    """log2 of the hash ranges per band so one bucket task sorts <= max_bucket_docs keys."""
    bits = 0
    while (documents_with_shingles >> bits) > max_bucket_docs:
        bits += 1
    return bits


def _stage_summary(results: dict[str, dict], seconds: float, documents_count: int) -> dict:
    return {"seconds": round(seconds, 3), "tasks": len(results),
            "docs_per_s": round(documents_count / seconds, 1) if seconds > 0 else None}


@dataclass(frozen=True)
class DedupOptions:
    job: str = option(help="job directory (local path or s3://...) with a complete documents/ folder",
                      kind="output", positional=True, metavar="DIR", yaml=False)
    across_snapshots: bool = option(False, help="deduplicate the whole input together instead of each snapshot "
                                    "(CC dump) separately, as FineWeb does")
    exact: bool = option(True, help="first remove exact duplicates (same normalised text, a 64-bit content hash), "
                         "so MinHash only hashes the documents that could stay")
    threshold: float | None = option(None, help="target Jaccard similarity: choose bands x rows of the 112 hashes "
                                     "with datasketch's optimiser instead of FineWeb's 14 x 8", minimum=0.01,
                                     maximum=0.99)
    input_stage: str | None = option(None, help="document folder to read (default: the most downstream complete "
                                     "one before deduped/)", metavar="STAGE")
    against: tuple[str, ...] | None = option(None, help="earlier deduplicated jobs (e.g. last month's snapshot): documents that "
                                      "duplicate their kept documents are removed too, by probing their saved band "
                                      "index instead of recomputing them", kind="inputs", metavar="JOB")
    max_bucket_docs: int = option(MAX_BUCKET_DOCS, help="documents one bucket task sorts at most (bounds memory; "
                                  "the kept set does not depend on it)", minimum=1, metavar="N")
    keep_work: bool = option(False, help="keep deduped/_work (signatures, bucket edges, removals) for inspection",
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

    def __init__(self, job: str, options: DedupOptions | None = None, params: MinhashParams | None = None):
        super().__init__(job, options or DedupOptions(job=job))
        self.params = params or self.options.params()

    def settings(self) -> dict:
        values = {"input_stage": self.input_stage(), "across_snapshots": self.options.across_snapshots,
                  "exact": self.options.exact, "params": self.params.to_dict()}
        if (self.options.against or ()):
            values["against"] = [history.index_fingerprint(j) for j in (self.options.against or ())]
        return values

    def resolve_inputs(self):
        files = super().resolve_inputs()
        for job in (self.options.against or ()):  # checked before any work
            history.read_index_info(job, self.params.to_dict())
        return files

    def execute(self, ctx) -> dict[str, dict]:
        out, params, across = ctx.out, self.params, self.options.across_snapshots
        inputs = [t.payload["input"] for t in ctx.tasks]
        stage_stats: dict[str, dict] = {}

        # 0. exact duplicates, per snapshot like MinHash (one hash task per input file); their
        # (first copy, copy) pairs join the MinHash edges, so clusters count exact copies too
        t = time.monotonic()
        exact, exact_edges = [None] * len(inputs), np.empty((0, 2), np.int64)
        if self.options.exact:
            exact, exact_edges = exact_keep_masks(ctx, ctx.tasks, across, WORK)
        exact_seconds = time.monotonic() - t
        exact_edges_url = storage.join(out, WORK, "exact", "edges.npz")
        save_npz(exact_edges_url, edges=exact_edges)

        # 1. signatures, one task per input file
        t = time.monotonic()
        sig_urls = [storage.join(out, WORK, "signatures", f"{i:05d}.npz") for i in range(len(inputs))]
        sig_results = ctx.run_tasks([
            Task(f"{i:05d}", {"input": url, "output": sig_urls[i], "params": params.to_dict(),
                              "across_snapshots": across, "exact_keep": exact[i]},
                 (f"{WORK}/signatures/{i:05d}.npz",))
            for i, url in enumerate(inputs)], signature_task, folder=f"{WORK}/signatures",
            desc="dedup 1/4 signatures")
        sig = [sig_results[f"{i:05d}"] for i in range(len(inputs))]
        total = sum(s["documents"] for s in sig)
        if self.options.exact:
            stage_stats["exact"] = _stage_summary(dict.fromkeys(inputs, {}), exact_seconds, total)
        stage_stats["signatures"] = _stage_summary(sig_results, time.monotonic() - t, total)
        # Per core: documents over the CPU time of the signature tasks (read, hash, write; a
        # worker's first task also pays lazy imports), and over the hashing loop alone.
        cpu = sum(s.get("cpu_seconds", 0.0) for s in sig)
        hash_cpu = sum(s.get("hash_cpu_seconds", 0.0) for s in sig)
        stage_stats["signatures"]["docs_per_cpu_s"] = round(total / cpu, 1) if cpu > 0 else None
        stage_stats["signatures"]["hash_docs_per_cpu_s"] = round(total / hash_cpu, 1) if hash_cpu > 0 else None
        offsets = np.concatenate([[0], np.cumsum([s["documents"] for s in sig])]).astype(int).tolist()
        files = [{"url": sig_urls[i], "rows": sig[i]["documents"], "offset": offsets[i]} for i in range(len(inputs))]

        # 2. buckets, one task per (band, hash range)
        t = time.monotonic()
        bits = _bucket_bits(sum(s["with_shingles"] for s in sig), self.options.max_bucket_docs)
        bucket_tasks = [Task(f"b{band:03d}-p{part:05d}",
                             {"band": band, "part": part, "bits": bits, "files": files,
                              "output": storage.join(out, WORK, "buckets", f"b{band:03d}-p{part:05d}.npz")},
                             (f"{WORK}/buckets/b{band:03d}-p{part:05d}.npz",))
                        for band in range(params.bands) for part in range(1 << bits)]
        bucket_results = ctx.run_tasks(bucket_tasks, bucket_task, folder=f"{WORK}/buckets",
                                       desc="dedup 2/4 buckets")
        stage_stats["buckets"] = _stage_summary(bucket_results, time.monotonic() - t, total)

        # 3. clusters: one task (union-find over all documents, memory O(documents))
        t = time.monotonic()
        snapshots = sorted({s for r in sig for s in r["snapshots"]})
        removes = [f"{WORK}/clusters/{i:05d}.remove.npz" for i in range(len(inputs))]
        cluster_payload = {
            "documents": total, "snapshots": snapshots,
            "edges": [task.payload["output"] for task in bucket_tasks] + [exact_edges_url],
            "files": [{"signatures": sig_urls[i], "snapshots": sig[i]["snapshots"], "rows": sig[i]["documents"],
                       "offset": offsets[i], "remove": storage.join(out, removes[i])} for i in range(len(inputs))],
        }
        clusters = ctx.run_tasks([Task("clusters", cluster_payload, tuple(removes))], cluster_task,
                                 folder=f"{WORK}/clusters", desc="dedup 3/4 clusters")["clusters"]
        stage_stats["clusters"] = _stage_summary({"clusters": clusters}, time.monotonic() - t, total)

        # 3b. against earlier jobs' indexes (incremental snapshots): probe every document, then
        # remove each cluster with a member that matched (one task per input file, then the driver)
        against = [None] * len(inputs)
        against_removed = matched_root = per_job = None
        earlier_jobs = list(self.options.against or ())
        if earlier_jobs:
            t = time.monotonic()
            indexes = [history.index_url(j) for j in earlier_jobs]
            matches = [storage.join(out, WORK, "against", f"{i:05d}.matches.npz") for i in range(len(inputs))]
            ctx.run_tasks([
                Task(f"{i:05d}", {"signatures": sig_urls[i], "indexes": indexes, "bands": params.bands,
                                  "output": matches[i]}, (f"{WORK}/against/{i:05d}.matches.npz",))
                for i in range(len(inputs))], history.against_task, folder=f"{WORK}/against",
                desc="dedup: against earlier jobs")
            against_removed, matched_root, per_job = history.clusters_matching_history(
                [{"remove": cluster_payload["files"][i]["remove"], "against": matches[i], "offset": offsets[i]}
                 for i in range(len(inputs))], len(earlier_jobs))
            against = [storage.join(out, WORK, "against", f"{i:05d}.remove.npz") for i in range(len(inputs))]
            for url, rows in zip(against, against_removed):
                save_npz(url, rows=rows)
            stage_stats["against"] = _stage_summary(dict.fromkeys(inputs, {}), time.monotonic() - t, total)

        # 4. filter, one task per input file
        t = time.monotonic()
        filtered = ctx.run_tasks([
            Task(task.name, {**task.payload, "signatures": sig_urls[i], "remove": cluster_payload["files"][i]["remove"],
                             "exact_keep": exact[i], "against": against[i]}, task.outputs)
            for i, task in enumerate(ctx.tasks)], filter_task, desc="dedup 4/4 filter")
        stage_stats["filter"] = _stage_summary(filtered, time.monotonic() - t, total)

        # 5. this job's band index, for later snapshots' --against
        t = time.monotonic()
        self._index = history.write_index(
            out, [{"signatures": sig_urls[i], "remove": cluster_payload["files"][i]["remove"], "offset": offsets[i]}
                  for i in range(len(inputs))], params.to_dict(), earlier_jobs, against_removed, matched_root, per_job)
        stage_stats["index"] = _stage_summary(dict.fromkeys(inputs, {}), time.monotonic() - t, total)
        exact_by_snapshot = dict.fromkeys(snapshots, 0)
        for r in sig:
            for name, count in zip(r["snapshots"], r.get("exact_removed", [])):
                exact_by_snapshot[name] += count
        self._run_stats = {"total": total, "clusters": clusters, "stages": stage_stats, "bits": bits,
                           "exact_by_snapshot": exact_by_snapshot}
        if not self.options.keep_work:
            storage.remove(storage.join(out, WORK))
        return filtered

    def summarize(self, results: dict[str, dict]) -> dict:
        run = self._run_stats
        total, clusters = run["total"], run["clusters"]
        kept = sum(r["kept"] for r in results.values())
        exact_removed = sum(int(r.get("exact_removed", 0)) for r in results.values())
        against_removed = sum(int(r.get("against_removed", 0)) for r in results.values())
        per_snapshot = {}
        for name, s in clusters["per_snapshot"].items():
            exact = run["exact_by_snapshot"].get(name, 0)
            # clusters count near-duplicate clusters among the documents left by the exact pass
            per_snapshot[name] = {**s, "exact_removed": exact, "near_removed": s["removed"] - exact}
        params = self.params
        return {
            "documents": kept, "documents_in": total, "clusters": clusters["clusters"],
            "removed": total - kept, "exact_removed": exact_removed, "against_removed": against_removed,
            "near_removed": total - kept - exact_removed - against_removed, "against": self._index["against"],
            "index_documents": self._index["documents"],
            "kept": kept, "largest_cluster": clusters["largest_cluster"],
            "cluster_sizes": clusters.get("cluster_sizes", {}), "exact": self.options.exact,
            "per_snapshot": per_snapshot,
            "scope": "across snapshots" if self.options.across_snapshots else "per snapshot",
            "input_stage": self.input_stage(), "files": len(results),
            "params": {**params.to_dict(), "num_perm": params.num_perm, "threshold": round(params.threshold, 4)},
            "bucket_ranges_per_band": 1 << run["bits"], "stages": run["stages"],
        }

    def describe(self, section: dict) -> str:
        return summarise(section)


def dedup(job: str, *, workers: int | None = None, ray_address: str | None = None,
          across_snapshots: bool = False, input_stage: str | None = None, progress: bool = True,
          params: MinhashParams | None = None, max_bucket_docs: int = MAX_BUCKET_DOCS,
          keep_work: bool = False, overwrite: bool = False, wait: bool = False, exact: bool = True,
          against: tuple[str, ...] = ()) -> dict:
    """Remove exact and near-duplicates from the job's documents into `JOB/deduped/`; return the stats section."""
    options = DedupOptions(job=job, across_snapshots=across_snapshots, input_stage=input_stage,
                           max_bucket_docs=max_bucket_docs, keep_work=keep_work, exact=exact, against=tuple(against) or None)
    run = RunOptions(workers=workers, ray_address=ray_address, progress=progress, overwrite=overwrite, wait=wait)
    return run_stage(DedupStage(job, options, params=params), run).section


def summarise(stats: dict) -> str:
    lines = [f"dedup ({stats['scope']}): {stats['documents_in']} documents in, {stats['clusters']} duplicate "
             f"clusters, {stats['removed']} removed ({stats.get('exact_removed', 0)} exact copies, "
             f"{stats.get('near_removed', stats['removed'])} near-duplicates), {stats['kept']} kept "
             f"({stats['seconds']:.1f} s)"]
    for name, s in sorted(stats["per_snapshot"].items()):
        lines.append(f"  {name}: {s['documents_in']} in, {s['clusters']} clusters, "
                     f"{s['removed']} removed, {s['kept']} kept")
    for stage, s in stats["stages"].items():
        lines.append(f"  stage {stage}: {s['seconds']} s, {s['docs_per_s']} docs/s, {s['tasks']} tasks")
    return "\n".join(lines)


__all__ = ["dedup", "MinhashParams", "connected_min_labels", "summarise"]
