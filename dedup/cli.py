"""`shammie dedup DIR`: MinHash near-duplicate removal (documents/ -> deduped/)."""

from __future__ import annotations

import argparse

from shammie.dedup.minhash import DedupStage
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, DedupStage)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(DedupStage, args)
