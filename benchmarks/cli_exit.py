"""How long a `shammie crawl` process takes to end once its command has finished.

    .venv/bin/python benchmarks/cli_exit.py WARC [--rounds 2] [--extractor resiliparse]

Runs the same crawl (2 workers, a fresh job folder each time) both ways, alternating:
- "ray-hook": as before 390e348, Ray's own exit hook shuts the embedded Ray down (it
  sleeps 0.5 s first) and the interpreter tears itself down (`sys.exit(main())`);
- "shammie": as the `shammie` executable ends now (`shutdown_local_ray` first, then
  `jobs.cli.finish_now`: threads joined, exit hooks run, output flushed, `os._exit`).
Prints, per run, the seconds from `main()` returning to the process's end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time
from shammie.jobs import cli
from shammie.pipeline import ray_runtime
mode, warc, job, extractor = sys.argv[1:5]
if mode == "ray-hook":  # the exit hook registered before 390e348: only the monitor is stopped
    ray_runtime.shutdown_local_ray = ray_runtime.stop_autoscaler_monitor
code = cli.main(["crawl", warc, "--output", job, "--workers", "2", "--no-progress", "--extractor", extractor])
print(f"MAIN_RETURNED {time.time():.6f}", file=sys.stderr, flush=True)
sys.exit(code) if mode == "ray-hook" else cli.finish_now(code)
"""


def one_run(mode: str, warc: str, extractor: str) -> float:
    with tempfile.TemporaryDirectory(prefix="shammie-exit-") as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, mode, warc, os.path.join(tmp, "job"), extractor],
                              capture_output=True, text=True, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
        ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    returned = float(proc.stderr.split("MAIN_RETURNED ", 1)[1].split()[0])
    return ended - returned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("warc")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--extractor", default="resiliparse", choices=["trafilatura", "resiliparse"])
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()}")
    for r in range(args.rounds):
        for mode in ("ray-hook", "shammie"):
            print(f"round {r} {mode:9s} exit after main(): {one_run(mode, os.path.abspath(args.warc), args.extractor):.3f} s",
                  flush=True)


if __name__ == "__main__":
    main()
