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
    log.write(mixer.update(acc))                            # its means and step; resets it

``DomainLossAccumulator`` is the one way from per-sequence losses to ``update()``'s
``{domain: mean}`` (``per_domain_means`` is its one-batch form, ``per_domain_losses``
an earlier name of that). ``acc.pop()`` returns the means as a ``DomainLosses`` mapping
that carries the step, so ``mixer.update(acc.pop())`` keeps the step check too. CPU losses are
summed with numpy; GPU losses stay on their device until one final transfer of
2 x (number of domains) numbers, so the helpers cost one synchronisation per call of
``means()``, not one per micro-batch or sequence.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from shammie.mixing.errors import STACKED_HINT, MixingError

FAST_FORWARD_KEY = "fast_forward_placeholder"   # marks an item MixtureDataset.fast_forward() put before the stream


class BatchError(MixingError):
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


class DomainLossAccumulator:
    """Per-domain loss sums and counts over the micro-batches of one optimizer step: the one
    helper from per-sequence losses plus a batch's ``domain`` list to ``mixer.update()``'s
    ``{domain: mean}`` (``per_domain_means`` is its one-batch form).

    ``means()`` weights every sequence equally (the mean over all of a domain's
    sequences in the step, not a mean of micro-batch means). ``step`` checks that all
    micro-batches came from the same MixtureDataset step, which catches a trainer whose
    accumulation count differs from the mixer's ``grad_accum``. Losses are detached;
    CPU losses (tensors, arrays, lists) are summed with numpy, losses on an accelerator
    stay there until ``means()`` (one synchronisation per optimizer step)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._index: dict[str, int] = {}
        self._sums: Any = None          # numpy arrays, or tensors on the losses' device
        self._counts: Any = None
        self.micro_batches = 0
        self.step: int | None = None

    def add(self, per_sequence: Any, domains: Sequence[str], *, step: int | None = None) -> None:
        """Add one micro-batch: one loss per sequence (a tensor, array or list; averaged over
        tokens, e.g. ``sequence_losses()``) and the batch's ``domain`` list."""
        if step is not None:
            step = int(step.item() if isinstance(step, torch.Tensor) else step)
            if self.step is not None and step != self.step:
                raise BatchError(f"micro-batch of step {step} accumulated into step {self.step}: the trainer's "
                                 "gradient accumulation and the mixer's grad_accum disagree, or update() was skipped")
        domains = list(domains)
        n = len(domains)
        one_domain = n > 0 and domains.count(domains[0]) == n     # the default: one domain per micro-batch
        if not (isinstance(domains[0], str) if one_domain else all(isinstance(d, str) for d in domains)):
            raise BatchError(f"the batch's domains should be a list of names, got {domains[:3]}...: " + STACKED_HINT)
        on_device = isinstance(self._sums, torch.Tensor)
        if isinstance(per_sequence, torch.Tensor):
            losses = per_sequence.detach().reshape(-1)
            if losses.device.type == "cpu" and not on_device:
                losses = (losses if losses.dtype in (torch.float32, torch.float64) else losses.double()).numpy()
            else:
                on_device = True
        else:
            losses = np.asarray(per_sequence, dtype=np.float64).reshape(-1)
        if len(losses) != n:
            raise BatchError(f"{len(losses)} per-sequence losses for a batch of {n} sequences: pass one "
                             "loss per sequence (reduction='none', averaged over tokens), e.g. sequence_losses()")
        index = self._index
        codes = [index.setdefault(domains[0], len(index))] if one_domain else \
            [index.setdefault(d, len(index)) for d in domains]
        k = len(index)
        if on_device:                                   # e.g. on a GPU: no synchronisation here
            device = self._sums.device if isinstance(self._sums, torch.Tensor) else losses.device
            losses = torch.as_tensor(losses).to(device).double()
            self._grow(k, device)
            if one_domain:
                self._sums[codes[0]] += losses.sum()
                self._counts[codes[0]] += n
            else:
                idx = torch.tensor(codes, device=device)
                self._sums.index_add_(0, idx, losses)
                self._counts += torch.bincount(idx, minlength=k).double()
        else:
            self._grow(k, None)
            if one_domain:
                self._sums[codes[0]] += float(losses.sum(dtype=np.float64))
                self._counts[codes[0]] += n
            elif n:
                self._sums += np.bincount(codes, weights=losses, minlength=k)
                self._counts += np.bincount(codes, minlength=k)
        self.step = step if step is not None else self.step
        self.micro_batches += 1

    def _grow(self, k: int, device) -> None:
        """Sums and counts for k domains: numpy arrays (device None) or tensors on `device`."""
        if device is None:
            if self._sums is None:
                self._sums, self._counts = np.zeros(k), np.zeros(k)
            elif len(self._sums) < k:
                pad = np.zeros(k - len(self._sums))
                self._sums, self._counts = np.append(self._sums, pad), np.append(self._counts, pad)
            return
        if not isinstance(self._sums, torch.Tensor):     # start, or move CPU sums to the device
            old = (np.zeros(0), np.zeros(0)) if self._sums is None else (self._sums, self._counts)
            self._sums, self._counts = (torch.as_tensor(a, dtype=torch.float64, device=device) for a in old)
        if len(self._sums) < k:
            pad = torch.zeros(k - len(self._sums), dtype=torch.float64, device=device)
            self._sums, self._counts = torch.cat([self._sums, pad]), torch.cat([self._counts, pad])

    def means(self) -> dict[str, float]:
        """{domain: mean loss of its sequences so far} for the domains seen (plain floats)."""
        if self._sums is None:
            return {}
        return dict(zip(self._index, (self._sums / self._counts).tolist()))

    def pop(self) -> "DomainLosses":
        """The means (carrying the step they came from), then reset for the next optimizer step."""
        out = DomainLosses(self.means(), step=self.step)
        self.reset()
        return out

    def pop_step(self) -> "DomainLosses":
        """What ``mixer.update(acc)`` takes: ``pop()``."""
        return self.pop()


class DomainLosses(dict):
    """{domain: mean loss} of one optimizer step, with the MixtureDataset step its batches came
    from (``update()`` checks it even when no ``step=`` is passed)."""

    def __init__(self, means, step: int | None = None):
        super().__init__(means)
        self.step = step


def per_domain_means(per_sequence: Any, domains: Sequence[str]) -> dict[str, float]:
    """{domain: mean loss of that domain's sequences} for one batch (detached; plain floats)."""
    acc = DomainLossAccumulator()
    acc.add(per_sequence, domains)
    return acc.means()


def per_domain_losses(domains: Sequence[str], losses: Any) -> dict[str, float]:
    """``per_domain_means`` with the arguments the other way round (its earlier name)."""
    return per_domain_means(losses, domains)


def unpack_batch(batch: Mapping[str, Any]) -> tuple[torch.Tensor, list[str], int]:
    """(input_ids, domains, step) of one MixtureDataset micro-batch, refusing anything else.

    MixtureDataset yields whole batches, so its DataLoader needs ``batch_size=None``.
    A DataLoader with ``batch_size=4`` (HF Trainer's default path does this) stacks 4
    micro-batches into a 3-D ``input_ids`` and a tensor of steps, and a model would
    happily train on it; this turns that into an error naming the cause."""
    if isinstance(batch, Mapping) and FAST_FORWARD_KEY in batch:
        raise BatchError("a fast_forward() placeholder reached the training step: MixtureDataset.fast_forward(n) "
                         "is for a trainer that drops its loader's first n batches on resume (Hugging Face Trainer "
                         "with ignore_data_skip=False: n = global_step x gradient_accumulation_steps); this one "
                         "did not drop them")
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
