"""`shammie classify`: a DCLM-style fastText quality classifier (train, score)."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
A binary fastText quality filter in the style of DCLM's: positives (label 1/hq)
against negatives (label 0/cc).

  shammie classify train labels.jsonl --output quality.bin --cv 5
      k-fold cross-validated ROC AUC, then a model trained on all rows
  shammie classify score JOB --model quality.bin
      adds quality_score = P(high quality) to every document -> JOB/classified/
      (reads the most downstream complete folder before it: decontaminated/, deduped/, ...)

Then `shammie edu score JOB --model edu.bin` reads classified/ (scored/ carries both
columns), as `shammie run` chains them. To classify documents already scored for edu,
pass --input-stage scored. See docs/edu.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from shammie.pipeline.options import HelpFormatter
    from shammie.filters.edu_cli import _add_fasttext_options
    from shammie.filters.scoring import QUALITY_SCORE_HELPS, ScoreStage
    from shammie.pipeline.stage_cli import add_stage_arguments

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="classify_command", metavar="STEP")
    fmt = HelpFormatter

    p = sub.add_parser("train", formatter_class=fmt, help="train from labelled text; report cross-validated ROC AUC",
                       description="Train a binary fastText classifier from tables with a text column and a "
                       "binary label (1/0, true/false, hq/cc); Parquet, JSONL or CSV, local, s3:// or hf://. "
                       "Reports k-fold ROC AUC, then trains on all rows. Metrics are saved as OUTPUT.json.")
    p.add_argument("inputs", nargs="+", metavar="LABELLED",
                   help="labelled tables (Parquet, JSONL, CSV; files, folders or globs; local, s3:// or hf://)")
    p.add_argument("--output", required=True, metavar="MODEL.bin",
                   help="where to save the fastText model (its metrics go to MODEL.bin.json)")
    p.add_argument("--text-column", default="text", help="column holding the document text")
    p.add_argument("--label-column", default="label", help="column holding the label: 1/0, true/false or hq/cc")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds (0: skip)")
    _add_fasttext_options(p)

    p = sub.add_parser("score", help="add a quality-score column to a job's documents",
                       description="Add P(high quality) as a new column to every document (one Ray task per "
                       "file) and write the rows to a new folder of the job (default classified/).")
    add_stage_arguments(p, ScoreStage, p.description, fixed={"kind": "quality", "backend": "fasttext"},
                        helps=QUALITY_SCORE_HELPS)


def run(args) -> int:
    from shammie.filters import classify
    from shammie.filters.edu_cli import fasttext_params
    from shammie.pipeline.errors import UserError

    if args.classify_command == "train":
        report = classify.train(args.inputs, args.output, text_column=args.text_column,
                                label_column=args.label_column, cv=args.cv, seed=args.seed,
                                params=fasttext_params(args))
        print(json.dumps({k: v for k, v in report.items() if k != "params"}, indent=2, default=str))
        cv = report.get("cross_validation")
        if cv:
            print(f"{cv['folds']}-fold ROC AUC {cv['roc_auc_mean']:.3f} +- {cv['roc_auc_std']:.3f} "
                  f"(pooled {cv['roc_auc_pooled']:.3f}) -> {args.output}")
        return 0
    if args.classify_command == "score":
        from shammie.filters.scoring import ScoreStage
        from shammie.pipeline.stage_cli import run_stage_command

        return run_stage_command(ScoreStage, args)
    raise UserError("choose a step: shammie classify {train,score} (see shammie classify --help)")
