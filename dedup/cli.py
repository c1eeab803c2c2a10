"""`shammie dedup DIR`: MinHash near-duplicate removal (documents/ -> deduped/)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Remove near-duplicate documents as FineWeb did: word 5-grams of normalised text,
112 MinHash values as 14 bands of 8 (pairs above Jaccard ~0.72 are likely found),
one document kept per duplicate cluster (the first by input file name and row).
Within each snapshot (`dump`) by default. Reads DIR/documents/ (or the most
downstream complete document folder before deduped/), writes DIR/deduped/*.parquet
with the same schema and a "dedup" section in DIR/stats.json. Resumable: re-run
the same command after a crash; finished tasks are skipped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("job", metavar="DIR", help="job directory (local path or s3://...) with a complete documents/ folder")
    parser.add_argument("--workers", type=int, default=None,
                        help="tasks run at once (default: all CPUs of the local Ray / cluster)")
    parser.add_argument("--ray-address", default=None,
                        help="join this Ray cluster (default: $RAY_ADDRESS, else start Ray locally)")
    parser.add_argument("--across-snapshots", action="store_true",
                        help="deduplicate the whole input together instead of each snapshot separately")
    parser.add_argument("--input-stage", default=None,
                        help="document folder to read (default: most downstream complete one before deduped/)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="target Jaccard similarity: choose bands x rows of the 112 hashes with datasketch's "
                             "optimiser instead of FineWeb's 14 x 8")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from shammie.dedup.minhash import dedup, summarise
    from shammie.dedup.signatures import MinhashParams
    from shammie.pipeline.errors import UserError

    params = None
    if args.threshold is not None:
        if not 0.0 < args.threshold < 1.0:
            raise UserError("--threshold must be between 0 and 1")
        params = MinhashParams.for_threshold(args.threshold)
    stats = dedup(args.job, workers=args.workers, ray_address=args.ray_address,
                  across_snapshots=args.across_snapshots, input_stage=args.input_stage,
                  progress=not args.no_progress, params=params)
    print(summarise(stats))
    return 0
