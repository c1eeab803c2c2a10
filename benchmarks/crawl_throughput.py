"""Crawl throughput: `shammie crawl` vs datatrove's LocalPipelineExecutor, same steps, same files.

    .venv/bin/python benchmarks/crawl_throughput.py --records 2000 --files 8 --workers 1 2

Builds a corpus of real pages with ../shared/tools/make_corpus.py (unless --corpus is
given), then for each worker count runs datatrove's FineWeb pipeline
(benchmarks/crawl_reference.py: one task per file) and `shammie crawl` as separate
processes, and reports HTML documents per second, end to end (process start to
exit, start-up included) and for the processing stage alone (Shammie: after Ray
is up; datatrove: the executor's run), the ratio, scaling from 1 to 2 workers, the
peak RSS of the largest single worker process, and whether the kept sets agree.
Results: JSON (--json) and a Markdown table on stdout for docs/benchmarks/crawl.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared")


class PeakRSS:
    """Samples the process tree of `pid`; remembers the largest single-process RSS."""

    def __init__(self, pid: int, interval: float = 0.2):
        import psutil

        self._root = psutil.Process(pid)
        self.peak_worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval):
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root] + self._root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    name = " ".join(p.cmdline()[:3])
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                # the workers that process documents (not Ray's own daemons)
                if "ray::" in name or "default_worker" in name or "crawl_throughput" in name or "multiprocess" in name \
                        or p.pid == self._root.pid:
                    self.peak_worker = max(self.peak_worker, rss)
            time.sleep(interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_worker


def run_timed(cmd: list[str], env=None) -> tuple[float, int, str]:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    rss = PeakRSS(proc.pid)
    out, _ = proc.communicate()
    elapsed = time.monotonic() - start
    peak = rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{out[-3000:]}")
    return elapsed, peak, out


def datatrove_child(corpus: str, out: str, workers: int) -> None:
    """Runs inside a child process: datatrove's pipeline, then prints timing + kept ids."""
    sys.path.insert(0, HERE)
    from crawl_reference import run_datatrove

    files = sorted(glob.glob(os.path.join(corpus, "*.warc.gz")))
    start = time.monotonic()
    docs = run_datatrove(corpus, files, out, workers=workers)
    stage = time.monotonic() - start
    print("RESULT " + json.dumps({"stage_seconds": stage, "kept_ids": sorted(d["id"] for d in docs)}))


def html_count(job: str) -> int:
    return json.load(open(os.path.join(job, "stats.json")))["crawl"]["html_responses"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--corpus", default=None, help="existing folder of .warc.gz files (skips generation)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--extractors", nargs="+", default=["trafilatura"], choices=["trafilatura", "resiliparse"],
                    help="Shammie's --extractor modes to run (datatrove always runs its trafilatura step)")
    ap.add_argument("--_datatrove-child", nargs=3, metavar=("CORPUS", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._datatrove_child:
        corpus, out, workers = args._datatrove_child
        datatrove_child(corpus, out, int(workers))
        return

    work = tempfile.mkdtemp(prefix="shammie-crawl-bench-")
    corpus = args.corpus
    if corpus is None:
        corpus = os.path.join(work, "corpus")
        subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_corpus.py"), "--out", corpus,
                        "-n", str(args.records), "-k", str(args.files)], check=True)
    shammie = os.path.join(os.path.dirname(sys.executable), "shammie")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores, {platform.python_version()}",
               "load_before": os.getloadavg(), "records": args.records, "files": args.files, "runs": []}
    for w in args.workers:
        kept_sets = {}
        for extractor in args.extractors:
            job = os.path.join(work, f"shammie-{extractor}-{w}")
            wall, peak, out = run_timed([shammie, "crawl", corpus, "--output", job, "--workers", str(w), "--no-progress",
                                         "--extractor", extractor], env=env)
            stats = json.load(open(os.path.join(job, "stats.json")))["crawl"]
            pages = stats["html_responses"]
            import pyarrow.parquet as pq

            kept = sorted(i for p in glob.glob(os.path.join(job, "documents", "*.parquet"))
                          for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())
            run = {"tool": f"shammie-{extractor}", "workers": w, "pages": pages, "wall_s": round(wall, 2),
                   "stage_s": stats["seconds"], "docs_per_s_wall": round(pages / wall, 2),
                   "docs_per_s_stage": round(pages / stats["seconds"], 2), "peak_worker_rss_mib": round(peak / 2**20),
                   "kept": len(kept)}
            results["runs"].append(run)
            kept_sets[extractor] = kept
            print(json.dumps(run), flush=True)
        if len(kept_sets) == 2:  # overlap of the two extractors' kept sets
            a, b = (set(v) for v in kept_sets.values())
            results.setdefault("extractor_kept_jaccard", {})[w] = round(len(a & b) / max(len(a | b), 1), 4)
        if not args.skip_datatrove:
            dout = os.path.join(work, f"datatrove-{w}")
            wall, peak, out = run_timed([sys.executable, __file__, "--_datatrove-child", corpus, dout, str(w)], env=env)
            res = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
            drun = {"tool": "datatrove", "workers": w, "pages": pages, "wall_s": round(wall, 2),
                    "stage_s": round(res["stage_seconds"], 2), "docs_per_s_wall": round(pages / wall, 2),
                    "docs_per_s_stage": round(pages / res["stage_seconds"], 2),
                    "peak_worker_rss_mib": round(peak / 2**20), "kept": len(res["kept_ids"]),
                    "same_kept_set": res["kept_ids"] == kept_sets.get("trafilatura")}
            results["runs"].append(drun)
            print(json.dumps(drun), flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        json.dump(results, open(args.json, "w"), indent=2)
    print("\n| tool | workers | HTML docs | wall s | docs/s (wall) | stage s | docs/s (stage) | peak worker RSS MiB | kept |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['tool']} | {r['workers']} | {r['pages']} | {r['wall_s']} | {r['docs_per_s_wall']} | {r['stage_s']} | "
              f"{r['docs_per_s_stage']} | {r['peak_worker_rss_mib']} | {r['kept']} |")
    by = {(r["tool"], r["workers"]): r for r in results["runs"]}
    for extractor in args.extractors:
        tool = f"shammie-{extractor}"
        for w in args.workers:
            if ("datatrove", w) in by:
                s, d = by[(tool, w)], by[("datatrove", w)]
                print(f"\n{tool}, {w} worker(s): /datatrove = {s['docs_per_s_wall'] / d['docs_per_s_wall']:.2f}x end to "
                      f"end, {s['docs_per_s_stage'] / d['docs_per_s_stage']:.2f}x stage; same kept set as datatrove: "
                      f"{d['same_kept_set'] if extractor == 'trafilatura' else 'n/a'}")
        if (tool, 1) in by and (tool, 2) in by:
            print(f"{tool} 2 workers / 1 worker = {by[(tool, 2)]['docs_per_s_stage'] / by[(tool, 1)]['docs_per_s_stage']:.2f}x"
                  " (stage)")
    if results.get("extractor_kept_jaccard"):
        print(f"kept-set Jaccard between the extractors: {results['extractor_kept_jaccard']}")

if __name__ == "__main__":
    main()
