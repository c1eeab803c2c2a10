"""`shammie shard DIR`: write the domain-grouped, tokenized shard store."""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Group the documents of a job directory into domains, tokenize them with sentencepiece and write "
        "STORE/manifest.json plus, per domain, Parquet text shards and memory-mappable token shards. "
        "Shards get new names on every build and the manifest is replaced last, so readers never see a "
        "half-written store; an interrupted run resumes its finished files when re-run."
    )
    parser.add_argument("job", metavar="DIR", help="job directory (local path or s3://...)")
    parser.add_argument("--store", default=None, help="where to write the store (path or s3://); default DIR/store")
    parser.add_argument("--group-by", default="edu", metavar="KEY",
                        help="domain of each document: edu (edu_int_score bucket), language, site (registered "
                             "domain of the URL, top-K + 'other'), or any other metadata column")
    parser.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                        help="keep the K largest domains and fold the rest into 'other' (default: 100 for site, "
                             "no folding otherwise)")
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", default=None, metavar="MODEL",
                     help="sentencepiece .model to use (it must define an end-of-sentence piece)")
    tok.add_argument("--train-tokenizer", type=_positive_int, default=None, metavar="VOCAB",
                     help="train a sentencepiece model with this vocabulary size on a sample of the input and save "
                          "it in the store (default when neither is given: reuse the store's tokenizer, or train 32000)")
    parser.add_argument("--tokenizer-type", choices=("bpe", "unigram"), default="bpe",
                        help="model type for --train-tokenizer")
    parser.add_argument("--tokenizer-sample-mb", type=float, default=50.0, metavar="MB",
                        help="megabytes of input text to train the tokenizer on")
    parser.add_argument("--seq-len", type=_positive_int, default=2048, metavar="L",
                        help="default packed sequence length recorded in the manifest (readers may pick another)")
    parser.add_argument("--shard-tokens", type=_positive_int, default=128 * 1024 * 1024, metavar="N",
                        help="start a new shard of a domain after about this many tokens")
    parser.add_argument("--input-stage", default=None, metavar="STAGE",
                        help="document folder to read (default: the most downstream complete one)")
    parser.add_argument("--workers", type=_positive_int, default=None, help="CPUs for the local Ray (default: all)")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster instead of starting one")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from shammie.mixing.store import build_store

    stats = build_store(
        args.job, args.store, group_by=args.group_by, tokenizer=args.tokenizer,
        train_tokenizer=args.train_tokenizer, tokenizer_type=args.tokenizer_type, seq_len=args.seq_len,
        top_k=args.top_k, input_stage=args.input_stage, workers=args.workers, ray_address=args.ray_address,
        progress=not args.no_progress, shard_tokens=args.shard_tokens,
        tokenizer_sample_bytes=int(args.tokenizer_sample_mb * 1e6),
    )
    print(f"store {stats['store']}: {stats['documents']} documents, {stats['tokens']} tokens in "
          f"{len(stats['domains'])} domains (group-by {stats['group_by']}, input {stats['input_stage']}, "
          f"vocab {stats['tokenizer']['vocab_size']}, {stats['token_dtype']})")
    width = max((len(d) for d in stats["domains"]), default=6)
    print(f"  {'domain':<{width}}  {'documents':>10}  {'tokens':>13}")
    for name, d in stats["domains"].items():
        print(f"  {name:<{width}}  {d['documents']:>10}  {d['tokens']:>13}")
    print(f"{stats['seconds']:.1f} s, {stats['tokens_per_s'] / 1e6:.2f}M tokens/s")
    return 0
