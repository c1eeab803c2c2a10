"""A two-node Ray cluster on one machine: run a job across both nodes, kill the second
node mid-job, and check the job completes with output identical to an undisturbed run.

Both nodes are real `ray start` processes on 127.0.0.1 (own temp dirs, own ports);
`shammie run` is a subprocess driver with RAY_ADDRESS pointing at the head. The
pytest process's own Ray (`ray_session`) is never used. Every process started here
is SIGKILLed on the way out, whatever happens. The job folder is local: both nodes are
on this one host (one node address), which the runner allows without
`--shared-filesystem` (tests/test_cluster_refusal.py has the multi-host refusal).
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("shammie_test_run_resume", HERE / "test_run_resume.py")
resume = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resume)
# Session fixtures: the same WARCs and the same undisturbed reference run as the resume test.
shared_inputs = resume.shared_inputs
ray_head = resume.ray_head


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_job_across_two_nodes_survives_losing_one(tmp_path, shared_inputs, ray_head):
    base, warc = shared_inputs
    reference = resume.reference_fingerprint(base / "reference", warc, ray_head)

    cluster_log = tmp_path / "cluster.log"
    head, address, head_tmp = resume.start_head(cluster_log, cpus=1)
    procs = [head]
    worker_tmp = tempfile.mkdtemp(prefix="shw-", dir="/tmp")
    driver = None
    try:
        worker_log = tmp_path / "worker.log"
        for _ in range(3):  # a node start can time out on a loaded machine: try again
            offset = worker_log.stat().st_size if worker_log.exists() else 0
            worker = resume.start_node([f"--address={address}"], worker_tmp, worker_log, cpus=1)
            procs.append(worker)
            if resume.wait_started(worker, worker_log, offset) and resume.wait_nodes(address, 2):
                break
            resume.kill_tree(worker)
        else:
            pytest.fail(f"the second node did not join; log:\n{worker_log.read_text()[-3000:]}")

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
                # the second node's `ray start`, raylet, agents and task workers all die
                resume.kill_tree(worker, resume.descendants(worker.pid))
                break
            time.sleep(0.05)
        assert killed_in is not None, f"the job ended before the node could be killed; log:\n{log.read_text()[-3000:]}"
        assert worker.returncode is not None
        assert head.poll() is None, "the head died with the worker node"
        resume.wait_ok(driver, log)
        # the GCS declares a node dead after missed health checks
        assert resume.wait_nodes(address, 1, timeout=120), "the killed node is still listed as alive"
        assert resume.job_fingerprint(job) == reference
        text = log.read_text()
        assert "job 'resume-test' complete" in text
        assert f"Ray cluster at {address}" in text
    finally:
        if driver is not None:
            resume.kill_tree(driver)
        for p in reversed(procs):
            resume.kill_tree(p)
        resume.forget_cluster(address, head_tmp)
        resume.forget_cluster(address, worker_tmp)
