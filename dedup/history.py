"""Incremental snapshots: deduplicate a new job against earlier, already-deduplicated jobs.

Common Crawl publishes a snapshot about every month; redoing MinHash over every earlier
snapshot each time costs the whole history. Instead every `shammie dedup` leaves the
band index of the documents it kept in `deduped/_index/`:

    k00.npy ... kNN.npy   per band, the sorted 64-bit band keys of the kept documents
                          (not salted by snapshot, so other jobs' documents can match)
    d00.npy ... dNN.npy   per band, the kept document each key belongs to
    docs.npz              per kept document: `idhash` (64-bit hash of its id) and
                          `cluster_size` (its copies in this job, itself included)
    index.json            MinHash parameters, counts, and what was matched in earlier jobs
    earlier_copies.npz    (earlier job, document, copies found here), for rehydration

`shammie dedup NEW --against OLD1 OLD2` then removes each document of NEW that shares a
band with a kept document of an earlier job, probing the earlier indexes with a binary
search (memory-mapped, so only the pages probed are read): the work grows with the new
snapshot (and the log of the history), never re-hashes earlier documents, and never
rewrites earlier jobs. FineWeb-2-style rehydration (upsampling by duplicate count)
takes a kept document's copies as its `cluster_size` plus the `earlier_copies` later
jobs recorded for it.

Hand-written because datatrove's MinHash stages have no persistent index to probe
(every run re-buckets everything) and datasketch's MinHashLSH keeps its index in memory
as Python objects (~100+ bytes per key) instead of arrays on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shammie.dedup.arrays import load_npy, load_npz, open_npz, save_npy, save_npz
from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError

INDEX = "_index"
INDEX_FORMAT = 1


def index_url(job: str) -> str:
    return storage.join(job, jobdir.DEDUPED, INDEX)


def read_index_info(job: str, params: dict[str, Any]) -> dict[str, Any]:
    """The index of an earlier job, checked: it exists and was built with the same MinHash settings."""
    url = storage.join(index_url(job), "index.json")
    try:
        info = storage.read_json(url)
    except ValueError as e:
        raise InputError(str(e)) from None
    if info is None:
        raise InputError(f"--against {job}: no dedup index at {index_url(job)} (it was deduplicated by an older "
                         "Shammie or is not complete); re-run its `shammie dedup --overwrite` once")
    if info.get("params") != params:
        raise InputError(f"--against {job}: deduplicated with other MinHash settings ({info.get('params')}), "
                         f"this run uses {params}; use the same --threshold")
    return info


def index_fingerprint(job: str) -> dict[str, Any]:
    """What identifies an earlier job's index (part of this run's settings)."""
    return {"job": job, **(storage.file_fingerprint(storage.join(index_url(job), "index.json")) or {})}


def against_task(p: dict) -> dict:
    """One input file: which of its documents share a band with any document of an earlier job.

    Every document with shingles is probed, not only this job's kept ones: a cluster of
    this job is a duplicate of the history as soon as one of its members is, exactly as
    if all snapshots had been clustered together (the driver then removes whole clusters)."""
    with open_npz(p["signatures"]) as sig:
        valid = sig["valid"]
        keys_of_band = [_unsalted(sig, b) for b in range(p["bands"])]
    rows = np.flatnonzero(valid)
    matched_job = np.full(rows.size, -1, dtype=np.int32)
    matched_doc = np.full(rows.size, -1, dtype=np.int64)
    for j, index in enumerate(p["indexes"]):
        for b in range(p["bands"]):
            open_rows = matched_job < 0
            if not open_rows.any():
                break
            keys = load_npy(storage.join(index, f"k{b:02d}.npy"), mmap=True)
            if keys.size == 0:
                continue
            query = keys_of_band[b][rows[open_rows]]
            pos = np.searchsorted(keys, query)
            pos_clipped = np.minimum(pos, keys.size - 1)
            hit = (pos < keys.size) & (np.asarray(keys[pos_clipped]) == query)
            if hit.any():
                docs = load_npy(storage.join(index, f"d{b:02d}.npy"), mmap=True)
                where = np.flatnonzero(open_rows)[hit]
                matched_job[where] = j
                matched_doc[where] = np.asarray(docs[pos_clipped[hit]])
    found = matched_job >= 0
    out = {"rows": rows[found].astype(np.int64), "job": matched_job[found], "doc": matched_doc[found]}
    save_npz(p["output"], **out)
    return {"documents": int(valid.shape[0]), "matched": int(found.sum())}


def clusters_matching_history(files: list[dict], n_jobs: int) -> tuple[list[np.ndarray], dict[int, tuple[int, int]],
                                                                         list[int]]:
    """Driver: the clusters (by root row) with a member that matched an earlier job.

    Returns, per file, the rows to remove because their cluster matched (the cluster's kept
    root: the other members are removed by this job's own pass anyway), the first
    (job, doc) each matched cluster hit, and per earlier job the documents removed for it."""
    matched_root: dict[int, tuple[int, int]] = {}
    labels = []
    for f in files:
        label = load_npz(f["remove"], ["label"])["label"]
        labels.append(label)
        m = load_npz(f["against"], ["rows", "job", "doc"])
        for root, j, d in zip(label[m["rows"]].tolist(), m["job"].tolist(), m["doc"].tolist()):
            matched_root.setdefault(root, (j, d))
    roots = np.array(sorted(matched_root), dtype=np.int64)
    per_file, per_job = [], [0] * n_jobs
    for f, label in zip(files, labels):
        is_root = label == np.arange(f["offset"], f["offset"] + label.size)
        rows = np.flatnonzero(is_root & np.isin(label, roots))
        for r in rows.tolist():
            per_job[matched_root[int(label[r])][0]] += 1
        per_file.append(rows.astype(np.int64))
    return per_file, matched_root, per_job


def _unsalted(sig, b: int) -> np.ndarray:
    name = f"u{b:02d}"
    return sig[name] if name in sig.files else sig[f"k{b:02d}"]


def write_index(out: str, files: list[dict], params: dict[str, Any], against: list[str],
                against_removed: list[np.ndarray] | None, matched_root: dict[int, tuple[int, int]] | None,
                per_job: list[int] | None) -> dict[str, Any]:
    """Build `<out>/_index/` (driver side, one band at a time).

    Every document with shingles is in the band index, removed ones too, so a later
    snapshot's document that resembles a removed copy is still found (as clustering all
    snapshots together would); a key maps to the kept document of its cluster, or -1 when
    the cluster was removed as a copy of an earlier job."""
    root_dir = storage.join(out, INDEX)
    keep_per_file, labels, idhash, sizes, valid_rows = [], [], [], [], []
    for i, f in enumerate(files):
        sig = load_npz(f["signatures"], ["valid", "idhash"])
        removed = load_npz(f["remove"], ["rows", "label", "sizes"])
        keep = np.ones(sig["valid"].shape[0], dtype=bool)
        keep[removed["rows"]] = False
        if against_removed is not None:
            keep[against_removed[i]] = False
        keep_per_file.append(keep)
        labels.append(removed["label"])
        idhash.append(sig["idhash"][keep])
        sizes.append(removed["sizes"][keep])
        valid_rows.append(np.flatnonzero(sig["valid"]))  # documents too short for shingles have no keys
    # each keyed document -> the kept document of its cluster (its number among kept documents), or -1
    kept_global = np.concatenate([np.flatnonzero(k) + f["offset"] for k, f in zip(keep_per_file, files)]) \
        if files else np.empty(0, np.int64)
    doc_of_rows = []
    for rows, label in zip(valid_rows, labels):
        root = label[rows]
        pos = np.searchsorted(kept_global, root)
        pos_clipped = np.minimum(pos, max(kept_global.size - 1, 0))
        ok = (pos < kept_global.size) & (kept_global[pos_clipped] == root) if kept_global.size else \
            np.zeros(rows.size, dtype=bool)
        doc_of_rows.append(np.where(ok, pos_clipped, -1).astype(np.int64))
    for b in range(params["bands"]):  # one band of every file in memory at a time
        keys = []
        for f, rows in zip(files, valid_rows):
            with open_npz(f["signatures"]) as sig:
                keys.append(_unsalted(sig, b)[rows])
        docs = doc_of_rows
        k = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        d = np.concatenate(docs) if docs else np.empty(0, np.int64)
        order = np.argsort(k, kind="stable")
        save_npy(storage.join(root_dir, f"k{b:02d}.npy"), k[order])
        save_npy(storage.join(root_dir, f"d{b:02d}.npy"), d[order])
    save_npz(storage.join(root_dir, "docs.npz"), idhash=np.concatenate(idhash) if idhash else np.empty(0, np.uint64),
             cluster_size=np.concatenate(sizes).astype(np.int32) if sizes else np.empty(0, np.int32))
    # rehydration: a whole cluster of this job is a set of copies of the earlier document it hit
    earlier: dict[tuple[int, int], int] = {}
    all_labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
    cluster_sizes = np.bincount(all_labels, minlength=all_labels.size) if all_labels.size else np.empty(0)
    for root, (j, d) in sorted((matched_root or {}).items()):
        if d >= 0:
            earlier[(j, d)] = earlier.get((j, d), 0) + int(cluster_sizes[root])
    pairs = sorted(earlier.items())
    save_npz(storage.join(root_dir, "earlier_copies.npz"), job=np.array([p[0][0] for p in pairs], dtype=np.int32),
             doc=np.array([p[0][1] for p in pairs], dtype=np.int64),
             copies=np.array([p[1] for p in pairs], dtype=np.int64))
    info = {"format": INDEX_FORMAT, "params": params, "documents": int(kept_global.size),
            "against": [{"job": job, "removed": n} for job, n in zip(against, per_job or [0] * len(against))]}
    storage.write_json_atomic(storage.join(root_dir, "index.json"), info)
    return info


def rehydration_counts(job: str, later_jobs: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(idhash, copies) of a job's kept documents: copies in the job itself plus those later
    jobs deduplicated `--against` it found (FineWeb-2's rehydration upsamples by this count)."""
    docs = load_npz(storage.join(index_url(job), "docs.npz"), ["idhash", "cluster_size"])
    copies = docs["cluster_size"].astype(np.int64).copy()
    for later in later_jobs:
        info = storage.read_json(storage.join(index_url(later), "index.json")) or {}
        against = [a["job"] for a in info.get("against", [])]
        if job not in against:
            continue
        j = against.index(job)
        found = load_npz(storage.join(index_url(later), "earlier_copies.npz"), ["job", "doc", "copies"])
        mine = found["job"] == j
        np.add.at(copies, found["doc"][mine], found["copies"][mine])
    return docs["idhash"], copies
