"""`shammie export STORE --format megatron|hf --output DIR`: a shard store in Megatron's or Hugging Face's format.

The options are `ExportOptions` (`mixing/export.py`); the flags are generated from it.
"""

from __future__ import annotations

import argparse

from shammie.mixing.export import DATA_PATH_FILE, ExportOptions, export_store
from shammie.pipeline import options

EPILOG = """\
megatron: DIR/<domain>.bin + .idx per domain (Megatron-LM's indexed dataset, read by
Megatron-LM, NeMo and GPT-NeoX), DIR/tokenizer.model, and DIR/data_path.txt, the
--data-path blend (token shares as weights), which is also printed.
hf: DIR/data/<domain>/*.parquet and DIR/README.md (dataset card with one config per
domain): datasets.load_dataset("DIR", name="<domain>", split="train").
The export is written next to DIR and renamed into place when complete."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = options.HelpFormatter
    parser.epilog = EPILOG
    options.add_arguments(parser, ExportOptions)


def run(args: argparse.Namespace) -> int:
    opts = options.from_namespace(ExportOptions, args)
    record = export_store(opts.store, opts.output, opts.format, build_id=opts.build_id, progress=opts.progress)
    domains = len(record["domains"])
    print(f"exported {record['documents']:,} documents, {record['tokens']:,} tokens in {domains} domains "
          f"({opts.format}) to {opts.output} in {record['seconds']:.1f} s")
    if opts.format == "megatron":
        print(f"--data-path (also in {opts.output}/{DATA_PATH_FILE}):")
        print(record["data_path"])
    return 0
