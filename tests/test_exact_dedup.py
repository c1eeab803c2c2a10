"""Exact-duplicate removal, the short stage written on the stage runner."""

from __future__ import annotations

import json

from shammie.jobs.cli import main
from test_stage_runner import ids_of, seed_documents, words


def test_exact_copies_go_near_misses_stay_per_snapshot(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    base = words(7)
    seed_documents(job, {
        "a.parquet": [("a1", base, "S1"), ("a2", base.upper() + " !!", "S1"), ("a3", words(8), "S1")],
        "b.parquet": [("b1", "  " + base.replace(" ", "   "), "S1"),   # same words, other spacing
                      ("b2", base + " extra", "S1"),                   # a near miss: kept
                      ("b3", base, "S2")],                             # another snapshot: kept
    })
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    assert ids_of(job / "exact-deduped") == ["a1", "a3", "b2", "b3"]
    assert "2 exact duplicates removed" in capsys.readouterr().out
    stats = json.loads((job / "stats.json").read_text())["exact_dedup"]
    assert (stats["documents_in"], stats["removed"], stats["kept"]) == (6, 2, 4)
    # MinHash dedup then reads exact-deduped/
    assert main(["dedup", str(job), "--no-progress"]) == 0
    assert json.loads((job / "stats.json").read_text())["dedup"]["input_stage"] == "exact-deduped"


def test_across_snapshots_keeps_one_copy_in_all(tmp_path, ray_session):
    job = tmp_path / "job"
    base = words(9)
    seed_documents(job, {"a.parquet": [("a1", base, "S1")], "b.parquet": [("b1", base, "S2")]})
    assert main(["exact-dedup", str(job), "--across-snapshots", "--no-progress"]) == 0
    assert ids_of(job / "exact-deduped") == ["a1"]


def test_dedup_removes_exact_copies_first_and_keeps_the_same_set_as_minhash_alone(tmp_path, ray_session):
    base, other = words(11), words(12)
    files = {"a.parquet": [("a1", base, "S1"), ("a2", other, "S1"), ("a3", base.upper(), "S1")],
             "b.parquet": [("b1", base + ".", "S1"), ("b2", other + " and " + words(13, 3), "S1"),
                           ("b3", words(14), "S1")]}
    results = {}
    for exact in (True, False):
        job = tmp_path / f"job-{exact}"
        seed_documents(job, files)
        args = ["dedup", str(job), "--no-progress"] + ([] if exact else ["--no-exact"])
        assert main(args) == 0
        results[exact] = (ids_of(job / "deduped"), json.loads((job / "stats.json").read_text())["dedup"])
    (ids_exact, with_exact), (ids_minhash, without) = results[True], results[False]
    assert ids_exact == ids_minhash == ["a1", "a2", "b3"]
    assert (with_exact["exact_removed"], with_exact["near_removed"]) == (2, 1)  # a3, b1 exact; b2 near
    assert (without["exact_removed"], without["near_removed"]) == (0, 3)
    assert with_exact["cluster_sizes"] == without["cluster_sizes"] == {"2": 1, "3": 1}
    assert with_exact["per_snapshot"]["S1"]["exact_removed"] == 2


def test_progress_bars_number_every_phase_and_say_what_they_count(tmp_path, ray_session, capsys):
    """dedup (--exact by default) numbers all six phases, the exact passes included; the buckets bar counts
    band keys (one per document and band, not documents), the clusters bar the documents in clusters (not
    "0 docs"), the filter bar the documents read; exact-dedup numbers its three phases."""
    import re

    job = tmp_path / "job"
    base = words(11)
    seed_documents(job, {"a.parquet": [("a1", base, "S1"), ("a2", base.upper(), "S1"), ("a3", words(12), "S1")],
                         "b.parquet": [("b1", base + ".", "S1"), ("b2", words(13), "S1"), ("b3", words(14), "S1")]})
    assert main(["dedup", str(job)]) == 0
    err = capsys.readouterr().err

    def last(label: str) -> str:
        lines = [line for line in re.split(r"[\r\n]", err) if line.startswith(label)]
        assert lines, f"no progress bar {label!r} in:\n{err}"
        return lines[-1]

    for n, step in enumerate(["exact hash", "exact copies", "signatures", "buckets", "clusters", "filter"], 1):
        last(f"dedup {n}/6 {step}")
    bands = json.loads((job / "stats.json").read_text())["dedup"]["params"]["bands"]
    assert re.search(r"\b(\d+) band keys", last("dedup 4/6 buckets")).group(1) == str(4 * bands)  # a2, b1: exact copies
    assert " 0 docs" not in last("dedup 5/6 clusters") and "docs in clusters" in last("dedup 5/6 clusters")
    assert "6 docs read," in last("dedup 6/6 filter")   # the documents read (it drops the copies)
    assert "task/s" in last("dedup 4/6 buckets") and "file/s" not in last("dedup 4/6 buckets")  # bands, not files
    assert not re.search(r"dedup \d/4", err) and "exact duplicates:" not in err

    job2 = tmp_path / "job2"
    seed_documents(job2, {"a.parquet": [("a1", base, "S1"), ("a2", base, "S1")]})
    assert main(["exact-dedup", str(job2)]) == 0
    err = capsys.readouterr().err
    for n, step in enumerate(["exact hash", "exact copies", "filter"], 1):
        assert f"exact dedup {n}/3 {step}" in err, err


def test_a_complete_stage_says_its_summary_is_the_recorded_one(tmp_path, ray_session, capsys):
    """A re-run that finds the output complete does nothing; the summary it prints (with the old timing)
    is marked as the one recorded when the output was built, even with --no-progress."""
    job = tmp_path / "job"
    seed_documents(job, {"a.parquet": [("a1", words(7), "S1"), ("a2", words(7), "S1")]})
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "already complete" not in first and "1 exact duplicates removed" in first
    built = json.loads((job / "_meta" / "exact-deduped" / "_SUCCESS").read_text())["finished_at"]
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    again = capsys.readouterr().out
    assert again.startswith(f"already complete (built {built}), recorded summary: "), again
    assert first.strip() in again   # the same summary, old timing and all, now said to be the recorded one


def test_the_line_counts_docs_job_directory_gives_for_the_exact_stage_are_true():
    """docs/job-directory.md quotes the size of the exact-dedup stage as an example of a stage on the runner."""
    import inspect
    import re
    from pathlib import Path

    from shammie.dedup.exact import ExactDedupStage, ExactPass

    doc = " ".join((Path(__file__).parents[1] / "docs" / "job-directory.md").read_text().split())
    stage, shared = map(int, re.search(r"`ExactDedupStage` is (\d+) lines and `ExactPass`, the two phases it "
                                       r"shares with `dedup`, (\d+);", doc).groups())
    assert stage == len(inspect.getsourcelines(ExactDedupStage)[0])
    assert shared == len(inspect.getsourcelines(ExactPass)[0])
