"""Read throughput of the shard store: packed sequences from memory-mapped shards vs raw numpy.memmap.

    .venv/bin/python benchmarks/store_read.py [--tokens 100e6] [--seq-len 2048] [--shard-tokens 32e6]

Writes a synthetic store (random token ids, document lengths drawn from a
geometric distribution, mean ~600 tokens) with StoreWriter, warms the page
cache, then, on one core, times:
  raw-bulk      : numpy.memmap of each .tokens file, converted to int64 1M tokens at a time (the ceiling)
  raw-seq       : the same memmaps sliced sequentially seq_len at a time, each copied to an int64 buffer
  batches       : ShardStore.batches(batch_size, reuse_buffer=True): the loader path, default shuffle
                  (blocks of auto_shuffle_block consecutive sequences), int64 (batch, seq_len)
  batches-full  : the same with shuffle_block=1 (every sequence placed independently)
  batches-seq   : the same with shuffle=False
  batches-new   : default shuffle with a fresh array per batch (reuse_buffer=False)
  packed        : ShardStore.sequences(), default shuffle, each sequence copied to an int64 buffer
  packed-full   : sequences(shuffle_block=1)
  packed-seq    : sequences(shuffle=False)
  batches-kK    : with --shuffle-blocks K...: batches() with shuffle_block=K
Every variant touches every token once and does the same int64 conversion a
training loader does; results are tokens/s. The variants run interleaved, one
after another in each of --repeat rounds, so a change in machine load hits all
of them; the table gives each variant's best round and the median over rounds of
its ratio to raw-bulk in the same round.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time

import numpy as np


def _store(path: str, total_tokens: int, shard_tokens: int) -> None:
    from shammie.mixing.store_testing import tiny_tokenizer, write_token_store

    rng = np.random.default_rng(0)
    tok = tiny_tokenizer()
    docs, n = [], 0
    while n < total_tokens:
        length = int(rng.geometric(1 / 600))
        docs.append(rng.integers(3, tok.vocab_size, length, dtype=np.uint16))
        n += length + 1
    write_token_store(path, {"bench": docs}, tok, shard_tokens=shard_tokens)


def _rate(fn) -> tuple[float, int]:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=float, default=100e6)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--shard-tokens", type=float, default=32e6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--shuffle-blocks", type=int, nargs="*", default=[],
                    help="also time batches() with each of these shuffle_block values")
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    from shammie.mixing.store import open_store

    tmp = args.dir or tempfile.mkdtemp(prefix="store-bench-")
    path = os.path.join(tmp, "store")
    t = time.perf_counter()
    _store(path, int(args.tokens), int(args.shard_tokens))
    print(f"wrote synthetic store in {time.perf_counter() - t:.1f} s at {path}")
    store = open_store(path)
    t = time.perf_counter()
    store.verify()
    print(f"verify (xxh3 of every file): {time.perf_counter() - t:.2f} s")
    L = args.seq_len
    files = sorted(glob.glob(os.path.join(path, "bench", "*.tokens")))
    maps = [np.memmap(f, dtype="<u2", mode="r") for f in files]
    for m in maps:  # warm the page cache
        int(m[:: 4096].sum())
    buf = np.empty(L, dtype=np.int64)
    chunk = np.empty(1 << 20, dtype=np.int64)

    def raw_bulk():
        n = 0
        for m in maps:
            for s in range(0, len(m), len(chunk)):
                part = m[s:s + len(chunk)]
                chunk[:len(part)] = part
                n += len(part)
        return n

    def raw_seq():
        n = 0
        for m in maps:
            for s in range(0, len(m) - L + 1, L):
                buf[:] = m[s:s + L]
                n += L
        return n

    def packed(shuffle, block=None):
        def run():
            n = 0
            for seq in store.sequences("bench", L, seed=0, shuffle=shuffle, shuffle_block=block):
                buf[:] = seq
                n += L
            return n
        return run

    def batched(shuffle, block=None, reuse=True):
        def run():
            n = 0
            for batch in store.batches("bench", L, args.batch_size, seed=0, shuffle=shuffle, shuffle_block=block,
                                       reuse_buffer=reuse):
                n += batch.size  # already int64: the conversion is part of the gather
            return n
        return run

    from shammie.mixing.store import auto_shuffle_block

    block = auto_shuffle_block(store.num_sequences("bench", L), L)
    print(f"default shuffle block: {block} sequences of {L} tokens")
    variants = [("raw-bulk", raw_bulk), ("raw-seq", raw_seq), ("batches", batched(True)),
                ("batches-full", batched(True, block=1)), ("batches-seq", batched(False)),
                ("batches-new", batched(True, reuse=False)), ("packed", packed(True)),
                ("packed-full", packed(True, block=1)), ("packed-seq", packed(False))]
    variants += [(f"batches-k{k}", batched(True, block=k)) for k in args.shuffle_blocks]
    rates: dict[str, list[float]] = {name: [] for name, _ in variants}
    tokens = {}
    for _ in range(args.repeat):
        for name, fn in variants:
            rate, tokens[name] = _rate(fn)
            rates[name].append(rate)
    print(f"{'variant':13s} {'best M tok/s':>12s} {'median ratio to raw-bulk':>25s}")
    for name, _ in variants:
        ratio = float(np.median(np.array(rates[name]) / np.array(rates["raw-bulk"])))
        print(f"{name:13s} {max(rates[name]) / 1e6:12.1f} {ratio:25.2f}   ({tokens[name]} tokens)")


if __name__ == "__main__":
    main()
