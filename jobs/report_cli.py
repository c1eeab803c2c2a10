"""`shammie report DIR`: write DIR/report.html (self-contained: plots embedded as PNG)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="DIR", help="job directory (local or s3://)")
    parser.add_argument("--output", "-o", default=None,
                        help="where to write the HTML (default: DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from shammie.jobs.report import write_report

    path, plots = write_report(args.job, args.output)
    drawn = [p.title for p in plots if p.png is not None]
    missing = [p for p in plots if p.png is None]
    print(f"wrote {path}: {len(drawn)} plot(s): {', '.join(drawn) or 'none'}")
    for p in missing:
        print(f"  missing {p.title}: {p.missing}")
    return 0
