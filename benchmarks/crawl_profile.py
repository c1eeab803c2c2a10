"""Where a crawl worker's time goes: cProfile of one crawl task (one WARC file), in-process.

    .venv/bin/python benchmarks/crawl_profile.py CORPUS/bench-00000.warc.gz [--extractor resiliparse] [--top 35]

The stage is set up (models loaded, every step warmed) before profiling starts, as a
worker's `setup()` does, so the profile shows what pages cost. Also prints the task's
own per-step CPU seconds per 1,000 pages (the numbers the crawl records in stats.json).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time

from shammie.filters.crawl import CrawlOptions, CrawlStage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("warc")
    ap.add_argument("--extractor", default="trafilatura", choices=["trafilatura", "resiliparse"])
    ap.add_argument("--top", type=int, default=35)
    ap.add_argument("--sort", default="cumulative", help="pstats sort key (cumulative, tottime)")
    ap.add_argument("--no-profile", action="store_true", help="only the per-step CPU seconds, without cProfile")
    args = ap.parse_args()
    job = tempfile.mkdtemp(prefix="shammie-profile-")
    stage = CrawlStage(job, CrawlOptions(inputs=[args.warc], output=job, extractor=args.extractor))
    started, cpu = time.monotonic(), time.process_time()
    stage.setup()
    print(f"worker set-up (models, block lists, warm-up): {time.monotonic() - started:.2f} s wall, "
          f"{time.process_time() - cpu:.2f} s CPU")
    out = os.path.join(job, "documents")
    os.makedirs(out, exist_ok=True)
    payload = {"url": os.path.abspath(args.warc), "name": "profile"}
    profile = cProfile.Profile()
    if not args.no_profile:
        profile.enable()
    funnel = stage.run_task(payload, out)
    profile.disable()
    pages = funnel["html_responses"]
    print(f"{pages} HTML pages in {funnel['seconds']} s")
    cpu = funnel.get("cpu_seconds") or {}
    if cpu:
        per_1000 = {k: round(v * 1000 / max(pages, 1), 2) for k, v in cpu.items()}
        print(f"CPU s per 1,000 pages ({'without' if args.no_profile else 'under'} the profiler): total "
              f"{sum(per_1000.values()):.1f}", json.dumps(per_1000))
    if not args.no_profile:
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
