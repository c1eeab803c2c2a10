"""How much the two `--extractor` modes agree on what they keep, on real crawls.

    .venv/bin/python benchmarks/extractor_overlap.py [INPUT ...] [--workers 2]

Runs `shammie crawl` with `--extractor trafilatura` and with `--extractor resiliparse` on
the same input (default: every WARC/ARC file in ../shared/data/warc) and reports each mode's
kept count, the documents both keep, and the Jaccard of the two kept sets (by record id).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq

SHARED_WARC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "shared", "data", "warc")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    inputs = args.inputs or sorted(glob.glob(os.path.join(SHARED_WARC, "*.warc*")) + glob.glob(os.path.join(SHARED_WARC, "*.arc*")))
    if not inputs:
        print(f"skipped: no input (is {SHARED_WARC} there?)")
        return 0
    shammie = os.path.join(os.path.dirname(sys.executable), "shammie")
    kept = {}
    work = tempfile.mkdtemp(prefix="shammie-extractor-overlap-")
    for extractor in ("trafilatura", "resiliparse"):
        job = os.path.join(work, extractor)
        subprocess.run([shammie, "crawl", *inputs, "--output", job, "--workers", str(args.workers), "--no-progress",
                        "--extractor", extractor, "--languages", "all"], check=True, capture_output=True)
        kept[extractor] = {i for p in glob.glob(os.path.join(job, "documents", "*.parquet"))
                           for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}
    a, b = kept["trafilatura"], kept["resiliparse"]
    result = {"inputs": len(inputs), "kept_trafilatura": len(a), "kept_resiliparse": len(b), "kept_by_both": len(a & b),
              "jaccard": round(len(a & b) / max(len(a | b), 1), 4)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
