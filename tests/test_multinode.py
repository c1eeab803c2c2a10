"""A two-node Ray cluster on one machine: run a job across both nodes, kill the second
node mid-job, and check the job completes with output identical to an undisturbed run.

Both nodes are real `ray start` processes on 127.0.0.1 (own temp dirs, own ports);
`shammie run` is a subprocess driver with RAY_ADDRESS pointing at the head. The
pytest process's own Ray (`ray_session`) is never used. Every process started here
is SIGKILLed on the way out, whatever happens.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("shammie_test_run_resume", HERE / "test_run_resume.py")
resume = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resume)
shared_inputs = resume.shared_inputs  # the session fixture (same WARCs, same reference run)

RAY = str(Path(sys.executable).parent / "ray")


def free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def node_ports() -> list[str]:
    """Every port a node would otherwise take from a fixed default (two nodes on one host collide)."""
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port"]
    return [f"{name}={port}" for name, port in zip(names, free_ports(len(names)))]


def start_node(args: list[str], temp_dir: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return subprocess.Popen(
        [RAY, "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
         "--disable-usage-stats", *node_ports(), *args],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def alive_nodes(address: str) -> int:
    result = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return 0
    active = result.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return len(re.findall(r"\bnode_[0-9a-f]+", active))


def wait_for_nodes(address: str, n: int, procs: list[subprocess.Popen], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a Ray node exited ({p.returncode}); log:\n{log.read_text()[-3000:]}")
        if alive_nodes(address) >= n:
            return
        time.sleep(2)
    pytest.fail(f"the cluster did not reach {n} nodes in {timeout} s; log:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_job_across_two_nodes_survives_losing_one(tmp_path, shared_inputs):
    base, warc = shared_inputs
    reference = resume.reference_fingerprint(base / "reference", warc)

    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    # Short temp dirs: Ray's Unix sockets live there and paths are limited to ~107 bytes.
    head_tmp = tempfile.mkdtemp(prefix="shh-", dir="/tmp")
    worker_tmp = tempfile.mkdtemp(prefix="shw-", dir="/tmp")
    cluster_log = tmp_path / "cluster.log"
    procs: list[subprocess.Popen] = []
    children: list = []
    driver = None
    try:
        head = start_node(["--head", f"--port={port}", "--include-dashboard=false"], head_tmp, cluster_log)
        procs.append(head)
        wait_for_nodes(address, 1, procs, cluster_log)
        worker = start_node([f"--address={address}"], worker_tmp, cluster_log)
        procs.append(worker)
        wait_for_nodes(address, 2, procs, cluster_log)

        # workers: null -> as many tasks in flight as the cluster has CPUs (x2), so both nodes get work
        config = resume.job_config(tmp_path, warc, workers=None)
        job = tmp_path / "job"
        log = tmp_path / "run.log"
        driver = resume.started_run(config, job, log, env_extra={"RAY_ADDRESS": address})
        killed_in = None
        deadline = time.monotonic() + resume.JOB_TIMEOUT
        while time.monotonic() < deadline and driver.poll() is None:
            killed_in = resume.unfinished_stage(job)
            if killed_in:
                children = resume.descendants(worker.pid)
                resume.kill_tree(worker, children)  # the second node's raylet and its workers die
                break
            time.sleep(0.05)
        assert killed_in is not None, f"the job ended before the node could be killed; log:\n{log.read_text()[-3000:]}"
        assert worker.returncode is not None
        assert head.poll() is None, "the head died with the worker node"
        resume.wait_ok(driver, log)
        deadline = time.monotonic() + 120  # the GCS declares a node dead after missed health checks
        while alive_nodes(address) != 1 and time.monotonic() < deadline:
            time.sleep(3)
        assert alive_nodes(address) == 1, "the killed node is still listed as alive"
        assert resume.job_fingerprint(job) == reference
        assert "job 'resume-test' complete" in log.read_text()
        assert f"Ray cluster at {address}" in log.read_text()
    finally:
        if driver is not None:
            resume.kill_tree(driver)
        for p in reversed(procs):
            resume.kill_tree(p)
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.exists() and address in current.read_text():
            current.unlink()  # do not leave `ray.init("auto")` pointing at a dead cluster
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(worker_tmp, ignore_errors=True)
