"""Rehydration counts and incremental dedup, checked against a from-scratch run of all snapshots:
any spelling of a job's path counts alike, short documents are found in earlier jobs, and the
per-snapshot statistics add up to the totals."""

from __future__ import annotations

import json
import os

import pytest

from shammie.dedup import history
from shammie.dedup.signatures import string_hash
from shammie.jobs.cli import main
from shammie.pipeline.errors import InputError
from test_dedup_history import near
from test_stage_runner import ids_of, seed_documents, words

A, B, C, E = words(501), words(502), words(503), words(504)
SHORT, SHORT2 = "Only four words here", "two words"
OLD = {"a-old.parquet": [("A", A, "S1"), ("A2", near(A, 11), "S1"), ("B", B, "S1"), ("s1", SHORT, "S1"),
                         ("s2", SHORT.upper() + "!", "S1"), ("t1", SHORT2, "S1"), ("C", C, "S1")]}
NEW = {"b-new.parquet": [("A3", near(A, 12), "S2"), ("A4", A, "S2"), ("B2", near(B, 13), "S2"),
                         ("s3", SHORT, "S2"), ("t2", SHORT2 + ".", "S2"), ("E", E, "S2"), ("E2", near(E, 14), "S2")]}


def dedup(*args: str) -> int:
    return main(["dedup", *args, "--no-progress"])


@pytest.fixture
def snapshots(tmp_path, ray_session, monkeypatch):
    """old (with --keep-index), new deduplicated --against it by a RELATIVE path, and the reference:
    both snapshots deduplicated together from scratch (old's files first)."""
    old, new, together = tmp_path / "old", tmp_path / "new", tmp_path / "together"
    seed_documents(old, OLD)
    seed_documents(new, NEW)
    seed_documents(together, {**OLD, **NEW})
    assert dedup(str(old), "--keep-index") == 0
    monkeypatch.chdir(tmp_path)
    assert dedup("new", "--against", "old", "--keep-index") == 0
    assert dedup(str(together), "--across-snapshots", "--keep-index") == 0
    return old, new, together


def counts_by_id(job, later=()) -> dict[str, int]:
    idhash, copies = history.rehydration_counts(job, list(later))
    return dict(zip(idhash.tolist(), copies.tolist()))


def test_incremental_run_keeps_what_a_run_from_scratch_keeps_short_documents_included(snapshots):
    old, new, together = snapshots
    new_ids = {i for _, i, _ in [(None, r[0], None) for r in NEW["b-new.parquet"]]}
    assert ids_of(new / "deduped") == [i for i in ids_of(together / "deduped") if i in new_ids] == ["E"]
    stats = json.loads((new / "stats.json").read_text())["dedup"]
    # s3 (4 words) and t2 (2 words) have no band keys: only the exact index finds their earlier copies
    assert stats["removed"] == 6 and stats["against_removed"] == 4  # clusters of A, B, s1 and t1 (4 kept ones)


def test_rehydration_counts_equal_with_any_path_spelling_and_the_from_scratch_cluster_sizes(snapshots, tmp_path):
    old, new, together = snapshots
    reference = counts_by_id(str(together))
    relative = counts_by_id("old", ["new"])
    absolute = counts_by_id(str(old), [str(new)])
    spelled = counts_by_id(f"{tmp_path}/./old/", [f"{tmp_path}/new/../new"])
    assert relative == absolute == spelled
    kept_old = {string_hash(i): i for i in ids_of(old / "deduped")}
    assert {kept_old[h]: n for h, n in absolute.items()} == {"A": 4, "B": 2, "s1": 3, "t1": 2, "C": 1}
    assert {kept_old[h]: reference[h] for h in absolute} == {kept_old[h]: n for h, n in absolute.items()}
    assert sum(absolute.values()) == sum(reference[h] for h in absolute) == 12
    # the earlier job is named by its id, never by the path it was given
    info = json.loads((new / "_meta" / "deduped" / "index" / "index.json").read_text())
    assert info["against"][0]["job"] == str(old)
    assert info["against"][0]["job_id"] == json.loads((old / "_meta" / "deduped" / "index" / "index.json").read_text())["job_id"]


def test_a_later_job_not_deduplicated_against_the_job_is_an_error_not_a_silent_zero(snapshots):
    old, new, together = snapshots
    with pytest.raises(InputError, match="was not deduplicated --against"):
        history.rehydration_counts(str(old), [str(together)])


def test_per_snapshot_statistics_add_up_to_the_totals_with_against(snapshots, capsys):
    old, new, together = snapshots
    stats = json.loads((new / "stats.json").read_text())["dedup"]
    (name, snap), = stats["per_snapshot"].items()
    for key in ("documents_in", "removed", "exact_removed", "near_removed", "against_removed", "kept"):
        assert snap[key] == stats[key], key
    capsys.readouterr()
    assert dedup(str(new), "--against", str(old), "--keep-index") == 0  # already complete: prints its summary
    out = capsys.readouterr().out
    assert f"  {name}: 7 in" in out and "6 removed, 1 kept" in out, out


def test_shard_rehydrate_repeats_documents_by_their_cluster_size_as_fineweb2(tmp_path, ray_session):
    """dedup writes each kept document's cluster size (FineWeb-2's minhash_cluster_size); shard
    --rehydrate repeats it by FineWeb-2's weights (1 -> 1, 2 -> 2, 3-4 -> 3, 5-99 -> 5)."""
    import pyarrow.parquet as pq

    from shammie.mixing.store import open_store

    X, Y, Z = words(601), words(602), words(603)
    files = {"a.parquet": [(f"u{i}", words(610 + i), "S1") for i in range(10)] + [("x1", X, "S1"), ("y1", Y, "S1"),
                                                                                   ("z1", Z, "S1")],
             "b.parquet": [("x2", near(X, 21), "S1"), ("y2", Y, "S1"), ("y3", near(Y, 22), "S1")]
             + [(f"z{i}", near(Z, 30 + i) if i % 2 else Z, "S1") for i in range(2, 6)]}
    job = tmp_path / "job"
    seed_documents(job, files)
    assert dedup(str(job)) == 0
    sizes = {}
    for f in sorted((job / "deduped").glob("*.parquet")):
        t = pq.read_table(f, columns=["id", "minhash_cluster_size"]).to_pydict()
        sizes.update(zip(t["id"], t["minhash_cluster_size"]))
    assert {k: v for k, v in sizes.items() if v > 1} == {"x1": 2, "y1": 3, "z1": 5} and len(sizes) == 13
    common = ["--group-by", "language", "--train-tokenizer", "400", "--no-progress", "--tokenizer-sample-mb", "1"]
    assert main(["shard", str(job), "--store", str(tmp_path / "plain"), *common]) == 0
    assert main(["shard", str(job), "--store", str(tmp_path / "rehydrated"), "--rehydrate", *common]) == 0
    plain, rehydrated = open_store(str(tmp_path / "plain")), open_store(str(tmp_path / "rehydrated"))
    assert plain.manifest["domains"]["en"]["documents"] == 13
    assert rehydrated.manifest["domains"]["en"]["documents"] == 10 + 2 + 3 + 5
