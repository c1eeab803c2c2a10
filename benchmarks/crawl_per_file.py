"""Crawl work per WARC file without Ray: how this machine scales from 1 to N processes.

    .venv/bin/python benchmarks/crawl_per_file.py CORPUS [--processes 1 2] [--extractor resiliparse] [--rounds 3]

For each process count, the corpus's files are dealt round-robin to that many plain
Python processes; each sets up the crawl stage once (as a Ray worker does: spaCy,
fastText, URL lists, warm-up) and runs the crawl task on its files in turn. The
makespan runs from starting the processes to the last one's exit: the same work as
`shammie crawl --workers N`, without Ray's start-up, scheduling or driver. Its 1 -> N
ratio is what the hardware allows; `crawl_throughput.py` measures the same with Ray.
The order of the process counts rotates each round (the VM's speed drifts).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def child(extractor: str, files: list[str]) -> None:
    from shammie.filters.crawl import CrawlOptions, CrawlStage

    job = tempfile.mkdtemp(prefix="shammie-per-file-")
    out = os.path.join(job, "documents")
    os.makedirs(out)
    stage = CrawlStage(job, CrawlOptions(inputs=files, output=job, extractor=extractor))
    started = time.perf_counter()
    stage.setup()
    print(json.dumps({"setup_seconds": round(time.perf_counter() - started, 2)}), flush=True)
    for i, f in enumerate(files):
        funnel = stage.run_task({"url": os.path.abspath(f), "name": f"file-{i}"}, out)
        print(json.dumps({"file": os.path.basename(f), "seconds": funnel["seconds"], "pages": funnel["html_responses"],
                          "cpu_seconds": round(sum((funnel.get("cpu_seconds") or {}).values()), 2)}), flush=True)


def run_round(files: list[str], n: int, extractor: str) -> dict:
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--extractor", extractor, "--_child", *files[i::n]],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for i in range(n)]
    rows = [[json.loads(line) for line in p.communicate()[0].splitlines()] for p in procs]
    makespan = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise SystemExit(f"a child process failed (exit codes {[p.returncode for p in procs]})")
    tasks = [r for per in rows for r in per if "file" in r]
    pages = sum(r["pages"] for r in tasks)
    return {"processes": n, "makespan_s": round(makespan, 2),
            "setup_s": [r["setup_seconds"] for per in rows for r in per if "setup_seconds" in r],
            "seconds_per_file": [[r["seconds"] for r in per if "file" in r] for per in rows],
            "cpu_s_per_1000_pages": round(sum(r["cpu_seconds"] for r in tasks) * 1000 / max(pages, 1), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--extractor", default="trafilatura", choices=["trafilatura", "resiliparse"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return child(args.extractor, args._child)
    files = sorted(glob.glob(os.path.join(args.corpus, "*.warc.gz")))
    if not files:
        raise SystemExit(f"no .warc.gz files in {args.corpus}")
    print(f"{len(files)} files, {args.extractor}, load {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    makespans: dict[int, list[float]] = {n: [] for n in args.processes}
    for r in range(args.rounds):
        order = args.processes[r % len(args.processes):] + args.processes[:r % len(args.processes)]
        for n in order:
            result = run_round(files, n, args.extractor)
            makespans[n].append(result["makespan_s"])
            print(json.dumps({"round": r, **result}), flush=True)
    one = min(args.processes)
    for n in args.processes:
        if n == one:
            continue
        ratios = [round(a / b, 2) for a, b in zip(makespans[one], makespans[n])]
        print(f"{one} -> {n} processes, makespan ratio per round {ratios}, median {statistics.median(ratios)}")


if __name__ == "__main__":
    main()
