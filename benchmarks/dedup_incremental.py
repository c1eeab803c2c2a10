"""Incremental snapshots: cost of deduplicating a new snapshot against 1, 2 and 4 earlier ones.

Synthetic snapshots of N documents (random words over a 50k vocabulary, 100 words each):
in every snapshot 80% of the documents are new and 20% are near-copies (2% of words
changed) of documents of earlier snapshots, like the month-to-month overlap of Common
Crawl. The history jobs are deduplicated once, untimed. Then, for h = 1, 2, 4:

  incremental   `dedup NEW --against H1..Hh`   (Shammie: probes the earlier band indexes)
  from scratch  `dedup H1..Hh+NEW --across-snapshots` (what a team without an index redoes)

and both must remove the same documents of NEW. Run:

    .venv/bin/python benchmarks/dedup_incremental.py --docs 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

from shammie.dedup import minhash
from shammie.pipeline import documents, jobdir

WORDS = 100


def _vocab() -> np.ndarray:
    rng = np.random.default_rng(12345)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return np.array(["".join(rng.choice(letters, size=int(k))) for k in rng.integers(3, 10, size=50_000)],
                    dtype=object)


def _text(vocab: np.ndarray, source: int, variant: int) -> str:
    words = vocab[np.random.default_rng(source).integers(0, len(vocab), size=WORDS)]
    if variant:
        words = words.copy()
        words[np.random.default_rng(variant).integers(0, WORDS, size=2)] = "zzqx"
    return " ".join(words)


def snapshot_rows(vocab: np.ndarray, s: int, n: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1000 + s)
    new = int(n * 0.8) if s else n
    rows = [(f"<s{s}:{i}>", _text(vocab, s * 10_000_000 + i, 0)) for i in range(new)]
    for i in range(n - new):  # near-copies of earlier snapshots' documents
        earlier = int(rng.integers(0, s))
        source = earlier * 10_000_000 + int(rng.integers(0, int(n * 0.8) if earlier else n))
        rows.append((f"<s{s}:copy{i}>", _text(vocab, source, 1 + s * 1_000_000 + i)))
    return rows


def write_snapshot(job: str, rows: list[tuple[str, str]], dump: str, files: int = 4, prefix: str = "") -> None:
    per = (len(rows) + files - 1) // files
    for k in range(files):
        part = rows[k * per:(k + 1) * per]
        n = len(part)
        documents.write_table(pa.table({
            "id": [p[0] for p in part], "text": [p[1] for p in part], "url": [None] * n, "dump": [dump] * n,
            "date": [None] * n, "language": ["en"] * n, "language_score": [1.0] * n,
            "warc_file": ["syn"] * n, "warc_offset": list(range(n))}, schema=documents.DOCUMENT_SCHEMA),
            os.path.join(job, "documents", f"{prefix}{k:05d}.parquet"))


def kept_ids(job: str) -> set[str]:
    out = set()
    for f in jobdir.stage_files(job, "deduped"):
        out.update(documents.read_table(f, columns=["id"])["id"].to_pylist())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=20000, help="documents per snapshot")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--history", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    import ray

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    work = args.work or tempfile.mkdtemp(prefix="shammie-incr-")
    vocab = _vocab()
    top = max(args.history)
    snapshots = [snapshot_rows(vocab, s, args.docs) for s in range(top + 1)]
    history = []
    for s in range(top):
        job = os.path.join(work, f"hist-{s}")
        if not os.path.exists(job):
            write_snapshot(job, snapshots[s], f"S{s}")
            jobdir.mark_complete(job, "documents")
            minhash.dedup(job, workers=args.workers, progress=False, keep_index=True)
        history.append(job)
    results = []
    for h in args.history:
        new = os.path.join(work, f"new-{h}")
        shutil.rmtree(new, ignore_errors=True)
        write_snapshot(new, snapshots[top], f"S{top}")
        jobdir.mark_complete(new, "documents")
        t = time.monotonic()
        stats = minhash.dedup(new, workers=args.workers, progress=False, against=tuple(history[:h]))
        incremental = time.monotonic() - t

        scratch = os.path.join(work, f"scratch-{h}")
        shutil.rmtree(scratch, ignore_errors=True)
        for s in range(h):
            write_snapshot(scratch, snapshots[s], f"S{s}", prefix=f"a{s}-")
        write_snapshot(scratch, snapshots[top], f"S{top}", prefix="z-")  # the new snapshot's files sort last
        jobdir.mark_complete(scratch, "documents")
        t = time.monotonic()
        minhash.dedup(scratch, workers=args.workers, progress=False, across_snapshots=True)
        from_scratch = time.monotonic() - t
        new_ids = {i for i, _ in snapshots[top]}
        agree = kept_ids(new) == (kept_ids(scratch) & new_ids)
        row = {"history_snapshots": h, "history_documents": h * args.docs, "new_documents": args.docs,
               "incremental_s": round(incremental, 2), "from_scratch_s": round(from_scratch, 2),
               "ratio": round(from_scratch / incremental, 2), "removed_against": stats["against_removed"],
               "same_kept_set": agree}
        results.append(row)
        print(json.dumps(row), flush=True)
    print("\n| earlier snapshots | documents in history | incremental (s) | from scratch (s) | from scratch / "
          "incremental | removed against history | same kept set |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['history_snapshots']} | {r['history_documents']} | {r['incremental_s']} | {r['from_scratch_s']} "
              f"| {r['ratio']} | {r['removed_against']} | {r['same_kept_set']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "load": os.getloadavg()}, f, indent=2)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["same_kept_set"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
