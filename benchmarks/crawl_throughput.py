"""Crawl throughput: `shammie crawl` (both extractors) beside datatrove as its users install it.

    benchmarks/peer_datatrove_env.sh        # once: datatrove[io,processing] 0.10 in its own venv
    .venv/bin/python benchmarks/crawl_throughput.py --records 2000 --files 4 --workers 1 2 --rounds 3 \\
        --json docs/benchmarks/crawl-peer.json

Builds a corpus of real pages with ../shared/tools/make_corpus.py (unless --corpus is
given). Then, for --rounds rounds, runs in an order that rotates each round:
  * datatrove 0.10 from its own venv (trafilatura 1.11, its default 1 s extraction
    timeout, LocalPipelineExecutor, one task per file: benchmarks/peer_datatrove_fineweb.py),
    at the --peer-workers counts;
  * `shammie crawl --extractor trafilatura` and `--extractor resiliparse`, at each --workers count.
Each run is a separate process, timed end to end (process start to exit: imports, Ray
start-up, model loading and the last write included). It reports pages per second, the
ratio to datatrove in the same round, 1 -> 2 worker scaling, the peak RSS of the largest
single worker process, and, once (--agreement), whether the trafilatura mode keeps the same
documents as datatrove run with the same trafilatura and no timeout (benchmarks/crawl_reference.py
inside Shammie's venv). Results: JSON (--json) and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(REPO), "shared")
DEFAULT_PEER_VENV = os.path.join(HERE, "_work", "datatrove-venv")
# Ray's own daemons: not the processes that crawl
RAY_DAEMONS = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "ray_client_server")


class PeakRSS:
    """Samples the process tree of `pid`; remembers the largest RSS of one worker process."""

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
                    name = " ".join(p.cmdline()[:4])
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                if not any(d in name for d in RAY_DAEMONS):
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


def reference_child(corpus: str, out: str, workers: int) -> None:
    """Inside a child process of Shammie's venv: datatrove's pipeline with Shammie's trafilatura, no timeout."""
    sys.path.insert(0, HERE)
    from crawl_reference import run_datatrove

    files = sorted(glob.glob(os.path.join(corpus, "*.warc.gz")))
    docs = run_datatrove(corpus, files, out, workers=workers)
    print("RESULT " + json.dumps({"kept_ids": sorted(d["id"] for d in docs)}))


def kept_ids(job: str) -> list[str]:
    import pyarrow.parquet as pq

    return sorted(i for p in glob.glob(os.path.join(job, "documents", "*.parquet"))
                  for i in pq.read_table(p, columns=["id"]).column("id").to_pylist())


def run_shammie(corpus: str, work: str, extractor: str, workers: int, tag: str) -> dict:
    job = os.path.join(work, f"shammie-{extractor}-{workers}-{tag}")
    shammie = os.path.join(os.path.dirname(sys.executable), "shammie")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    wall, peak, _ = run_timed([shammie, "crawl", corpus, "--output", job, "--workers", str(workers), "--no-progress",
                               "--extractor", extractor], env=env)
    stats = json.load(open(os.path.join(job, "stats.json")))["crawl"]
    kept = kept_ids(job)
    cost = stats.get("cost", {})
    return {"tool": f"shammie-{extractor}", "workers": workers, "pages": stats["html_responses"],
            "wall_s": round(wall, 2), "pages_per_s": round(stats["html_responses"] / wall, 2),
            "task_span_s": stats.get("task_span_seconds"),
            "pages_per_s_tasks": round(stats["html_responses"] / stats["task_span_seconds"], 2)
            if stats.get("task_span_seconds") else None,
            "peak_worker_rss_mib": round(peak / 2**20), "kept": len(kept), "kept_ids": kept,
            "cpu_s_per_1000_pages": cost.get("cpu_seconds_per_1000_pages_total"),
            "cpu_s_per_1000_pages_by_step": cost.get("cpu_seconds_per_1000_pages"),
            "core_hours_per_snapshot": cost.get("projected_core_hours_per_snapshot")}


def run_peer(python: str, corpus: str, work: str, workers: int, tag: str, lid_model: str, pages: int) -> dict:
    out = os.path.join(work, f"datatrove-{workers}-{tag}")
    wall, peak, text = run_timed([python, os.path.join(HERE, "peer_datatrove_fineweb.py"), corpus, out, str(workers),
                                  lid_model], env=dict(os.environ))
    res = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])
    timeouts = sum(int(step.get("stats", {}).get("timeout", 0) or 0)
                   for step in json.load(open(os.path.join(out, "logs", "stats.json"))))
    return {"tool": "datatrove", "workers": workers, "pages": pages, "wall_s": round(wall, 2),
            "pages_per_s": round(pages / wall, 2), "peak_worker_rss_mib": round(peak / 2**20),
            "kept": len(res["kept_ids"]), "kept_ids": res["kept_ids"], "extraction_timeouts": timeouts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Shammie's worker counts")
    ap.add_argument("--peer-workers", type=int, nargs="+", default=[2], help="datatrove's worker counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extractors", nargs="+", default=["trafilatura", "resiliparse"],
                    choices=["trafilatura", "resiliparse"])
    ap.add_argument("--corpus", default=None, help="existing folder of .warc.gz files (skips generation)")
    ap.add_argument("--peer-venv", default=DEFAULT_PEER_VENV,
                    help="datatrove's venv (made by benchmarks/peer_datatrove_env.sh when missing)")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--agreement", action=argparse.BooleanOptionalAction, default=True,
                    help="compare the trafilatura mode's kept set with datatrove's on Shammie's trafilatura")
    ap.add_argument("--json", default=None)
    ap.add_argument("--_reference-child", nargs=3, metavar=("CORPUS", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._reference_child:
        corpus, out, workers = args._reference_child
        reference_child(corpus, out, int(workers))
        return

    from shammie.filters.fineweb import default_lid_model_path

    work = tempfile.mkdtemp(prefix="shammie-crawl-bench-")
    corpus = args.corpus
    if corpus is None:
        corpus = os.path.join(work, "corpus")
        subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_corpus.py"), "--out", corpus,
                        "-n", str(args.records), "-k", str(args.files)], check=True)
    peer_python = os.path.join(args.peer_venv, "bin", "python")
    if not args.skip_peer and not os.path.exists(peer_python):
        subprocess.run([os.path.join(HERE, "peer_datatrove_env.sh"), args.peer_venv], check=True)
    peer_versions = None
    if not args.skip_peer:
        peer_versions = subprocess.run([peer_python, "-c", "import importlib.metadata as m; print(m.version('datatrove'),"
                                        " m.version('trafilatura'))"], capture_output=True, text=True).stdout.split()
    lid_model = default_lid_model_path()
    results = {"machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
               "corpus": corpus, "records": args.records, "files": args.files, "peer": peer_versions,
               "load_before": [round(x, 2) for x in os.getloadavg()], "rounds": []}
    jobs = [("shammie", e, w) for w in args.workers for e in args.extractors]
    if not args.skip_peer:
        jobs += [("datatrove", None, w) for w in args.peer_workers]
    pages = None
    for r in range(args.rounds):
        order = jobs[r % len(jobs):] + jobs[:r % len(jobs)]   # rotate: no tool always runs first or warm
        runs = []
        for tool, extractor, w in order:
            load = [round(x, 2) for x in os.getloadavg()]
            if tool == "shammie":
                run = run_shammie(corpus, work, extractor, w, f"r{r}")
                pages = run["pages"]
            else:
                run = run_peer(peer_python, corpus, work, w, f"r{r}", lid_model, pages or args.records)
            run["round"], run["load_1min_before"] = r, load[0]
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "kept_ids"}), flush=True)
        results["rounds"].append(runs)
    if args.agreement and "trafilatura" in args.extractors:
        w = max(args.workers)
        out = os.path.join(work, "reference")
        _, _, text = run_timed([sys.executable, __file__, "--_reference-child", corpus, out, str(w)])
        ref = json.loads(text.split("RESULT ", 1)[1].splitlines()[0])["kept_ids"]
        ours = next(x for x in results["rounds"][0] if x["tool"] == "shammie-trafilatura")["kept_ids"]
        results["agreement"] = {"same_kept_set": ref == ours, "reference_kept": len(ref), "shammie_kept": len(ours),
                                "only_reference": len(set(ref) - set(ours)), "only_shammie": len(set(ours) - set(ref))}
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    summarize(results, args)
    if args.json:
        slim = dict(results, rounds=[[{k: v for k, v in x.items() if k != "kept_ids"} for x in runs]
                                     for runs in results["rounds"]])
        json.dump(slim, open(args.json, "w"), indent=2)


def _jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return round(len(a & b) / max(len(a | b), 1), 4)


def summarize(results: dict, args) -> None:
    print(f"\nmachine: {results['machine']}; load before {results['load_before']}, after {results['load_after']}; "
          f"datatrove {results['peer']}")
    print("\n| round | tool | workers | pages | wall s | pages/s | task span s | peak worker RSS MiB | kept | "
          "CPU s / 1,000 pages |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for runs in results["rounds"]:
        for x in sorted(runs, key=lambda x: (x["tool"], x["workers"])):
            print(f"| {x['round']} | {x['tool']} | {x['workers']} | {x['pages']} | {x['wall_s']} | {x['pages_per_s']} | "
                  f"{x.get('task_span_s') or ''} | {x['peak_worker_rss_mib']} | {x['kept']} | "
                  f"{x.get('cpu_s_per_1000_pages') or ''} |")
    summary = {}
    for extractor in args.extractors:
        tool = f"shammie-{extractor}"
        for w in args.peer_workers:
            ratios = []
            for runs in results["rounds"]:
                by = {(x["tool"], x["workers"]): x for x in runs}
                if (tool, w) in by and ("datatrove", w) in by:
                    ratios.append(round(by[(tool, w)]["pages_per_s"] / by[("datatrove", w)]["pages_per_s"], 2))
            if ratios:
                summary[f"{tool} / datatrove, {w} workers"] = {"per_round": ratios, "median": statistics.median(ratios)}
        if 1 in args.workers and 2 in args.workers:
            for key, label in (("pages_per_s", "end to end"), ("pages_per_s_tasks", "tasks (after Ray start-up and worker set-up)")):
                scaling = []
                for runs in results["rounds"]:
                    by = {(x["tool"], x["workers"]): x for x in runs}
                    if by[(tool, 2)].get(key) and by[(tool, 1)].get(key):
                        scaling.append(round(by[(tool, 2)][key] / by[(tool, 1)][key], 2))
                if scaling:
                    summary[f"{tool} 2 workers / 1 worker, {label}"] = {"per_round": scaling,
                                                                         "median": statistics.median(scaling)}
    first = {x["tool"]: x for x in results["rounds"][0] if x["workers"] == max(args.workers)}
    if "shammie-trafilatura" in first and "shammie-resiliparse" in first:
        summary["kept-set Jaccard trafilatura vs resiliparse"] = _jaccard(first["shammie-trafilatura"]["kept_ids"],
                                                                          first["shammie-resiliparse"]["kept_ids"])
    if "datatrove" in first and "shammie-trafilatura" in first:
        summary["kept-set Jaccard shammie-trafilatura vs datatrove as installed"] = _jaccard(
            first["shammie-trafilatura"]["kept_ids"], first["datatrove"]["kept_ids"])
    results["summary"] = summary
    print()
    for k, v in summary.items():
        print(f"- {k}: {v}")
    if "agreement" in results:
        print(f"- same kept set as datatrove with the same trafilatura and no timeout: {results['agreement']}")


if __name__ == "__main__":
    main()
