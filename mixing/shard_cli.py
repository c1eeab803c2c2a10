"""`shammie shard DIR`: write the domain-grouped, tokenized shard store."""

from __future__ import annotations

import argparse

from shammie.mixing.shard_stage import ShardStage
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, ShardStage)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(ShardStage, args)
