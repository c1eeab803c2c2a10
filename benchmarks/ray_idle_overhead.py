"""CPU used by a local Ray's own processes while no task runs.

    .venv/bin/python benchmarks/ray_idle_overhead.py [--no-metrics]

Starts Ray as Shammie does (address="local", 2 CPUs, no dashboard), waits 15 s,
then sums the CPU time of every process started since (raylet, GCS, agents, idle
workers, this driver) over 30 s.
"""

from __future__ import annotations

import argparse
import time

import psutil
import ray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-metrics", action="store_true", help="_system_config enable_metrics_collection=False")
    args = ap.parse_args()
    me = psutil.Process()
    extra = {"_system_config": {"enable_metrics_collection": False}} if args.no_metrics else {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING", **extra)
    time.sleep(15)

    def cpu() -> dict[int, tuple[float, str]]:
        out = {}
        for p in psutil.process_iter(["cmdline", "create_time"]):
            try:
                if p.info["create_time"] >= me.create_time() - 1:
                    t = p.cpu_times()
                    out[p.pid] = (t.user + t.system, " ".join(p.info["cmdline"] or [])[:70])
            except psutil.Error:
                pass
        return out

    before, start = cpu(), time.time()
    time.sleep(30)
    after, elapsed = cpu(), time.time() - start
    used = {pid: after[pid][0] - before[pid][0] for pid in after if pid in before}
    print(f"{'no metrics' if args.no_metrics else 'default'}: Ray's processes used "
          f"{100 * sum(used.values()) / elapsed:.1f}% of a core while idle")
    for pid in sorted(used, key=used.get, reverse=True)[:6]:
        print(f"  {100 * used[pid] / elapsed:5.1f}%  {after[pid][1]}")


if __name__ == "__main__":
    main()
