"""How `shammie dedup` grows with the corpus: CPU per document, memory per process, bytes
read, files written, and recall/precision against planted copies, at several sizes,
through the CLI as a user runs it.

    .venv/bin/python benchmarks/dedup_scale.py --sizes 50000,500000,2000000 --workers 2 \\
        --label after --json docs/benchmarks/dedup-scale-after.json
    # the same corpora through another checkout's command (e.g. the code before a change):
    .venv/bin/python benchmarks/dedup_scale.py --sizes ... --shammie /work/wt-before/.venv/bin/shammie --label before

Corpus (built once per size under benchmarks/_work/dedup-scale/, deterministic): real
sentences from the extracted pages of ../shared/data (benchmarks/dedup_corpus.py) in
random combinations of 3-12, so every base document is distinct real text (mean ~150
words); plus the long tail Common Crawl has: 4% stub pages of 1-4 words drawn from 40
stub texts ("page not found", ...; exact copies of each other, and too short for MinHash);
then planted copies: 10% near copies (1-2% of the words replaced by words of the same
document: 5-gram Jaccard ~0.85-0.95) and 5% exact copies, at random places. 10,000
documents per Parquet file, one snapshot, written as a crawl leaves them (`_SUCCESS`
with each file's size, checksum and row count).

Measured: the whole `shammie dedup` process tree sampled every 0.1 s with psutil: the
driver's own peak RSS, the largest Ray worker's peak RSS, Ray's own processes; CPU from
the tasks' own accounting in stats.json (per phase) and from psutil over the workers;
bytes read per phase from stats.json (when the code reports it); files written (with
--keep-work, the work folder is kept and counted). Recall: share of planted copies of
which not both the copy and its source survive; precision: share of removed documents
that are planted copies or stub pages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dedup_corpus import real_texts  # noqa: E402

from shammie.pipeline import documents, jobdir, storage  # noqa: E402
from shammie.pipeline.runner import output_record  # noqa: E402

WORK = HERE / "_work" / "dedup-scale"
DOCS_PER_FILE = 10_000
DUMP = "CC-MAIN-2024-10"
STUBS = ["page not found", "404 not found", "access denied", "log in", "sign up now", "cookie settings",
         "loading", "error", "home", "contact us", "subscribe", "coming soon", "under construction",
         "site maintenance", "forbidden", "redirecting", "please wait", "terms of use", "privacy policy",
         "all rights reserved", "search results", "no results", "session expired", "bad request",
         "service unavailable", "page moved", "read more", "next page", "previous page", "skip to content",
         "menu", "cart is empty", "out of stock", "sold out", "javascript required", "enable cookies",
         "captcha", "verify you are human", "account suspended", "domain for sale"]


# --------------------------------------------------------------------------- corpus

def sentence_pool() -> list[str]:
    pool = []
    for text in real_texts():
        for s in re.split(r"(?<=[.!?])\s+|\n+", text):
            if len(s.split()) >= 6:
                pool.append(s.strip())
    return sorted(set(pool))


def alter(text: str, r: random.Random) -> str:
    words = text.split()
    k = max(1, round(len(words) * r.choice([0.01, 0.015, 0.02])))
    for i in r.sample(range(len(words)), min(k, len(words))):
        words[i] = r.choice(words)
    return " ".join(words)


def build_corpus(size: int) -> Path:
    """A job folder with `size` documents in documents/, plus truth.json (copy -> source id)."""
    job = WORK / f"corpus-{size}"
    if (job / "truth.json").exists():
        return job
    if job.exists():
        shutil.rmtree(job)
    r = random.Random(size)
    pool = sentence_pool()
    n_near, n_exact, n_stub = int(size * 0.10), int(size * 0.05), int(size * 0.04)
    n_base = size - n_near - n_exact - n_stub
    rows: list[tuple[str, str]] = []
    for i in range(n_base):
        rows.append((f"b{i}", " ".join(r.choice(pool) for _ in range(r.randint(3, 12)))))
    for i in range(n_stub):
        rows.append((f"s{i}", r.choice(STUBS)))
    truth: dict[str, str] = {}
    for i in range(n_near):
        src = rows[r.randrange(n_base)]
        rows.append((f"n{i}", alter(src[1], r)))
        truth[f"n{i}"] = src[0]
    for i in range(n_exact):
        src = rows[r.randrange(n_base)]
        rows.append((f"e{i}", src[1]))
        truth[f"e{i}"] = src[0]
    r.shuffle(rows)
    files = {}
    for k in range(0, len(rows), DOCS_PER_FILE):
        part = rows[k:k + DOCS_PER_FILE]
        n = len(part)
        table = pa.table({
            "id": [p[0] for p in part], "text": [p[1] for p in part],
            "url": [f"https://example{hash(p[0]) % 997}.org/{p[0]}" for p in part], "dump": [DUMP] * n,
            "date": [None] * n, "language": ["en"] * n, "language_score": [1.0] * n,
            "warc_file": [f"scale-{k // DOCS_PER_FILE}.warc.gz"] * n, "warc_offset": list(range(n)),
        }, schema=documents.DOCUMENT_SCHEMA)
        name = f"{k // DOCS_PER_FILE:05d}.parquet"
        documents.write_table(table, str(job / "documents" / name))
        files[name] = output_record(str(job / "documents" / name))
    storage.write_json_atomic(jobdir.success_path(str(job), "documents"), {"stage": "crawl", "outputs": files})
    (job / "truth.json").write_text(json.dumps(truth))
    return job


# --------------------------------------------------------------------------- measuring a run

class TreeSampler:
    """Peak RSS, CPU and read bytes of every process of a tree, sampled until the root exits."""

    def __init__(self, root: psutil.Process):
        self.root = root
        self.procs: dict[int, dict] = {}

    def sample(self) -> None:
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for p in procs:
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    cpu = p.cpu_times()
                    io = p.io_counters()
                    name = " ".join(p.cmdline()[:3])[:120]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            rec = self.procs.setdefault(p.pid, {"name": name, "rss": 0, "cpu": 0.0, "read": 0})
            rec["rss"] = max(rec["rss"], rss)
            rec["cpu"] = max(rec["cpu"], cpu.user + cpu.system)
            rec["read"] = max(rec["read"], io.read_chars)
            if "ray::" in name or "default_worker" in name:
                rec["kind"] = "worker"

    def summary(self) -> dict:
        driver = self.procs.get(self.root.pid, {"rss": 0, "cpu": 0.0})
        workers = [p for pid, p in self.procs.items() if p.get("kind") == "worker"]
        system = [p for pid, p in self.procs.items() if pid != self.root.pid and p.get("kind") != "worker"]
        return {"driver_peak_rss_mb": round(driver["rss"] / 2**20, 1),
                "driver_cpu_s": round(driver["cpu"], 2),
                "largest_worker_peak_rss_mb": round(max((p["rss"] for p in workers), default=0) / 2**20, 1),
                "workers": len(workers), "workers_cpu_s": round(sum(p["cpu"] for p in workers), 2),
                "workers_read_mb": round(sum(p["read"] for p in workers) / 2**20, 1),
                "ray_system_peak_rss_mb": round(max((p["rss"] for p in system), default=0) / 2**20, 1)}


def run_dedup(shammie: str, job: Path, workers: int, extra: list[str]) -> dict:
    for folder in ("deduped", "_meta/deduped"):
        shutil.rmtree(job / folder, ignore_errors=True)
    # The crawl's marker in the older layout (documents/_SUCCESS), which every version reads: the
    # current code moves it to _meta/documents/ on its run, a checkout from before the move needs it here.
    moved = job / "_meta" / "documents" / "_SUCCESS"
    if moved.exists():
        shutil.copyfile(moved, job / "documents" / "_SUCCESS")
        shutil.rmtree(job / "_meta" / "documents")
    shutil.rmtree(job / "_locks", ignore_errors=True)
    (job / "stats.json").unlink(missing_ok=True)
    cmd = [shammie, "dedup", str(job), "--workers", str(workers), "--no-progress", "--keep-work", *extra]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(psutil.Process(proc.pid))
    while proc.poll() is None:
        sampler.sample()
        time.sleep(0.1)
    wall = time.monotonic() - start
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    stats = json.loads((job / "stats.json").read_text())["dedup"]
    work = job / "_meta" / "deduped" / "_work"
    files = [p for p in work.rglob("*") if p.is_file()] if work.exists() else []
    return {"wall_s": round(wall, 2), **sampler.summary(), "stats": stats,
            "work_files": len(files), "work_mb": round(sum(p.stat().st_size for p in files) / 2**20, 1),
            "log_tail": out[-600:]}


def quality(job: Path) -> dict:
    """Recall over planted copies; precision over removed documents (a removed document is right
    when it is a planted copy, a stub page, or the source of a planted copy whose copy was kept)."""
    truth = json.loads((job / "truth.json").read_text())
    every = [i for f in sorted((job / "documents").glob("*.parquet"))
             for i in documents.read_table(str(f), ["id"])["id"].to_pylist()]
    kept = {i for f in sorted((job / "deduped").glob("*.parquet"))
            for i in documents.read_table(str(f), ["id"])["id"].to_pylist()}
    removed = [i for i in every if i not in kept]
    digest = hashlib.sha256("\n".join(sorted(kept)).encode()).hexdigest()[:16]
    sources = set(truth.values())
    right = sum(1 for i in removed if i in truth or i.startswith("s") or i in sources)
    found = sum(1 for c, s in truth.items() if not (c in kept and s in kept))
    return {"documents": len(every), "removed": len(removed), "planted": len(truth), "kept_digest": digest,
            "recall": round(found / max(len(truth), 1), 4), "precision": round(right / max(len(removed), 1), 4)}


# --------------------------------------------------------------------------- task overhead and projection

def task_overhead(tasks: int, workers: int) -> dict:
    """Wall seconds of `tasks` empty tasks through the same runner (markers, Ray scheduling)."""
    import tempfile

    from shammie.pipeline import parallel
    from shammie.pipeline.ray_runtime import init_ray

    init_ray(None, num_cpus=workers)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        parallel.run_tasks(tmp, "noop", [(f"t{i:05d}", i) for i in range(tasks)], _noop, progress=False,
                           markers=tmp, max_in_flight=workers)
        return {"tasks": tasks, "seconds": round(time.monotonic() - start, 2)}


def _noop(payload) -> dict:
    return {}


PHASES = ("exact_hash", "exact_reduce", "signatures", "buckets", "clusters", "filter")


def projection(row: dict, documents: float = 3e9, files: int = 90_000, nodes: int = 100, cores: int = 16,
               max_bucket_docs: int = 4_000_000, max_group_docs: int = 1_000_000) -> list[tuple]:
    """A 3B-document snapshot on `nodes` x `cores`, each figure from a constant measured at `row`'s size."""
    n = row["size"]
    ranges = 1
    while documents / ranges > max_bucket_docs:
        ranges *= 2
    groups = int(documents // min(max_group_docs, documents // 256))
    clustered = documents * row["clustered_documents"] / n
    edges = documents * row["cluster_edges"] / n
    cores_all = nodes * cores
    out = []
    for phase in PHASES:
        st = row["stages"].get(phase) or {}
        cpu_per_doc = (st.get("cpu_seconds") or 0) / n
        cpu_h = cpu_per_doc * documents / 3600
        if phase == "clusters":
            partitions = 1
            while 2 * edges > partitions * 200_000_000:
                partitions *= 2
            memory = f"{2 * edges / partitions * 50 / 2**30:.1f} GB per round task ({partitions} partitions)" \
                if partitions > 1 else f"{clustered * 37 / 2**30:.1f} GB (one task)"
            requests = f"~{8 * partitions * partitions:,} per round (P x P x 2), a handful of rounds"
            hours = cpu_h / min(partitions, cores_all)
        else:
            tasks = {"exact_hash": groups, "signatures": groups, "filter": files, "exact_reduce": ranges,
                     "buckets": 14 * ranges}[phase]
            memory = {"exact_hash": "one run of files (<= 1M documents): ~1 GB",
                      "signatures": "one run of files: ~1 GB (signatures 448 B + records 336 B per document)",
                      "filter": "one input file", "exact_reduce": f"{documents / ranges * 70 / 2**20:.0f} MB",
                      "buckets": f"{documents / ranges * 70 / 2**20:.0f} MB"}[phase]
            requests = {"exact_hash": f"{files:,} input reads", "signatures": f"{files:,} input reads + "
                        f"{groups * ranges * 2:,} (copies)", "filter": f"{files * 4:,}",
                        "exact_reduce": f"{ranges * groups * 2:,}", "buckets": f"{14 * ranges * groups * 2:,}"}[phase]
            hours = cpu_h / min(tasks, cores_all)
        out.append((phase, round(cpu_per_doc * 1e6, 2), round(cpu_h, 1), round(hours, 2), memory, requests))
    return out


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="50000,500000,2000000")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shammie", default=str(Path(sys.executable).parent / "shammie"),
                    help="the shammie command to measure (another checkout's .venv/bin/shammie for a before/after)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--extra", default="", help="extra dedup options, e.g. '--max-bucket-docs 20000'")
    ap.add_argument("--json", help="append the results to this JSON file (a list of runs)")
    ap.add_argument("--task-overhead", type=int, metavar="N", help="only time N empty tasks through the runner")
    ap.add_argument("--project", metavar="JSON", help="only print the 3B-document projection from the largest "
                                                     "run with --label LABEL in this results file")
    args = ap.parse_args()
    if args.task_overhead:
        print(json.dumps(task_overhead(args.task_overhead, args.workers)))
        return
    if args.project:
        rows = [r for r in json.loads(Path(args.project).read_text()) if r["label"] == args.label]
        row = max(rows, key=lambda r: r["size"])
        print(f"from the {row['size']:,}-document run of {row['time']} ({args.label})\n")
        print("| phase | CPU µs per document | CPU hours | wall hours on 100 x 16 cores | memory per process | requests |")
        print("| --- | ---: | ---: | ---: | --- | --- |")
        for r in projection(row):
            print("| " + " | ".join(str(x) for x in r) + " |")
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        job = build_corpus(size)
        load = os.getloadavg()[0]
        run = run_dedup(args.shammie, job, args.workers, args.extra.split())
        q = quality(job)
        stats = run.pop("stats")
        stages = stats.get("stages", {})
        cpu_tasks = sum(float(s.get("cpu_seconds", 0) or 0) for s in stages.values())
        row = {"label": args.label, "size": size, "load_before": round(load, 2), **run, **q,
               "cpu_ms_per_doc_tasks": round(1000 * cpu_tasks / size, 4) if cpu_tasks else None,
               "cpu_ms_per_doc_workers": round(1000 * run["workers_cpu_s"] / size, 4),
               "stages": stages, "bucket_ranges_per_band": stats.get("bucket_ranges_per_band"),
               "clustered_documents": stats.get("clustered_documents"), "cluster_edges": stats.get("cluster_edges"),
               "kept": stats.get("kept"), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("stages", "log_tail")}), flush=True)
    if args.json:
        path = Path(args.json)
        old = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(old + results, indent=1))


if __name__ == "__main__":
    main()
