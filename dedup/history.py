"""Incremental snapshots: deduplicate a new job against earlier, already-deduplicated jobs.

Common Crawl publishes a snapshot about every month; redoing MinHash over every earlier
snapshot each time costs the whole history. A `shammie dedup --keep-index` leaves the
band index of its documents in `_meta/deduped/index/`, written by the workers themselves:

    shards/bBB-rRRRRR.npy  one per (band, key range), written by that bucket task: the
                           sorted 64-bit band keys (not salted by snapshot, so other
                           jobs' documents can match) of every document with shingles,
                           each with its document number (16 bytes per document and band)
    exact/rRRRRR.npy       one per hash range, written by that exact-reduce task: the sorted
                           64-bit exact hashes (of the normalised words, not salted) of the
                           first document of each distinct text, with its document number
                           (16 bytes per distinct document): documents under 5 words have no
                           band keys, so this is how a later job finds their copies
    files/NNNNN.npz        one per input file, written by its filter task: the kept rows
                           with their id hash and cluster size (20 bytes per kept
                           document), and the root of every row in a duplicate cluster
                           (16 bytes per such row), for rehydration
    index.json             MinHash parameters, key-range bits, input files and their
                           first document numbers, what was matched in earlier jobs, and
                           the job's `job_id` (later jobs name it by this id, never by the
                           path they were given, so any spelling of the path counts alike)
    earlier_copies/*.npz   (earlier job, its document, copies found here), for rehydration

`index.json` and `earlier_copies/` are written by every run (they are small: O(input
files) and O(clusters that matched an earlier job)); the shards and files only with
`--keep-index`, since they cost ~240 bytes per document (docs/dedup.md).

`shammie dedup NEW --against OLD1 OLD2` probes the earlier indexes inside its own bucket
tasks: task (band b, key range r) reads the earlier jobs' shards that cover r (a binary
search, memory-mapped when local) and turns every match into an edge between the new
document and a *virtual document* standing for the earlier one. Virtual documents have
negative numbers, smaller than every document of the new job, so a cluster that touches
the history is labelled by one of them and removed whole, exactly as if all snapshots had
been clustered together with the earlier files first.

Hand-written because datatrove's MinHash stages have no persistent index to probe
(every run re-buckets everything) and datasketch's MinHashLSH keeps its index in memory
as Python objects (~100+ bytes per key) instead of arrays on disk.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np

from shammie.dedup.arrays import load_npy, load_npz
from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError

INDEX = "index"  # in the deduped/ folder's bookkeeping folder, JOB/_meta/deduped/index/
# 3: exact hashes of every distinct text (short documents too), words normalised as
# NORMALISATION 2 (every Unicode space, language word splitters), a stable job_id.
INDEX_FORMAT = 3
EARLIER_COPIES = "earlier_copies"
KEY_DOC = np.dtype([("key", "<u8"), ("doc", "<i8")])
# Virtual document of earlier job j, document d: VIRTUAL_BASE + j * 2^40 + d (negative, ordered by (j, d)).
VIRTUAL_BASE = -(2**63)
_DOC_BITS = 40


def index_url(job: str) -> str:
    return storage.join(jobdir.meta_path(job, jobdir.DEDUPED), INDEX)


def shard_name(band: int, part: int) -> str:
    return f"shards/b{band:02d}-r{part:05d}.npy"


def exact_shard_name(part: int) -> str:
    return f"exact/r{part:05d}.npy"


def resolve_job(job: str) -> str:
    """A job as recorded and compared: local paths made absolute (one spelling per folder)."""
    return job if storage.is_remote(job) else os.path.abspath(storage.strip_file_scheme(job))


def file_record_name(index: int) -> str:
    return f"files/{index:05d}.npz"


def virtual_doc(job_index: int, doc: np.ndarray) -> np.ndarray:
    return np.int64(VIRTUAL_BASE) + (np.int64(job_index) << np.int64(_DOC_BITS)) + doc.astype(np.int64)


def virtual_parts(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(earlier job index, its document number) of virtual documents."""
    rel = v.astype(np.int64) - np.int64(VIRTUAL_BASE)
    return rel >> np.int64(_DOC_BITS), rel & np.int64((1 << _DOC_BITS) - 1)


def read_index_record(job: str) -> dict[str, Any]:
    """A job's index.json, checked: it exists and has this Shammie's format."""
    url = storage.join(index_url(job), "index.json")
    try:
        info = storage.read_json(url)
    except ValueError as e:
        raise InputError(str(e)) from None
    redo = "re-run its `shammie dedup --keep-index --overwrite` once"
    if not isinstance(info, dict):
        raise InputError(f"--against {job}: no dedup index at {index_url(job)} (it is not deduplicated yet, or by "
                         f"an older Shammie); {redo}")
    if info.get("format") != INDEX_FORMAT:
        raise InputError(f"--against {job}: its dedup index has format {info.get('format')}, this Shammie reads "
                         f"{INDEX_FORMAT}; {redo}")
    return info


def read_index_info(job: str, params: dict[str, Any] | None = None, exact: bool = False) -> dict[str, Any]:
    """The index of an earlier job, checked: it exists, is probeable and (unless `params` is None)
    used the same MinHash settings; with `exact`, it holds exact hashes."""
    info = read_index_record(job)
    if not info.get("shards"):
        raise InputError(f"--against {job}: it was deduplicated without --keep-index, so it has no band index to "
                         f"probe; re-run its `shammie dedup --keep-index --overwrite` once")
    if params is not None and info.get("params") != params:
        raise InputError(f"--against {job}: deduplicated with other MinHash settings ({info.get('params')}), "
                         f"this run uses {params}; use the same --threshold")
    if exact and not info.get("exact"):
        raise InputError(f"--against {job}: it was deduplicated with --no-exact, so its index has no exact hashes "
                         f"to find copies of short documents in; re-run it without --no-exact (--keep-index "
                         f"--overwrite), or pass --no-exact here too")
    return info


def job_id(index_folder: str) -> str:
    """The id a job's index is known by: kept from an index.json already in `index_folder` (a resumed
    run), else new. Later jobs record it, so rehydration never depends on how a path was spelt."""
    try:
        found = storage.read_json(storage.join(index_folder, "index.json"))
    except ValueError:
        found = None
    if isinstance(found, dict) and isinstance(found.get("job_id"), str):
        return found["job_id"]
    return uuid.uuid4().hex


def index_fingerprint(job: str) -> dict[str, Any]:
    """What identifies an earlier job's index (part of this run's settings): its resolved path and
    its index.json's fingerprint (which changes when the job is deduplicated again)."""
    return {"job": resolve_job(job), **(storage.file_fingerprint(storage.join(index_url(job), "index.json")) or {})}


def earlier_index(job: str, params: dict[str, Any], exact: bool = False) -> dict[str, Any]:
    """What a bucket task needs to probe an earlier job: where its shards are and how its keys were split."""
    info = read_index_info(job, params, exact)
    return {"url": index_url(job), "bits": int(info["bits"]), "job_id": info.get("job_id"),
            "job": resolve_job(job)}


def _load_shard(url: str) -> np.ndarray:
    return load_npy(url, mmap=True)


def probe(keys: np.ndarray, docs: np.ndarray, band: int | None, part: int, bits: int,
          earlier: list[dict[str, Any]]) -> np.ndarray:
    """(virtual earlier document, document) edges for the documents whose key in `band`
    (None: whose exact hash) equals a key of an earlier job. `keys` are this task's keys of
    range `part` (of 2^bits ranges), sorted; an earlier job split its keys into 2^its_bits
    ranges, so the shards read are the ones covering `part` (one, or several when it split finer)."""
    edges = []
    for j, e in enumerate(earlier):
        shift = int(e["bits"]) - bits
        parts = range(part << shift, (part + 1) << shift) if shift >= 0 else range(part >> -shift, (part >> -shift) + 1)
        names = [exact_shard_name(q) if band is None else shard_name(band, q) for q in parts]
        shards = [_load_shard(storage.join(e["url"], name)) for name in names]
        old = np.concatenate([np.asarray(s) for s in shards]) if len(shards) > 1 else np.asarray(shards[0])
        if old.size == 0 or keys.size == 0:
            continue
        pos = np.searchsorted(old["key"], keys)
        clipped = np.minimum(pos, old.size - 1)
        hit = (pos < old.size) & (old["key"][clipped] == keys)
        if hit.any():
            edges.append(np.stack([virtual_doc(j, old["doc"][clipped[hit]]), docs[hit]], axis=1))
    return np.concatenate(edges) if edges else np.empty((0, 2), np.int64)


# FineWeb-2's upsampling of a kept document by its duplicate cluster's size (README, "re-hydration"):
# bisect the size into these limits: 1 -> 1x, 2 -> 2x, 3-4 -> 3x, 5-99 -> 5x, 100-999 -> 8x, 1000+ -> 1x
# (very large clusters are assumed to be boilerplate).
FINEWEB2_UPSAMPLING = {1: 1, 2: 2, 3: 3, 5: 5, 100: 8, 1000: 1}
CLUSTER_SIZE_COLUMN = "minhash_cluster_size"  # FineWeb-2's name for it, written by `shammie dedup`


def upsampling_weights(cluster_sizes: np.ndarray, table: dict[int, int] = FINEWEB2_UPSAMPLING) -> np.ndarray:
    """How many times each document appears after rehydration, from its cluster size (FineWeb-2's weights)."""
    limits = np.array(sorted(table), dtype=np.int64)
    weights = np.array([table[k] for k in sorted(table)], dtype=np.int64)
    sizes = np.maximum(np.asarray(cluster_sizes, dtype=np.int64), 1)
    return weights[np.searchsorted(limits, sizes, side="right") - 1]


def rehydration_counts(job: str, later_jobs: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(idhash, copies) of a job's kept documents, in input order: the copies in the job itself
    plus those later jobs deduplicated `--against` it found (FineWeb-2's rehydration
    upsamples by this count). Needs the job deduplicated with --keep-index. Holds two
    arrays over the job's kept documents (12 bytes each)."""
    info = read_index_info(job)
    mine_id = info["job_id"]
    offsets = np.asarray(info["offsets"], dtype=np.int64)
    idhash, copies, kept_rows, kept_before = [], [], [], [0]
    for i in range(len(info["files"])):
        rec = load_npz(storage.join(index_url(job), file_record_name(i)), ["kept_rows", "kept_idhash", "kept_size"])
        idhash.append(rec["kept_idhash"])
        copies.append(rec["kept_size"].astype(np.int64))
        kept_rows.append(rec["kept_rows"])
        kept_before.append(kept_before[-1] + rec["kept_rows"].size)
    idhash = np.concatenate(idhash) if idhash else np.empty(0, np.uint64)
    copies = np.concatenate(copies) if copies else np.empty(0, np.int64)
    for later in later_jobs:
        later_info = read_index_record(later)
        against = [a.get("job_id") for a in later_info.get("against", [])]
        if mine_id not in against:
            raise InputError(f"{later} was not deduplicated --against {job} (its index names "
                             f"{', '.join(a.get('job', '?') for a in later_info.get('against', [])) or 'no earlier job'})")
        j = against.index(mine_id)
        found = earlier_copies(later)
        mine = found["job"] == j
        for doc, n in zip(found["doc"][mine].tolist(), found["copies"][mine].tolist()):
            root = _root_of(job, offsets, doc)
            if root < 0:
                continue  # that cluster was itself removed as a copy of an even earlier job
            f = int(np.searchsorted(offsets, root, side="right") - 1)
            rank = int(np.searchsorted(kept_rows[f], root - offsets[f]))
            copies[kept_before[f] + rank] += n
    return idhash, copies


def earlier_copies(job: str) -> dict[str, np.ndarray]:
    """(job index in its `against` list, that job's document, copies found here) of a job deduplicated --against."""
    folder = storage.join(index_url(job), EARLIER_COPIES)
    parts = [load_npz(storage.join(folder, name), ["job", "doc", "copies"])
             for name in sorted(storage.listdir(folder)) if name.endswith(".npz")]
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.empty(0, np.int64)
            for k in ("job", "doc", "copies")}


def _root_of(job: str, offsets: np.ndarray, doc: int) -> int:
    f = int(np.searchsorted(offsets, doc, side="right") - 1)
    rec = load_npz(storage.join(index_url(job), file_record_name(f)), ["cluster_rows", "cluster_root"])
    row = doc - int(offsets[f])
    pos = int(np.searchsorted(rec["cluster_rows"], row))
    if pos < rec["cluster_rows"].size and rec["cluster_rows"][pos] == row:
        return int(rec["cluster_root"][pos])
    return doc
