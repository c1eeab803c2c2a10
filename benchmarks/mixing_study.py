"""Which mixing rule helps, and by how much beyond noise? Paired seeds, a null band from the
noise the arms see, a best-static arm, synthetic domains with known floors and the real
store's domains reported separately.

    .venv/bin/python benchmarks/mixing_study.py --out /tmp/mixing-study \\
        --json docs/benchmarks/mixing-study.json --plot-dir docs/benchmarks

Synthetic part (benchmarks/odm_study.py's processes, floors and transformer are imported):
five domains on disjoint token ranges with exactly known loss floors: copy (fresh,
induction), easy (first-order Markov), hard (second-order Markov, learnt slowly), tiny
(easy-like, 64 training sequences, repeated) and noise (iid uniform: unlearnable). The
metrics, on held-out sequences at the last step: mean excess loss (loss - floor) over
the four learnable domains, the worst learnable domain's excess, and the noise domain's
share of the draws and its epochs.

Real part: the seven domains of the store examples/train_tiny_gpt.py builds from
../shared/data (its TinyGPT and evaluate are imported); the floor is unknown, so the
metrics are the mean validation loss over domains and the worst domain's loss. Skipped
with a message without the shared data.

Arms: uniform, natural (by token count), best_static (the best of a fixed grid of static
mixtures, chosen on separate selection seeds so its number is not the max of noise), and
every rule of shammie.mixing.rules with the shipped defaults (warm-up, max_share and
max_epochs guards), plus authors_unguarded (the authors' rule without the guards).

Statistics: every arm of a seed shares the model initialisation, the data and the draw
seed (paired). The null: uniform re-run with `--nulls` other draw seeds per seed: its
differences from uniform are the noise any arm sees. An arm's number is its paired mean
difference from uniform (and from best_static) with a 95 % t-interval over seeds; the
null band is 1.96 x the standard deviation of the null differences / sqrt(seeds): an arm
beats X beyond the null if its mean difference is below -band and its interval excludes 0.

The rules are driven through mixing/budgets.py and the rules' own policy()/learn() with lag
0 and one domain per micro-batch, as the Mixer does in process (the Mixer adds ranks, the
lag and the state files, which do not change what is drawn at lag 0).

One process (the machine is shared); torch uses --threads threads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import odm_study  # noqa: E402  (the synthetic processes, floors and the small transformer)

from shammie.mixing.budgets import Budget, FlatLossGuard  # noqa: E402
from shammie.mixing.rules import RULES, make_rule, resolve_weights  # noqa: E402

SYN_DOMAINS = odm_study.DOMAINS                 # copy, easy, hard, noise, tiny
LEARNABLE = odm_study.LEARNABLE
STATIC_ARMS = ("uniform", "natural", "best_static")
RULE_ARMS = ("paper", "authors", "authors_unguarded", "smoothed_mean", "progress", "ado", "aioli")
WARMUP = 50


def arm_setup(arm: str, domains: list[str], tokens: dict[str, int], grid_weights=None):
    """(rule, budget, guard, warmup) for an arm: rules with the shipped guards (the Mixer's
    defaults: budgets "auto" and the flat-loss guard), authors_unguarded without them."""
    k = len(domains)
    uniform = np.full(k, 1.0 / k)
    if arm in ("uniform", "natural", "null"):
        w = resolve_weights(domains, "natural" if arm == "natural" else "uniform", tokens)
        return make_rule("static", k, w), None, None, 0
    if arm in ("best_static", "grid"):
        return make_rule("static", k, np.asarray(grid_weights)), None, None, 0
    name = "authors" if arm == "authors_unguarded" else arm
    rule = make_rule(name, k, uniform)
    if arm == "authors_unguarded":
        return rule, None, None, WARMUP
    return rule, Budget(domains, uniform), FlatLossGuard(domains, uniform), WARMUP


class Cursor:
    """Per domain: next sequences in a seeded permutation per epoch (as MixtureDataset does)."""

    def __init__(self, n: int, seed: int, d: int):
        self.n, self.seed, self.d, self.k = n, seed, d, 0

    def take(self, count: int) -> np.ndarray:
        out = []
        for _ in range(count):
            e, pos = divmod(self.k, self.n)
            perm = np.random.default_rng([self.seed, self.d, e]).permutation(self.n)
            out.append(perm[pos])
            self.k += 1
        return np.asarray(out)


def run_arm(part: str, arm: str, seed: int, draw_seed: int, cfg: dict, setup: dict, grid_weights=None) -> dict:
    domains, sizes = setup["domains"], setup["sizes"]
    k = len(domains)
    rule, budget, guard, warmup = arm_setup(arm, domains, setup["tokens"], grid_weights)
    torch.manual_seed(seed)
    model = setup["make_model"]()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg[f"{part}_lr"], weight_decay=0.01)
    steps, batch = cfg[f"{part}_steps"], cfg[f"{part}_batch"]
    cursors = [Cursor(sizes[d], seed, i) for i, d in enumerate(domains)]
    consumed = np.zeros(k)
    draws = np.zeros(k)
    shares = np.zeros(k)
    initial = rule.initial
    policy = initial if warmup else rule.policy(1)
    for t in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = cfg[f"{part}_lr"] * odm_study.lr_factor(t, steps, max(1, steps // 20))
        u = np.random.default_rng([draw_seed, 0x0D4A, t]).random()
        d = min(int(np.searchsorted(np.cumsum(policy) / policy.sum(), u, side="right")), k - 1)
        ids = setup["batch"](domains[d], cursors[d].take(batch))
        per_seq = setup["loss"](model, ids)
        per_seq.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        draws[d] += 1
        shares += policy
        consumed[d] += batch
        losses = np.zeros(k)
        losses[d] = float(per_seq.detach().mean())
        seen = np.zeros(k, dtype=bool)
        seen[d] = True
        drawn = np.zeros(k)
        drawn[d] = batch
        if t > warmup or rule.learns_in_warmup:
            rule.learn(t, losses, seen, policy, drawn)
        wanted = nxt = initial if t + 1 <= warmup else rule.policy(t + 1)
        if guard is not None:                      # the Mixer's order: flat guard, then budgets
            nxt, _ = guard.apply(nxt)
        if budget is not None:
            nxt, _ = budget.apply(nxt, consumed / np.asarray([sizes[x] for x in domains]), t)
        if guard is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                guard.observe(losses, seen, wanted, t)
        policy = nxt
    final = setup["evaluate"](model)
    return {"part": part, "arm": arm, "seed": seed, "draw_seed": draw_seed, "loss": final,
            "draw_share": dict(zip(domains, (draws / steps).tolist())),
            "mean_policy": dict(zip(domains, (shares / steps).tolist())),
            "epochs": {d: float(consumed[i] / sizes[d]) for i, d in enumerate(domains)}}


# -- the two parts ---------------------------------------------------------------------

def synthetic(cfg: dict) -> dict:
    store, val, floors, unigram = odm_study.synthetic_setup()
    vocab = len(SYN_DOMAINS) * odm_study.V_DOMAIN
    seq = odm_study.SEQ

    def batch(d, idx):
        return torch.from_numpy(np.stack([store.sequence(d, seq, int(j)) for j in idx]).astype(np.int64))

    def evaluate(model):
        model.eval()
        with torch.no_grad():
            out = {d: float(model.loss_per_sequence(ids).mean()) for d, ids in val.items()}
        model.train()
        return out

    return {"domains": store.domains, "sizes": {d: store.num_sequences(d, seq) for d in store.domains},
            "tokens": {d: store.num_tokens(d) for d in store.domains}, "batch": batch,
            "loss": lambda m, ids: m.loss_per_sequence(ids), "evaluate": evaluate, "floors": floors,
            "unigram": unigram,
            "make_model": lambda: odm_study.SynthGPT(vocab, d=cfg["synthetic_d_model"], layers=2)}


def real(cfg: dict) -> dict | None:
    stores = odm_study.real_setup(cfg["out"], cfg["real_vocab"], cfg["real_seq_len"])
    if stores is None:
        return None
    from shammie.mixing.store import open_store
    ex = odm_study.tiny_gpt_example()
    tr, va = open_store(stores[0]), open_store(stores[1])
    seq = cfg["real_seq_len"] + 1

    def batch(d, idx):
        return torch.from_numpy(np.stack([tr.sequence(d, seq, int(j)) for j in idx]).astype(np.int64))

    def evaluate(model):
        ev = ex.evaluate(model, va, seq, cap=cfg["real_eval_cap"])
        return {d: ev[d] for d in tr.domains}

    return {"domains": list(tr.domains), "sizes": {d: tr.num_sequences(d, seq) for d in tr.domains},
            "tokens": {d: tr.num_tokens(d) for d in tr.domains}, "batch": batch,
            "loss": lambda m, ids: ex.sequence_losses(m, ids), "evaluate": evaluate,
            "make_model": lambda: ex.TinyGPT(tr.vocab_size, cfg["real_seq_len"], d=cfg["real_d_model"], layers=2)}


def metrics(part: str, r: dict, setup: dict) -> dict:
    loss = r["loss"]
    if part == "synthetic":
        excess = {d: loss[d] - setup["floors"][d] for d in LEARNABLE}
        return {"mean_excess": float(np.mean(list(excess.values()))), "worst_excess": max(excess.values()),
                "noise_share": r["draw_share"]["noise"], "noise_epochs": r["epochs"]["noise"],
                "tiny_epochs": r["epochs"]["tiny"]}
    return {"mean_loss": float(np.mean(list(loss.values()))), "worst_loss": max(loss.values())}


def interval(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): a 95 % t-interval of the mean."""
    x = np.asarray(xs, dtype=np.float64)
    n = len(x)
    t975 = {1: float("nan"), 2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26,
            11: 2.23, 12: 2.20, 15: 2.14, 20: 2.09}.get(n, 2.0)
    half = t975 * x.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def summarize(part: str, results: list[dict], setup: dict, arms: list[str], seeds: list[int]) -> dict:
    rows = [{"arm": r["arm"], "seed": r["seed"], **metrics(part, r, setup)} for r in results]
    return summarize_rows(rows, arms, seeds)


def summarize_rows(rows: list[dict], arms: list[str], seeds: list[int]) -> dict:
    """The table from per-run metric rows ({"arm", "seed", metric: value, ...}; arm "null" for
    the null draws): paired differences, intervals, the null band."""
    skip = {"arm", "seed", "part", "draw", "minutes"}
    main = {(r["arm"], r["seed"]): {k: v for k, v in r.items() if k not in skip} for r in rows if r["arm"] != "null"}
    nulls = [(r["seed"], {k: v for k, v in r.items() if k not in skip}) for r in rows
             if r["arm"] == "null" and r["seed"] in seeds]
    keys = list(next(iter(main.values())))
    primary = keys[0]
    out: dict = {"arms": {}, "primary": primary}
    null_diffs = [m[primary] - main[("uniform", s)][primary] for s, m in nulls]
    band = 1.96 * float(np.std(null_diffs, ddof=1)) / math.sqrt(len(seeds)) if len(null_diffs) > 1 else float("nan")
    out["null"] = {"differences": null_diffs, "band": band}
    for arm in arms:
        row = {}
        for key in keys:
            vals = [main[(arm, s)][key] for s in seeds]
            row[key] = interval(vals)
        for ref in ("uniform", "best_static"):
            diffs = [main[(arm, s)][primary] - main[(ref, s)][primary] for s in seeds]
            m, lo, hi = interval(diffs)
            row[f"vs_{ref}"] = (m, lo, hi)
            row[f"beats_{ref}"] = bool(m < -band and hi < 0)
            row[f"loses_to_{ref}"] = bool(m > band and lo > 0)
        out["arms"][arm] = row
    return out


def choose_default(syn: dict, real_part: dict | None) -> dict:
    """The best rule that never loses to uniform by more than the null band (on either part),
    else a static mixture."""
    ok = []
    for arm in RULE_ARMS:
        if arm == "authors_unguarded":
            continue                                   # not shippable as a default: no guards
        worst = syn["arms"][arm]["vs_uniform"][0] <= syn["null"]["band"]
        if real_part is not None:
            worst = worst and real_part["arms"][arm]["vs_uniform"][0] <= real_part["null"]["band"]
        if worst:
            ok.append((syn["arms"][arm]["vs_uniform"][0], arm))
    if not ok:
        return {"default": "static", "why": "no rule stays within the null band of uniform on every part"}
    best = min(ok)
    return {"default": best[1], "why": f"lowest mean excess vs uniform ({best[0]:+.4f}) among rules within the null "
                                       "band of uniform on every part", "candidates": [a for _, a in sorted(ok)]}


def select_best_static(cfg: dict, setup: dict, seeds: list[int], grid: np.ndarray, log) -> tuple[np.ndarray, list]:
    scores = []
    for gi, w in enumerate(grid):
        vals = [metrics("synthetic", run_arm("synthetic", "grid", s, s, cfg, setup, w), setup)["mean_excess"]
                for s in seeds]
        scores.append(float(np.mean(vals)))
        log({"grid": gi, "weights": w.round(3).tolist(), "mean_excess": scores[-1]})
    best = int(np.argmin(scores))
    return grid[best], scores


def static_grid(k: int, size: int, tokens: list[float]) -> np.ndarray:
    rng = np.random.default_rng(7)
    grid = [np.full(k, 1.0 / k), np.asarray(tokens) / np.sum(tokens)]
    grid += list(rng.dirichlet(np.full(k, 1.0), size=size - 2))
    return np.asarray(grid)


def markdown(part: str, summary: dict, arms: list[str]) -> str:
    keys = [k for k in next(iter(summary["arms"].values())) if not k.startswith(("vs_", "beats_", "loses_"))]
    head = "| arm | " + " | ".join(keys) + " | vs uniform | vs best_static |"
    lines = [head, "|" + "---|" * (len(keys) + 3)]
    for arm in arms:
        row = summary["arms"][arm]
        cells = [f"{row[k][0]:.4f} [{row[k][1]:.4f}, {row[k][2]:.4f}]" for k in keys]
        for ref in ("uniform", "best_static"):
            m, lo, hi = row[f"vs_{ref}"]
            mark = " **better**" if row[f"beats_{ref}"] else (" **worse**" if row[f"loses_to_{ref}"] else "")
            cells.append(f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines.append(f"\nnull band ({part}, {summary['primary']}): ±{summary['null']['band']:.4f} "
                 f"({len(summary['null']['differences'])} null runs)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["synthetic", "real"], choices=["synthetic", "real"])
    ap.add_argument("--seeds", type=int, default=10, help="paired evaluation seeds (0 .. N-1)")
    ap.add_argument("--nulls", type=int, default=3, help="null draws per seed")
    ap.add_argument("--grid", type=int, default=16, help="static mixtures in the grid")
    ap.add_argument("--selection-seeds", type=int, default=2, help="seeds (100, 101, ...) that pick the best static")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="/tmp/mixing-study")
    ap.add_argument("--json", default=None, help="write the results here too (e.g. docs/benchmarks/mixing-study.json)")
    ap.add_argument("--synthetic-steps", type=int, default=800)
    ap.add_argument("--synthetic-batch", type=int, default=16)
    ap.add_argument("--synthetic-lr", type=float, default=6e-3)
    ap.add_argument("--synthetic-d-model", type=int, default=48)
    ap.add_argument("--real-seeds", type=int, default=5)
    ap.add_argument("--real-steps", type=int, default=400)
    ap.add_argument("--real-batch", type=int, default=16)
    ap.add_argument("--real-lr", type=float, default=6e-3)
    ap.add_argument("--real-d-model", type=int, default=64)
    ap.add_argument("--real-seq-len", type=int, default=64)
    ap.add_argument("--real-vocab", type=int, default=3072)
    ap.add_argument("--real-eval-cap", type=int, default=64)
    ap.add_argument("--arms", nargs="+", default=None, help="run only these arms (and --nulls null draws)")
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, help="run only these seeds")
    ap.add_argument("--grid-from", default=None, metavar="PROGRESS_JSONL",
                    help="take the best static mixture from the grid lines of an earlier run")
    ap.add_argument("--plot-dir", default=None, help="with --summarize: write mixing-study-rules-<part>.png here")
    ap.add_argument("--summarize", default=None, metavar="PROGRESS_JSONL",
                    help="only rebuild the tables and the choice from the per-run lines of an earlier run "
                         "(complete seeds only), e.g. after stopping it")
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize_progress(args)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = vars(args)
    began = time.perf_counter()
    progress = open(os.path.join(args.out, "progress.jsonl"), "a")

    def log(rec):
        rec = {**rec, "minutes": round((time.perf_counter() - began) / 60, 2)}
        progress.write(json.dumps(rec) + "\n")
        progress.flush()
        print(json.dumps(rec), flush=True)

    arms = list(STATIC_ARMS + RULE_ARMS) if args.arms is None else args.arms
    report: dict = {"command": " ".join(["benchmarks/mixing_study.py"] + (argv if argv is not None else sys.argv[1:])),
                    "uptime_start": os.popen("uptime").read().strip(), "config": {k: v for k, v in cfg.items()},
                    "rules": sorted(RULES), "warmup": WARMUP, "parts": {}}
    for part in args.parts:
        setup = synthetic(cfg) if part == "synthetic" else real(cfg)
        if setup is None:
            report["parts"][part] = {"skipped": "no shared data"}
            continue
        seeds = args.seed_list or list(range(args.seeds if part == "synthetic" else args.real_seeds))
        domains = setup["domains"]
        grid = static_grid(len(domains), args.grid, [setup["tokens"][d] for d in domains])
        if part == "synthetic" and args.grid_from:
            lines = [json.loads(x) for x in open(args.grid_from) if '"grid"' in x]
            best, scores = np.asarray(min(lines, key=lambda x: x["mean_excess"])["weights"]), []
        elif part == "synthetic":
            best, scores = select_best_static(cfg, setup, [100 + i for i in range(args.selection_seeds)], grid, log)
        else:
            best, scores = grid[0], []          # real part: no grid (cost); best_static = uniform
        results = []
        for s in seeds:
            for arm in arms:
                r = run_arm(part, arm, s, s, cfg, setup, best)
                results.append(r)
                log({"part": part, "arm": arm, "seed": s, **metrics(part, r, setup)})
            for j in range(1, args.nulls + 1):
                r = run_arm(part, "null", s, s + 1000 * j, cfg, setup)
                results.append(r)
                log({"part": part, "arm": "null", "seed": s, "draw": j, **metrics(part, r, setup)})
        if not ({"uniform", "best_static"} <= set(arms)):
            continue                     # a partial run: summarize the merged progress file instead
        summary = summarize(part, results, setup, arms, seeds)
        summary["best_static_weights"] = dict(zip(domains, np.round(best, 4).tolist()))
        summary["grid_scores"] = scores
        if part == "synthetic":
            summary["floors"], summary["unigram"] = setup["floors"], setup["unigram"]
        summary["table"] = markdown(part, summary, arms)
        report["parts"][part] = {"summary": summary, "results": results}
        print(summary["table"], flush=True)
    syn = report["parts"].get("synthetic", {}).get("summary")
    rl = report["parts"].get("real", {}).get("summary")
    if syn is not None:
        report["choice"] = choose_default(syn, rl)
    report["minutes"] = round((time.perf_counter() - began) / 60, 1)
    report["uptime_end"] = os.popen("uptime").read().strip()
    for path in filter(None, [os.path.join(args.out, "study.json"), args.json]):
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({"minutes": report["minutes"], "choice": report.get("choice")}))
    return 0


def plot(part: str, summary: dict, arms: list[str], folder: str) -> str:
    """Paired difference from uniform per arm (95 % interval) against the null band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(a, *summary["arms"][a]["vs_uniform"]) for a in arms if a != "uniform"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ys = np.arange(len(rows))
    for y, (a, m, lo, hi) in zip(ys, rows):
        ax.errorbar(m, y, xerr=[[m - lo], [hi - m]], fmt="o", color="C0" if a in RULE_ARMS else "C2", capsize=3)
    band = summary["null"]["band"]
    ax.axvspan(-band, band, color="0.85", label=f"null band ±{band:.3f}")
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(ys, [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{summary['primary']} minus uniform's (paired, 95 % interval)")
    ax.set_title(f"mixing study, {part} part ({len(summary['seeds'])} seeds)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = os.path.join(folder, f"mixing-study-rules-{part}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarize_progress(args) -> int:
    lines = [json.loads(x) for x in open(args.summarize) if x.strip()]
    arms = list(STATIC_ARMS + RULE_ARMS) if args.arms is None else args.arms
    report: dict = {"command": "benchmarks/mixing_study.py --summarize " + args.summarize, "parts": {},
                    "note": "rebuilt from the per-run lines; complete seeds only"}
    for part in ("synthetic", "real"):
        rows = [x for x in lines if x.get("part") == part]
        if not rows:
            continue
        seeds = sorted({r["seed"] for r in rows if all(any(x["arm"] == a and x["seed"] == r["seed"] for x in rows)
                                                       for a in arms)
                        and sum(x["arm"] == "null" and x["seed"] == r["seed"] for x in rows) >= 1})
        rows = [r for r in rows if r["seed"] in seeds]
        summary = summarize_rows(rows, arms, seeds)
        summary["seeds"] = seeds
        grid = [x for x in lines if "grid" in x]
        if part == "synthetic" and grid:
            best = min(grid, key=lambda x: x["mean_excess"])
            summary["best_static_weights"] = dict(zip(SYN_DOMAINS, best["weights"]))
            summary["grid"] = grid
        summary["table"] = markdown(part, summary, arms)
        report["parts"][part] = {"summary": summary, "rows": rows}
        print(f"## {part} ({len(seeds)} seeds)\n" + summary["table"], flush=True)
        if args.plot_dir:
            report.setdefault("plots", []).append(plot(part, summary, arms, args.plot_dir))
    syn = report["parts"].get("synthetic", {}).get("summary")
    if syn is not None:
        report["choice"] = choose_default(syn, report["parts"].get("real", {}).get("summary"))
    for path in filter(None, [args.json]):
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps({"choice": report.get("choice")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
