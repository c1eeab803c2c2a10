"""Does online data mixing help? A controlled study in two parts, each with paired seeds
and a null arm as the noise band.

    .venv/bin/python benchmarks/odm_study.py --domains both --seeds 0 1 2 --jobs 2 \\
        --out /tmp/odm-study --plot-dir docs/benchmarks

Part "synthetic": five domains on disjoint token ranges (16 ids each, sequences of 32
tokens), each with a floor (the lowest expected next-token loss any model can reach,
averaged over the 31 predicted positions) and a unigram loss (the entropy of the
domain's token distribution), both computed exactly from the generating process:

  copy   : 16 random tokens, then the same 16 again (induction)            learnable
  easy   : first-order Markov chain, each token has 2 likely successors    learnable
  hard   : second-order Markov chain: the successor depends on the last
           token and on the one before it (its value mod 2), 32 contexts
           with Dirichlet(0.3) successor distributions                     learnable, slowly
  noise  : iid uniform tokens: floor = unigram = ln 16                     nothing to learn
  tiny   : first-order Markov like easy, only 64 training sequences        learnable, repeated
                                                                           hundreds of times

Metric: excess validation loss (loss - floor) on held-out sequences, averaged over the
learnable domains ("all learnable": copy, easy, hard, tiny) and over the learnable
domains that are not repeated ("fresh": copy, easy, hard; a few epochs at most);
steps to reach the same-seed uniform arm's final value; the noise domain's sampling
share; epochs per domain.

Part "real": the seven domains of the real-text store that examples/train_tiny_gpt.py
builds from ../shared/data (news, web_hq, web_lq, legal, latin, cjk, other_scripts;
its build_stores, TinyGPT, sequence_losses and evaluate are imported, not copied),
with its held-out validation store. The floor is unknown there: the metric is the
validation loss per domain and its mean over the domains, minus the same-seed
uniform arm, and the steps to reach uniform's final mean. Each domain's unigram loss
(validation tokens under the training store's token frequencies) is given for scale.
Skipped, with a message, when ../shared/data is absent.

Arms (every part, every seed; the model initialisation is the same for all arms of a
seed): uniform, null (uniform with another draw seed: its distance from uniform is
the noise band), natural (by token count), paper (the paper's ODM rule), authors_code
(the rule of the authors' published code), progress (this project's learning-progress
reward). --arms paper_capped adds the paper rule with max_epochs=20 per domain.

The runs are spread over --jobs processes (torch with 1 thread each). Writes
<out>/<part>/<arm>-s<seed>.jsonl (MixLog), <out>/study.json, <out>/study.md (the
tables) and, with --plot-dir, mixing-study-excess.png, mixing-study-weights.png and
mixing-study-real.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.losses import per_domain_losses
from shammie.mixing.mixer import MixLog, OnlineDataMixer, StaticMixer

REPO = Path(__file__).resolve().parent.parent

V_DOMAIN = 16          # token ids per synthetic domain
SEQ = 32               # tokens per synthetic sequence (31 predicted positions)
HARD_CLASSES = 2       # hard: the token two back enters through its value mod 2
DOMAINS = ["copy", "easy", "hard", "noise", "tiny"]
TRAIN_SEQUENCES = {"copy": 1500, "easy": 3000, "hard": 3000, "noise": 3000, "tiny": 64}
LEARNABLE = ["copy", "easy", "hard", "tiny"]
FRESH = ["copy", "easy", "hard"]      # learnable and not repeated
ARMS = ("uniform", "null", "natural", "paper", "authors_code", "progress")
EXTRA_ARMS = ("paper_capped",)        # paper rule with max_epochs=20 per domain
ODM_ARMS = ("paper", "authors_code", "progress")


# -- the synthetic processes, their floors and unigram losses ----------------------

def _markov1(rng) -> np.ndarray:
    """Transition matrix where each token has two likely successors (0.7, 0.2) and the rest share 0.1."""
    p = np.full((V_DOMAIN, V_DOMAIN), 0.1 / (V_DOMAIN - 2))
    for a in range(V_DOMAIN):
        b, c = rng.choice(V_DOMAIN, 2, replace=False)
        p[a, b], p[a, c] = 0.7, 0.2
    return p


def _markov2(rng) -> np.ndarray:
    """p[a, b, :]: successor of (a, b), one Dirichlet(0.3) draw per (a mod HARD_CLASSES, b)."""
    table = rng.dirichlet(np.full(V_DOMAIN, 0.3), size=(HARD_CLASSES, V_DOMAIN))
    return table[np.arange(V_DOMAIN) % HARD_CLASSES]


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(p)).sum(-1)


class Process:
    """Samples sequences of one domain; knows its floor and unigram loss exactly."""

    def __init__(self, name: str, rng):
        self.name = name
        if name in ("easy", "tiny"):
            self.p1 = _markov1(rng)
        elif name == "hard":
            self.p1 = np.full((V_DOMAIN, V_DOMAIN), 1.0 / V_DOMAIN)   # position 1 given 0: uniform
            self.p2 = _markov2(rng)

    def sample(self, n: int, rng) -> np.ndarray:
        if self.name == "noise":
            return rng.integers(0, V_DOMAIN, (n, SEQ))
        if self.name == "copy":
            half = rng.integers(0, V_DOMAIN, (n, SEQ // 2))
            return np.concatenate([half, half], axis=1)
        out = np.empty((n, SEQ), dtype=np.int64)
        out[:, 0] = rng.integers(0, V_DOMAIN, n)
        for t in range(1, SEQ):
            probs = self.p2[out[:, t - 2], out[:, t - 1]] if self.name == "hard" and t >= 2 \
                else self.p1[out[:, t - 1]]
            cdf = probs.cumsum(1)
            out[:, t] = np.minimum((cdf < rng.random((n, 1))).sum(1), V_DOMAIN - 1)
        return out

    def floor_and_unigram(self) -> tuple[float, float]:
        """(floor, unigram), both per predicted position averaged over positions 1..31.
        floor: expected conditional entropy of the Bayes-optimal predictor, exact (the
        distribution of the preceding tokens propagated from the uniform start).
        unigram: entropy of the token distribution over all predicted positions, i.e. the
        loss of the best predictor that ignores the context."""
        n = SEQ - 1
        if self.name in ("noise", "copy"):
            h = math.log(V_DOMAIN)
            return (h if self.name == "noise" else (SEQ // 2 - 1) * h / n), h
        uniform = np.full(V_DOMAIN, 1.0 / V_DOMAIN)
        floors, marginals = [], []
        if self.name in ("easy", "tiny"):
            h1, m = _entropy(self.p1), uniform
            for _ in range(n):                        # m: distribution of the previous token
                floors.append(float(m @ h1))
                m = m @ self.p1
                marginals.append(m)
        else:
            joint = uniform[:, None] * self.p1        # (x_0, x_1)
            floors.append(float(uniform @ _entropy(self.p1)))
            marginals.append(joint.sum(0))
            h2 = _entropy(self.p2)                    # (a, b)
            for _ in range(n - 1):                    # joint: (x_{t-2}, x_{t-1}) -> (x_{t-1}, x_t)
                floors.append(float((joint * h2).sum()))
                joint = np.einsum("ab,abc->bc", joint, self.p2)
                marginals.append(joint.sum(0))
        q = np.mean(marginals, axis=0)
        return float(np.mean(floors)), float(_entropy(q))


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


@lru_cache(maxsize=1)
def synthetic_setup():
    """Processes, floors, unigram losses, training store and validation tensors: the same in every process."""
    rng = np.random.default_rng(1234)
    processes = {d: Process(d, rng) for d in DOMAINS}
    fu = {d: processes[d].floor_and_unigram() for d in DOMAINS}
    floors, unigram = {d: v[0] for d, v in fu.items()}, {d: v[1] for d, v in fu.items()}
    data_rng = np.random.default_rng(99)
    train = {d: processes[d].sample(TRAIN_SEQUENCES[d], data_rng) for d in DOMAINS}
    val = {d: torch.from_numpy(processes[d].sample(512, data_rng) + DOMAINS.index(d) * V_DOMAIN) for d in DOMAINS}
    return MemoryStore(train), val, floors, unigram


class SynthGPT(nn.Module):
    """Pre-norm transformer for the synthetic part (SEQ tokens, learned positions)."""

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


# -- the real store (examples/train_tiny_gpt.py) -----------------------------------

def tiny_gpt_example():
    """examples/train_tiny_gpt.py as a module (its data, model and evaluation are reused)."""
    sys.path.insert(0, str(REPO / "examples"))
    import train_tiny_gpt
    return train_tiny_gpt


def real_setup(out: str, vocab: int, seq_len: int) -> tuple[str, str] | None:
    """Train and validation stores built by the example, or None (with a message) without shared data."""
    ex = tiny_gpt_example()
    if not ex.SHARED.is_dir():
        print(f"real part skipped: the real text in {ex.SHARED} is absent here "
              "(set SHAMMIE_SHARED_DATA to that folder to run it)", flush=True)
        return None
    return ex.build_stores(Path(out) / "real-data", vocab, seq_len + 1)


def real_unigram(train_path: str, val_path: str, seq_len: int) -> dict[str, float]:
    """Per domain: mean loss on the validation store's predicted tokens of the unigram model
    fitted to that domain's training tokens (add-0.5 smoothing over the vocabulary)."""
    from shammie.mixing.store import open_store
    tr, va = open_store(train_path), open_store(val_path)
    out = {}
    for d in tr.domains:
        n = tr.num_sequences(d, seq_len + 1)
        toks = np.concatenate([tr.sequence(d, seq_len + 1, j) for j in range(n)]).astype(np.int64)
        counts = np.bincount(toks, minlength=tr.vocab_size) + 0.5
        logp = np.log(counts / counts.sum())
        m = va.num_sequences(d, seq_len + 1)
        vt = np.concatenate([va.sequence(d, seq_len + 1, j)[1:] for j in range(m)]).astype(np.int64)
        out[d] = float(-logp[vt].mean())
    return out


# -- the arms and the training loops ------------------------------------------------

def make_mixer(arm: str, store, seed: int):
    if arm in ("uniform", "natural"):
        return StaticMixer.from_store(store, arm, seed=seed)
    if arm == "null":
        return StaticMixer.from_store(store, "uniform", seed=seed + 10_000)
    if arm == "paper_capped":
        return OnlineDataMixer.from_store(store, reward="paper", seed=seed, max_epochs=20)
    return OnlineDataMixer.from_store(store, reward=arm, seed=seed)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine to 10 %."""
    return min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))


def train_synthetic(arm: str, seed: int, cfg: dict) -> dict:
    store, val, floors, _ = synthetic_setup()
    torch.manual_seed(seed)
    model = SynthGPT(len(DOMAINS) * V_DOMAIN, d=cfg["d_model"], layers=cfg["layers"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)
    mixer = make_mixer(arm, store, seed)
    data = MixtureDataset(store, mixer, SEQ, cfg["batch"])
    log_path = os.path.join(cfg["out"], "synthetic", f"{arm}-s{seed}.jsonl")
    if os.path.exists(log_path):
        os.unlink(log_path)
    log = MixLog(log_path, flush_every=200)
    batches = iter(data.dataloader())
    curve, noise_share, began = [], [], time.perf_counter()
    for step in range(1, cfg["steps"] + 1):
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * lr_factor(step, cfg["steps"], 100)
        b = next(batches)
        per_seq = model.loss_per_sequence(b["input_ids"])
        per_seq.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        rec = mixer.update(per_domain_losses(b["domain"], per_seq.detach()), step=b["step"])
        log.write(rec)
        noise_share.append(rec["weights"]["noise"])
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            model.eval()
            with torch.no_grad():
                losses = {d: float(model.loss_per_sequence(ids).mean()) for d, ids in val.items()}
            model.train()
            log.write_eval(step, losses)
            curve.append({"step": step, "loss": losses})
    log.close()
    last = mixer.last_record
    return {"part": "synthetic", "arm": arm, "seed": seed, "curve": curve, "log": log_path,
            "noise_share": float(np.mean(noise_share)), "epochs": last["epochs"],
            "share": {d: last["sequences"][d] / max(1, sum(last["sequences"].values())) for d in DOMAINS},
            "seconds": round(time.perf_counter() - began, 1)}


def train_real(arm: str, seed: int, cfg: dict) -> dict:
    from shammie.mixing.store import open_store
    ex = tiny_gpt_example()
    store, val = open_store(cfg["real_train"]), open_store(cfg["real_val"])
    seq = cfg["real_seq_len"]
    torch.manual_seed(seed)
    model = ex.TinyGPT(store.vocab_size, seq, d=cfg["real_d_model"], layers=cfg["real_layers"])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["real_lr"], weight_decay=0.1, betas=(0.9, 0.95))
    mixer = make_mixer(arm, store, seed)
    data = MixtureDataset(store, mixer, seq + 1, cfg["real_batch"])
    log_path = os.path.join(cfg["out"], "real", f"{arm}-s{seed}.jsonl")
    if os.path.exists(log_path):
        os.unlink(log_path)
    log = MixLog(log_path, flush_every=200)
    batches = iter(data.dataloader())
    steps, curve, began = cfg["real_steps"], [], time.perf_counter()
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = cfg["real_lr"] * lr_factor(step, steps, 30)
        b = next(batches)
        per_seq = ex.sequence_losses(model, b["input_ids"])
        per_seq.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        log.write(mixer.update(per_domain_losses(b["domain"], per_seq.detach()), step=b["step"]))
        if step % cfg["real_eval_every"] == 0 or step == steps:
            ev = ex.evaluate(model, val, seq + 1, cap=cfg["real_eval_cap"])
            log.write_eval(step, ev)
            curve.append({"step": step, "loss": {d: ev[d] for d in store.domains}, "mean": ev["mean"]})
    log.close()
    last = mixer.last_record
    return {"part": "real", "arm": arm, "seed": seed, "curve": curve, "log": log_path, "epochs": last["epochs"],
            "share": {d: last["sequences"][d] / max(1, sum(last["sequences"].values())) for d in store.domains},
            "seconds": round(time.perf_counter() - began, 1)}


def run_task(task: tuple[str, str, int, dict]) -> dict:
    part, arm, seed, cfg = task
    torch.set_num_threads(cfg["threads"])
    return (train_synthetic if part == "synthetic" else train_real)(arm, seed, cfg)


# -- summaries -----------------------------------------------------------------------

def steps_to_reach(points: list[tuple[int, float]], target: float) -> float | None:
    """First step where the value is <= target, interpolated between evaluations."""
    prev = None
    for step, value in points:
        if value <= target:
            if prev is None or prev[1] == value:
                return float(step)
            return round(prev[0] + (step - prev[0]) * (prev[1] - target) / (prev[1] - value), 1)
        prev = (step, value)
    return None


def compare(metric: dict[tuple[str, int], list[tuple[int, float]]], arms, seeds) -> dict:
    """Per arm: final value, minus same-seed uniform, steps to uniform's final, each per seed;
    the null band (largest |null - uniform| over seeds) and a verdict against it."""
    out = {}
    for arm in arms:
        finals = [metric[(arm, s)][-1][1] for s in seeds]
        diffs = [metric[(arm, s)][-1][1] - metric[("uniform", s)][-1][1] for s in seeds]
        out[arm] = {"final": [round(x, 4) for x in finals], "minus_uniform": [round(x, 4) for x in diffs],
                    "mean_minus_uniform": round(float(np.mean(diffs)), 4),
                    "steps_to_uniform_final": [steps_to_reach(metric[(arm, s)], metric[("uniform", s)][-1][1])
                                               for s in seeds]}
    band = max(abs(x) for x in out["null"]["minus_uniform"])
    for arm in arms:
        diffs = out[arm]["minus_uniform"]
        out[arm]["seeds_below_band"] = sum(x < -band for x in diffs)
        out[arm]["seeds_above_band"] = sum(x > band for x in diffs)
        m = out[arm]["mean_minus_uniform"]
        out[arm]["verdict"] = ("reference" if arm == "uniform" else "null arm" if arm == "null" else
                               "better than uniform beyond the null band" if m < -band else
                               "worse than uniform beyond the null band" if m > band else "within the null band")
    return {"null_band": round(band, 4), "arms": out}


def summarize_synthetic(results: list[dict], arms, seeds, floors, unigram) -> dict:
    by = {(r["arm"], r["seed"]): r for r in results}

    def metric(domains):
        return {k: [(c["step"], float(np.mean([c["loss"][d] - floors[d] for d in domains]))) for c in r["curve"]]
                for k, r in by.items()}
    per_domain = {arm: {d: [round(by[(arm, s)]["curve"][-1]["loss"][d], 4) for s in seeds] for d in DOMAINS}
                  for arm in arms}
    return {
        "floors": {d: round(v, 4) for d, v in floors.items()}, "unigram": {d: round(v, 4) for d, v in unigram.items()},
        "fresh": compare(metric(FRESH), arms, seeds), "all_learnable": compare(metric(LEARNABLE), arms, seeds),
        "final_val_loss": per_domain,
        "noise_share": {arm: [round(by[(arm, s)]["noise_share"], 3) for s in seeds] for arm in arms},
        "epochs": {arm: {d: [round(by[(arm, s)]["epochs"][d], 1) for s in seeds] for d in DOMAINS} for arm in arms},
        "seconds": {arm: [by[(arm, s)]["seconds"] for s in seeds] for arm in arms},
    }


def summarize_real(results: list[dict], arms, seeds, unigram) -> dict:
    by = {(r["arm"], r["seed"]): r for r in results}
    domains = sorted(results[0]["curve"][-1]["loss"])
    mean = {k: [(c["step"], c["mean"]) for c in r["curve"]] for k, r in by.items()}
    per_domain = {arm: {d: [round(by[(arm, s)]["curve"][-1]["loss"][d], 4) for s in seeds] for d in domains}
                  for arm in arms}
    domain_band = {d: round(max(abs(by[("null", s)]["curve"][-1]["loss"][d] - by[("uniform", s)]["curve"][-1]["loss"][d])
                                for s in seeds), 4) for d in domains}
    return {
        "domains": domains, "unigram": {d: round(v, 4) for d, v in unigram.items()},
        "mean": compare(mean, arms, seeds), "final_val_loss": per_domain, "per_domain_null_band": domain_band,
        "share": {arm: {d: round(float(np.mean([by[(arm, s)]["share"][d] for s in seeds])), 3) for d in domains}
                  for arm in arms},
        "epochs": {arm: {d: [round(by[(arm, s)]["epochs"][d], 2) for s in seeds] for d in domains} for arm in arms},
        "seconds": {arm: [by[(arm, s)]["seconds"] for s in seeds] for arm in arms},
    }


def _fmt(xs, nd=3, sign=False):
    return " / ".join(("{:+.%df}" % nd if sign else "{:.%df}" % nd).format(x) for x in xs)


def _steps(xs):
    return " / ".join("never" if x is None else f"{x:.0f}" for x in xs)


def _verdict(c, arm):
    """Mean difference to uniform, how many seeds lie below / above the null band, and the verdict on the mean."""
    a = c["arms"][arm]
    if arm in ("uniform", "null"):
        return "-"
    word = {"better than uniform beyond the null band": "**better**", "worse than uniform beyond the null band":
            "**worse**", "within the null band": "within band"}[a["verdict"]]
    n = len(a["minus_uniform"])
    return f"{a['mean_minus_uniform']:+.3f}: {word} ({a['seeds_below_band']}/{n} below, {a['seeds_above_band']}/{n} above)"


def markdown(summary: dict, arms, seeds) -> str:
    lines = []
    if "synthetic" in summary:
        s = summary["synthetic"]
        f, a = s["fresh"], s["all_learnable"]
        lines += [f"### Synthetic domains (seeds {' / '.join(map(str, seeds))})", "",
                  f"Null band: fresh ±{f['null_band']:.3f}, all learnable ±{a['null_band']:.3f} nats.", "",
                  "| arm | fresh excess | fresh minus uniform | mean, vs null band | steps to uniform's final (fresh) "
                  "| all-learnable excess | all minus uniform | mean, vs null band | noise share |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for arm in arms:
            fa, aa = f["arms"][arm], a["arms"][arm]
            lines.append(f"| {arm} | {_fmt(fa['final'])} | {'-' if arm == 'uniform' else _fmt(fa['minus_uniform'], sign=True)} "
                         f"| {_verdict(f, arm)} | {_steps(fa['steps_to_uniform_final'])} | {_fmt(aa['final'])} "
                         f"| {'-' if arm == 'uniform' else _fmt(aa['minus_uniform'], sign=True)} | {_verdict(a, arm)} "
                         f"| {_fmt(s['noise_share'][arm], 2)} |")
        lines += ["", "Final validation loss per domain (mean over seeds) and epochs (min-max over seeds):", "",
                  "| arm | " + " | ".join(DOMAINS) + " | epochs " + " / ".join(DOMAINS) + " |",
                  "|---|" + "---|" * (len(DOMAINS) + 1)]
        lines.append("| floor | " + " | ".join(f"{s['floors'][d]:.3f}" for d in DOMAINS) + " | |")
        lines.append("| unigram | " + " | ".join(f"{s['unigram'][d]:.3f}" for d in DOMAINS) + " | |")
        for arm in arms:
            ep = s["epochs"][arm]
            lines.append(f"| {arm} | " + " | ".join(f"{np.mean(s['final_val_loss'][arm][d]):.3f}" for d in DOMAINS)
                         + " | " + " / ".join(f"{min(ep[d]):.0f}-{max(ep[d]):.0f}" if min(ep[d]) >= 10
                                             else f"{min(ep[d]):.1f}-{max(ep[d]):.1f}" for d in DOMAINS) + " |")
        lines.append("")
    if "real" in summary:
        r = summary["real"]
        m = r["mean"]
        doms = r["domains"]
        lines += [f"### Real store domains (seeds {' / '.join(map(str, seeds))})", "",
                  f"Null band (mean over domains): ±{m['null_band']:.3f} nats.", "",
                  "| arm | mean val loss | minus uniform | mean, vs null band | steps to uniform's final |",
                  "|---|---|---|---|---|"]
        for arm in arms:
            ma = m["arms"][arm]
            lines.append(f"| {arm} | {_fmt(ma['final'])} | {'-' if arm == 'uniform' else _fmt(ma['minus_uniform'], sign=True)} "
                         f"| {_verdict(m, arm)} | {_steps(ma['steps_to_uniform_final'])} |")
        lines += ["", "Final validation loss per domain, mean over seeds (arms: minus uniform), and sampling share:", "",
                  "| arm | " + " | ".join(doms) + " |", "|---|" + "---|" * len(doms)]
        lines.append("| unigram | " + " | ".join(f"{r['unigram'][d]:.3f}" for d in doms) + " |")
        u = {d: np.mean(r["final_val_loss"]["uniform"][d]) for d in doms}
        lines.append("| uniform | " + " | ".join(f"{u[d]:.3f}" for d in doms) + " |")
        lines.append("| null band | " + " | ".join(f"±{r['per_domain_null_band'][d]:.3f}" for d in doms) + " |")
        for arm in arms:
            if arm == "uniform":
                continue
            lines.append(f"| {arm} | " + " | ".join(
                f"{np.mean(r['final_val_loss'][arm][d]) - u[d]:+.3f} ({r['share'][arm][d]:.2f})" for d in doms) + " |")
        lines += ["", "Epochs per domain (mean over seeds):", "", "| arm | " + " | ".join(doms) + " |",
                  "|---|" + "---|" * len(doms)]
        for arm in arms:
            lines.append(f"| {arm} | " + " | ".join(f"{np.mean(r['epochs'][arm][d]):.2f}" for d in doms) + " |")
        lines.append("")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------

def plot(summary: dict, results: list[dict], arms, seeds, plot_dir: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from shammie.mixing.mixer import read_log
    colors = {arm: plt.get_cmap("tab10")(i) for i, arm in enumerate(ARMS + EXTRA_ARMS)}
    paths = []
    syn = [r for r in results if r["part"] == "synthetic"]
    if syn:
        floors = summary["synthetic"]["floors"]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for ax, (title, doms) in zip(axes, (("fresh: copy, easy, hard", FRESH), ("all learnable: + tiny", LEARNABLE),
                                            ("hard only", ["hard"]))):
            for r in syn:
                xs = [c["step"] for c in r["curve"]]
                ys = [np.mean([c["loss"][d] - floors[d] for d in doms]) for c in r["curve"]]
                ax.plot(xs, ys, color=colors[r["arm"]], lw=1.1, alpha=0.8, ls="--" if r["arm"] == "null" else "-",
                        label=r["arm"] if r["seed"] == seeds[0] else None)
            ax.set_title(f"mean excess val loss, {title}")
            ax.set_xlabel("step")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        u = summary["synthetic"]["unigram"]["hard"] - floors["hard"]
        axes[2].axhline(u, color="grey", lw=0.8)
        axes[2].text(0.01, u, "unigram loss of hard", va="bottom", fontsize=8, transform=axes[2].get_yaxis_transform())
        axes[0].set_ylabel("nats above the floor")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"ODM study, synthetic domains: {len(seeds)} paired seeds")
        fig.tight_layout()
        paths.append(os.path.join(plot_dir, "mixing-study-excess.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
        odm = [a for a in ODM_ARMS if a in arms]
        fig, axes = plt.subplots(1, len(odm), figsize=(4.7 * len(odm), 3.8), sharey=True, squeeze=False)
        for ax, arm in zip(axes[0], odm):
            log = next(r["log"] for r in syn if r["arm"] == arm and r["seed"] == seeds[0])
            recs = [x for x in read_log(log) if x.get("kind") == "train"]
            for i, d in enumerate(DOMAINS):
                ax.plot([x["step"] for x in recs], [x["weights"][d] for x in recs], label=d, lw=1,
                        color="black" if d == "noise" else plt.get_cmap("viridis")(i / 4), ls="--" if d == "noise" else "-")
            ax.set_title(f"{arm} (seed {seeds[0]})")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("sampling probability")
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(plot_dir, "mixing-study-weights.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    real = [r for r in results if r["part"] == "real"]
    if real:
        by = {(r["arm"], r["seed"]): r for r in real}
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5))
        for r in real:
            u = by[("uniform", r["seed"])]
            xs = [c["step"] for c in r["curve"]]
            ax.plot(xs, [c["mean"] - cu["mean"] for c, cu in zip(r["curve"], u["curve"])], color=colors[r["arm"]],
                    lw=1.1, alpha=0.8, ls="--" if r["arm"] == "null" else "-",
                    label=r["arm"] if r["seed"] == seeds[0] else None)
        band = summary["real"]["mean"]["null_band"]
        ax.axhspan(-band, band, color="grey", alpha=0.2, label="null band (final)")
        ax.set_xlabel("step")
        ax.set_ylabel("mean val loss minus same-seed uniform (nats)")
        ax.set_title("real store domains")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        doms = summary["real"]["domains"]
        bottom = np.zeros(len(arms))
        for i, d in enumerate(doms):
            vals = np.array([summary["real"]["share"][arm][d] for arm in arms])
            bx.bar(list(arms), vals, bottom=bottom, label=d, color=plt.get_cmap("tab20")(i))
            bottom += vals
        bx.set_ylabel("share of sampled sequences (mean over seeds)")
        bx.legend(fontsize=8, bbox_to_anchor=(1.0, 1.0), loc="upper left")
        fig.tight_layout()
        paths.append(os.path.join(plot_dir, "mixing-study-real.png"))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", choices=["synthetic", "real", "both"], default="both")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS + EXTRA_ARMS)
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (processes)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--out", default="/tmp/odm-study")
    ap.add_argument("--plot-dir", default=None, help="folder for the PNGs (e.g. docs/benchmarks)")
    g = ap.add_argument_group("synthetic part")
    g.add_argument("--steps", type=int, default=2000)
    g.add_argument("--batch", type=int, default=32)
    g.add_argument("--lr", type=float, default=6e-3)
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--layers", type=int, default=2)
    g.add_argument("--eval-every", type=int, default=100)
    g = ap.add_argument_group("real part (model and data of examples/train_tiny_gpt.py)")
    g.add_argument("--real-steps", type=int, default=650)
    g.add_argument("--real-batch", type=int, default=16)
    g.add_argument("--real-lr", type=float, default=6e-3)
    g.add_argument("--real-d-model", type=int, default=64)
    g.add_argument("--real-layers", type=int, default=2)
    g.add_argument("--real-seq-len", type=int, default=64)
    g.add_argument("--real-vocab", type=int, default=3072)
    g.add_argument("--real-eval-every", type=int, default=50)
    g.add_argument("--real-eval-cap", type=int, default=64, help="validation sequences per domain")
    args = ap.parse_args(argv)
    arms = list(dict.fromkeys(args.arms))
    for need in ("uniform", "null"):
        if need not in arms:
            ap.error(f"--arms must include {need} (the reference and the noise band)")
    began = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    cfg = {k: v for k, v in vars(args).items() if k not in ("arms", "seeds", "domains", "plot_dir")}
    parts = ["synthetic", "real"] if args.domains == "both" else [args.domains]
    summary: dict = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "seeds": args.seeds,
                     "arms": arms, "config": cfg}
    tasks = []
    if "real" in parts:
        from shammie.mixing.store_format import StoreError
        from shammie.pipeline.errors import UserError
        try:
            stores = real_setup(args.out, args.real_vocab, args.real_seq_len)
        except (UserError, StoreError) as e:
            print(f"real part skipped: cannot build the stores: {e}", file=sys.stderr, flush=True)
            stores = None
        if stores is None:
            parts.remove("real")
        else:
            cfg["real_train"], cfg["real_val"] = stores
            os.makedirs(os.path.join(args.out, "real"), exist_ok=True)
            tasks += [("real", arm, s, cfg) for s in args.seeds for arm in arms]
    if "synthetic" in parts:
        os.makedirs(os.path.join(args.out, "synthetic"), exist_ok=True)
        tasks += [("synthetic", arm, s, cfg) for s in args.seeds for arm in arms]
    if not tasks:
        print("nothing to run")
        return 0
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_task, t) for t in tasks]
        for fut in as_completed(futures):
            r = fut.result()
            results.append(r)
            last = r["curve"][-1]
            print(json.dumps({"part": r["part"], "arm": r["arm"], "seed": r["seed"], "seconds": r["seconds"],
                              "final": {d: round(v, 3) for d, v in last["loss"].items()},
                              "minutes_so_far": round((time.perf_counter() - began) / 60, 1)}), flush=True)
    results.sort(key=lambda r: (r["part"], arms.index(r["arm"]), r["seed"]))
    if "synthetic" in parts:
        _, _, floors, unigram = synthetic_setup()
        summary["synthetic"] = summarize_synthetic([r for r in results if r["part"] == "synthetic"],
                                                   arms, args.seeds, floors, unigram)
    if "real" in parts:
        summary["real"] = summarize_real([r for r in results if r["part"] == "real"], arms, args.seeds,
                                         real_unigram(cfg["real_train"], cfg["real_val"], args.real_seq_len))
    summary["minutes"] = round((time.perf_counter() - began) / 60, 1)
    table = markdown(summary, arms, args.seeds)
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write(table)
    if args.plot_dir:
        summary["plots"] = plot(summary, results, arms, args.seeds, args.plot_dir)
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump({**summary, "results": results}, f)
    print(table)
    print(json.dumps({"minutes": summary["minutes"], "out": args.out, "plots": summary.get("plots", [])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
