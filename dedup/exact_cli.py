"""`shammie exact-dedup DIR`: exact-duplicate removal (documents/ -> exact-deduped/)."""

from __future__ import annotations

import argparse

from shammie.dedup.exact import ExactDedupStage
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, ExactDedupStage, epilog="`shammie dedup` then reads exact-deduped/ when it is complete.")


def run(args: argparse.Namespace) -> int:
    return run_stage_command(ExactDedupStage, args)
