"""From a trainer's loss to the mixer's reward: per-sequence losses -> per-domain means.

The online mixer wants, once per optimizer step, the mean training loss of each
domain the step drew (``mixer.update({domain: loss})``). Trainers compute one loss
per batch; these helpers get the per-sequence losses out of the logits the trainer
already has, group them by the batch's ``domain`` list, and accumulate them over
the micro-batches of one optimizer step (gradient accumulation)::

    acc = DomainLossAccumulator()
    for micro_batch in step_batches:                       # K micro-batches of one step
        ids, domains, step = unpack_batch(micro_batch)
        per_seq = sequence_losses(model(ids[:, :-1]), ids[:, 1:])
        (per_seq.mean() / K).backward()
        acc.add(per_seq, domains, step=step)               # detached inside; no graph kept
    opt.step()
    log.write(mixer.update(acc.means(), step=acc.step)); acc.reset()

Everything stays on the loss's device until one final transfer of 2 x (number of
domains) numbers, so on a GPU the helpers cost one synchronisation per call of
``means()``, not one per sequence.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from shammie.pipeline.errors import ShammieError


class BatchError(ShammieError, ValueError):
    """A batch that is not one MixtureDataset micro-batch (e.g. several stacked by a DataLoader batch_size)."""


def sequence_losses(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy of each sequence, shape (B,), with the graph (backward works).

    logits: (B, T, V) predictions for targets (B, T), already aligned (shift before
    calling: ``logits[:, :-1]`` against ``ids[:, 1:]``). Positions equal to
    ``ignore_index`` do not count; a sequence with no counted position gets loss 0."""
    if logits.dim() != 3 or targets.dim() != 2 or logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, T, V) and targets (B, T) expected, got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                            ignore_index=ignore_index, reduction="none").view(targets.shape)
    counted = (targets != ignore_index).to(token.dtype)
    return (token * counted).sum(dim=1) / counted.sum(dim=1).clamp(min=1)


def _sums_and_counts(per_sequence: torch.Tensor, domains: Sequence[str],
                     names: list[str], index: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    losses = per_sequence.detach().reshape(-1)
    if losses.numel() != len(domains):
        raise ValueError(f"{losses.numel()} per-sequence losses for a batch of {len(domains)} domains: pass one "
                         "loss per sequence (reduction='none', averaged over tokens), e.g. sequence_losses()")
    for d in domains:
        if d not in index:
            index[d] = len(names)
            names.append(d)
    idx = torch.tensor([index[d] for d in domains], device=losses.device)
    k = len(names)
    sums = torch.zeros(k, dtype=torch.float64, device=losses.device).index_add_(0, idx, losses.double())
    counts = torch.bincount(idx, minlength=k).double()
    return sums, counts


def per_domain_means(per_sequence: torch.Tensor, domains: Sequence[str]) -> dict[str, float]:
    """{domain: mean loss of that domain's sequences} for one batch (detached; plain floats)."""
    names: list[str] = []
    sums, counts = _sums_and_counts(per_sequence, domains, names, {})
    means = (sums / counts).tolist()
    return dict(zip(names, means))


class DomainLossAccumulator:
    """Per-domain loss sums and counts over the micro-batches of one optimizer step.

    ``means()`` weights every sequence equally (the mean over all of a domain's
    sequences in the step, not a mean of micro-batch means). ``step`` checks that all
    micro-batches came from the same MixtureDataset step, which catches a trainer whose
    accumulation count differs from the mixer's ``grad_accum``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self.micro_batches = 0
        self.step: int | None = None

    def add(self, per_sequence: torch.Tensor, domains: Sequence[str], *, step: int | None = None) -> None:
        if step is not None:
            step = int(step)
            if self.step is not None and step != self.step:
                raise BatchError(f"micro-batch of step {step} accumulated into step {self.step}: the trainer's "
                                 "gradient accumulation and the mixer's grad_accum disagree, or update() was skipped")
            self.step = step
        sums, counts = _sums_and_counts(per_sequence, domains, self._names, self._index)
        if self._sums is None:
            self._sums, self._counts = sums, counts
        else:
            grow = len(self._names) - len(self._sums)
            if grow:
                pad = torch.zeros(grow, dtype=sums.dtype, device=sums.device)
                self._sums, self._counts = torch.cat([self._sums, pad]), torch.cat([self._counts, pad])
            self._sums = self._sums + sums
            self._counts = self._counts + counts
        self.micro_batches += 1

    def means(self) -> dict[str, float]:
        if self._sums is None:
            return {}
        return dict(zip(self._names, (self._sums / self._counts).tolist()))

    def pop(self) -> dict[str, float]:
        """The means, then reset for the next optimizer step."""
        out = self.means()
        self.reset()
        return out


def unpack_batch(batch: Mapping[str, Any]) -> tuple[torch.Tensor, list[str], int]:
    """(input_ids, domains, step) of one MixtureDataset micro-batch, refusing anything else.

    MixtureDataset yields whole batches, so its DataLoader needs ``batch_size=None``.
    A DataLoader with ``batch_size=4`` (HF Trainer's default path does this) stacks 4
    micro-batches into a 3-D ``input_ids`` and a tensor of steps, and a model would
    happily train on it; this turns that into an error naming the cause."""
    if not isinstance(batch, Mapping) or not {"input_ids", "domain", "step"} <= set(batch):
        raise BatchError(f"expected a MixtureDataset batch with input_ids, domain and step, got "
                         f"{sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__}")
    ids, domains, step = batch["input_ids"], batch["domain"], batch["step"]
    if isinstance(step, torch.Tensor) and step.dim() == 0:
        step = step.item()
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise BatchError(
            f"not one micro-batch: input_ids of shape {tuple(getattr(ids, 'shape', ()))} and step {step!r}. "
            "MixtureDataset yields whole batches: build the DataLoader with batch_size=None "
            "(MixtureDataset.dataloader() does), never batch_size=N")
    domains = list(domains)
    if len(domains) != ids.shape[0] or not all(isinstance(d, str) for d in domains):
        raise BatchError(f"{ids.shape[0]} sequences but domain list {domains!r:.200}")
    return ids, domains, step
