"""Train a tiny GPT (torch, CPU) on a shard store built from real text, with Online
Data Mixing (ODM), a uniform mixture or the natural (token-count) mixture.

    .venv/bin/python examples/train_tiny_gpt.py --mixer odm --seed 0
    .venv/bin/python examples/train_tiny_gpt.py --compare --seeds 0 1 2    # all three mixers, several seeds
    .venv/bin/python examples/train_tiny_gpt.py --store STORE --max-steps 200 --grad-accum 4 --log odm.jsonl

With --store the loop trains on that store as it is (no validation store, no data
preparation); the flags --store/--max-steps/--grad-accum/--log are the same as in
examples/hf_trainer.py and examples/lightning_trainer.py. With --grad-accum K every
optimizer step consumes K micro-batches (the mixer draws each one) and calls
mixer.update() once, with the per-domain losses of all K.

Data: ../shared/data (real third-party text; the script explains and stops when it
is absent). Seven domains: news articles, DCLM web pages rated high / low quality
by humans, FineWeb pages scored for legal content, and Leipzig-corpus sentences in
Latin-script, CJK and other-script languages. 10% of each domain's documents are
held out as a validation store tokenized with the training store's tokenizer.

Writes to --out: `<mixer>-s<seed>.jsonl` (MixLog: weights and per-domain losses),
`report/` (PNGs through `shammie mix report`), and with --compare `summary.json`
with, per seed, the step at which each mixer first reaches the uniform run's final
validation loss.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shammie.mixing.dataset import MixtureDataset
from shammie.mixing.losses import DomainLossAccumulator
from shammie.mixing.losses import sequence_losses as token_mean_losses
from shammie.mixing.losses import unpack_batch
from shammie.mixing.mixer import MixLog, OnlineDataMixer, StaticMixer

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------- data

def real_documents(shared: Path) -> dict[str, list[str]]:
    """Real text from ../shared/data, one list of documents per domain."""
    docs: dict[str, list[str]] = {}
    truth = json.loads((shared / "html/article-extraction-benchmark/ground-truth.json").read_text())
    docs["news"] = [v["articleBody"] for _, v in sorted(truth.items()) if v.get("articleBody")]
    for line in (shared / "labels/dclm-human-quality-agreement.jsonl").read_text().splitlines():
        row = json.loads(line)
        docs.setdefault("web_hq" if row["label"] == 1 else "web_lq", []).append(row["text"])
    import pyarrow.parquet as pq
    docs["legal"] = pq.read_table(shared / "labels/fineweb-llm-scored-legal-1.parquet").column("text").to_pylist()
    scripts = {"latin": "en de fr es it nl pt", "cjk": "zh ja", "other_scripts": "ar ru hi"}
    for domain, langs in scripts.items():
        for lang in langs.split():
            lines = (shared / f"lid/{lang}.txt").read_text(encoding="utf-8").splitlines()
            docs.setdefault(domain, []).extend(" ".join(lines[i:i + 10]) for i in range(0, len(lines), 10))
    return {d: [t for t in texts if t.strip()] for d, texts in docs.items()}


def write_job(job: Path, rows: list[tuple[str, str]]) -> None:
    import pyarrow as pa

    from shammie.pipeline import jobdir
    from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table
    n = len(rows)
    table = pa.table({"id": [f"doc-{i}" for i in range(n)], "text": [t for _, t in rows],
                      "url": [None] * n, "dump": ["none"] * n, "date": [None] * n, "language": [None] * n,
                      "language_score": [None] * n, "warc_file": [None] * n, "warc_offset": [None] * n},
                     schema=DOCUMENT_SCHEMA).append_column("source", pa.array([d for d, _ in rows]))
    write_table(table, str(job / "documents" / "part-0.parquet"))
    jobdir.mark_complete(str(job), "documents")


def build_stores(work: Path, vocab: int, seq_len: int) -> tuple[str, str]:
    """Train and validation stores (built once, then reused)."""
    from shammie.mixing.store import build_store, open_store
    train_rows, val_rows = [], []
    for domain, texts in sorted(real_documents(SHARED).items()):
        order = np.random.default_rng(0).permutation(len(texts))
        n_val = max(2, len(texts) // 10)
        val_rows += [(domain, texts[i]) for i in order[:n_val]]
        train_rows += [(domain, texts[i]) for i in order[n_val:]]
    stores = []
    for name, rows in (("train", train_rows), ("val", val_rows)):
        job = work / f"job-{name}"
        if not (job / "documents" / "_SUCCESS").exists():
            write_job(job, rows)
        stores.append(str(job / "store"))
    build_store(str(work / "job-train"), stores[0], group_by="source", train_tokenizer=vocab, seq_len=seq_len,
                progress=False)
    build_store(str(work / "job-val"), stores[1], group_by="source", seq_len=seq_len, progress=False,
                tokenizer=open_store(stores[0]).tokenizer_path)
    return stores[0], stores[1]


# ----------------------------------------------------------------------------- model (nanoGPT-style)

class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, seq_len: int, d: int = 96, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq_len, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight            # tied embeddings
        for m in self.modules():                      # GPT-2 init: unit-variance embeddings make logits explode
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def sequence_losses(model, ids) -> torch.Tensor:
    """Mean next-token loss of each sequence (nats/token)."""
    return token_mean_losses(model(ids[:, :-1]), ids[:, 1:])


@torch.no_grad()
def evaluate(model, val, seq_len: int, cap: int = 64) -> dict[str, float]:
    """Validation loss per domain (on at most `cap` evenly spaced sequences), their plain
    mean ("mean") and their mean weighted by each domain's validation tokens ("all")."""
    model.eval()
    out, sizes = {}, {}
    for d in val.domains:
        n = val.num_sequences(d, seq_len)
        picks = np.unique(np.linspace(0, n - 1, min(n, cap)).astype(int))
        ids = torch.from_numpy(np.stack([val.sequence(d, seq_len, j) for j in picks]).astype(np.int64))
        out[d], sizes[d] = float(sequence_losses(model, ids).mean()), n
    model.train()
    total = sum(sizes.values())
    return {**out, "mean": float(np.mean(list(out.values()))),
            "all": sum(out[d] * sizes[d] for d in out) / total}


# ----------------------------------------------------------------------------- training

def make_mixer(kind: str, store, seed: int, warmup: int | None, grad_accum: int = 1):
    """odm: the default rule (its warm-up unless --odm-warmup); a rule name; or a static mixture."""
    if kind in ("uniform", "natural"):
        return StaticMixer.from_store(store, kind, seed=seed, grad_accum=grad_accum)
    return OnlineDataMixer.from_store(store, rule=None if kind == "odm" else kind, seed=seed, warmup_steps=warmup,
                                      initial_weights="uniform", grad_accum=grad_accum)


def train(kind: str, seed: int, args, train_path: str, val_path: str | None) -> str:
    from shammie.mixing.store import open_store
    store = open_store(train_path)
    val = open_store(val_path) if val_path else None
    torch.manual_seed(seed)
    mixer = make_mixer(kind, store, seed, args.odm_warmup, args.grad_accum)
    data = MixtureDataset(store, mixer, args.seq_len + 1, args.batch_size)
    model = TinyGPT(store.vocab_size, args.seq_len, d=args.d_model, layers=args.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.95))
    lr_at = lambda s: args.lr * min(1.0, s / 30) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / args.steps)))  # noqa: E731
    log_path = args.log or os.path.join(args.out, f"{kind}-s{seed}.jsonl")
    if os.path.exists(log_path):
        os.remove(log_path)                       # a fresh run (no checkpoint to resume from here)
    log = MixLog(log_path)                        # closed below; unclosed it would still be written at exit
    if val is not None:
        log.write_eval(0, evaluate(model, val, args.seq_len + 1))
    t0 = time.time()
    batches = iter(data.dataloader(num_workers=args.workers))
    losses = DomainLossAccumulator()
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        for _ in range(args.grad_accum):          # the step's micro-batches, each drawn by the mixer
            ids, domains, batch_step = unpack_batch(next(batches))
            per_seq = sequence_losses(model, ids)
            (per_seq.mean() / args.grad_accum).backward()
            # the reward is the training loss already computed: no extra forward pass
            losses.add(per_seq, domains, step=batch_step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.write(mixer.update(losses))           # once per optimizer step: its means and step; resets it
        if val is None:
            continue
        if step % args.eval_every == 0 or step == args.steps:
            ev = evaluate(model, val, args.seq_len + 1)
            log.write_eval(step, ev, seconds=round(time.time() - t0, 1))
            print(f"{kind} seed {seed} step {step}: val all {ev['all']:.3f} mean {ev['mean']:.3f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
    log.close()
    return log_path


def steps_to_reach(records, target: float, key: str) -> float | None:
    """First step at which validation loss `key` is <= target, interpolated between evals."""
    prev = None
    for rec in (r for r in records if r.get("kind") == "eval"):
        step, loss = rec["step"], rec["loss"][key]
        if loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)
            return round(prev[0] + (step - prev[0]) * (prev[1] - target) / (prev[1] - loss), 1)
        prev = (step, loss)
    return None


def compare(logs: dict[tuple[str, int], str], out: str) -> dict:
    from shammie.mixing.log import read_log
    summary: dict = {}
    for key in ("all", "mean"):
        rows = {}
        for seed in sorted({s for _, s in logs}):
            recs = {k: read_log(p) for (k, s), p in logs.items() if s == seed}
            if "uniform" not in recs:
                continue
            target = [r for r in recs["uniform"] if r.get("kind") == "eval"][-1]["loss"][key]
            rows[seed] = {"uniform_final": target, **{
                k: {"final": [r for r in v if r.get("kind") == "eval"][-1]["loss"][key],
                    "steps_to_uniform_final": steps_to_reach(v, target, key)} for k, v in recs.items()}}
        summary[key] = rows
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixer", default="odm",
                   help="odm (the default rule), a rule name (shammie.mixing.rules), uniform or natural")
    p.add_argument("--compare", action="store_true", help="run all three mixers for every --seeds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--store", default=None,
                   help="train on this shard store as it is (no validation, no data preparation from shared data)")
    p.add_argument("--steps", "--max-steps", dest="steps", type=int, default=400, help="optimizer steps")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--log", default=None, help="mixing log (JSONL); default --out/<mixer>-s<seed>.jsonl")
    p.add_argument("--d-model", type=int, default=96)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab", type=int, default=3072, help="BPE pieces (CJK text needs > 2121)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--odm-warmup", type=int, default=None,
                   help="steps with the uniform mixture first (default: the rule's own warm-up)")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    p.add_argument("--out", default="runs/tiny-gpt-mixing")
    p.add_argument("--summarize", action="store_true",
                   help="only recompute summary.json and the plots from the logs already in --out")
    args = p.parse_args(argv)
    if args.summarize:
        logs = {(k, s): os.path.join(args.out, f"{k}-s{s}.jsonl") for s in args.seeds
                for k in ("uniform", "natural", "odm") if os.path.exists(os.path.join(args.out, f"{k}-s{s}.jsonl"))}
        from shammie.mixing.mix_cli import report
        report(list(logs.values()), os.path.join(args.out, "report"))
        print(json.dumps(compare(logs, args.out), indent=1))
        return 0
    if args.grad_accum < 1:
        p.error("--grad-accum must be >= 1")
    if args.store:
        if args.compare:
            p.error("--compare prepares its own stores from shared data; drop --store")
        torch.set_num_threads(args.threads)
        os.makedirs(args.out, exist_ok=True)
        log_path = train(args.mixer, args.seed, args, args.store, None)
        records = [json.loads(line) for line in open(log_path, encoding="utf-8") if line.strip()]
        print(json.dumps({"log": log_path, "optimizer_steps": args.steps, "grad_accum": args.grad_accum,
                          "updates": sum(r.get("kind") == "train" for r in records)}))
        return 0
    if not SHARED.is_dir():
        print(f"This example trains on the real text in {SHARED}, which is absent here; "
              "set SHAMMIE_SHARED_DATA to that folder to run it. Nothing to do.")
        return 0
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    from shammie.mixing.store_format import StoreError
    from shammie.pipeline.errors import UserError
    try:
        train_path, val_path = build_stores(Path(args.out) / "data", args.vocab, args.seq_len + 1)
    except (UserError, StoreError) as e:
        print(f"cannot build the stores: {e}", file=sys.stderr)
        return 2
    runs = [(k, s) for s in args.seeds for k in ("uniform", "natural", "odm")] if args.compare \
        else [(args.mixer, args.seed)]
    logs = {(k, s): train(k, s, args, train_path, val_path) for k, s in runs}
    from shammie.mixing.mix_cli import report
    report(list(logs.values()), os.path.join(args.out, "report"))
    if args.compare:
        print(json.dumps(compare(logs, args.out), indent=1))
    print(f"logs and plots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
