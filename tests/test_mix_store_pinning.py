"""The store under a running trainer: readers pin the build they opened, build retention,
manifest validation, and `verify()` checking the manifest's counts against the files."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shammie.mixing import store_format as fmt
from shammie.mixing import store_writer
from shammie.mixing.store import open_store
from shammie.mixing.store_format import BuildRemovedError, CorruptShardError, ManifestError, StoreError
from shammie.mixing.store_testing import StoreProbe, tiny_tokenizer, write_token_store

DOMAINS = ("a", "b", "c")
SEQ = 16
BUILD_A, BUILD_B, BUILD_C = "aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _docs(seed: int, n: int = 120) -> dict[str, list[np.ndarray]]:
    """Different seeds give different token streams (and sizes), so reading the wrong build shows."""
    rng = np.random.default_rng(seed)
    return {d: [rng.integers(3, 300, rng.integers(5, 40)).astype(np.uint16) for _ in range(n + 20 * seed)]
            for d in DOMAINS}


def _publish(root: Path, seed: int, build_id: str, tokenizer, **kw) -> dict:
    return write_token_store(str(root), _docs(seed), tokenizer, shard_tokens=1500, seq_len=SEQ,
                             build_id=build_id, **kw)


def _all_sequences(store, domain: str) -> np.ndarray:
    return store.gather(domain, SEQ, np.arange(store.num_sequences(domain, SEQ)))


def _expected(root: Path, tokenizer, seed: int) -> dict[str, np.ndarray]:
    """What build `seed` holds, read from a fresh store written elsewhere."""
    other = root.parent / f"expected-{seed}"
    if not other.exists():
        _publish(other, seed, "eeeeeeeeeeee", tokenizer)
    ref = open_store(str(other))
    return {d: _all_sequences(ref, d) for d in DOMAINS}


# ---------------------------------------------------------------- pinning through rebuilds

def test_rebuild_while_open_keeps_the_reader_on_its_build(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    reader = open_store(str(root))
    sizes = reader.sizes()
    touched = _all_sequences(reader, "a")  # only domain a is opened before the rebuild
    _publish(root, 1, BUILD_B, tokenizer)

    want = _expected(tmp_path, tokenizer, 0)
    assert reader.sizes() == sizes
    assert np.array_equal(touched, want["a"])
    # Domains first opened after the rebuild: still build A's files, whole and unmixed.
    for d in ("b", "c"):
        assert np.array_equal(_all_sequences(reader, d), want[d])
        assert reader.document_record(d, 0)["id"] == f"{d}-0"
    assert reader.verify() > 0
    assert reader.build_id == BUILD_A
    fresh = open_store(str(root))
    assert fresh.build_id == BUILD_B
    assert all(np.array_equal(_all_sequences(fresh, d), v) for d, v in _expected(tmp_path, tokenizer, 1).items())


def test_pickled_reader_opens_the_parents_build_not_the_new_one(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    parent = open_store(str(root))
    _publish(root, 1, BUILD_B, tokenizer)
    child = pickle.loads(pickle.dumps(parent))  # what a spawned DataLoader worker receives
    assert child.sizes() == parent.sizes()
    for d in DOMAINS:
        assert np.array_equal(_all_sequences(child, d), _all_sequences(parent, d))
    assert child.build_id == BUILD_A


def test_spawned_dataloader_workers_read_the_parents_build(tmp_path, tokenizer):
    from torch.utils.data import DataLoader

    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    parent = open_store(str(root))
    n = parent.num_sequences("b", SEQ)
    loader = DataLoader(StoreProbe(parent, "b", SEQ, n), batch_size=None, num_workers=2,
                        multiprocessing_context="spawn")
    _publish(root, 1, BUILD_B, tokenizer)  # the store is rebuilt before the workers start
    items = list(loader)
    assert len({item["pid"] for item in items}) == 2, "both workers served items"
    assert {item["build_id"] for item in items} == {BUILD_A}
    assert all(item["num_sequences"] == {d: parent.num_sequences(d, SEQ) for d in DOMAINS} for item in items)
    got = np.stack([item["sequence"].numpy() for item in items])
    assert np.array_equal(got, _all_sequences(parent, "b"))


def test_a_store_keeps_its_newest_two_builds_and_then_says_the_pinned_one_is_gone(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    reader = open_store(str(root))
    first_a = _all_sequences(reader, "a")
    _publish(root, 1, BUILD_B, tokenizer)
    _publish(root, 2, BUILD_C, tokenizer)

    on_disk = {p.name[:12] for p in root.rglob("*.tokens")}
    assert on_disk == {BUILD_B, BUILD_C}
    assert sorted(p.name for p in (root / fmt.BUILDS).iterdir()) == [f"{BUILD_B}.json", f"{BUILD_C}.json"]
    # Files this reader had mapped stay readable (POSIX); anything else is a clear error.
    assert np.array_equal(_all_sequences(reader, "a"), first_a)
    with pytest.raises(BuildRemovedError, match=f"build {BUILD_A}.*removed by later rebuilds.*re-open") as err:
        reader.sequence("b", SEQ, 0)
    assert isinstance(err.value, StoreError) and not isinstance(err.value, CorruptShardError)
    # A kept older build can be opened by id (e.g. to resume on the data a checkpoint saw).
    previous = open_store(str(root), build_id=BUILD_B)
    assert previous.build_id == BUILD_B
    assert all(np.array_equal(_all_sequences(previous, d), v) for d, v in _expected(tmp_path, tokenizer, 1).items())
    with pytest.raises(BuildRemovedError, match=BUILD_A):
        open_store(str(root), build_id=BUILD_A)


def test_keep_builds_keeps_more_builds(tmp_path, tokenizer):
    root = tmp_path / "store"
    for seed, build in enumerate((BUILD_A, BUILD_B, BUILD_C)):
        _publish(root, seed, build, tokenizer, keep_builds=3)
    assert {p.name[:12] for p in root.rglob("*.tokens")} == {BUILD_A, BUILD_B, BUILD_C}
    assert open_store(str(root), build_id=BUILD_A).verify() > 0


def test_store_without_build_records_keeps_its_previous_build(tmp_path, tokenizer):
    """A store written before build records existed: the build being replaced gets one."""
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    shutil.rmtree(root / fmt.BUILDS)
    reader = open_store(str(root))
    _publish(root, 1, BUILD_B, tokenizer)
    assert np.array_equal(_all_sequences(reader, "c"), _expected(tmp_path, tokenizer, 0)["c"])


def test_crashed_build_leftovers_are_not_a_kept_build(tmp_path, tokenizer, monkeypatch):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)

    def crash(*_args, **_kw):
        raise KeyboardInterrupt("simulated crash before the manifest")

    monkeypatch.setattr(store_writer.storage, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        _publish(root, 1, BUILD_B, tokenizer)
    monkeypatch.undo()
    assert BUILD_B in {p.name[:12] for p in root.rglob("*.tokens")}, "the crash left shards behind"
    _publish(root, 2, BUILD_C, tokenizer)
    assert {p.name[:12] for p in root.rglob("*.tokens")} == {BUILD_A, BUILD_C}


# ---------------------------------------------------------------- manifest validation

def _edit_manifest(root: Path, edit) -> None:
    path = root / fmt.MANIFEST
    manifest = json.loads(path.read_text())
    manifest = edit(manifest) or manifest
    path.write_text(json.dumps(manifest))


def _set(path: str, value):
    def edit(m):
        *keys, last = path.split("/")
        obj = m
        for k in keys:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        if value is KeyError:
            del obj[last]
        else:
            obj[last] = value
    return edit


MALFORMED = {
    "a list": (lambda m: [m], "not a JSON object"),
    "no domains": (_set("domains", KeyError), "domains is missing"),
    "domains a list": (_set("domains", []), "domains should be dict"),
    "shard without files": (_set("domains/a/shards/0/files", KeyError), r"domains\['a'\].shards\[0\].files is missing"),
    "no index file": (_set("domains/a/shards/0/files/index", KeyError), "files.index is missing"),
    "count as text": (_set("domains/a/shards/0/tokens", "12"), "tokens should be int"),
    "count as bool": (_set("domains/a/shards/0/documents", True), "documents should be int"),
    "negative count": (_set("domains/a/shards/0/documents", -1), "should be >= 0"),
    "tokenizer missing": (_set("tokenizer", KeyError), "tokenizer is missing"),
    "no eod id": (_set("tokenizer/eod_id", KeyError), "tokenizer.eod_id is missing"),
    "odd dtype": (_set("token_dtype", "<f4"), "token_dtype should be one of"),
    "path escapes the store": (_set("domains/a/shards/0/files/tokens/path", "../../etc/passwd"), "not a relative path"),
    "domain total off": (_set("domains/a/tokens", 1), r"domains\['a'\].tokens is 1 but its shards add up to"),
    "store total off": (_set("documents", 1), "documents is 1 but the domains add up to"),
    "bad build id": (_set("build_id", "x"), "build_id should be 12 hex digits"),
    "wrong version": (_set("format_version", 99), "unsupported store format"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_is_a_clear_error(tmp_path, tokenizer, case):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    edit, message = MALFORMED[case]
    _edit_manifest(root, edit)
    with pytest.raises(ManifestError, match=message) as err:
        store = open_store(str(root))
        store.sequence("a", SEQ, 0)
    assert str(root / fmt.MANIFEST) in str(err.value)


def test_unreadable_manifest_is_a_manifest_error(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    (root / fmt.MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        open_store(str(root))


def _add_tokens_to_last_shard(m, extra: int, *, bytes_too: bool):
    shard = m["domains"]["a"]["shards"][-1]
    shard["tokens"] += extra
    m["domains"]["a"]["tokens"] += extra
    m["tokens"] += extra
    if bytes_too:
        shard["files"]["tokens"]["bytes"] += extra * 2


def test_token_counts_that_disagree_with_the_files_are_refused_not_read_short(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    # Counts that add up among themselves but not with the token file's size.
    _edit_manifest(root, lambda m: _add_tokens_to_last_shard(m, 3 * SEQ, bytes_too=False))
    with pytest.raises(ManifestError, match=r"files.tokens.bytes is \d+, but \d+ tokens of <u2 take"):
        open_store(str(root))
    # The same with the byte count edited too: the file is then shorter than the manifest says.
    _edit_manifest(root, lambda m: m["domains"]["a"]["shards"][-1]["files"]["tokens"].update(
        bytes=m["domains"]["a"]["shards"][-1]["tokens"] * 2))
    store = open_store(str(root))
    last = store.num_sequences("a", SEQ) - 1
    with pytest.raises(CorruptShardError, match="truncated"):
        store.sequence("a", SEQ, last)
    with pytest.raises(CorruptShardError):
        open_store(str(root)).verify()


def _rewrite_file(root: Path, entry: dict, data: bytes) -> None:
    (root / entry["path"]).write_bytes(data)
    entry["bytes"], entry["checksum"] = len(data), fmt.bytes_checksum(data)


def test_verify_checks_the_index_against_the_token_count(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    assert open_store(str(root)).verify() > 0

    def shift_index(m):  # same size and a matching checksum, but offsets ending short of the tokens
        entry = m["domains"]["b"]["shards"][0]["files"]["index"]
        offsets = np.fromfile(root / entry["path"], dtype="<u8")
        offsets[-1] -= 1
        _rewrite_file(root, entry, offsets.tobytes())

    _edit_manifest(root, shift_index)
    with pytest.raises(CorruptShardError, match="document index does not describe"):
        open_store(str(root)).verify()
    with pytest.raises(CorruptShardError, match="document index"):
        open_store(str(root)).document_tokens("b", 0)


def test_verify_checks_text_rows_against_the_document_count(tmp_path, tokenizer):
    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)

    def drop_a_row(m):
        entry = m["domains"]["c"]["shards"][0]["files"]["text"]
        table = pq.read_table(root / entry["path"])
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(1), sink)
        _rewrite_file(root, entry, sink.getvalue().to_pybytes())

    _edit_manifest(root, drop_a_row)
    with pytest.raises(CorruptShardError, match=r"rows, the manifest says \d+ documents"):
        open_store(str(root)).verify()


# ---------------------------------------------------------------- data-parallel ranks

_RANK_SCRIPT = """
import json, sys
import numpy as np
import torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_mix_store_pinning import BUILD_B, _publish
from shammie.mixing.store import open_store, same_build_across_ranks
from shammie.mixing.store_testing import tiny_tokenizer

dist.init_process_group("gloo", init_method={init!r}, rank={rank}, world_size=2)
root = {root!r}
if dist.get_rank() == 0:
    mine = open_store(root)                        # build A
dist.barrier()
if dist.get_rank() == 0:
    _publish(__import__("pathlib").Path(root), 1, BUILD_B, tiny_tokenizer())   # rebuilt in between
dist.barrier()
if dist.get_rank() == 1:
    mine = open_store(root)                        # opens build B on its own
before = mine.build_id
agreed = same_build_across_ranks(mine)
print(json.dumps({{"rank": dist.get_rank(), "before": before, "after": agreed.build_id,
                  "sizes": agreed.sizes(), "first": agreed.sequence("a", 16, 0).tolist()}}))
dist.destroy_process_group()
"""


def test_ranks_agree_on_rank_0s_build_when_a_rebuild_falls_between_their_opens(tmp_path, tokenizer):
    import subprocess
    import sys

    root = tmp_path / "store"
    _publish(root, 0, BUILD_A, tokenizer)
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [subprocess.Popen([sys.executable, "-c", _RANK_SCRIPT.format(
        tests=str(Path(__file__).parent), init=init, rank=rank, root=str(root))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    by_rank = {o["rank"]: o for o in outs}
    assert by_rank[0]["before"] == BUILD_A and by_rank[1]["before"] == BUILD_B   # the race happened
    assert by_rank[0]["after"] == by_rank[1]["after"] == BUILD_A
    assert by_rank[0]["sizes"] == by_rank[1]["sizes"]
    assert by_rank[0]["first"] == by_rank[1]["first"]


def test_same_build_across_ranks_without_distributed_is_the_store_itself(tmp_path, tokenizer):
    from shammie.mixing.store import same_build_across_ranks

    _publish(tmp_path / "store", 0, BUILD_A, tokenizer)
    store = open_store(str(tmp_path / "store"))
    assert same_build_across_ranks(store) is store


def test_rebuilding_over_a_malformed_manifest(tmp_path):
    from shammie.mixing.store import build_store
    from shammie.mixing.store_testing import synthetic_documents, write_job

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(40, seed=2)])
    store = job / "store"
    store.mkdir()
    (store / fmt.MANIFEST).write_text("[]")
    kw = dict(group_by="edu", progress=False, tokenizer_sample_bytes=500_000, seq_len=32)
    # Reusing the store's tokenizer is impossible; training a new one silently would change the ids.
    with pytest.raises(ManifestError, match="cannot reuse the store's tokenizer.*--train-tokenizer"):
        build_store(str(job), **kw)
    stats = build_store(str(job), train_tokenizer=400, **kw)   # an explicit tokenizer replaces the damage
    assert open_store(str(store)).verify() > 0 and stats["documents"] == 40
