"""Resume after an interrupted job: SIGKILL the `shammie run` driver mid-stage, run the
same command again, get output identical to an undisturbed run, with no duplicate shards.

`shammie run` runs as a subprocess driver with RAY_ADDRESS pointing at a Ray head
this module starts (`ray start --head`, own temp dir and ports; never the pytest
process's `ray_session`). One test-owned head serves every run: on a machine
shared with other jobs, starting a Ray node can exceed Ray's fixed 15-30 s
start-up waits, and a driver that only connects never hits them. Every process
started here is SIGKILLed on the way out. The helpers are shared with
tests/test_multinode.py.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
# The test's nodes and drivers must not depend on the user-wide ~/.ray/auth_token,
# which any other `ray start` on the machine may replace while the test runs.
TEST_RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
STAGES = ("documents", "deduped", "store")
JOB_TIMEOUT = 900


# ---------------------------------------------------------------- fixtures shared with test_multinode.py


def example_warcs(base: Path, files: int = 8) -> Path:
    """The example's English pages (plus a mirror, a German and a navigation page) spread over `files` WARCs."""
    folder = base / "warc"
    if not folder.exists():
        runpy.run_path(str(REPO / "examples" / "make_example_warcs.py"))["write_example_warcs"](str(folder), files)
    return folder


def job_config(base: Path, warc: Path, name: str = "job.yaml", workers: int | None = 2) -> Path:
    path = base / name
    path.write_text(textwrap.dedent(f"""
        name: resume-test
        input: [{warc}]
        output: {base / 'job'}
        workers: {'null' if workers is None else workers}
        crawl: {{languages: [en]}}
        dedup: {{across_snapshots: false}}
        edu: {{enabled: false}}
        shard: {{group_by: site, train_tokenizer: 500, seq_len: 64}}
    """))
    return path


def shammie_run(config: Path, output: Path, *, env_extra: dict | None = None, log: Path | None = None,
                **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TEST_RAY_ENV)
    env.update(env_extra or {})
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "shammie.jobs", "run", str(config), "--no-progress", "--set", f"output={output}"],
        env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(config.parent), start_new_session=True, **popen)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (Linux /proc; psutil is not a dependency)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_tree(proc: subprocess.Popen, children: list[int] | None = None) -> None:
    """SIGKILL a process, everything it started, and its session (Ray's raylet, GCS, workers)."""
    pids = list(children or []) + descendants(proc.pid)
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_ok(proc: subprocess.Popen, log: Path, timeout: float = JOB_TIMEOUT) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        pytest.fail(f"shammie run did not finish in {timeout} s; log:\n{log.read_text()[-4000:]}")
    assert rc == 0, f"shammie run failed ({rc}); log:\n{log.read_text()[-4000:]}"


# Ray gives a starting raylet a fixed 30 s to register with the GCS; on a machine
# loaded by other jobs that can pass. It happens before any work, so starting
# again is the same as a first try.
RAY_STARTUP_FLAKE = "timed out during startup"
# Ray processes killed from outside the test (another user's `ray stop` on a shared
# machine): the job is re-run, which resumes it, and its output must still match.
RAY_LOST = "Failed to connect to GCS"


RAY_UP = re.compile(r"^job '[^']*'(?: on .*: \d+ of \d+ steps to run|: every step is already complete)", re.M)


def started_run(config: Path, output: Path, log: Path, *, env_extra: dict | None = None,
                attempts: int = 5) -> subprocess.Popen:
    """`shammie run` once Ray is up in it (retrying Ray start-up time-outs), or once it has exited."""
    for _ in range(attempts):
        offset = log.stat().st_size if log.exists() else 0
        proc = shammie_run(config, output, env_extra=env_extra, log=log)
        while proc.poll() is None and not RAY_UP.search(log.read_text()[offset:]):
            time.sleep(0.2)
        if RAY_UP.search(log.read_text()[offset:]):
            return proc
        proc.wait()
        if RAY_STARTUP_FLAKE not in log.read_text()[offset:]:
            return proc  # a real failure: the caller reports it with the log
        kill_tree(proc)
        time.sleep(10)
    pytest.fail(f"Ray did not start in {attempts} attempts; log:\n{log.read_text()[-3000:]}")


def run_to_completion(config: Path, output: Path, log: Path, *, env_extra: dict | None = None,
                      attempts: int = 3) -> None:
    for _ in range(attempts):
        offset = log.stat().st_size if log.exists() else 0
        proc = started_run(config, output, log, env_extra=env_extra)
        try:
            rc = proc.wait(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            kill_tree(proc)
        if rc == 0:
            return
        if rc is None or RAY_LOST not in log.read_text()[offset:]:
            break
    pytest.fail(f"shammie run failed ({rc}); log:\n{log.read_text()[-4000:]}")


def unfinished_stage(job: Path) -> str | None:
    """A stage folder with finished tasks but no _SUCCESS: the job is mid-stage there."""
    for stage in STAGES:
        if (job / "_meta" / stage / "_SUCCESS").exists():
            continue
        if glob.glob(str(job / "_meta" / stage / "**" / "_tasks" / "*.json"), recursive=True):
            return stage
    return None


def task_markers(job: Path) -> dict[str, int]:
    return {p: os.stat(p).st_mtime_ns for p in glob.glob(str(job / "**" / "_tasks" / "*.json"), recursive=True)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def job_fingerprint(job: Path) -> dict:
    """Everything a job produced, independent of the job's own path and build ids.

    Also checks that the store holds exactly the files its manifest lists (no
    duplicate or leftover shards) and that no document id appears twice."""
    import pyarrow.parquet as pq

    fp: dict = {}
    for stage in ("documents", "deduped"):
        assert (job / "_meta" / stage / "_SUCCESS").exists(), f"{stage} is not complete"
        files = sorted(p for p in (job / stage).glob("*.parquet"))
        assert not list((job / stage).glob(".tmp*")), f"temporary files left in {stage}/"
        tables = {p.name: pq.read_table(p).sort_by("id").to_pylist() for p in files}
        ids = [row["id"] for rows in tables.values() for row in rows]
        assert len(ids) == len(set(ids)), f"duplicate documents in {stage}/"
        fp[stage] = tables
    store = job / "store"
    assert (store / "_SUCCESS").exists(), "store is not complete"
    manifest = json.loads((store / "manifest.json").read_text())
    listed = {s["files"][kind]["path"] for d in manifest["domains"].values() for s in d["shards"]
              for kind in ("text", "tokens", "index")}
    on_disk = {str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()}
    # besides the manifest's files: the stage runner's record and the store's build records
    extra = {p for p in on_disk - listed - {"manifest.json", "_SUCCESS", "_stage.json", manifest["tokenizer"]["path"]}
             if not p.startswith("_builds/")}
    assert not extra, f"files in the store that its manifest does not list: {sorted(extra)}"
    assert listed <= on_disk
    ids = [i for p in store.rglob("*.parquet") for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == manifest["documents"], "a document is in the store twice"
    fp["store"] = {
        "documents": manifest["documents"], "tokens": manifest["tokens"],
        "tokenizer": _sha(store / manifest["tokenizer"]["path"]),
        "domains": {name: [[s["documents"], s["tokens"], [s["files"][k]["checksum"] for k in ("text", "tokens", "index")]]
                           for s in d["shards"]] for name, d in manifest["domains"].items()},
    }
    return json.loads(json.dumps(fp))  # the same types as the reference read back from JSON


def reference_fingerprint(base: Path, warc: Path, head: "LazyHead") -> dict:
    """An undisturbed run of the same job (computed once per session, then read back)."""
    cache = base / "reference.json"
    if cache.exists():
        return json.loads(cache.read_text())
    base.mkdir(parents=True, exist_ok=True)
    config = job_config(base, warc)
    log = base / "reference.log"
    run_to_completion(config, base / "job", log, env_extra={"RAY_ADDRESS": head.address})
    fp = job_fingerprint(base / "job")
    assert fp["store"]["documents"] > 0, "the reference job kept no document: the fixture pages are too weak"
    cache.write_text(json.dumps(fp))
    return json.loads(cache.read_text())


@pytest.fixture(scope="session")
def shared_inputs(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "shammie-run-shared"
    base.mkdir(exist_ok=True)
    return base, example_warcs(base)



# ---------------------------------------------------------------- test-owned Ray nodes


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


def start_node(args: list[str], temp_dir: str, log: Path, cpus: int = 1) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(TEST_RAY_ENV)
    return subprocess.Popen(
        [RAY, "start", "--block", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
         "--disable-usage-stats", *node_ports(), *args],
        env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def alive_nodes(address: str) -> int:
    result = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return 0
    active = result.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]  # Active + Idle sections
    return len(re.findall(r"\bnode_[0-9a-f]+", active))


def wait_nodes(address: str, count: int, timeout: float = 60) -> bool:
    """True once `ray status` lists `count` alive nodes. It reports the autoscaler's view,
    refreshed every few seconds, so a node that has just started may not be listed yet."""
    deadline = time.monotonic() + timeout
    while alive_nodes(address) != count:
        if time.monotonic() >= deadline:
            return False
        time.sleep(2)
    return True


def wait_started(proc: subprocess.Popen, log: Path, offset: int, timeout: float = 150) -> bool:
    """True once `ray start` reports the node up (cheaper than polling `ray status`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace")[offset:]:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.5)
    return False


def start_head(log: Path, cpus: int, attempts: int = 6) -> tuple[subprocess.Popen, str, str]:
    """A Ray head on 127.0.0.1, retried: the raylet gives the dashboard agent (a Python
    process that imports for ~5 CPU-seconds) a fixed ~15 s to come up and exits
    otherwise, which a machine shared with other jobs can exceed."""
    for _ in range(attempts):
        port = free_ports(1)[0]
        # Short temp dir: Ray's Unix sockets live there and paths are limited to ~107 bytes.
        temp_dir = tempfile.mkdtemp(prefix="shh-", dir="/tmp")
        offset = log.stat().st_size if log.exists() else 0
        client_port, dashboard_port = free_ports(2)
        head = start_node(["--head", f"--port={port}", "--include-dashboard=false",
                           f"--ray-client-server-port={client_port}", f"--dashboard-port={dashboard_port}"],
                          temp_dir, log, cpus=cpus)
        address = f"127.0.0.1:{port}"
        if wait_started(head, log, offset):
            return head, address, temp_dir
        kill_tree(head)
        forget_cluster(address, temp_dir)
    pytest.fail(f"no Ray head came up in {attempts} attempts; log:\n{log.read_text()[-3000:]}")


def forget_cluster(address: str, temp_dir: str) -> None:
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        if address in current.read_text():
            current.unlink()  # do not leave `ray.init("auto")` pointing at a dead cluster
    except OSError:
        pass
    shutil.rmtree(temp_dir, ignore_errors=True)


class LazyHead:
    """A 2-CPU Ray head owned by the test session, started on first use of `address`."""

    def __init__(self, log: Path):
        self.log = log
        self._started: tuple[subprocess.Popen, str, str] | None = None

    @property
    def address(self) -> str:
        if self._started is None:
            self._started = start_head(self.log, cpus=2)
        return self._started[1]

    def stop(self) -> None:
        if self._started is not None:
            head, address, temp_dir = self._started
            kill_tree(head)
            forget_cluster(address, temp_dir)


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    head = LazyHead(tmp_path_factory.getbasetemp() / "ray-head.log")
    try:
        yield head
    finally:
        head.stop()


# ---------------------------------------------------------------- the test


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_killed_driver_resumes_to_identical_output_without_duplicate_shards(tmp_path, shared_inputs, ray_head):
    base, warc = shared_inputs
    reference = reference_fingerprint(base / "reference", warc, ray_head)
    on_head = {"RAY_ADDRESS": ray_head.address}

    config = job_config(tmp_path, warc)
    job = tmp_path / "job"
    log = tmp_path / "run.log"
    proc = started_run(config, job, log, env_extra=on_head)
    killed_in = None
    try:
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            killed_in = unfinished_stage(job)
            if killed_in:
                children = descendants(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)  # the driver dies first, like a lost head node
                kill_tree(proc, children)
                break
            time.sleep(0.05)
    finally:
        kill_tree(proc)
    assert killed_in is not None, f"the job ended before it could be interrupted; log:\n{log.read_text()[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not (job / "store" / "_SUCCESS").exists()
    done_before = task_markers(job)
    assert done_before, "no task had finished when the driver was killed"

    run_to_completion(config, job, log, env_extra=on_head)

    # finished tasks were skipped, not redone: their markers were not rewritten
    after = task_markers(job)
    for path, mtime in done_before.items():
        if os.path.exists(path):  # dedup deletes its _work/ folder once complete
            assert after[path] == mtime, f"{path} was redone on resume"
    assert job_fingerprint(job) == reference
    text = log.read_text()
    assert text.count("job 'resume-test' complete") == 1
    if killed_in != "documents":
        assert "crawl: complete, skipped" in text
