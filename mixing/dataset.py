"""MixtureDataset: a PyTorch IterableDataset drawing batches from a shard store
with the domain schedule of a mixer (see `shammie.mixing.mixer`).

It yields whole batches, ``{"input_ids": LongTensor[B, L], "domain": [str]*B,
"step": int}``, so use ``DataLoader(dataset, batch_size=None, num_workers=W)``
(or ``dataset.dataloader(num_workers=W)``). Yielding batches rather than samples
keeps one step = one domain draw even if a DataLoader batch size were set wrong.

Why it is correct with workers and ranks:
* Step t's domains are ``mixer.draw_indices(t)`` (pure function of seed, t, rank
  and the policy published for t); every worker replays all steps, so it knows
  each domain's cursor exactly, and produces only the steps the DataLoader will
  ask it for (worker ``(t - start - 1) % W``, DataLoader's round-robin order).
* A domain's k-th sequence on a rank is ``perm_e[rank + world * (k mod n_r)]``
  with e = k // n_r, ``perm_e`` a seeded permutation of the domain's packed
  sequences for its epoch e and n_r = n // world: ranks take disjoint strides of
  one permutation, so within an epoch of a domain no sequence is served twice,
  on any rank or worker.
* The stream starts at the mixer's step when the iterator is created, so create
  the DataLoader (its iterator) after ``load_state_dict``. Iterate it once: it is
  an endless stream of steps; epochs are per domain.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shammie.mixing.mixer import Mixer
from shammie.pipeline.errors import UserError

_PERM_SALT = 0x5E0


class _DomainCursor:
    """Maps the k-th sequence taken from one domain on one rank to a sequence index."""

    def __init__(self, num_sequences: int, seed: int, domain_index: int, rank: int, world: int, shuffle: bool):
        self.n, self.seed, self.domain_index = num_sequences, seed, domain_index
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.per_rank = num_sequences // world
        self._epoch, self._perm = -1, None

    def index(self, k: int) -> int:
        epoch, pos = divmod(int(k), self.per_rank)
        j = self.rank + self.world * pos
        if not self.shuffle:
            return j
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, _PERM_SALT, self.domain_index, epoch])
            self._perm, self._epoch = rng.permutation(self.n), epoch
        return int(self._perm[j])


class MixtureDataset(IterableDataset):
    """Endless stream of training batches whose domains follow ``mixer``.

    store: a ShardStore (``shammie.mixing.store.open_store``) or anything with
    ``domains``, ``num_sequences(d, seq_len)`` and ``sequence(d, seq_len, j)``.
    per_sample=False draws one domain per micro-batch (as in the paper);
    per_sample=True draws each sequence's domain independently.
    rank/world_size default to torch.distributed's when it is initialised."""

    def __init__(self, store, mixer: Mixer, seq_len: int, batch_size: int, *, per_sample: bool = False,
                 shuffle: bool = True, rank: int | None = None, world_size: int | None = None,
                 wait_timeout: float = 600.0):
        if list(store.domains) != list(mixer.domains):
            raise UserError(f"mixer domains {mixer.domains} differ from the store's {list(store.domains)}")
        if seq_len < 1:
            raise UserError("seq_len must be >= 1")
        mixer.configure(batch_size=batch_size, per_sample=per_sample, rank=rank, world_size=world_size)
        self.store, self.mixer, self.seq_len = store, mixer, int(seq_len)
        self.batch_size, self.per_sample, self.shuffle = int(batch_size), bool(per_sample), bool(shuffle)
        self.wait_timeout = wait_timeout
        self.num_sequences = [int(store.num_sequences(d, self.seq_len)) for d in mixer.domains]
        too_small = [d for d, n in zip(mixer.domains, self.num_sequences) if n < mixer.world_size]
        if too_small:
            raise UserError(f"domain(s) {too_small} have fewer packed sequences of length {seq_len} than "
                            f"the {mixer.world_size} rank(s); drop them or use a shorter seq_len")

    def _cursors(self) -> list[_DomainCursor]:
        m = self.mixer
        return [_DomainCursor(n, m.seed, i, m.rank, m.world_size, self.shuffle)
                for i, n in enumerate(self.num_sequences)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        in_worker = info is not None
        mixer, domains = self.mixer, self.mixer.domains
        start = mixer.step
        consumed = mixer.consumed.copy()
        cursors = self._cursors()
        t = start
        while True:
            t += 1
            policy = mixer.policy_for_step(t, wait=in_worker, timeout=self.wait_timeout)
            drawn = mixer.draw_indices(t, policy)
            if (t - start - 1) % workers == worker:
                rows, names = [], []
                taken = np.zeros(len(domains), dtype=np.int64)
                for d in drawn:
                    j = cursors[d].index(consumed[d] + taken[d])
                    taken[d] += 1
                    rows.append(np.asarray(self.store.sequence(domains[d], self.seq_len, j), dtype=np.int64))
                    names.append(domains[d])
                yield {"input_ids": torch.from_numpy(np.stack(rows)), "domain": names, "step": t}
            consumed += np.bincount(drawn, minlength=len(domains))

    def dataloader(self, num_workers: int = 0, prefetch_factor: int | None = None, **kwargs):
        """A DataLoader over whole batches. Keep num_workers * prefetch_factor <= mixer.lag
        for ODM so workers never wait for the trainer's feedback (they stay correct if not)."""
        if num_workers > 0:
            kwargs["prefetch_factor"] = prefetch_factor or max(1, min(2, self.mixer.lag // num_workers or 1))
            kwargs.setdefault("persistent_workers", False)
        return DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

    # The mixer holds all the stream state (its step and per-domain cursors);
    # the dataset's state only guards against resuming with different settings.
    def state_dict(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "batch_size": self.batch_size, "per_sample": self.per_sample,
                "shuffle": self.shuffle, "num_sequences": self.num_sequences,
                "mixer": self.mixer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine = {k: v for k, v in self.state_dict().items() if k != "mixer"}
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            raise UserError(f"dataset state was saved with different settings (saved, now): {diff}")
        self.mixer.load_state_dict(state["mixer"])
