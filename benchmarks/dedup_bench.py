"""Dedup benchmark: Shammie vs datatrove's four MinHash stages vs a datasketch MinHashLSH baseline.

    .venv/bin/python benchmarks/dedup_bench.py quality [--workers 2] [--copies 3]
    .venv/bin/python benchmarks/dedup_bench.py scaling --sizes 10000,100000,1000000

quality: real extracted pages (benchmarks/dedup_corpus.py) with planted near-duplicates of
exactly computed 5-gram Jaccard; all three methods on the same Parquet files in one run.
Recall = share of pairs with true Jaccard >= 0.85 of which at most one document is kept.
Precision = share of removed documents that have a true Jaccard >= 0.5 with some other
document of the corpus (distinct real pages are at ~0.0-0.1; planted copies with 4% of
words changed are at ~0.7); precision_strict_070 requires >= 0.7. docs/s per stage = input documents / stage wall time. Peak memory
= tracemalloc peak of one stage for the peers (largest task, a separate untimed pass); for Shammie the clustering task's own peak RSS (its other tasks are per file or per key range).

scaling: synthetic corpora (100 words, 10% near-copies) through `shammie.dedup.minhash.dedup`
on Ray, then the cluster stage re-run alone in a fresh process on the kept work files:
its tracemalloc peak and the process's max RSS growth, and the same for datatrove's
`MinhashDedupCluster` fed the same candidate pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup_corpus  # noqa: E402

from shammie.dedup import minhash  # noqa: E402
from shammie.pipeline import documents, jobdir  # noqa: E402

WORK = Path(os.environ.get("SHAMMIE_BENCH_DIR", "/tmp/shammie-dedup-bench"))


def traced(fn, *a, **k):
    """(result, peak MiB of Python+numpy allocations while fn ran)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        out = fn(*a, **k)
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def metrics(ids: list[str], kept: set[str], pairs: dict) -> dict:
    idx = {d: i for i, d in enumerate(ids)}
    keep = np.zeros(len(ids), bool)
    for d in kept:
        keep[idx[d]] = True
    hi = [(a, b) for (a, b), j in pairs.items() if j >= 0.85]
    mid = [(a, b) for (a, b), j in pairs.items() if 0.7 <= j < 0.85]
    partner = np.zeros(len(ids), bool)      # has a near-duplicate (true Jaccard >= 0.5)
    strict = np.zeros(len(ids), bool)       # has one above the 14x8 S-curve midpoint
    for (a, b), j in pairs.items():
        partner[a] = partner[b] = True      # pairs holds only Jaccard >= 0.5
        if j >= 0.7:
            strict[a] = strict[b] = True
    removed = ~keep
    return {
        "pairs_ge_085": len(hi),
        "recall_ge_085": sum(not (keep[a] and keep[b]) for a, b in hi) / max(1, len(hi)),
        "recall_070_085": sum(not (keep[a] and keep[b]) for a, b in mid) / max(1, len(mid)),
        "removed": int(removed.sum()),
        "precision": float((removed & partner).sum() / max(1, removed.sum())),
        "precision_strict_070": float((removed & strict).sum() / max(1, removed.sum())),
    }


# ------------------------------------------------------------------ Shammie

def start_ray(workers: int) -> None:
    """init_ray, retried: on a machine loaded by other jobs Ray's agent may miss its start-up window."""
    import ray

    from shammie.pipeline.ray_runtime import init_ray

    for attempt in range(10):
        try:
            init_ray(None, num_cpus=workers)
            return
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception here
            print(f"ray start failed ({str(e)[:80]}), retrying", file=sys.stderr)
            ray.shutdown()
            time.sleep(5)
    raise RuntimeError("could not start Ray")


def run_shammie(job: str, workers: int) -> dict:
    start_ray(workers)
    stats = minhash.dedup(job, workers=workers, progress=False, keep_work=True)
    kept = {i for f in jobdir.stage_files(job, "deduped") for i in documents.read_table(f, ["id"])["id"].to_pylist()}
    n = stats["documents_in"]
    stages = {k: {"docs_per_s": v["docs_per_s"]} for k, v in stats["stages"].items()}
    for key in ("docs_per_cpu_s", "hash_docs_per_cpu_s"):
        stages["signatures"][key] = stats["stages"]["signatures"][key]
    # Memory: the clustering task's own peak RSS (the other phases' tasks are per file or per key range)
    stages["clusters"]["max_rss_mb"] = stats["stages"]["clusters"].get("max_rss_mb")
    return {"kept": kept, "stages": stages, "documents": n, "end_to_end_docs_per_s": round(
        n / sum(v["seconds"] for v in stats["stages"].values()), 1)}


# ------------------------------------------------------------------ datatrove

def _datatrove_docs(path: str):
    from datatrove.data import Document

    t = documents.read_table(path, ["id", "text"])
    return [Document(text=x, id=i) for i, x in zip(t["id"].to_pylist(), t["text"].to_pylist())]


def run_datatrove(job: str, measure_memory: bool) -> dict:
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.utils.hashing import HashConfig

    out = WORK / ("dt-mem" if measure_memory else "dt")
    shutil.rmtree(out, ignore_errors=True)
    # FineWeb: 5-grams, 14 buckets x 8 hashes, 64-bit hashes. datatrove's default xxhash
    # path passes str to xxhash, which xxhash >= 4 rejects; sha1 (FineWeb's) works.
    cfg = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1"))
    files = jobdir.stage_files(job, "documents")
    inputs = [_datatrove_docs(f) for f in files]
    n = sum(len(d) for d in inputs)
    wrap = (lambda f: traced(f)) if measure_memory else (lambda f: (f(), 0.0))
    res = {}

    def sig():
        for rank, docs in enumerate(inputs):
            MinhashDedupSignature(output_folder=str(out / "sigs"), config=cfg).run(iter(docs), rank=rank,
                                                                                    world_size=len(inputs))

    def buckets():
        for rank in range(cfg.num_buckets):
            MinhashDedupBuckets(input_folder=str(out / "sigs"), output_folder=str(out / "buckets"),
                                config=cfg).run(rank=rank, world_size=cfg.num_buckets)

    def cluster():
        MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove"), config=cfg).run()

    kept = set()

    def filt():
        for rank, docs in enumerate(inputs):
            for d in MinhashDedupFilter(input_folder=str(out / "remove")).run(iter(docs), rank=rank,
                                                                                world_size=len(inputs)):
                kept.add(d.id)

    total = 0.0
    for name, fn in [("signatures", sig), ("buckets", buckets), ("clusters", cluster), ("filter", filt)]:
        t = time.perf_counter()
        _, peak = wrap(fn)
        dt = time.perf_counter() - t
        total += dt
        res[name] = {"docs_per_s": round(n / dt, 1), "peak_mib": round(peak, 1)}
    return {"kept": kept, "stages": res, "documents": n, "end_to_end_docs_per_s": round(n / total, 1)}


# ------------------------------------------------------------------ datasketch

def run_datasketch(job: str, measure_memory: bool) -> dict:
    from datasketch import MinHash, MinHashLSH

    from shammie.dedup.signatures import normalise_words

    ids, texts = [], []
    for f in jobdir.stage_files(job, "documents"):
        t = documents.read_table(f, ["id", "text"])
        ids += t["id"].to_pylist()
        texts += t["text"].to_pylist()
    wrap = (lambda f: traced(f)) if measure_memory else (lambda f: (f(), 0.0))
    sigs = []

    def sig():
        for text in texts:
            w = normalise_words(text)
            m = MinHash(num_perm=112, seed=1)
            m.update_batch([b" ".join(w[i:i + 5]) for i in range(len(w) - 4)])
            sigs.append(m)

    removed = set()

    def lsh_cluster():
        lsh = MinHashLSH(num_perm=112, params=(14, 8))
        for i, m in enumerate(sigs):
            if len(normalise_words(texts[i])) < 5:
                continue
            # keep the first document of each cluster: a document is removed when it
            # matches an earlier one (clusters via the earlier documents, like union-find)
            if lsh.query(m):
                removed.add(i)
            lsh.insert(i, m)

    res = {}
    total = 0.0
    for name, fn in [("signatures", sig), ("lsh+cluster", lsh_cluster)]:
        t = time.perf_counter()
        _, peak = wrap(fn)
        dt = time.perf_counter() - t
        total += dt
        res[name] = {"docs_per_s": round(len(texts) / dt, 1), "peak_mib": round(peak, 1)}
    kept = {ids[i] for i in range(len(ids)) if i not in removed}
    return {"kept": kept, "stages": res, "documents": len(texts), "end_to_end_docs_per_s": round(len(texts) / total, 1)}


# ------------------------------------------------------------------ commands

def quality(args) -> dict:
    job = str(WORK / "quality")
    shutil.rmtree(job, ignore_errors=True)
    corpus = dedup_corpus.planted_real_corpus(job, copies_per_page=args.copies)
    ids, pairs = corpus["ids"], corpus["pairs"]
    print(f"corpus: {len(ids)} documents, {sum(j >= 0.85 for j in pairs.values())} pairs with Jaccard >= 0.85",
          flush=True)
    results = {}
    results["shammie"] = run_shammie(job, args.workers)
    print("shammie done", flush=True)
    results["datatrove"] = run_datatrove(job, measure_memory=False)
    mem = run_datatrove(job, measure_memory=True)
    for k in results["datatrove"]["stages"]:
        results["datatrove"]["stages"][k]["peak_mib"] = mem["stages"][k]["peak_mib"]
    print("datatrove done", flush=True)
    results["datasketch"] = run_datasketch(job, measure_memory=False)
    mem = run_datasketch(job, measure_memory=True)
    for k in results["datasketch"]["stages"]:
        results["datasketch"]["stages"][k]["peak_mib"] = mem["stages"][k]["peak_mib"]
    out = {"documents": len(ids), "pairs_ge_085": sum(j >= 0.85 for j in pairs.values())}
    for name, r in results.items():
        out[name] = {**metrics(ids, r.pop("kept"), pairs), **r}
    return out


def _cluster_memory_child(job: str) -> dict:
    """Run in a fresh process: Shammie's cluster stage, then datatrove's on the same pairs."""
    work = Path(job) / "_meta" / "deduped" / "_work"
    exact_ranges = len(list((work / "exact" / "edges").glob("*.npy")))
    ranges = len(list((work / "buckets").glob("b00-*.npy")))
    edge_files = minhash.EdgeFiles(str(work), exact_ranges, 14, ranges)
    payload = {"edge_files": edge_files, "offsets": str(work / "files.npy"), "output": str(work / "rerun.prt")}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    stats, peak = traced(minhash.cluster_task, payload)
    ours = {"seconds": round(time.perf_counter() - t, 2), "traced_peak_mib": round(peak, 1),
            "rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1),
            "clustered_documents": stats["nodes"]}
    # datatrove's cluster stage on the same candidate pairs (.dups: file, doc, file, doc as uint32)
    from datatrove.pipeline.dedup.minhash import MinhashDedupCluster

    dups = Path(job) / "dt-dups"
    shutil.rmtree(dups, ignore_errors=True)
    dups.mkdir()
    edges = np.concatenate([np.load(u) for u in edge_files.urls()])
    n_pairs = int(edges.shape[0])
    per_band = np.array_split(edges, 14)
    for b, e in enumerate(per_band):
        rec = np.zeros((e.shape[0], 4), dtype="<u4")
        rec[:, 1], rec[:, 3] = e[:, 0], e[:, 1]
        (dups / f"{b:05d}_00.dups").write_bytes(rec.tobytes())
    del edges, per_band
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    _, peak = traced(MinhashDedupCluster(input_folder=str(dups), output_folder=str(Path(job) / "dt-remove")).run)
    theirs = {"seconds": round(time.perf_counter() - t, 2), "traced_peak_mib": round(peak, 1),
              "rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1)}
    return {"shammie": ours, "datatrove": theirs, "candidate_pairs": n_pairs}


def scaling(args) -> dict:
    start_ray(args.workers)
    out = {}
    for n in [int(x) for x in args.sizes.split(",")]:
        job = str(WORK / f"scale-{n}")
        shutil.rmtree(job, ignore_errors=True)
        t = time.perf_counter()
        dedup_corpus.synthetic_job(job, n, files=max(4, n // 20000))
        gen = time.perf_counter() - t
        stats = minhash.dedup(job, workers=args.workers, progress=False, keep_work=True)
        child = subprocess.run([sys.executable, __file__, "_cluster_child", job], capture_output=True, text=True)
        if child.returncode:
            raise RuntimeError(child.stderr)
        mem = json.loads(child.stdout.strip().splitlines()[-1])
        out[n] = {"generate_seconds": round(gen, 1), "removed": stats["removed"], "clusters": stats["clusters"],
                  "stages": stats["stages"], "cluster_memory": mem}
        print(json.dumps({n: out[n]}), flush=True)
        shutil.rmtree(job, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--workers", type=int, default=2)
    q.add_argument("--copies", type=int, default=3, help="planted copies per real page")
    s = sub.add_parser("scaling")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--sizes", default="10000,100000,1000000")
    c = sub.add_parser("_cluster_child")
    c.add_argument("job")
    args = ap.parse_args()
    if args.cmd == "_cluster_child":
        print(json.dumps(_cluster_memory_child(args.job)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    result = quality(args) if args.cmd == "quality" else scaling(args)
    path = WORK / f"{args.cmd}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(f"written {path}")


if __name__ == "__main__":
    main()
