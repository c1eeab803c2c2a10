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
    """One input file: which of its rows left by this job's own dedup match an earlier job's kept documents."""
    sig = np.load(_open(p["signatures"]))
    valid = sig["valid"]
    n = valid.shape[0]
    remove = np.load(_open(p["remove"]))["rows"]
    alive = valid.copy()
    alive[remove] = False
    rows = np.flatnonzero(alive)
    matched_job = np.full(rows.size, -1, dtype=np.int32)
    matched_doc = np.full(rows.size, -1, dtype=np.int64)
    for j, index in enumerate(p["indexes"]):
        for b in range(p["bands"]):
            open_rows = matched_job < 0
            if not open_rows.any():
                break
            query = _unsalted(sig, b)[rows[open_rows]]
            keys = _load(storage.join(index, f"k{b:02d}.npy"), mmap=True)
            if keys.size == 0:
                continue
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
    return {"documents": int(n), "removed": int(found.sum()),
            "per_job": [int(c) for c in np.bincount(out["job"], minlength=len(p["indexes"]))]}


def _open(url: str):
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        import io

        return io.BytesIO(f.read())


def _unsalted(sig, b: int) -> np.ndarray:
    name = f"u{b:02d}"
    return sig[name] if name in sig.files else sig[f"k{b:02d}"]


def write_index(out: str, files: list[dict], params: dict[str, Any], against: list[str],
                against_results: list[dict] | None) -> dict[str, Any]:
    """Build `<out>/_index/` from the kept documents of every input file (driver side, one band at a time)."""
    root = storage.join(out, INDEX)
    kept_rows, idhash, sizes = [], [], []
    earlier: dict[tuple[int, int], int] = {}
    for i, f in enumerate(files):
        sig = np.load(_open(f["signatures"]))
        removed = np.load(_open(f["remove"]))
        keep = np.ones(sig["valid"].shape[0], dtype=bool)
        keep[removed["rows"]] = False
        if f.get("against"):
            matches = np.load(_open(f["against"]))
            keep[matches["rows"]] = False
            for j, d in zip(matches["job"].tolist(), matches["doc"].tolist()):
                earlier[(j, d)] = earlier.get((j, d), 0) + 1
        rows = np.flatnonzero(keep)
        kept_rows.append(rows)
        idhash.append(sig["idhash"][rows])
        sizes.append(removed["sizes"][rows] if "sizes" in removed.files else np.ones(rows.size, np.int32))
    offsets = np.cumsum([0] + [r.size for r in kept_rows])
    for b in range(params["bands"]):
        keys, docs = [], []
        for i, f in enumerate(files):
            sig = np.load(_open(f["signatures"]))
            rows = kept_rows[i]
            has = sig["valid"][rows]  # documents too short for shingles have no keys
            keys.append(_unsalted(sig, b)[rows[has]])
            docs.append(np.arange(offsets[i], offsets[i + 1], dtype=np.int64)[has])
        k = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        d = np.concatenate(docs) if docs else np.empty(0, np.int64)
        order = np.argsort(k, kind="stable")
        _save(storage.join(root, f"k{b:02d}.npy"), k[order])
        _save(storage.join(root, f"d{b:02d}.npy"), d[order])
    with storage.atomic_write(storage.join(root, "docs.npz")) as local, open(local, "wb") as fh:
        np.savez(fh, idhash=np.concatenate(idhash) if idhash else np.empty(0, np.uint64),
                 cluster_size=np.concatenate(sizes).astype(np.int32) if sizes else np.empty(0, np.int32))
    pairs = sorted(earlier.items())
    with storage.atomic_write(storage.join(root, "earlier_copies.npz")) as local, open(local, "wb") as fh:
        np.savez(fh, job=np.array([p[0][0] for p in pairs], dtype=np.int32),
                 doc=np.array([p[0][1] for p in pairs], dtype=np.int64),
                 copies=np.array([p[1] for p in pairs], dtype=np.int64))
    per_job = [sum(r["per_job"][j] for r in (against_results or [])) for j in range(len(against))]
    info = {"format": INDEX_FORMAT, "params": params, "documents": int(offsets[-1]),
            "against": [{"job": job, "removed": n} for job, n in zip(against, per_job)]}
    storage.write_json_atomic(storage.join(root, "index.json"), info)
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
