"""`shammie decontaminate DIR --against FILE...`: remove documents sharing an n-gram with benchmark items."""

from __future__ import annotations

import argparse

from shammie.filters.decontaminate import REMOVED, DecontaminateStage
from shammie.pipeline import jobdir
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, DecontaminateStage, epilog=(
        "Reads the most downstream complete document folder before decontaminated/ (deduped/ after "
        "`shammie dedup`); scoring and sharding then read decontaminated/. Removed documents are "
        f"listed in JOB/{jobdir.META}/decontaminated/{REMOVED} with the items they matched (beside the folder, "
        "which holds only the documents). See docs/decontaminate.md."))


def run(args: argparse.Namespace) -> int:
    return run_stage_command(DecontaminateStage, args)
