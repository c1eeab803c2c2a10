"""How `shammie shard` scales with the corpus: one CLI run per size, the whole process tree sampled.

    .venv/bin/python benchmarks/store_scale.py --sizes 50000 500000 2000000 [--group-by site] [--workers 2]
        [--code-tree DIR] [--work /tmp/store-scale] [--json out.json]

Input: job folders of short real-text documents, synthesised once per size under
`--work` (never in the repo): paragraphs of ../shared/data (DCLM Common Crawl
documents, FineWeb documents, the scrapinghub article bodies, Leipzig sentences in
12 languages), 1-3 per document, ~10k documents per Parquet file, URLs on a
heavy-tailed set of sites (distinct sites grow with N, as in a crawl), language
from the sentence's file, edu scores uniform. One unigram tokenizer (8000 pieces)
trained once on the pool and passed with --tokenizer, so every size and both code
versions encode the same way and training is not timed.

Per size, the CLI runs as a user runs it (`shammie shard JOB --group-by site ...`), and a
sampler thread reads every process of its tree every 0.2 s (psutil):
  - driver peak RSS: the `shammie` process itself;
  - largest worker peak RSS: the largest Ray worker process (`ray::`/default_worker);
  - tree peak RSS: all processes of the tree at one sample (Ray's daemons included);
  - CPU: user+system seconds of every process of the tree (last sample per process,
    plus the children it waited for), per token and per document;
  - store files and bytes: peak and final, walking the store folder every 0.5 s
    (the disk peak includes `_staging/`).
`--plan-pairs TASKS DOMAINS` measures instead the driver's bytes per (task, domain) pair
(tokenize results as read from markers, then the merge plan), with tracemalloc.
`--code-tree DIR` runs another checkout's code with this venv (PYTHONPATH=DIR, a folder
holding `shammie/<subpackage>` links), e.g. the code before the store was assembled
by workers; the driver and the Ray workers it starts both import from there.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", REPO.parent / "shared" / "data"))
DOCS_PER_FILE = 10_000


# ---------------------------------------------------------------- input


def snippet_pool() -> list[tuple[str, str]]:
    """(paragraph, language) from the shared real text; paragraphs of 40-1200 characters."""
    import pyarrow.parquet as pq

    pool: list[tuple[str, str]] = []

    def add(text: str, language: str) -> None:
        for para in text.split("\n"):
            para = para.strip()
            if 40 <= len(para) <= 1200:
                pool.append((para, language))

    dclm = SHARED / "labels" / "dclm-human-quality-agreement.jsonl"
    for line in dclm.open(encoding="utf-8"):
        add(json.loads(line)["text"], "en")
    for text in pq.read_table(SHARED / "labels" / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist():
        add(text, "en")
    truth = SHARED / "html" / "article-extraction-benchmark" / "ground-truth.json"
    if truth.exists():
        for item in json.loads(truth.read_text(encoding="utf-8")).values():
            add(item.get("articleBody") or "", "en")
    for f in sorted((SHARED / "lid").glob("*.txt")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if len(line.strip()) >= 20:
                pool.append((line.strip(), f.stem))
    if not pool:
        raise SystemExit(f"no text found under {SHARED}")
    return pool


def write_jobs(work: Path, sizes: list[int], pool: list[tuple[str, str]]) -> dict[int, Path]:
    """One job per size (scored/ with part-*.parquet and _SUCCESS); made once, reused."""
    import numpy as np
    import pyarrow as pa

    from shammie.pipeline import jobdir
    from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table

    jobs = {}
    texts = [t for t, _ in pool]
    langs = [lang for _, lang in pool]
    for n in sizes:
        job = work / f"job-{n}"
        jobs[n] = job
        if jobdir.is_complete(str(job), "scored"):
            continue
        rng = np.random.default_rng(n)
        for f, start in enumerate(range(0, n, DOCS_PER_FILE)):
            m = min(DOCS_PER_FILE, n - start)
            k = rng.integers(1, 4, m)
            picks = rng.integers(0, len(pool), k.sum())
            bounds = np.r_[0, np.cumsum(k)]
            docs = ["\n".join(texts[i] for i in picks[bounds[j]:bounds[j + 1]]) for j in range(m)]
            # Heavy-tailed sites: a few very large ones, a long tail that keeps growing with N.
            sites = (rng.pareto(0.7, m) * 3).astype(np.int64)
            edu = np.round(rng.uniform(0, 5, m), 3)
            rows = {
                "id": [f"<urn:uuid:{n}-{start + j}>" for j in range(m)],
                "text": docs,
                "url": [f"https://www.site{s}.com/p/{start + j}" for j, s in enumerate(sites.tolist())],
                "dump": ["CC-MAIN-2024-22"] * m,
                "date": ["2024-05-01T00:00:00Z"] * m,
                "language": [langs[picks[bounds[j]]] for j in range(m)],
                "language_score": [0.9] * m,
                "warc_file": [f"synthetic-{f}.warc.gz"] * m,
                "warc_offset": list(range(m)),
            }
            table = pa.Table.from_pydict(rows, schema=DOCUMENT_SCHEMA)
            table = table.append_column("edu_score", pa.array(edu)).append_column(
                "edu_int_score", pa.array(np.rint(edu).astype(np.int64)))
            write_table(table, str(job / "scored" / f"part-{f:05d}.parquet"))
        jobdir.mark_complete(str(job), "scored")
    return jobs


def tokenizer_model(work: Path, pool: list[tuple[str, str]]) -> Path:
    path = work / "unigram-8000.model"
    if not path.exists():
        from shammie.mixing.tokenizer import train_tokenizer

        tok = train_tokenizer([t for t, _ in pool], 8000, "unigram", num_threads=2)
        path.write_bytes(tok.model_proto)
    return path


# ---------------------------------------------------------------- measuring one run


class TreeSampler(threading.Thread):
    """Peak RSS and CPU of a process and all its descendants; file count and bytes of a folder."""

    def __init__(self, pid: int, folder: Path, every: float = 0.2, walk_every: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.folder, self.every, self.walk_every = folder, every, walk_every
        self.stop = threading.Event()
        self.rss_peak: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.tree_peak = 0
        self.files_peak = self.bytes_peak = 0
        self._last_walk = 0.0

    @staticmethod
    def _kind(proc) -> str:
        try:
            cmd = " ".join(proc.cmdline())
            name = proc.name()
        except Exception:
            return "other"
        if "default_worker.py" in cmd or name.startswith("ray::"):
            return "worker"
        return "ray" if ("ray" in cmd or "gcs_server" in name or "raylet" in name) else "other"

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root] + self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                try:
                    mem = p.memory_info().rss
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                total += mem
                self.rss_peak[p.pid] = max(self.rss_peak.get(p.pid, 0), mem)
                self.cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                if p.pid not in self.kind:
                    self.kind[p.pid] = "driver" if p.pid == self.root.pid else self._kind(p)
            self.tree_peak = max(self.tree_peak, total)
            now = time.monotonic()
            if now - self._last_walk >= self.walk_every:
                self._last_walk = now
                files, size = folder_usage(self.folder)
                self.files_peak, self.bytes_peak = max(self.files_peak, files), max(self.bytes_peak, size)
            self.stop.wait(self.every)


def folder_usage(folder: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                size += os.stat(os.path.join(dirpath, name)).st_size
                files += 1
            except FileNotFoundError:
                pass
    return files, size


def run_size(job: Path, model: Path, args, code_tree: str | None) -> dict:
    import shutil

    store = job / "store"
    shutil.rmtree(store, ignore_errors=True)
    (job / "stats.json").unlink(missing_ok=True)
    shutil.rmtree(job / "_locks", ignore_errors=True)
    cmd = [str(REPO / ".venv" / "bin" / "shammie"), "shard", str(job), "--group-by", args.group_by,
           "--tokenizer", str(model), "--no-progress"]
    if args.top_k:
        cmd += ["--top-k", str(args.top_k)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    if code_tree:
        env["PYTHONPATH"] = code_tree
    load_before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    sampler = TreeSampler(proc.pid, store)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    stats = json.loads((job / "stats.json").read_text())["shard"]
    files_end, bytes_end = folder_usage(store)
    kinds = sampler.kind
    workers = [sampler.rss_peak[p] for p in sampler.rss_peak if kinds.get(p) == "worker"]
    cpu = sum(sampler.cpu.values())
    input_bytes = sum(p.stat().st_size for p in (job / "scored").glob("*.parquet"))
    return {
        "documents": stats["documents"], "tokens": stats["tokens"], "domains": len(stats["domains"]),
        "input_files": len(list((job / "scored").glob("*.parquet"))), "input_bytes": input_bytes,
        "seconds": round(seconds, 2), "tokens_per_s": round(stats["tokens"] / seconds),
        "cpu_seconds": round(cpu, 1), "cpu_ns_per_token": round(cpu / stats["tokens"] * 1e9, 1),
        "cpu_us_per_document": round(cpu / stats["documents"] * 1e6, 1),
        "driver_peak_rss_mb": round(sampler.rss_peak.get(proc.pid, 0) / 2**20, 1),
        "largest_worker_peak_rss_mb": round(max(workers, default=0) / 2**20, 1),
        "tree_peak_rss_mb": round(sampler.tree_peak / 2**20, 1),
        "store_files_peak": sampler.files_peak, "store_files_end": files_end,
        "store_bytes_peak": sampler.bytes_peak, "store_bytes_end": bytes_end,
        "shards": sum(d["shards"] for d in stats["domains"].values()),
        "phases": {k: stats.get(k) for k in ("count_seconds", "tokenize_seconds", "write_seconds")},
        "pieces": stats.get("pieces"),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def plan_bytes(tasks: int, domains: int) -> dict:
    """Driver bytes per (task, domain) pair: tokenize results as run_tasks returns them (JSON through
    the markers) and the merge plan made from them, measured with tracemalloc."""
    import gc
    import tracemalloc

    import numpy as np

    from shammie.mixing import store_pieces

    names = [f"site{d}.com" for d in range(domains)]
    rng = np.random.default_rng(0)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    results = []
    for t in range(tasks):
        rows = np.column_stack([np.ones(domains, np.int64), rng.integers(1, 500, domains),
                                rng.integers(100, 50_000, domains), np.zeros(domains, np.int64)])
        result = {"documents": 1, "tokens": 1, "seconds": 1.0, "domains": list(range(domains)),  # with a fold
                  "pieces": store_pieces.encode_array(rows), "kept": []}
        results.append(json.loads(json.dumps(result)))   # as read back from a marker: strings not shared
    after_results = tracemalloc.get_traced_memory()[0] - base
    plan = store_pieces.plan_merges(results, 128 << 20, names)
    del results
    gc.collect()
    after_plan = tracemalloc.get_traced_memory()[0] - base
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    pairs = tasks * domains
    return {"tasks": tasks, "domains": domains, "results_bytes_per_pair": round(after_results / pairs, 1),
            "plan_bytes_per_pair": round(after_plan / pairs, 1), "peak_bytes_per_pair": round(peak / pairs, 1),
            "merge_groups": len(plan.groups)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000, 2_000_000])
    ap.add_argument("--group-by", default="site")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default="/tmp/store-scale")
    ap.add_argument("--code-tree", default=None, help="PYTHONPATH holding shammie/<subpackage> of another checkout")
    ap.add_argument("--label", default=None, help="name of this code version in the output (default: after/tree)")
    ap.add_argument("--json", default=None, help="append one JSON line per size to this file")
    ap.add_argument("--plan-pairs", type=int, nargs=2, metavar=("TASKS", "DOMAINS"), default=None,
                    help="only measure the driver's bytes per (task, domain) pair of the merge plan")
    args = ap.parse_args()
    if args.plan_pairs:
        print(json.dumps(plan_bytes(*args.plan_pairs)))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool = snippet_pool()
    jobs = write_jobs(work, args.sizes, pool)
    model = tokenizer_model(work, pool)
    label = args.label or ("tree" if args.code_tree else "after")
    for n in args.sizes:
        row = {"code": label, "size": n, "group_by": args.group_by, "workers": args.workers,
               **run_size(jobs[n], model, args, args.code_tree)}
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    random.seed(0)
    main()
