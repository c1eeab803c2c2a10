"""`shammie mix`: online data mixing utilities.

    shammie mix report LOG [LOG ...] --output DIR

LOG is the JSONL a training run writes with `shammie.mixing.mixer.MixLog` (one
line per step: weights used and per-domain training loss; "eval" lines carry
validation loss), or a long-format CSV (step, kind, domain, weight, loss).
Writes, per log, `<name>.weights.png` (mixture weight trajectory),
`<name>.loss.png` (per-domain training loss, smoothed, and validation loss),
`<name>.budget.png` (tokens and epochs served per domain, when the log has them) and
`<name>.csv`, and `summary.json` (final weights, tokens, epochs, validation loss); with several logs also `compare.eval.png`
(validation loss "mean" of each run) and `compare.<KEY>.png` for other --compare keys.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Sequence

from shammie.pipeline.errors import UserError
from shammie.pipeline.options import HelpFormatter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mix_command", metavar="ACTION")
    rep = sub.add_parser("report", help="plot per-domain loss and mixture weight history of training logs",
                         # the module's first line names `shammie mix`, not this action
                         description="Plot the per-domain loss and mixture weight history of training logs.\n\n"
                         + __doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    rep.add_argument("logs", nargs="+", metavar="LOG", help="MixLog JSONL (or long CSV) written during training")
    rep.add_argument("--output", "-o", required=True, help="folder for the PNG/CSV/JSON outputs")
    rep.add_argument("--smooth", type=int, default=25,
                     help="moving-average window (steps) for the noisy per-step training losses")
    rep.add_argument("--compare", nargs="+", default=["mean", "all"], metavar="KEY",
                     help="validation-loss keys to compare across several logs (compare.<KEY>.png; "
                          "'mean' is written as compare.eval.png)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "mix_command", None) != "report":
        raise UserError("choose an action: `shammie mix report LOG --output DIR` (see `shammie mix --help`)")
    written = report(args.logs, args.output, smooth=args.smooth, compare_keys=args.compare)
    for path in written:
        print(path)
    return 0


AGGREGATES = ("mean", "all")     # eval keys the example logs besides the domains


def _name(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".jsonl", ".csv", ".json"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def _series(records: Sequence[dict[str, Any]], field: str, kind: str) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for rec in records:
        if rec.get("kind", "train") != kind:
            continue
        for d, v in (rec.get(field) or {}).items():
            xs, ys = out.setdefault(d, ([], []))
            xs.append(int(rec["step"]))
            ys.append(float(v))
    return out


def _moving_average(ys: list[float], window: int) -> list[float]:
    import numpy as np
    if window <= 1 or len(ys) < 2:
        return list(ys)
    c = np.cumsum(np.insert(np.asarray(ys, dtype=float), 0, 0.0))
    out = [(c[i + 1] - c[max(0, i + 1 - window)]) / (i + 1 - max(0, i + 1 - window)) for i in range(len(ys))]
    return out


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_weights(records, path: str, title: str) -> None:
    plt = _figure()
    series = _series(records, "weights", "train")
    if not series:
        raise UserError(f"{title}: no training records with weights to plot")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, d in enumerate(sorted(series)):
        xs, ys = series[d]
        ax.plot(xs, ys, label=d, lw=1.3, color=plt.get_cmap("tab20")(i % 20))
    ax.set_xlabel("step")
    ax.set_ylabel("sampling probability")
    ax.set_title(f"{title}: mixture weights")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_losses(records, path: str, title: str, smooth: int) -> None:
    plt = _figure()
    train, evals = _series(records, "loss", "train"), _series(records, "loss", "eval")
    panels = 2 if evals else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    domains = sorted(set(train) | {d for d in evals if d not in AGGREGATES})
    colors = {d: plt.get_cmap("tab20")(i % 20) for i, d in enumerate(domains)}
    for d in sorted(train):
        xs, ys = train[d]
        axes[0][0].plot(xs, _moving_average(ys, smooth), label=d, lw=1, color=colors[d])
    axes[0][0].set_title(f"{title}: training loss per domain (mean of last {smooth} draws)")
    if evals:
        for d in sorted(evals):
            xs, ys = evals[d]
            style = dict(color="black", ls="--" if d == "mean" else ":", lw=2) if d in AGGREGATES \
                else dict(color=colors[d], lw=1.2)
            axes[0][1].plot(xs, ys, marker=".", label=d, **style)
        axes[0][1].set_title(f"{title}: validation loss per domain")
    for ax in axes[0]:
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def plot_budget(records, path: str, title: str) -> bool:
    """Tokens and epochs served per domain over the steps (all ranks); False if the log has none."""
    tokens, epochs = _series(records, "tokens", "train"), _series(records, "epochs", "train")
    if not tokens and not epochs:
        return False
    plt = _figure()
    panels = [(s, label) for s, label in ((tokens, "tokens served"), (epochs, "epochs (passes over the domain)")) if s]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (series, label) in zip(axes[0], panels):
        for i, d in enumerate(sorted(series)):
            ax.plot(*series[d], label=d, lw=1.2, color=plt.get_cmap("tab20")(i % 20))
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_title(f"{title}: per-domain budget")
    fig.tight_layout()
    _save(fig, path)
    return True


def plot_compare(logs: dict[str, list], path: str, key: str = "mean") -> None:
    """Validation loss `key` (a domain name or an aggregate logged by the trainer) of each run."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = 0
    # runs named "<mixer>-s<seed>" share a colour per mixer, so many seeds stay readable
    groups = sorted({name.rsplit("-s", 1)[0] for name in logs})
    labelled: set[str] = set()
    for name, records in logs.items():
        series = _series(records, "loss", "eval").get(key)
        if series:
            group = name.rsplit("-s", 1)[0]
            ax.plot(*series, marker=".", lw=1.2, alpha=0.8, color=plt.get_cmap("tab10")(groups.index(group) % 10),
                    label=group if len(groups) < len(logs) and group not in labelled else
                    (None if len(groups) < len(logs) else name))
            labelled.add(group)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return
    ax.set_xlabel("step")
    ax.set_ylabel(f"validation loss: {key}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str) -> None:
    from shammie.pipeline.storage import atomic_write
    with atomic_write(path) as local:
        fig.savefig(local, dpi=110, format="png")
    import matplotlib.pyplot as plt
    plt.close(fig)


def summarize(records) -> dict[str, Any]:
    train = [r for r in records if r.get("kind", "train") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    out: dict[str, Any] = {"steps": max((r["step"] for r in train), default=0)}
    if train:
        out["final_weights"] = train[-1].get("weights", {})
        for field in ("tokens", "epochs", "capped"):
            if field in train[-1]:
                out[f"final_{field}"] = train[-1][field]
    if evals:
        out["final_eval"] = {"step": evals[-1]["step"], **evals[-1]["loss"]}
    return out


def report(logs: Sequence[str], output: str, *, smooth: int = 25,
           compare_keys: Sequence[str] = ("mean", "all")) -> list[str]:
    """Plots and CSV per log; with several logs, their validation loss `compare_keys`
    (eval-record keys: a domain or an aggregate such as the example's "mean"/"all") side by side."""
    from shammie.mixing.errors import MixingError
    from shammie.mixing.log import read_log, write_csv

    os.makedirs(output, exist_ok=True)
    loaded, written = {}, []
    for path in logs:
        name = _name(path)
        if name in loaded:
            raise UserError(f"two logs share the name {name!r}; rename one")
        try:
            records = read_log(path)
        except MixingError as e:            # the library's error becomes the CLI's one-line message
            raise UserError(str(e)) from None
        if not records:
            raise UserError(f"{path}: empty log")
        loaded[name] = records
        for suffix, fn in ((".weights.png", lambda p: plot_weights(records, p, name)),
                           (".loss.png", lambda p: plot_losses(records, p, name, smooth)),
                           (".csv", lambda p: write_csv(records, p))):
            target = os.path.join(output, name + suffix)
            fn(target)
            written.append(target)
        target = os.path.join(output, name + ".budget.png")
        if plot_budget(records, target, name):
            written.append(target)
    if len(loaded) > 1:
        for key in compare_keys:
            target = os.path.join(output, f"compare.{key}.png" if key != "mean" else "compare.eval.png")
            plot_compare(loaded, target, key)
            if os.path.exists(target):
                written.append(target)
    summary_path = os.path.join(output, "summary.json")
    from shammie.pipeline.storage import write_json_atomic
    write_json_atomic(summary_path, {name: summarize(r) for name, r in loaded.items()})
    written.append(summary_path)
    return written
