"""A local job folder on a Ray cluster whose nodes are on several hosts is refused by every
command that runs Ray tasks, before any work, with exit 2 and one line.

Workers write their outputs themselves: on another host a local path is that host's own
disk. The cluster here is the test session's Ray with `ray.nodes()` reporting two hosts
(a real second host cannot be had on one machine; tests/test_multinode.py runs two real
nodes, on one host, which is allowed). `--shared-filesystem` / SHAMMIE_SHARED_FS=1 declare
that every node mounts the folder at the same path.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from shammie.jobs.cli import main
from shammie.mixing.store_testing import synthetic_documents, write_job

REPO = Path(__file__).resolve().parent.parent
HOSTS = ("10.0.0.1", "10.0.0.2")


@pytest.fixture
def two_hosts(ray_session, monkeypatch):
    """The session's Ray, reporting alive nodes on two hosts (and a dead one on a third)."""
    nodes = [{"Alive": True, "NodeManagerAddress": h, "NodeID": f"n{i}"} for i, h in enumerate(HOSTS)]
    nodes.append({"Alive": False, "NodeManagerAddress": "10.0.0.3", "NodeID": "dead"})
    monkeypatch.setattr(ray_session, "nodes", lambda: nodes)
    monkeypatch.delenv("SHAMMIE_SHARED_FS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture(scope="module")
def warc(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("warcs") / "warc"
    runpy.run_path(str(REPO / "examples" / "make_example_warcs.py"))["write_example_warcs"](str(folder), 1)
    return next(folder.glob("*.warc.gz"))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny fastText models: an edu grader and a binary quality classifier (checked before the refusal)."""
    import json

    import pyarrow as pa

    from shammie.filters import classify, edu
    from shammie.filters.edu_fasttext import FastTextParams
    from shammie.filters.edu_synthetic import graded_corpus
    from shammie.pipeline import documents

    folder = tmp_path_factory.mktemp("models")
    small = FastTextParams(bucket=20_000, dim=16, thread=1, seed=0)
    texts, levels = graded_corpus(200, seed=0)
    documents.write_table(pa.table({"text": texts, "score": pa.array(levels, pa.int8())}), str(folder / "ann.parquet"))
    edu.train([str(folder / "ann.parquet")], str(folder / "edu.bin"), holdout=0.2, params=small)
    with open(folder / "labels.jsonl", "w") as f:
        for text, level in zip(texts, levels):
            f.write(json.dumps({"text": text, "label": int(level >= 3)}) + "\n")
    classify.train([str(folder / "labels.jsonl")], str(folder / "quality.bin"), cv=0, params=small)
    return {"edu": folder / "edu.bin", "quality": folder / "quality.bin"}


@pytest.fixture
def jobs(tmp_path, models) -> dict[str, Path]:
    """A job with a complete documents/ folder, one with a complete scored/ folder, a benchmark
    file and the models."""
    documents, scored = tmp_path / "job", tmp_path / "scored-job"
    write_job(str(documents), [synthetic_documents(20, seed=1, scores=False)], stage="documents")
    write_job(str(scored), [synthetic_documents(20, seed=2)], stage="scored")
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"text": "an item of a benchmark that no document of this little job holds at all, not even in part"}\n')
    config = tmp_path / "job.yaml"
    return {"documents": documents, "scored": scored, "bench": bench, "config": config, "new": tmp_path / "new-job",
            **models}


def tree(*roots: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for root in roots if root.exists() for p in sorted(root.rglob("*"))}


COMMANDS = {
    "crawl": lambda j, w: ["crawl", str(w), "--output", str(j["new"])],
    "exact-dedup": lambda j, w: ["exact-dedup", str(j["documents"])],
    "dedup": lambda j, w: ["dedup", str(j["documents"])],
    "decontaminate": lambda j, w: ["decontaminate", str(j["documents"]), "--against", str(j["bench"])],
    "edu score": lambda j, w: ["edu", "score", str(j["documents"]), "--model", str(j["edu"])],
    "edu subset": lambda j, w: ["edu", "subset", str(j["scored"]), "--threshold", "2"],
    "classify score": lambda j, w: ["classify", "score", str(j["documents"]), "--model", str(j["quality"])],
    "shard": lambda j, w: ["shard", str(j["documents"]), "--store", str(j["documents"] / "store"),
                           "--group-by", "site", "--train-tokenizer", "400"],
    "run": lambda j, w: ["run", str(j["config"])],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_local_job_on_a_multi_host_cluster(command, jobs, warc, two_hosts, capsys):
    jobs["config"].write_text(f"name: refused\ninput: [{warc}]\noutput: {jobs['new']}\n"
                              "dedup: {enabled: false}\nedu: {enabled: false}\nshard: {enabled: false}\n")
    before = tree(jobs["documents"], jobs["scored"])
    assert main([*COMMANDS[command](jobs, warc), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "is a local path but the Ray cluster spans 2 hosts" in err, err
    assert "--shared-filesystem" in err and "s3://" in err, err
    assert tree(jobs["documents"], jobs["scored"]) == before, "the refused command wrote into the job"
    assert not jobs["new"].exists(), "the refused command created the job folder"


def test_a_declared_shared_filesystem_is_accepted(jobs, warc, two_hosts, capsys):
    assert main(["crawl", str(warc), "--output", str(jobs["new"]), "--shared-filesystem", "--no-progress",
                 "--workers", "2"]) == 0
    assert (jobs["new"] / "_meta" / "documents" / "_SUCCESS").exists()


def test_a_local_store_of_a_job_on_s3_is_refused_too(tmp_path, jobs, two_hosts, s3_bucket, capsys):
    """The job is seen by every node, the store it would write is not."""
    import os

    import fsspec

    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    fs.put(str(jobs["documents"] / "documents"), f"{s3_bucket}/job/documents", recursive=True)
    fs.put(str(jobs["documents"] / "_meta"), f"{s3_bucket}/job/_meta", recursive=True)  # its _SUCCESS
    store = tmp_path / "store"
    assert main(["shard", f"s3://{s3_bucket}/job", "--store", str(store), "--group-by", "site",
                 "--train-tokenizer", "400", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{store} is a local path but the Ray cluster spans 2 hosts" in err and len(err.splitlines()) == 1, err
    assert not store.exists()


def test_the_environment_variable_declares_it_too(tmp_path, two_hosts, monkeypatch):
    from shammie.pipeline.errors import InputError
    from shammie.pipeline.ray_runtime import check_job_location

    with pytest.raises(InputError, match="spans 2 hosts"):
        check_job_location(str(tmp_path))
    check_job_location("s3://bucket/job")  # an object store is seen by every node
    monkeypatch.setenv("SHAMMIE_SHARED_FS", "1")
    check_job_location(str(tmp_path))


def test_one_host_is_fine_whatever_the_number_of_nodes(tmp_path, ray_session, monkeypatch):
    from shammie.pipeline.ray_runtime import check_job_location

    monkeypatch.delenv("SHAMMIE_SHARED_FS", raising=False)
    monkeypatch.setattr(ray_session, "nodes", lambda: [{"Alive": True, "NodeManagerAddress": "127.0.0.1"}] * 2)
    check_job_location(str(tmp_path))
