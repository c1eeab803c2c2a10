"""`shammie crawl`: WARC files -> FineWeb-filtered documents."""

from __future__ import annotations

import argparse

from shammie.filters.crawl import CrawlStage
from shammie.pipeline.stage_cli import add_stage_arguments, run_stage_command

DESCRIPTION = (
    "Read WARC files, extract main text with trafilatura (FineWeb settings) and apply the FineWeb filters "
    "(URL, language, Gopher repetition/quality, C4, FineWeb quality) and PII anonymisation. Writes "
    "OUTPUT/documents/*.parquet (one per input file) and the 'crawl' funnel in OUTPUT/stats.json. An input "
    "that cannot be read is counted under errors (input_unreadable) and the rest goes on. New inputs given "
    "to a finished crawl are added to it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_stage_arguments(p, CrawlStage, DESCRIPTION)


def run(args: argparse.Namespace) -> int:
    return run_stage_command(CrawlStage, args)
