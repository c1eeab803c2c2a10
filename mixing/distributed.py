"""torch.distributed for the mixer: rank and world size of the data-parallel group, the
device its backend reduces on, and the one all_reduce per step. torch is optional for
the rules; everything here imports it on use."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from shammie.mixing.errors import MixingError


def _dist():
    try:
        import torch.distributed as dist
    except ImportError:  # torch is optional for the rules themselves
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def dist_info(group: Any = None) -> tuple[int, int]:
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


def sum_over_ranks(values: np.ndarray, group: Any = None) -> np.ndarray:
    """`values` summed over the ranks of `group` (one all_reduce, float64, on the backend's device)."""
    import torch
    import torch.distributed as dist
    packed = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(reduction_device(group))
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    return packed.cpu().numpy()


def reduce_losses(local: Callable[[], tuple[np.ndarray, np.ndarray]], k: int, group: Any,
                  configured: tuple[int, int], step: int) -> tuple[np.ndarray, np.ndarray]:
    """(loss sums, reporting ranks) per domain over the data-parallel ranks. `local()` parses
    this rank's losses; if it raises, the rank still joins the all_reduce (with an error flag)
    so that every rank raises instead of the others hanging in the collective."""
    world = dist_info(group)[1]
    if world <= 1:
        return local()
    if configured != dist_info(group):
        raise MixingError(f"mixer set up for rank {configured[0]} of {configured[1]} but the process group says "
                          f"{dist_info(group)}: pass the data-parallel group as process_group= (or rank=/world_size= "
                          "that match it)")
    try:
        sums, counts, error = *local(), None
    except MixingError as e:
        sums, counts, error = np.zeros(k), np.zeros(k), e
    out = sum_over_ranks(np.concatenate([sums, counts, [1.0 if error else 0.0]]), group)
    if error is not None:
        raise error
    if int(out[2 * k]):
        raise MixingError(f"{int(out[2 * k])} other rank(s) reported invalid losses for step {step}; see their errors")
    return out[:k], out[k:2 * k]
