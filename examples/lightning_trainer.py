"""Online data mixing inside a Lightning `Trainer` (tiny GPT, CPU is fine).

    .venv/bin/python examples/lightning_trainer.py --store STORE --max-steps 200 --grad-accum 4 --log odm.jsonl
    .venv/bin/python examples/lightning_trainer.py --store STORE ... --save-steps 50 --resume CKPT  # exact resume
    .venv/bin/python examples/lightning_trainer.py --store STORE --devices 2 --strategy ddp ...   # one stream per rank

The mixing takes four lines (marked below): `shammie.mixing.lightning.MixingDataModule`
(it builds the MixtureDataset in `setup()`, where Lightning has initialised
torch.distributed, on rank 0's store build), its callback in the Trainer (with
`use_distributed_sampler=False`, so Lightning neither re-creates the loader nor shards a
stream every rank draws for itself), one `add()` of the per-sequence losses in
`training_step`, and `fit(datamodule=...)`. The callback calls `mixer.update()` once per
optimizer step; the mixture's state goes into every checkpoint and comes back on resume
(rank 0's checkpoint resumes every rank). Lightning leaves the process group up after
`fit()`: `main()` trains in a function, then `finish_rank()` frees the Trainer and
destroys the group, so gloo's threads stop before the interpreter exits.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import torch

# the examples' shared flags and run end live beside this file (also when the file is imported, not run)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainer_common import add_trainer_arguments, finish_rank, kill_at, make_mixer, param_sha256  # noqa: E402
import torch.nn as nn

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.lightning import MixingDataModule
from shammie.mixing.losses import sequence_losses, unpack_batch
from shammie.mixing.store import open_store

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


class LanguageModel(L.LightningModule):
    def __init__(self, vocab: int, args: argparse.Namespace):
        super().__init__()
        self.args = args
        self.model = TinyLM(vocab, args.seq_len, args.width, args.layers)
        self.seen = hashlib.sha256()    # what this rank trained on (the tests compare ranks)

    def training_step(self, batch, batch_idx):
        ids, domains, _ = unpack_batch(batch)
        per_seq = sequence_losses(self.model(ids[:, :-1]), ids[:, 1:])
        self.trainer.datamodule.add(per_seq, batch)                                           # mixing 3/4
        self.seen.update(ids.cpu().numpy().tobytes())
        loss = per_seq.mean()   # Lightning divides by accumulate_grad_batches itself
        self.log("train_loss", loss, prog_bar=True, batch_size=len(domains))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        kill_at(self.args.kill_at_step, self.trainer.global_step)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=self.args.lr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(p)
    p.add_argument("--devices", default="1")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--out", default="runs/lightning-trainer", help="checkpoint folder (with --save-steps)")
    args = p.parse_args(argv)
    if args.grad_accum < 1 or args.max_steps < 1:
        p.error("--grad-accum and --max-steps must be >= 1")
    # One line per rank: each rank trained on its own data, with the same weights.
    # Called once train() has returned: nothing refers to the Trainer any more.
    finish_rank(train(args))
    return 0


def train(args: argparse.Namespace) -> dict:
    """Trains with online mixing; returns this rank's summary."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(args.seed, verbose=False)
    store = open_store(args.store)
    data = MixingDataModule(store, lambda store: MixtureDataset(store, make_mixer(args, store),       # mixing 1/4
                                                                args.seq_len + 1, args.batch_size),
                            num_workers=args.workers, log=args.log)
    module = LanguageModel(store.vocab_size, args)
    checkpoints = [ModelCheckpoint(dirpath=args.out, every_n_train_steps=args.save_steps, save_top_k=-1,
                                   filename="step-{step}")] if args.save_steps else []
    trainer = L.Trainer(max_steps=args.max_steps, accumulate_grad_batches=args.grad_accum,
                        devices=int(args.devices) if args.devices.isdigit() else args.devices,
                        strategy=args.strategy, accelerator="auto", use_distributed_sampler=False,  # mixing 2/4
                        callbacks=[data.callback, *checkpoints], logger=False,
                        enable_checkpointing=bool(args.save_steps), enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=max(1, args.max_steps // 10))
    if trainer.global_rank == 0 and not args.resume and os.path.exists(args.log):
        os.remove(args.log)                        # a fresh run; a resumed one appends
    trainer.fit(module, datamodule=data, ckpt_path=args.resume)                                # mixing 4/4
    mixer = data.mixture.mixer
    return {"rank": trainer.global_rank, "world_size": trainer.world_size, "log": args.log,
            "optimizer_steps": trainer.global_step, "micro_batches": data.micro_batches,
            "mixer_step": mixer.step, "weights": mixer.weights(), "data_sha256": module.seen.hexdigest(),
            "param_sha256": param_sha256(module.model)}


if __name__ == "__main__":
    sys.exit(main())
