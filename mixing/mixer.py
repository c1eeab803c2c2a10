"""Domain mixers: Online Data Mixing (EXP3 bandit), related rules, static baselines.

Online Data Mixing (Albalak, Pan, Raffel, Wang 2023, "Efficient Online Data
Mixing For Language Model Pre-Training") treats every domain as an arm of an
EXP3 bandit whose reward is the training loss of the micro-batch drawn from it:
domains the model still finds hard get sampled more often. No production loader
(MosaicML streaming, litdata, Megatron, torchdata) changes its mixture while it
runs and resumes exactly afterwards, so the bandit and its schedule are written
here.

Design (why it is exactly resumable and safe with DataLoader workers):

* The mixer in the training process is the single source of truth. Step t
  (1-based, one optimizer step of ``grad_accum`` micro-batches) draws its domains
  with a pure function of (seed, t, micro-batch, rank, policy used at t); no
  hidden random state advances.
* The policy used at step t is the bandit policy computed after update
  ``t - lag - 1`` (``lag`` steps of feedback delay). A fixed lag makes the batch
  stream independent of ``num_workers`` and of timing: DataLoader workers may run
  ahead up to ``lag`` steps without ever waiting for the trainer. ``lag=None``
  (default) derives it from the DataLoader's workers and prefetch
  (``MixtureDataset.dataloader``) and fixes it at the first update. The
  importance weight of a reward is the probability under the policy that
  actually drew the batch.
* Each new policy is published to a small shared-memory ring (a torch tensor in
  shared memory); workers read it from there. The trainer's position (step and
  per-domain cursors) is published the same way, so persistent workers that get a
  new iterator continue the stream instead of restarting it.
* ``update()`` also advances, per domain, how many sequences this rank has
  consumed (replaying the same pure draw function), so a state_dict saved after
  step N says exactly where every domain's cursor stands.
* Under data parallelism per-domain losses are summed across the data-parallel
  ranks (``process_group``) with one ``all_reduce`` on the device the group's
  backend needs, so every rank holds identical rewards and policies; each rank
  draws its own domains (seeded by its rank in that group).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import time
import warnings
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from shammie.pipeline.errors import ShammieError

DEFAULT_LAG = 4          # = 2 DataLoader workers x prefetch_factor 2: workers never wait
DEFAULT_WAIT_TIMEOUT = 60.0   # longest a worker waits for a policy before it explains what is wrong
_RING_MARGIN = 64        # extra ring rows so slow workers replaying other workers' steps find their policy
_DRAW_SALT = 0x0D4A      # separates domain draws from the per-domain permutation seeds
REWARDS = ("paper", "authors_code", "smoothed_mean", "progress")


class MixingError(ShammieError, ValueError):
    """Misuse of a mixer or dataset, or numbers it cannot learn from; the message names the fix."""


class MixingWarning(UserWarning):
    """A domain passed one of its budget caps (max_epochs / max_share)."""


_STACKED_HINT = ("MixtureDataset yields whole micro-batches: build the loader with dataset.dataloader() or "
                 "DataLoader(dataset, batch_size=None); a DataLoader batch_size stacks several of them")

_SKIP_HINT = ("If the trainer skips batches on resume, it consumes batches without calling update(): "
              "with Hugging Face Trainer set TrainingArguments(ignore_data_skip=True), or call "
              "MixtureDataset.fast_forward(global_step x gradient_accumulation_steps) in a callback's "
              "on_train_begin (examples/hf_trainer.py), after restoring the data with "
              "MixtureDataset.load_state_dict. With gradient accumulation pass "
              "grad_accum=K to the mixer and call update() once per optimizer step.")


def exploration_rate(t: int, k: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t))); eps_0 is taken as 1/K (the limit of the min)."""
    if k < 1:
        raise MixingError("need at least one domain")
    if t <= 0 or k == 1:
        return 1.0 / k
    return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


def exp3_policy(rewards: np.ndarray, t: int) -> np.ndarray:
    """pi_t(i) = (1 - K eps_t) softmax(eps_{t-1} R)_i + eps_t."""
    k = len(rewards)
    eps_t, eps_prev = exploration_rate(t, k), exploration_rate(t - 1, k)
    z = eps_prev * np.asarray(rewards, dtype=np.float64)
    z = np.exp(z - z.max())          # shift for numerical safety; softmax is unchanged
    return (1.0 - k * eps_t) * z / z.sum() + eps_t


def linear_policy(rewards: np.ndarray, t: int) -> np.ndarray:
    """pi_t(i) = (1 - K eps_t) R_i / sum(R) + eps_t (uniform while all R are 0): the policy of the
    authors' published code (online-data-mixing, SmoothedMeanWeightUpdater)."""
    r = np.asarray(rewards, dtype=np.float64)
    k = len(r)
    eps_t = exploration_rate(t, k)
    total = r.sum()
    share = r / total if total > 0 else np.full(k, 1.0 / k)
    return (1.0 - k * eps_t) * share + eps_t


def resolve_weights(domains: Sequence[str], weights: Any,
                    token_counts: Mapping[str, float] | None = None) -> np.ndarray:
    """'uniform', 'natural' (by token count), a {domain: w} dict or a list -> normalised array."""
    k = len(domains)
    if weights is None or (isinstance(weights, str) and weights == "uniform"):
        w = np.ones(k)
    elif isinstance(weights, str) and weights == "natural":
        if token_counts is None:
            raise MixingError("natural weights need token counts per domain (pass token_counts= or use from_store())")
        missing = [d for d in domains if d not in token_counts]
        if missing:
            raise MixingError(f"no token count for domain(s) {missing}")
        w = np.array([float(token_counts[d]) for d in domains])
    elif isinstance(weights, str):
        raise MixingError(f"unknown weights {weights!r}: use 'uniform', 'natural' or a {{domain: weight}} mapping")
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(domains))
        if unknown:
            raise MixingError(f"weights given for unknown domain(s) {unknown}; domains are {list(domains)}")
        w = np.array([float(weights.get(d, 0.0)) for d in domains])
    else:
        w = np.asarray(list(weights), dtype=np.float64)
        if len(w) != k:
            raise MixingError(f"got {len(w)} weights for {k} domains")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise MixingError(f"mixture weights must be finite, non-negative and not all zero: {w.tolist()}")
    return w / w.sum()


def per_domain_losses(domains: Sequence[str], losses: Any) -> dict[str, float]:
    """The earlier name of ``shammie.mixing.losses.per_domain_means`` (domains first), kept
    for scripts that import it from here: {domain: mean per-sequence loss} of one batch.
    Accumulate micro-batches with ``shammie.mixing.losses.DomainLossAccumulator``."""
    from shammie.mixing.losses import per_domain_means   # imports torch; the bandit does not need it
    return per_domain_means(losses, domains)


# -- torch.distributed -------------------------------------------------------

def _dist():
    try:
        import torch.distributed as dist
    except ImportError:  # torch is optional for the bandit itself
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def _dist_info(group: Any = None) -> tuple[int, int]:
    """(rank, world size) in `group` (the data-parallel group; the default group if None)."""
    dist = _dist()
    if dist is None:
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def reduction_device(group: Any = None):
    """The device an all_reduce over `group` must use: NCCL only reduces CUDA tensors
    (on this process's current CUDA device); gloo, MPI and mixed backends that name a
    CPU backend ("cpu:gloo,cuda:nccl") reduce CPU tensors."""
    import torch
    import torch.distributed as dist
    backend = str(dist.get_backend(group)).lower()
    parts = dict(p.split(":", 1) for p in backend.split(",") if ":" in p)
    if parts:                                   # a per-device map: prefer its CPU backend
        if "cpu" in parts:
            return torch.device("cpu")
        if "cuda" in parts:
            return torch.device("cuda", torch.cuda.current_device())
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if backend == "xccl":
        return torch.device("xpu", torch.xpu.current_device())
    return torch.device("cpu")


class _SharedRows:
    """A float64 table in shared memory (torch tensor, `share_memory_()`), read by
    DataLoader workers through a numpy view (element access ~10x cheaper than torch's).

    Each row is [stamp, values...]; stamp -2 means never written. The writer sets
    stamp=-1 before writing the values and the real stamp after, and readers re-check
    the stamp after copying (a seqlock), so a reader never uses a half-written row."""

    def __init__(self, rows: int, width: int):
        import torch
        self.rows = rows
        self.buf = torch.full((rows, width + 1), -2.0, dtype=torch.float64).share_memory_()
        self._view = self.buf.numpy()

    def __getstate__(self):
        return {"rows": self.rows, "buf": self.buf}   # the tensor travels as a shared-memory handle

    def __setstate__(self, state):
        self.rows, self.buf = state["rows"], state["buf"]
        self._view = self.buf.numpy()

    def clear(self) -> None:
        self._view[:] = -2.0

    def write(self, slot: int, stamp: int, values: np.ndarray) -> None:
        row = self._view[slot % self.rows]
        row[0] = -1.0
        row[1:] = values
        row[0] = float(stamp)

    def read(self, slot: int) -> tuple[int, np.ndarray]:
        """(stamp, values) of a row; stamp -2 if it was never written."""
        row = self._view[slot % self.rows]
        while True:
            first = row[0]
            if first != -1.0:
                values = row[1:].copy()
                if row[0] == first:
                    return int(first), values
            time.sleep(1e-5)        # a write is in progress


class _PolicyRing:
    """Policies by step, in shared memory (row `step % rows` holds step's policy)."""

    def __init__(self, k: int, rows: int):
        self.rows = rows
        self._table = _SharedRows(rows, k)

    def clear(self) -> None:
        self._table.clear()

    def publish(self, step: int, policy: np.ndarray) -> None:
        self._table.write(step, step, policy)

    def read(self, step: int) -> np.ndarray | None:
        stamp, values = self._table.read(step)
        if stamp != step:
            if stamp > step:
                raise MixingError(
                    f"mixture policy for step {step} was already overwritten (ring of {self.rows} rows); "
                    "a DataLoader worker fell too far behind; increase the mixer's ring_rows")
            return None
        return values


class Mixer:
    """Common machinery: the draw schedule, cursors, feedback channels, validation, logging.

    Call ``update({domain: loss})`` exactly once per optimizer step (after all of the
    step's ``grad_accum`` micro-batches were consumed), for every mixer kind (static
    mixers use it to advance their schedule and to log).

    process_group: the data-parallel group (ranks that see different data). The
    draw rank and world size come from it, and the loss all_reduce runs over it.
    None means torch.distributed's default group when it is initialised.
    grad_accum: micro-batches per optimizer step; they are drawn independently from
    the step's policy and their losses arrive in one update().
    max_epochs / max_share: optional budgets, one number for every domain or a
    {domain: cap} mapping (see OnlineDataMixer); static mixers refuse them."""

    kind = "base"
    waits_for_feedback = True     # workers need the trainer's update() to draw (not so for fixed mixtures)

    def __init__(self, domains: Sequence[str], *, seed: int = 0, lag: int | None = None,
                 rank: int | None = None, world_size: int | None = None, process_group: Any = None,
                 grad_accum: int = 1, require_drawn: bool = True):
        domains = list(domains)
        if not domains:
            raise MixingError("a mixer needs at least one domain")
        if len(set(domains)) != len(domains):
            raise MixingError(f"duplicate domain names: {domains}")
        if lag is not None and (not isinstance(lag, (int, np.integer)) or lag < 0):
            raise MixingError(f"lag must be an integer >= 0 or None (derived from the DataLoader), got {lag!r}")
        if not isinstance(grad_accum, (int, np.integer)) or grad_accum < 1:
            raise MixingError(f"grad_accum must be an integer >= 1, got {grad_accum!r}")
        self.domains = domains
        self.seed = int(seed)
        self.lag = DEFAULT_LAG if lag is None else int(lag)
        self._lag_fixed = lag is not None
        self.grad_accum = int(grad_accum)
        self.require_drawn = bool(require_drawn)
        self.process_group = process_group
        dist_rank, dist_world = _dist_info(process_group)
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        self.batch_size = 1
        self.per_sample = False
        self.seq_len: int | None = None
        self.num_sequences: np.ndarray | None = None   # whole domain, all ranks (for epochs)
        self.step = 0                                   # optimizer steps already updated
        self.consumed = np.zeros(len(domains), dtype=np.int64)          # sequences this rank took per domain
        self.consumed_all = np.zeros(len(domains), dtype=np.int64)      # ... summed over the ranks
        self.last_record: dict[str, Any] | None = None
        self._index = {d: i for i, d in enumerate(domains)}
        self._draw_cache: tuple | None = None
        self._progress: _SharedRows | None = None       # [step, consumed...] for DataLoader workers

    def __getstate__(self):
        state = dict(self.__dict__)
        state["process_group"] = None     # process groups do not pickle; workers never reduce
        state["_draw_cache"] = None
        return state

    # -- schedule --------------------------------------------------------
    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def configure(self, *, batch_size: int, per_sample: bool = False,
                  rank: int | None = None, world_size: int | None = None,
                  seq_len: int | None = None, num_sequences: Sequence[int] | None = None) -> None:
        """Set how a step is drawn (MixtureDataset calls this); must match on resume."""
        if batch_size < 1:
            raise MixingError("batch_size must be >= 1")
        self.batch_size, self.per_sample = int(batch_size), bool(per_sample)
        dist_rank, dist_world = _dist_info(self.process_group)
        if dist_world > 1 and rank is None and world_size is None:
            rank, world_size = dist_rank, dist_world   # the process group may postdate the mixer
        if rank is not None:
            self.rank = int(rank)
        if world_size is not None:
            self.world_size = int(world_size)
        if seq_len is not None:
            self.seq_len = int(seq_len)
        if num_sequences is not None:
            if len(num_sequences) != self.num_domains:
                raise MixingError(f"{len(num_sequences)} sequence counts for {self.num_domains} domains")
            self.num_sequences = np.asarray(num_sequences, dtype=np.int64)
        if self._progress is None:
            self._progress = _SharedRows(1, self.num_domains)
            self._publish_progress()
        self._draw_cache = None

    def derive_lag(self, num_workers: int, prefetch_factor: int) -> int:
        """Derive the lag from the DataLoader's lookahead (until the lag is fixed): it requests up to
        num_workers * prefetch_factor micro-batches ahead, plus one that trainers such as
        Lightning fetch before finishing the current step. Covering that many steps means
        workers never wait for update(). An explicit or already used lag is kept."""
        if not self._lag_fixed:
            ahead_items = num_workers * prefetch_factor + (1 if num_workers else 0)
            self._set_lag(max(DEFAULT_LAG, -(-ahead_items // self.grad_accum)))
        return self.lag

    def lookahead_steps(self, num_workers: int, prefetch_factor: int) -> int:
        """Steps a DataLoader with these settings can request ahead of the last update."""
        return -(-(num_workers * prefetch_factor + (1 if num_workers else 0)) // self.grad_accum)

    def _set_lag(self, lag: int) -> None:
        self.lag = int(lag)

    def _fix_lag(self) -> None:
        self._lag_fixed = True

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = DEFAULT_WAIT_TIMEOUT,
                        on_wait=None) -> np.ndarray:
        """The mixture that draws step t (1-based)."""
        raise NotImplementedError

    def can_draw(self, t: int) -> bool:
        """Whether step t's policy is known already (in the trainer's process)."""
        return True

    def step_draws(self, t: int, policy: np.ndarray | None = None, *, wait: bool = False) -> np.ndarray:
        """Domain index of every sequence of step t, shape (grad_accum, batch_size): a pure
        function of (seed, t, micro-batch, rank, policy) so that workers, ranks and resumed
        runs agree."""
        if policy is None:
            policy = self.policy_for_step(t, wait=wait)
        key = (t, policy.tobytes())
        if self._draw_cache is not None and self._draw_cache[0] == key:
            return self._draw_cache[1]         # update() replays the draw the dataset just made
        cdf = np.cumsum(policy)
        cdf = cdf / cdf[-1]
        drawn = np.empty((self.grad_accum, self.batch_size), dtype=np.int64)
        last = self.num_domains - 1
        cdf_list = cdf.tolist()
        for m in range(self.grad_accum):
            # inverse-CDF on seeded uniforms: Generator.choice(p=...) costs ~3x more per call.
            # Micro-batch 0 keeps the seed of the single-micro-batch schedule.
            key_seed = [self.seed, _DRAW_SALT, t, self.rank] + ([m] if m else [])
            rng = np.random.default_rng(key_seed)
            if self.per_sample:
                drawn[m] = np.minimum(np.searchsorted(cdf, rng.random(self.batch_size), side="right"), last)
            else:   # the same first uniform and the same search as above, without arrays
                drawn[m] = min(bisect.bisect_right(cdf_list, rng.random()), last)
        drawn.flags.writeable = False
        self._draw_cache = (key, drawn)
        return drawn

    def draw_indices(self, t: int, policy: np.ndarray | None = None, *, wait: bool = False,
                     micro_batch: int = 0) -> np.ndarray:
        """Domain index of each sequence of one micro-batch of step t."""
        return self.step_draws(t, policy, wait=wait)[micro_batch]

    def weights(self) -> dict[str, float]:
        """The mixture that will draw the next step."""
        return dict(zip(self.domains, self.policy_for_step(self.step + 1).tolist()))

    def sample(self) -> list[str]:
        """Domains of the next step's first micro-batch (batch_size of them; all equal unless per_sample)."""
        return [self.domains[i] for i in self.draw_indices(self.step + 1)]

    def stream_position(self) -> tuple[int, np.ndarray]:
        """(steps updated, per-domain sequences consumed on this rank) as the trainer last
        published them; in a DataLoader worker this is the trainer's live position, not
        the copy the worker was started with."""
        if self._progress is None:
            return self.step, self.consumed.copy()
        stamp, values = self._progress.read(0)
        if stamp < 0:                                   # never published
            return self.step, self.consumed.copy()
        return stamp, values.astype(np.int64)

    def _publish_progress(self) -> None:
        if self._progress is not None:
            self._progress.write(0, self.step, self.consumed.astype(np.float64))

    # -- feedback --------------------------------------------------------
    def _parse_loss(self, d: Any, v: Any) -> float:
        if d not in self._index:
            raise MixingError(f"loss reported for unknown domain {d!r}; domains are {self.domains}")
        if type(v) is float or type(v) is int:      # the common case, without numpy
            try:
                x = float(v)
            except OverflowError:
                x = math.inf
            if 0.0 <= x < math.inf:
                return x
        if v is None:
            raise MixingError(f"loss for domain {d!r} is None: pass a number, a tensor or a list of "
                              "per-sequence losses (a Hugging Face model returns loss=None without labels)")
        try:
            if hasattr(v, "detach"):
                v = v.detach().double().reshape(-1).cpu().numpy()
            arr = np.asarray(v, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise MixingError(f"loss for domain {d!r} is not a number: {v!r}") from None
        if arr.size == 0:
            raise MixingError(f"empty loss list for domain {d!r}")
        if not np.all(np.isfinite(arr)):
            raise MixingError(f"non-finite loss {arr[~np.isfinite(arr)][0]} for domain {d!r}")
        if np.any(arr < 0):
            raise MixingError(f"negative loss {arr.min()} for domain {d!r}: the reward is a training loss "
                              "(cross-entropy, >= 0)")
        with np.errstate(over="ignore"):
            mean = float(arr.mean())
        if not math.isfinite(mean):
            raise MixingError(f"loss for domain {d!r} overflows (mean of {arr.tolist()[:4]}...)")
        return mean

    def _local_losses(self, losses: Mapping[str, Any], drawn_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(losses, Mapping):
            raise MixingError(f"update() takes a {{domain: loss}} mapping, got {type(losses).__name__}")
        sums = np.zeros(self.num_domains)
        counts = np.zeros(self.num_domains)
        for d, v in losses.items():
            mean = self._parse_loss(d, v)
            i = self._index[d]
            if self.require_drawn and not drawn_counts[i]:
                raise MixingError(
                    f"loss reported for domain {d!r}, which step {self.step + 1} did not draw on rank "
                    f"{self.rank} (drawn: {sorted(self.domains[j] for j in np.flatnonzero(drawn_counts))}). "
                    "Report the losses "
                    "of the batches this rank received, once per optimizer step. " + _SKIP_HINT)
            sums[i] += mean
            counts[i] += 1
        return sums, counts

    def _reduce(self, sums: np.ndarray, counts: np.ndarray, drawn_counts: np.ndarray,
                error: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Sum loss sums, reporting ranks, drawn sequences and error flags over the data-parallel ranks."""
        rank, world = _dist_info(self.process_group)
        if world <= 1:
            return sums, counts, drawn_counts, error
        if (rank, world) != (self.rank, self.world_size):
            raise MixingError(
                f"mixer set up for rank {self.rank} of {self.world_size} but the process group says {rank} of "
                f"{world}: pass the data-parallel group as process_group= (or rank=/world_size= that match it)")
        import torch
        import torch.distributed as dist
        k = self.num_domains
        device = reduction_device(self.process_group)
        packed = torch.from_numpy(np.concatenate([sums, counts, drawn_counts.astype(np.float64), [error]]))
        packed = packed.to(device)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.process_group)
        out = packed.cpu().numpy()
        return out[:k], out[k:2 * k], out[2 * k:3 * k], float(out[3 * k])

    def update(self, losses: Mapping[str, Any], *, step: int | None = None) -> dict[str, Any]:
        """Feed back the training loss per domain drawn in the optimizer step just taken.

        losses: {domain: loss}, a loss being a number, a tensor or a list of per-sequence
        losses (averaged); only domains this rank drew in the step, over all its
        micro-batches. step: the batches' ``batch["step"]``; if given it must be the
        step this update is for (catches trainers that skip or repeat batches).
        Every rank calls it every step (it is a collective under torch.distributed).
        Returns the step's log record (weights used, losses, per-domain budgets)."""
        t = self.step + 1
        if step is not None:
            if (step.numel() if hasattr(step, "numel") else np.size(step)) != 1:
                raise MixingError(f"step={step!r} holds several steps: " + _STACKED_HINT)
            step = int(np.asarray(step.cpu() if hasattr(step, "cpu") else step).reshape(-1)[0])
        if step is not None and step != t:
            raise MixingError(f"update() for step {t} got the loss of batch step {step}: the trainer skipped or "
                              f"repeated batches. {_SKIP_HINT}")
        self._fix_lag()
        used = self.policy_for_step(t)
        drawn = self.step_draws(t, used)
        drawn_counts = np.bincount(drawn.reshape(-1), minlength=self.num_domains)
        local_error: MixingError | None = None
        try:
            sums, counts = self._local_losses(losses, drawn_counts)
        except MixingError as e:
            if _dist_info(self.process_group)[1] <= 1:
                raise
            # still join the collective so the other ranks fail with this rank instead of hanging
            local_error, sums, counts = e, np.zeros(self.num_domains), np.zeros(self.num_domains)
        sums, counts, drawn_all, errors = self._reduce(sums, counts, drawn_counts, 1.0 if local_error else 0.0)
        if local_error is not None:
            raise local_error
        if errors > 0:
            raise MixingError(f"{int(errors)} other rank(s) reported invalid losses for step {t}; see their errors")
        with np.errstate(over="ignore", invalid="ignore"):
            means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        if not np.isfinite(means).all():
            raise MixingError(f"the rank-averaged losses of step {t} overflow: {means.tolist()}")
        consumed_all = self.consumed_all + drawn_all.astype(np.int64)
        self._learn_checked(t, means, counts > 0, used, consumed_all)
        self.consumed += drawn_counts
        self.consumed_all = consumed_all
        self.step = t
        self._after_step()
        self._publish_progress()
        self.last_record = self._record(t, used, means, counts)
        return self.last_record

    def _record(self, t: int, used: np.ndarray, means: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "step": t, "kind": "train", "mixer": self.kind,
            "weights": dict(zip(self.domains, used.tolist())),
            "loss": {self.domains[i]: float(means[i]) for i in np.flatnonzero(counts > 0)},
            "sequences": dict(zip(self.domains, self.consumed_all.tolist())),
        }
        if self.seq_len is not None:
            rec["tokens"] = {d: int(n) * self.seq_len for d, n in rec["sequences"].items()}
        epochs = self.epochs()
        if epochs is not None:
            rec["epochs"] = dict(zip(self.domains, [round(float(e), 6) for e in epochs]))
        return rec

    def epochs(self, consumed_all: np.ndarray | None = None) -> np.ndarray | None:
        """Passes over each domain's packed sequences, all ranks together (None before
        MixtureDataset told the mixer the domain sizes)."""
        if self.num_sequences is None:
            return None
        c = self.consumed_all if consumed_all is None else consumed_all
        return c / np.maximum(self.num_sequences, 1)

    def _learn_checked(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray,
                       consumed_all: np.ndarray) -> None:
        pass

    def _after_step(self) -> None:
        pass

    # -- state -----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"kind": self.kind, "domains": self.domains, "seed": self.seed, "lag": self.lag,
                "batch_size": self.batch_size, "per_sample": self.per_sample,
                "rank": self.rank, "world_size": self.world_size, "grad_accum": self.grad_accum}

    def state_dict(self) -> dict[str, Any]:
        self._fix_lag()
        return {"config": self._config(), "step": self.step, "consumed": self.consumed.tolist(),
                "consumed_all": self.consumed_all.tolist()}

    def _check_state(self, state: Any, required: Sequence[str]) -> None:
        if not isinstance(state, Mapping):
            raise MixingError(f"mixer state must be a mapping (from state_dict()), got {type(state).__name__}")
        missing = [k for k in required if k not in state]
        if missing:
            raise MixingError(f"not a {type(self).__name__} state: missing {missing} "
                              "(pass what state_dict() returned)")

    def _counts_from_state(self, state: Mapping[str, Any], key: str) -> np.ndarray:
        try:
            arr = np.asarray(state[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise MixingError(f"mixer state {key!r} is not a list of numbers") from None
        if arr.shape != (self.num_domains,) or not np.all(np.isfinite(arr)) or np.any(arr < 0) \
                or np.any(arr != np.round(arr)):
            raise MixingError(f"mixer state {key!r} must be {self.num_domains} non-negative integers, "
                              f"got {state[key]!r}")
        return arr.astype(np.int64)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state, ("config", "step", "consumed"))
        theirs = dict(state["config"]) if isinstance(state["config"], Mapping) else None
        if theirs is None:
            raise MixingError("mixer state 'config' must be a mapping")
        theirs.setdefault("grad_accum", 1)                 # states saved before grad_accum existed
        mine = self._config()
        if not self._lag_fixed and isinstance(theirs.get("lag"), int) and theirs["lag"] >= 0:
            mine["lag"] = theirs["lag"]                     # a derived lag follows the run being resumed
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            raise MixingError("mixer state was saved with a different configuration "
                              f"(saved, now): {diff}; resume needs the same domains, seed, lag, "
                              "batch size, grad_accum, rank and world size")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise MixingError(f"mixer state 'step' must be an integer >= 0, got {step!r}")
        consumed = self._counts_from_state(state, "consumed")
        consumed_all = self._counts_from_state(state, "consumed_all") if "consumed_all" in state \
            else consumed * self.world_size               # older states: ranks draw alike on average
        lag_before = self.lag
        self._set_lag(mine["lag"])
        try:
            self._load_extra(state, int(step))
        except Exception:
            self._set_lag(lag_before)
            raise
        self._fix_lag()
        self.step = int(step)
        self.consumed, self.consumed_all = consumed, consumed_all
        self._draw_cache = None
        self._publish_progress()

    def _load_extra(self, state: Mapping[str, Any], step: int) -> None:
        pass


class StaticMixer(Mixer):
    """Fixed mixture: 'uniform', 'natural' (by token count) or given weights."""

    kind = "static"
    waits_for_feedback = False

    def __init__(self, domains: Sequence[str], weights: Any = "uniform", *,
                 token_counts: Mapping[str, float] | None = None, **kw):
        caps = sorted({"max_epochs", "max_share"} & set(kw))
        if caps:
            # a fixed mixture is drawn without the trainer's feedback, so nothing could apply them
            raise MixingError(f"{caps} need OnlineDataMixer (its published policy applies the caps); "
                              "a StaticMixer's mixture is fixed")
        super().__init__(domains, **kw)
        self.fixed = resolve_weights(self.domains, weights, token_counts)

    @classmethod
    def from_store(cls, store, weights: Any = "uniform", **kw) -> "StaticMixer":
        return cls(store.domains, weights, token_counts={d: store.num_tokens(d) for d in store.domains}, **kw)

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = DEFAULT_WAIT_TIMEOUT,
                        on_wait=None) -> np.ndarray:
        return self.fixed

    def derive_lag(self, num_workers: int, prefetch_factor: int) -> int:
        return self.lag                        # a fixed mixture never waits for feedback

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "weights": self.fixed.tolist()}


def _per_domain(domains: Sequence[str], value: Any, name: str, low: float, high: float) -> np.ndarray | None:
    """A cap given as one number or {domain: number} -> array (inf where absent), checked."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(domains))
        if unknown:
            raise MixingError(f"{name} given for unknown domain(s) {unknown}; domains are {list(domains)}")
        caps = np.array([float(value.get(d, math.inf)) for d in domains])
    else:
        try:
            caps = np.full(len(domains), float(value))
        except (TypeError, ValueError):
            raise MixingError(f"{name} must be a number or a {{domain: number}} mapping, got {value!r}") from None
    given = caps[np.isfinite(caps)]
    if np.any(np.isnan(caps)) or np.any(given <= low) or np.any(given > high):
        raise MixingError(f"{name} must be in ({low}, {high}], got {value!r}")
    return caps


def cap_shares(policy: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Renormalise `policy` so no domain exceeds its share cap: capped domains get their
    cap, the rest of the mass goes to the others in proportion to their probability."""
    p = np.asarray(policy, dtype=np.float64).copy()
    fixed = np.zeros(len(p), dtype=bool)
    for _ in range(len(p)):
        over = (~fixed) & (p > caps + 1e-15)
        if not over.any():
            break
        fixed |= over
        p[fixed] = caps[fixed]
        free = ~fixed
        rest = 1.0 - p[fixed].sum()
        mass = p[free].sum()
        if mass > 0:
            p[free] *= rest / mass
        elif free.any():
            p[free] = rest / free.sum()
    return p


class OnlineDataMixer(Mixer):
    """ODM: a bandit over domains. See the module docstring for the schedule.

    reward (the learning rule; eps_t = min(1/K, sqrt(ln K / (K t))) everywhere):

    * "paper" (default), the paper's formulas: R_i <- alpha R_i + (1 - alpha) loss_i / pi(i)
      (pi the probability that drew domain i), policy (1 - K eps_t) softmax(eps_{t-1} R) + eps_t.
    * "authors_code", the rule of the authors' published code (alon-albalak/online-data-mixing,
      SmoothedMeanWeightUpdater): R_i <- alpha R_i + (1 - alpha) exp(loss_i), no importance
      weight, linear policy (1 - K eps_t) R / sum(R) + eps_t.
    * "smoothed_mean": the authors' exp(loss) reward fed to the paper's softmax policy,
      (1 - K eps_t) softmax(eps_{t-1} R) + eps_t. A hybrid of the two above, not the authors'
      rule: because exp(loss) enters an exponent, it concentrates on the highest-loss domain
      once eps_{t-1} * (exp(l_1) - exp(l_2)) exceeds a few units, which depends on the loss scale.
    * "progress" (not in the paper): the reward is a domain's recent learning progress,
      |slow EMA - fast EMA| / slow EMA of its loss (fast EMA with `alpha`, slow with
      `slow_alpha`), policy (1 - K eps_t) softmax(progress / temperature) + eps_t. A domain
      whose loss stays flat (unlearnable noise, or learnt) gets no more than a fair share,
      however high its loss; a domain whose loss is moving (learning or being forgotten)
      gets more.

    Steps 1..warmup_steps draw from ``initial_weights`` (rewards are still learned,
    importance-weighted by that mixture); the bandit policy takes over afterwards,
    with the exploration schedule counted from step 1.

    Budgets: max_epochs (passes over a domain, all ranks together) drops a domain from
    the policy once reached; max_share caps a domain's probability. Both renormalise the
    policy over the other domains and warn (MixingWarning) the first time a domain hits
    its cap. They act on the published policy, so they take effect `lag` steps later."""

    kind = "odm"

    def __init__(self, domains: Sequence[str], *, alpha: float = 0.9, warmup_steps: int = 0,
                 initial_weights: Any = "uniform", token_counts: Mapping[str, float] | None = None,
                 reward: str = "paper", ring_rows: int | None = None, slow_alpha: float = 0.99,
                 temperature: float = 0.05, max_epochs: Any = None, max_share: Any = None, **kw):
        super().__init__(domains, **kw)
        if not 0.0 <= alpha < 1.0:
            raise MixingError("alpha (reward smoothing) must be in [0, 1)")
        if reward not in REWARDS:
            raise MixingError(f"unknown reward {reward!r}: use one of {list(REWARDS)}")
        if warmup_steps < 0:
            raise MixingError("warmup_steps must be >= 0")
        if not alpha < slow_alpha < 1.0:
            raise MixingError("slow_alpha must be in (alpha, 1)")
        if not temperature > 0:
            raise MixingError("temperature must be > 0")
        self.alpha, self.warmup_steps, self.reward = float(alpha), int(warmup_steps), reward
        self.slow_alpha, self.temperature = float(slow_alpha), float(temperature)
        self.initial = resolve_weights(self.domains, initial_weights, token_counts)
        self.max_epochs = _per_domain(self.domains, max_epochs, "max_epochs", 0.0, math.inf)
        self.max_share = _per_domain(self.domains, max_share, "max_share", 0.0, 1.0)
        if self.max_share is not None and np.all(np.isfinite(self.max_share)) and self.max_share.sum() < 1.0:
            raise MixingError(f"the max_share caps sum to {self.max_share.sum():.3f} < 1: no policy fits them")
        self.rewards = np.zeros(self.num_domains)
        # "progress" keeps two loss averages per domain; zeros until a domain's first loss
        self.fast = np.zeros(self.num_domains)
        self.slow = np.zeros(self.num_domains)
        self.observed = np.zeros(self.num_domains, dtype=np.int64)
        self._warned: set[tuple[str, str]] = set()
        self._policies: dict[int, np.ndarray] = {}
        self._ring_rows_given = ring_rows
        self._ring = _PolicyRing(self.num_domains, ring_rows or self.lag + _RING_MARGIN)
        self._publish(1, self._next_policy(1, self.consumed_all))

    @classmethod
    def from_store(cls, store, **kw) -> "OnlineDataMixer":
        return cls(store.domains, token_counts={d: store.num_tokens(d) for d in store.domains}, **kw)

    def _set_lag(self, lag: int) -> None:
        super()._set_lag(lag)
        if self._ring_rows_given is None and self._ring.rows < self.lag + _RING_MARGIN:
            # only before any worker holds the ring: the lag is still free to change then
            self._ring = _PolicyRing(self.num_domains, self.lag + _RING_MARGIN)
            for s, p in self._policies.items():
                self._ring.publish(s, p)

    def _bandit_policy(self, s: int) -> np.ndarray:
        """pi_s from the rewards after s-1 updates (the current rewards when called)."""
        if s <= self.warmup_steps:
            return self.initial
        if self.reward == "authors_code":
            return linear_policy(self.rewards, s)
        if self.reward == "progress":
            k = self.num_domains
            eps = exploration_rate(s, k)
            z = self.rewards / self.temperature
            z = np.exp(z - z.max())
            return (1.0 - k * eps) * z / z.sum() + eps
        return exp3_policy(self.rewards, s)

    def _next_policy(self, s: int, consumed_all: np.ndarray) -> np.ndarray:
        """The bandit policy for step s with the budget caps applied."""
        policy = self._bandit_policy(s)
        self._capped_now: list[tuple[str, str]] = []
        epochs = self.epochs(consumed_all)
        if self.max_epochs is not None and epochs is not None:
            done = epochs >= self.max_epochs
            if done.all():
                raise MixingError(f"every domain reached its max_epochs ({self.max_epochs.tolist()}) at step {s - 1}: "
                                  "raise the caps or stop training")
            if done.any():
                policy = np.where(done, 0.0, policy)
                policy = policy / policy.sum()
                self._capped_now += [(self.domains[i], "max_epochs") for i in np.flatnonzero(done)]
        if self.max_share is not None:
            capped = cap_shares(policy, self.max_share)
            self._capped_now += [(self.domains[i], "max_share")
                                 for i in np.flatnonzero(policy > self.max_share + 1e-12)]
            policy = capped
        return policy

    def _publish(self, s: int, policy: np.ndarray) -> None:
        self._policies[s] = policy
        for old in [k for k in self._policies if k < s - self.lag - 1]:
            del self._policies[old]
        self._ring.publish(s, policy)

    def can_draw(self, t: int) -> bool:
        return t - self.lag <= self.step + 1

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = DEFAULT_WAIT_TIMEOUT,
                        on_wait=None) -> np.ndarray:
        """on_wait: called once if a worker has to wait for the policy (diagnostics)."""
        s = max(1, t - self.lag)
        if s in self._policies and not wait:
            return self._policies[s]
        deadline, pause = time.monotonic() + timeout, 1e-4
        while True:
            p = self._ring.read(s)
            if p is not None:
                return p
            if wait and on_wait is not None and pause == 1e-4:
                on_wait()
            if not wait:
                raise MixingError(
                    f"the mixture for step {t} needs the loss of step {s - 1}, but update() has run for "
                    f"{self.stream_position()[0]} steps: call mixer.update() once per optimizer step before "
                    f"drawing more than lag={self.lag} steps ahead. {_SKIP_HINT}")
            if time.monotonic() > deadline:
                done = self.stream_position()[0]
                raise MixingError(
                    f"a DataLoader worker waited {timeout:.0f} s for the mixture of step {t}, which needs "
                    f"update() of step {s - 1}; the trainer has updated {done} steps. Either the loader "
                    f"runs further ahead than lag={self.lag} steps x grad_accum={self.grad_accum} micro-batches "
                    "(use MixtureDataset.dataloader(), or lag >= num_workers * prefetch_factor / grad_accum), "
                    f"or update() is not called once per step. {_SKIP_HINT}")
            time.sleep(pause)
            pause = min(pause * 2, 5e-3)

    # the learning rules -------------------------------------------------
    def _learn_checked(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray,
                       consumed_all: np.ndarray) -> None:
        """Apply the rule to copies, check rewards and next policy, then commit: a bad
        number is refused and leaves the mixer as it was."""
        if self.max_epochs is not None and self.num_sequences is None:
            raise MixingError("max_epochs needs the domain sizes: use the mixer through MixtureDataset "
                              "(or call configure(num_sequences=...))")
        old = (self.rewards.copy(), self.fast.copy(), self.slow.copy(), self.observed.copy())
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                self._learn(t, means, seen, used)
            if not np.isfinite(self.rewards).all():
                raise MixingError(f"step {t}: the losses {dict(zip(self.domains, means.tolist()))} make the "
                                  f"rewards non-finite ({self.rewards.tolist()}); update refused, mixer unchanged")
            nxt = self._next_policy(t + 1, consumed_all)
            if not (np.isfinite(nxt).all() and (nxt >= 0).all() and abs(nxt.sum() - 1.0) < 1e-9):
                raise MixingError(f"step {t}: the next policy would be {nxt.tolist()}; update refused, "
                                  "mixer unchanged")
        except Exception:
            self.rewards, self.fast, self.slow, self.observed = old
            raise
        self._pending_policy = nxt

    def _learn(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray) -> None:
        a = self.alpha
        for i in np.flatnonzero(seen):
            if self.reward == "paper":
                gain = means[i] / used[i]
            elif self.reward == "progress":
                if self.observed[i] == 0:
                    self.fast[i] = self.slow[i] = means[i]
                else:
                    self.fast[i] = a * self.fast[i] + (1.0 - a) * means[i]
                    self.slow[i] = self.slow_alpha * self.slow[i] + (1.0 - self.slow_alpha) * means[i]
                self.observed[i] += 1
                self.rewards[i] = (self.slow[i] - self.fast[i]) / max(self.slow[i], 1e-12)
                continue
            else:                                   # authors_code, smoothed_mean: exp(loss)
                gain = math.exp(min(means[i], 50.0))
            self.rewards[i] = a * self.rewards[i] + (1.0 - a) * gain

    def _after_step(self) -> None:
        self._publish(self.step + 1, self._pending_policy)
        for d, cap in self._capped_now:
            if (d, cap) not in self._warned:
                self._warned.add((d, cap))
                what = "passed its max_epochs" if cap == "max_epochs" else "hit its max_share"
                warnings.warn(f"domain {d!r} {what} at step {self.step}; the policy is renormalised over the "
                              "other domains from now on", MixingWarning, stacklevel=3)

    def _record(self, t, used, means, counts) -> dict[str, Any]:
        rec = super()._record(t, used, means, counts)
        if self._capped_now:
            rec["capped"] = sorted({d for d, _ in self._capped_now})
        return rec

    def _config(self) -> dict[str, Any]:
        cfg = {**super()._config(), "alpha": self.alpha, "warmup_steps": self.warmup_steps,
               "initial_weights": self.initial.tolist(), "reward": self.reward}
        if self.reward == "progress":
            cfg.update(slow_alpha=self.slow_alpha, temperature=self.temperature)
        return cfg

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "rewards": self.rewards.tolist(),
                 "policies": {str(s): p.tolist() for s, p in sorted(self._policies.items())}}
        if self.reward == "progress":
            state.update(fast=self.fast.tolist(), slow=self.slow.tolist(), observed=self.observed.tolist())
        return state

    def _vector(self, state: Mapping[str, Any], key: str) -> np.ndarray:
        try:
            arr = np.asarray(state[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise MixingError(f"mixer state {key!r} is not a list of numbers") from None
        if arr.shape != (self.num_domains,) or not np.all(np.isfinite(arr)):
            raise MixingError(f"mixer state {key!r} must be {self.num_domains} finite numbers, got {state[key]!r}")
        return arr

    def _load_extra(self, state: Mapping[str, Any], step: int) -> None:
        self._check_state(state, ("rewards", "policies") +
                          (("fast", "slow", "observed") if self.reward == "progress" else ()))
        rewards = self._vector(state, "rewards")
        extra = [self._vector(state, k) for k in ("fast", "slow", "observed")] if self.reward == "progress" else None
        if not isinstance(state["policies"], Mapping):
            raise MixingError("mixer state 'policies' must be a {step: policy} mapping")
        policies = {}
        for s, p in state["policies"].items():
            try:
                s = int(s)
                p = np.asarray(p, dtype=np.float64)
            except (TypeError, ValueError):
                raise MixingError(f"mixer state policy {s!r}: {p!r} is not step: list of numbers") from None
            if p.shape != (self.num_domains,) or not np.all(np.isfinite(p)) or np.any(p < 0) \
                    or abs(p.sum() - 1.0) > 1e-6:
                raise MixingError(f"mixer state policy of step {s} is not a probability vector over "
                                  f"{self.num_domains} domains: {p.tolist()}")
            policies[s] = p
        needed = [s for s in range(max(1, step + 1 - self.lag), step + 2)]
        missing = [s for s in needed if s not in policies]
        if missing:
            raise MixingError(f"mixer state lacks the policies of steps {missing}, which the next steps draw with")
        self.rewards = rewards
        if extra is not None:
            self.fast, self.slow, self.observed = extra[0], extra[1], extra[2].astype(np.int64)
        self._policies = {}
        self._ring.clear()   # rows from a later step would read as "overwritten"
        for s, p in sorted(policies.items()):
            self._publish(s, p)


class MixLog:
    """Append-only JSONL of per-step mixture weights and losses (train and eval).

    One line per record; `shammie mix report` plots it. On resume the file is kept
    and later lines win for a repeated step, so nothing logged is lost."""

    def __init__(self, path: str, flush_every: int = 20):
        self.path, self.flush_every, self._pending = path, flush_every, []
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        self._pending.append(json.dumps(record, sort_keys=True))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def write_eval(self, step: int, losses: Mapping[str, float], **extra: Any) -> None:
        self.write({"step": int(step), "kind": "eval", "loss": {d: float(v) for d, v in losses.items()}, **extra})
        self.flush()

    def flush(self) -> None:
        if self._pending:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(self._pending) + "\n")
            self._pending = []

    def close(self) -> None:
        self.flush()


def read_log(path: str) -> list[dict[str, Any]]:
    """Records of a MixLog file (JSONL) or a CSV with columns step,kind,domain,weight,loss."""
    if not os.path.exists(path):
        raise MixingError(f"mixing log not found: {path}")
    if path.endswith(".csv"):
        return _read_csv_log(path)
    records: dict[tuple[int, str], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise MixingError(f"{path}:{n}: not a JSON line ({e})") from None
            if "step" not in rec:
                raise MixingError(f"{path}:{n}: record without 'step'")
            records[(int(rec["step"]), rec.get("kind", "train"))] = rec
    return [records[k] for k in sorted(records)]


def _read_csv_log(path: str) -> list[dict[str, Any]]:
    import csv
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = (int(row["step"]), row.get("kind") or "train")
            rec = merged.setdefault(key, {"step": key[0], "kind": key[1], "weights": {}, "loss": {}})
            for column, field, cast in _CSV_FIELDS:
                if row.get(column) not in (None, ""):
                    rec.setdefault(field, {})[row["domain"]] = cast(row[column])
    return [merged[k] for k in sorted(merged)]


# long-CSV column, record field, type
_CSV_FIELDS = (("weight", "weights", float), ("loss", "loss", float), ("tokens", "tokens", int),
               ("epochs", "epochs", float))


def write_csv(records: Iterable[Mapping[str, Any]], path: str) -> None:
    """Long-format CSV (step, kind, domain, weight, loss, tokens, epochs), atomically."""
    import csv

    from shammie.pipeline.storage import atomic_write
    with atomic_write(path) as local, open(local, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "kind", "domain"] + [c for c, _, _ in _CSV_FIELDS])
        for rec in records:
            fields = [rec.get(field) or {} for _, field, _ in _CSV_FIELDS]
            for d in sorted(set().union(*fields)):
                w.writerow([rec["step"], rec.get("kind", "train"), d] + [x.get(d, "") for x in fields])
