"""MixtureDataset: a PyTorch IterableDataset drawing batches from a shard store
with the domain schedule of a mixer (see `shammie.mixing.mixer`).

It yields whole micro-batches, ``{"input_ids": LongTensor[B, L], "domain": [str]*B,
"step": int}`` (``grad_accum`` of them per optimizer step, all with that step's
number), so use ``DataLoader(dataset, batch_size=None, num_workers=W)`` or better
``dataset.dataloader(num_workers=W)``, which also derives the mixer's lag from W and
the prefetch factor and refuses at once a trainer that pulls batches without calling
``mixer.update()``. Yielding batches rather than samples keeps one micro-batch = one
domain draw even if a DataLoader batch size were set wrong.

Why it is correct with workers and ranks:
* Step t's domains are ``mixer.step_draws(t)`` (pure function of seed, t,
  micro-batch, rank and the policy published for t); every worker replays all
  steps, so it knows each domain's cursor exactly, and produces only the
  micro-batches the DataLoader will ask it for (item i after the start goes to
  worker ``i % W``, DataLoader's round-robin order).
* A domain's k-th sequence on a rank is ``perm_e[rank + world * (k mod n_r)]``
  with e = k // n_r, ``perm_e`` a seeded permutation of the domain's packed
  sequences for its epoch e and n_r = n // world: ranks take disjoint strides of
  one permutation, so within an epoch of a domain no sequence is served twice,
  on any rank or worker.
* Every new iterator starts at the trainer's position as last published by
  ``mixer.update()`` or ``load_state_dict`` (shared memory), also in persistent
  workers, so a new iterator per epoch continues the stream.
* A trainer that resumes by pulling and dropping the batches it already trained on
  (Hugging Face Trainer's data skip, through a loader Accelerate rebuilds around the
  dataset) gets ``fast_forward(n)`` placeholders first: the skip costs nothing and the
  stream continues at the restored step.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shammie.mixing.errors import SKIP_HINT, MixingError
from shammie.mixing.losses import FAST_FORWARD_KEY
from shammie.mixing.mixer import DEFAULT_WAIT_TIMEOUT, Mixer
from shammie.mixing.shm import SharedRows
from shammie.mixing.store import SequenceReader

_PERM_SALT = 0x5E0
_GATHER_MIN_ROWS = SequenceReader.GATHER_MIN_ROWS  # one threshold for every store's batch read


def _as_is(batch):
    """collate_fn for whole batches: they are tensors already (default_convert would walk the
    domain list string by string, ~0.1 ms per batch)."""
    return batch
# iterators created so far per (dataset object, worker) in this DataLoader worker process
# (persistent workers create one per epoch); module state, so it is fresh in every worker process
_WORKER_ITERATIONS: dict[tuple[int, int], int] = {}


class _DomainCursor:
    """Maps the k-th sequence taken from one domain on one rank to a sequence index:
    ``perm_e[rank + world * (k mod n_r)]`` with e = k // n_r (see the module docstring)."""

    def __init__(self, num_sequences: int, seed: int, domain_index: int, rank: int, world: int, shuffle: bool):
        self.n, self.seed, self.domain_index = num_sequences, seed, domain_index
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.per_rank = num_sequences // world
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, _PERM_SALT, self.domain_index, epoch])
            self._perm, self._epoch = rng.permutation(self.n), epoch
        return self._perm

    def indices(self, k: int, count: int) -> np.ndarray:
        """Sequence indices of the domain's k-th .. (k + count - 1)-th sequences on this rank,
        with one or two numpy operations per epoch they span (no per-row Python)."""
        epoch, pos = divmod(int(k), self.per_rank)
        out = np.empty(count, dtype=np.int64)
        done = 0
        while done < count:
            take = min(count - done, self.per_rank - pos)
            j = np.arange(self.rank + self.world * pos, self.rank + self.world * (pos + take), self.world)
            out[done:done + take] = self._permutation(epoch)[j] if self.shuffle else j
            done += take
            epoch, pos = epoch + 1, 0
        return out


class _DomainReader:
    """Copies a domain's packed sequences into rows of a batch. A store with
    ``sequence_reader(domain, seq_len)`` (ShardStore: one copy per shard through its batch
    path's layout) is read through it; other stores through ``gather()`` from
    ``_GATHER_MIN_ROWS`` rows when they have it, else ``sequence()`` per row."""

    def __init__(self, store, name: str, seq_len: int):
        self.store, self.name, self.seq_len = store, name, seq_len
        self.gather = getattr(store, "gather", None)
        make = getattr(store, "sequence_reader", None)
        self.fast = make(name, seq_len) if make is not None else None

    @property
    def single(self):
        """The domain's one shard as a (rows, seq_len) view when it has one shard, else None."""
        return self.fast.single if self.fast is not None else None

    def read(self, idx: np.ndarray, out: np.ndarray, rows: np.ndarray | None) -> None:
        """out[rows] = sequences idx (rows None: all of out, in order)."""
        if self.fast is not None:
            self.fast.read(idx, out, rows)
            return
        if self.gather is not None and len(idx) >= _GATHER_MIN_ROWS:
            out[rows if rows is not None else slice(None)] = self.gather(self.name, self.seq_len, idx)
            return
        positions = range(len(idx)) if rows is None else rows.tolist()
        for r, j in zip(positions, idx.tolist()):
            out[r] = self.store.sequence(self.name, self.seq_len, j)


class MixtureDataset(IterableDataset):
    """Endless stream of training micro-batches whose domains follow ``mixer``.

    store: a ShardStore (``shammie.mixing.store.open_store``) or anything with
    ``domains``, ``num_sequences(d, seq_len)`` and ``sequence(d, seq_len, j)``; a store
    with ``gather(d, seq_len, indices)`` is read a batch at a time through it.
    per_sample=False draws one domain per micro-batch (as in the paper);
    per_sample=True draws each sequence's domain independently.
    rank/world_size default to the mixer's process group (torch.distributed's default
    group when it is initialised). wait_timeout: longest a DataLoader worker waits for
    a policy before raising an error that says why (it never waits when the lag covers
    the loader's lookahead, which ``dataloader()`` arranges)."""

    def __init__(self, store, mixer: Mixer, seq_len: int, batch_size: int, *, per_sample: bool = False,
                 shuffle: bool = True, rank: int | None = None, world_size: int | None = None,
                 wait_timeout: float = DEFAULT_WAIT_TIMEOUT):
        if list(store.domains) != list(mixer.domains):
            raise MixingError(f"mixer domains {mixer.domains} differ from the store's {list(store.domains)}")
        if seq_len < 1:
            raise MixingError("seq_len must be >= 1")
        num_sequences = [int(store.num_sequences(d, int(seq_len))) for d in mixer.domains]
        mixer.configure(batch_size=batch_size, per_sample=per_sample, rank=rank, world_size=world_size,
                        seq_len=seq_len, num_sequences=num_sequences, vocab_size=getattr(store, "vocab_size", None))
        self.store, self.mixer, self.seq_len = store, mixer, int(seq_len)
        self.batch_size, self.per_sample, self.shuffle = int(batch_size), bool(per_sample), bool(shuffle)
        self.wait_timeout = wait_timeout
        self.num_sequences = num_sequences
        # where the loader's current iterator starts: [generation | step, consumed...], written
        # by dataloader() iterators in the trainer's process, read by persistent workers
        self._start = SharedRows(1, len(mixer.domains) + 1)
        self._generation = 0
        self._waits = torch.zeros(1, dtype=torch.int64).share_memory_()
        # [step | n]: iterators starting at that step first yield n placeholders (fast_forward)
        self._skip = SharedRows(1, 1)
        too_small = [d for d, n in zip(mixer.domains, self.num_sequences) if n < mixer.world_size]
        if too_small:
            raise MixingError(f"domain(s) {too_small} have fewer packed sequences of length {seq_len} than "
                              f"the {mixer.world_size} rank(s); drop them or use a shorter seq_len")

    def _cursors(self) -> list[_DomainCursor]:
        m = self.mixer
        return [_DomainCursor(n, m.seed, i, m.rank, m.world_size, self.shuffle)
                for i, n in enumerate(self.num_sequences)]

    def _readers(self) -> list[_DomainReader]:
        return [_DomainReader(self.store, name, self.seq_len) for name in self.mixer.domains]

    def _read(self, drawn: np.ndarray, consumed: np.ndarray, cursors: list[_DomainCursor],
              readers: list[_DomainReader]) -> np.ndarray:
        """The rows of one micro-batch: per domain drawn, the next sequences of its cursor
        (one index array), read into the rows that drew it."""
        out = np.empty((len(drawn), self.seq_len), dtype=np.int64)
        if not self.per_sample:                     # one domain for the whole micro-batch
            d = int(drawn[0])
            readers[d].read(cursors[d].indices(consumed[d], len(drawn)), out, None)
            return out
        order = np.argsort(drawn, kind="stable")    # rows grouped by domain, in row order
        counts = np.bincount(drawn, minlength=len(readers)).tolist()
        lo = 0
        for d, c in enumerate(counts):
            if c:
                readers[d].read(cursors[d].indices(consumed[d], c), out, order[lo:lo + c])
                lo += c
        return out

    def fast_forward(self, n: int) -> None:
        """Let a trainer that resumes by dropping the first ``n`` batches of its loader do so
        for free: iterators starting at the mixer's current step (call this after
        ``load_state_dict``) first yield ``n`` placeholder items, no draws, no reads, then
        the stream from the restored step on. Without it such a trainer pulls n real
        micro-batches without calling ``update()``. For Hugging Face Trainer with
        ``ignore_data_skip=False``: n = (global_step % max_steps) x gradient_accumulation_steps
        (``examples/hf_trainer.py`` does it in ``on_train_begin``). A placeholder that reaches
        the training step makes ``unpack_batch`` raise. Holds also for iterators made by other
        DataLoaders (workers read it from shared memory); an update() ends it."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise MixingError(f"fast_forward needs a number of batches >= 0, got {n!r}")
        self._skip.write(0, self.mixer.step, np.array([float(n)]))

    def _skipped_at(self, start: int) -> int:
        stamp, row = self._skip.read(0)
        return int(row[0]) if stamp == start else 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # The start position is read here, eagerly, not in the generator body: a worker that
        # starts late must not see updates the trainer made after this iterator was created.
        info = get_worker_info()
        mixer = self.mixer
        if info is None:
            mixer.derive_lag(0, 0)             # drawn in the trainer's process: no lookahead, lag 0 unless set
            mixer._fix_lag()                   # the trainer's process draws now: the lag is final
            start, consumed = mixer.step, mixer.consumed.copy()
            return self._stream(start, consumed, 0, 1, False, self._skipped_at(start))
        key = (id(self), info.id)
        done = _WORKER_ITERATIONS.get(key, 0)
        _WORKER_ITERATIONS[key] = done + 1
        if done == 0:
            # a new worker holds a copy of the mixer taken when the loader's iterator was created
            start, consumed = mixer.step, mixer.consumed.copy()
        else:
            # a persistent worker serving a new iterator: the trainer's process recorded its start
            generation, row = self._start.read(0)
            if generation == self._generation + done:
                start, consumed = int(row[0]), row[1:].astype(np.int64)
            else:                              # a plain DataLoader: the trainer's last published position
                start, consumed = mixer.stream_position()
        return self._stream(start, consumed, info.id, info.num_workers, True, self._skipped_at(start))

    def _stream(self, start: int, consumed: np.ndarray, worker: int, workers: int,
                in_worker: bool, skipped: int = 0) -> Iterator[dict[str, Any]]:
        mixer, domains = self.mixer, self.mixer.domains
        cursors, readers = self._cursors(), self._readers()
        for item in range(worker, skipped, workers):     # this worker's share of the placeholders
            yield {FAST_FORWARD_KEY: item}
        t, item = start, skipped
        k, batch, per_sample = len(domains), self.batch_size, self.per_sample
        while True:
            t += 1
            policy = mixer.policy_for_step(t, wait=in_worker, timeout=self.wait_timeout, on_wait=self._count_wait)
            draws = mixer.step_draws(t, policy)
            for micro in range(mixer.grad_accum):
                drawn = draws[micro]
                if item % workers == worker:
                    rows = self._read(drawn, consumed, cursors, readers)
                    names = [domains[d] for d in drawn.tolist()] if per_sample else [domains[drawn[0]]] * batch
                    yield {"input_ids": torch.from_numpy(rows), "domain": names, "step": t}
                if per_sample:
                    consumed += np.bincount(drawn, minlength=k)
                else:
                    consumed[drawn[0]] += batch
                item += 1

    def _count_wait(self) -> None:
        self._waits += 1

    @property
    def worker_waits(self) -> int:
        """How many times a DataLoader worker had to wait for update() to publish a policy
        (0 when the lag covers the loader's lookahead; the stream is exact either way)."""
        return int(self._waits.item())

    def _mark_start(self) -> None:
        """Record, for persistent workers, where the iterator being created starts. Workers
        take the mixer's lag and policy ring with them from now on, so the lag is final."""
        self.mixer._fix_lag()
        self._generation += 1
        m = self.mixer
        self._start.write(0, self._generation, np.concatenate([[float(m.step)], m.consumed.astype(np.float64)]))

    def dataloader(self, num_workers: int = 0, prefetch_factor: int | None = None, **kwargs) -> DataLoader:
        """A DataLoader over whole micro-batches.

        Unless the mixer's lag was set (or already used), it is derived here so that the
        loader's lookahead (num_workers * prefetch_factor micro-batches, default prefetch 2,
        plus one for trainers that fetch ahead) never makes a worker wait for update().
        With a set lag, prefetch_factor defaults to the largest value (<= 2) it covers.
        The returned loader raises at once, instead of blocking, when the trainer pulls
        a batch whose mixture depends on an update() that has not happened."""
        mixer = self.mixer
        if num_workers > 0:
            if prefetch_factor is None:
                if mixer._lag_fixed:
                    fit = (mixer.lag * mixer.grad_accum - 1) // num_workers
                    prefetch_factor = max(1, min(2, fit))
                else:
                    prefetch_factor = 2
            mixer.derive_lag(num_workers, prefetch_factor)
            if mixer.waits_for_feedback and mixer.lookahead_steps(num_workers, prefetch_factor) > mixer.lag:
                warnings.warn(
                    f"{num_workers} workers x prefetch_factor {prefetch_factor} run "
                    f"{mixer.lookahead_steps(num_workers, prefetch_factor)} steps ahead but the mixer's lag is "
                    f"{mixer.lag}: workers will wait for update() (the stream stays exact). Leave lag=None to "
                    "derive it, or raise it.", stacklevel=2)
            kwargs["prefetch_factor"] = prefetch_factor
        else:
            mixer.derive_lag(0, 0)                 # no workers, no lookahead: lag 0 unless set
        kwargs.setdefault("collate_fn", _as_is)
        return _MixtureDataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

    # The mixer holds all the stream state (its step and per-domain cursors);
    # the dataset's state only guards against resuming with different settings.
    def _settings(self) -> dict[str, Any]:
        return {"seq_len": self.seq_len, "batch_size": self.batch_size, "per_sample": self.per_sample,
                "shuffle": self.shuffle, "num_sequences": self.num_sequences}

    def state_dict(self) -> dict[str, Any]:
        return {**self._settings(), "mixer": self.mixer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or "mixer" not in state:
            raise MixingError("not a MixtureDataset state (a mapping with 'mixer', from state_dict())")
        mine = self._settings()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            raise MixingError(f"dataset state was saved with different settings (saved, now): {diff}")
        self.mixer.load_state_dict(state["mixer"])


class _MixtureDataLoader(DataLoader):
    """DataLoader whose iterator checks, before each fetch, that the micro-batch it asks
    for can be drawn: its step's policy needs update() of step - lag - 1. A trainer that
    pulls further without updating (gradient accumulation without grad_accum=K, a
    resumed Hugging Face Trainer skipping batches) would otherwise block a worker."""

    def __iter__(self):
        self.dataset._mark_start()
        skipped = self.dataset._skipped_at(self.dataset.mixer.step)
        if self.num_workers == 0 and self.collate_fn is _as_is and not self.pin_memory:
            # In-process with nothing to collate or pin, the DataLoader's own iterator only adds
            # a profiler hook and a fetcher per batch (~10-25 us): iterate the dataset directly.
            inner = iter(self.dataset)
        else:
            inner = super().__iter__()
        return _CheckedIterator(inner, self.dataset.mixer, skipped)


class _CheckedIterator:
    def __init__(self, inner, mixer: Mixer, skipped: int = 0):
        self._inner, self._mixer = inner, mixer
        self._start = mixer.stream_position()[0]      # where the workers start, too
        self._served = -int(skipped)                  # fast_forward placeholders need no policy

    def __iter__(self):
        return self

    def __next__(self):
        m = self._mixer
        step = self._start + 1 + max(self._served, 0) // m.grad_accum
        if self._served >= 0 and not m.can_draw(step):
            raise MixingError(
                f"the trainer asked for a batch of step {step} (micro-batch {self._served % m.grad_accum + 1} of "
                f"{m.grad_accum}) but mixer.update() has run for {m.step} steps; with lag={m.lag} that batch "
                f"needs update() of step {step - m.lag - 1}. {SKIP_HINT}")
        batch = next(self._inner)
        self._served += 1
        return batch

    def __getattr__(self, name):
        return getattr(self._inner, name)
