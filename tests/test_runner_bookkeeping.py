"""The runner's driver-side bookkeeping is in bulk: no request per marker before a phase starts,
no output read back at completion, outputs checked on resume against one listing.

On S3 (a moto server) the requests of each step are counted by operation with a botocore
hook on the s3fs client; locally, the driver's reads of outputs are counted by wrapping the
functions that read them. A synthetic stage with N tasks stands in for a 90k-file phase; its
tasks are finished the way Ray's workers finish them (`parallel._run_and_mark`), so no Ray is
needed, and the run is stopped where Ray would start.
"""

from __future__ import annotations

import collections
import json
import os
import runpy
import time
from pathlib import Path

import pytest

from shammie.pipeline import jobdir, parallel, ray_runtime, runner, storage
from shammie.pipeline.stage import InputFile, Stage, Task

N = 40
REPO = Path(__file__).resolve().parent.parent


class Stop(Exception):
    """Raised where Ray would start."""


class ManyTasks(Stage):
    name = "many"
    output = "many"

    def __init__(self, job: str, n: int = N):
        super().__init__(job)
        self.n = n

    def resolve_inputs(self):
        return [InputFile(f"synthetic://{i}", f"in-{i:03d}", {"size": 1}) for i in range(self.n)]

    def plan(self, inputs, out):
        return [Task(f"t{i:03d}", {"i": i}, (f"part-{i:03d}.parquet",)) for i in range(len(inputs))]

    def summarize(self, results):
        return {"documents": sum(r["documents"] for r in results.values()), "files": len(results)}


def write_part(payload: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with storage.atomic_write(payload["output"]) as path:
        pq.write_table(pa.table({"id": [f"d{payload['i']}", "x"]}), path)
    return {"documents": 2}


def markers_of(out) -> str:
    """The task marker folder of the stage folder `out`: JOB/_meta/<folder>/_tasks."""
    job, folder = str(out).rstrip("/").rsplit("/", 1)
    return storage.join(jobdir.meta_path(job, folder), "_tasks")


def finish_tasks(out: str, n: int = N) -> None:
    """Every task's output and marker (in the folder's bookkeeping folder JOB/_meta/<folder>/), as a worker writes them."""
    for i in range(n):
        url = storage.join(out, f"part-{i:03d}.parquet")
        parallel._run_and_mark(write_part, {"i": i, "output": url}, storage.join(markers_of(out), f"t{i:03d}.json"),
                               [url])


def run_until_ray(job: str, n: int = N) -> None:
    """`run_stage` with no finished task: everything the driver does before the first task is submitted."""
    original = ray_runtime.init_ray

    def stop(*_a, **_k):
        raise Stop

    ray_runtime.init_ray = stop
    try:
        with pytest.raises(Stop):
            runner.run_stage(ManyTasks(job, n), runner.RunOptions(progress=False))
    finally:
        ray_runtime.init_ray = original


class Requests:
    """S3 requests by operation (HeadObject, GetObject, ListObjectsV2, ...)."""

    def __init__(self, url: str):
        import fsspec.asyn

        fs, _ = storage.get_fs(url)
        fsspec.asyn.sync(fs.loop, fs.set_session)
        self.client = fs.s3
        self.counts: collections.Counter = collections.Counter()
        self.client.meta.events.register("before-send.s3", self._count)

    def _count(self, **kwargs):
        self.counts[kwargs.get("event_name", "").rsplit(".", 1)[-1]] += 1

    def take(self) -> collections.Counter:
        counts, self.counts = self.counts, collections.Counter()
        return counts

    def close(self) -> None:
        self.client.meta.events.unregister("before-send.s3", self._count)


@pytest.fixture
def requests(s3_bucket):
    counter = Requests(f"s3://{s3_bucket}/job")
    yield counter
    counter.close()


def test_on_s3_a_phase_starts_and_completes_without_a_request_per_task(s3_bucket, requests):
    run_until_ray(f"s3://{s3_bucket}/first", 1)  # once-per-process costs (the lock's probe of the bucket)
    requests.take()
    small = f"s3://{s3_bucket}/small"
    run_until_ray(small, 5)
    few = requests.take()
    job = f"s3://{s3_bucket}/job"
    run_until_ray(job)
    fresh = requests.take()
    # before: a HEAD (+ a LIST) per absent marker, i.e. >= N requests before the first task
    assert sum(fresh.values()) == sum(few.values()), (few, fresh)

    finish_tasks(f"{job}/many")  # the workers finish every task; the driver died before completion
    requests.take()
    result = runner.run_stage(ManyTasks(job), runner.RunOptions(progress=False))
    resumed = requests.take()
    assert result.status == "resumed" and result.section["files"] == N
    # one GET per marker that exists (the task's result comes from it), no HEAD or GET per
    # output: outputs are checked against a listing, and the manifest comes from the markers
    assert resumed["GetObject"] <= N + 5, resumed
    # (12: the bookkeeping folder JOB/_meta/many/ is listed apart from the output folder, two checks more)
    assert resumed["HeadObject"] <= 12, resumed
    success = storage.read_json(f"{job}/_meta/many/_SUCCESS")
    assert len(success["outputs"]) == N
    assert all(r["rows"] == 2 and r["size"] > 0 and r["etag"] for r in success["outputs"].values())

    again = runner.run_stage(ManyTasks(job), runner.RunOptions(progress=False))
    assert again.status == "complete"
    assert sum(requests.take().values()) < 40


def test_on_s3_a_replaced_or_missing_output_makes_only_its_marker_stale(s3_bucket):
    out = f"s3://{s3_bucket}/job/many"
    finish_tasks(out)
    victim = f"{out}/part-007.parquet"
    data = storage.read_bytes(victim)
    storage.write_bytes_atomic(victim, data[:-1] + bytes([data[-1] ^ 1]))  # same size, other content: new ETag
    storage.remove(f"{out}/part-012.parquet")
    specs = [(f"t{i:03d}", None, (f"{out}/part-{i:03d}.parquet",), f"{markers_of(out)}/t{i:03d}.json") for i in range(N)]
    done, stale = parallel.finished_tasks(specs, markers_of(out))
    assert sorted(u.rsplit("/", 1)[-1] for u in stale) == ["t007.json", "t012.json"]
    assert len(done) == N - 2 and done["t000"]["documents"] == 2


def test_locally_completion_reads_no_output_back(tmp_path, monkeypatch):
    job = str(tmp_path / "job")
    run_until_ray(job)
    finish_tasks(os.path.join(job, "many"))
    reads = collections.Counter()
    for name in ("file_fingerprint", "read_bytes"):
        real = getattr(storage, name)

        def counted(url, *a, _real=real, _name=name, **k):
            if ".parquet" in str(url):
                reads[_name] += 1
            return _real(url, *a, **k)

        monkeypatch.setattr(storage, name, counted)
    result = runner.run_stage(ManyTasks(job), runner.RunOptions(progress=False))
    assert result.section["files"] == N
    assert not reads, f"the driver read outputs back: {dict(reads)}"
    success = json.loads(Path(job, "_meta", "many", "_SUCCESS").read_text())
    assert {r["rows"] for r in success["outputs"].values()} == {2}
    stamps = success["output_mtimes_ns"]
    assert stamps["part-003.parquet"] == os.stat(os.path.join(job, "many", "part-003.parquet")).st_mtime_ns
    assert "mtime_ns" not in success["outputs"]["part-003.parquet"], "downstream fingerprints hold content only"
    # the complete folder is checked against _SUCCESS from one listing too
    assert runner.run_stage(ManyTasks(job), runner.RunOptions(progress=False)).status == "complete"
    assert not reads


def test_what_a_resume_notices_locally_and_what_only_verify_does(tmp_path):
    job = str(tmp_path / "job")
    run_until_ray(job)
    out = os.path.join(job, "many")
    finish_tasks(out)
    assert runner.run_stage(ManyTasks(job), runner.RunOptions(progress=False)).status == "resumed"

    def stale_after(change) -> list[str]:
        change()
        specs = [(f"t{i:03d}", None, (os.path.join(out, f"part-{i:03d}.parquet"),),
                  os.path.join(markers_of(out), f"t{i:03d}.json")) for i in range(N)]
        plain = parallel.finished_tasks(specs, markers_of(out))[1]
        verified = parallel.finished_tasks(specs, markers_of(out), verify=True)[1]
        return [os.path.basename(u) for u in plain], [os.path.basename(u) for u in verified]

    target = os.path.join(out, "part-005.parquet")
    whole = Path(target).read_bytes()
    before = os.stat(target)

    def same_size_edit():
        time.sleep(0.02)
        damaged = bytearray(whole)
        damaged[len(damaged) // 2] ^= 0xFF
        Path(target).write_bytes(bytes(damaged))

    assert stale_after(same_size_edit) == (["t005.json"], ["t005.json"])  # the mtime changed

    def edit_and_restore_time():
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    # the documented limit: an edit that restores the old mtime is only seen by --verify
    assert stale_after(edit_and_restore_time) == ([], ["t005.json"])
    books = jobdir.meta_path(job, "many")
    assert not runner._complete_and_valid(out, books, ManyTasks(job).plan(ManyTasks(job).resolve_inputs(), out),
                                          verify=True)
    assert runner._complete_and_valid(out, books, ManyTasks(job).plan(ManyTasks(job).resolve_inputs(), out))

    Path(target).write_bytes(whole)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    Path(out, "part-009.parquet").unlink()
    Path(out, "part-011.parquet").write_bytes(b"x")
    assert stale_after(lambda: None) == (["t009.json", "t011.json"], ["t009.json", "t011.json"])


def test_a_marker_of_an_older_shammie_is_checked_by_checksum(tmp_path):
    out = tmp_path / "many"
    finish_tasks(str(out), n=2)
    marker_url = Path(markers_of(out)) / "t000.json"
    marker = json.loads(marker_url.read_text())
    old = {"documents": 2, "_outputs": {name: {k: v for k, v in fp.items() if k in ("size", "xxh3")}
                                         for name, fp in marker["_outputs"].items()}}
    marker_url.write_text(json.dumps(old))
    specs = [(f"t{i:03d}", None, (str(out / f"part-{i:03d}.parquet"),), str(Path(markers_of(out)) / f"t{i:03d}.json"))
             for i in range(2)]
    os.utime(out / "part-000.parquet", ns=(1, 1))  # an old marker knows no time: only the checksum counts
    done, stale = parallel.finished_tasks(specs, markers_of(out))
    assert set(done) == {"t000", "t001"} and not stale
    (out / "part-000.parquet").write_bytes(b"y" * (out / "part-000.parquet").stat().st_size)
    done, stale = parallel.finished_tasks(specs, markers_of(out))
    assert set(done) == {"t001"} and [os.path.basename(u) for u in stale] == ["t000.json"]


@pytest.fixture(scope="module")
def example_warcs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("warcs") / "warc"
    runpy.run_path(str(REPO / "examples" / "make_example_warcs.py"))["write_example_warcs"](str(folder), 2)
    return folder


def test_a_crawl_resumed_with_verify_redoes_an_edit_that_kept_its_time(tmp_path, ray_session, example_warcs):
    from shammie.jobs.cli import main

    job = tmp_path / "job"
    assert main(["crawl", str(example_warcs), "--output", str(job), "--no-progress", "--workers", "2"]) == 0
    target = sorted((job / "documents").glob("*.parquet"))[0]
    whole, stat = target.read_bytes(), target.stat()
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    target.write_bytes(bytes(damaged))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert main(["crawl", str(example_warcs), "--output", str(job), "--no-progress", "--workers", "2"]) == 0
    assert target.read_bytes() == bytes(damaged), "documented: without --verify an edit that kept its mtime stays"
    assert main(["crawl", str(example_warcs), "--output", str(job), "--no-progress", "--workers", "2",
                 "--verify"]) == 0
    assert target.read_bytes() == whole
