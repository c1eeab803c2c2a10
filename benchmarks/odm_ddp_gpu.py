"""ODM under NCCL: two GPU processes keep bit-identical mixture weights.

    .venv/bin/python benchmarks/odm_ddp_gpu.py [--steps 200] [--workers 2]

NCCL only reduces CUDA tensors, so the mixer's per-domain loss all_reduce must run
on the process's CUDA device (`shammie.mixing.mixer.reduction_device`); the CPU
tests cover gloo and the device choice with a mocked backend. This script checks
the real thing: 2 processes, NCCL, one GPU each, a data-parallel group passed as
`process_group`, DataLoader workers, and per-rank losses that differ. It prints one
JSON line and exits 0 when every step's weights agree on both ranks and the ranks
drew different data; it exits 0 with a "skipped:" line when fewer than 2 CUDA
devices (or no NCCL) are at hand, and 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile

import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _SyntheticStore:
    """Three domains of distinct token ranges, enough for the run (no disk)."""

    domains = ["a", "b", "c"]

    def num_tokens(self, d):
        return 400_000

    def num_sequences(self, d, seq_len):
        return self.num_tokens(d) // seq_len

    def sequence(self, d, seq_len, j):
        import numpy as np
        base = self.domains.index(d) * 1_000_000
        return np.arange(base + j * seq_len, base + (j + 1) * seq_len, dtype=np.int64)


def _rank_main(rank: int, args, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from shammie.mixing.dataset import MixtureDataset
    from shammie.mixing.mixer import OnlineDataMixer, reduction_device
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    group = dist.new_group([0, 1])                 # the data-parallel group (here: everyone)
    store = _SyntheticStore()
    mixer = OnlineDataMixer(store.domains, seed=0, process_group=group)
    data = MixtureDataset(store, mixer, 64, 4)
    batches = iter(data.dataloader(num_workers=args.workers))
    weights, domains = [], []
    for _ in range(args.steps):
        b = next(batches)
        d = b["domain"][0]
        x = b["input_ids"].cuda().float()
        # a loss that differs per rank and per domain, computed on the GPU like a real one
        loss = (x.mean() % 7) / 7 + 1.0 + rank * 0.5 + (2.0 if d == "b" else 0.0)
        rec = mixer.update({d: loss}, step=b["step"])
        weights.append(rec["weights"])
        domains.append(d)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"weights": weights, "domains": domains, "device": str(reduction_device(group)),
                   "final": mixer.weights()}, f)
    dist.destroy_process_group()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    import torch.distributed as dist
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        print(f"skipped: needs 2 CUDA devices, this machine has {torch.cuda.device_count()} "
              f"(torch {torch.__version__}); the gloo/CPU path is tested in tests/test_mix_distributed.py")
        return 0
    if not dist.is_available() or not dist.is_nccl_available():
        print("skipped: this torch build has no NCCL")
        return 0
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, args=(args, _free_port(), out_dir), nprocs=2, join=True)
        r0, r1 = (json.load(open(os.path.join(out_dir, f"rank{r}.json"))) for r in (0, 1))
    same = r0["weights"] == r1["weights"] and r0["final"] == r1["final"]
    differ = sum(a != b for a, b in zip(r0["domains"], r1["domains"]))
    print(json.dumps({"steps": args.steps, "weights_identical": same, "steps_drawing_different_domains": differ,
                      "reduction_device": [r0["device"], r1["device"]], "final_weights": r0["final"]}))
    return 0 if same and differ > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
