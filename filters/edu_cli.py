"""`shammie edu`: annotate -> train -> score -> subset (FineWeb-Edu-style subsets on CPUs)."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Educational-quality subsets in four steps, as FineWeb-Edu built them:

  1. shammie edu annotate JOB --endpoint http://host:8000/v1 --model NAME --sample 2000
       an LLM grades a sample 0-5 with Shammie's additive rubric -> JOB/annotations.parquet
  2. shammie edu train JOB/annotations.parquet --output edu.bin
       a fastText scorer learns the grades; prints held-out MSE, macro F1, binary F1@3
  3. shammie edu score JOB --model edu.bin
       every document gets edu_score (0-5 float) and edu_int_score (0-5) -> JOB/scored/
  4. shammie edu subset JOB --threshold 3
       documents with edu_int_score >= 3 -> JOB/edu-3/ (doc and token counts in stats.json)

`score --backend transformers --model DIR` uses a local Hugging Face
sequence-classification model folder instead (e.g. a FineWeb-Edu-style BERT),
on GPU when torch sees one. See docs/edu.md.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from shammie.pipeline.options import HelpFormatter
    from shammie.filters.scoring import EDU_SCORE_HELPS, ScoreStage, SubsetStage
    from shammie.pipeline.stage_cli import add_stage_arguments

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="edu_command", metavar="STEP")
    fmt = HelpFormatter

    p = sub.add_parser("annotate", formatter_class=fmt,
                       help="grade a sample of documents 0-5 with an LLM (OpenAI-compatible endpoint)",
                       description="Grade a sample of a job's documents 0-5 for educational value with an LLM "
                       "behind any OpenAI-compatible chat-completions endpoint (vLLM, TGI, a hosted API). "
                       "Finished requests are cached beside the output, so re-running resumes; replies "
                       "without a valid score are retried, then recorded as failed (score null).")
    p.add_argument("job", metavar="DIR", help="job directory (local or s3://)")
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://localhost:8000/v1 "
                   "(/chat/completions is appended unless present)")
    p.add_argument("--model", required=True, help="model name the endpoint serves")
    p.add_argument("--sample", type=int, default=1000, help="documents to grade (0 = all); a larger sample "
                   "later keeps the smaller one's documents")
    p.add_argument("--output", help="annotations file (default DIR/annotations.parquet)")
    p.add_argument("--input-stage", help="document folder to sample (default: the most downstream complete "
                   "one before scored/, e.g. decontaminated/, deduped/ or documents/; never a subset)")
    p.add_argument("--api-key", help="bearer token (default $SHAMMIE_LLM_API_KEY or $OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    p.add_argument("--retries", type=int, default=4, help="extra attempts per document (errors, bad replies)")
    p.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles each time)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--max-chars", type=int, default=8000, help="characters of each document sent")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--cache", help="resume cache (JSONL; default OUTPUT.cache.jsonl)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    p = sub.add_parser("train", formatter_class=fmt, help="train the fastText edu scorer from 0-5 annotations",
                       description="Train a fastText scorer from tables with a text column and a 0-5 score "
                       "(Parquet, JSONL, CSV; files, folders or globs; local, s3:// or hf:// paths). "
                       "A held-out split gives MSE, macro F1 of the rounded score and binary F1 at the "
                       "threshold (FineWeb-Edu's BERT: F1 0.82 at 3). Metrics are also saved as OUTPUT.json.")
    p.add_argument("inputs", nargs="+", metavar="ANNOTATIONS",
                   help="annotated tables (Parquet, JSONL, CSV; files, folders or globs; local, s3:// or hf://), "
                   "e.g. JOB/annotations.parquet from `shammie edu annotate`")
    p.add_argument("--output", required=True, metavar="MODEL.bin",
                   help="where to save the fastText model (its metrics go to MODEL.bin.json)")
    p.add_argument("--text-column", default="text", help="column holding the document text")
    p.add_argument("--score-column", default="score", help="column holding the 0-5 grade")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction held out for metrics (0: none)")
    p.add_argument("--threshold", type=float, default=3, help="threshold for the binary F1")
    _add_fasttext_options(p)

    p = sub.add_parser("score", help="add edu_score/edu_int_score to a job -> scored/",
                       description="Score every document of a job (one Ray task per Parquet file) and write "
                       "JOB/scored/ with the same rows plus edu_score (0-5 float: expected label for fastText, "
                       "the regression output for transformers) and edu_int_score (rounded half up, clipped to 0-5).")
    add_stage_arguments(p, ScoreStage, p.description, fixed={"kind": "edu"}, helps=EDU_SCORE_HELPS)

    p = sub.add_parser("subset", help="keep documents at or above a threshold -> edu-N/",
                       description="Write the documents of scored/ with edu_int_score >= THRESHOLD (an integer; "
                       "a fractional threshold compares edu_score) to JOB/edu-THRESHOLD/, and record "
                       "document and token (whitespace-word) counts in stats.json.")
    add_stage_arguments(p, SubsetStage, p.description)


def _add_fasttext_options(p: argparse.ArgumentParser) -> None:
    from shammie.filters.edu_fasttext import FastTextParams

    d = FastTextParams()
    p.add_argument("--epoch", type=int, default=d.epoch, help="passes over the data (0: auto from data size)")
    p.add_argument("--lr", type=float, default=d.lr, help="fastText learning rate")
    p.add_argument("--dim", type=int, default=d.dim, help="size of the word vectors")
    p.add_argument("--word-ngrams", type=int, default=d.word_ngrams,
                   help="longest word n-gram used as a feature (2: words and word pairs)")
    p.add_argument("--min-count", type=int, default=d.min_count,
                   help="words seen fewer times than this in the training data are ignored")
    p.add_argument("--bucket", type=int, default=d.bucket, help="hashed n-gram rows (model size ~ bucket*dim*4 B)")
    p.add_argument("--threads", type=int, default=0, help="training threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split or folds and of fastText")


def fasttext_params(args):
    from shammie.filters.edu_fasttext import FastTextParams

    return FastTextParams(epoch=args.epoch, lr=args.lr, dim=args.dim, word_ngrams=args.word_ngrams,
                          min_count=args.min_count, bucket=args.bucket, thread=args.threads, seed=args.seed)


def _print(result: dict) -> None:
    print(json.dumps(result, indent=2, sort_keys=True, default=str))


def run(args) -> int:
    from shammie.filters import edu
    from shammie.pipeline.errors import UserError
    from shammie.pipeline.stage_cli import run_stage_command

    if args.edu_command == "annotate":
        result = edu.annotate(args.job, endpoint=args.endpoint, model=args.model, sample=args.sample or None,
                              output=args.output, input_stage=args.input_stage, seed=args.seed,
                              api_key=args.api_key, concurrency=args.concurrency, retries=args.retries,
                              backoff=args.backoff, timeout=args.timeout, max_chars=args.max_chars,
                              cache=args.cache, progress=not args.no_progress)
        _print(result)
        print(f"annotated {result['annotated']}/{result['documents']} ({result['failed']} failed) -> {result['output']}")
        return 0 if result["annotated"] else 1
    if args.edu_command == "train":
        report = edu.train(args.inputs, args.output, text_column=args.text_column, score_column=args.score_column,
                           holdout=args.holdout, threshold=args.threshold, seed=args.seed,
                           params=fasttext_params(args))
        _print({k: v for k, v in report.items() if k != "params"})
        h = report.get("holdout")
        if h:
            print(f"held out {h['examples']}: MSE {h['mse']:.3f}, macro F1 {h['macro_f1']:.3f}, "
                  f"binary F1@{h['threshold']:g} {h['binary_f1']:.3f} -> {args.output}")
        return 0
    if args.edu_command == "score":
        from shammie.filters.scoring import ScoreStage

        return run_stage_command(ScoreStage, args)
    if args.edu_command == "subset":
        from shammie.filters.scoring import SubsetStage

        return run_stage_command(SubsetStage, args)
    raise UserError("choose a step: shammie edu {annotate,train,score,subset} (see shammie edu --help)")
