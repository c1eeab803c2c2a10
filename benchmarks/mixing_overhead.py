"""Online Data Mixing: sampler overhead per training step, and sequences/s served.

    .venv/bin/python benchmarks/mixing_overhead.py [--store PATH] [--steps 300]

1. Overhead: per step, the mixer's own work (`update()` with the loss, the draw
   of the next step's domain, cursor bookkeeping) and the full batch fetch
   (mixer + store reads + tensor), as a fraction of one training step (forward,
   backward, AdamW) of the tiny GPT in examples/train_tiny_gpt.py. Target < 1%.
2. Throughput: sequences/s a DataLoader serves from MixtureDataset (ODM, lag 4,
   batch 16 x 65 tokens) with 0 and 2 workers, the loop calling `mixer.update()`
   every step as a trainer would (no model).

Without --store it writes a synthetic 8-domain store (random tokens, 250k per
domain) to a temporary folder with the store module's own test helper.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.mixer import OnlineDataMixer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def synthetic_store(folder: str) -> str:
    from shammie.mixing.store_testing import tiny_tokenizer, write_token_store
    tok = tiny_tokenizer()
    rng = np.random.default_rng(0)
    domains = {f"domain{i}": [rng.integers(3, tok.vocab_size, size=int(n)) for n in rng.integers(50, 800, 600)]
               for i in range(8)}
    path = os.path.join(folder, "store")
    write_token_store(path, domains, tok, seq_len=65)
    return path


def time_per_step(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def overhead(store, steps: int, batch: int, seq_len: int, vocab: int) -> dict:
    import train_tiny_gpt as ex

    # (a) mixer only: update + next draw + cursor bookkeeping, as in the training loop
    mixer = OnlineDataMixer.from_store(store, seed=0)
    mixer.configure(batch_size=batch)
    losses = {d: 4.0 + i / 10 for i, d in enumerate(store.domains)}

    def mixer_step():
        d = mixer.domains[int(mixer.draw_indices(mixer.step + 1)[0])]
        mixer.update({d: losses[d]})

    mixer_s = time_per_step(mixer_step, steps)

    # (b) whole batch fetch through the dataset in the training process (num_workers=0)
    mixer2 = OnlineDataMixer.from_store(store, seed=0)
    batches = iter(MixtureDataset(store, mixer2, seq_len + 1, batch).dataloader(num_workers=0))

    def fetch_step():
        b = next(batches)
        mixer2.update({b["domain"][0]: losses[b["domain"][0]]})

    fetch_s = time_per_step(fetch_step, steps)

    # (c) one training step of the example's tiny GPT on such a batch
    model = ex.TinyGPT(max(vocab, store.vocab_size), seq_len)   # the example's size, whatever the store
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = next(batches)["input_ids"]

    def train_step():
        loss = ex.sequence_losses(model, ids).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step()
    train_s = time_per_step(train_step, max(10, steps // 10))
    return {"mixer_ms": mixer_s * 1e3, "fetch_ms": fetch_s * 1e3, "train_step_ms": train_s * 1e3,
            "mixer_fraction": mixer_s / train_s, "fetch_fraction": fetch_s / train_s,
            "model_params": sum(p.numel() for p in model.parameters())}


def throughput(store, workers: int, steps: int, batch: int, seq_len: int) -> dict:
    mixer = OnlineDataMixer.from_store(store, seed=1, lag=4)
    loader = MixtureDataset(store, mixer, seq_len + 1, batch).dataloader(num_workers=workers)
    it = iter(loader)
    b = next(it)                                   # worker start-up is not part of the rate
    mixer.update({b["domain"][0]: 4.0})
    t0 = time.perf_counter()
    for _ in range(steps):
        b = next(it)
        mixer.update({b["domain"][0]: 4.0 + len(b["domain"][0]) / 10})
    s = time.perf_counter() - t0
    del it, loader
    return {"workers": workers, "steps": steps, "sequences_per_s": steps * batch / s, "batches_per_s": steps / s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="an existing shard store (default: a synthetic one in a temp folder)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vocab", type=int, default=3072, help="model vocabulary (the example's default)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from shammie.mixing.store import open_store
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.store or synthetic_store(tmp))
        print(f"store: {args.store or 'synthetic'}; domains {len(store.domains)}, "
              f"{sum(store.num_tokens(d) for d in store.domains)} tokens; load {os.getloadavg()}", flush=True)
        result = {"overhead": overhead(store, args.steps, args.batch_size, args.seq_len, args.vocab),
                  "throughput": [throughput(store, w, args.steps, args.batch_size, args.seq_len) for w in (0, 2)],
                  "load_after": os.getloadavg()}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
