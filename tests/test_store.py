"""Shard store: tokenizer round trip, grouping, layout, atomicity, checksums, partitioning.

Single-input-file jobs build in-process (no Ray); the multi-file test uses `ray_session`."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shammie.mixing import domains as dom
from shammie.mixing import store_format as fmt
from shammie.mixing import store_writer
from shammie.mixing.store import CorruptShardError, auto_shuffle_block, build_store, open_store
from shammie.mixing.store_format import ManifestError, StoreError, TokenizerError
from shammie.mixing.store_testing import (synthetic_documents, synthetic_texts, tiny_tokenizer, write_job,
                                          write_token_store)
from shammie.mixing.tokenizer import Tokenizer, token_dtype, train_tokenizer
from shammie.pipeline import jobdir
from shammie.pipeline.errors import UserError

TRICKY = ["  leading and trailing  ", "tabs\tand\r\nwindows lines\n\n\nblank", "", "emoji 🙂 and ☃ and 日本語",
          "Straße ﬁ ½ x²", "nul\x00byte", "digits 1234567890 3.14159"]


def _build(job, store=None, **kw):
    kw.setdefault("group_by", "edu")
    kw.setdefault("train_tokenizer", 400)
    kw.setdefault("progress", False)
    kw.setdefault("tokenizer_sample_bytes", 2_000_000)
    return build_store(str(job), None if store is None else str(store), **kw)


def _input_rows(job: Path, stage: str = "scored") -> list[dict]:
    rows = []
    for url in jobdir.stage_files(str(job), stage):
        rows.extend(pq.read_table(url).to_pylist())
    return rows


@pytest.fixture(scope="module")
def edu_job(tmp_path_factory):
    job = tmp_path_factory.mktemp("job")
    table = synthetic_documents(600, seed=3)
    # Documents whose round trip is hard: whitespace, control characters, non-BMP.
    extra = synthetic_documents(len(TRICKY), seed=99, prefix="tricky")
    extra = extra.set_column(extra.column_names.index("text"), extra.schema.field("text"), pa.array(TRICKY))

    write_job(str(job), [pa.concat_tables([table, extra])])
    stats = _build(job, seq_len=64, shard_tokens=15_000)
    return job, stats


# ---------------------------------------------------------------- tokenizer and domains

def test_trained_tokenizer_round_trips_text_and_ends_documents_with_eod():
    tok = tiny_tokenizer()
    texts = synthetic_texts(50, seed=7) + TRICKY
    tokens, lengths = tok.encode_documents(texts)
    assert tokens.dtype == np.uint16 and int(lengths.sum()) == len(tokens)
    ends = np.cumsum(lengths) - 1
    assert (tokens[ends] == tok.eod_id).all()
    assert np.count_nonzero(tokens == tok.eod_id) == len(texts)
    starts = ends - lengths + 1
    for text, s, e in zip(texts, starts, ends):
        assert tok.decode(tokens[s:e + 1]) == text


def test_unigram_training_and_dtype_by_vocabulary():
    tok = train_tokenizer(synthetic_texts(300, seed=1), 400, "unigram")
    assert tok.model_type == "unigram"
    assert tok.decode(tok.encode_documents(["ka lo mi. 42"])[0]) == "ka lo mi. 42"
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    with pytest.raises(TokenizerError, match="tokenizer-type"):
        train_tokenizer(["x"], 400, "wordpiece")


def test_tokenizer_without_eos_is_rejected(tmp_path):
    import io

    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(synthetic_texts(200)), model_writer=out, vocab_size=300,
                                   eos_id=-1, byte_fallback=True, hard_vocab_limit=False, minloglevel=2)
    path = tmp_path / "noeos.model"
    path.write_bytes(out.getvalue())
    with pytest.raises(TokenizerError, match="end-of-sentence"):
        Tokenizer.load(str(path))
    with pytest.raises(TokenizerError, match="not a sentencepiece model"):
        Tokenizer(b"garbage", source="junk.model")


def test_domain_names_are_safe_path_components():
    assert dom.safe_component("en") == "en"
    assert dom.safe_component("a/b\\c d") == "a_b_c_d"
    assert dom.safe_component("../..") == "unknown"
    assert dom.safe_component(None) == "unknown"
    assert dom.safe_component("manifest.json") == "d_manifest.json"
    assert dom.safe_component("_staging") == "staging"
    assert dom.safe_component("x" * 300) == "x" * 100
    assert dom.registered_site("https://news.bbc.co.uk/a") == "bbc.co.uk"
    assert dom.registered_site("https://Foo.GitHub.io/x") == "github.io"
    assert dom.registered_site("http://192.168.0.1/x") == "192.168.0.1"
    assert dom.registered_site(None) is None


def test_domain_folder_keeps_top_k_and_folds_the_rest():
    counts = Counter({"a.com": 5, "b.com": 3, "c.com": 3, "d.com": 1, None: 2})
    folder = dom.DomainFolder(counts, "site", 2)
    assert folder("a.com") == "a.com"
    assert folder("b.com") == "b.com"  # ties broken by name
    assert folder("c.com") == folder("d.com") == folder(None) == dom.OTHER
    with pytest.raises(StoreError, match="--top-k"):
        dom.DomainFolder(Counter({str(i): 1 for i in range(dom.MAX_DOMAINS_WITHOUT_TOP_K + 1)}), "id", None)


# ---------------------------------------------------------------- build + read

def test_round_trip_text_and_tokens(edu_job):
    job, stats = edu_job
    store = open_store(str(job / "store"))
    rows = _input_rows(job)
    by_id = {r["id"]: r for r in rows}
    assert store.domains == sorted(store.domains)
    assert sum(store.num_documents(d) for d in store.domains) == len(rows) == stats["documents"]
    assert stats["tokens"] == sum(store.num_tokens(d) for d in store.domains)
    seen = []
    for d in store.domains:
        expected_ids = [r["id"] for r in rows if f"edu-{r['edu_int_score']}" == d]
        got = list(store.iter_documents(d))
        # Store order is input order within a domain; every column survives unchanged.
        assert [g["id"] for g in got] == expected_ids
        for i, g in enumerate(got):
            src = by_id[g["id"]]
            assert {k: g[k] for k in src} == src
            assert store.document(d, i) == src["text"]
            toks = store.document_tokens(d, i)
            assert len(toks) == g["n_tokens"] and toks[-1] == store.eod_id
            assert store.decode(toks) == src["text"]
        seen += expected_ids
    assert sorted(seen) == sorted(by_id)
    tricky = {by_id[i]["text"] for i in by_id if "tricky" in i}
    assert tricky == set(TRICKY)


def test_manifest_layout_and_stats(edu_job):
    job, stats = edu_job
    root = job / "store"
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format_version"] == fmt.FORMAT_VERSION and manifest["seq_len"] == 64
    assert manifest["tokenizer"]["vocab_size"] <= 400 and manifest["token_dtype"] == "<u2"
    assert (root / manifest["tokenizer"]["path"]).exists()
    assert not (root / "_staging").exists()
    assert (root / "_SUCCESS").exists()
    multi = 0
    for name, entry in manifest["domains"].items():
        assert sum(s["documents"] for s in entry["shards"]) == entry["documents"]
        multi += len(entry["shards"]) > 1
        for shard in entry["shards"]:
            for kind, f in shard["files"].items():
                path = root / f["path"]
                assert path.parent.name == name and path.stat().st_size == f["bytes"]
                assert fmt.file_checksum(str(path)) == f["checksum"]
            tokens = np.fromfile(root / shard["files"]["tokens"]["path"], dtype="<u2")
            index = np.fromfile(root / shard["files"]["index"]["path"], dtype="<u8")
            assert len(tokens) == shard["tokens"] == index[-1] and len(index) == shard["documents"] + 1
            # Text shards are plain Parquet, readable without shammie.
            assert pq.read_table(root / shard["files"]["text"]["path"]).num_rows == shard["documents"]
    assert multi, "shard_tokens was small enough to split some domain"
    section = jobdir.read_stats(str(job))["shard"]
    assert section["documents"] == stats["documents"] and section["tokens_per_s"] > 0
    assert set(section["domains"]) == set(manifest["domains"])
    assert all(set(v) >= {"documents", "tokens"} for v in section["domains"].values())
    assert section["seconds"] > 0


def test_text_shards_load_with_datasets_as_is(edu_job, tmp_path):
    datasets = pytest.importorskip("datasets")
    job, _ = edu_job
    store = open_store(str(job / "store"))
    d = store.domains[0]
    files = [str(job / "store" / s["files"]["text"]["path"]) for s in store.domain_info(d)["shards"]]
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path))
    assert ds["id"] == [r["id"] for r in store.iter_documents(d, ["id"])]
    assert ds[0]["text"] == store.document(d, 0)


def test_sequences_pack_documents_across_boundaries(edu_job):
    job, _ = edu_job
    store = open_store(str(job / "store"))
    d = max(store.domains, key=lambda d: len(store.domain_info(d)["shards"]))
    stream = np.concatenate([store.document_tokens(d, i) for i in range(store.num_documents(d))])
    assert len(stream) == store.num_tokens(d)
    for seq_len in (64, 1000, 7):
        n = store.num_sequences(d, seq_len)
        assert n == len(stream) // seq_len
        for j in range(n):
            assert np.array_equal(store.sequence(d, seq_len, j), stream[j * seq_len:(j + 1) * seq_len])
        got = sorted(tuple(s) for s in store.sequences(d, seq_len, shuffle=False))
        assert got == sorted(tuple(stream[j * seq_len:(j + 1) * seq_len]) for j in range(n))
    assert store.sequence(d, 64, 0, dtype=np.int64).dtype == np.int64
    with pytest.raises(IndexError):
        store.sequence(d, 64, store.num_sequences(d, 64))


def test_gather_and_batches_match_single_sequences(edu_job):
    job, _ = edu_job
    store = open_store(str(job / "store"))
    d = max(store.domains, key=lambda d: len(store.domain_info(d)["shards"]))
    for seq_len in (64, 33):
        n = store.num_sequences(d, seq_len)
        idx = np.random.default_rng(1).permutation(n)  # includes sequences spanning two shards
        got = store.gather(d, seq_len, idx)
        assert got.dtype == np.int64 and got.shape == (n, seq_len)
        assert all(np.array_equal(got[i], store.sequence(d, seq_len, int(j))) for i, j in enumerate(idx))
        for reuse in (False, True):
            batches = [b.copy() for b in store.batches(d, seq_len, 10, seed=4, rank=1, world_size=2,
                                                       reuse_buffer=reuse)]
            singles = list(store.sequences(d, seq_len, seed=4, rank=1, world_size=2))
            assert [len(b) for b in batches[:-1]] == [10] * (len(batches) - 1)
            assert np.array_equal(np.concatenate(batches), np.stack(singles))
    with pytest.raises(IndexError):
        store.gather(d, 64, [store.num_sequences(d, 64)])


def test_rank_and_worker_partitions_cover_every_sequence_once(edu_job):
    job, _ = edu_job
    store = open_store(str(job / "store"))
    d = store.domains[0]
    seq_len = 16
    n = store.num_sequences(d, seq_len)
    assert n > 50
    parts = [store.sequence_order(d, seq_len, seed=5, rank=r, world_size=3, worker_id=w, num_workers=2)
             for r in range(3) for w in range(2)]
    allidx = np.concatenate(parts)
    assert len(allidx) == n and sorted(allidx.tolist()) == list(range(n))
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    # The iterator yields exactly those sequences, deterministically for a seed.
    seqs = list(store.sequences(d, seq_len, seed=5, rank=1, world_size=3, worker_id=0, num_workers=2))
    assert [s.tolist() for s in seqs] == [store.sequence(d, seq_len, int(j)).tolist() for j in parts[2]]
    again = store.sequence_order(d, seq_len, seed=5, rank=1, world_size=3, worker_id=0, num_workers=2)
    assert np.array_equal(again, parts[2])
    assert not np.array_equal(store.sequence_order(d, seq_len, seed=5, epoch=1), store.sequence_order(d, seq_len, seed=5))
    assert not np.array_equal(store.sequence_order(d, seq_len, seed=6), store.sequence_order(d, seq_len, seed=5))
    even = [store.sequence_order(d, seq_len, rank=r, world_size=4, drop_last=True) for r in range(4)]
    assert len({len(p) for p in even}) == 1 and len(set(np.concatenate(even).tolist())) == 4 * (n // 4)
    with pytest.raises(ValueError):
        store.sequence_order(d, seq_len, rank=2, world_size=2)


@pytest.fixture(scope="module")
def blocky_store(tmp_path_factory):
    """One domain of 4106 sequences of 16 tokens over 7 shards (shard ends cut sequences)."""
    rng = np.random.default_rng(3)
    tok = tiny_tokenizer()
    docs, n = [], 0
    while n < 4106 * 16:
        docs.append(rng.integers(3, tok.vocab_size, int(rng.integers(1, 60)), dtype=np.uint16))
        n += len(docs[-1]) + 1
    path = tmp_path_factory.mktemp("blocky") / "store"
    write_token_store(str(path), {"d": docs}, tok, shard_tokens=9999, seq_len=16)
    return open_store(str(path))


def test_block_shuffle_keeps_blocks_together_and_partitions_exactly(blocky_store):
    store, L = blocky_store, 16
    n = store.num_sequences("d", L)
    assert n >= 4106 and len(store.domain_info("d")["shards"]) >= 7
    assert auto_shuffle_block(n, L) == n // 1024 == 4      # big enough domain: blocks of 4
    assert auto_shuffle_block(500, L) == 1 and auto_shuffle_block(10**6, 2048) == 8
    order = store.sequence_order("d", L, seed=2)
    assert sorted(order.tolist()) == list(range(n))
    starts = np.flatnonzero(order % 4 == 0)
    runs = np.split(order, starts)[1:]
    assert all(np.array_equal(r, np.arange(r[0], min(r[0] + 4, n))) for r in runs)  # whole, ordered blocks
    assert order[0] % 4 == 0 and not np.array_equal(order, np.sort(order))
    full = store.sequence_order("d", L, seed=2, shuffle_block=1)
    assert sorted(full.tolist()) == list(range(n))
    assert np.mean(np.diff(full) == 1) < 0.01           # an independent place for every sequence
    assert not np.array_equal(store.sequence_order("d", L, seed=2, epoch=1), order)
    assert np.array_equal(store.sequence_order("d", L, seed=2), order)
    for parts in ((3, 2), (4, 1)):
        world, workers = parts
        mine = [store.sequence_order("d", L, seed=2, rank=r, world_size=world, worker_id=w, num_workers=workers)
                for r in range(world) for w in range(workers)]
        assert sorted(np.concatenate(mine).tolist()) == list(range(n))
        assert max(map(len, mine)) - min(map(len, mine)) <= 1
        even = [store.sequence_order("d", L, seed=2, rank=r, world_size=world * workers, drop_last=True)
                for r in range(world * workers)]
        assert {len(p) for p in even} == {n // (world * workers)}
    with pytest.raises(ValueError):
        store.sequence_order("d", L, shuffle_block=0)


@pytest.mark.parametrize("block", [None, 1, 3, 7])
def test_batches_equal_the_sequences_they_batch(blocky_store, block):
    store, L = blocky_store, 16
    stream = np.concatenate([store.document_tokens("d", i) for i in range(store.num_documents("d"))])
    for batch_size, kw in ((32, {}), (5, {"rank": 1, "world_size": 3, "drop_last": True}), (64, {"shuffle": False})):
        order = store.sequence_order("d", L, seed=9, shuffle_block=block, **kw)
        want = np.stack([stream[j * L:(j + 1) * L] for j in order.tolist()]).astype(np.int64)
        for reuse in (False, True):
            got = [b.copy() for b in store.batches("d", L, batch_size, seed=9, shuffle_block=block,
                                                   reuse_buffer=reuse, **kw)]
            assert all(b.dtype == np.int64 for b in got)
            assert [len(b) for b in got[:-1]] == [batch_size] * (len(got) - 1)
            assert np.array_equal(np.concatenate(got), want)
        singles = list(store.sequences("d", L, seed=9, shuffle_block=block, **kw))
        assert np.array_equal(np.stack(singles), want)


def test_store_pickles_for_dataloader_workers(edu_job):
    job, _ = edu_job
    store = open_store(str(job / "store"))
    d = store.domains[0]
    clone = pickle.loads(pickle.dumps(store))
    assert clone.domains == store.domains
    assert np.array_equal(clone.sequence(d, 32, 3), store.sequence(d, 32, 3))


def test_rerun_with_same_options_is_up_to_date_and_touches_nothing(edu_job):
    job, _ = edu_job
    before = {p: p.stat().st_mtime_ns for p in (job / "store").rglob("*")}
    stats = _build(job, seq_len=64, shard_tokens=15_000)
    assert stats["up_to_date"] is True
    assert {p: p.stat().st_mtime_ns for p in (job / "store").rglob("*")} == before


@pytest.mark.parametrize("key,top_k", [("language", None), ("site", 3), ("dump", None), ("edu", 2)])
def test_group_by(tmp_path, key, top_k):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(200, seed=11)])
    stats = _build(job, group_by=key, top_k=top_k)
    store = open_store(str(job / "store"))
    rows = _input_rows(job)
    if key == "site":
        raw = [dom.registered_site(r["url"]) for r in rows]
    elif key == "edu":
        raw = [f"edu-{r['edu_int_score']}" for r in rows]
    else:
        raw = [r[key] for r in rows]
    counts = Counter(raw)
    kept = {k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k or len(counts)]}
    expected = Counter(k if k in kept else "other" for k in raw)
    assert {d: store.num_documents(d) for d in store.domains} == dict(expected)
    assert stats["group_by"] == key and len(stats["domains"]) == len(expected)
    for d in store.domains:
        for rec in store.iter_documents(d, ["id", "url", "language", "dump", "edu_int_score"]):
            value = {"site": lambda r: dom.registered_site(r["url"]), "language": lambda r: r["language"],
                     "dump": lambda r: r["dump"], "edu": lambda r: f"edu-{r['edu_int_score']}"}[key](rec)
            assert (value if value in kept else "other") == d
    if key == "site":
        assert "other" in store.domains and "bbc.co.uk" in set(raw)


def test_library_errors_are_store_errors_not_the_clis_user_error(tmp_path):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(20, seed=1, scores=False)], stage="deduped")
    cases = [(lambda: _build(job), StoreError, "edu_int_score"),
             (lambda: _build(job, group_by="colour"), StoreError, "no such column"),
             (lambda: _build(job, group_by="language", tokenizer="x.model"), StoreError, "not both"),
             (lambda: _build(job, group_by="language", tokenizer=str(tmp_path / "missing.model"),
                             train_tokenizer=None), TokenizerError, "does not exist"),
             (lambda: open_store(str(tmp_path)), ManifestError, "no manifest")]
    for call, kind, message in cases:
        with pytest.raises(kind, match=message) as err:
            call()
        # Library callers catch ValueError; only the CLI layer knows about UserError.
        assert isinstance(err.value, ValueError) and not isinstance(err.value, UserError)
    assert issubclass(CorruptShardError, StoreError)
    from shammie.jobs.cli import main

    assert main(["shard", str(tmp_path / "nojob"), "--no-progress"]) == 2


def test_cli_reports_store_errors_with_exit_code_2(tmp_path, capsys):
    from shammie.jobs.cli import main

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(20, seed=1, scores=False)], stage="deduped")
    assert main(["shard", str(job), "--group-by", "colour", "--no-progress"]) == 2
    assert "no such column" in capsys.readouterr().err


def test_cli_help_explains_the_options(capsys):
    from shammie.jobs.cli import main

    with pytest.raises(SystemExit) as done:
        main(["shard", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for option in ("--store", "--group-by", "--tokenizer", "--train-tokenizer", "--seq-len", "--top-k", "--input-stage"):
        assert option in out


def test_cli_with_user_tokenizer_and_input_stage(tmp_path, capsys):
    from shammie.jobs.cli import main

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(50, seed=2, scores=False)], stage="deduped")
    write_job(str(job), [synthetic_documents(30, seed=3)], stage="scored")
    model = tmp_path / "mine.model"
    model.write_bytes(tiny_tokenizer(350).model_proto)
    out = tmp_path / "elsewhere"
    rc = main(["shard", str(job), "--store", str(out), "--tokenizer", str(model), "--group-by", "language",
               "--input-stage", "deduped", "--seq-len", "128", "--no-progress"])
    assert rc == 0
    assert "50 documents" in capsys.readouterr().out
    store = open_store(str(out))
    assert store.seq_len == 128
    assert Path(store.tokenizer_path).read_bytes() == model.read_bytes()
    assert sum(store.num_documents(d) for d in store.domains) == 50
    # Building without tokenizer options later reuses the store's tokenizer.
    stats = build_store(str(job), str(out), group_by="dump", input_stage="deduped", progress=False)
    assert stats["tokenizer"]["vocab_size"] == store.vocab_size
    assert Path(open_store(str(out)).tokenizer_path).read_bytes() == model.read_bytes()


def test_uint32_token_shards_round_trip(tmp_path):
    tok = tiny_tokenizer()
    tok.dtype = np.dtype(np.uint32)  # as for a vocabulary above 65536
    docs = {"a": [np.array([70000, 5, 6], np.uint32), np.array([1 << 20], np.uint32)]}
    write_token_store(str(tmp_path / "s"), docs, tok)
    store = open_store(str(tmp_path / "s"))
    assert store.token_dtype == np.dtype("<u4")
    assert store.document_tokens("a", 0).tolist() == [70000, 5, 6, tok.eod_id]
    assert store.sequence("a", 3, 1).tolist() == [tok.eod_id, 1 << 20, tok.eod_id]


# ---------------------------------------------------------------- integrity

def _small_store(tmp_path, name="s"):
    rng = np.random.default_rng(0)
    docs = {"x": [rng.integers(3, 300, rng.integers(1, 50)).astype(np.uint16) for _ in range(300)]}
    write_token_store(str(tmp_path / name), docs, shard_tokens=2000)
    return tmp_path / name


def test_truncated_token_shard_raises_naming_the_file(tmp_path):
    root = _small_store(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    victim = root / manifest["domains"]["x"]["shards"][1]["files"]["tokens"]["path"]
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size - 10)
    store = open_store(str(root))
    assert store.sequence("x", 10, 0) is not None  # shard 0 is fine
    with pytest.raises(CorruptShardError, match=victim.name) as err:
        for _ in store.sequences("x", 10):
            pass
    assert "truncated" in str(err.value)


def test_flipped_byte_in_text_shard_fails_checksum(tmp_path):
    root = _small_store(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    victim = root / manifest["domains"]["x"]["shards"][0]["files"]["text"]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    store = open_store(str(root))
    assert len(store.document_tokens("x", 0)) > 0  # tokens of shard 0 are intact
    with pytest.raises(CorruptShardError, match=f"{victim.name}: checksum"):
        store.document("x", 0)
    with pytest.raises(CorruptShardError):
        open_store(str(root)).verify()


def test_crash_while_writing_leaves_previous_store_valid_and_rerun_completes(tmp_path, monkeypatch):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(300, seed=4)])
    _build(job, shard_tokens=10_000)
    root = job / "store"
    old_manifest = (root / "manifest.json").read_text()
    old = open_store(str(root))
    old_docs = {d: [old.document(d, i) for i in range(old.num_documents(d))] for d in old.domains}

    calls = {"n": 0}
    real_finish = store_writer._ShardWriter.finish

    def crash_after_two(self):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("simulated crash")
        return real_finish(self)

    monkeypatch.setattr(store_writer._ShardWriter, "finish", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        _build(job, shard_tokens=3_000)
    monkeypatch.undo()
    assert (root / "manifest.json").read_text() == old_manifest
    new_files = [p for p in root.rglob("*.tokens") if p.name[:12] != json.loads(old_manifest)["build_id"]]
    assert new_files, "the crashed build had published some shards"
    reopened = open_store(str(root))
    assert reopened.verify() > 0
    assert {d: [reopened.document(d, i) for i in range(reopened.num_documents(d))] for d in reopened.domains} == old_docs

    _build(job, shard_tokens=3_000)
    fresh = open_store(str(root))
    assert fresh.manifest["build_id"] != json.loads(old_manifest)["build_id"]
    assert {d: [fresh.document(d, i) for i in range(fresh.num_documents(d))] for d in fresh.domains} == old_docs
    # The crashed build's leftovers are gone; what remains is the new build, the previous
    # one (kept for readers that still have it open) and their build records.
    listed = store_writer.referenced_files(fresh.manifest) | store_writer.referenced_files(json.loads(old_manifest))
    records = {fmt.build_record_name(m["build_id"]) for m in (fresh.manifest, json.loads(old_manifest))}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert present == listed | records | {"manifest.json", "_SUCCESS"}


@pytest.mark.slow
def test_sigkill_midway_leaves_previous_manifest_valid(tmp_path):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(300, seed=4)])
    _build(job, shard_tokens=10_000)
    root = job / "store"
    old_manifest = (root / "manifest.json").read_text()
    script = textwrap.dedent(f"""
        import os, signal
        from shammie.mixing import store_writer
        from shammie.mixing.store import build_store
        real = store_writer._ShardWriter.finish
        calls = []
        def finish(self):
            calls.append(1)
            if len(calls) == 3:
                self._tokens.write(b"half")  # mid-file, like a real crash
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self)
        store_writer._ShardWriter.finish = finish
        build_store({str(job)!r}, group_by="edu", train_tokenizer=400, shard_tokens=3000, progress=False,
                    tokenizer_sample_bytes=2_000_000)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert (root / "manifest.json").read_text() == old_manifest
    assert any(p.name.startswith(".tmp-") for p in root.rglob("*")), "the kill left temporaries behind"
    assert open_store(str(root)).verify() > 0
    _build(job, shard_tokens=3000)
    assert not any(p.name.startswith(".tmp-") for p in root.rglob("*"))
    assert open_store(str(root)).verify() > 0


# ---------------------------------------------------------------- parallel build

def test_multi_file_build_on_ray_is_deterministic(tmp_path, ray_session):
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(150, seed=s, prefix=f"f{s}") for s in range(3)])
    stats = _build(job, group_by="language", shard_tokens=8_000)
    assert stats["documents"] == 450
    store = open_store(str(job / "store"))
    rows = _input_rows(job)
    for d in store.domains:
        # Input file order, then row order, whatever order the Ray tasks finished in.
        assert [r["id"] for r in store.iter_documents(d, ["id"])] == [r["id"] for r in rows if r["language"] == d]
    texts = {r["id"]: r["text"] for r in rows}
    for d in store.domains:
        for i in range(0, store.num_documents(d), 17):
            rec = store.document_record(d, i)
            assert store.decode(store.document_tokens(d, i)) == texts[rec["id"]]


def test_empty_input_file_writes_no_pieces(tmp_path):
    from shammie.mixing import store_pieces
    from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table

    write_table(DOCUMENT_SCHEMA.empty_table(), str(tmp_path / "in.parquet"))
    tok = tiny_tokenizer()
    (tmp_path / "tok.model").write_bytes(tok.model_proto)
    result = store_pieces.tokenize_task({
        "inputs": [str(tmp_path / "in.parquet")], "task": 0, "store": str(tmp_path / "store"),
        "build_id": "0123456789ab", "group_by": "language", "fold": None, "tokenizer": str(tmp_path / "tok.model"),
        "tokenizer_sha256": tok.sha256, "schema": store_pieces.encode_schema(store_pieces.text_schema(DOCUMENT_SCHEMA)),
        "shard_tokens": 1000, "keep_tokens": 100})
    assert result["documents"] == 0 and result["tokens"] == 0 and result["domains"] == [] and result["kept"] == []
    assert store_pieces.decode_array(result["pieces"], len(store_pieces.PIECE_FIELDS)).shape == (0, 4)
    assert not (tmp_path / "store").exists()


def test_job_with_an_empty_input_file_builds(tmp_path, ray_session):
    job = tmp_path / "job"
    empty = synthetic_documents(1, seed=1).slice(0, 0)
    write_job(str(job), [synthetic_documents(40, seed=1), empty, synthetic_documents(30, seed=2, prefix="g")])
    stats = _build(job, group_by="language", shard_tokens=2_000)
    assert stats["documents"] == 70 and stats["pieces"]["tasks"] == 3
    store = open_store(str(job / "store"))
    rows = _input_rows(job)
    for d in store.domains:
        assert [r["id"] for r in store.iter_documents(d, ["id"])] == [r["id"] for r in rows if r["language"] == d]


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_multilingual_text_round_trips(tmp_path, shared_data):
    """Real Common Crawl documents (DCLM labels) and Leipzig sentences in 12 scripts/languages."""
    texts = [json.loads(line)["text"] for line in (shared_data / "labels" / "dclm-human-quality-agreement.jsonl").open()][:80]
    for f in sorted((shared_data / "lid").glob("*.txt")):
        texts.append(f.read_text(encoding="utf-8"))
    table = synthetic_documents(len(texts), seed=5)
    table = table.set_column(table.column_names.index("text"), table.schema.field("text"), pa.array(texts))
    job = tmp_path / "job"
    write_job(str(job), [table])
    _build(job, group_by="language", train_tokenizer=4000, tokenizer_type="bpe")
    store = open_store(str(job / "store"))
    wanted = {r["id"]: r["text"] for r in table.to_pylist()}
    n = 0
    for d in store.domains:
        for i, rec in enumerate(store.iter_documents(d, ["id", "text"])):
            assert rec["text"] == wanted[rec["id"]]
            assert store.decode(store.document_tokens(d, i)) == rec["text"]
            n += 1
    assert n == len(texts)


class _ReverseOrderRay:
    """Stands in for `ray` in run_tasks: tasks run in the driver and finish last-submitted first,
    so the test sees whether the store's order depends on task completion order."""

    def __init__(self):
        self.calls = {}
        self.finished = []

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 8}  # all tasks in flight at once

    def remote(self, **_options):
        def wrap(fn):
            fake = self

            class Remote:
                @staticmethod
                def remote(*args):
                    ref = object()
                    fake.calls[ref] = (fn, args)
                    return ref

            return Remote
        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[-num_returns:], refs[:-num_returns]

    def get(self, ref):
        from shammie.mixing.store_pieces import tokenize_task

        fn, args = self.calls.pop(ref)
        # (task fn, payload, ...), the task fn wrapped by the runner (which measures its CPU)
        if getattr(args[0], "fn", args[0]) is tokenize_task:   # a tokenize task's input files
            self.finished.append(args[1]["inputs"][0])
        return fn(*args)

    def cancel(self, ref, force=False):
        self.calls.pop(ref, None)


def test_multi_file_order_does_not_depend_on_task_completion_order(tmp_path, monkeypatch):
    fake = _ReverseOrderRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(60, seed=s, prefix=f"f{s}") for s in range(3)])
    stats = _build(job, group_by="language", shard_tokens=4_000)
    assert fake.finished == sorted(fake.finished, reverse=True) and len(fake.finished) == 3
    assert stats["documents"] == 180
    store = open_store(str(job / "store"))
    rows = _input_rows(job)
    for d in store.domains:
        assert [r["id"] for r in store.iter_documents(d, ["id"])] == [r["id"] for r in rows if r["language"] == d]
    # Resume: a re-run after a crash reuses the finished tasks' markers and outputs.
    from shammie.mixing import store_build

    monkeypatch.setattr(store_build, "publish_build", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _build(job, group_by="dump", shard_tokens=4_000)
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "ray", fake)
    fake.finished.clear()
    _build(job, group_by="dump", shard_tokens=4_000)
    assert fake.finished == [], "all three tokenize tasks were resumed from their markers"
    assert set(open_store(str(job / "store")).domains) == {r["dump"] for r in rows}
