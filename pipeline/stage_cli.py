"""The command line of a stage, generated from its options dataclass and the shared run options.

A stage's CLI module is then two lines (see `filters/crawl_cli.py`): the flags come
from `Stage.Options` and `RunOptions` (`pipeline/options.py`), the run from `run_stage`.
"""

from __future__ import annotations

import argparse

from shammie.pipeline import options
from shammie.pipeline.runner import RunOptions, run_stage


def add_stage_arguments(parser: argparse.ArgumentParser, stage_cls: type, description: str | None = None,
                        epilog: str | None = None, *, fixed: dict | None = None,
                        helps: dict[str, str] | None = None) -> None:
    """Flags for every option of the stage and of RunOptions; `fixed` options are set, not flags;
    `helps` words some options' help for this command."""
    parser.formatter_class = options.HelpFormatter
    parser.description = description or (stage_cls.__doc__ or "").strip()
    parser.epilog = (epilog + "\n\n" if epilog else "") + RERUN_RULES
    options.add_arguments(parser, stage_cls.Options, exclude=tuple(fixed or ()), helps=helps)
    options.add_arguments(parser, RunOptions)
    parser.set_defaults(_fixed_options=dict(fixed or {}))


def run_stage_command(stage_cls: type, args: argparse.Namespace) -> int:
    opts = options.from_namespace(stage_cls.Options, args, **getattr(args, "_fixed_options", {}))
    run = options.from_namespace(RunOptions, args)
    stage = stage_cls(getattr(opts, stage_cls.job_field), opts)
    result = run_stage(stage, run)
    print(result.headline() + stage.describe(result.section))
    return 0


RERUN_RULES = """\
re-runs: the same inputs and settings resume (finished files skipped, damaged ones
redone: a changed size, modification time or S3 ETag; --verify compares checksums);
changed inputs or settings are refused, naming the change; --overwrite recomputes
into a fresh folder that replaces the old one only once complete. One run of a
stage per job at a time (--wait queues behind a running one). On a Ray cluster of
several hosts the job must be on s3:// or on a --shared-filesystem."""
