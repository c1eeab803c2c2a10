"""Does online data mixing help? A small controlled study on synthetic domains with
known entropy floors.

    .venv/bin/python benchmarks/odm_study.py [--seeds 0 1 2] [--steps 2000] [--out /tmp/odm-study]

Domains (disjoint token ranges of 16 ids each, sequences of 32 tokens), each with a
known floor: the lowest expected next-token loss any model can reach, per predicted
position, computed exactly from the generating process:

  easy   : first-order Markov chain, each token has 2 likely successors   (learnable)
  hard   : second-order Markov chain (successor depends on the last 2)    (learnable)
  copy   : 16 random tokens, then the same 16 again (induction)           (learnable)
  noise  : iid uniform tokens: floor = unigram = ln 16, nothing to learn  (unlearnable)
  tiny   : first-order Markov like easy, but only 24 training sequences   (learnable, repeats)

Arms, each trained from the same initialisation per seed (paired): uniform, natural
(by token count), ODM "paper", "authors_code", "progress", and a null arm (uniform
with another draw seed), whose distance from uniform is the noise band. Optional
(--arms paper_capped): the paper rule with max_epochs=20 per domain.

Metric: mean excess validation loss (loss - floor) over the learnable domains, every
--eval-every steps on held-out sequences; steps to reach the uniform arm's final
value (same seed); the noise domain's mean sampling share and epochs per domain.
Writes <out>/<arm>-s<seed>.jsonl (MixLog), <out>/study.json, and with --plot-dir the
plots mixing-study-excess.png and mixing-study-weights.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.mixer import MixLog, OnlineDataMixer, StaticMixer, per_domain_losses

V_DOMAIN = 16          # token ids per domain
SEQ = 32               # tokens per sequence (31 predicted positions)
DOMAINS = ["copy", "easy", "hard", "noise", "tiny"]
TRAIN_SEQUENCES = {"easy": 3000, "hard": 3000, "copy": 1500, "noise": 3000, "tiny": 24}
LEARNABLE = ["copy", "easy", "hard", "tiny"]
ARMS = ("uniform", "null", "natural", "paper", "authors_code", "progress")
EXTRA_ARMS = ("paper_capped",)   # paper rule with max_epochs=20 per domain (only the tiny domain reaches it)


# -- the synthetic processes and their floors ---------------------------------------

def _markov1(rng) -> np.ndarray:
    """Transition matrix where each token has two likely successors (0.7, 0.2) and the rest share 0.1."""
    p = np.full((V_DOMAIN, V_DOMAIN), 0.1 / (V_DOMAIN - 2))
    for a in range(V_DOMAIN):
        b, c = rng.choice(V_DOMAIN, 2, replace=False)
        p[a, b], p[a, c] = 0.7, 0.2
    return p


def _markov2(rng) -> np.ndarray:
    """p[a, b, :]: successor of the pair (a, b), Dirichlet(0.3): sparse but many parameters."""
    return rng.dirichlet(np.full(V_DOMAIN, 0.3), size=(V_DOMAIN, V_DOMAIN))


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p)).sum(-1)


class Process:
    """Samples sequences of one domain and knows its expected loss floor per predicted position."""

    def __init__(self, name: str, rng):
        self.name = name
        if name in ("easy", "tiny"):
            self.p1 = _markov1(rng)
        elif name == "hard":
            self.p1 = np.full((V_DOMAIN, V_DOMAIN), 1.0 / V_DOMAIN)
            self.p2 = _markov2(rng)

    def sample(self, n: int, rng) -> np.ndarray:
        out = np.empty((n, SEQ), dtype=np.int64)
        if self.name == "noise":
            return rng.integers(0, V_DOMAIN, (n, SEQ))
        if self.name == "copy":
            half = rng.integers(0, V_DOMAIN, (n, SEQ // 2))
            return np.concatenate([half, half], axis=1)
        out[:, 0] = rng.integers(0, V_DOMAIN, n)
        for t in range(1, SEQ):
            if self.name == "hard" and t >= 2:
                probs = self.p2[out[:, t - 2], out[:, t - 1]]
            else:
                probs = self.p1[out[:, t - 1]]
            cdf = probs.cumsum(1)
            out[:, t] = np.minimum((cdf < rng.random((n, 1))).sum(1), V_DOMAIN - 1)
        return out

    def floor(self, rng) -> float:
        """Expected loss of the Bayes-optimal predictor, averaged over the 31 predicted positions.
        Markov chains: exact conditional entropies, averaged over a large sample of the
        preceding tokens (the start is uniform, so early positions are not stationary)."""
        if self.name == "noise":
            return math.log(V_DOMAIN)
        if self.name == "copy":
            return (SEQ // 2 - 1) * math.log(V_DOMAIN) / (SEQ - 1)   # second half is determined
        seqs = self.sample(20000, rng)
        h1 = _entropy(self.p1)
        total = h1[seqs[:, 0]].mean()                                # position 1 given position 0
        for t in range(2, SEQ):
            if self.name == "hard":
                total += _entropy(self.p2[seqs[:, t - 2], seqs[:, t - 1]]).mean()
            else:
                total += h1[seqs[:, t - 1]].mean()
        return float(total / (SEQ - 1))


class MemoryStore:
    """The store interface MixtureDataset needs, over in-memory sequences (token ids offset per domain)."""

    def __init__(self, data: dict[str, np.ndarray]):
        self.domains = sorted(data)
        self._flat = {d: (data[d] + self.domains.index(d) * V_DOMAIN).reshape(-1) for d in self.domains}

    def num_tokens(self, d):
        return len(self._flat[d])

    def num_sequences(self, d, seq_len):
        return len(self._flat[d]) // seq_len

    def sequence(self, d, seq_len, j):
        return self._flat[d][j * seq_len:(j + 1) * seq_len]


# -- the model --------------------------------------------------------------------

class TinyGPT(nn.Module):
    def __init__(self, vocab: int, d: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(SEQ, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)   # no padding here
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(SEQ - 1), persistent=False)

    def loss_per_sequence(self, ids: torch.Tensor) -> torch.Tensor:
        x, y = ids[:, :-1], ids[:, 1:]
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        h = self.blocks(h, mask=self.mask, is_causal=True)
        logits = self.head(h)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        return loss.view(y.shape).mean(1)


def make_mixer(arm: str, store, seed: int):
    if arm in ("uniform", "natural"):
        return StaticMixer.from_store(store, arm, seed=seed)
    if arm == "null":
        return StaticMixer.from_store(store, "uniform", seed=seed + 10_000)
    if arm == "paper_capped":
        return OnlineDataMixer.from_store(store, reward="paper", seed=seed, max_epochs=20)
    return OnlineDataMixer.from_store(store, reward=arm, seed=seed)


def evaluate(model, val: dict[str, torch.Tensor]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        out = {d: float(model.loss_per_sequence(ids).mean()) for d, ids in val.items()}
    model.train()
    return out


def train_arm(arm: str, seed: int, args, store, val, floors) -> dict:
    torch.manual_seed(seed)
    model = TinyGPT(len(DOMAINS) * V_DOMAIN)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))))
    mixer = make_mixer(arm, store, seed)
    data = MixtureDataset(store, mixer, SEQ, args.batch)
    log = MixLog(os.path.join(args.out, f"{arm}-s{seed}.jsonl"), flush_every=200)
    if os.path.exists(log.path):
        os.unlink(log.path)
    batches = iter(data.dataloader())
    curve, shares = [], []
    for step in range(1, args.steps + 1):
        b = next(batches)
        per_seq = model.loss_per_sequence(b["input_ids"])
        per_seq.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        rec = mixer.update(per_domain_losses(b["domain"], per_seq.detach()), step=b["step"])
        log.write(rec)
        shares.append(rec["weights"]["noise"])
        if step % args.eval_every == 0 or step == args.steps:
            losses = evaluate(model, val)
            excess = {d: losses[d] - floors[d] for d in DOMAINS}
            mean_excess = float(np.mean([excess[d] for d in LEARNABLE]))
            log.write_eval(step, {**losses, "mean_excess": mean_excess})
            curve.append((step, mean_excess, excess))
    log.close()
    return {"arm": arm, "seed": seed, "curve": curve, "noise_share": float(np.mean(shares)),
            "epochs": mixer.last_record["epochs"], "final_weights": mixer.last_record["weights"]}


def steps_to_reach(curve, target: float) -> float | None:
    """First step where the mean excess loss is <= target, interpolated between evaluations."""
    prev = None
    for step, value, _ in curve:
        if value <= target:
            if prev is None:
                return float(step)
            (s0, v0) = prev
            return float(s0 + (step - s0) * (v0 - target) / (v0 - value)) if v0 != value else float(step)
        prev = (step, value)
    return None


def summarize(results: list[dict], seeds) -> dict:
    by = {(r["arm"], r["seed"]): r for r in results}
    table = {}
    for arm in ARMS:
        finals, diffs, reach, noise, epochs = [], [], [], [], []
        for s in seeds:
            r, u = by[(arm, s)], by[("uniform", s)]
            finals.append(r["curve"][-1][1])
            diffs.append(r["curve"][-1][1] - u["curve"][-1][1])
            reach.append(steps_to_reach(r["curve"], u["curve"][-1][1]))
            noise.append(r["noise_share"])
            epochs.append(r["epochs"])
        table[arm] = {
            "final_mean_excess": [round(x, 4) for x in finals],
            "minus_uniform": [round(x, 4) for x in diffs],
            "mean_minus_uniform": round(float(np.mean(diffs)), 4),
            "steps_to_uniform_final": reach,
            "noise_share": [round(x, 3) for x in noise],
            "epochs": {d: [round(e[d], 2) for e in epochs] for d in DOMAINS},
            "final_excess_per_domain": {d: [round(by[(arm, s)]["curve"][-1][2][d], 3) for s in seeds] for d in DOMAINS},
        }
    band = max(abs(x) for x in table["null"]["minus_uniform"])
    for arm in ARMS:
        d = table[arm]["mean_minus_uniform"]
        table[arm]["verdict"] = ("reference" if arm == "uniform" else "null arm" if arm == "null" else
                                 "better than uniform beyond the null band" if d < -band else
                                 "worse than uniform beyond the null band" if d > band else "within the null band")
    return {"null_band": round(band, 4), "arms": table}


def plot(results, seeds, plot_dir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {arm: plt.get_cmap("tab10")(i) for i, arm in enumerate(ARMS)}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        xs = [c[0] for c in r["curve"]]
        ys = [c[1] for c in r["curve"]]
        ax.plot(xs, ys, color=colors[r["arm"]], lw=1.1, alpha=0.8,
                label=r["arm"] if r["seed"] == seeds[0] else None, ls="--" if r["arm"] == "null" else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("mean excess val loss, learnable domains (nats)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"ODM study: {len(seeds)} paired seeds")
    fig.tight_layout()
    paths = [os.path.join(plot_dir, "mixing-study-excess.png")]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    from shammie.mixing.mixer import read_log
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, arm in zip(axes, ("paper", "authors_code", "progress")):
        recs = [x for x in read_log(os.path.join(os.path.dirname(results[0]["log"]), f"{arm}-s{seeds[0]}.jsonl"))
                if x.get("kind") == "train"]
        for i, d in enumerate(DOMAINS):
            ax.plot([x["step"] for x in recs], [x["weights"][d] for x in recs], label=d,
                    color="black" if d == "noise" else plt.get_cmap("viridis")(i / 4), ls="--" if d == "noise" else "-")
        ax.set_title(f"{arm} (seed {seeds[0]})")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("sampling probability")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(plot_dir, "mixing-study-weights.png"))
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS + EXTRA_ARMS)
    ap.add_argument("--out", default="/tmp/odm-study")
    ap.add_argument("--plot-dir", default=None, help="folder for the PNGs (e.g. docs/benchmarks)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(1234)                  # the processes are the same in every run
    processes = {d: Process(d, rng) for d in DOMAINS}
    floors = {d: processes[d].floor(np.random.default_rng(7)) for d in DOMAINS}
    data_rng = np.random.default_rng(99)
    train = {d: processes[d].sample(TRAIN_SEQUENCES[d], data_rng) for d in DOMAINS}
    val = {d: torch.from_numpy(processes[d].sample(256, data_rng) + DOMAINS.index(d) * V_DOMAIN) for d in DOMAINS}
    store = MemoryStore(train)
    unigram = {d: math.log(V_DOMAIN) for d in DOMAINS}
    began = time.perf_counter()
    results = []
    for seed in args.seeds:
        for arm in args.arms:
            t = time.perf_counter()
            r = train_arm(arm, seed, args, store, val, floors)
            r["log"] = os.path.join(args.out, f"{arm}-s{seed}.jsonl")
            r["seconds"] = round(time.perf_counter() - t, 1)
            results.append(r)
            print(json.dumps({"arm": arm, "seed": seed, "final_mean_excess": round(r["curve"][-1][1], 4),
                              "noise_share": round(r["noise_share"], 3), "seconds": r["seconds"]}), flush=True)
    out = {"floors": {d: round(v, 4) for d, v in floors.items()}, "unigram": round(unigram["easy"], 4),
           "steps": args.steps, "batch": args.batch, "seeds": args.seeds,
           "minutes": round((time.perf_counter() - began) / 60, 1)}
    if set(args.arms) == set(ARMS):
        out.update(summarize(results, args.seeds))
    out["final_val_loss"] = {f"{r['arm']}-s{r['seed']}": {d: round(r["curve"][-1][2][d] + floors[d], 3)
                                                        for d in DOMAINS} for r in results}
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump({**out, "results": [{k: v for k, v in r.items()} for r in results]}, f)
    if args.plot_dir and set(args.arms) == set(ARMS):
        out["plots"] = plot(results, args.seeds, args.plot_dir)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
