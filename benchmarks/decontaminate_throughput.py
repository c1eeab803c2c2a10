"""Decontamination throughput (docs per CPU-second) beside exact dedup and MinHash dedup, on one corpus.

    .venv/bin/python benchmarks/decontaminate_throughput.py [--docs 4000] [--ngrams 1000000] [--repeats 3]

Corpus: the real pages of `benchmarks/dedup_corpus.py` (trafilatura text of every HTML
page in ../shared/data, cached in /tmp/shammie-dedup-bench/real_texts.json), repeated
to `--docs` documents with a distinct id each, written as 4 Parquet files of a
documents/ folder. Benchmark set: a JSONL file of items with `--ngrams` 13-grams in total:
synthetic items of 112 random words (100 13-grams each), plus 20 real 30-word
passages taken from the corpus pages, so that the probe also takes its hit path
(the corpus repeats its pages, so about 1 document in 5 contains one).

Each method runs in this one process, file after file, and is timed with
`time.process_time()` (CPU seconds of this process), so the figure is per core and
is less disturbed by other load on the machine than wall time (reported too):

* decontamination: `DecontaminateStage.run_task` per file (read Parquet, normalise,
  13-gram hashes, presence bitmap + `np.searchsorted` in the memory-mapped index, write
  the kept rows), after the driver built the index (`build_index`, timed separately);
  and "probe only": the text column read and `NgramIndex.matched_items` per document,
  without the write, measured as the other two are; and the lookup alone on precomputed
  n-gram hashes, with the presence bitmap (the stage's path) and with `np.searchsorted`
  on every n-gram (both must find the same documents);
* exact dedup: read + `shammie.dedup.exact.text_hashes` per file (phase 1; phase 2 only
  filters rows by a mask);
* MinHash dedup: read + `MinHasher.text_signature` + `band_keys` per file (the signature
  phase, which is >90% of the stage's CPU; buckets/clusters/filter are not included).

The best of `--repeats` passes is reported (the machine is shared: the best pass is the
least disturbed). Results go to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup_corpus  # noqa: E402

from shammie.dedup.exact import text_hashes  # noqa: E402
from shammie.dedup.signatures import MinHasher, MinhashParams, band_keys, normalise_words, shingle_hashes  # noqa: E402
from shammie.filters.decontaminate import (DecontaminateOptions, DecontaminateStage, WORK,  # noqa: E402
                                           build_index, write_index)
from shammie.pipeline import storage  # noqa: E402
from shammie.pipeline.stage import read_documents  # noqa: E402

WORKDIR = Path(os.environ.get("SHAMMIE_BENCH_DIR", "/tmp/shammie-decont-bench"))
ITEM_WORDS = 112
PLANTED = 20


def make_corpus(job: Path, n_docs: int) -> list[str]:
    texts = dedup_corpus.real_texts()
    rows = [(f"d{i:07d}", texts[i % len(texts)]) for i in range(n_docs)]
    dedup_corpus.write_job(str(job), rows, files=4)
    return texts


def make_benchmark(path: Path, texts: list[str], ngrams: int, seed: int = 0) -> None:
    r = random.Random(seed)
    vocabulary = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(3, 9)))
                  for _ in range(50_000)]
    with open(path, "w") as f:
        for k in range(PLANTED):
            page = texts[r.randrange(len(texts))].split()
            start = r.randrange(max(1, len(page) - 30))
            f.write(json.dumps({"text": " ".join(page[start:start + 30])}) + "\n")
        synthetic = max(0, ngrams - PLANTED * 18) // (ITEM_WORDS - 12)
        for _ in range(synthetic):
            f.write(json.dumps({"text": " ".join(r.choices(vocabulary, k=ITEM_WORDS))}) + "\n")


def timed(fn):
    wall, cpu = time.monotonic(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.monotonic() - wall


def run_decontaminate(job: Path, bench: Path, files: list[str]) -> tuple[dict, float, float, dict]:
    out = str(job / "decontaminated")
    storage.makedirs(out)
    stage = DecontaminateStage(str(job), DecontaminateOptions(job=str(job), against=(str(bench),)))
    (hashes, owners, starts, stats), build_cpu, build_wall = timed(
        lambda: build_index(stage.files(), "text", 13))
    stage.index_urls = write_index(storage.join(out, WORK), "bench", hashes, owners, starts)
    index_mib = sum(os.path.getsize(u) for u in stage.index_urls.values()) / 2**20
    index_info = {"ngrams": int(hashes.size), "index_mib": round(index_mib, 1),
                  "build_cpu_s": round(build_cpu, 2), "build_wall_s": round(build_wall, 2),
                  "items": sum(s["items"] for s in stats.values())}
    stage.setup()

    def work():
        removed = 0
        for f in files:
            r = stage.run_task({"input": f, "output": str(job / "decontaminated" / Path(f).name)}, out)
            removed += r["removed"]
        return removed
    removed, cpu, wall = timed(work)

    def probe_only():
        # the same matching without the Parquet write and with the text column only, as the
        # exact and MinHash figures are measured
        hits = 0
        for f in files:
            for text in read_documents(f, columns=["text"])["text"].to_pylist():
                hits += bool(stage._index.matched_items(text).size)
        return hits
    _, probe_cpu, _ = timed(probe_only)

    # The lookup alone, on precomputed n-gram hashes: with the presence bitmap (the stage's
    # path) and with np.searchsorted on every n-gram (the bitmap's reason to exist).
    index = stage._index
    doc_ngrams = [shingle_hashes(normalise_words(t or ""), 13)
                  for f in files for t in read_documents(f, columns=["text"])["text"].to_pylist()]

    def searchsorted_only():
        hits = 0
        for doc in doc_ngrams:
            pos = np.minimum(np.searchsorted(index.hashes, doc), index.hashes.size - 1)
            hits += bool((index.hashes[pos] == doc).any())
        return hits
    with_bitmap_hits, with_bitmap_cpu, _ = timed(lambda: sum(bool(index.items_of_ngrams(d).size) for d in doc_ngrams))
    plain_hits, plain_cpu, _ = timed(searchsorted_only)
    assert with_bitmap_hits == plain_hits == removed, (with_bitmap_hits, plain_hits, removed)
    return {"removed": removed, "probe_only_cpu_s": round(probe_cpu, 3), "lookup_bitmap_cpu_s": with_bitmap_cpu,
            "lookup_searchsorted_cpu_s": plain_cpu}, cpu, wall, index_info


def run_exact(files: list[str]) -> tuple[int, float, float]:
    def work():
        n = 0
        for f in files:
            t = read_documents(f, columns=["text", "dump"])
            n += len(text_hashes(t["text"].to_pylist()))
        return n
    return timed(work)


def run_minhash(files: list[str]) -> tuple[int, float, float]:
    params = MinhashParams()
    hasher = MinHasher(params)

    def work():
        n = 0
        for f in files:
            t = read_documents(f, columns=["id", "text", "dump"])
            texts = t["text"].to_pylist()
            sigs = np.zeros((len(texts), params.num_perm), dtype=np.uint32)
            for i, text in enumerate(texts):
                sigs[i], _ = hasher.text_signature(text or "")
            band_keys(sigs, params)
            n += len(texts)
        return n
    return timed(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--ngrams", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    job = WORKDIR / "job"
    texts = make_corpus(job, args.docs)
    bench = WORKDIR / "benchmark.jsonl"
    make_benchmark(bench, texts, args.ngrams)
    files = sorted(str(p) for p in (job / "documents").glob("*.parquet"))
    words = sum(len(texts[i % len(texts)].split()) for i in range(args.docs))
    load_before = os.getloadavg()
    results: dict[str, dict] = {}
    index_info = None
    # Each figure is the best of its own repeats (a pass that another engineer's job disturbed
    # loses to an undisturbed one); the methods are interleaved so a busy minute hits all alike.
    passes: dict[str, list[tuple[float, float]]] = {}
    removed = None
    for _ in range(args.repeats):
        shutil.rmtree(job / "decontaminated", ignore_errors=True)
        extra, cpu, wall, index_info = run_decontaminate(job, bench, files)
        removed = extra["removed"]
        passes.setdefault("decontaminate (whole task: read, probe, write)", []).append((cpu, wall))
        passes.setdefault("decontaminate (probe only: text column, normalise, 13-grams, lookup)", []).append(
            (extra["probe_only_cpu_s"], float("nan")))
        passes.setdefault("decontaminate lookup only, bitmap + searchsorted (the stage's)", []).append(
            (extra["lookup_bitmap_cpu_s"], float("nan")))
        passes.setdefault("decontaminate lookup only, searchsorted on every n-gram", []).append(
            (extra["lookup_searchsorted_cpu_s"], float("nan")))
        passes.setdefault("exact dedup (read, normalise, xxh3)", []).append(run_exact(files)[1:])
        passes.setdefault("MinHash dedup (read, signatures, band keys)", []).append(run_minhash(files)[1:])
    results = {}
    for name, measured in passes.items():
        cpu, wall = min(measured)
        results[name] = {"docs_per_cpu_s": round(args.docs / cpu, 1), "cpu_s": round(cpu, 3),
                         "cpu_s_all_passes": [round(c, 3) for c, _ in measured],
                         **({"docs_per_wall_s": round(args.docs / wall, 1)} if wall == wall else {})}
    report = {
        "docs": args.docs, "mean_words": round(words / args.docs), "distinct_pages": len(texts),
        "benchmark": index_info, "documents_removed": removed, "results": results,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "uptime_after": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
