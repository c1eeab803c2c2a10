"""Educational-quality scoring, FineWeb-Edu style: annotate -> train -> score -> subset.

    annotate  an LLM grades a sample 0-5 (filters/llm_annotate.py) -> annotations.parquet
    train     a fastText model learns those grades (cheap enough for CPUs) -> MODEL.bin
    score     every document of a job gets `edu_score` (float) and `edu_int_score` (0-5) -> scored/
    subset    documents with edu_int_score >= threshold -> edu-<threshold>/

Scoring runs one Ray task per input Parquet file (pipeline.parallel.run_tasks), so
it resumes after a crash and scales out on a cluster. Two backends share one
interface, `score_texts(list[str]) -> np.ndarray`: the fastText scorer (default)
and any local Hugging Face sequence-classification model (the original BERT kind).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from shammie.filters.edu_metrics import int_scores
from shammie.filters.scoring import BACKENDS
from shammie.pipeline.errors import InputError


def load_scorer(model: str, backend: str = "fasttext"):
    """A scorer object with `score_texts(list[str]) -> np.ndarray` (cached per process)."""
    from shammie.filters.scoring import load_scorer as _load

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return _load(model, "edu", backend)


def score(job: str, model: str, *, backend: str = "fasttext", input_stage: str | None = None,
          workers: int | None = None, ray_address: str | None = None, progress: bool = True,
          batch_size: int | None = None, output_stage: str = "scored", overwrite: bool = False,
          wait: bool = False) -> dict:
    """Add `edu_score`/`edu_int_score` to every document of the job's input folder -> `scored/`.

    Returns (and writes as the "edu_score" section of stats.json) documents, tokens
    (whitespace-separated words), a histogram of edu_int_score 0-5 and seconds."""
    from shammie.filters.scoring import DEFAULT_BATCH, ScoreOptions, ScoreStage, run_scoring

    options = ScoreOptions(job=job, model=model, kind="edu", backend=backend, input_stage=input_stage,
                           output_stage=output_stage, batch_size=batch_size or DEFAULT_BATCH)
    return run_scoring(ScoreStage, options, workers=workers, ray_address=ray_address, progress=progress,
                       overwrite=overwrite, wait=wait)


def subset(job: str, *, threshold: float = 3, output: str | None = None, input_stage: str | None = None,
           progress: bool = True, workers: int | None = None, ray_address: str | None = None,
           overwrite: bool = False, wait: bool = False) -> dict:
    """Keep documents scoring at least `threshold` -> `edu-<threshold>/` (or `output`).

    An integer threshold compares `edu_int_score` (FineWeb-Edu's int_score >= 3);
    a fractional one compares the continuous `edu_score`."""
    from shammie.filters.scoring import SubsetOptions, SubsetStage, run_scoring

    options = SubsetOptions(job=job, threshold=float(threshold), output=output, input_stage=input_stage)
    return run_scoring(SubsetStage, options, workers=workers, ray_address=ray_address, progress=progress,
                       overwrite=overwrite, wait=wait)


# ---------------------------------------------------------------- train

def train(inputs: Sequence[str], output: str, *, text_column: str = "text", score_column: str = "score",
          holdout: float = 0.1, threshold: float = 3, seed: int = 0, params=None) -> dict:
    """Train the fastText edu scorer on 0-5 annotations; report held-out MSE / macro F1 / binary F1.

    The saved model is the one the metrics describe (trained without the held-out
    split); `holdout=0` trains on everything and reports no metrics."""
    from shammie.filters.edu_fasttext import (FastTextEduScorer, FastTextParams, fasttext_args, save_model,
                                              train_fasttext)
    from shammie.filters.edu_metrics import edu_report
    from shammie.filters.edu_tables import read_labelled
    from shammie.pipeline import storage

    started = time.monotonic()
    params = params or FastTextParams(seed=seed)
    texts, raw = read_labelled(list(inputs), text_column, score_column)
    try:
        scores = np.asarray([float(s) for s in raw], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"column {score_column!r} must hold numbers 0-5") from None
    if np.any((scores < 0) | (scores > 5)):
        raise InputError(f"column {score_column!r} has values outside 0-5 (min {scores.min()}, max {scores.max()})")
    if not 0 <= holdout < 1:
        raise InputError("--holdout must be in [0, 1)")
    labels = int_scores(scores)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = int(round(len(texts) * holdout))
    if holdout > 0 and n_test < 1:
        n_test = 1
    test_idx, train_idx = order[:n_test], order[n_test:]
    if len(train_idx) < 2:
        raise InputError(f"only {len(texts)} labelled rows; need more to train")
    model = train_fasttext([texts[i] for i in train_idx], [str(int(labels[i])) for i in train_idx], params)
    save_model(model, output)
    report: dict[str, Any] = {
        "output": output,
        "inputs": list(inputs),
        "rows": len(texts),
        "train_rows": int(len(train_idx)),
        "label_counts": {str(k): int(np.sum(labels == k)) for k in range(6)},
        "params": params.as_dict(),
        "epochs_used": int(model.epoch),
        "fasttext_used": fasttext_args(model),
    }
    if n_test:
        scorer = FastTextEduScorer(model, max_chars=params.max_chars)
        predicted = scorer.score_texts([texts[i] for i in test_idx])
        report["holdout"] = edu_report(scores[test_idx], predicted, threshold=threshold)
        # A constant predictor (the training mean) puts the numbers in context on small data.
        baseline = np.full(len(test_idx), scores[train_idx].mean())
        report["holdout"]["baseline_mean_mse"] = float(np.mean((scores[test_idx] - baseline) ** 2))
    report["seconds"] = round(time.monotonic() - started, 3)
    storage.write_json_atomic(output + ".json", report)
    return report


def annotate(job: str, **kwargs) -> dict:
    """See shammie.filters.llm_annotate.annotate; also records the "edu_annotate" stats section."""
    from shammie.filters.llm_annotate import annotate as _annotate
    from shammie.pipeline import jobdir

    summary = _annotate(job, **kwargs)
    jobdir.update_stats(job, "edu_annotate", summary)
    return summary
