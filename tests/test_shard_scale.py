"""The store assembled by workers (issue 21, item 5): exact folding from counts reduced in tasks,
small pieces merged into few shards, resume inside the merge phase, and a driver that never
reads a document or encodes a token when the build runs on Ray."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shammie.mixing import domains as dom
from shammie.mixing import store_counts, store_pieces
from shammie.mixing.store import build_store, open_store
from shammie.mixing.store_format import StoreError
from shammie.mixing.store_testing import synthetic_documents, tiny_tokenizer, write_job
from shammie.pipeline import jobdir


def _build(job, store=None, **kw):
    kw.setdefault("train_tokenizer", 400)
    kw.setdefault("progress", False)
    kw.setdefault("tokenizer_sample_bytes", 1_000_000)
    return build_store(str(job), None if store is None else str(store), **kw)


def _rows(job: Path) -> list[dict]:
    return [r for url in jobdir.stage_files(str(job), "scored") for r in pq.read_table(url).to_pylist()]


def _tagged(n: int, seed: int, prefix: str) -> pa.Table:
    """Documents with a `tag` column of Zipf-like frequencies and many ties."""
    rng = random.Random(seed)
    table = synthetic_documents(n, seed=seed, prefix=prefix, mean_words=30)
    tags = [f"t{min(int(rng.paretovariate(1.0)), 40):02d}" for _ in range(n)]
    return table.append_column("tag", pa.array(tags))


def _store_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- the merge plan


def _result(domains: dict[str, tuple[int, int, bool]]) -> dict:
    """A tokenize result: domain -> (pieces, last piece's tokens, last kept)."""
    names = sorted(domains)
    rows = [(domains[d][0], 1, domains[d][1], int(domains[d][2])) for d in names]
    kept = [[i, j, {"documents": 1, "tokens": 0, "files": {}, "id": (d, j)}]
            for i, d in enumerate(names) for j in range(domains[d][0] - (0 if domains[d][2] else 1))]
    return {"domains": names, "pieces": store_pieces.encode_array(np.array(rows).reshape(-1, 4)), "kept": kept}


def test_merge_plan_groups_only_consecutive_small_pieces_up_to_shard_tokens():
    results = [
        _result({"a": (1, 30, False), "b": (1, 500, True)}),
        _result({"a": (1, 50, False), "b": (2, 10, False)}),   # b: a full piece, then a small one
        _result({"a": (1, 40, False), "b": (1, 20, False)}),   # a: 30+50+40 > 100, a new group starts
        _result({"b": (1, 300, True)}),                         # a kept piece breaks b's run
        _result({"a": (1, 10, False), "b": (1, 5, False)}),
    ]
    plan = store_pieces.plan_merges(results, shard_tokens=100)
    groups = [(g["domain"], plan.pieces(g).tolist(), g["tokens"]) for g in plan.groups]
    assert groups == [("a", [[0, 0], [1, 0]], 80), ("a", [[2, 0], [4, 0]], 50),
                      ("b", [[1, 1], [2, 0]], 30), ("b", [[4, 0]], 5)]
    merged = {(d, *p[0]): {"merged": (d, *p[0])} for d, p, _ in groups}
    shards = plan.shards(merged)
    assert shards["a"] == [{"merged": ("a", 0, 0)}, {"merged": ("a", 2, 0)}]
    assert [s.get("id") or s["merged"] for s in shards["b"]] == [
        ("b", 0), ("b", 0), ("b", 1, 1), ("b", 0), ("b", 4, 0)]   # task 0 kept, task 1 full, merge, task 3 kept, merge


# ---------------------------------------------------------------- folding from reduced counts


def test_top_k_from_many_reducers_equals_the_fold_over_all_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(store_counts, "KEYS_PER_REDUCER", 2)  # one reducer per couple of keys
    job = tmp_path / "job"
    write_job(str(job), [_tagged(150, seed=s, prefix=f"f{s}") for s in range(3)])
    stats = _build(job, group_by="tag", top_k=5)
    rows = _rows(job)
    expected = dom.DomainFolder(Counter(r["tag"] for r in rows), "tag", 5)
    want = Counter(expected(r["tag"]) for r in rows)
    store = open_store(str(job / "store"))
    assert {d: store.num_documents(d) for d in store.domains} == dict(want)
    assert len(want) == 6 and stats["documents"] == 450
    for d in store.domains:
        assert [r["id"] for r in store.iter_documents(d, ["id"])] == [r["id"] for r in rows if expected(r["tag"]) == d]


def test_reducer_returns_its_top_k_in_the_folds_order():
    summed = pa.table({"key": ["b", "a", None, "c", "d"], "count": [3, 3, 3, 1, 5]})
    assert store_counts.top_keys(summed, 3) == [["d", 5], [None, 3], ["a", 3]]
    assert store_counts.top_keys(summed, None) == sorted([[k, c] for k, c in zip(*summed.to_pydict().values())],
                                                          key=dom.rank_key)
    many = pa.table({"key": [str(i) for i in range(dom.MAX_DOMAINS_WITHOUT_TOP_K + 1)],
                     "count": [1] * (dom.MAX_DOMAINS_WITHOUT_TOP_K + 1)})
    assert store_counts.top_keys(many, None) == []   # the driver refuses on the distinct count alone


def test_too_many_values_without_top_k_is_refused_before_tokenizing(tmp_path):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(dom.MAX_DOMAINS_WITHOUT_TOP_K + 5, seed=1, mean_words=5)])
    with pytest.raises(StoreError, match=r"gives 1005 distinct values; pass --top-k"):
        _build(job, group_by="id")
    store = job / "store"
    assert not list(store.rglob("*.tokens")) and not list(store.rglob("tokenize"))


# ---------------------------------------------------------------- merging small pieces


def test_small_pieces_of_many_files_become_one_shard_per_domain(tmp_path, ray_session):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(40, seed=s, prefix=f"f{s}", mean_words=40) for s in range(8)])
    stats = _build(job, group_by="site", top_k=3)
    assert stats["pieces"]["tasks"] == 8
    store = open_store(str(job / "store"))
    rows = _rows(job)
    assert len(store.domains) == 4
    for d in store.domains:
        shards = store.domain_info(d)["shards"]
        # 8 tasks' small pieces, consecutive in store order: one merged shard.
        assert len(shards) == 1 and shards[0]["files"]["tokens"]["path"].endswith("-m.tokens")
    folder = dom.DomainFolder(Counter(dom.registered_site(r["url"]) for r in rows), "site", 3)
    for d in store.domains:
        got = [r["id"] for r in store.iter_documents(d, ["id"])]
        assert got == [r["id"] for r in rows if folder(dom.registered_site(r["url"])) == d]
    # Nothing but the manifest's files, the build record, the markers of completion.
    root = job / "store"
    listed = {f["path"] for e in store.manifest["domains"].values() for s in e["shards"] for f in s["files"].values()}
    assert _store_files(root) == listed | {store.manifest["tokenizer"]["path"], "manifest.json", "_SUCCESS",
                                           f"_builds/{store.build_id}.json"}
    assert store.verify() == len(listed) + 1   # every shard file and the tokenizer check out


def test_large_pieces_stay_as_they_are_and_small_ones_merge(tmp_path):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(300, seed=2)])
    stats = _build(job, group_by="language", shard_tokens=4_000)
    store = open_store(str(job / "store"))
    for d in store.domains:
        shards = store.domain_info(d)["shards"]
        assert len(shards) > 1
        assert all(s["tokens"] >= 4_000 for s in shards[:-1])          # cut at --shard-tokens
        names = [s["files"]["tokens"]["path"] for s in shards]
        assert all(not n.endswith("-m.tokens") for n in names[:-1])    # full pieces: never copied
        last = shards[-1]
        assert last["files"]["tokens"]["path"].endswith("-m.tokens") == (last["tokens"] < 4_000 // 8)
    assert stats["pieces"]["merged"] == sum(s["files"]["tokens"]["path"].endswith("-m.tokens")
                                            for d in store.domains for s in store.domain_info(d)["shards"])


def test_interrupted_merge_resumes_and_matches_a_clean_build(tmp_path, monkeypatch):
    clean_job, job = tmp_path / "clean", tmp_path / "job"
    for j in (clean_job, job):
        write_job(str(j), [synthetic_documents(200, seed=7, mean_words=40)])
    model = tmp_path / "tok.model"
    model.write_bytes(tiny_tokenizer().model_proto)
    kw = dict(group_by="site", top_k=4, tokenizer=str(model), train_tokenizer=None, shard_tokens=50_000)
    _build(clean_job, **kw)
    want = open_store(str(clean_job / "store"))

    real = store_pieces.merge_task
    calls = []

    def dies(payload):
        calls.append(1)
        if len(calls) == 2:   # publishes its merged shard and deletes its pieces, then the worker dies
            real(payload)
            raise KeyboardInterrupt("worker died before its marker")
        if len(calls) == 3:
            raise KeyboardInterrupt("worker died mid-merge")
        return real(payload)

    monkeypatch.setattr(store_pieces, "merge_task", dies)   # one input file: every phase runs in this process
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            _build(job, **kw)
    monkeypatch.undo()
    assert not (job / "store" / "manifest.json").exists()
    _build(job, **kw)
    got = open_store(str(job / "store"))
    assert got.domains == want.domains   # (build ids differ: they hash the input paths)
    for d in got.domains:
        assert [s["files"]["tokens"]["checksum"] for s in got.domain_info(d)["shards"]] == \
            [s["files"]["tokens"]["checksum"] for s in want.domain_info(d)["shards"]]
        assert list(got.iter_documents(d)) == list(want.iter_documents(d))
    def layout(root, build):
        return sorted(p.relative_to(root).as_posix().replace(build, "B") for p in root.rglob("*.tokens"))

    assert layout(job / "store", got.build_id) == layout(clean_job / "store", want.build_id)


# ---------------------------------------------------------------- nothing per document in the driver


def test_driver_reads_no_document_and_encodes_no_token_on_ray(tmp_path, monkeypatch, ray_session):
    from shammie.mixing import tokenizer as tokenizer_module
    from shammie.pipeline import documents

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(60, seed=s, prefix=f"f{s}") for s in range(3)])
    model = tmp_path / "tok.model"
    model.write_bytes(tiny_tokenizer().model_proto)

    def refuse(*_a, **_k):
        raise AssertionError("the driver touched documents or tokens")

    # Ray workers are other processes: these patches bind the driver only.
    monkeypatch.setattr(documents, "read_table", refuse)
    monkeypatch.setattr(tokenizer_module.Tokenizer, "encode_documents", refuse)
    monkeypatch.setattr(store_pieces, "_read_pieces", refuse)
    monkeypatch.setattr(store_counts, "_read_keys", refuse)
    stats = _build(job, group_by="site", top_k=2, tokenizer=str(model), train_tokenizer=None, shard_tokens=10**9)
    monkeypatch.undo()
    assert stats["documents"] == 180 and stats["pieces"]["tasks"] == 3 and stats["pieces"]["merged"] == 9
    store = open_store(str(job / "store"))
    assert store.verify() > 0 and sum(store.num_documents(d) for d in store.domains) == 180


def test_stats_record_the_phases(tmp_path):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(50, seed=1)])
    stats = _build(job, group_by="language")
    for key in ("count_seconds", "tokenize_seconds", "write_seconds", "seconds", "tokens_per_s"):
        assert stats[key] >= 0
    success = json.loads((job / "store" / "_SUCCESS").read_text())
    assert success["stats"]["build_id"] == stats["build_id"] == success["build_id"]
