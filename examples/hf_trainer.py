"""Online data mixing inside a Hugging Face `Trainer` (tiny GPT-2 built from a config, CPU is fine).

    .venv/bin/python examples/hf_trainer.py --store STORE --max-steps 200 --grad-accum 4 --log odm.jsonl
    .venv/bin/python examples/hf_trainer.py --store STORE ... --save-steps 50 --resume runs/hf-trainer/checkpoint-50
    torchrun --nproc-per-node 2 -- examples/hf_trainer.py --store STORE ...    # data parallel, one stream per rank

The mixing takes four lines (marked below): the store (every rank on rank 0's build), the
mixer, `shammie.mixing.hf.MixingTrainer` with the MixtureDataset, and `train()`. The
MixingTrainer serves the mixture's own loader, computes one loss per sequence, calls
`mixer.update()` once per optimizer step, saves the mixture's state into every checkpoint
and restores it on resume (docs/integrations.md). Order under torchrun: TrainingArguments
first (it initialises torch.distributed), then the store and the mixer, which reads its
rank and world size from the process group. `main()` trains in a function, then
`finish_rank()` frees the Trainer and destroys the process group, so gloo's threads stop
before the interpreter exits.
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

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.hf import MixingTrainer
from shammie.mixing.store import open_store, same_build_across_ranks


def tiny_gpt2(vocab_size: int, seq_len: int, width: int, layers: int):
    """A GPT-2 with random weights from a config: no download."""
    from transformers import GPT2Config, GPT2LMHeadModel

    # No dropout: a tiny model does not need it, and a resumed run then repeats the
    # uninterrupted one exactly (the resume tests compare them).
    config = GPT2Config(vocab_size=vocab_size, n_positions=seq_len, n_embd=width, n_layer=layers,
                        n_head=max(1, width // 16), bos_token_id=None, eos_token_id=None,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config)


class RecordingTrainer(MixingTrainer):
    """Only for the summary line the tests read: hashes what this rank trained on."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = hashlib.sha256()

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training:
            self.seen.update(inputs["input_ids"].cpu().numpy().tobytes())
        return super().compute_loss(model, inputs, *args, **kwargs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(p)
    p.add_argument("--out", default="runs/hf-trainer", help="Trainer output_dir (checkpoints with --save-steps)")
    args = p.parse_args(argv)
    if args.grad_accum < 1 or args.max_steps < 1:
        p.error("--grad-accum and --max-steps must be >= 1")
    # One line per rank: each rank trained on its own data, with the same weights.
    # Called once train() has returned: nothing refers to the Trainer any more.
    finish_rank(train(args))
    return 0


def train(args: argparse.Namespace) -> dict:
    """Trains with online mixing; returns this rank's summary."""
    from transformers import TrainerCallback, TrainingArguments, set_seed

    set_seed(args.seed)
    training_args = TrainingArguments(
        output_dir=args.out, max_steps=args.max_steps, gradient_accumulation_steps=args.grad_accum,
        per_device_train_batch_size=args.batch_size,    # informational: the batch size is the dataset's
        dataloader_num_workers=args.workers, learning_rate=args.lr, lr_scheduler_type="constant",
        logging_steps=max(1, args.max_steps // 10), report_to=[],
        save_strategy="steps" if args.save_steps else "no", save_steps=args.save_steps or 500,
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), seed=args.seed,
        disable_tqdm=True)
    if not args.resume and os.path.exists(args.log) and training_args.process_index == 0:
        os.remove(args.log)                        # a fresh run; a resumed one appends
    store = same_build_across_ranks(open_store(args.store))                                    # mixing 1/4
    mixer = make_mixer(args, store)                                                            # mixing 2/4
    model = tiny_gpt2(store.vocab_size, args.seq_len, args.width, args.layers)
    trainer = RecordingTrainer(model=model, args=training_args, log=args.log,                  # mixing 3/4
                               mixture=MixtureDataset(store, mixer, args.seq_len + 1, args.batch_size))
    if args.kill_at_step:
        class Kill(TrainerCallback):
            def on_step_end(self, a, state, control, **kw):
                kill_at(args.kill_at_step, state.global_step)
        trainer.add_callback(Kill())
    result = trainer.train(resume_from_checkpoint=args.resume)                                 # mixing 4/4
    return {"rank": training_args.process_index, "world_size": training_args.world_size,
            "log": args.log, "optimizer_steps": trainer.state.global_step,
            "micro_batches": trainer.mixing.micro_batches, "mixer_step": mixer.step,
            "weights": mixer.weights(), "data_sha256": trainer.seen.hexdigest(),
            "param_sha256": param_sha256(model), "train_loss": result.training_loss}


if __name__ == "__main__":
    sys.exit(main())
