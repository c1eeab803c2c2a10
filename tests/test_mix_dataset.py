"""MixtureDataset: per-domain epochs without repeats, identical streams with 0 and
2 DataLoader workers, exact resume in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.mixer import OnlineDataMixer, StaticMixer
from shammie.mixing.mixer import MixingError as UserError  # the library error (was the CLI one)

sys.path.insert(0, str(Path(__file__).resolve().parent))   # --import-mode=importlib
from test_mix_fakes import FakeStore, identify  # noqa: E402

SEQ = 8
SIZES = {"code": 40 * SEQ, "news": 25 * SEQ, "wiki": 60 * SEQ + 5}


def fake_loss(batch) -> dict[str, float]:
    """A deterministic 'training loss' per domain that depends on the batch content."""
    out: dict[str, list[float]] = {}
    for row, d in zip(batch["input_ids"], batch["domain"]):
        out.setdefault(d, []).append(1.0 + (int(row[0]) % 97) / 50 + {"code": 1.5, "news": 0.5}.get(d, 0.0))
    return {d: sum(v) / len(v) for d, v in out.items()}


def run(loader_or_iter, mixer, steps):
    got = []
    it = iter(loader_or_iter)
    for _ in range(steps):
        batch = next(it)
        got.append((batch["step"], [identify(r, mixer.domains) for r in batch["input_ids"]]))
        mixer.update(fake_loss(batch))
    return got


def make(mixer_kind="odm", batch_size=4, per_sample=False, **kw):
    store = FakeStore(SIZES)
    if mixer_kind == "odm":
        mixer = OnlineDataMixer.from_store(store, seed=11, lag=4, **kw)
    else:
        mixer = StaticMixer.from_store(store, mixer_kind, seed=11, **kw)
    return store, mixer, MixtureDataset(store, mixer, SEQ, batch_size, per_sample=per_sample)


def test_batches_are_one_domain_and_epochs_never_repeat():
    store, mixer, ds = make("uniform", batch_size=4)
    got = run(ds, mixer, 150)
    assert [s for s, _ in got] == list(range(1, 151))
    served = [x for _, rows in got for x in rows]
    assert all(len({d for d, _ in rows}) == 1 for _, rows in got)
    for d in store.domains:
        idx = [j for dd, j in served if dd == d]
        n = store.num_sequences(d, SEQ)
        for start in range(0, len(idx) - n + 1, n):                   # each full epoch is a permutation
            assert sorted(idx[start:start + n]) == list(range(n))
        tail = idx[len(idx) // n * n:]
        assert len(set(tail)) == len(tail)
        assert len(idx) > n                                           # at least one epoch boundary crossed
    assert Counter(d for d, _ in served)["wiki"] > 0


def test_per_sample_mixing_draws_each_sequence():
    _, mixer, ds = make("uniform", batch_size=6, per_sample=True)
    got = run(ds, mixer, 40)
    mixed = sum(len({d for d, _ in rows}) > 1 for _, rows in got)
    assert mixed > 30


@pytest.mark.parametrize("kind,per_sample", [("odm", False), ("odm", True), ("natural", False)])
def test_two_workers_serve_exactly_the_single_process_stream(kind, per_sample):
    _, m0, ds0 = make(kind, per_sample=per_sample)
    ref = run(ds0.dataloader(num_workers=0), m0, 60)
    _, m2, ds2 = make(kind, per_sample=per_sample)
    got = run(ds2.dataloader(num_workers=2), m2, 60)
    assert got == ref
    assert m2.state_dict() == m0.state_dict()
    if kind == "odm":
        assert m2.weights() != pytest.approx({d: 1 / 3 for d in m2.domains})   # the bandit did move


def test_workers_that_outrun_the_lag_wait_and_stay_exact():
    # lag 0 with 2 workers x prefetch 2: workers must block on every update, yet serve the same stream
    store = FakeStore(SIZES)
    m0 = OnlineDataMixer.from_store(store, seed=2, lag=0)
    ref = run(MixtureDataset(store, m0, SEQ, 2).dataloader(), m0, 25)
    m2 = OnlineDataMixer.from_store(store, seed=2, lag=0)
    got = run(torch.utils.data.DataLoader(MixtureDataset(store, m2, SEQ, 2), batch_size=None,
                                          num_workers=2, prefetch_factor=2), m2, 25)
    assert got == ref


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_mix_fakes import FakeStore, identify
    from test_mix_dataset import SIZES, SEQ, fake_loss
    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.mixer import OnlineDataMixer
    store = FakeStore(SIZES)
    mixer = OnlineDataMixer.from_store(store, seed=11, lag=4, warmup_steps=5)
    ds = MixtureDataset(store, mixer, SEQ, 4)
    ds.load_state_dict(torch.load(sys.argv[2], weights_only=False))
    it = iter(ds.dataloader(num_workers=2))
    out = []
    for _ in range(int(sys.argv[3])):
        b = next(it)
        out.append([b["step"], [list(identify(r, mixer.domains)) for r in b["input_ids"]]])
        mixer.update(fake_loss(b))
    print(json.dumps({"batches": out, "rewards": mixer.rewards.tolist()}))
""")


@pytest.mark.slow
def test_exact_resume_in_a_fresh_process(tmp_path):
    _, m_full, ds_full = make(warmup_steps=5)
    full = run(ds_full.dataloader(num_workers=2), m_full, 70)

    _, m_a, ds_a = make(warmup_steps=5)
    first = run(ds_a.dataloader(num_workers=2), m_a, 30)      # the loader prefetched beyond step 30
    assert first == full[:30]
    torch.save(ds_a.state_dict(), tmp_path / "state.pt")
    here = Path(__file__).resolve().parent
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(here), str(tmp_path / "state.pt"), "40"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(s, [tuple(x) for x in rows]) for s, rows in resumed["batches"]] == full[30:]
    assert resumed["rewards"] == pytest.approx(m_full.rewards.tolist(), abs=0)


def test_resume_with_other_settings_is_refused():
    _, m, ds = make()
    state = ds.state_dict()
    store = FakeStore(SIZES)
    other = MixtureDataset(store, OnlineDataMixer.from_store(store, seed=11, lag=4), SEQ, batch_size=8)
    with pytest.raises(UserError, match="different settings"):
        other.load_state_dict(state)


def test_domains_must_match_and_fit_ranks():
    store = FakeStore(SIZES)
    with pytest.raises(UserError, match="differ"):
        MixtureDataset(store, StaticMixer(["code", "news"]), SEQ, 2)
    with pytest.raises(UserError, match="fewer packed sequences"):
        MixtureDataset(FakeStore({"a": 3, "b": 100}), StaticMixer(["a", "b"]), SEQ, 2)


def test_real_shard_store_with_workers(tmp_path):
    from shammie.mixing.store import open_store
    from shammie.mixing.store_testing import write_token_store
    rng = np.random.default_rng(0)
    docs = {d: [rng.integers(3, 300, size=int(n)) for n in rng.integers(20, 200, 40)] for d in ("x", "y", "z")}
    write_token_store(str(tmp_path / "store"), docs, seq_len=16)
    store = open_store(str(tmp_path / "store"))
    mixer = OnlineDataMixer.from_store(store, seed=4, lag=4)
    loader = MixtureDataset(store, mixer, 16, 3).dataloader(num_workers=2)
    seen = {d: set() for d in store.domains}
    it = iter(loader)
    for _ in range(30):
        b = next(it)
        d = b["domain"][0]
        rows = {tuple(r.tolist()) for r in b["input_ids"]}
        all_seqs = {tuple(store.sequence(d, 16, j).tolist()): j for j in range(store.num_sequences(d, 16))}
        assert rows <= set(all_seqs)                        # served rows are that domain's packed sequences
        seen[d] |= {all_seqs[r] for r in rows}
        mixer.update({d: float(b["input_ids"].float().mean()) / 100})
    assert sum(len(v) for v in seen.values()) == 90          # 30 steps x 3 rows, none repeated (no epoch wrap)


class _CountingStore:
    """A store proxy that counts gather() calls; with gather=False it hides the batch path."""

    def __init__(self, store, gather: bool):
        self._store, self.gathers = store, 0
        self.domains = store.domains
        if gather:
            self.gather = self._gather

    def num_tokens(self, d):
        return self._store.num_tokens(d)

    def num_sequences(self, d, seq_len):
        return self._store.num_sequences(d, seq_len)

    def sequence(self, d, seq_len, j):
        return self._store.sequence(d, seq_len, j)

    def _gather(self, d, seq_len, indices):
        self.gathers += 1
        return self._store.gather(d, seq_len, indices)


@pytest.mark.parametrize("per_sample", [False, True])
def test_large_batches_read_through_the_store_batch_path(tmp_path, per_sample):
    from shammie.mixing.store import open_store
    from shammie.mixing.store_testing import write_token_store
    rng = np.random.default_rng(1)
    docs = {d: [rng.integers(3, 300, size=int(n)) for n in rng.integers(50, 200, 60)] for d in ("x", "y")}
    write_token_store(str(tmp_path / "store"), docs, seq_len=16)
    store = open_store(str(tmp_path / "store"))
    streams = []
    for gather in (True, False):
        proxy = _CountingStore(store, gather)
        mixer = StaticMixer.from_store(proxy, "uniform", seed=2)
        it = iter(MixtureDataset(proxy, mixer, 16, 320, per_sample=per_sample).dataloader())
        batches = []
        for _ in range(6):
            b = next(it)
            batches.append((b["domain"], b["input_ids"].clone()))
            mixer.update({d: 1.0 for d in set(b["domain"])})
        streams.append(batches)
        if gather:
            assert proxy.gathers >= 6                      # every batch (>= 128 rows of a domain) used gather()
    for (dom_a, ids_a), (dom_b, ids_b) in zip(*streams):
        assert dom_a == dom_b and torch.equal(ids_a, ids_b)


# -- the read path: vectorised cursors and per-shard views, same stream as before -------------

def _per_row_index(n, seed, domain_index, rank, world, shuffle, k):
    """The cursor as it was first written, one Python call per row: the reference."""
    per_rank = n // world
    epoch, pos = divmod(k, per_rank)
    j = rank + world * pos
    if not shuffle:
        return j
    return int(np.random.default_rng([seed, 0x5E0, domain_index, epoch]).permutation(n)[j])


@pytest.mark.parametrize("n,rank,world,shuffle", [(37, 0, 1, True), (37, 2, 3, True), (10, 1, 2, False),
                                                  (5, 0, 1, True)])
def test_vectorised_cursor_indices_equal_the_per_row_ones(n, rank, world, shuffle):
    from shammie.mixing.dataset import _DomainCursor
    cursor = _DomainCursor(n, 9, 2, rank, world, shuffle)
    per_rank = n // world
    # inside one epoch, across one boundary, and spanning several epochs in one call
    for k, count in [(0, 1), (3, per_rank - 3), (per_rank - 2, 5), (1, 3 * per_rank + 2), (7 * per_rank + 1, 4)]:
        got = cursor.indices(k, count)
        assert got.dtype == np.int64
        assert got.tolist() == [_per_row_index(n, 9, 2, rank, world, shuffle, k + i) for i in range(count)]


def _splitmix(x: int) -> int:
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def _reference_step_draws(mixer, t, policy):
    """Step t's domains from the schedule's definition, one sequence at a time in Python ints:
    u = splitmix(splitmix(splitmix(splitmix(seed ^ 0x0D4A) ^ t) ^ rank) ^ (m << 32 | j)) / 2^64
    (53 bits), domain = first index whose CDF exceeds u."""
    cdf = np.cumsum(policy)
    cdf = (cdf / cdf[-1]).tolist()
    per_batch = mixer.batch_size if mixer.per_sample else 1
    drawn = np.empty((mixer.grad_accum, mixer.batch_size), dtype=np.int64)
    key = _splitmix(_splitmix(_splitmix(mixer.seed ^ 0x0D4A) ^ t) ^ mixer.rank)
    for m in range(mixer.grad_accum):
        for j in range(per_batch):
            u = (_splitmix(key ^ ((m << 32) | j)) >> 11) / float(1 << 53)
            pick = min(next((i for i, c in enumerate(cdf) if c > u), len(cdf) - 1), mixer.num_domains - 1)
            if mixer.per_sample:
                drawn[m, j] = pick
            else:
                drawn[m] = pick
    return drawn


@pytest.mark.parametrize("per_sample", [False, True])
def test_step_draws_equal_the_array_formula(per_sample):
    mixer = StaticMixer(["a", "b", "c", "d"], {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}, seed=5, grad_accum=3)
    mixer.configure(batch_size=6, per_sample=per_sample, rank=1, world_size=2)
    for policy in (mixer.policy_for_step(1), np.array([0.5, 0.0, 0.5, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])):
        for t in range(1, 200):
            mixer._draw_cache = None
            assert np.array_equal(mixer.step_draws(t, policy), _reference_step_draws(mixer, t, policy))


@pytest.mark.parametrize("count", [1, 16, 200])
def test_reader_copies_exactly_the_store_sequences(tmp_path, count):
    """Rows in one shard, rows over several shards, rows spanning two shards, many rows."""
    from shammie.mixing.dataset import _DomainReader
    from shammie.mixing.store import open_store
    from shammie.mixing.store_testing import write_token_store
    rng = np.random.default_rng(3)
    docs = {"one": [rng.integers(3, 300, size=int(n)) for n in rng.integers(20, 200, 40)],
            "many": [rng.integers(3, 300, size=int(n)) for n in rng.integers(20, 400, 400)]}
    write_token_store(str(tmp_path / "store"), docs, seq_len=16, shard_tokens=9_000)
    store = open_store(str(tmp_path / "store"))
    for name in store.domains:
        reader, n = _DomainReader(store, name, 16), store.num_sequences(name, 16)
        assert (reader.single is not None) == (name == "one")
        starts = store._domain(name).tok_starts[1:-1]
        spanning = [b // 16 for b in starts if b % 16]          # rows that cross a shard end
        assert (len(spanning) > 3) == (name == "many")
        for trial in range(5):
            idx = rng.integers(0, n, count)
            if trial == 0:
                idx = np.full(count, n - 1)
            if trial == 1 and spanning:
                idx[: len(spanning)] = spanning[:count]
            expect = np.stack([store.sequence(name, 16, int(j)) for j in idx]).astype(np.int64)
            out = np.full((count, 16), -1, dtype=np.int64)
            reader.read(idx, out, None)
            assert np.array_equal(out, expect)
            rows = rng.permutation(count + 3)[:count]
            out = np.full((count + 3, 16), -1, dtype=np.int64)
            reader.read(idx, out, rows)
            assert np.array_equal(out[rows], expect)
            assert (np.delete(out, rows, axis=0) == -1).all()
