"""The mixing library's exception and warning, and the hints its messages share (a leaf
module: every other mixing module imports from here, nothing is imported back)."""

from __future__ import annotations

from shammie.pipeline.errors import ShammieError


class MixingError(ShammieError, ValueError):
    """Misuse of a mixer or dataset, or numbers it cannot learn from; the message names the fix."""


class MixingWarning(UserWarning):
    """A domain hit a budget cap, takes far more than its share while its loss is flat, or the
    losses look like the wrong scale (summed over tokens, divided by the accumulation steps)."""


STACKED_HINT = ("MixtureDataset yields whole micro-batches: build the loader with dataset.dataloader() or "
                "DataLoader(dataset, batch_size=None); a DataLoader batch_size stacks several of them")

SKIP_HINT = ("If the trainer skips batches on resume, it consumes batches without calling update(): "
             "with Hugging Face Trainer use shammie.mixing.hf.MixingCallback (or set "
             "TrainingArguments(ignore_data_skip=True)), or call "
             "MixtureDataset.fast_forward(global_step x gradient_accumulation_steps) after restoring the data "
             "with MixtureDataset.load_state_dict. With gradient accumulation pass "
             "grad_accum=K to the mixer and call update() once per optimizer step.")
