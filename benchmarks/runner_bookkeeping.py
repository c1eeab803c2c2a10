"""The stage runner's own bookkeeping at Common Crawl scale: no Ray, no real work, only the driver.

    .venv/bin/python benchmarks/runner_bookkeeping.py --sizes 1000 10000 90000
    .venv/bin/python benchmarks/runner_bookkeeping.py --s3 --sizes 500 2000
    .venv/bin/python benchmarks/runner_bookkeeping.py --sizes 1000 10000 90000 --compare ad3679a --json out.json

A synthetic stage plans one task per input, each writing one tiny Parquet file. For each
size N it measures what the driver does around the tasks, with the runner of the code
under test:

- fresh:    a phase with no markers yet, from `run_stage` until Ray would start (the first
            task would be submitted then; `init_ray` is stopped there): planning, input
            record, and the probe of N absent markers;
- resume:   then every task done (markers and outputs written as the workers write them)
            but no `_SUCCESS`, as after a driver died: the same command again, i.e. the
            marker probe (`run_tasks`, reported apart) and the completion (output manifest,
            stats, `_SUCCESS`);
- complete: the same command again on the complete folder ("already complete": every
            output checked against `_SUCCESS`).

`--s3` runs the job on a moto server started on 127.0.0.1 and counts the S3 requests of
each step by operation (a botocore hook on the s3fs client). `--compare REV` runs the
same measurements, in a child process, on the runner code of git revision REV too (its
`pipeline/` and `jobs/` unpacked into a temporary folder put first on PYTHONPATH).
Setup (writing the N outputs and markers) is not timed; fsync is skipped while it runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class StopBeforeRay(Exception):
    """Raised where Ray would start: the driver's bookkeeping before the first task is over."""


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


# ---------------------------------------------------------------- the synthetic stage


def bench_stage_class():
    from shammie.pipeline.stage import InputFile, Stage, Task

    class BookkeepingStage(Stage):
        """N inputs, one task each, one tiny Parquet output each; `run_task` is never reached."""

        name = "bookkeeping"
        output = "bookkeeping"

        def __init__(self, job: str, n: int):
            super().__init__(job)
            self.n = n

        def resolve_inputs(self):
            return [InputFile(f"synthetic://input/{i:06d}", f"in-{i:06d}", {"size": 1}) for i in range(self.n)]

        def plan(self, inputs, out):
            return [Task(f"t{i:06d}", {"i": i}, (f"part-{i:06d}.parquet",)) for i in range(len(inputs))]

        def run_task(self, payload, out):
            raise AssertionError("no task runs in this benchmark")

        def summarize(self, results):
            return {"documents": sum(int(r.get("documents", 0)) for r in results.values()), "files": len(results)}

    return BookkeepingStage


def write_output(payload: dict) -> dict:
    """What a task does here: one 1-row Parquet file (`pad` bytes of incompressible text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shammie.pipeline import storage

    text = os.urandom(payload.get("pad", 0) // 2).hex() or "a tiny document"
    table = pa.table({"id": [f"doc-{payload['i']}"], "text": [text]})
    with storage.atomic_write(payload["output"]) as path:
        pq.write_table(table, path)
    return {"documents": 1}


def write_finished_tasks(job: str, stage: str, n: int, pad: int = 0) -> None:
    """Outputs and markers exactly as the runner's worker function of the code under test writes them
    (markers in JOB/_meta/<stage>/_tasks/ since issue 23, inside the folder before)."""
    from shammie.pipeline import jobdir, parallel, storage

    out = storage.join(job, stage)
    meta = jobdir.meta_path(job, stage) if hasattr(jobdir, "meta_path") else out

    real_fsync = os.fsync
    os.fsync = lambda fd: None  # setup only: not what is measured
    try:
        for i in range(n):
            url = storage.join(out, f"part-{i:06d}.parquet")
            parallel._run_and_mark(write_output, {"i": i, "output": url, "pad": pad},
                                   storage.join(meta, "_tasks", f"t{i:06d}.json"), [url])
    finally:
        os.fsync = real_fsync


# ---------------------------------------------------------------- S3 request counting


class RequestCounter:
    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.client = None

    def attach(self, url: str) -> None:
        import fsspec.asyn

        from shammie.pipeline import storage

        fs, _ = storage.get_fs(url)
        fsspec.asyn.sync(fs.loop, fs.set_session)
        self.client = fs.s3
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, request=None, **kwargs):
        op = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        self.counts[op or "?"] += 1

    def take(self) -> dict[str, int]:
        counts, self.counts = dict(self.counts), collections.Counter()
        return counts


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    url = f"http://127.0.0.1:{port}"
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3

    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bench")
    return proc, url


def per_request_ms(counter: RequestCounter, url: str, n: int = 200) -> float:
    """Mean time of one small GET (one after another) on this store: the unit of the projection."""
    from shammie.pipeline import storage

    storage.write_bytes_atomic(url, b"{}")
    started = time.perf_counter()
    for _ in range(n):
        storage.read_bytes(url)
    counter.take()
    return (time.perf_counter() - started) / n * 1000


# ---------------------------------------------------------------- one size


def measure(root: str, n: int, counter: RequestCounter | None, pad: int = 0) -> dict:
    from shammie.pipeline import parallel, ray_runtime, runner, storage

    stage_cls = bench_stage_class()
    quiet = runner.RunOptions(progress=False)
    result: dict = {"tasks": n, "output_bytes": pad}

    def stop(*_a, **_k):
        raise StopBeforeRay

    original_init = ray_runtime.init_ray
    ray_runtime.init_ray = stop
    try:
        job = storage.join(root, f"job-{n}")
        started = time.perf_counter()
        try:
            runner.run_stage(stage_cls(job, n), quiet)
        except StopBeforeRay:
            pass
        result["fresh_s"] = round(time.perf_counter() - started, 3)
        if counter:
            result["fresh_requests"] = counter.take()
    finally:
        ray_runtime.init_ray = original_init

    # the tasks then finish (as Ray's workers would) and the driver dies before completion
    started = time.perf_counter()
    write_finished_tasks(job, "bookkeeping", n, pad)
    result["setup_s"] = round(time.perf_counter() - started, 1)
    if counter:
        counter.take()

    probe = {"s": 0.0}
    original_run_tasks = parallel.run_tasks

    def timed_run_tasks(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original_run_tasks(*args, **kwargs)
        finally:
            probe["s"] += time.perf_counter() - t

    parallel.run_tasks = timed_run_tasks
    try:
        started = time.perf_counter()
        section = runner.run_stage(stage_cls(job, n), quiet).section
        result["resume_s"] = round(time.perf_counter() - started, 3)
    finally:
        parallel.run_tasks = original_run_tasks
    assert section["files"] == n, section
    result["resume_probe_s"] = round(probe["s"], 3)
    result["resume_rest_s"] = round(result["resume_s"] - probe["s"], 3)
    if counter:
        result["resume_requests"] = counter.take()

    started = time.perf_counter()
    status = runner.run_stage(stage_cls(job, n), quiet).status
    result["complete_s"] = round(time.perf_counter() - started, 3)
    assert status == "complete", status
    if counter:
        result["complete_requests"] = counter.take()
    return result


def run_all(sizes: list[int], s3: bool, pad: int = 0) -> list[dict]:
    import shammie.pipeline

    rows = []
    code = os.path.dirname(os.path.dirname(shammie.pipeline.__file__))
    moto = None
    counter = None
    try:
        if s3:
            moto, _ = start_moto()
            counter = RequestCounter()
            counter.attach("s3://bench/x")
            root = "s3://bench/runs"
            unit = per_request_ms(counter, "s3://bench/unit.json")
        else:
            root = tempfile.mkdtemp(prefix="shammie-bookkeeping-")
            unit = None
        measure(f"{root}/warm-up" if s3 else os.path.join(root, "warm-up"), 20, counter)  # imports, first calls
        for n in sizes:
            before = load()
            row = measure(f"{root}/{n}" if s3 else os.path.join(root, str(n)), n, counter, pad)
            row.update(code=code, store="s3 (moto)" if s3 else "local", load_before=before, load_after=load())
            if unit is not None:
                row["ms_per_request"] = round(unit, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if not s3:
                shutil.rmtree(os.path.join(root, str(n)), ignore_errors=True)
        if not s3:
            shutil.rmtree(root, ignore_errors=True)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
    return rows


# ---------------------------------------------------------------- before/after


def code_of(rev: str) -> str:
    """A folder whose `shammie/` holds `rev`'s packages, to put first on PYTHONPATH."""
    root = tempfile.mkdtemp(prefix=f"shammie-{rev[:10]}-")
    src = os.path.join(root, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "pipeline", "jobs", "dedup", "mixing", "filters"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    os.makedirs(os.path.join(root, "shammie"))
    for sub in ("pipeline", "jobs", "dedup", "mixing", "filters"):
        os.symlink(os.path.join(src, sub), os.path.join(root, "shammie", sub))
    return root


def table(rows: list[dict]) -> str:
    lines = ["| code | store | tasks x bytes | fresh s | resume s (probe + rest) | complete s | "
             "requests fresh / resume / complete | load |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reqs = " / ".join(str(sum(r.get(k, {}).values())) if k in r else "-"
                          for k in ("fresh_requests", "resume_requests", "complete_requests"))
        lines.append(f"| {r['label']} | {r['store']} | {r['tasks']:,} x {r['output_bytes'] or '~1k'} | "
                     f"{r['fresh_s']} | {r['resume_s']} "
                     f"({r['resume_probe_s']} + {r['resume_rest_s']}) | {r['complete_s']} | {reqs} | "
                     f"{r['load_before'].removeprefix('load ')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 90000])
    ap.add_argument("--s3", action="store_true", help="job on a moto S3 server; count requests")
    ap.add_argument("--compare", metavar="REV", help="also measure the runner of git revision REV (e.g. main)")
    ap.add_argument("--output-bytes", type=int, default=0, help="size of each task's output (default: ~1 KB)")
    ap.add_argument("--json", help="write every row here")
    ap.add_argument("--child-label", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.child_label:
        for row in run_all(args.sizes, args.s3, args.output_bytes):
            print("ROW " + json.dumps({**row, "label": args.child_label}), flush=True)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {load()} python {sys.version.split()[0]}", flush=True)
    runs = [("this tree", None)] + ([(args.compare, code_of(args.compare))] if args.compare else [])
    rows = []
    for label, path in runs:
        env = dict(os.environ)
        if path:
            env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, __file__, "--sizes", *map(str, args.sizes), "--child-label", label,
               "--output-bytes", str(args.output_bytes), *(["--s3"] if args.s3 else [])]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{label}: failed\n{proc.stderr[-3000:]}")
        for line in proc.stdout.splitlines():
            if line.startswith("ROW "):
                rows.append(json.loads(line[4:]))
                print(json.dumps(rows[-1]), flush=True)
        if path:
            shutil.rmtree(path, ignore_errors=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
