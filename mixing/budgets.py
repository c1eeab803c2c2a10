"""Budgets and guards on a mixture: caps on a domain's share and epochs, and the warning
when a domain whose loss has stopped moving takes far more than its share.

On by default (``OnlineDataMixer``): ``max_share="auto"`` caps domain i at
``max(3 / K, 2 * initial_i)`` (never below what the initial mixture gives it);
``max_epochs="auto"`` stops drawing a domain after 16 passes once the domain sizes are known
(repeated data keeps some value up to ~16 epochs and little beyond; Muennighoff et al.
2023, "Scaling Data-Constrained Language Models", R*_D ~ 15); and the flat-loss guard
holds a domain whose loss has stopped moving to its fair share. All renormalise the
policy over the other domains. (A first study run with ``max_epochs`` 4 showed that cap
cutting a small, still learnable domain off early and costing more than it saved:
docs/benchmarks/mixing.md.)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from shammie.mixing.errors import MixingError, MixingWarning

AUTO = "auto"
AUTO_MAX_EPOCHS = 16.0
AUTO_SHARE_FACTOR = 3.0        # auto max_share: 3 fair shares (3 / K) ...
AUTO_SHARE_INITIAL = 2.0       # ... or twice the initial weight, whichever is larger
FLAT_SHARE_FACTOR = 2.0        # warn when a flat-loss domain takes more than 2 fair shares
FLAT_TOLERANCE = 0.01          # "flat": fast and slow loss averages within 1 %
FLAT_MIN_OBSERVATIONS = 50
FLAT_FAST, FLAT_SLOW = 0.8, 0.96   # EMAs over ~5 and ~25 losses: a start-up transient is gone after ~100


def per_domain(domains: Sequence[str], value: Any, name: str, low: float, high: float) -> np.ndarray | None:
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
            raise MixingError(f"{name} must be a number, a {{domain: number}} mapping, 'auto' or None, "
                              f"got {value!r}") from None
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


class Budget:
    """max_epochs and max_share for one mixer: `apply(policy, epochs)` returns the capped
    policy and the (domain, cap) pairs that bit."""

    def __init__(self, domains: Sequence[str], initial: np.ndarray, max_epochs: Any = AUTO, max_share: Any = AUTO):
        k = len(domains)
        self.domains = list(domains)
        self.epochs_auto = isinstance(max_epochs, str) and max_epochs == AUTO
        self.max_epochs = per_domain(domains, AUTO_MAX_EPOCHS if self.epochs_auto else max_epochs,
                                     "max_epochs", 0.0, math.inf)
        if isinstance(max_share, str) and max_share == AUTO:
            share = np.minimum(1.0, np.maximum(AUTO_SHARE_FACTOR / k, AUTO_SHARE_INITIAL * np.asarray(initial)))
            self.max_share = None if np.all(share >= 1.0) else share
        else:
            self.max_share = per_domain(domains, max_share, "max_share", 0.0, 1.0)
        if self.max_share is not None and np.all(np.isfinite(self.max_share)) and self.max_share.sum() < 1.0:
            raise MixingError(f"the max_share caps sum to {self.max_share.sum():.3f} < 1: no policy fits them")
        self.warned: set[tuple[str, str]] = set()

    def warn(self, capped: list[tuple[str, str]], step: int) -> None:
        """MixingWarning the first time a domain hits each cap."""
        for d, cap in capped:
            if cap in ("max_epochs", "max_share") and (d, cap) not in self.warned:
                self.warned.add((d, cap))
                what = "passed its max_epochs" if cap == "max_epochs" else "hit its max_share"
                warnings.warn(f"domain {d!r} {what} at step {step}; the policy is renormalised over the other "
                              "domains from now on", MixingWarning, stacklevel=4)

    def config(self) -> dict[str, Any]:
        def show(caps):
            return None if caps is None else [c if math.isfinite(c) else None for c in caps.tolist()]
        return {"max_epochs": show(self.max_epochs), "max_share": show(self.max_share)}

    def needs_sizes(self) -> bool:
        """An explicit max_epochs cannot work without the domain sizes (the automatic one waits for them)."""
        return self.max_epochs is not None and not self.epochs_auto

    def apply(self, policy: np.ndarray, epochs: np.ndarray | None, step: int) -> tuple[np.ndarray, list]:
        capped: list[tuple[str, str]] = []
        if self.max_epochs is not None and epochs is not None:
            done = epochs >= self.max_epochs
            if done.all():
                raise MixingError(f"every domain reached its max_epochs ({self.max_epochs.tolist()}) at step {step}: "
                                  "raise the caps or stop training")
            if done.any():
                policy = np.where(done, 0.0, policy)
                policy = policy / policy.sum()
                capped += [(self.domains[i], "max_epochs") for i in np.flatnonzero(done)]
        if self.max_share is not None:
            over = np.flatnonzero(policy > self.max_share + 1e-12)
            if len(over):
                policy = cap_shares(policy, self.max_share)
                capped += [(self.domains[i], "max_share") for i in over]
        return policy, capped


class FlatLossGuard:
    """A domain whose loss has stopped moving (fast and slow EMAs within FLAT_TOLERANCE, after
    FLAT_MIN_OBSERVATIONS losses) is held to its fair share (max(1/K, its initial weight)) when
    `cap` is on, and named in a MixingWarning (once per domain) when the rule wanted more than
    FLAT_SHARE_FACTOR times that share: the sign of an unlearnable domain eating the budget
    under a loss-chasing rule (or of a learnt one, which needs no more than its share)."""

    def __init__(self, domains: Sequence[str], initial: np.ndarray, cap: bool = True):
        k = len(domains)
        self.domains, self.cap_flat = list(domains), bool(cap)
        self.fair = np.maximum(1.0 / k, np.asarray(initial, dtype=np.float64))
        self.fast, self.slow = np.zeros(k), np.zeros(k)
        self.observed = np.zeros(k, dtype=np.int64)
        self.warned: set[str] = set()

    def state_dict(self) -> dict[str, Any]:
        return {"fast": self.fast.tolist(), "slow": self.slow.tolist(), "observed": self.observed.tolist(),
                "warned": sorted(self.warned)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        k = len(self.domains)
        try:
            fast, slow = np.asarray(state["fast"], dtype=np.float64), np.asarray(state["slow"], dtype=np.float64)
            observed = np.asarray(state["observed"], dtype=np.int64)
            warned = {str(d) for d in state["warned"]}
        except (KeyError, TypeError, ValueError):
            raise MixingError("mixer state 'guard' must hold fast, slow, observed and warned") from None
        if fast.shape != (k,) or slow.shape != (k,) or observed.shape != (k,):
            raise MixingError(f"mixer state 'guard' must hold {k} numbers per field")
        self.fast, self.slow, self.observed, self.warned = fast, slow, observed, warned

    def flat(self) -> np.ndarray:
        """Domains whose loss has stopped moving."""
        return (self.observed >= FLAT_MIN_OBSERVATIONS) & \
            (np.abs(self.slow - self.fast) <= FLAT_TOLERANCE * np.maximum(self.slow, 1e-12))

    def apply(self, policy: np.ndarray) -> tuple[np.ndarray, list]:
        """The policy with flat domains held to their fair share (if `cap`), and those capped."""
        flat = self.flat() & (policy > self.fair + 1e-12)
        if not self.cap_flat or not flat.any() or flat.all():
            return policy, []
        return cap_shares(policy, np.where(flat, self.fair, 1.0)), [(self.domains[i], "flat")
                                                                   for i in np.flatnonzero(flat)]

    def observe(self, losses: np.ndarray, seen: np.ndarray, policy: np.ndarray, step: int) -> None:
        """Update the loss averages; `policy` is what the rule wanted (before this guard)."""
        for i in np.flatnonzero(seen):
            x = float(losses[i])
            if self.observed[i] == 0:
                self.fast[i] = self.slow[i] = x
            else:
                self.fast[i] = FLAT_FAST * self.fast[i] + (1.0 - FLAT_FAST) * x
                self.slow[i] = FLAT_SLOW * self.slow[i] + (1.0 - FLAT_SLOW) * x
            self.observed[i] += 1
        for i in np.flatnonzero(self.flat()):
            d = self.domains[i]
            if d not in self.warned and policy[i] > FLAT_SHARE_FACTOR * self.fair[i]:
                self.warned.add(d)
                held = f"; held to {self.fair[i]:.2f} (flat_guard=False to let it)" if self.cap_flat else ""
                warnings.warn(
                    f"domain {d!r} takes {policy[i]:.2f} of the draws at step {step} ({policy[i] / self.fair[i]:.1f}x "
                    f"its fair share {self.fair[i]:.2f}) while its loss is flat at {self.fast[i]:.3f}: it may be "
                    f"unlearnable (noise) or learnt{held}. Set max_share= / max_epochs= for it, or use a rule that "
                    "rewards progress rather than loss", MixingWarning, stacklevel=4)
