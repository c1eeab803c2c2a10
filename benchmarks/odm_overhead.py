"""ODM mixer overhead per optimizer step, with gradient accumulation.

    .venv/bin/python benchmarks/odm_overhead.py [--steps 2000] [--domains 7] [--batch 16]

Per optimizer step of K micro-batches (K = 1, 4, 16) this times, without a model:

  mixer     : what the mixer adds to a training loop: grouping each micro-batch's
              per-sequence losses by domain (DomainLossAccumulator), one update() per
              step (validation, reward, next policy, cursors, log record) and the draws
              of the step's K micro-batches
  fetch     : the whole in-process loader path as well: K micro-batches drawn, read
              from an in-memory store (seq_len 2048) and turned into tensors

for each rule ("paper", "authors_code", "progress"). Prints one JSON line per setting
with milliseconds per optimizer step and per micro-batch (median of 5 rounds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


class _MemoryStore:
    """Domains of random tokens held in memory (the read is a slice copy)."""

    def __init__(self, domains: int, tokens: int):
        rng = np.random.default_rng(0)
        self.domains = [f"d{i}" for i in range(domains)]
        self._tokens = {d: rng.integers(0, 32000, tokens, dtype=np.uint16) for d in self.domains}

    def num_tokens(self, d):
        return len(self._tokens[d])

    def num_sequences(self, d, seq_len):
        return len(self._tokens[d]) // seq_len

    def sequence(self, d, seq_len, j):
        return self._tokens[d][j * seq_len:(j + 1) * seq_len]


def measure(rule: str, k: int, args, store) -> dict:
    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.losses import DomainLossAccumulator
    from shammie.mixing.mixer import OnlineDataMixer
    losses_per_seq = torch.rand(args.batch) + 2.0

    def mixer_only(steps: int) -> float:
        m = OnlineDataMixer(store.domains, rule=rule, grad_accum=k, seed=1)
        m.configure(batch_size=args.batch, seq_len=2048,
                    num_sequences=[store.num_sequences(d, 2048) for d in store.domains])
        began = time.perf_counter()
        acc = DomainLossAccumulator()
        for _ in range(steps):
            draws = m.step_draws(m.step + 1)
            for micro in range(k):
                acc.add(losses_per_seq, [m.domains[i] for i in draws[micro]])
            m.update(acc.pop())
        return (time.perf_counter() - began) / steps

    def fetch(steps: int) -> float:
        m = OnlineDataMixer(store.domains, rule=rule, grad_accum=k, seed=1)
        it = iter(MixtureDataset(store, m, 2048, args.batch).dataloader())
        began = time.perf_counter()
        acc = DomainLossAccumulator()
        for _ in range(steps):
            for _ in range(k):
                b = next(it)
                acc.add(losses_per_seq, b["domain"], step=b["step"])
            m.update(acc.pop(), step=b["step"])
        return (time.perf_counter() - began) / steps

    steps = max(50, args.steps // k)
    mixer_ms = float(np.median([mixer_only(steps) for _ in range(5)])) * 1e3
    fetch_ms = float(np.median([fetch(steps) for _ in range(5)])) * 1e3
    return {"rule": rule, "grad_accum": k, "domains": len(store.domains), "batch": args.batch,
            "mixer_ms_per_step": round(mixer_ms, 3), "mixer_ms_per_micro_batch": round(mixer_ms / k, 3),
            "fetch_ms_per_step": round(fetch_ms, 3), "fetch_ms_per_micro_batch": round(fetch_ms / k, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--domains", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rules", nargs="+", default=None, help="rules to time (default: every learning rule)")
    ap.add_argument("--grad-accum", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args(argv)
    from shammie.mixing.rules import RULES
    rules = args.rules or sorted(set(RULES) - {"static"})
    torch.set_num_threads(1)
    store = _MemoryStore(args.domains, 4_000_000)
    import os
    for rule in rules:
        for k in args.grad_accum:
            print(json.dumps({**measure(rule, k, args, store), "load_avg": round(os.getloadavg()[0], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
