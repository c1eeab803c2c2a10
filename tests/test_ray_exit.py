"""The embedded local Ray exits without Ray's one-second wait on its autoscaler monitor."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, os, time
import ray, ray._private.node as ray_node
from shammie.pipeline.ray_runtime import init_ray, stop_autoscaler_monitor
seconds = {}
kill = ray_node.Node._kill_process_type
def timed_kill(self, process_type, *args, **kwargs):
    t = time.monotonic()
    try:
        return kill(self, process_type, *args, **kwargs)
    finally:
        seconds[process_type] = time.monotonic() - t
ray_node.Node._kill_process_type = timed_kill
init_ray(num_cpus=1)
node = ray._private.worker._global_node
monitors = [p.process for p in node.all_processes.get("monitor", [])]
before = [p.poll() is None for p in monitors]
stopped = stop_autoscaler_monitor()
after = [p.poll() is None for p in monitors]
t = time.monotonic()
ray.shutdown()
print(json.dumps({"alive_before": before, "stopped": stopped, "alive_after": after,
                  "monitor_s": seconds.get("monitor"), "again": stop_autoscaler_monitor()}))
"""


def test_the_local_monitor_is_stopped_first_and_shutdown_does_not_wait_for_it():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["alive_before"] == [True]
    assert result["stopped"] is True
    assert result["alive_after"] == [False]
    # Ray alone waits 1 s for the monitor (its SIGTERM handler calls the stopped GCS), then kills
    # it; stopped first, there is nothing to wait for (the whole shutdown is timed by load, this is not)
    assert result["monitor_s"] is not None and result["monitor_s"] < 0.5, result
    assert result["again"] is False  # no Ray left: nothing to do, no error
