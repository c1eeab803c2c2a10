"""The hardware floor under shuffled store reading: bare numpy, no store code.

    .venv/bin/python benchmarks/store_gather_floor.py [--tokens 100e6] [--seq-len 2048] [--batch 32] [--repeat 3]

Writes one file of random uint16 tokens, memory-maps it as a (rows, seq_len) array and,
on one core with the page cache warm, times filling an int64 (batch, seq_len) buffer:
  bulk          : streaming copy of the whole map, 1M tokens at a time (store_read.py's ceiling)
  blocks K      : batches made of batch/K random blocks of K consecutive rows (one fancy index)
  in order      : consecutive rows, one slice per batch
  anon K=1      : random rows from a copy in anonymous memory (transparent huge pages)
Rounds are interleaved; each line gives the best rate and the median ratio to bulk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=float, default=100e6)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    n, L, B = int(args.tokens), args.seq_len, args.batch
    path = os.path.join(tempfile.mkdtemp(prefix="gather-floor-"), "tokens.bin")
    np.random.default_rng(0).integers(0, 32000, n, dtype=np.uint16).tofile(path)
    flat = np.memmap(path, dtype=np.uint16, mode="r").view(np.ndarray)
    rows = n // L
    view = flat[: rows * L].reshape(rows, L)
    int(flat[::2048].sum())  # warm the page cache
    chunk = np.empty(1 << 20, np.int64)
    out = np.empty((B, L), np.int64)

    def bulk():
        for s in range(0, n, len(chunk)):
            part = flat[s:s + len(chunk)]
            chunk[:len(part)] = part
        return n

    def blocks(K, source):
        nb = rows // K
        order = (np.random.default_rng(K).permutation(nb)[:, None] * K + np.arange(K)).reshape(-1)

        def run():
            for s in range(0, len(order) - B + 1, B):
                out[:] = source[order[s:s + B]]
            return (len(order) // B) * B * L
        return run

    def in_order():
        for s in range(0, rows - B + 1, B):
            out[:] = view[s:s + B]
        return (rows // B) * B * L

    variants = [("bulk", bulk)] + [(f"blocks K={k}", blocks(k, view)) for k in (1, 2, 4, 8, 16) if k <= B]
    variants += [("in order", in_order), ("anon K=1", blocks(1, np.array(view)))]
    rates = {name: [] for name, _ in variants}
    for _ in range(args.repeat):
        for name, fn in variants:
            t = time.perf_counter()
            count = fn()
            rates[name].append(count / (time.perf_counter() - t))
    for name, _ in variants:
        ratio = float(np.median(np.array(rates[name]) / np.array(rates["bulk"])))
        print(f"{name:12s} {max(rates[name]) / 1e6:8.0f} M tokens/s   ratio to bulk {ratio:.2f}")
    os.unlink(path)


if __name__ == "__main__":
    main()
