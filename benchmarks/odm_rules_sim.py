"""Simulated weight trajectories of each ODM learning rule (no model, no data).

    .venv/bin/python benchmarks/odm_rules_sim.py [--steps 50000] [--out docs/benchmarks]

Feeds `OnlineDataMixer` the loss of the domain it drew, step after step (lag 0,
one domain per step, loss noise sd 0.05), for the rules "paper", "authors_code",
"smoothed_mean" and "progress", in three scenarios with 7 domains:

* fixed: constant losses 2.0, 2.5, ..., 5.0;
* drifting: losses fall with the step at different paces (time constants 2k-20k
  steps) towards different floors, whether or not the domain is drawn;
* learning: a domain's loss falls with the number of times it was drawn (the model
  learns from what it sees); the last domain is iid noise, loss flat at 6.0.

Writes mixing-rules-<scenario>.png (one panel per rule) to --out and prints a JSON
summary: per scenario and rule, the final weights, their spread, and the noise
domain's mean share over the second half.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from shammie.mixing.mixer import OnlineDataMixer

RULES = ("paper", "authors_code", "smoothed_mean", "progress")
DOMAINS = [f"d{i}" for i in range(6)] + ["noise"]


def loss_of(scenario: str, i: int, t: int, drawn: np.ndarray, rng) -> float:
    noise = rng.normal(0.0, 0.05)
    if scenario == "fixed":
        return 2.0 + 0.5 * i + noise
    if i == 6 and scenario == "learning":
        return 6.0 + noise
    floor, start = 1.5 + 0.4 * i, 6.0 + 0.3 * i
    if scenario == "drifting":
        pace = 2000.0 + 3000.0 * i
        return floor + (start - floor) * math.exp(-t / pace) + noise
    pace = 300.0 + 300.0 * i                 # learning: by draws of this domain
    return floor + (start - floor) * math.exp(-drawn[i] / pace) + noise


def simulate(rule: str, scenario: str, steps: int, seed: int = 0, every: int = 50):
    # the rule alone: no budgets, no flat-loss guard (their effect is the study's, docs/benchmarks section 0)
    m = OnlineDataMixer(DOMAINS, rule=rule, lag=0, seed=seed, max_share=None, max_epochs=None, flat_guard=False)
    rng = np.random.default_rng(seed)
    drawn = np.zeros(len(DOMAINS))
    xs, ws, noise_share = [], [], []
    for t in range(1, steps + 1):
        d = m.sample()[0]
        i = DOMAINS.index(d)
        rec = m.update({d: max(0.0, loss_of(scenario, i, t, drawn, rng))})
        drawn[i] += 1
        if t > steps // 2:
            noise_share.append(rec["weights"]["noise"])
        if t % every == 0 or t == 1:
            xs.append(t)
            ws.append([rec["weights"][x] for x in DOMAINS])
    final = m.weights()
    return np.array(xs), np.array(ws), {
        "final_weights": {d: round(w, 4) for d, w in final.items()},
        "spread": round(max(final.values()) - min(final.values()), 4),
        "noise_share_2nd_half": round(float(np.mean(noise_share)), 4),
        "epochs_like_draws": {d: int(n) for d, n in zip(DOMAINS, drawn)},
    }


def plot(scenario: str, results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(RULES), figsize=(4.2 * len(RULES), 3.8), sharey=True)
    for ax, rule in zip(axes, RULES):
        xs, ws, _ = results[rule]
        for j, d in enumerate(DOMAINS):
            ax.plot(xs, ws[:, j], lw=1.1, label=d, color="black" if d == "noise" else plt.get_cmap("viridis")(j / 6),
                    ls="--" if d == "noise" else "-")
        ax.axhline(1 / len(DOMAINS), color="grey", lw=0.6, ls=":")
        ax.set_title(rule)
        ax.set_xlabel("step")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("sampling probability")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"ODM rules, simulated losses: {scenario}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "benchmarks"))
    ap.add_argument("--scenarios", nargs="+", default=["fixed", "drifting", "learning"])
    args = ap.parse_args(argv)
    summary = {}
    began = time.perf_counter()
    for scenario in args.scenarios:
        results = {rule: simulate(rule, scenario, args.steps) for rule in RULES}
        path = os.path.join(args.out, f"mixing-rules-{scenario}.png")
        plot(scenario, results, path)
        summary[scenario] = {rule: r[2] for rule, r in results.items()}
        summary[scenario]["plot"] = os.path.relpath(path)
    summary["seconds"] = round(time.perf_counter() - began, 1)
    summary["steps"] = args.steps
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
