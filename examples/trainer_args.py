"""The command-line flags the trainer examples share (`hf_trainer.py`, `lightning_trainer.py`)."""

from __future__ import annotations

import argparse


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
