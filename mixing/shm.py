"""Shared memory between the trainer's process and its DataLoader workers: a float64 table
(torch tensor in shared memory, read through a numpy view) and the ring of policies by step."""

from __future__ import annotations

import time

import numpy as np

from shammie.mixing.errors import MixingError


class SharedRows:
    """A float64 table in shared memory (torch tensor, `share_memory_()`), read by
    DataLoader workers through a numpy view (element access ~10x cheaper than torch's).

    Each row is [stamp, values...]; stamp -2 means never written. The writer sets
    stamp=-1 before writing the values and the real stamp after, and readers re-check
    the stamp after copying (a seqlock), so a reader never uses a half-written row."""

    def __init__(self, rows: int, width: int):
        import torch   # only the shared table needs torch; the rules and the schedule do not
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


class PolicyRing:
    """Policies by step, in shared memory (row `step % rows` holds step's policy)."""

    def __init__(self, k: int, rows: int):
        self.rows = rows
        self._table = SharedRows(rows, k)

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
