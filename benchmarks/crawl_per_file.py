"""Crawl work per WARC file without Ray: how the hardware scales from 1 to N processes.

    .venv/bin/python benchmarks/crawl_per_file.py CORPUS [--processes 1 2]

For each process count, the corpus's files are dealt round-robin to that many plain
Python processes; each builds the FineWeb steps once and runs `process_warc` on its
files in turn, printing seconds per file (the first file includes loading spaCy,
fastText and the URL lists). The makespan is the slowest process's total.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time


def child(files: list[str]) -> None:
    from shammie.filters.fineweb import FineWebConfig, resolve_lid_model
    from shammie.pipeline.crawl import _steps, process_warc

    cfg = FineWebConfig(lid_model=resolve_lid_model(None))
    _steps(cfg)
    for f in files:
        start = time.perf_counter()
        process_warc({"url": f, "job": tempfile.mkdtemp(), "name": "x", "cfg": cfg})
        print(json.dumps({"file": os.path.basename(f), "seconds": round(time.perf_counter() - start, 1)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--_child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        return child(args._child)
    files = sorted(glob.glob(os.path.join(args.corpus, "*.warc.gz")))
    for n in args.processes:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--_child", *files[i::n]], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True) for i in range(n)]
        per = [[json.loads(line) for line in p.communicate()[0].splitlines()] for p in procs]
        print(f"{n} process(es): makespan {time.perf_counter() - start:.1f} s; seconds per file: "
              + "; ".join(", ".join(f"{r['file']} {r['seconds']}" for r in rows) for rows in per), flush=True)


if __name__ == "__main__":
    main()
