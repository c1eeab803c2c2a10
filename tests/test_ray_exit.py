"""The embedded local Ray exits without Ray's exit-time waits, and the `shammie` command without the interpreter's teardown."""

from __future__ import annotations

import json
import os
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


EXIT_SCRIPT = r"""
import atexit, json, time
slept = []
def report():  # registered first, so it runs last: after every other exit hook
    print(json.dumps({"ray_sleeps": slept, "still_initialized": ray.is_initialized()}), flush=True)
atexit.register(report)
import ray
real_sleep = time.sleep
def recording_sleep(seconds):
    slept.append(seconds)
    real_sleep(seconds)
from shammie.pipeline.ray_runtime import init_ray
init_ray(num_cpus=1)
assert ray.get(ray.remote(lambda: 1).remote()) == 1
ray._private.worker.time.sleep = recording_sleep  # Ray's exit hook calls time.sleep(0.5) here
"""


def test_the_embedded_ray_is_shut_down_at_exit_without_rays_half_second_sleep():
    proc = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["still_initialized"] is False  # shut down by the time the last hook runs
    # Ray's own exit hook sleeps 0.5 s "so that log messages finish printing" before shutting
    # down; ours shuts Ray down first, so that hook finds nothing to do
    assert 0.5 not in result["ray_sleeps"], result


FINISH_SCRIPT = r"""
import atexit, sys, threading, time
from shammie.jobs.cli import finish_now
out = sys.argv[1]
def late_writer():
    time.sleep(0.3)
    open(out, "w").write("written")
threading.Thread(target=late_writer).start()  # not a daemon: the exit must wait for it
atexit.register(lambda: sys.stdout.write("exit hook ran\n"))
sys.stdout.write("x" * 200_000)  # buffered, no newline: lost without a flush
finish_now(3)
print("never printed")
"""


def test_the_command_exit_joins_threads_runs_exit_hooks_and_flushes_output(tmp_path):
    out = tmp_path / "late.txt"
    proc = subprocess.run([sys.executable, "-c", FINISH_SCRIPT, str(out)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert out.read_text() == "written"
    assert proc.stdout == "x" * 200_000 + "exit hook ran\n"


def test_the_shammie_executable_ends_through_the_fast_exit(tmp_path):
    import shutil

    exe = shutil.which("shammie", path=os.path.dirname(sys.executable))
    assert exe is not None, "the `shammie` executable is installed next to this Python"
    assert "entry" in open(exe).read()
    proc = subprocess.run([exe, "crawl", "/nonexistent/input.warc.gz", "--output", str(tmp_path / "job")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("shammie crawl: error:") and "Traceback" not in proc.stderr
    assert not (tmp_path / "job").exists()
