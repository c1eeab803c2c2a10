"""Write throughput of `shammie shard`: tokens/s from document Parquet to a published store.

    .venv/bin/python benchmarks/store_write.py [--files 4] [--mb-per-file 8] [--workers 2] [--vocab 32000]

Input text: the real Common Crawl documents of ../shared/data/labels/dclm-human-quality-agreement.jsonl
(281 documents, cycled with a per-copy shuffle to reach the requested size), or synthetic
text when that folder is absent (`--synthetic`). Steps timed separately:
  train     : sentencepiece training (--vocab, BPE) on --train-mb of the input (one run, not part of build)
  encode    : single-core sentencepiece encode of one input file (the per-core ceiling of tokenizing)
  build     : build_store(...) with the trained model: Ray tasks tokenize and write the shards (Ray
              started beforehand, timed separately); one file runs in the driver without Ray
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DCLM = Path(os.environ.get("SHAMMIE_SHARED_DATA", REPO.parent / "shared" / "data")) / "labels" / "dclm-human-quality-agreement.jsonl"


def _texts(synthetic: bool) -> list[str]:
    if not synthetic and DCLM.exists():
        return [json.loads(line)["text"] for line in DCLM.open()]
    from shammie.mixing.store_testing import synthetic_texts

    return synthetic_texts(2000, seed=0)


def _write_job(job: str, texts: list[str], files: int, mb_per_file: float) -> None:
    import pyarrow as pa

    from shammie.mixing.store_testing import synthetic_documents, write_job

    tables = []
    for f in range(files):
        rng = random.Random(f)
        out, size = [], 0
        while size < mb_per_file * 1e6:
            batch = texts[:]
            rng.shuffle(batch)
            for t in batch:
                out.append(t)
                size += len(t.encode())
                if size >= mb_per_file * 1e6:
                    break
        table = synthetic_documents(len(out), seed=f, mean_words=1, prefix=f"f{f}")
        table = table.set_column(table.column_names.index("text"), table.schema.field("text"), pa.array(out))
        tables.append(table)
    write_job(job, tables)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--mb-per-file", type=float, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--train-mb", type=float, default=4)
    ap.add_argument("--type", choices=("bpe", "unigram"), default="bpe")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    from shammie.mixing.store import build_store, open_store
    from shammie.mixing.tokenizer import sample_texts, train_tokenizer
    from shammie.pipeline import jobdir
    from shammie.pipeline.documents import read_table

    tmp = args.dir or tempfile.mkdtemp(prefix="store-write-bench-")
    job = os.path.join(tmp, "job")
    _write_job(job, _texts(args.synthetic), args.files, args.mb_per_file)
    files = jobdir.stage_files(job, "scored")
    print(f"input: {len(files)} files x {args.mb_per_file} MB of {'synthetic' if args.synthetic or not DCLM.exists() else 'DCLM'} text in {job}")

    t = time.perf_counter()
    tok = train_tokenizer(sample_texts(files, int(args.train_mb * 1e6)), args.vocab, args.type, num_threads=args.workers)
    train_s = time.perf_counter() - t
    model = os.path.join(tmp, "bench.model")
    Path(model).write_bytes(tok.model_proto)
    print(f"train   : {train_s:.1f} s for {args.train_mb} MB, {args.type} vocab {tok.vocab_size}")

    texts = read_table(files[0], columns=["text"]).column("text").to_pylist()
    t = time.perf_counter()
    tokens, _ = tok.encode_documents(texts)
    enc_s = time.perf_counter() - t
    print(f"encode  : {len(tokens) / enc_s / 1e6:.2f} M tokens/s on one core ({len(tokens)} tokens, "
          f"{sum(len(x.encode()) for x in texts) / len(tokens):.2f} bytes/token)")

    if len(files) > 1:
        import ray

        t = time.perf_counter()
        # address="local": a fresh local Ray even if another `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        print(f"ray     : started in {time.perf_counter() - t:.1f} s (not part of the build numbers below)")
    stats = build_store(job, os.path.join(tmp, "store"), group_by="edu", tokenizer=model, workers=args.workers,
                        progress=False, seq_len=2048)
    print(f"build   : {stats['tokens']} tokens, {stats['documents']} documents, {len(stats['domains'])} domains")
    print(f"          total {stats['seconds']:.1f} s = {stats['tokens_per_s'] / 1e6:.2f} M tokens/s "
          f"(tokenize phase {stats['tokenize_seconds']:.1f} s = "
          f"{stats['tokens'] / stats['tokenize_seconds'] / 1e6:.2f} M tokens/s; "
          f"merge phase {stats['write_seconds']:.1f} s)")
    store = open_store(os.path.join(tmp, "store"))
    size = sum(f["bytes"] for d in store.domains for s in store.domain_info(d)["shards"] for f in s["files"].values())
    print(f"store   : {size / 1e6:.1f} MB on disk ({store.manifest['token_dtype']} tokens)")


if __name__ == "__main__":
    sys.exit(main())
