"""Dedup at scale: shuffle files read per partition, components over documents with an edge
only (one task or distributed rounds), bucket ranges that cost one pass over the
signatures, payloads that do not list every file, and the same kept set whatever the split."""

from __future__ import annotations

import pickle
import random
import shutil

import numpy as np
import pytest

from conftest import dedup_killed_before_clusters
from shammie.dedup import clusters, minhash
from shammie.pipeline import partitioned
from test_dedup import alter, kept_ids, random_text, reference_roots, write_docs
from shammie.pipeline import jobdir


# --------------------------------------------------------------------------- partitioned files

RECORD = np.dtype([("key", "<u8"), ("doc", "<i8")])


def _records(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rec = np.empty(n, dtype=RECORD)
    rec["key"] = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    rec["doc"] = np.arange(n)
    return rec, rng.integers(0, 7, size=n)


def test_a_partition_is_read_alone_and_keeps_the_written_order(tmp_path):
    rec, part = _records(5000)
    url = str(tmp_path / "a.prt")
    partitioned.write_partitioned(url, rec, part, 7)
    for p in range(7):
        got = partitioned.read_partition(url, p, RECORD)
        assert np.array_equal(got, rec[part == p])  # stable: in the order given
    assert partitioned.partition_count(url) == 7
    both = partitioned.read_partition_of_all([url, url], 3, RECORD)
    assert np.array_equal(both, np.concatenate([rec[part == 3]] * 2))
    empty = str(tmp_path / "empty.prt")
    partitioned.write_partitioned(empty, rec[:0], part[:0], 4)
    assert partitioned.read_partition(empty, 2, RECORD).size == 0


def test_partitioned_files_refuse_what_they_are_not(tmp_path):
    rec, part = _records(10)
    url = str(tmp_path / "a.prt")
    partitioned.write_partitioned(url, rec, part, 7)
    with pytest.raises(ValueError, match="records of 16 bytes"):
        partitioned.read_partition(url, 0, np.dtype([("x", "<i4")]))
    with pytest.raises(ValueError, match="no partition 9"):
        partitioned.read_partition(url, 9, RECORD)
    (tmp_path / "junk.prt").write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ValueError, match="bad magic"):
        partitioned.read_partition(str(tmp_path / "junk.prt"), 0, RECORD)
    with pytest.raises(ValueError, match="must be < 3"):
        partitioned.write_partitioned(url, rec, part, 3)


def test_a_partition_on_s3_is_two_ranged_reads(s3_server, s3_bucket):
    rec, part = _records(3000, seed=1)
    url = f"s3://{s3_bucket}/shuffle/a.prt"
    partitioned.write_partitioned(url, rec, part, 7)
    for p in (0, 6):
        assert np.array_equal(partitioned.read_partition(url, p, RECORD), rec[part == p])
    assert np.array_equal(partitioned.read_partition_of_all([url] * 3, 2, RECORD),
                          np.concatenate([rec[part == 2]] * 3))


# --------------------------------------------------------------------------- components

def random_graph(seed: int) -> np.ndarray:
    """Sparse document numbers in the billions, stars and long chains, and negative (virtual) documents."""
    rng = np.random.default_rng(seed)
    docs = rng.choice(10**10, size=3000, replace=False)
    star = np.stack([np.repeat(docs[:50], 20), rng.choice(docs, 1000)], axis=1)
    chain = np.stack([docs[1000:1799], docs[1001:1800]], axis=1)  # a path of 800 documents
    rng.shuffle(chain)
    noise = rng.choice(docs, size=(1500, 2))
    virtual = np.stack([-(2**63) + rng.integers(0, 5, 40) * 2**40 + rng.integers(0, 9, 40), rng.choice(docs, 40)], 1)
    return np.concatenate([star, chain, noise, virtual]).astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_union_find_equals_a_reference_union_find(seed, monkeypatch):
    edges = random_graph(seed)
    monkeypatch.setattr(clusters, "MIN_CHUNK", 97)  # many merges of the node set and compressions
    batches = [edges[i:i + 111] for i in range(0, len(edges), 111)]
    nodes, root = clusters.components(lambda: iter(batches))
    ref = reference_roots(edges)
    assert nodes.tolist() == sorted(ref)
    assert dict(zip(nodes.tolist(), root.tolist())) == ref


@pytest.mark.parametrize("partitions", [1, 4])
@pytest.mark.parametrize("seed", [0, 3])
def test_large_and_small_star_rounds_end_in_stars_around_the_minimum(seed, partitions):
    edges = random_graph(seed)
    directed = clusters.both_directions(edges[:, 0], edges[:, 1])
    parts = [directed[clusters.node_partition(directed["u"], partitions) == q] for q in range(partitions)]
    for rounds in range(1, 60):
        outs, unsettled = zip(*(clusters.star_step(p, large=rounds % 2 == 1) for p in parts))
        every = np.concatenate(outs)
        parts = [every[clusters.node_partition(every["u"], partitions) == q] for q in range(partitions)]
        if sum(unsettled) == 0:
            break
    else:
        pytest.fail("did not converge")
    pairs = [clusters.stars_to_roots(p) for p in parts]
    got = {int(m): int(c) for centre, member in pairs for c, m in zip(centre.tolist(), member.tolist())}
    assert got == reference_roots(edges)


def test_component_records_flag_the_document_a_history_cluster_would_have_kept():
    v = -(2**63) + 3 * 2**40 + 17  # earlier job 3, its document 17
    members = np.array([5, 9, 2, 7, v, 8], dtype=np.int64)
    roots = np.array([2, 2, 2, v, v, v], dtype=np.int64)
    records, stats, earlier = clusters.component_records(members, roots)
    by_doc = {int(r["doc"]): (int(r["root"]), int(r["size"]), int(r["flag"])) for r in records}
    assert by_doc == {2: (2, 3, 0), 5: (2, 3, 0), 9: (2, 3, 0), 7: (v, 2, 1), 8: (v, 2, 0)}
    assert stats == {"clusters": 2, "largest_cluster": 3, "cluster_sizes": {"2": 1, "3": 1}}
    assert earlier.tolist() == [[v, 2]]


# --------------------------------------------------------------------------- the stage

@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ray_session):
    """30 input files with near and exact copies across files, and its one-range, one-task dedup."""
    root = tmp_path_factory.mktemp("dedup-scale")
    src = root / "src"
    r = random.Random(3)
    base = [(f"o{i:04d}", random_text(r, 120), "CC-X") for i in range(300)]
    rows = base + [(f"n{i:04d}", alter(base[i * 3][1], 0.01, r), "CC-X") for i in range(60)] \
        + [(f"e{i:04d}", base[i * 5 + 1][1], "CC-X") for i in range(30)] + [("short", "four words only here", "CC-X")]
    r.shuffle(rows)
    for k in range(30):
        write_docs(src, f"{k:02d}.parquet", rows[k * 13:(k + 1) * 13])
    jobdir.mark_complete(str(src), "documents")
    clean = root / "clean"
    shutil.copytree(src, clean)
    stats = minhash.dedup(str(clean), progress=False)
    assert stats["bucket_ranges_per_band"] == 1 and stats["cluster_mode"] == "one task"
    assert stats["removed"] >= 85
    # without --keep-index no band index is left behind (~240 bytes per document), only index.json
    assert sorted(p.name for p in (clean / "_meta" / "deduped" / "index").iterdir()) == ["index.json"]
    assert not (clean / "_meta" / "deduped" / "_work").exists()
    return src, clean, stats


def test_key_ranges_and_distributed_components_keep_the_same_set(tmp_path, corpus):
    src, clean, ref = corpus
    job = tmp_path / "job"
    shutil.copytree(src, job)
    stats = minhash.dedup(str(job), max_bucket_docs=40, max_cluster_docs=50, progress=False)
    assert stats["bucket_ranges_per_band"] == 16
    parts, rounds = [int(w) for w in stats["cluster_mode"].replace(",", "").split()[::2]]
    assert parts >= 4 and rounds >= 2, stats["cluster_mode"]
    assert kept_ids(job) == kept_ids(clean)
    for key in ("removed", "exact_removed", "near_removed", "clusters", "largest_cluster", "cluster_sizes",
                "per_snapshot"):
        assert stats[key] == ref[key], key


def test_the_bucket_stage_reads_one_pass_whatever_the_ranges(tmp_path, corpus):
    """Each bucket task reads its own key range only: the bytes read add up to the signatures once."""
    src, _, ref = corpus
    read = {}
    for limit in (10**6, 40):
        job = tmp_path / f"job-{limit}"
        shutil.copytree(src, job)
        stats = minhash.dedup(str(job), max_bucket_docs=limit, progress=False)
        read[stats["bucket_ranges_per_band"]] = stats["stages"]["buckets"]["bytes_read"]
    with_shingles = ref["documents_in"] - ref["exact_removed"] - 1  # one document is too short
    assert read == {1: 14 * 24 * with_shingles, 16: 14 * 24 * with_shingles}


def test_task_payloads_do_not_list_every_input_file(tmp_path, corpus, monkeypatch):
    src, _, _ = corpus
    job = tmp_path / "job"
    shutil.copytree(src, job)
    from shammie.pipeline import parallel

    sizes: dict[str, int] = {}
    real = parallel.run_tasks

    def recording(job_, stage, tasks, fn, **k):
        for t in tasks:
            name = getattr(fn, "__name__", type(fn).__name__)
            sizes[name] = max(sizes.get(name, 0), len(pickle.dumps(t[1])))
        return real(job_, stage, tasks, fn, **k)

    monkeypatch.setattr(parallel, "run_tasks", recording)
    minhash.dedup(str(job), max_bucket_docs=40, progress=False)
    # 30 input files: a payload listing them would be >= 30 URLs (~2 KB); the clustering task
    # lists the edge files (bands x ranges), the distributed mode splits them over its scatter tasks
    assert {k: v for k, v in sizes.items() if k != "cluster_task" and v > 1500} == {}


def test_runs_of_files_per_map_task_keep_the_same_set(tmp_path, corpus, monkeypatch):
    """Map tasks over runs of consecutive files (as at 90k files) give the kept set of one file per task."""
    src, clean, ref = corpus
    job = tmp_path / "job"
    shutil.copytree(src, job)
    from shammie.dedup import exact

    def by_seven(tasks, total, max_group_docs=None):
        return [tasks[i:i + 7] for i in range(0, len(tasks), 7)]

    monkeypatch.setattr(minhash, "file_groups", by_seven)
    stats = minhash.dedup(str(job), max_bucket_docs=40, progress=False)
    assert stats["stages"]["signatures"]["tasks"] == 5 and stats["stages"]["exact_hash"]["tasks"] == 5
    assert kept_ids(job) == kept_ids(clean)
    assert (stats["removed"], stats["exact_removed"], stats["per_snapshot"]) == \
        (ref["removed"], ref["exact_removed"], ref["per_snapshot"])
    # the grouping rule itself: at most 1/256 of the input per task, one file at least, the 1M cap
    tasks = [type("T", (), {"payload": {"rows": 10}})() for _ in range(100)]
    assert [len(g) for g in exact.file_groups(tasks, 1000)] == [1] * 100
    assert [len(g) for g in exact.file_groups(tasks, 256 * 35)] == [3] * 33 + [1]
    assert [len(g) for g in exact.file_groups(tasks, 10**12, max_group_docs=50)] == [5] * 20


def test_a_job_on_s3_keeps_the_same_set(corpus, s3_bucket):
    """Every phase's shuffle files on S3 (moto): ranged reads of partitions, atomic PUTs."""
    import fsspec

    src, clean, ref = corpus
    job = f"s3://{s3_bucket}/job"
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": __import__("os").environ["AWS_ENDPOINT_URL"]})
    fs.put(str(src / "documents"), f"{s3_bucket}/job/documents", recursive=True)
    fs.put(str(src / "_meta"), f"{s3_bucket}/job/_meta", recursive=True)  # documents/'s _SUCCESS
    stats = minhash.dedup(job, max_bucket_docs=100, max_cluster_docs=200, keep_index=True, progress=False)
    assert stats["bucket_ranges_per_band"] == 4 and stats["cluster_mode"] != "one task"
    kept = {}
    for name in kept_ids(clean):
        with fs.open(f"{s3_bucket}/job/deduped/{name}", "rb") as f:
            import pyarrow.parquet as pq

            kept[name] = pq.read_table(f, columns=["id"])["id"].to_pylist()
    assert kept == kept_ids(clean)
    assert stats["removed"] == ref["removed"]
    assert fs.exists(f"{s3_bucket}/job/_meta/deduped/index/{minhash.history.shard_name(13, 3)}")


def test_a_resumed_run_with_another_split_does_not_read_the_old_work_files(tmp_path, corpus, monkeypatch):
    """Work files are named by range numbers: a run interrupted with one --max-bucket-docs and
    resumed with another starts its work afresh instead of reading the other plan's files."""
    src, clean, ref = corpus
    job = tmp_path / "job"
    shutil.copytree(src, job)
    dedup_killed_before_clusters(job, monkeypatch, max_bucket_docs=40)
    stats = minhash.dedup(str(job), progress=False)  # 1 range instead of 16
    assert stats["bucket_ranges_per_band"] == 1
    assert kept_ids(job) == kept_ids(clean) and stats["clusters"] == ref["clusters"]
