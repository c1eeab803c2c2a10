"""Checks of a mixer state file before anything is loaded from it: a state saved with
another configuration, or with numbers that are not what state_dict() writes, is refused
with a message naming the field, and the mixer stays as it was."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from shammie.mixing.errors import MixingError

_REQUIRED = ("config", "step", "consumed_by_rank", "policies", "rule", "guard")


def check_state(state: Any, mine: Mapping[str, Any], lag_fixed: bool) -> int:
    """The state's step, after checking its fields and that its configuration is `mine`
    (a lag this mixer has not fixed yet follows the run being resumed)."""
    if not isinstance(state, Mapping):
        raise MixingError(f"mixer state must be a mapping (from state_dict()), got {type(state).__name__}")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        older = " (a state saved before mixer states became rank-independent)" if "consumed" in state else ""
        raise MixingError(f"not a mixer state: missing {missing}{older}; pass what state_dict() returned")
    theirs = state["config"]
    if not isinstance(theirs, Mapping):
        raise MixingError("mixer state 'config' must be a mapping")
    lag = theirs.get("lag")
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
        raise MixingError(f"mixer state lag must be an integer >= 0, got {lag!r}")
    compare = dict(mine)
    if not lag_fixed:
        compare["lag"] = lag
    diff = {k: (theirs.get(k), v) for k, v in compare.items() if theirs.get(k) != v}
    if diff:
        raise MixingError("mixer state was saved with a different configuration "
                          f"(saved, now): {diff}; resume needs the same domains, rule, seed, lag, "
                          "batch size, grad_accum, world size and budgets")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise MixingError(f"mixer state 'step' must be an integer >= 0, got {step!r}")
    return int(step)


def counts_matrix(state: Mapping[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """consumed_by_rank as a (ranks, domains) matrix of non-negative integers."""
    try:
        arr = np.asarray(state["consumed_by_rank"], dtype=np.float64)
    except (TypeError, ValueError):
        raise MixingError("mixer state 'consumed_by_rank' is not a matrix of numbers") from None
    if arr.shape != shape or not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise MixingError(f"mixer state 'consumed_by_rank' must be {shape[0]} x {shape[1]} non-negative "
                          f"integers, got {state['consumed_by_rank']!r:.200}")
    return arr.astype(np.int64)


def check_policies(state: Mapping[str, Any], k: int, needed: Iterable[int]) -> dict[int, np.ndarray]:
    """{step: policy} of the state, each a probability vector over k domains, covering `needed`."""
    if not isinstance(state["policies"], Mapping):
        raise MixingError("mixer state 'policies' must be a {step: policy} mapping")
    policies = {}
    for s, p in state["policies"].items():
        try:
            s, p = int(s), np.asarray(p, dtype=np.float64)
        except (TypeError, ValueError):
            raise MixingError(f"mixer state policy {s!r}: {p!r} is not step: list of numbers") from None
        if p.shape != (k,) or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-6:
            raise MixingError(f"mixer state policy of step {s} is not a probability vector over {k} domains: "
                              f"{p.tolist()}")
        policies[s] = p
    missing = [s for s in needed if s not in policies]
    if missing:
        raise MixingError(f"mixer state lacks the policies of steps {missing}, which the next steps draw with")
    return policies
