"""What the trainer examples share (`hf_trainer.py`, `lightning_trainer.py`): their
command-line flags, the mixer they build, and how a data-parallel run ends."""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import signal
import sys

from shammie.mixing.mixer import OnlineDataMixer, StaticMixer


def add_trainer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="shard store to train on")
    p.add_argument("--max-steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--log", required=True, help="mixing log (JSONL), written by rank 0")
    p.add_argument("--mixer", default="odm",
                   help="odm (the default rule), a rule name (shammie.mixing.rules), uniform or natural")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per micro-batch and rank")
    p.add_argument("--seq-len", type=int, default=64, help="tokens the model predicts per sequence")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-steps", type=int, default=0, help="save a checkpoint every N steps (0: never)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from this checkpoint (model, optimizer and the mixture's stream)")
    p.add_argument("--kill-at-step", type=int, default=0,
                   help="SIGKILL this process after that optimizer step (to test resuming after a crash)")


def make_mixer(args: argparse.Namespace, store):
    """The example's mixer: the default online rule, a named rule, or a static mixture."""
    if args.mixer in ("uniform", "natural"):
        return StaticMixer.from_store(store, args.mixer, seed=args.seed, grad_accum=args.grad_accum)
    rule = None if args.mixer == "odm" else args.mixer
    return OnlineDataMixer.from_store(store, rule=rule, seed=args.seed, grad_accum=args.grad_accum)


def kill_at(step_to_kill: int, step: int) -> None:
    """SIGKILL this process once `step` reaches `step_to_kill` (a crash: nothing is flushed or saved)."""
    if step_to_kill and step >= step_to_kill:
        os.kill(os.getpid(), signal.SIGKILL)


def param_sha256(model) -> str:
    """A hash of the model's parameters (the resume tests compare runs bit for bit)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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
