"""The draw schedule: which domain every sequence of every rank comes from, as a pure
function of (seed, step, rank, micro-batch, position, policy).

Pure and counter-based, so that DataLoader workers, every rank and a resumed run agree
without sharing random state, and so that any rank can replay any other rank's draws
cheaply: a rank's draws of a step are splitmix64 hashes of those coordinates (numpy, no
generator object per call), turned into uniforms and looked up in the policy's CDF.
Replaying all ranks is what makes the stream state rank-independent: every rank knows
every rank's cursors, so one checkpoint (rank 0's) resumes all of them."""

from __future__ import annotations

import bisect

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _mix_int(x: int) -> int:
    """The same finaliser on one Python int (cheaper than numpy for a scalar)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uniforms(seed: int, step: int, ranks: np.ndarray, micro_batches: int, per_micro: int) -> np.ndarray:
    """Uniforms in [0, 1), shape (len(ranks), micro_batches, per_micro)."""
    key = _mix_int(_mix_int((int(seed) & _MASK) ^ 0x0D4A) ^ (int(step) & _MASK))
    ranks = np.asarray(ranks, dtype=np.uint64)
    with np.errstate(over="ignore"):
        r = _mix(np.uint64(key) ^ ranks)[:, None, None]
        m = np.arange(micro_batches, dtype=np.uint64)[None, :, None] << np.uint64(32)
        j = np.arange(per_micro, dtype=np.uint64)[None, None, :]
        x = _mix(r ^ (m | j))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draws(policy: np.ndarray, seed: int, step: int, ranks: np.ndarray, micro_batches: int, batch_size: int,
          per_sample: bool) -> np.ndarray:
    """Domain index of every sequence, shape (len(ranks), micro_batches, batch_size): one
    domain per micro-batch (per_sample False, the paper's setting) or one per sequence."""
    cdf = np.cumsum(policy)
    cdf = cdf / cdf[-1]
    ranks = np.asarray(ranks).reshape(-1)
    if not per_sample and len(ranks) == 1:
        # the common case (a DataLoader worker's own rank), in Python ints: same numbers, ~8x cheaper
        key = _mix_int(_mix_int((int(seed) & _MASK) ^ 0x0D4A) ^ (int(step) & _MASK))
        r = _mix_int(key ^ int(ranks[0]))
        cdf_list, last = cdf.tolist(), len(cdf) - 1
        picks = [min(bisect.bisect_right(cdf_list, (_mix_int(r ^ (m << 32)) >> 11) * (1.0 / (1 << 53))), last)
                 for m in range(micro_batches)]
        return np.repeat(np.asarray(picks, dtype=np.int64), batch_size).reshape(1, micro_batches, batch_size)
    u = uniforms(seed, step, ranks, micro_batches, batch_size if per_sample else 1)
    out = np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
    if not per_sample:
        out = np.repeat(out, batch_size, axis=2)
    return out


def counts_by_rank(drawn: np.ndarray, k: int) -> np.ndarray:
    """(ranks, K) sequences per domain in `drawn` (ranks, micro_batches, batch_size)."""
    ranks = drawn.shape[0]
    flat = drawn.reshape(ranks, -1) + (np.arange(ranks) * k)[:, None]
    return np.bincount(flat.reshape(-1), minlength=ranks * k).reshape(ranks, k)
