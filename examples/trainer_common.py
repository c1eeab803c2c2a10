"""What the trainer examples share (`hf_trainer.py`, `lightning_trainer.py`): their
command-line flags, and how a data-parallel run ends."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys


def add_trainer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="shard store to train on")
    p.add_argument("--max-steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--log", required=True, help="mixing log (JSONL), written by rank 0")
    p.add_argument("--mixer", choices=["odm", "uniform", "natural"], default="odm")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch and rank")
    p.add_argument("--seq-len", type=int, default=64, help="tokens the model predicts per sequence")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)


def end_process_group() -> None:
    """Destroy the default process group after the trainer and model are released, so that
    gloo's threads stop while the interpreter is still whole.

    HF's Trainer and Lightning both leave the group up after training, and the DDP wrapper
    they keep holds a reference to it: `destroy_process_group()` alone only unregisters the
    group, and gloo's transport and worker threads run on into interpreter exit, where they
    race its teardown: a rank of the HF example aborted with "terminate called without an
    active exception" once in about 165 two-rank runs. Call it once nothing refers to the
    trainer any more."""
    import torch.distributed as dist

    # The trainer and its callbacks refer to each other: only the cycle collector frees
    # them, and with them the DDP wrapper's reference to the group.
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()    # the last reference: gloo joins its threads here


def finish_rank(summary: dict) -> None:
    """Print this rank's summary as one JSON line, then end the process group."""
    # One write() of less than PIPE_BUF bytes: the ranks share stdout, and print() may split
    # a line into several writes that interleave with the other rank's.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(summary) + "\n").encode())
    end_process_group()
