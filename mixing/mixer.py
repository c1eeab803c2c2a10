"""The mixer: orchestrates a rule (``shammie.mixing.rules``), the draw schedule, budgets,
the data-parallel reduction, the shared-memory channels to DataLoader workers and the
state file. Online Data Mixing (Albalak et al. 2023) and its successors (ADO, Aioli) are
rules; the mixer is what makes any of them exactly resumable and safe with workers and ranks:

* Step t (1-based, one optimizer step of ``grad_accum`` micro-batches) draws its domains
  with a pure function of (seed, t, rank, micro-batch, policy used at t)
  (``shammie.mixing.schedule``); no hidden random state advances.
* The policy used at step t is the one computed after update ``t - lag - 1``. A fixed lag
  makes the stream independent of ``num_workers`` and timing: workers run ahead up to
  ``lag`` steps without waiting. ``lag=None`` derives it from the loader
  (``MixtureDataset.dataloader``: 0 without workers, enough to cover the workers' prefetch
  with them) and fixes it at the first draw or update.
* New policies and the trainer's position go to shared memory (``shammie.mixing.shm``), so
  workers, also persistent ones on a new iterator, follow the trainer.
* ``update()`` replays every rank's draws of the step (cheap: counter-based hashes), so
  every rank knows every rank's per-domain cursor: the state is rank-independent and one
  checkpoint (rank 0's) resumes all ranks.
* Under data parallelism the per-domain loss sums are all-reduced over the data-parallel
  ``process_group`` (one call per step), so every rank holds identical rules and policies.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np

from shammie.mixing import schedule
from shammie.mixing.budgets import AUTO, Budget, FlatLossGuard, cap_shares  # noqa: F401  (cap_shares: re-export)
from shammie.mixing.distributed import dist_info, reduce_losses, reduction_device  # noqa: F401
from shammie.mixing.errors import MixingError, MixingWarning, wait_message  # noqa: F401
from shammie.mixing.feedback import LossScaleCheck, check_step, local_losses
from shammie.mixing.log import MixLog, read_log, step_record, write_csv  # noqa: F401  (re-exports: earlier path)
from shammie.mixing.rules import (exp3_policy, exploration_rate, linear_policy, make_rule,  # noqa: F401
                                  resolve_weights)
from shammie.mixing.shm import PolicyBoard, SharedRows
from shammie.mixing.state import check_policies, check_state, counts_matrix

DEFAULT_RULE = "authors"      # chosen by the study (docs/benchmarks/mixing.md, section 0)
DEFAULT_WARMUP = 50           # steps drawn from initial_weights first, as in the study
DEFAULT_LAG = 4          # = 2 DataLoader workers x prefetch_factor 2, for loaders the mixer cannot see
DEFAULT_WAIT_TIMEOUT = 60.0   # longest a worker waits for a policy before it explains what is wrong
_RING_MARGIN = 64        # extra ring rows so slow workers replaying other workers' steps find their policy
REWARDS = ("paper", "authors_code", "smoothed_mean", "progress")   # earlier name of the rule argument's values


class Mixer:
    """Draws every step's domains from a rule's policy and feeds the rule the losses.

    Call ``update({domain: loss})`` exactly once per optimizer step, after all of the
    step's ``grad_accum`` micro-batches (for static mixtures too: it advances the stream
    and returns the log record). ``rule``: a name from ``shammie.mixing.rules.RULES``;
    ``rule_params`` its parameters. ``initial_weights`` draw the first ``warmup_steps``
    steps (and are the prior of ADO and Aioli). ``max_epochs``/``max_share``: budgets
    (``shammie.mixing.budgets``; "auto" by default, None for none). ``process_group``:
    the data-parallel group (None: the default group when initialised)."""

    def __init__(self, domains: Sequence[str], rule: str | None = None, *, rule_params: Mapping[str, Any] | None = None,
                 initial_weights: Any = "uniform", token_counts: Mapping[str, float] | None = None,
                 warmup_steps: int | None = None, max_epochs: Any = AUTO, max_share: Any = AUTO, seed: int = 0,
                 lag: int | None = None, rank: int | None = None, world_size: int | None = None,
                 process_group: Any = None, grad_accum: int = 1, require_drawn: bool = True,
                 ring_rows: int | None = None, vocab_size: int | None = None, flat_guard: bool = True):
        self.domains = list(domains)
        if not self.domains or len(set(self.domains)) != len(self.domains):
            raise MixingError(f"a mixer needs at least one domain and unique names, got {self.domains}")
        if lag is not None and (not isinstance(lag, (int, np.integer)) or lag < 0):
            raise MixingError(f"lag must be an integer >= 0 or None (derived from the DataLoader), got {lag!r}")
        if not isinstance(grad_accum, (int, np.integer)) or grad_accum < 1:
            raise MixingError(f"grad_accum must be an integer >= 1, got {grad_accum!r}")
        warmup = (DEFAULT_WARMUP if rule is None else 0) if warmup_steps is None else int(warmup_steps)
        if warmup < 0:
            raise MixingError("warmup_steps must be >= 0")
        k = len(self.domains)
        self._index = {d: i for i, d in enumerate(self.domains)}
        self.initial = resolve_weights(self.domains, initial_weights, token_counts)
        self.rule = make_rule(DEFAULT_RULE if rule is None else rule, k, self.initial, rule_params)
        self.warmup_steps, self.seed, self.grad_accum = warmup, int(seed), int(grad_accum)
        self.require_drawn, self.process_group = bool(require_drawn), process_group
        self.budget = Budget(self.domains, self.initial, max_epochs, max_share) if self.rule.learns else None
        self.guard = FlatLossGuard(self.domains, self.initial, cap=flat_guard and self.rule.learns)
        dist_rank, dist_world = dist_info(process_group)
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        self.batch_size, self.per_sample, self.seq_len = 1, False, None
        self.num_sequences: np.ndarray | None = None      # whole domain, all ranks (for epochs)
        self.scale_check = LossScaleCheck(vocab_size, None, self.grad_accum)
        self.step, self.last_record = 0, None
        self.consumed_by_rank = np.zeros((self.world_size, k), dtype=np.int64)
        self._draw_cache: tuple | None = None
        self._progress: SharedRows | None = None        # [step, consumed...] for DataLoader workers
        self._capped: list = []
        self.board = PolicyBoard(k, DEFAULT_LAG if lag is None else lag, lag is not None, ring_rows, _RING_MARGIN)
        self.board.publish(1, self._next_policy(1, np.zeros(k)))

    @classmethod
    def from_store(cls, store, *args, **kw) -> "Mixer":
        kw.setdefault("vocab_size", getattr(store, "vocab_size", None))
        return cls(store.domains, *args, token_counts={d: store.num_tokens(d) for d in store.domains}, **kw)

    def __getstate__(self):
        return {**self.__dict__, "process_group": None, "_draw_cache": None}   # groups do not pickle

    num_domains = property(lambda self: len(self.domains))
    consumed = property(lambda self: self.consumed_by_rank[self.rank].copy(), doc="this rank's sequences per domain")
    consumed_all = property(lambda self: self.consumed_by_rank.sum(0), doc="sequences per domain, all ranks")
    waits_for_feedback = property(lambda self: self.rule.learns, doc="whether workers need update() to draw")
    kind = property(lambda self: self.rule.name)
    lag = property(lambda self: self.board.lag, doc="steps of feedback delay (see the module docstring)")
    _lag_fixed = property(lambda self: self.board.fixed)

    def _set_lag(self, lag: int) -> None:
        self.board.set_lag(lag)

    def _fix_lag(self) -> None:
        self.board.fixed = True

    # -- schedule ------------------------------------------------------------------
    def configure(self, *, batch_size: int, per_sample: bool = False, rank: int | None = None,
                  world_size: int | None = None, seq_len: int | None = None,
                  num_sequences: Sequence[int] | None = None, vocab_size: int | None = None) -> None:
        """Set how a step is drawn (MixtureDataset calls this); must match on resume."""
        if batch_size < 1:
            raise MixingError("batch_size must be >= 1")
        self.batch_size, self.per_sample = int(batch_size), bool(per_sample)
        dist_rank, dist_world = dist_info(self.process_group)
        if dist_world > 1 and rank is None and world_size is None:
            rank, world_size = dist_rank, dist_world   # the process group may postdate the mixer
        self.rank = self.rank if rank is None else int(rank)
        if world_size is not None and int(world_size) != self.world_size:
            self.world_size = int(world_size)
            self.consumed_by_rank = np.zeros((self.world_size, self.num_domains), dtype=np.int64)
        if num_sequences is not None:
            if len(num_sequences) != self.num_domains:
                raise MixingError(f"{len(num_sequences)} sequence counts for {self.num_domains} domains")
            self.num_sequences = np.asarray(num_sequences, dtype=np.int64)
        self.seq_len = self.seq_len if seq_len is None else int(seq_len)
        self.scale_check.seq_len = self.seq_len
        self.scale_check.vocab_size = vocab_size or self.scale_check.vocab_size
        if self._progress is None:
            self._progress = SharedRows(1, self.num_domains)
            self._publish_progress()
        self._draw_cache = None

    def lookahead_steps(self, num_workers: int, prefetch_factor: int) -> int:
        """Steps a DataLoader can request ahead of the last update: workers x prefetch micro-batches,
        plus one that trainers such as Lightning fetch before finishing the current step."""
        return -(-(num_workers * prefetch_factor + (1 if num_workers else 0)) // self.grad_accum)

    def derive_lag(self, num_workers: int, prefetch_factor: int) -> int:
        """The lag from the loader's lookahead (0 without workers; with workers at least DEFAULT_LAG),
        unless set or already used."""
        if not self._lag_fixed:
            ahead = self.lookahead_steps(num_workers, prefetch_factor)
            self._set_lag(max(DEFAULT_LAG, ahead) if num_workers else 0)
        return self.lag

    def can_draw(self, t: int) -> bool:
        """Whether step t's policy is known already (in the trainer's process)."""
        return not self.rule.learns or t - self.lag <= self.step + 1

    def policy_for_step(self, t: int, *, wait: bool = False, timeout: float = DEFAULT_WAIT_TIMEOUT,
                        on_wait=None) -> np.ndarray:
        """The mixture that draws step t (1-based); on_wait is called once if a worker has to wait."""
        if not self.rule.learns:
            return self.initial
        return self.board.get(t, wait=wait, timeout=timeout, on_wait=on_wait, explain=self._explain_wait)

    def _explain_wait(self, kind: str, t: int, s: int, timeout: float) -> str:
        return wait_message(kind, t, s, timeout, self.stream_position()[0], self.lag, self.grad_accum)

    def step_draws(self, t: int, policy: np.ndarray | None = None, *, wait: bool = False) -> np.ndarray:
        """Domain index of every sequence of step t on this rank, shape (grad_accum, batch_size)."""
        policy = self.policy_for_step(t, wait=wait) if policy is None else policy
        key = (t, policy.tobytes())
        if self._draw_cache is None or self._draw_cache[0] != key:
            drawn = schedule.draws(policy, self.seed, t, np.array([self.rank]), self.grad_accum,
                                   self.batch_size, self.per_sample)[0]
            drawn.flags.writeable = False
            self._draw_cache = (key, drawn)      # update() replays the draw the dataset just made
        return self._draw_cache[1]

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
        """(steps updated, this rank's sequences per domain) as the trainer last published them;
        in a DataLoader worker the trainer's live position, not the copy the worker started with."""
        stamp, values = self._progress.read(0) if self._progress is not None else (-1, None)
        return (self.step, self.consumed) if stamp < 0 else (stamp, values.astype(np.int64))

    def _publish_progress(self) -> None:
        if self._progress is not None:
            self._progress.write(0, self.step, self.consumed.astype(np.float64))

    def epochs(self, consumed_all: np.ndarray | None = None) -> np.ndarray | None:
        """Passes over each domain's packed sequences, all ranks together (None before the sizes are known)."""
        if self.num_sequences is None:
            return None
        return (self.consumed_all if consumed_all is None else consumed_all) / np.maximum(self.num_sequences, 1)

    # -- the rule and its budget ----------------------------------------------------
    def _next_policy(self, s: int, consumed_all: np.ndarray) -> np.ndarray:
        policy = self.initial if s <= self.warmup_steps else self.rule.policy(s)
        self._wanted, self._capped = policy, []
        if self.budget is not None:
            policy, self._capped = self.guard.apply(policy)
            policy, capped = self.budget.apply(policy, self.epochs(consumed_all), s - 1)
            self._capped += capped
        return policy

    def _learn(self, t: int, means: np.ndarray, seen: np.ndarray, used: np.ndarray, drawn_all: np.ndarray,
               consumed_all: np.ndarray) -> np.ndarray:
        """Teach a copy of the rule, check its next policy, then commit: a bad number is refused
        and leaves the mixer as it was. Returns the policy of step t + 1."""
        if self.budget is not None and self.budget.needs_sizes() and self.num_sequences is None:
            raise MixingError("max_epochs needs the domain sizes: use the mixer through MixtureDataset "
                              "(or call configure(num_sequences=...))")
        before, capped = self.rule.snapshot(), self._capped
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                if self.rule.learns and (t > self.warmup_steps or self.rule.learns_in_warmup):
                    self.rule.learn(t, means, seen, used, drawn_all)
                nxt = self._next_policy(t + 1, consumed_all)
            if not (np.isfinite(nxt).all() and (nxt >= 0).all() and abs(nxt.sum() - 1.0) < 1e-9
                    and self.rule.finite()):
                raise MixingError(f"step {t}: the losses {dict(zip(self.domains, means.tolist()))} make the rule's "
                                  f"state or next policy non-finite ({nxt.tolist()}); update refused, mixer unchanged")
        except Exception:
            self.rule.restore(before)
            self._capped = capped
            raise
        return nxt

    # -- feedback --------------------------------------------------------------------
    def update(self, losses: Mapping[str, Any], *, step: int | None = None) -> dict[str, Any]:
        """Feed back the training loss per domain drawn in the optimizer step just taken.

        losses: {domain: loss} (a number, a tensor or a list of per-sequence losses,
        averaged) for every domain this rank drew in the step, over all its micro-batches;
        or a DomainLossAccumulator / the mapping its pop() returns, which carry the step.
        step: the batches' ``batch["step"]``; checked against the step this update is for
        (catches trainers that skip or repeat batches). Every rank calls it every step (a
        collective under torch.distributed). Returns the step's log record."""
        if hasattr(losses, "pop_step"):                      # a DomainLossAccumulator itself
            losses = losses.pop_step()
        t = self.step + 1
        check_step(step, getattr(losses, "step", None), t)
        self._fix_lag()
        used = self.policy_for_step(t)
        drawn = schedule.counts_by_rank(schedule.draws(used, self.seed, t, np.arange(self.world_size),
                                                       self.grad_accum, self.batch_size, self.per_sample),
                                        self.num_domains)
        sums, counts = reduce_losses(
            lambda: local_losses(losses, self.domains, self._index, drawn[self.rank], step=t, rank=self.rank,
                                 require_drawn=self.require_drawn, require_all=self.require_drawn and self.rule.learns),
            self.num_domains, self.process_group, (self.rank, self.world_size), t)
        with np.errstate(over="ignore", invalid="ignore"):
            means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        if not np.isfinite(means).all():
            raise MixingError(f"the rank-averaged losses of step {t} are non-finite: {means.tolist()}")
        seen = counts > 0
        consumed = self.consumed_by_rank + drawn
        nxt = self._learn(t, means, seen, used, drawn.sum(0).astype(np.float64), consumed.sum(0))
        self.consumed_by_rank, self.step = consumed, t
        self.board.publish(t + 1, nxt)
        self._publish_progress()
        if self.budget is not None:
            self.budget.warn(self._capped, t)
        if self.rule.learns:
            self.scale_check.check(means, seen, t)
            self.guard.observe(means, seen, self._wanted, t)
        self.last_record = step_record(self.domains, self.rule.name, t, used, {
            self.domains[i]: float(means[i]) for i in np.flatnonzero(seen)}, self.consumed_all, self.seq_len,
            self.epochs(), self._capped)
        return self.last_record

    # -- state -----------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {"rule": self.rule.config(), "domains": self.domains, "seed": self.seed, "lag": self.lag,
                "batch_size": self.batch_size, "per_sample": self.per_sample, "world_size": self.world_size,
                "grad_accum": self.grad_accum, "warmup_steps": self.warmup_steps, "flat_guard": self.guard.cap_flat,
                "initial_weights": self.initial.tolist(),
                "budget": self.budget.config() if self.budget is not None else None}

    def state_dict(self) -> dict[str, Any]:
        """Everything the stream and the rule need to continue exactly, for every rank (JSON-able)."""
        self._fix_lag()
        return {"config": self._config(), "step": self.step, "consumed_by_rank": self.consumed_by_rank.tolist(),
                "policies": {str(s): p.tolist() for s, p in sorted(self.board.policies.items())},
                "rule": self.rule.state_dict(), "guard": self.guard.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state_dict() saved on any rank of the same configuration."""
        mine = self._config()
        step = check_state(state, mine, self._lag_fixed)
        consumed = counts_matrix(state, (self.world_size, self.num_domains))
        policies = check_policies(state, self.num_domains, range(max(1, step + 1 - state["config"]["lag"]), step + 2))
        rule = copy.deepcopy(self.rule)
        rule.load_state_dict(state["rule"])
        guard = copy.deepcopy(self.guard)
        guard.load_state_dict(state["guard"])
        self._set_lag(state["config"]["lag"])
        self._fix_lag()
        self.rule, self.guard, self.step, self.consumed_by_rank = rule, guard, step, consumed
        self._draw_cache = None
        self.board.replace(policies)
        self._publish_progress()


class OnlineDataMixer(Mixer):
    """A learning mixer: ``Mixer`` with the keyword names of earlier versions. ``reward`` is the
    rule's earlier name ("paper", "authors_code", "smoothed_mean", "progress"); alpha,
    slow_alpha and temperature go to the rule when it has them."""

    def __init__(self, domains: Sequence[str], *, rule: str | None = None, reward: str | None = None,
                 alpha: float | None = None, slow_alpha: float | None = None, temperature: float | None = None,
                 rule_params: Mapping[str, Any] | None = None, **kw):
        if rule is not None and reward is not None and rule != reward:
            raise MixingError(f"rule={rule!r} and reward={reward!r}: pass one")
        name = rule if rule is not None else reward
        params = dict(rule_params or {})
        for key, value in (("alpha", alpha), ("slow_alpha", slow_alpha), ("temperature", temperature)):
            if value is not None:
                params[key] = value
        if name == "static":
            raise MixingError("rule 'static' is StaticMixer's: use StaticMixer(domains, weights)")
        super().__init__(domains, name, rule_params=params, **kw)

    def __getattr__(self, name: str):
        """The rule's state fields (rewards, fast, slow, ...) read through the mixer, as before rules."""
        rule = self.__dict__.get("rule")
        if rule is not None and name in rule._state:
            return getattr(rule, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class StaticMixer(Mixer):
    """A fixed mixture: 'uniform', 'natural' (by token count) or given weights. Drawn without
    the trainer's feedback, so workers never wait and no budget can apply."""

    def __init__(self, domains: Sequence[str], weights: Any = "uniform", *,
                 token_counts: Mapping[str, float] | None = None, **kw):
        caps = sorted({"max_epochs", "max_share"} & set(kw))
        if caps:
            raise MixingError(f"{caps} need OnlineDataMixer (its published policy applies the caps); "
                              "a StaticMixer's mixture is fixed")
        super().__init__(domains, "static", initial_weights=weights, token_counts=token_counts, **kw)

    @classmethod
    def from_store(cls, store, weights: Any = "uniform", **kw) -> "StaticMixer":
        return super().from_store(store, weights, **kw)

    @property
    def fixed(self) -> np.ndarray:
        return self.initial

    def derive_lag(self, num_workers: int, prefetch_factor: int) -> int:
        return self.lag                        # a fixed mixture never waits for feedback
