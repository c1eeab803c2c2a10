"""MixtureDataset read rate against raw memmap reads of the same store.

    .venv/bin/python benchmarks/odm_read_rate.py [--tokens-per-domain 4e6] [--seq-len 2048] [--batch 16] [--repeat 3]

Writes a synthetic 4-domain store (random tokens) with the store's own test helper,
then, on one core with the page cache warm, measures tokens/s of:

  raw rows         : bare numpy, random rows of each domain's shard memmap copied into
                     an int64 (batch, seq_len) buffer -- the floor for random sequences,
                     which is what MixtureDataset serves (a fresh permutation per epoch)
  store.batches    : the store's block-shuffled batch path (ShardStore.batches)
  dataset          : MixtureDataset (0 workers, uniform static mixer, update() every step),
                     as shipped: a micro-batch's rows of one shard are one fancy-indexing copy
                     from the store's per-shard sequence views
  dataset no-update: the same without mixer.update() (a static mixer allows it): the
                     loader's own cost, without the mixer's per-step work
  dataset gather   : through a store wrapper that only has gather() and sequence(): one
                     store.gather() per micro-batch and domain
  dataset per-seq  : through a store wrapper that only has sequence(): one call per row

Rounds are interleaved; each line gives the best rate and the median ratio to raw rows.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np


class _SequenceOnly:
    """The store without its batch path: MixtureDataset falls back to store.sequence()."""

    def __init__(self, store):
        self._store = store
        self.domains = store.domains

    def num_tokens(self, d):
        return self._store.num_tokens(d)

    def num_sequences(self, d, seq_len):
        return self._store.num_sequences(d, seq_len)

    def sequence(self, d, seq_len, j):
        return self._store.sequence(d, seq_len, j)


class _GatherOnly(_SequenceOnly):
    """The store's public batch call without its layout: MixtureDataset uses gather()."""

    def gather(self, d, seq_len, indices):
        return self._store.gather(d, seq_len, indices)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens-per-domain", type=float, default=4e6)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200, help="batches per measurement")
    args = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    import torch
    torch.set_num_threads(1)
    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.mixer import StaticMixer
    from shammie.mixing.store import open_store
    from shammie.mixing.store_testing import write_token_store

    L, B, steps = args.seq_len, args.batch, args.steps
    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp(prefix="odm-read-")
    per_doc = 4000
    docs = {f"domain{i}": [rng.integers(3, 400, size=per_doc) for _ in range(int(args.tokens_per_domain) // per_doc)]
            for i in range(4)}
    write_token_store(os.path.join(folder, "store"), docs, seq_len=L)
    store = open_store(os.path.join(folder, "store"))
    for d in store.domains:                                        # warm the page cache
        for j in range(0, store.num_sequences(d, L), 8):
            store.sequence(d, L, j)

    # raw rows: the shard files themselves, memory-mapped with numpy
    shard_files = sorted(f for f in glob.glob(os.path.join(folder, "store", "**", "*"), recursive=True)
                         if os.path.isfile(f) and f.endswith(".tokens"))
    views = []
    dtype = np.dtype(store.sequence(store.domains[0], L, 0).dtype)
    for f in shard_files:
        flat = np.memmap(f, dtype=dtype, mode="r").view(np.ndarray)
        if flat.size >= L * B:
            views.append(flat[: flat.size // L * L].reshape(-1, L))
    if not views:
        raise SystemExit(f"no token shard files found under {folder}/store (looked for *.tokens)")
    out = np.empty((B, L), np.int64)

    def raw_rows():
        order_rng = np.random.default_rng(1)
        for s in range(steps):
            v = views[s % len(views)]
            out[:] = v[order_rng.integers(0, v.shape[0], B)]
        return steps * B * L

    def store_batches():
        done = 0
        while done < steps:
            for d in store.domains:
                for batch in store.batches(d, L, B, seed=done, drop_last=True, reuse_buffer=True):
                    done += 1
                    if done >= steps:
                        return steps * B * L
        return steps * B * L

    def dataset(source, update=True):
        def run():
            mixer = StaticMixer(store.domains, "uniform", seed=3)
            data = MixtureDataset(source, mixer, L, B)
            it = iter(data.dataloader())
            for _ in range(steps):
                b = next(it)
                if update:
                    mixer.update({b["domain"][0]: 1.0})
            return steps * B * L
        return run

    import shammie.mixing.dataset as dataset_module

    def always_gather():
        threshold = dataset_module._GATHER_MIN_ROWS
        dataset_module._GATHER_MIN_ROWS = 1
        try:
            return dataset(_GatherOnly(store))()
        finally:
            dataset_module._GATHER_MIN_ROWS = threshold

    variants = [("raw rows", raw_rows), ("store.batches", store_batches), ("dataset", dataset(store)),
                ("dataset no-update", dataset(store, update=False)), ("dataset gather", always_gather),
                ("dataset per-seq", dataset(_SequenceOnly(store)))]
    rates = {name: [] for name, _ in variants}
    for _ in range(args.repeat):
        for name, fn in variants:
            t = time.perf_counter()
            count = fn()
            rates[name].append(count / (time.perf_counter() - t))
    summary = {}
    for name, _ in variants:
        ratio = float(np.median(np.array(rates[name]) / np.array(rates["raw rows"])))
        summary[name] = {"best_M_tokens_per_s": round(max(rates[name]) / 1e6, 1), "median_ratio_to_raw": round(ratio, 2)}
        print(f"{name:18s} {max(rates[name]) / 1e6:8.1f} M tokens/s   ratio to raw rows {ratio:.2f}")
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"seq_len": L, "batch": B, "tokens_per_domain": int(args.tokens_per_domain),
                      "shard_files": len(views), "load_avg": os.getloadavg()[0], "rates": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
