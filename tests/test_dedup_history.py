"""Incremental snapshots: `dedup --against` earlier jobs' saved band indexes."""

from __future__ import annotations

import json

import numpy as np

from shammie.dedup import history
from shammie.dedup.signatures import string_hash
from shammie.jobs.cli import main
from test_stage_runner import ids_of, one_line_error, seed_documents, words


def near(text: str, seed: int) -> str:
    """The same text with one word changed: a MinHash duplicate, not an exact one."""
    parts = text.split()
    parts[len(parts) // 2] = words(seed, 1)
    return " ".join(parts)


A, B, C, D = words(101), words(102), words(103), words(104)
OLD = {"a-old.parquet": [("A", A, "S1"), ("B", B, "S1"), ("A2", near(A, 7), "S1"), ("C", C, "S1")]}
NEW = {"b-new.parquet": [("A3", near(A, 8), "S2"), ("B2", B, "S2"), ("D", D, "S2"), ("D2", near(D, 9), "S2")]}


def dedup(*args: str) -> int:
    return main(["dedup", *args, "--no-progress"])


def test_a_new_snapshot_is_deduplicated_against_the_earlier_index_without_recomputing_it(tmp_path, ray_session):
    old, new = tmp_path / "old", tmp_path / "new"
    seed_documents(old, OLD)
    seed_documents(new, NEW)
    assert dedup(str(old), "--keep-index") == 0
    index_files = {p: p.stat().st_mtime_ns for p in (old / "_meta" / "deduped" / "index").rglob("*")}
    assert dedup(str(new), "--against", str(old)) == 0
    assert ids_of(new / "deduped") == ["D"]
    stats = json.loads((new / "stats.json").read_text())["dedup"]
    assert (stats["against_removed"], stats["exact_removed"], stats["near_removed"]) == (2, 0, 1)
    assert stats["against"] == [{"job": str(old), "removed": 2}]
    # the earlier job was only read
    assert {p: p.stat().st_mtime_ns for p in (old / "_meta" / "deduped" / "index").rglob("*")} == index_files

    # The same kept set as deduplicating both snapshots together from scratch (files in name order: old first).
    together = tmp_path / "together"
    seed_documents(together, {**OLD, **NEW})
    assert dedup(str(together), "--across-snapshots") == 0
    assert [i for i in ids_of(together / "deduped") if i in {"A3", "B2", "D", "D2"}] == ids_of(new / "deduped")

    # Rehydration counts: copies in the job itself plus those later jobs found.
    idhash, copies = history.rehydration_counts(str(old), [str(new)])
    by_id = dict(zip(idhash.tolist(), copies.tolist()))
    assert [by_id[string_hash(i)] for i in ("A", "B", "C")] == [3, 2, 1]


def test_a_chain_of_snapshots_grows_one_index_at_a_time(tmp_path, ray_session):
    jobs = []
    for k in range(3):
        job = tmp_path / f"s{k}"
        rows = [(f"s{k}-x", words(200 + k), f"S{k}"), (f"s{k}-A", near(A, 20 + k), f"S{k}")]
        seed_documents(job, {"p.parquet": rows})
        assert dedup(str(job), "--keep-index", *[a for j in jobs for a in ("--against", str(j))]) == 0
        jobs.append(job)
    assert ids_of(jobs[0] / "deduped") == ["s0-A", "s0-x"]
    assert ids_of(jobs[1] / "deduped") == ["s1-x"] and ids_of(jobs[2] / "deduped") == ["s2-x"]
    stats = json.loads((jobs[2] / "stats.json").read_text())["dedup"]
    assert [a["removed"] for a in stats["against"]] == [1, 0]  # found in the first snapshot, which keeps A
    index = jobs[2] / "_meta" / "deduped" / "index"
    info = json.loads((index / "index.json").read_text())
    # one kept document; both documents' keys are indexed (a later near-copy of the removed one is still found)
    assert info["documents"] == 1
    assert sorted(np.load(index / history.shard_name(0, 0))["doc"].tolist()) == [0, 1]
    # the removed one's cluster is rooted at the first snapshot's document (a virtual document)
    record = np.load(index / history.file_record_name(0))
    assert record["kept_rows"].tolist() == [0] and record["cluster_rows"].tolist() == [1]
    assert history.virtual_parts(record["cluster_root"])[0].tolist() == [0]


def test_mismatched_or_missing_indexes_are_refused_before_work(tmp_path, ray_session, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    seed_documents(old, OLD)
    seed_documents(new, NEW)
    assert dedup(str(new), "--against", str(old)) == 2
    assert "no dedup index" in one_line_error(capsys)
    assert dedup(str(old)) == 0
    capsys.readouterr()
    assert dedup(str(new), "--against", str(old)) == 2
    assert "without --keep-index" in one_line_error(capsys)
    assert dedup(str(old), "--keep-index", "--overwrite") == 0
    capsys.readouterr()
    assert dedup(str(new), "--against", str(old), "--threshold", "0.8") == 2
    assert "other MinHash settings" in one_line_error(capsys)
    assert not (new / "deduped").exists()
    # an earlier job re-deduplicated since: the new job's result is refused, not silently kept
    assert dedup(str(new), "--against", str(old)) == 0
    seed_documents(old, {**OLD, "c.parquet": [("E", words(105), "S1")]})  # the earlier job got a new file
    assert dedup(str(old), "--keep-index", "--overwrite") == 0
    capsys.readouterr()
    assert dedup(str(new), "--against", str(old)) == 2
    assert "settings changed (against" in one_line_error(capsys)
