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

import json
from typing import Any

import numpy as np

from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError

INDEX = "_index"
INDEX_FORMAT = 1


def index_url(job: str) -> str:
    return storage.join(job, jobdir.DEDUPED, INDEX)


def _save(url: str, array: np.ndarray) -> None:
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        np.save(f, array)


def _load(url: str, mmap: bool = False) -> np.ndarray:
    if mmap and not storage.is_remote(url):
        return np.load(storage.strip_file_scheme(url), mmap_mode="r")
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return np.load(f)


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
    sig = np.load(_open(p["signatures"]))
    valid = sig["valid"]
    rows = np.flatnonzero(valid)
    matched_job = np.full(rows.size, -1, dtype=np.int32)
    matched_doc = np.full(rows.size, -1, dtype=np.int64)
    for j, index in enumerate(p["indexes"]):
        for b in range(p["bands"]):
            open_rows = matched_job < 0
            if not open_rows.any():
                break
            keys = _load(storage.join(index, f"k{b:02d}.npy"), mmap=True)
            if keys.size == 0:
                continue
            query = _unsalted(sig, b)[rows[open_rows]]
            pos = np.searchsorted(keys, query)
            pos_clipped = np.minimum(pos, keys.size - 1)
            hit = (pos < keys.size) & (np.asarray(keys[pos_clipped]) == query)
            if hit.any():
                docs = _load(storage.join(index, f"d{b:02d}.npy"), mmap=True)
                where = np.flatnonzero(open_rows)[hit]
                matched_job[where] = j
                matched_doc[where] = np.asarray(docs[pos_clipped[hit]])
    found = matched_job >= 0
    out = {"rows": rows[found].astype(np.int64), "job": matched_job[found], "doc": matched_doc[found]}
    with storage.atomic_write(p["output"]) as local, open(local, "wb") as f:
        np.savez(f, **out)
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
        label = np.load(_open(f["remove"]))["label"]
        labels.append(label)
        m = np.load(_open(f["against"]))
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


def _open(url: str):
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        import io

        return io.BytesIO(f.read())


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
    keep_per_file, labels, idhash, sizes = [], [], [], []
    for i, f in enumerate(files):
        sig = np.load(_open(f["signatures"]))
        removed = np.load(_open(f["remove"]))
        keep = np.ones(sig["valid"].shape[0], dtype=bool)
        keep[removed["rows"]] = False
        if against_removed is not None:
            keep[against_removed[i]] = False
        keep_per_file.append(keep)
        labels.append(removed["label"])
        idhash.append(sig["idhash"][keep])
        sizes.append(removed["sizes"][keep])
    # kept document number of each kept root (global row -> number among kept documents)
    kept_global = np.concatenate([np.flatnonzero(k) + f["offset"] for k, f in zip(keep_per_file, files)]) \
        if files else np.empty(0, np.int64)
    for b in range(params["bands"]):
        keys, docs = [], []
        for i, f in enumerate(files):
            sig = np.load(_open(f["signatures"]))
            rows = np.flatnonzero(sig["valid"])
            keys.append(_unsalted(sig, b)[rows])
            root = labels[i][rows]
            pos = np.searchsorted(kept_global, root)
            pos_clipped = np.minimum(pos, max(kept_global.size - 1, 0))
            ok = (pos < kept_global.size) & (kept_global[pos_clipped] == root) if kept_global.size else \
                np.zeros(rows.size, dtype=bool)
            docs.append(np.where(ok, pos_clipped, -1).astype(np.int64))
        k = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        d = np.concatenate(docs) if docs else np.empty(0, np.int64)
        order = np.argsort(k, kind="stable")
        _save(storage.join(root_dir, f"k{b:02d}.npy"), k[order])
        _save(storage.join(root_dir, f"d{b:02d}.npy"), d[order])
    with storage.atomic_write(storage.join(root_dir, "docs.npz")) as local, open(local, "wb") as fh:
        np.savez(fh, idhash=np.concatenate(idhash) if idhash else np.empty(0, np.uint64),
                 cluster_size=np.concatenate(sizes).astype(np.int32) if sizes else np.empty(0, np.int32))
    # rehydration: a whole cluster of this job is a set of copies of the earlier document it hit
    earlier: dict[tuple[int, int], int] = {}
    all_labels = np.concatenate(labels) if labels else np.empty(0, np.int64)
    cluster_sizes = np.bincount(all_labels, minlength=all_labels.size) if all_labels.size else np.empty(0)
    for root, (j, d) in sorted((matched_root or {}).items()):
        if d >= 0:
            earlier[(j, d)] = earlier.get((j, d), 0) + int(cluster_sizes[root])
    pairs = sorted(earlier.items())
    with storage.atomic_write(storage.join(root_dir, "earlier_copies.npz")) as local, open(local, "wb") as fh:
        np.savez(fh, job=np.array([p[0][0] for p in pairs], dtype=np.int32),
                 doc=np.array([p[0][1] for p in pairs], dtype=np.int64),
                 copies=np.array([p[1] for p in pairs], dtype=np.int64))
    info = {"format": INDEX_FORMAT, "params": params, "documents": int(kept_global.size),
            "against": [{"job": job, "removed": n} for job, n in zip(against, per_job or [0] * len(against))]}
    storage.write_json_atomic(storage.join(root_dir, "index.json"), info)
    return info


def rehydration_counts(job: str, later_jobs: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(idhash, copies) of a job's kept documents: copies in the job itself plus those later
    jobs deduplicated `--against` it found (FineWeb-2's rehydration upsamples by this count)."""
    docs = np.load(_open(storage.join(index_url(job), "docs.npz")))
    copies = docs["cluster_size"].astype(np.int64).copy()
    for later in later_jobs:
        info = storage.read_json(storage.join(index_url(later), "index.json")) or {}
        against = [a["job"] for a in info.get("against", [])]
        if job not in against:
            continue
        j = against.index(job)
        found = np.load(_open(storage.join(index_url(later), "earlier_copies.npz")))
        mine = found["job"] == j
        np.add.at(copies, found["doc"][mine], found["copies"][mine])
    return docs["idhash"], copies


def describe_against(info: dict[str, Any]) -> str:
    return json.dumps(info.get("against", []))
