"""Online data mixing inside a Hugging Face `Trainer` (tiny GPT-2 built from a config, CPU is fine).

    .venv/bin/python examples/hf_trainer.py --store STORE --max-steps 200 --grad-accum 4 --log odm.jsonl
    torchrun --nproc-per-node 2 -- examples/hf_trainer.py --store STORE ...    # data parallel, one stream per rank

What has to change compared with a plain `Trainer` (docs/integrations.md explains each):

* The data: `get_train_dataloader` returns `MixtureDataset.dataloader()` (batch_size=None,
  one whole micro-batch per item). The Trainer's own loader would wrap the dataset in
  `DataLoader(batch_size=per_device_train_batch_size)` and stack that many micro-batches
  (`unpack_batch` refuses such a batch); and Accelerate's `prepare` would, for an
  IterableDataset, load on rank 0 and dispatch slices, while every rank must draw its own.
* The loss: `compute_loss` takes `domain` and `step` out of the batch before the model
  sees it (a model that accepts **kwargs would silently ignore them; one that does not
  would raise), and computes one loss per sequence from the logits, since the model's
  `loss` is already averaged over the batch.
* The feedback: per-domain losses are accumulated over the step's micro-batches and
  `mixer.update()` runs once per optimizer step, in `on_step_end` (after optimizer.step()).
  The mixer is built with `grad_accum` equal to `gradient_accumulation_steps`.
* Checkpoints: `--save-steps N` saves `mixture.state_dict()` per rank into each checkpoint
  folder; `--resume CHECKPOINT` loads it before training. The Trainer then fast-forwards its
  loader by pulling and dropping the batches it already trained on (`ignore_data_skip=False`,
  the default); `on_train_begin` makes those batches free placeholders
  (`MixtureDataset.fast_forward`), so the stream continues exactly at the checkpoint's step.
* Order under torchrun: create TrainingArguments first (it initialises torch.distributed),
  then the store (`same_build_across_ranks`: every rank reads rank 0's build) and the
  mixer, which reads its rank and world size from the process group.
* The end: the Trainer leaves the process group up, held by its DDP wrapper. `main()`
  trains in a function, then `end_process_group()` frees the Trainer and destroys the
  group, so gloo's threads stop before the interpreter exits (left running, they
  now and then aborted a rank after its work was done).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import torch

# the examples' shared flags and run end live beside this file (also when the file is imported, not run)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trainer_common import add_trainer_arguments, finish_rank  # noqa: E402

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.losses import DomainLossAccumulator, sequence_losses, unpack_batch
from shammie.mixing.mixer import MixingError, MixLog, OnlineDataMixer, StaticMixer
from shammie.mixing.store import open_store, same_build_across_ranks


def tiny_gpt2(vocab_size: int, seq_len: int, width: int, layers: int):
    """A GPT-2 with random weights from a config: no download."""
    from transformers import GPT2Config, GPT2LMHeadModel

    # No dropout: a tiny model does not need it, and a resumed run then repeats the
    # uninterrupted one exactly (the resume test compares them).
    config = GPT2Config(vocab_size=vocab_size, n_positions=seq_len, n_embd=width, n_layer=layers,
                        n_head=max(1, width // 16), bos_token_id=None, eos_token_id=None,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


def make_trainer_class():
    """The Trainer subclass and its callback (defined lazily: transformers is imported on use)."""
    from transformers import Trainer, TrainerCallback

    class MixingTrainer(Trainer):
        # compute_loss returns the micro-batch mean, so the Trainer divides it by the number of
        # accumulation steps itself (its documented contract for custom losses).
        loss_is_scaled_for_ga = False

        def __init__(self, *args, mixture: MixtureDataset, loader_workers: int, **kwargs):
            super().__init__(*args, train_dataset=mixture, **kwargs)
            self.mixture = mixture
            self.loader_workers = loader_workers
            self.domain_losses = DomainLossAccumulator()
            self.micro_batches = 0
            self.seen = hashlib.sha256()    # what this rank trained on (the test compares ranks)

        def get_train_dataloader(self):
            # Not the Trainer's DataLoader(batch_size=N) and not accelerator.prepare(): each rank
            # reads its own stream, one whole micro-batch per item.
            return self.mixture.dataloader(num_workers=self.loader_workers)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, domains, step = unpack_batch(inputs)   # the model never sees domain/step
            outputs = model(input_ids=ids[:, :-1])
            per_seq = sequence_losses(outputs.logits, ids[:, 1:])
            if model.training:
                self.domain_losses.add(per_seq, domains, step=step)
                self.micro_batches += 1
                self.seen.update(ids.cpu().numpy().tobytes())
            loss = per_seq.mean()
            return (loss, outputs) if return_outputs else loss

    class MixerUpdate(TrainerCallback):
        """One mixer.update() per optimizer step, with the losses of all its micro-batches;
        the data stream's state saved into every checkpoint (one file per rank)."""

        def __init__(self, trainer: MixingTrainer, log: MixLog):
            self.trainer, self.log = trainer, log

        def on_train_begin(self, args, state, control, **kwargs):
            # After the checkpoint's TrainerState is loaded, before the Trainer builds its loader.
            mixture = self.trainer.mixture
            if state.global_step != mixture.mixer.step:
                raise MixingError(
                    f"the Trainer resumes at step {state.global_step} but the mixture's stream is at step "
                    f"{mixture.mixer.step}: load the checkpoint's mixture state (MixtureDataset.load_state_dict) "
                    "before trainer.train(resume_from_checkpoint=...)")
            if state.global_step and not args.ignore_data_skip:
                # The Trainer fast-forwards by pulling and dropping (global_step % max_steps) x
                # accumulation micro-batches from a loader Accelerate rebuilds around the dataset
                # (skip_first_batches): make those placeholders, so the skip is free and the
                # stream continues exactly at the restored step.
                mixture.fast_forward((state.global_step % args.max_steps) * args.gradient_accumulation_steps)
            return control

        def on_step_end(self, args, state, control, **kwargs):
            acc = self.trainer.domain_losses
            record = self.trainer.mixture.mixer.update(acc.means(), step=acc.step)
            acc.reset()
            if state.is_world_process_zero:
                self.log.write(record)
            return control

        def on_save(self, args, state, control, **kwargs):
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            with open(os.path.join(folder, mixture_state_name(args.process_index)), "w") as f:
                json.dump(self.trainer.mixture.state_dict(), f)
            self.log.flush()
            return control

    return MixingTrainer, MixerUpdate


def mixture_state_name(rank: int) -> str:
    return f"mixture-rank{rank}.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(p)
    p.add_argument("--out", default="runs/hf-trainer", help="Trainer output_dir (checkpoints with --save-steps)")
    p.add_argument("--save-steps", type=int, default=0, help="save a checkpoint every N steps (0: never)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from this checkpoint folder (model, optimizer, and the mixture's stream)")
    args = p.parse_args(argv)
    if args.grad_accum < 1 or args.max_steps < 1:
        p.error("--grad-accum and --max-steps must be >= 1")
    # One line per rank: each rank trained on its own data, with the same weights.
    # Called once train() has returned: nothing refers to the Trainer any more.
    finish_rank(train(args))
    return 0


def train(args: argparse.Namespace) -> dict:
    """Trains with online mixing; returns this rank's summary."""
    from transformers import TrainingArguments, set_seed

    set_seed(args.seed)
    training_args = TrainingArguments(
        output_dir=args.out, max_steps=args.max_steps, gradient_accumulation_steps=args.grad_accum,
        per_device_train_batch_size=args.batch_size,    # informational: the batch size is the dataset's
        dataloader_num_workers=args.workers, learning_rate=args.lr, lr_scheduler_type="constant",
        logging_steps=max(1, args.max_steps // 10), report_to=[],
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), seed=args.seed,
        disable_tqdm=True)
    # Resume keeps the Trainer's default data skip (ignore_data_skip=False): the stream is restored
    # with MixtureDataset.load_state_dict below, and the callback turns the batches the Trainer
    # drops into free placeholders (MixtureDataset.fast_forward). ignore_data_skip=True works too.
    # After TrainingArguments: under torchrun the process group exists now, and the mixer
    # takes its rank and world size from it (each rank draws its own micro-batches).
    # Every rank reads rank 0's build, even if the store is rebuilt while ranks start.
    store = same_build_across_ranks(open_store(args.store))
    if args.mixer == "odm":
        mixer = OnlineDataMixer.from_store(store, seed=args.seed, grad_accum=args.grad_accum)
    else:
        mixer = StaticMixer.from_store(store, args.mixer, seed=args.seed, grad_accum=args.grad_accum)
    mixture = MixtureDataset(store, mixer, seq_len=args.seq_len + 1, batch_size=args.batch_size)
    model = tiny_gpt2(store.vocab_size, args.seq_len, args.width, args.layers)

    if args.resume:
        # The stream continues exactly where the checkpoint's step left it: the mixer's step,
        # rewards, recent policies and this rank's cursors. Before the loader is created.
        with open(os.path.join(args.resume, mixture_state_name(training_args.process_index))) as f:
            mixture.load_state_dict(json.load(f))
    elif os.path.exists(args.log) and training_args.process_index == 0:
        os.remove(args.log)                        # a fresh run; a resumed one appends
    log = MixLog(args.log)
    MixingTrainer, MixerUpdate = make_trainer_class()
    trainer = MixingTrainer(model=model, args=training_args, mixture=mixture, loader_workers=args.workers)
    trainer.add_callback(MixerUpdate(trainer, log))
    result = trainer.train(resume_from_checkpoint=args.resume)
    log.close()
    return {"rank": training_args.process_index, "world_size": training_args.world_size,
            "log": args.log, "optimizer_steps": trainer.state.global_step,
            "micro_batches": trainer.micro_batches, "mixer_step": mixer.step,
            "weights": mixer.weights(), "data_sha256": trainer.seen.hexdigest(),
            "train_loss": result.training_loss}


if __name__ == "__main__":
    sys.exit(main())
