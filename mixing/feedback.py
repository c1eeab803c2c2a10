"""From what a trainer passes to ``update()`` to numbers a rule can learn from: the loss
values are parsed and checked (finite, >= 0, for domains this rank drew, every drawn
domain present), and their scale is checked against what a per-token cross-entropy can be.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from shammie.mixing.errors import SKIP_HINT, STACKED_HINT, MixingError, MixingWarning

SCALE_MARGIN = 2.0          # nats above ln(vocab) a per-token loss may reach before it looks wrong
NO_VOCAB_CEILING = 30.0     # without the vocabulary size: no tokenizer has e^30 pieces


def parse_loss(domain: str, value: Any) -> float:
    """One domain's loss (a number, a tensor or a list of per-sequence losses) -> its mean."""
    if type(value) is float or type(value) is int:      # the common case, without numpy
        try:
            x = float(value)
        except OverflowError:
            x = math.inf
        if 0.0 <= x < math.inf:
            return x
    if value is None:
        raise MixingError(f"loss for domain {domain!r} is None: pass a number, a tensor or a list of "
                          "per-sequence losses (a Hugging Face model returns loss=None without labels)")
    try:
        if hasattr(value, "detach"):
            value = value.detach().double().reshape(-1).cpu().numpy()
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise MixingError(f"loss for domain {domain!r} is not a number: {value!r}") from None
    if arr.size == 0:
        raise MixingError(f"empty loss list for domain {domain!r}")
    if not np.all(np.isfinite(arr)):
        raise MixingError(f"non-finite loss {arr[~np.isfinite(arr)][0]} for domain {domain!r}")
    if np.any(arr < 0):
        raise MixingError(f"negative loss {arr.min()} for domain {domain!r}: the reward is a training loss "
                          "(cross-entropy, >= 0)")
    with np.errstate(over="ignore"):
        mean = float(arr.mean())
    if not math.isfinite(mean):
        raise MixingError(f"loss for domain {domain!r} overflows (mean of {arr.tolist()[:4]}...)")
    return mean


def check_step(step: Any, carried: Any, expected: int) -> None:
    """The step of the batches an update is for (step=, or the one the losses carry; both must
    agree) must be the step being updated: catches trainers that skip or repeat batches."""
    if step is None:
        step = carried
    if step is None:
        return
    if (step.numel() if hasattr(step, "numel") else np.size(step)) != 1:
        raise MixingError(f"step={step!r} holds several steps: " + STACKED_HINT)
    step = int(np.asarray(step.cpu() if hasattr(step, "cpu") else step).reshape(-1)[0])
    if carried is not None and int(carried) != step:
        raise MixingError(f"update(step={step}) for losses accumulated from step {carried}: pass one step")
    if step != expected:
        raise MixingError(f"update() for step {expected} got the loss of batch step {step}: the trainer skipped or "
                          f"repeated batches. {SKIP_HINT}")


def local_losses(losses: Any, domains: Sequence[str], index: Mapping[str, int], drawn: np.ndarray, *,
                 step: int, rank: int, require_drawn: bool, require_all: bool) -> tuple[np.ndarray, np.ndarray]:
    """(sums, counts) per domain of one rank's update. require_drawn: a loss for a domain
    this rank did not draw is refused; require_all: so is a drawn domain without a loss
    (an empty update from a rank that drew data, or one that lost a domain on the way)."""
    if not isinstance(losses, Mapping):
        raise MixingError(f"update() takes a {{domain: loss}} mapping, got {type(losses).__name__}")
    k = len(domains)
    sums, counts = np.zeros(k), np.zeros(k)
    for d, v in losses.items():
        if d not in index:
            raise MixingError(f"loss reported for unknown domain {d!r}; domains are {list(domains)}")
        mean = parse_loss(d, v)
        i = index[d]
        if require_drawn and not drawn[i]:
            raise MixingError(
                f"loss reported for domain {d!r}, which step {step} did not draw on rank {rank} "
                f"(drawn: {sorted(domains[j] for j in np.flatnonzero(drawn))}). Report the losses of the "
                "batches this rank received, once per optimizer step. " + SKIP_HINT)
        sums[i] += mean
        counts[i] += 1
    if require_all:
        missing = [domains[i] for i in np.flatnonzero(drawn) if not counts[i]]
        if missing:
            what = "an empty update" if not losses else f"no loss for {missing}"
            raise MixingError(
                f"step {step} drew {sorted(domains[i] for i in np.flatnonzero(drawn))} on rank {rank} but got "
                f"{what}: report the loss of every domain the step's batches came from (e.g. "
                "DomainLossAccumulator over all its micro-batches); an update without them would teach the rule "
                "nothing and still advance the stream")
    return sums, counts


class LossScaleCheck:
    """Warns (MixingWarning, once per kind) when losses do not look like a per-token
    cross-entropy averaged over a sequence: above ln(vocab) + SCALE_MARGIN (summed over
    tokens, if dividing by the sequence length brings it back in range), or, on the first
    steps of an untrained model with grad_accum K > 1, close to ln(vocab) / K (divided by
    the accumulation steps). Both break rules that read the loss's level: exp(loss)
    saturates for summed losses, and a divided loss flattens every difference."""

    def __init__(self, vocab_size: int | None = None, seq_len: int | None = None, grad_accum: int = 1):
        self.vocab_size, self.seq_len, self.grad_accum = vocab_size, seq_len, grad_accum
        self.warned: set[str] = set()

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            warnings.warn(message, MixingWarning, stacklevel=4)

    def check(self, means: np.ndarray, seen: np.ndarray, step: int) -> None:
        if not seen.any():
            return
        values = means[seen]
        top = float(values.max())
        if self.vocab_size and self.vocab_size > 1:
            ln_v = math.log(self.vocab_size)
            ceiling = ln_v + SCALE_MARGIN
        else:
            ln_v, ceiling = None, NO_VOCAB_CEILING
        if top > ceiling:
            tokens = self.seq_len - 1 if self.seq_len and self.seq_len > 1 else None
            summed = tokens is not None and top / tokens <= ceiling
            self._warn("high", (
                f"step {step}: a domain's loss is {top:.3g} nats, above "
                + (f"ln(vocab {self.vocab_size}) + {SCALE_MARGIN:g} = {ceiling:.2f}" if ln_v else f"{ceiling:g}")
                + (f"; it looks summed over the {tokens} tokens of a sequence (per token: {top / tokens:.3g}). "
                   if summed else ". ")
                + "Pass the mean per-token loss of each sequence (shammie.mixing.losses.sequence_losses), "
                  "or rules that read the loss level (authors, smoothed_mean) saturate"))
        k = self.grad_accum
        if ln_v and k > 1 and step <= 3:
            mean = float(values.mean())
            if mean < ln_v / k + 0.5 and abs(mean * k - ln_v) < 0.25 * ln_v:
                self._warn("divided", (
                    f"step {step}: the losses ({mean:.3g} nats on average) are close to ln(vocab) / grad_accum = "
                    f"{ln_v / k:.3g}, as if divided by the {k} accumulation steps. Pass the per-sequence "
                    "losses before any division for gradient accumulation (the trainer scales the backward "
                    "loss; the mixer wants the loss itself). Ignore this for a model that starts pretrained"))
