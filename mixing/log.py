"""The mixing log: an append-only JSONL of per-step mixture weights and losses (train and
eval records), read back by `shammie mix report`; and its long-CSV form."""

from __future__ import annotations

import json
import os
import weakref
from typing import Any, Iterable, Mapping

import numpy as np

from shammie.mixing.errors import MixingError


def _flush_lines(path: str, pending: list[str]) -> None:
    if pending:
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n".join(pending) + "\n")
        pending.clear()


class MixLog:
    """Append-only JSONL of per-step mixture weights and losses (train and eval).

    One line per record; `shammie mix report` plots it. On resume the file is kept and
    later lines win for a repeated step, so nothing logged is lost. Records are written
    in groups of `flush_every`; `close()` (or leaving a ``with MixLog(...) as log:``
    block) writes the rest, and so does the garbage collector or the interpreter's exit
    for a log that was never closed."""

    def __init__(self, path: str, flush_every: int = 20):
        self.path, self.flush_every, self._pending = path, flush_every, []
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        # a log the user forgets to close still reaches the disk (the list, not self, is captured)
        self._finalizer = weakref.finalize(self, _flush_lines, path, self._pending)

    def __enter__(self) -> "MixLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, record: Mapping[str, Any]) -> None:
        self._pending.append(json.dumps(record, sort_keys=True))
        if len(self._pending) >= self.flush_every:
            self.flush()

    def write_eval(self, step: int, losses: Mapping[str, float], **extra: Any) -> None:
        self.write({"step": int(step), "kind": "eval", "loss": {d: float(v) for d, v in losses.items()}, **extra})
        self.flush()

    def flush(self) -> None:
        _flush_lines(self.path, self._pending)

    def close(self) -> None:
        self.flush()


def step_record(domains: list[str], rule: str, step: int, used: np.ndarray, losses: Mapping[str, float],
                consumed_all: np.ndarray, seq_len: int | None, epochs: np.ndarray | None,
                capped: list[tuple[str, str]]) -> dict[str, Any]:
    """The log record of one update: weights that drew the step, its losses, and per domain the
    sequences (tokens, epochs) served so far over all ranks, and the domains being capped."""
    rec: dict[str, Any] = {"step": step, "kind": "train", "mixer": rule, "weights": dict(zip(domains, used.tolist())),
                           "loss": dict(losses), "sequences": dict(zip(domains, consumed_all.tolist()))}
    if seq_len is not None:
        rec["tokens"] = {d: int(n) * seq_len for d, n in rec["sequences"].items()}
    if epochs is not None:
        rec["epochs"] = dict(zip(domains, [round(float(e), 6) for e in epochs]))
    if capped:
        rec["capped"] = sorted({d for d, _ in capped})
    return rec


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
