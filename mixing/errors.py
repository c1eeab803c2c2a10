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


def wait_message(kind: str, t: int, s: int, timeout: float, done: int, lag: int, grad_accum: int) -> str:
    """Why the policy of step t (published after update s - 1) is not there: in the trainer's
    process ("missing": it would block) or after a worker waited `timeout` s ("timeout")."""
    if kind == "missing":
        return (f"the mixture for step {t} needs the loss of step {s - 1}, but update() has run for {done} steps: "
                f"call mixer.update() once per optimizer step before drawing more than lag={lag} steps ahead (a "
                f"DataLoader batch_size draws several micro-batches at once: use batch_size=None). {SKIP_HINT}")
    return (f"a DataLoader worker waited {timeout:.0f} s for the mixture of step {t}, which needs update() of step "
            f"{s - 1}; the trainer has updated {done} steps. Either the loader runs further ahead than lag={lag} "
            f"steps x grad_accum={grad_accum} micro-batches (use MixtureDataset.dataloader(), or lag >= num_workers "
            f"* prefetch_factor / grad_accum), or update() is not called once per step. {SKIP_HINT}")
