"""Export rate of `shammie export` (tokens/s) for both formats, beside a plain file copy of the store.

    .venv/bin/python benchmarks/export_rate.py [--tokens 50e6] [--domains 4] [--repeat 3] [--dir DIR]

Writes a synthetic store with StoreWriter (mixing/store_writer.py, as `shammie shard`
does): `--domains` domains, document text from `store_testing.synthetic_texts` (a pool
of texts reused in rotation, so building the store does not dominate the run), about one
token per 4 characters of text (random ids: the export never looks at their meaning),
uint16 tokens, 32M-token shards. Then, in each of `--repeat` rounds, one after another:

  copy      : `shutil.copytree` of the store folder (the floor of any export: read + write every byte)
  megatron  : export_store(..., "megatron"): .bin/.idx per domain, data_path.txt, fsync'd
  hf        : export_store(..., "hf"): Parquet per domain + README.md card

Each export opens the store afresh, so the first-open xxh3 verification of every file it
reads is part of the time (as for a user's `shammie export`). The page cache is warm
(the store was just written and verified). Results: tokens/s and MB written per second,
best round and median over rounds, and the machine's load average when the run started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np


def build_store(path: str, total_tokens: int, domains: int, shard_tokens: int) -> tuple[int, int]:
    import pyarrow as pa

    from shammie.mixing.store_testing import synthetic_texts, tiny_tokenizer
    from shammie.mixing.store_writer import StoreWriter

    tok = tiny_tokenizer()
    schema = pa.schema([pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("url", pa.string()),
                        pa.field("n_tokens", pa.int64())])
    writer = StoreWriter(path, tok, build_id="e0e0e0e0e0e0", text_schema=schema, shard_tokens=shard_tokens,
                         info={"group_by": "synthetic"})
    pool = synthetic_texts(20_000, seed=0, mean_words=300)
    rng = np.random.default_rng(0)
    written = docs = 0
    batch = 2048
    while written < total_tokens:
        texts = [pool[(docs + i) % len(pool)] for i in range(batch)]
        lengths = np.array([max(1, len(t) // 4) + 1 for t in texts], dtype=np.int64)  # + the end-of-document id
        tokens = rng.integers(3, tok.vocab_size, int(lengths.sum()), dtype=np.uint16)
        tokens[np.cumsum(lengths) - 1] = tok.eod_id
        domain = f"domain-{(docs // batch) % domains}"
        table = pa.table({"id": [f"doc-{docs + i}" for i in range(batch)], "text": texts,
                          "url": [f"https://site-{(docs + i) % 97}.example.org/{docs + i}" for i in range(batch)],
                          "n_tokens": lengths}, schema=schema)
        writer.add(domain, table, tokens, lengths)
        written += int(lengths.sum())
        docs += batch
    manifest = writer.commit()
    return int(manifest["tokens"]), int(manifest["documents"])


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=float, default=50e6)
    ap.add_argument("--domains", type=int, default=4)
    ap.add_argument("--shard-tokens", type=float, default=32 * 2**20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="work folder (default: a new temporary one, deleted at the end)")
    args = ap.parse_args()
    from shammie.mixing.export import export_store
    from shammie.mixing.store import open_store

    work = args.dir or tempfile.mkdtemp(prefix="export-bench-")
    store = os.path.join(work, "store")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    t = time.perf_counter()
    tokens, documents = build_store(store, int(args.tokens), args.domains, int(args.shard_tokens))
    print(f"synthetic store: {tokens:,} tokens, {documents:,} documents, {args.domains} domains, "
          f"{folder_bytes(store) / 1e6:,.0f} MB, written in {time.perf_counter() - t:.1f} s at {store}")
    open_store(store).verify()  # warm the page cache

    def copy(out: str) -> None:
        shutil.copytree(store, out)

    runs = {"copy": copy,
            "megatron": lambda out: export_store(store, out, "megatron"),
            "hf": lambda out: export_store(store, out, "hf")}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_ in range(args.repeat):
        for name, run in runs.items():
            out = os.path.join(work, f"out-{name}")
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            run(out)
            seconds = time.perf_counter() - t
            mb = folder_bytes(out) / 1e6
            results[name].append((tokens / seconds, mb / seconds))
            print(f"round {round_ + 1} {name:9s} {seconds:6.2f} s  {tokens / seconds / 1e6:8.1f} M tokens/s  "
                  f"{mb / seconds:7.1f} MB/s written ({mb:,.0f} MB)", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n| what | best M tokens/s | median M tokens/s | median MB/s written |\n|---|---:|---:|---:|")
    for name, rows in results.items():
        rates = [r for r, _ in rows]
        print(f"| {name} | {max(rates) / 1e6:,.1f} | {statistics.median(rates) / 1e6:,.1f} | "
              f"{statistics.median(m for _, m in rows):,.1f} |")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
