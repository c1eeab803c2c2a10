"""MinHash dedup: normalisation, signatures, union-find, and the four Ray stages end to end."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import dedup_killed_before_clusters
from shammie.dedup import minhash
from shammie.dedup.signatures import (MinHasher, MinhashParams, estimated_jaccard, normalise_words,
                                      shingle_hashes)
from shammie.pipeline import documents, jobdir
from shammie.pipeline.errors import ShammieError, StageRefused

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def make_vocab(n: int, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return sorted({"".join(r.choice(LETTERS) for _ in range(r.randint(3, 9))) for _ in range(n)})


VOCAB = make_vocab(20000)


def random_text(r: random.Random, words: int = 300) -> str:
    return " ".join(r.choice(VOCAB) for _ in range(words))


def alter(text: str, fraction: float, r: random.Random) -> str:
    """Replace `fraction` of the words by words that occur nowhere else."""
    words = text.split()
    for i in r.sample(range(len(words)), max(1, round(fraction * len(words)))):
        words[i] = "q" + "".join(r.choice(LETTERS) for _ in range(12))
    return " ".join(words)


def shingle_jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_hashes(normalise_words(a)).tolist()), set(shingle_hashes(normalise_words(b)).tolist())
    return len(sa & sb) / len(sa | sb)


def write_docs(job: Path, name: str, rows: list[tuple[str, str, str]]) -> None:
    """rows: (id, text, dump)."""
    n = len(rows)
    table = pa.table({
        "id": [r[0] for r in rows], "text": [r[1] for r in rows], "url": [f"http://x/{r[0]}" for r in rows],
        "dump": [r[2] for r in rows], "date": ["2024-01-01T00:00:00Z"] * n, "language": ["en"] * n,
        "language_score": [0.9] * n, "warc_file": ["x.warc.gz"] * n, "warc_offset": list(range(n)),
    }, schema=documents.DOCUMENT_SCHEMA)
    documents.write_table(table, str(job / "documents" / name))


def kept_ids(job: Path) -> dict[str, list[str]]:
    return {Path(f).name: documents.read_table(f).column("id").to_pylist()
            for f in jobdir.stage_files(str(job), "deduped")}


def planted_corpus(job: Path, seed: int = 0, originals: int = 60, copies: int = 20) -> dict:
    """Originals in a.parquet, planted near-duplicates (0.5-1% words changed, Jaccard > 0.88) and distinct
    rewrites (40% changed) in b/c.parquet, all in one snapshot."""
    r = random.Random(seed)
    base = [(f"orig-{i:03d}", random_text(r), "CC-MAIN-2024-10") for i in range(originals)]
    dups = [(f"dup-{i:03d}", alter(base[i][1], r.choice([0.005, 0.01]), r), "CC-MAIN-2024-10")
            for i in range(copies)]
    distinct = [(f"far-{i:03d}", alter(base[copies + i][1], 0.4, r), "CC-MAIN-2024-10") for i in range(10)]
    write_docs(job, "a.parquet", base)
    mixed = dups + distinct
    r.shuffle(mixed)
    write_docs(job, "b.parquet", mixed[: len(mixed) // 2])
    write_docs(job, "c.parquet", mixed[len(mixed) // 2:])
    jobdir.mark_complete(str(job), "documents")
    return {"base": base, "dups": dups, "distinct": distinct}


# ------------------------------------------------------------------ units (no Ray)

def test_normalisation_matches_fineweb_simplify_text():
    from datatrove.utils.text import simplify_text

    samples = [
        "Hello, World!  It's 3.14 or 1,000,000 -- café naïve Ångström\tTABS\nnew lines",
        "Über straße: ﬁnancial résumé — “quotes” «guillemets» 12٫5 ١٢٣ numbers",
        "Ελληνικά κείμενα με τόνους; русский текст, ёжик. 中文，标点。",
        "  leading and trailing   spaces ...  ",
    ]
    for text in samples:
        assert [w.decode() for w in normalise_words(text)] == simplify_text(text).split()


def test_signature_estimates_jaccard_like_datasketch():
    from datasketch import MinHash

    r = random.Random(3)
    hasher = MinHasher()
    ours, theirs, truth = [], [], []
    for _ in range(40):
        a = random_text(r, 400)
        b = alter(a, r.choice([0.01, 0.03, 0.08]), r)
        truth.append(shingle_jaccard(a, b))
        ours.append(estimated_jaccard(hasher.text_signature(a)[0], hasher.text_signature(b)[0]))
        m = []
        for t in (a, b):
            mh = MinHash(num_perm=112, seed=1)
            words = normalise_words(t)
            mh.update_batch([b" ".join(words[i:i + 5]) for i in range(len(words) - 4)])
            m.append(mh)
        theirs.append(m[0].jaccard(m[1]))
    truth, ours, theirs = map(np.array, (truth, ours, theirs))
    # 112 hashes: standard error sqrt(J(1-J)/112) <= 0.05; no bias beyond noise.
    assert abs(np.mean(ours - truth)) < 0.02
    assert np.mean(np.abs(ours - truth)) < 0.05
    assert np.mean(np.abs(ours - truth)) < np.mean(np.abs(theirs - truth)) + 0.02


def test_short_documents_have_no_signature():
    sig, has = MinHasher().text_signature("only four words here")
    assert not has and (sig == MinHasher.EMPTY).all()


def reference_roots(edges: np.ndarray) -> dict[int, int]:
    """Smallest member of each node's component, by a plain dict union-find."""
    parent: dict[int, int] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def test_connected_min_labels_match_reference_union_find():
    rng = np.random.default_rng(5)
    n = 2000
    edges = rng.integers(0, n, size=(1500, 2))
    batches = [edges[i:i + 100] for i in range(0, len(edges), 100)]
    label = minhash.connected_min_labels(n, lambda: iter(batches))
    roots = reference_roots(edges)
    assert label.tolist() == [roots.get(i, i) for i in range(n)]
    assert all(label[i] <= i for i in range(n))


def test_threshold_chooses_bands_with_datasketch():
    p = MinhashParams.for_threshold(0.85)
    assert p.bands * p.rows <= 112
    assert 0.75 < p.threshold < 0.95
    assert abs(MinhashParams().threshold - 0.72) < 0.01


# ------------------------------------------------------------------ stages on Ray

def test_planted_near_duplicates_removed_distinct_kept_via_cli(tmp_path, ray_session, capsys):
    from shammie.jobs.cli import main

    job = tmp_path / "job"
    corpus = planted_corpus(job)
    for (_, a, _), (_, b, _) in zip(corpus["base"], corpus["dups"]):
        assert shingle_jaccard(a, b) > 0.88
    assert main(["dedup", str(job), "--no-progress"]) == 0
    assert "20 removed" in capsys.readouterr().out
    stats = jobdir.read_stats(str(job))["dedup"]
    kept = {i for ids in kept_ids(job).values() for i in ids}
    assert not kept & {d[0] for d in corpus["dups"]}
    assert {d[0] for d in corpus["base"]} <= kept
    assert {d[0] for d in corpus["distinct"]} <= kept
    assert stats["removed"] == len(corpus["dups"]) and stats["clusters"] == len(corpus["dups"])
    assert stats["kept"] == stats["documents"] == len(corpus["base"]) + len(corpus["distinct"])
    assert stats["per_snapshot"]["CC-MAIN-2024-10"]["removed"] == 20
    assert jobdir.is_complete(str(job), "deduped")
    assert not (job / "_meta" / "deduped" / "_work").exists()
    # the input's schema plus each kept document's cluster size (FineWeb-2's minhash_cluster_size),
    # and the same file names as the input
    for f in jobdir.stage_files(str(job), "deduped"):
        schema = documents.read_table(f).schema
        assert schema.remove(schema.get_field_index("minhash_cluster_size")).equals(documents.DOCUMENT_SCHEMA)
    assert sorted(kept_ids(job)) == ["a.parquet", "b.parquet", "c.parquet"]
    # a finished job is not recomputed
    assert minhash.dedup(str(job), progress=False) == stats


def test_user_errors(tmp_path, capsys):
    from shammie.jobs.cli import main

    assert main(["dedup", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["dedup", str(empty)]) == 2
    assert "run `shammie crawl` first" in capsys.readouterr().err
    with pytest.raises(ShammieError):
        minhash.dedup(str(empty), workers=0)
    assert main(["dedup", str(empty), "--threshold", "1.5"]) == 2


def test_snapshots_deduplicated_separately_by_default(tmp_path, ray_session):
    r = random.Random(9)
    shared = random_text(r)
    rows_a = [("a-shared", shared, "CC-MAIN-2023-50"), ("a-other", random_text(r), "CC-MAIN-2023-50")]
    rows_b = [("b-shared", shared, "CC-MAIN-2024-10"), ("b-copy", alter(shared, 0.01, r), "CC-MAIN-2024-10")]
    job = tmp_path / "job"
    write_docs(job, "00.parquet", rows_a + rows_b)
    jobdir.mark_complete(str(job), "documents")

    stats = minhash.dedup(str(job), progress=False)
    assert kept_ids(job)["00.parquet"] == ["a-shared", "a-other", "b-shared"]
    counts = ("documents_in", "clusters", "removed", "kept", "exact_removed", "near_removed")
    assert [stats["per_snapshot"]["CC-MAIN-2023-50"][k] for k in counts] == [2, 0, 0, 2, 0, 0]
    assert [stats["per_snapshot"]["CC-MAIN-2024-10"][k] for k in counts] == [2, 1, 1, 1, 0, 1]

    # A different setting on the same job is refused, naming it; --overwrite recomputes.
    with pytest.raises(StageRefused, match=r"across_snapshots: false -> true"):
        minhash.dedup(str(job), across_snapshots=True, progress=False)
    assert kept_ids(job)["00.parquet"] == ["a-shared", "a-other", "b-shared"]
    stats = minhash.dedup(str(job), across_snapshots=True, overwrite=True, progress=False)
    assert kept_ids(job)["00.parquet"] == ["a-shared", "a-other"]
    assert stats["removed"] == 2 and stats["clusters"] == 1 and stats["scope"] == "across snapshots"
    assert stats["cluster_sizes"] == {"3": 1}  # one cluster of three copies, the exact one included
    assert stats["per_snapshot"]["CC-MAIN-2024-10"]["removed"] == 2
    assert (stats["exact_removed"], stats["near_removed"]) == (1, 1)  # b-shared is an exact copy of a-shared


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, ray_session):
    """A planted corpus and its clean one-worker dedup output."""
    root = tmp_path_factory.mktemp("dedup-ref")
    src = root / "src"
    planted_corpus(src, seed=4)
    clean = root / "clean"
    shutil.copytree(src, clean)
    stats = minhash.dedup(str(clean), workers=1, progress=False)
    assert stats["removed"] == 20
    return src, clean, stats


def test_same_kept_set_with_one_or_two_workers_and_any_bucket_split(tmp_path, reference_run):
    src, clean, ref = reference_run
    job = tmp_path / "job"
    shutil.copytree(src, job)
    stats = minhash.dedup(str(job), workers=2, max_bucket_docs=20, progress=False)
    assert ref["bucket_ranges_per_band"] == 1 and stats["bucket_ranges_per_band"] >= 4
    assert kept_ids(job) == kept_ids(clean)
    assert (stats["removed"], stats["clusters"]) == (ref["removed"], ref["clusters"])


def test_rerun_after_interrupted_stage_gives_identical_output(tmp_path, reference_run, monkeypatch):
    src, clean, ref = reference_run
    job = tmp_path / "job"
    shutil.copytree(src, job)
    dedup_killed_before_clusters(job, monkeypatch)
    work = job / "_meta" / "deduped" / "_work"
    # What a worker killed mid-task leaves: a temporary file and no marker.
    bucket = sorted((work / "buckets").glob("*.npy"))[0]
    (work / "buckets" / "_tasks" / (bucket.stem + ".json")).unlink()
    bucket.unlink()
    (work / "buckets" / (".tmp-killed-" + bucket.name)).write_bytes(b"\x93NUMPY truncated")
    assert not jobdir.is_complete(str(job), "deduped")

    stats = minhash.dedup(str(job), progress=False)
    assert kept_ids(job) == kept_ids(clean)
    for name in kept_ids(clean):
        a = documents.read_table(str(job / "deduped" / name))
        b = documents.read_table(str(clean / "deduped" / name))
        assert a.equals(b)
    assert stats["removed"] == ref["removed"]


def test_input_changed_after_signatures_is_an_error(tmp_path, reference_run, monkeypatch):
    """The filter is keyed by ids: rows of a replaced input file are not silently mis-filtered."""
    src, _, _ = reference_run
    job = tmp_path / "job"
    shutil.copytree(src, job)
    from shammie.pipeline import parallel

    real = parallel.run_tasks

    def swap_input_before_filter(job_, stage, *a, **k):
        if k["markers"].endswith("deduped"):
            t = documents.read_table(str(job / "documents" / "b.parquet"))
            documents.write_table(t.take(list(range(t.num_rows))[::-1]), str(job / "documents" / "b.parquet"))
        return real(job_, stage, *a, **k)

    monkeypatch.setattr(parallel, "run_tasks", swap_input_before_filter)
    with pytest.raises(Exception, match="changed while dedup ran"):
        minhash.dedup(str(job), progress=False)


@pytest.mark.slow
def test_killed_process_resumes_to_identical_output(tmp_path, ray_session):
    """SIGKILL a real `shammie dedup` process mid-stage, re-run, compare with a clean run."""
    src = tmp_path / "src"
    r = random.Random(11)
    base = [(f"o-{i:04d}", random_text(r, 200), "CC-X") for i in range(400)]
    for k in range(8):
        rows = base[k * 50:(k + 1) * 50]
        rows += [(f"d-{k}-{i}", alter(t, 0.01, r), d) for i, (_, t, d) in enumerate(rows[:5])]
        write_docs(src, f"{k:02d}.parquet", rows)
    jobdir.mark_complete(str(src), "documents")
    clean, job = tmp_path / "clean", tmp_path / "job"
    shutil.copytree(src, clean)
    shutil.copytree(src, job)
    minhash.dedup(str(clean), progress=False)

    # The subprocess joins the session's Ray (no second Ray start-up); killing it kills the
    # driver mid-stage, and Ray drops the dead driver's tasks.
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    shammie = [sys.executable, "-m", "shammie.jobs.cli", "dedup", str(job), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(shammie, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = job / "_meta" / "deduped" / "_work" / "signatures" / "_tasks"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if markers.is_dir() and len(list(markers.glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    if jobdir.is_complete(str(job), "deduped"):
        pytest.skip("the run finished before it could be killed (machine too fast for this test)")
    done_when_killed = len(list(markers.glob("*.json"))) if markers.is_dir() else 0
    assert 2 <= done_when_killed < 8, "the subprocess did not get far enough to be killed mid-stage"

    minhash.dedup(str(job), progress=False)
    assert kept_ids(job) == kept_ids(clean)
    assert jobdir.read_stats(str(job))["dedup"]["removed"] == jobdir.read_stats(str(clean))["dedup"]["removed"] == 40


def test_empty_input_gives_empty_complete_output(tmp_path, ray_session):
    job = tmp_path / "job"
    write_docs(job, "00.parquet", [])
    write_docs(job, "01.parquet", [("short", "too few words", "CC-X"), ("empty", "", "CC-X")])
    jobdir.mark_complete(str(job), "documents")
    stats = minhash.dedup(str(job), progress=False)
    assert kept_ids(job) == {"00.parquet": [], "01.parquet": ["short", "empty"]}
    assert (stats["documents_in"], stats["removed"], stats["clusters"]) == (2, 0, 0)
    assert jobdir.is_complete(str(job), "deduped")
