"""`shammie shard` re-runs as a user makes them (through the CLI): --overwrite with changed settings,
a store elsewhere (--store OTHER) and a --store folder that is not a store (issue 21, item 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shammie.jobs.cli import main
from shammie.mixing.store import open_store
from shammie.mixing.store_testing import synthetic_documents, write_job
from shammie.pipeline import jobdir

FAST = ["--no-progress", "--tokenizer-sample-mb", "1"]


def _job(tmp_path: Path, n: int = 120) -> Path:
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(n, seed=4)])
    return job


def _shard(*args: str) -> int:
    return main(["shard", *map(str, args), *FAST])


def _manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def test_overwrite_with_changed_settings_rebuilds_whole_and_atomically(tmp_path, capsys):
    job = _job(tmp_path)
    assert _shard(job, "--group-by", "site", "--train-tokenizer", 400) == 0
    store = job / "store"
    site = _manifest(store)
    reader = open_store(str(store))                      # a trainer reading the site build
    first = {d: reader.document(d, 0) for d in reader.domains}
    capsys.readouterr()

    # Changed settings without --overwrite: refused, nothing touched.
    assert _shard(job, "--group-by", "language") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _manifest(store) == site

    assert _shard(job, "--group-by", "language", "--overwrite") == 0
    out = capsys.readouterr().out
    assert "group-by language" in out
    language = _manifest(store)
    assert language["group_by"] == "language" and language["build_id"] != site["build_id"]
    assert set(language["domains"]) == {"en", "de", "fr", "es"}
    assert language["documents"] == site["documents"] == 120
    # Whole: every shard of the new manifest belongs to the new build, none is reused from the old.
    assert all(f["path"].split("/")[-1].startswith(language["build_id"])
               for e in language["domains"].values() for s in e["shards"] for f in s["files"].values())
    assert jobdir.read_stats(str(job))["shard"]["group_by"] == "language"
    # Atomic: the reader opened before the overwrite still reads the site build, unchanged.
    assert {d: reader.document(d, 0) for d in reader.domains} == first
    assert open_store(str(store)).domains == ["de", "en", "es", "fr"]


def test_overwrite_with_the_same_settings_makes_a_fresh_build(tmp_path, capsys):
    job = _job(tmp_path)
    assert _shard(job, "--group-by", "language", "--train-tokenizer", 400) == 0
    before = _manifest(job / "store")
    assert _shard(job, "--group-by", "language", "--train-tokenizer", 400) == 0   # up to date: nothing to do
    assert _manifest(job / "store")["build_id"] == before["build_id"]
    assert _shard(job, "--group-by", "language", "--train-tokenizer", 400, "--overwrite") == 0
    after = _manifest(job / "store")
    assert after["build_id"] != before["build_id"]
    assert {d: e["documents"] for d, e in after["domains"].items()} == \
        {d: e["documents"] for d, e in before["domains"].items()}
    assert open_store(str(job / "store"), build_id=before["build_id"]).verify() > 0   # kept for pinned readers


def test_store_elsewhere_keeps_its_own_stats_and_leaves_the_jobs_alone(tmp_path, capsys):
    job = _job(tmp_path)
    other = tmp_path / "other"
    assert _shard(job, "--group-by", "site", "--train-tokenizer", 400) == 0
    own = jobdir.read_stats(str(job))["shard"]
    assert own["store"] == "store" and own["group_by"] == "site"   # relative to the job: it may move

    assert _shard(job, "--store", other, "--group-by", "language", "--train-tokenizer", 400) == 0
    section = jobdir.read_stats(str(job))["shard"]
    # The job's stats.json still describes the job's own store.
    assert section["store"] == "store" and section["group_by"] == "site"
    assert section["build_id"] == _manifest(job / "store")["build_id"]
    # The other store keeps its stats itself.
    theirs = json.loads((other / "_SUCCESS").read_text())["stats"]
    assert theirs["store"] == str(other) and theirs["group_by"] == "language"
    assert theirs["build_id"] == _manifest(other)["build_id"]
    capsys.readouterr()

    # A re-run of the complete other store describes that store, not the job's.
    assert _shard(job, "--store", other, "--group-by", "language", "--train-tokenizer", 400) == 0
    out = capsys.readouterr().out
    assert f"store {other}:" in out and "group-by language" in out
    assert jobdir.read_stats(str(job))["shard"]["group_by"] == "site"


@pytest.mark.parametrize("content", ["file", "folder"])
def test_store_into_a_folder_that_is_not_a_store_is_refused_before_any_work(tmp_path, capsys, content):
    job = _job(tmp_path, 40)
    docs = tmp_path / "docs"
    docs.mkdir()
    if content == "file":
        (docs / "README.md").write_text("my notes\n")
    else:
        (docs / "drafts").mkdir()
        (docs / "drafts" / "a.txt").write_text("a\n")
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert _shard(job, "--store", docs) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a shard store" in err and str(docs) in err
    assert "Traceback" not in err
    after = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert after == before, "nothing was written anywhere (no lock, no record, no store file)"
    # An empty folder and an existing store are fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _shard(job, "--store", empty, "--group-by", "language", "--train-tokenizer", 400) == 0
    assert _shard(job, "--store", empty, "--group-by", "language", "--train-tokenizer", 400) == 0
    assert open_store(str(empty)).verify() > 0


def test_python_api_refuses_a_folder_that_is_not_a_store(tmp_path):
    from shammie.mixing.store import build_store
    from shammie.mixing.store_format import StoreError

    job = _job(tmp_path, 20)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not a shard store"):
        build_store(str(job), str(docs), group_by="language", train_tokenizer=400, progress=False,
                    tokenizer_sample_bytes=500_000)
    assert sorted(p.name for p in docs.iterdir()) == ["notes.txt"]


def test_a_moved_job_names_its_store_where_it_is_now(tmp_path, capsys):
    """stats.json records the job's store relative to the job, so a moved or copied job's `shard` (here
    found complete) prints the store's real path, not the old one."""
    job = _job(tmp_path)
    assert _shard(job, "--group-by", "site", "--train-tokenizer", 400) == 0
    moved = tmp_path / "moved"
    shutil.move(str(job), str(moved))
    capsys.readouterr()
    assert _shard(moved, "--group-by", "site", "--train-tokenizer", 400) == 0
    out = capsys.readouterr().out
    assert f"store {moved / 'store'}:" in out and str(job) + "/" not in out
    assert jobdir.read_stats(str(moved))["shard"]["store"] == "store"
    assert str(job) not in json.dumps(jobdir.read_stats(str(moved))["shard"])


def test_the_trained_tokenizers_source_says_the_bytes_it_was_trained_on(tmp_path):
    """The source names the bytes actually read (the whole of a small job), not the sample cap."""
    import pyarrow.parquet as pq

    job = _job(tmp_path)
    text = sum(len(t.encode("utf-8")) for f in sorted((job / "scored").glob("*.parquet"))
               for t in pq.read_table(f, columns=["text"]).column("text").to_pylist())
    assert _shard(job, "--group-by", "site", "--train-tokenizer", 400) == 0   # cap: 1 MB (FAST)
    source = _manifest(job / "store")["tokenizer"]["source"]
    assert 0 < text < 1_000_000
    assert source.startswith(f"trained bpe 400 on {text} bytes of the input"), source
    assert jobdir.read_stats(str(job))["shard"]["tokenizer"]["source"] == source
