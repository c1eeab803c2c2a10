"""`shammie export STORE --format megatron|hf --output DIR`: a shard store in Megatron's or Hugging Face's format.

The options are `ExportOptions` (`mixing/export.py`); the flags are generated from it.
"""

from __future__ import annotations

import argparse

import dataclasses

from shammie.mixing.export import DATA_PATH_FILE, ExportOptions, ExportStage, export_job
from shammie.pipeline import options
from shammie.pipeline.runner import RERUN_FLAGS, RunOptions, run_stage

EPILOG = """\
megatron: DIR/<domain>.bin + .idx per domain (Megatron-LM's indexed dataset, read by
Megatron-LM, NeMo and GPT-NeoX), DIR/tokenizer.model, and DIR/data_path.txt, the
--data-path blend (token shares as weights), which is also printed.
hf: DIR/data/<domain>/*.parquet and DIR/README.md (dataset card with one config per
domain): datasets.load_dataset("DIR", name="<domain>", split="train").
The export is written next to DIR and renamed into place when complete.
It is recorded in the job that built the store (JOB/_export/, stats.json's export
section) when that job is at hand, else in .DIR.shammie/ beside DIR. The same export
again is found complete; a rebuilt store or other settings for the same DIR are
refused unless --overwrite."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = options.HelpFormatter
    parser.epilog = EPILOG
    options.add_arguments(parser, ExportOptions)
    # the export runs in this process: of the run options only the re-run ones apply
    options.add_arguments(parser, RunOptions, exclude=[f.name for f in dataclasses.fields(RunOptions)
                                                       if f.name not in RERUN_FLAGS])


def run(args: argparse.Namespace) -> int:
    opts = options.from_namespace(ExportOptions, args)
    run_options = options.from_namespace(RunOptions, args, progress=opts.progress)
    result = run_stage(ExportStage(export_job(opts.store, opts.output), opts), run_options)
    record = result.section
    domains = len(record["domains"])
    print(f"{result.headline()}exported {record['documents']:,} documents, {record['tokens']:,} tokens in {domains} domains "
          f"({opts.format}) to {opts.output} in {record['seconds']:.1f} s")
    if opts.format == "megatron":
        print(f"--data-path (also in {opts.output}/{DATA_PATH_FILE}):")
        print(record["data_path"])
    return 0
