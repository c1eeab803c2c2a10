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


class PolicyBoard:
    """Where the trainer's process publishes the policy of every step and DataLoader workers
    read it: the recent policies (kept for the state file), the shared ring, and the lag.

    Step t draws with the policy published for step ``max(1, t - lag)``. While the lag is not
    fixed (no draw, update or state yet) it may change, and the ring grows with it."""

    def __init__(self, k: int, lag: int, fixed: bool, ring_rows: int | None, margin: int):
        self.k, self.lag, self.fixed, self.margin = k, int(lag), bool(fixed), margin
        self._rows_given = ring_rows
        self.policies: dict[int, np.ndarray] = {}
        self.ring = PolicyRing(k, ring_rows or self.lag + margin)

    def set_lag(self, lag: int) -> None:
        self.lag = int(lag)
        if self._rows_given is None and self.ring.rows < self.lag + self.margin:
            # only before any worker holds the ring: the lag is still free to change then
            self.ring = PolicyRing(self.k, self.lag + self.margin)
            for s, p in self.policies.items():
                self.ring.publish(s, p)

    def publish(self, s: int, policy: np.ndarray) -> None:
        self.policies[s] = policy
        for old in [k for k in self.policies if k < s - self.lag - 1]:
            del self.policies[old]
        self.ring.publish(s, policy)

    def replace(self, policies: dict[int, np.ndarray]) -> None:
        """Start over from a state's policies (rows of later steps would read as overwritten)."""
        self.policies = {}
        self.ring.clear()
        for s, p in sorted(policies.items()):
            self.publish(s, p)

    def source(self, t: int) -> int:
        """The step whose published policy draws step t."""
        return max(1, t - self.lag)

    def get(self, t: int, *, wait: bool, timeout: float, on_wait, explain) -> np.ndarray:
        """The policy that draws step t. In the trainer's process (wait False) a missing one is
        an error at once; a worker waits up to `timeout` s (calling on_wait once), then raises.
        explain(kind, t, s, timeout) -> the message of the MixingError."""
        s = self.source(t)
        if s in self.policies and not wait:
            return self.policies[s]
        deadline, pause = time.monotonic() + timeout, 1e-4
        while (p := self.ring.read(s)) is None:
            if not wait:
                raise MixingError(explain("missing", t, s, timeout))
            if on_wait is not None and pause == 1e-4:
                on_wait()
            if time.monotonic() > deadline:
                raise MixingError(explain("timeout", t, s, timeout))
            time.sleep(pause)
            pause = min(pause * 2, 5e-3)
        return p
