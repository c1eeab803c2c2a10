"""Online data mixing in a Hugging Face ``Trainer``: three lines beyond the model.

    mixer = OnlineDataMixer.from_store(store, grad_accum=args.gradient_accumulation_steps)
    trainer = MixingTrainer(model=model, args=args, mixture=MixtureDataset(store, mixer, seq_len, batch_size),
                            log="mixing.jsonl")
    trainer.train(resume_from_checkpoint=checkpoint_or_None_or_True)

``MixingTrainer`` is a ``Trainer`` whose loader is ``MixtureDataset.dataloader()`` (one whole
micro-batch per item, every rank its own stream: not the Trainer's ``DataLoader(batch_size=N)``
nor Accelerate's dispatch from rank 0), whose ``compute_loss`` keeps ``domain`` and ``step``
away from the model and computes one loss per sequence, and which carries a
``MixingCallback``: one ``mixer.update()`` per optimizer step with the losses of all its
micro-batches, the mixture's state in every checkpoint (``mixture.json``, written by rank 0:
the state is rank-independent), loaded again by ``train(resume_from_checkpoint=...)``, and
the batches the Trainer drops on resume turned into free placeholders
(``MixtureDataset.fast_forward``), so the stream continues exactly at the checkpoint's step.

A Trainer of your own can use ``MixingCallback`` alone: call ``callback.add(per_sequence_losses,
batch)`` in its ``compute_loss`` and ``load_mixture_state(mixture, checkpoint)`` before ``train``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.errors import MixingError
from shammie.mixing.log import MixLog
from shammie.mixing.losses import DomainLossAccumulator, sequence_losses, unpack_batch

MIXTURE_STATE = "mixture.json"


def load_mixture_state(mixture: MixtureDataset, checkpoint: str) -> None:
    """Restore the mixture's stream from a checkpoint folder written with MixingCallback."""
    path = os.path.join(checkpoint, MIXTURE_STATE)
    if not os.path.exists(path):
        raise MixingError(f"{checkpoint} has no {MIXTURE_STATE}: it was not saved with MixingCallback, so the "
                          "mixture's stream cannot continue where the checkpoint's step left it")
    with open(path, encoding="utf-8") as f:
        mixture.load_state_dict(json.load(f))


class MixingCallback(TrainerCallback):
    """One ``mixer.update()`` per optimizer step, the mixture's state in every checkpoint, and a
    free, exact data skip on resume. ``log``: a MixLog or a path (rank 0 writes it)."""

    def __init__(self, mixture: MixtureDataset, log: MixLog | str | None = None):
        self.mixture = mixture
        self.losses = DomainLossAccumulator()
        self.log = MixLog(log) if isinstance(log, str) else log
        self.micro_batches = 0

    def add(self, per_sequence: Any, batch: Any) -> None:
        """Add a training micro-batch's per-sequence losses (detached inside)."""
        self.losses.add(per_sequence, batch["domain"], step=batch["step"])
        self.micro_batches += 1

    def on_train_begin(self, args, state, control, **kwargs):
        # After the checkpoint's TrainerState is loaded, before the Trainer builds its loader.
        mixer = self.mixture.mixer
        if state.global_step != mixer.step:
            raise MixingError(
                f"the Trainer resumes at step {state.global_step} but the mixture's stream is at step {mixer.step}: "
                "load the checkpoint's mixture state (MixingTrainer.train(resume_from_checkpoint=...) does, or "
                "load_mixture_state) before training")
        if state.global_step and not args.ignore_data_skip:
            # The Trainer drops (global_step % max_steps) x accumulation micro-batches from a loader
            # Accelerate rebuilds around the dataset (skip_first_batches): make them placeholders.
            self.mixture.fast_forward((state.global_step % args.max_steps) * args.gradient_accumulation_steps)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        record = self.mixture.mixer.update(self.losses)          # its means and step; resets it
        if state.is_world_process_zero and self.log is not None:
            self.log.write(record)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, MIXTURE_STATE + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.mixture.state_dict(), f)
            os.replace(tmp, os.path.join(folder, MIXTURE_STATE))
            if self.log is not None:
                self.log.flush()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.log is not None:
            self.log.close()
        return control


class MixingTrainer(Trainer):
    """A Trainer that trains on a MixtureDataset with online mixing (see the module docstring)."""

    # compute_loss returns the micro-batch mean, so the Trainer divides it by the number of
    # accumulation steps itself (its documented contract for custom losses).
    loss_is_scaled_for_ga = False

    def __init__(self, *args, mixture: MixtureDataset, log: MixLog | str | None = None, **kwargs):
        super().__init__(*args, train_dataset=mixture, **kwargs)
        if self.args.gradient_accumulation_steps != mixture.mixer.grad_accum:
            raise MixingError(f"gradient_accumulation_steps={self.args.gradient_accumulation_steps} but the mixer "
                              f"has grad_accum={mixture.mixer.grad_accum}: build the mixer with the same number")
        self.mixture = mixture
        self.mixing = MixingCallback(mixture, log)
        self.add_callback(self.mixing)

    def get_train_dataloader(self):
        # Each rank reads its own stream, one whole micro-batch per item.
        return self.mixture.dataloader(num_workers=self.args.dataloader_num_workers)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, domains, step = unpack_batch(inputs)            # the model never sees domain/step
        outputs = model(input_ids=ids[:, :-1])
        per_seq = sequence_losses(outputs.logits, ids[:, 1:])
        if model.training:
            self.mixing.add(per_seq, inputs)
        loss = per_seq.mean()      # the Trainer divides it by the accumulation steps itself
        return (loss, outputs) if return_outputs else loss

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise MixingError(f"no checkpoint in {self.args.output_dir} to resume from")
        if resume_from_checkpoint:
            load_mixture_state(self.mixture, resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
