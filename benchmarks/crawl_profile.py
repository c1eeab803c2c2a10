"""Where a crawl worker's time goes: cProfile of `process_warc` on one WARC file, in-process.

    .venv/bin/python benchmarks/crawl_profile.py CORPUS/bench-00000.warc.gz [--top 35]

The filter steps are built before profiling starts; spaCy and fastText still load on
first use inside the profile (the first-use imports show up as `_find_and_load`).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile

from shammie.filters.fineweb import FineWebConfig, resolve_lid_model
from shammie.pipeline.crawl import _steps, process_warc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("warc")
    ap.add_argument("--top", type=int, default=35)
    args = ap.parse_args()
    cfg = FineWebConfig(lid_model=resolve_lid_model(None))
    _steps(cfg)
    profile = cProfile.Profile()
    profile.enable()
    funnel = process_warc({"url": args.warc, "job": tempfile.mkdtemp(), "name": "profile", "cfg": cfg})
    profile.disable()
    print(f"{funnel['html_responses']} HTML pages in {funnel['seconds']} s under the profiler")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
