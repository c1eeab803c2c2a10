"""Online data mixing inside a Lightning `Trainer` (tiny GPT, CPU is fine).

    .venv/bin/python examples/lightning_trainer.py --store STORE --max-steps 200 --grad-accum 4 --log odm.jsonl
    .venv/bin/python examples/lightning_trainer.py --store STORE --devices 2 --strategy ddp ...   # one stream per rank

What matters (docs/integrations.md explains each):

* `train_dataloader()` returns `MixtureDataset.dataloader()` (batch_size=None: one whole
  micro-batch per item), and the Trainer gets `use_distributed_sampler=False`, so Lightning
  neither re-creates the loader nor shards a stream every rank draws for itself.
* `training_step` computes one loss per sequence from the logits and adds it, detached,
  to a per-domain accumulator; `mixer.update()` runs once per optimizer step, in
  `on_before_optimizer_step` (after the backward passes of all `accumulate_grad_batches`
  micro-batches). The mixer is built with `grad_accum` equal to `accumulate_grad_batches`.
* The mixer is created in `setup()`, where Lightning has initialised torch.distributed,
  so it reads the rank and world size of this process; there, too, every rank switches
  to rank 0's store build (`same_build_across_ranks`).
* Lightning leaves the process group up after `fit()`: `main()` trains in a function,
  then `end_process_group()` frees the Trainer and destroys the group, so gloo's threads
  stop before the interpreter exits.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import torch

# the examples' shared flags and run end live beside this file (also when the file is imported, not run)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainer_common import add_trainer_arguments, finish_rank  # noqa: E402
import torch.nn as nn

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.losses import DomainLossAccumulator, sequence_losses, unpack_batch
from shammie.mixing.mixer import MixLog, OnlineDataMixer, StaticMixer
from shammie.mixing.store import open_store, same_build_across_ranks

import lightning as L  # noqa: E402  (after torch, like Lightning's own examples)


class TinyLM(nn.Module):
    """Embedding -> one causal Transformer encoder stack -> tied output layer."""

    def __init__(self, vocab: int, seq_len: int, width: int, layers: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        layer = nn.TransformerEncoderLayer(width, max(1, width // 16), 4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tok.weight
        for p in (self.tok.weight, self.pos.weight):
            # nn.Embedding's N(0, 1) init, tied to the output layer, gives ~30-nat logits at step 0
            nn.init.normal_(p, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        return self.head(self.blocks(x, mask=mask, is_causal=True))


class MixingModule(L.LightningModule):
    def __init__(self, args: argparse.Namespace):
        super().__init__()
        self.args = args
        self.store = open_store(args.store)
        self.model = TinyLM(self.store.vocab_size, args.seq_len, args.width, args.layers)
        self.domain_losses = DomainLossAccumulator()
        self.mixture: MixtureDataset | None = None
        self.mix_log: MixLog | None = None
        self.micro_batches = 0
        self.updates = 0
        self.seen = hashlib.sha256()    # what this rank trained on (the test compares ranks)

    def setup(self, stage: str) -> None:
        # torch.distributed is initialised by now: the mixer takes this process's rank from it.
        a = self.args
        # every rank reads rank 0's build, even if the store was rebuilt while ranks started
        self.store = same_build_across_ranks(self.store)
        if a.mixer == "odm":
            mixer = OnlineDataMixer.from_store(self.store, seed=a.seed, grad_accum=a.grad_accum)
        else:
            mixer = StaticMixer.from_store(self.store, a.mixer, seed=a.seed, grad_accum=a.grad_accum)
        self.mixture = MixtureDataset(self.store, mixer, seq_len=a.seq_len + 1, batch_size=a.batch_size)
        if self.global_rank == 0:
            if os.path.exists(a.log):
                os.remove(a.log)                   # a fresh run
            self.mix_log = MixLog(a.log)

    def train_dataloader(self):
        return self.mixture.dataloader(num_workers=self.args.workers)

    def training_step(self, batch, batch_idx):
        ids, domains, step = unpack_batch(batch)
        per_seq = sequence_losses(self.model(ids[:, :-1]), ids[:, 1:])
        self.domain_losses.add(per_seq, domains, step=step)
        self.micro_batches += 1
        self.seen.update(ids.cpu().numpy().tobytes())
        loss = per_seq.mean()   # Lightning divides by accumulate_grad_batches itself
        self.log("train_loss", loss, prog_bar=True, batch_size=len(domains))
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Called once per optimizer step, after all accumulated micro-batches' backward.
        record = self.mixture.mixer.update(self.domain_losses.means(), step=self.domain_losses.step)
        self.domain_losses.reset()
        self.updates += 1
        if self.mix_log is not None:
            self.mix_log.write(record)

    def on_train_end(self) -> None:
        if self.mix_log is not None:
            self.mix_log.close()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.args.lr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(p)
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    args = p.parse_args(argv)
    if args.grad_accum < 1 or args.max_steps < 1:
        p.error("--grad-accum and --max-steps must be >= 1")
    # One line per rank: each rank trained on its own data, with the same weights.
    # Called once train() has returned: nothing refers to the Trainer any more.
    finish_rank(train(args))
    return 0


def train(args: argparse.Namespace) -> dict:
    """Trains with online mixing; returns this rank's summary."""
    L.seed_everything(args.seed, verbose=False)
    module = MixingModule(args)
    trainer = L.Trainer(max_steps=args.max_steps, accumulate_grad_batches=args.grad_accum,
                        devices=int(args.devices) if args.devices.isdigit() else args.devices,
                        strategy=args.strategy, accelerator="auto", use_distributed_sampler=False,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=max(1, args.max_steps // 10))
    trainer.fit(module)
    mixer = module.mixture.mixer
    return {"rank": trainer.global_rank, "world_size": trainer.world_size, "log": args.log,
            "optimizer_steps": trainer.global_step, "micro_batches": module.micro_batches,
            "mixer_step": mixer.step, "updates": module.updates, "weights": mixer.weights(),
            "data_sha256": module.seen.hexdigest()}


if __name__ == "__main__":
    sys.exit(main())
