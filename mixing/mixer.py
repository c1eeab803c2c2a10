"""Domain mixers: Online Data Mixing (EXP3 bandit) and static baselines.

Online Data Mixing (Albalak, Pan, Raffel, Wang 2023, "Efficient Online Data
Mixing For Language Model Pre-Training") treats every domain as an arm of an
EXP3 bandit whose reward is the training loss of the micro-batch drawn from it:
domains the model still finds hard get sampled more often. No production loader
(MosaicML streaming, litdata, Megatron, torchdata) changes its mixture while it
runs and resumes exactly afterwards, so the bandit and its schedule are written
here.

Design (why it is exactly resumable and safe with DataLoader workers):

* The mixer in the training process is the single source of truth. Step t
  (1-based, one optimizer step) draws its domains with a pure function of
  (seed, t, rank, policy used at t); no hidden random state advances.
* The policy used at step t is the bandit policy computed after update
  ``t - lag - 1`` (``lag`` steps of feedback delay, fixed by the user, default 4).
  A fixed lag makes the batch stream independent of ``num_workers`` and of
  timing: DataLoader workers may run ahead up to ``lag`` steps without ever
  waiting for the trainer. The importance weight of a reward is the probability
  under the policy that actually drew the batch.
* Each new policy is published to a small shared-memory ring (a torch tensor in
  shared memory); workers read it from there. This is the feedback channel from
  ``update()`` in the main process to the workers.
* ``update()`` also advances, per domain, how many sequences this rank has
  consumed (replaying the same pure draw function), so a state_dict saved after
  step N says exactly where every domain's cursor stands.
* Under data parallelism per-domain losses are averaged across ranks with one
  ``all_reduce`` before the update, so every rank holds identical rewards and
  policies; each rank draws its own domains (seeded by rank) from that policy.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from shammie.pipeline.errors import UserError

DEFAULT_LAG = 4          # = 2 DataLoader workers x prefetch_factor 2: workers never wait
_RING_MARGIN = 64        # extra ring rows so slow workers replaying other workers' steps find their policy
_DRAW_SALT = 0x0D4A      # separates domain draws from the per-domain permutation seeds


def exploration_rate(t: int, k: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t))); eps_0 is taken as 1/K (the limit of the min)."""
    if k < 1:
        raise ValueError("need at least one domain")
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


def resolve_weights(domains: Sequence[str], weights: Any,
                    token_counts: Mapping[str, float] | None = None) -> np.ndarray:
    """'uniform', 'natural' (by token count), a {domain: w} dict or a list -> normalised array."""
    k = len(domains)
    if weights is None or (isinstance(weights, str) and weights == "uniform"):
        w = np.ones(k)
    elif isinstance(weights, str) and weights == "natural":
        if token_counts is None:
            raise UserError("natural weights need token counts per domain (pass token_counts= or use from_store())")
        missing = [d for d in domains if d not in token_counts]
        if missing:
            raise UserError(f"no token count for domain(s) {missing}")
        w = np.array([float(token_counts[d]) for d in domains])
    elif isinstance(weights, str):
        raise UserError(f"unknown weights {weights!r}: use 'uniform', 'natural' or a {{domain: weight}} mapping")
    elif isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(domains))
        if unknown:
            raise UserError(f"weights given for unknown domain(s) {unknown}; domains are {list(domains)}")
        w = np.array([float(weights.get(d, 0.0)) for d in domains])
    else:
        w = np.asarray(list(weights), dtype=np.float64)
        if len(w) != k:
            raise UserError(f"got {len(w)} weights for {k} domains")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise UserError(f"mixture weights must be finite, non-negative and not all zero: {w.tolist()}")
    return w / w.sum()


def _dist_info() -> tuple[int, int]:
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # torch is optional for the bandit itself
        pass
    return 0, 1


class _PolicyRing:
    """Policies by step in shared memory, readable by DataLoader workers.

    Row layout: [step, p_1..p_K]. The writer sets step=-1 before writing and the
    real step after, and readers re-check the step after copying (a seqlock), so a
    worker never uses a half-written row."""

    def __init__(self, k: int, rows: int):
        import torch
        self.rows = rows
        self.buf = torch.full((rows, k + 1), -1.0, dtype=torch.float64).share_memory_()
        self._view = self.buf.numpy()        # same memory; numpy element access is ~10x cheaper than torch's

    def __getstate__(self):
        return {"rows": self.rows, "buf": self.buf}   # the tensor travels as a shared-memory handle

    def __setstate__(self, state):
        self.rows, self.buf = state["rows"], state["buf"]
        self._view = self.buf.numpy()

    def clear(self) -> None:
        self._view[:] = -1.0

    def publish(self, step: int, policy: np.ndarray) -> None:
        row = self._view[step % self.rows]
        row[0] = -1.0
        row[1:] = policy
        row[0] = float(step)

    def read(self, step: int) -> np.ndarray | None:
        row = self._view[step % self.rows]
        first = int(row[0])
        if first != step:
            if first > step:
                raise RuntimeError(
                    f"mixture policy for step {step} was already overwritten (ring of {self.rows} rows); "
                    "a DataLoader worker fell too far behind; increase the mixer's ring_rows")
            return None
        values = row[1:].copy()
        return values if int(row[0]) == step else None


class Mixer:
    """Common machinery: the draw schedule, cursors, feedback ring, logging.

    Call ``update({domain: loss})`` exactly once per optimizer step, after the
    step's batch was consumed, for every mixer kind (static mixers use it to
    advance their schedule and to log)."""

    kind = "base"

    def __init__(self, domains: Sequence[str], *, seed: int = 0, lag: int = DEFAULT_LAG,
                 rank: int | None = None, world_size: int | None = None):
        domains = list(domains)
        if not domains:
            raise UserError("a mixer needs at least one domain")
        if len(set(domains)) != len(domains):
            raise UserError(f"duplicate domain names: {domains}")
        if lag < 0:
            raise UserError("lag must be >= 0")
        self.domains = domains
        self.seed = int(seed)
        self.lag = int(lag)
        dist_rank, dist_world = _dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        self.batch_size = 1
        self.per_sample = False
        self.step = 0                                   # optimizer steps already updated
        self.consumed = np.zeros(len(domains), dtype=np.int64)   # sequences this rank took per domain
        self.last_record: dict[str, Any] | None = None
        self._index = {d: i for i, d in enumerate(domains)}
        self._draw_cache: tuple | None = None

    # -- schedule --------------------------------------------------------
    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def configure(self, *, batch_size: int, per_sample: bool = False,
                  rank: int | None = None, world_size: int | None = None) -> None:
        """Set how a step is drawn (MixtureDataset calls this); must match on resume."""
        if batch_size < 1:
            raise UserError("batch_size must be >= 1")
        self.batch_size, self.per_sample = int(batch_size), bool(per_sample)
        dist_rank, dist_world = _dist_info()
        if dist_world > 1 and rank is None and world_size is None:
            rank, world_size = dist_rank, dist_world   # the process group may postdate the mixer
        if rank is not None:
            self.rank = int(rank)
        if world_size is not None:
            self.world_size = int(world_size)
        self._draw_cache = None

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = 600.0) -> np.ndarray:
        """The mixture that draws step t (1-based)."""
        raise NotImplementedError

    def draw_indices(self, t: int, policy: np.ndarray | None = None, *, wait: bool = False) -> np.ndarray:
        """Domain index of each of the step's ``batch_size`` sequences: a pure function
        of (seed, t, rank, policy) so that workers, ranks and resumed runs agree."""
        if policy is None:
            policy = self.policy_for_step(t, wait=wait)
        key = (t, policy.tobytes())
        if self._draw_cache is not None and self._draw_cache[0] == key:
            return self._draw_cache[1]         # update() replays the draw the dataset just made
        # inverse-CDF on seeded uniforms: Generator.choice(p=...) costs ~3x more per call
        uniforms = np.random.default_rng([self.seed, _DRAW_SALT, t, self.rank]).random(
            self.batch_size if self.per_sample else 1)
        cdf = np.cumsum(policy)
        picks = np.minimum(np.searchsorted(cdf / cdf[-1], uniforms, side="right"), self.num_domains - 1)
        drawn = picks.astype(np.int64) if self.per_sample else np.full(self.batch_size, picks[0], dtype=np.int64)
        drawn.flags.writeable = False
        self._draw_cache = (key, drawn)
        return drawn

    def weights(self) -> dict[str, float]:
        """The mixture that will draw the next step."""
        return dict(zip(self.domains, self.policy_for_step(self.step + 1).tolist()))

    def sample(self) -> list[str]:
        """Domains of the next step's sequences (batch_size of them; all equal unless per_sample)."""
        return [self.domains[i] for i in self.draw_indices(self.step + 1)]

    # -- feedback --------------------------------------------------------
    def _reduce_losses(self, losses: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Per-domain mean loss over ranks (all_reduce of sums and counts) and counts."""
        sums = np.zeros(self.num_domains)
        counts = np.zeros(self.num_domains)
        for d, v in losses.items():
            if d not in self._index:
                raise UserError(f"loss reported for unknown domain {d!r}")
            v = float(v.detach().float().mean().item()) if hasattr(v, "detach") else float(v)
            if not math.isfinite(v):
                raise UserError(f"non-finite loss {v} for domain {d!r}")
            sums[self._index[d]] += v
            counts[self._index[d]] += 1
        rank, world = _dist_info()
        if world > 1:
            if (rank, world) != (self.rank, self.world_size):
                raise UserError(f"mixer set up for rank {self.rank} of {self.world_size} but torch.distributed "
                                f"says {rank} of {world}: every rank would draw the same data")
            import torch
            import torch.distributed as dist
            packed = torch.from_numpy(np.concatenate([sums, counts]))
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
            packed = packed.numpy()
            sums, counts = packed[: self.num_domains], packed[self.num_domains:]
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return means, counts

    def update(self, losses: Mapping[str, Any]) -> dict[str, Any]:
        """Feed back the mean training loss per domain drawn in the step just taken.

        Returns the step's log record (weights used, losses)."""
        t = self.step + 1
        used = self.policy_for_step(t)
        means, counts = self._reduce_losses(losses)
        self._learn(t, means, counts > 0, used)
        self.consumed += np.bincount(self.draw_indices(t, used), minlength=self.num_domains)
        self.step = t
        self._after_step()
        self.last_record = {
            "step": t, "kind": "train", "mixer": self.kind,
            "weights": dict(zip(self.domains, used.tolist())),
            "loss": {self.domains[i]: float(means[i]) for i in np.flatnonzero(counts > 0)},
        }
        return self.last_record

    def _learn(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray) -> None:
        pass

    def _after_step(self) -> None:
        pass

    # -- state -----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"kind": self.kind, "domains": self.domains, "seed": self.seed, "lag": self.lag,
                "batch_size": self.batch_size, "per_sample": self.per_sample,
                "rank": self.rank, "world_size": self.world_size}

    def state_dict(self) -> dict[str, Any]:
        return {"config": self._config(), "step": self.step, "consumed": self.consumed.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine, theirs = self._config(), dict(state["config"])
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            raise UserError("mixer state was saved with a different configuration "
                            f"(saved, now): {diff}; resume needs the same domains, seed, lag, "
                            "batch size, rank and world size")
        self.step = int(state["step"])
        self.consumed = np.asarray(state["consumed"], dtype=np.int64)


class StaticMixer(Mixer):
    """Fixed mixture: 'uniform', 'natural' (by token count) or given weights."""

    kind = "static"

    def __init__(self, domains: Sequence[str], weights: Any = "uniform", *,
                 token_counts: Mapping[str, float] | None = None, **kw):
        super().__init__(domains, **kw)
        self.fixed = resolve_weights(self.domains, weights, token_counts)

    @classmethod
    def from_store(cls, store, weights: Any = "uniform", **kw) -> "StaticMixer":
        return cls(store.domains, weights, token_counts={d: store.num_tokens(d) for d in store.domains}, **kw)

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = 600.0) -> np.ndarray:
        return self.fixed

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "weights": self.fixed.tolist()}


class OnlineDataMixer(Mixer):
    """EXP3 over domains (ODM). See the module docstring for the schedule.

    reward="paper" (default): R_i <- alpha R_i + (1 - alpha) loss_i / pi(i), with pi
    the probability under which domain i was drawn. reward="smoothed_mean": the
    authors' reference-code variant, R_i <- alpha R_i + (1 - alpha) exp(loss_i),
    without importance weight.
    Steps 1..warmup_steps draw from ``initial_weights`` (rewards are still learned,
    importance-weighted by that mixture); the bandit policy takes over afterwards,
    with the exploration schedule counted from step 1."""

    kind = "odm"

    def __init__(self, domains: Sequence[str], *, alpha: float = 0.9, warmup_steps: int = 0,
                 initial_weights: Any = "uniform", token_counts: Mapping[str, float] | None = None,
                 reward: str = "paper", ring_rows: int | None = None, **kw):
        super().__init__(domains, **kw)
        if not 0.0 <= alpha < 1.0:
            raise UserError("alpha (reward smoothing) must be in [0, 1)")
        if reward not in ("paper", "smoothed_mean"):
            raise UserError(f"unknown reward {reward!r}: use 'paper' or 'smoothed_mean'")
        if warmup_steps < 0:
            raise UserError("warmup_steps must be >= 0")
        self.alpha, self.warmup_steps, self.reward = float(alpha), int(warmup_steps), reward
        self.initial = resolve_weights(self.domains, initial_weights, token_counts)
        self.rewards = np.zeros(self.num_domains)
        self._policies: dict[int, np.ndarray] = {}
        self._ring = _PolicyRing(self.num_domains, ring_rows or self.lag + _RING_MARGIN)
        self._publish(1, self._bandit_policy(1))

    @classmethod
    def from_store(cls, store, **kw) -> "OnlineDataMixer":
        return cls(store.domains, token_counts={d: store.num_tokens(d) for d in store.domains}, **kw)

    def _bandit_policy(self, s: int) -> np.ndarray:
        """pi_s from the rewards after s-1 updates (the current rewards when called)."""
        if s <= self.warmup_steps:
            return self.initial
        return exp3_policy(self.rewards, s)

    def _publish(self, s: int, policy: np.ndarray) -> None:
        self._policies[s] = policy
        for old in [k for k in self._policies if k < s - self.lag - 1]:
            del self._policies[old]
        self._ring.publish(s, policy)

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = 600.0) -> np.ndarray:
        s = max(1, t - self.lag)
        if s in self._policies and not wait:
            return self._policies[s]
        deadline, pause = time.monotonic() + timeout, 1e-4
        while True:
            p = self._ring.read(s)
            if p is not None:
                return p
            if not wait:
                raise UserError(
                    f"the mixture for step {t} needs the loss of step {s - 1}: call mixer.update() once per "
                    f"step before drawing the next batch (or raise lag, now {self.lag})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {timeout:.0f} s for mixer.update() of step {s - 1}; "
                                   "is the training loop calling mixer.update() every step?")
            time.sleep(pause)
            pause = min(pause * 2, 5e-3)

    def _learn(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray) -> None:
        for i in np.flatnonzero(seen):
            if self.reward == "paper":
                gain = means[i] / used[i]
            else:
                gain = math.exp(min(means[i], 50.0))
            self.rewards[i] = self.alpha * self.rewards[i] + (1.0 - self.alpha) * gain

    def _after_step(self) -> None:
        self._publish(self.step + 1, self._bandit_policy(self.step + 1))

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "alpha": self.alpha, "warmup_steps": self.warmup_steps,
                "initial_weights": self.initial.tolist(), "reward": self.reward}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rewards": self.rewards.tolist(),
                "policies": {str(s): p.tolist() for s, p in sorted(self._policies.items())}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.rewards = np.asarray(state["rewards"], dtype=np.float64)
        self._policies = {}
        self._ring.clear()   # rows from a later step would read as "overwritten"
        for s, p in sorted(((int(s), p) for s, p in state["policies"].items())):
            self._publish(s, np.asarray(p, dtype=np.float64))


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
        raise UserError(f"mixing log not found: {path}")
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
                raise UserError(f"{path}:{n}: not a JSON line ({e})") from None
            if "step" not in rec:
                raise UserError(f"{path}:{n}: record without 'step'")
            records[(int(rec["step"]), rec.get("kind", "train"))] = rec
    return [records[k] for k in sorted(records)]


def _read_csv_log(path: str) -> list[dict[str, Any]]:
    import csv
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            key = (int(row["step"]), row.get("kind") or "train")
            rec = merged.setdefault(key, {"step": key[0], "kind": key[1], "weights": {}, "loss": {}})
            if row.get("weight") not in (None, ""):
                rec["weights"][row["domain"]] = float(row["weight"])
            if row.get("loss") not in (None, ""):
                rec["loss"][row["domain"]] = float(row["loss"])
    return [merged[k] for k in sorted(merged)]


def write_csv(records: Iterable[Mapping[str, Any]], path: str) -> None:
    """Long-format CSV (step, kind, domain, weight, loss), atomically."""
    import csv

    from shammie.pipeline.storage import atomic_write
    with atomic_write(path) as local, open(local, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["step", "kind", "domain", "weight", "loss"])
        for rec in records:
            weights, losses = rec.get("weights", {}), rec.get("loss", {})
            for d in sorted(set(weights) | set(losses)):
                w.writerow([rec["step"], rec.get("kind", "train"), d, weights.get(d, ""), losses.get(d, "")])
