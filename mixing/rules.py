"""Mixing rules: small objects that turn per-domain training losses into the next mixture.

A rule holds the state its paper keeps (rewards, loss averages, fitted laws) and
answers two questions for the mixer (``shammie.mixing.mixer.Mixer``), which does
everything else (draws, warm-up, budgets, ranks, state files):

* ``policy(t)``: the mixture that draws step t (1-based), from the updates of steps
  1 .. t-1 (the mixer calls it once per step, right after ``learn(t - 1, ...)``);
* ``learn(t, losses, seen, used, drawn)``: step t's mean training loss per domain
  (``losses[i]``, meaningful where ``seen[i]``), the mixture that drew the step (``used``)
  and the sequences drawn per domain over all ranks (``drawn``).

Rules are looked up by name in ``RULES``; adding one is one class here (registered with
``@rule("name")``) plus its test in ``tests/test_mix_rules.py``. Every rule keeps its
state in ``state_dict()`` as plain lists, so the mixer's state file resumes it exactly.

The table (K domains, eps_t = min(1/K, sqrt(ln K / (K t))), eps_0 = 1/K):

======================  ===============================================================
``static``              fixed weights ('uniform', 'natural', a mapping); learns nothing
``paper``               ODM as written in Albalak et al. 2023 (EXP3)
``authors``             ODM as the authors' code runs it (``group_update``: linear policy)
``smoothed_mean``       the authors' single-domain ``update()`` (softmax policy)
``progress``            this project's learning-progress reward (signed)
``ado``                 ADO, Jiang et al. 2024 (per-domain scaling laws fitted online)
``aioli``               Aioli, Chen et al. 2024 (linear mixing law, exponentiated gradient)
======================  ===============================================================
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from shammie.mixing.errors import MixingError

RULES: dict[str, type["Rule"]] = {}
ALIASES = {"authors_code": "authors"}       # the name earlier versions used


def rule(name: str) -> Callable[[type["Rule"]], type["Rule"]]:
    """Class decorator: register a rule under `name`."""
    def register(cls: type[Rule]) -> type[Rule]:
        cls.name = name
        RULES[name] = cls
        return cls
    return register


def make_rule(name: str, k: int, initial: np.ndarray, params: Mapping[str, Any] | None = None) -> "Rule":
    """The rule called `name` (or an alias) for k domains, with its parameters checked."""
    key = ALIASES.get(name, name)
    if key not in RULES:
        raise MixingError(f"unknown rule {name!r}: use one of {sorted(RULES) + sorted(ALIASES)}")
    cls = RULES[key]
    params = dict(params or {})
    unknown = sorted(set(params) - set(cls.defaults))
    if unknown:
        raise MixingError(f"rule {key!r} has no parameter(s) {unknown}; its parameters are {sorted(cls.defaults)}")
    return cls(k, initial, **{**cls.defaults, **params})


# -- the formulas shared by the ODM rules -------------------------------------------

def exploration_rate(t: int, k: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t))); eps_0 is taken as 1/K (the limit of the min)."""
    if k < 1:
        raise MixingError("need at least one domain")
    if t <= 0 or k == 1:
        return 1.0 / k
    return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


def exp3_policy(rewards: np.ndarray, t: int) -> np.ndarray:
    """pi_t(i) = (1 - K eps_t) softmax(eps_{t-1} R)_i + eps_t (Albalak et al. 2023, Alg. 1)."""
    k = len(rewards)
    eps_t, eps_prev = exploration_rate(t, k), exploration_rate(t - 1, k)
    z = eps_prev * np.asarray(rewards, dtype=np.float64)
    z = np.exp(z - z.max())          # shift for numerical safety; softmax is unchanged
    return (1.0 - k * eps_t) * z / z.sum() + eps_t


def linear_policy(rewards: np.ndarray, t: int) -> np.ndarray:
    """pi_t(i) = (1 - K eps_t) R_i / sum(R) + eps_t (uniform while all R are 0): the policy of the
    authors' published code (online-data-mixing, SmoothedMeanWeightUpdater.group_update)."""
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


# -- the rules ------------------------------------------------------------------------

class Rule:
    """Base: the mixer's contract (see the module docstring). `defaults` lists the rule's
    parameters; `_state` names the numpy arrays saved in state_dict()."""

    name = "base"
    defaults: dict[str, Any] = {}
    _state: tuple[str, ...] = ()
    learns = True                  # False: a fixed mixture (drawn without waiting for feedback)
    learns_in_warmup = True        # False: warm-up steps are not learned from (the authors' code)

    def __init__(self, k: int, initial: np.ndarray, **params: Any):
        self.k, self.initial = k, np.asarray(initial, dtype=np.float64)
        self.params = params
        for key, value in params.items():
            setattr(self, key, value)
        self.check()

    def check(self) -> None:
        """Refuse parameters outside their range (MixingError naming the parameter)."""

    def policy(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def learn(self, t: int, losses: np.ndarray, seen: np.ndarray, used: np.ndarray, drawn: np.ndarray) -> None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"rule": self.name, **self.params}

    def state_dict(self) -> dict[str, Any]:
        return {key: np.asarray(getattr(self, key)).tolist() for key in self._state}

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of the state arrays (cheap; restore() puts them back after a refused update)."""
        return {key: np.array(getattr(self, key), copy=True) for key in self._state}

    def restore(self, snapshot: Mapping[str, np.ndarray]) -> None:
        for key, value in snapshot.items():
            setattr(self, key, value)

    def finite(self) -> bool:
        """Whether every number of the state is finite (a loss that overflowed a reward is not)."""
        return all(np.isfinite(np.asarray(getattr(self, key), dtype=np.float64)).all() for key in self._state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        loaded = {}
        for key in self._state:
            if key not in state:
                raise MixingError(f"rule {self.name!r} state lacks {key!r}")
            old = np.asarray(getattr(self, key))
            try:
                arr = np.asarray(state[key], dtype=old.dtype)
            except (TypeError, ValueError):
                raise MixingError(f"rule state {key!r} is not a list of numbers") from None
            if arr.shape != old.shape or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
                raise MixingError(f"rule state {key!r} must be {list(old.shape)} finite numbers, got {state[key]!r}")
            loaded[key] = arr
        for key, arr in loaded.items():
            setattr(self, key, arr)

    def _need(self, cond: bool, message: str) -> None:
        if not cond:
            raise MixingError(f"rule {self.name!r}: {message}")


@rule("static")
class StaticRule(Rule):
    """A fixed mixture: the initial weights at every step (uniform, natural, or given)."""

    learns = False

    def policy(self, t: int) -> np.ndarray:
        return self.initial

    def learn(self, t, losses, seen, used, drawn) -> None:
        pass


@rule("paper")
class PaperRule(Rule):
    """ODM as written (Albalak, Pan, Raffel, Wang 2023, "Efficient Online Data Mixing For
    Language Model Pre-Training", Algorithm 1, EXP3 with smoothed rewards):

        R_i <- alpha R_i + (1 - alpha) loss_i / pi(i)          (drawn domains; pi the drawing policy)
        pi_t = (1 - K eps_t) softmax(eps_{t-1} R) + eps_t

    Its softmax temperature eps_{t-1} shrinks like 1/sqrt(t) while R ~ K * loss stays
    bounded, so the policy drifts back towards uniform: a gentle re-weighting."""

    defaults = {"alpha": 0.9}
    _state = ("rewards",)

    def check(self) -> None:
        self._need(0.0 <= self.alpha < 1.0, "alpha (reward smoothing) must be in [0, 1)")
        self.rewards = np.zeros(self.k)

    def policy(self, t: int) -> np.ndarray:
        return exp3_policy(self.rewards, t)

    def gain(self, loss: float, prob: float) -> float:
        return loss / prob

    def learn(self, t, losses, seen, used, drawn) -> None:
        a = self.alpha
        for i in np.flatnonzero(seen):
            self.rewards[i] = a * self.rewards[i] + (1.0 - a) * self.gain(float(losses[i]), float(used[i]))


@rule("smoothed_mean")
class SmoothedMeanRule(PaperRule):
    """The authors' ``SmoothedMeanWeightUpdater.update()`` (alon-albalak/online-data-mixing):
    the paper's softmax policy over an exponentially smoothed ``exp(loss)`` reward, no
    importance weight:

        R_i <- alpha R_i + (1 - alpha) exp(loss_i)
        pi_t = (1 - K eps_t) softmax(eps_{t-1} R) + eps_t

    (that code computes eps with log10 in one variant; the natural log is used here).
    Because exp(loss) then sits inside an exponent, how far it concentrates depends on the
    loss scale: mild for losses of 2-5 nats, collapse onto the highest-loss domain once
    eps_{t-1} (exp(l_1) - exp(l_2)) reaches a few units."""

    def gain(self, loss: float, prob: float) -> float:
        return math.exp(min(loss, 50.0))


@rule("authors")
class AuthorsRule(SmoothedMeanRule):
    """ODM as the authors' code runs it (``SmoothedMeanWeightUpdater.group_update``):

        R_i <- alpha R_i + (1 - alpha) exp(loss_i)
        pi_t = (1 - K eps_t) R / sum(R) + eps_t          (linear, uniform while all R = 0)

    Their warm-up draws the natural mixture and learns nothing from it (megatron/training.py,
    ``data_sampling_warmup_steps``): here steps 1..warmup_steps draw the mixer's
    ``initial_weights`` and are not learned from. The weights follow exp(loss)
    proportions, which is strong: an unlearnable high-loss domain takes most of the draws
    unless a budget (max_share / max_epochs) stops it."""

    learns_in_warmup = False

    def policy(self, t: int) -> np.ndarray:
        return linear_policy(self.rewards, t)


@rule("progress")
class ProgressRule(Rule):
    """Learning progress (this project's rule, in no paper): two EMAs of each domain's loss,
    fast (``alpha``) and slow (``slow_alpha``); the reward is their *signed* relative gap

        R_i = (slow_i - fast_i) / slow_i
        pi_t = (1 - K eps_t) softmax(R / temperature) + eps_t

    A domain whose loss is falling gets more; a flat one (noise, or learnt) about a fair
    share; one whose loss rises (being forgotten) gets *less* (negative reward) until it
    falls again."""

    defaults = {"alpha": 0.9, "slow_alpha": 0.99, "temperature": 0.05}
    _state = ("fast", "slow", "observed", "rewards")

    def check(self) -> None:
        self._need(0.0 <= self.alpha < 1.0, "alpha must be in [0, 1)")
        self._need(self.alpha < self.slow_alpha < 1.0, "slow_alpha must be in (alpha, 1)")
        self._need(self.temperature > 0, "temperature must be > 0")
        self.fast, self.slow, self.rewards = np.zeros(self.k), np.zeros(self.k), np.zeros(self.k)
        self.observed = np.zeros(self.k, dtype=np.int64)

    def policy(self, t: int) -> np.ndarray:
        eps = exploration_rate(t, self.k)
        z = self.rewards / self.temperature
        z = np.exp(z - z.max())
        return (1.0 - self.k * eps) * z / z.sum() + eps

    def learn(self, t, losses, seen, used, drawn) -> None:
        for i in np.flatnonzero(seen):
            x = float(losses[i])
            if self.observed[i] == 0:
                self.fast[i] = self.slow[i] = x
            else:
                self.fast[i] = self.alpha * self.fast[i] + (1.0 - self.alpha) * x
                self.slow[i] = self.slow_alpha * self.slow[i] + (1.0 - self.slow_alpha) * x
            self.observed[i] += 1
            self.rewards[i] = (self.slow[i] - self.fast[i]) / max(self.slow[i], 1e-12)


# -- ADO ------------------------------------------------------------------------------

_ALPHA_GRID = np.round(np.arange(0.02, 0.801, 0.02), 4)     # exponents tried by the power-law fit
_BIN_RATIO = 1.05                                           # loss history binned by n in 5 % steps


def fit_power_law(n: np.ndarray, loss: np.ndarray, weight: np.ndarray) -> tuple[float, float, float]:
    """(eps, beta, alpha) of L(n) = eps + beta n^-alpha, eps >= 0, beta >= 0, by weighted least
    squares: for each alpha of a grid (0.02 .. 0.8, ADO's range) the law is linear in (eps,
    beta); the alpha with the smallest error wins. Deterministic and without an optimiser
    (ADO fits log L with a Huber loss from a grid of starts; same law, same alpha range)."""
    best = (math.inf, float(np.average(loss, weights=weight)), 0.0, float(_ALPHA_GRID[0]))
    sw = weight.sum()
    for a in _ALPHA_GRID:
        x = n ** -a
        mx, my = (weight * x).sum() / sw, (weight * loss).sum() / sw
        vx = (weight * (x - mx) ** 2).sum()
        beta = (weight * (x - mx) * (loss - my)).sum() / vx if vx > 0 else 0.0
        beta = max(beta, 0.0)
        eps = my - beta * mx
        if eps < 0:                        # the floor cannot be negative: refit beta through eps = 0
            eps, beta = 0.0, max((weight * x * loss).sum() / (weight * x * x).sum(), 0.0)
        err = (weight * (loss - eps - beta * x) ** 2).sum()
        if err < best[0]:
            best = (err, eps, beta, float(a))
    return best[1], best[2], best[3]


@rule("ado")
class AdoRule(Rule):
    """ADO (Jiang, Zhou, Zhu, Raghunathan, Lee 2024, "Adaptive Data Optimization: Dynamic
    Sample Selection with Scaling Laws"). Per domain k a power law of its training loss in
    the number n_k of its sequences trained on (their eq. 1), refitted every ``fit_every``
    steps:

        L_k(n) = eps_k + beta_k n^-alpha_k,   -dL_k/dn = alpha_k beta_k n^-(alpha_k + 1)
        h_k(t) = gamma1 pi_k(t) + (1 - gamma1) h_k(t - 1)          (credit assignment, h(0) = mu)
        rho_k(t) ∝ mu_k h_k(t)^s (-dL_k/dn(n_k(t)))                (preference; floor delta_min)
        pi(t + 1) = gamma2 rho(t) + (1 - gamma2) pibar(t - 1)
        pibar(t) = rho(t) / (t + 1) + t pibar(t - 1) / (t + 1)

    mu is the prior (the mixer's ``initial_weights``; the paper uses the natural mixture).
    Until the first fit (``fit_after`` steps with a loss of every domain) the policy is mu.
    The loss history is kept in bins of n 5 % wide (sum of losses, count), so the state stays
    small however long the run; the fit weights each bin by its count. The paper fits
    smoothed training losses of every step (imputing missing ones); here only the losses
    of drawn domains enter, each at the n it was trained at."""

    defaults = {"gamma1": 0.1, "gamma2": 0.1, "s": 0.5, "delta_min": 0.01, "fit_every": 50, "fit_after": 50}
    _state = ("n", "bin_n", "bin_loss", "bin_count", "law", "h", "pibar", "pi", "steps")

    _BINS = 512

    def check(self) -> None:
        self._need(0.0 < self.gamma1 <= 1.0 and 0.0 < self.gamma2 <= 1.0, "gamma1 and gamma2 must be in (0, 1]")
        self._need(self.s >= 0, "s must be >= 0")
        self._need(0.0 <= self.delta_min * self.k < 1.0, "delta_min must be in [0, 1/K)")
        self._need(int(self.fit_every) >= 1 and int(self.fit_after) >= 1, "fit_every and fit_after must be >= 1")
        k = self.k
        self.n = np.zeros(k)                               # sequences trained on, per domain
        self.bin_n = np.zeros((k, self._BINS))             # sum of n over a bin's observations
        self.bin_loss = np.zeros((k, self._BINS))
        self.bin_count = np.zeros((k, self._BINS))
        self.law = np.zeros((k, 3))                        # eps, beta, alpha (all 0: not fitted)
        self.h = self.initial.copy()
        self.pibar = self.initial.copy()
        self.pi = self.initial.copy()
        self.steps = np.zeros(1)

    def policy(self, t: int) -> np.ndarray:
        return self.pi

    def _bin(self, n: float) -> int:
        return min(int(math.log(max(n, 1.0)) / math.log(_BIN_RATIO)), self._BINS - 1)

    def learn(self, t, losses, seen, used, drawn) -> None:
        self.n += drawn
        for i in np.flatnonzero(seen):
            b = self._bin(self.n[i])
            self.bin_n[i, b] += self.n[i]
            self.bin_loss[i, b] += float(losses[i])
            self.bin_count[i, b] += 1
        self.steps[0] = t
        if t >= self.fit_after and (t - self.fit_after) % int(self.fit_every) == 0 and (self.n > 0).all():
            self._fit()
        if self.law[:, 2].any():
            self._advance(t)

    def _fit(self) -> None:
        for i in range(self.k):
            used = self.bin_count[i] > 0
            if used.sum() >= 3:
                c = self.bin_count[i, used]
                self.law[i] = fit_power_law(self.bin_n[i, used] / c, self.bin_loss[i, used] / c, c)

    def slopes(self) -> np.ndarray:
        """-dL_k/dn at each domain's current n (0 for a domain without a fitted law)."""
        eps, beta, alpha = self.law.T
        n = np.maximum(self.n, 1.0)
        return alpha * beta * n ** -(alpha + 1.0)

    def _advance(self, t: int) -> None:
        self.h = self.gamma1 * self.pi + (1.0 - self.gamma1) * self.h
        raw = self.initial * self.h ** self.s * self.slopes()
        rho = raw / raw.sum() if raw.sum() > 0 else self.initial.copy()
        rho = _floor_probabilities(rho, self.delta_min)
        self.pi = self.gamma2 * rho + (1.0 - self.gamma2) * self.pibar
        self.pi = self.pi / self.pi.sum()
        self.pibar = rho / (t + 1.0) + t * self.pibar / (t + 1.0)


def _floor_probabilities(p: np.ndarray, floor: float) -> np.ndarray:
    """Every entry at least `floor`, the mass above the floor rescaled to keep the sum 1."""
    if floor <= 0:
        return p
    out = floor + (1.0 - floor * len(p)) * p
    return out / out.sum()


# -- Aioli ----------------------------------------------------------------------------

@rule("aioli")
class AioliRule(Rule):
    """Aioli (Chen, Hu, Lourie, Cho, Ré 2024, "Aioli: A Unified Optimization Framework for
    Language Model Data Mixing"). The linear dynamic mixing law (their eq. 2 family)

        L_i(t + 1) = L_i(t) - sum_j A^t_ij p^t_j

    is estimated online and the mixture follows exponentiated gradient (Algorithm 1):

        p^t_j ∝ p^{t-1}_j exp(eta sum_i A^t_ij)

    Each round of ``round_steps`` starts with LearnParams (Algorithm 2): for every domain j
    in turn (``lp_rounds`` sweeps), ``lp_steps`` steps draw the perturbed mixture
    ``q_j = f e_j + (1 - f) / (K - 1) (1 - e_j)`` (f = ``one_hot``) and each domain's loss
    change over that interval is added to column j of B; then A solves B = A Q
    (Q the matrix of the q_j, rows), the mixture is updated and draws the rest of the round.

    Adaptation to training losses: the paper evaluates every domain on held-out data at the
    interval boundaries; here a domain's loss is an EMA (``loss_smoothing``) of its training
    losses, so a domain not drawn in an interval contributes no change."""

    defaults = {"eta": 0.1, "round_steps": 200, "lp_steps": 4, "lp_rounds": 1, "one_hot": 0.75,
                "loss_smoothing": 0.5}
    _state = ("p", "B", "ema", "observed", "start")

    def check(self) -> None:
        self._need(self.eta > 0, "eta must be > 0")
        self._need(int(self.lp_steps) >= 1 and int(self.lp_rounds) >= 1, "lp_steps and lp_rounds must be >= 1")
        self._need(int(self.round_steps) > self.learn_steps(), "round_steps must exceed K * lp_steps * lp_rounds")
        self._need(self.k == 1 or 1.0 / self.k < self.one_hot < 1.0, "one_hot must be in (1/K, 1)")
        self._need(0.0 <= self.loss_smoothing < 1.0, "loss_smoothing must be in [0, 1)")
        k = self.k
        self.p = self.initial.copy()
        self.B = np.zeros((k, k))
        self.ema = np.zeros(k)
        self.observed = np.zeros(k, dtype=np.int64)
        self.start = np.zeros(k)          # each domain's loss when the current interval began

    def learn_steps(self) -> int:
        return self.k * int(self.lp_steps) * int(self.lp_rounds)

    def perturbed(self, j: int) -> np.ndarray:
        if self.k == 1:
            return np.ones(1)
        q = np.full(self.k, (1.0 - self.one_hot) / (self.k - 1))
        q[j] = self.one_hot
        return q

    def phase(self, t: int) -> tuple[int, int]:
        """(position of step t in its round, 0-based; domain perturbed at t, or -1 after LearnParams)."""
        pos = (t - 1) % int(self.round_steps)
        if pos < self.learn_steps():
            return pos, (pos // int(self.lp_steps)) % self.k
        return pos, -1

    def policy(self, t: int) -> np.ndarray:
        _, j = self.phase(t)
        return self.perturbed(j) if j >= 0 else self.p

    def learn(self, t, losses, seen, used, drawn) -> None:
        a = self.loss_smoothing
        for i in np.flatnonzero(seen):
            x = float(losses[i])
            self.ema[i] = x if self.observed[i] == 0 else a * self.ema[i] + (1.0 - a) * x
            self.observed[i] += 1
        pos, j = self.phase(t)
        if j < 0:
            return
        lp = int(self.lp_steps)
        if pos % lp == 0:                                  # first step of an interval: its start loss
            self.start = np.where(self.observed > 0, self.ema, 0.0)
            if pos == 0:
                self.B[:] = 0.0
        if pos % lp == lp - 1:                             # last step: the interval's loss change
            known = (self.observed > 0) & (self.start > 0)
            self.B[:, j] += np.where(known, self.start - self.ema, 0.0)
        if pos == self.learn_steps() - 1:
            self._update_mixture()

    def mixing_law(self) -> np.ndarray:
        """A from B = A Q: A = B Q^-1 (Q's rows are the perturbed mixtures)."""
        q = np.stack([self.perturbed(j) for j in range(self.k)])
        return (self.B / int(self.lp_rounds)) @ np.linalg.inv(q)

    def _update_mixture(self) -> None:
        z = np.log(np.maximum(self.p, 1e-300)) + self.eta * self.mixing_law().sum(axis=0)
        z = np.exp(z - z.max())
        self.p = z / z.sum()
