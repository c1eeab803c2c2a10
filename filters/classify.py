"""A generic DCLM-style fastText quality classifier: binary hq-vs-cc, score = P(hq).

    train  labelled tables (JSONL/Parquet/CSV with `text` and a 0/1 `label`) -> MODEL.bin,
           with k-fold cross-validated ROC AUC
    score  add a `quality_score` column (P(high quality)) to a job's documents -> a new folder

DCLM trained its fastText filter on instruction data (positives) against random
Common Crawl (negatives); the labels here can be anything binary. Scoring reuses
the edu stage's Ray plumbing (one task per file, resumable) and only adds a column.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from shammie.pipeline import jobdir
from shammie.pipeline.errors import InputError

POSITIVE = "hq"
NEGATIVE = "cc"
DEFAULT_COLUMN = "quality_score"
DEFAULT_OUTPUT_STAGE = jobdir.CLASSIFIED
_TRUE = {"1", "true", "yes", "hq", "pos", "positive", "high", "__label__hq", "__label__1"}
_FALSE = {"0", "false", "no", "cc", "neg", "negative", "low", "__label__cc", "__label__0"}


def binary_labels(raw: Sequence[Any]) -> np.ndarray:
    """0/1, true/false, hq/cc (and fastText-style __label__ names) -> bool array."""
    out = np.zeros(len(raw), dtype=bool)
    for i, value in enumerate(raw):
        key = str(value).strip().lower()
        if key in ("1.0",):
            key = "1"
        if key in ("0.0",):
            key = "0"
        if key in _TRUE:
            out[i] = True
        elif key not in _FALSE:
            raise InputError(f"label {value!r} is not binary (use 1/0, true/false or hq/cc)")
    return out


def _fit(texts: Sequence[str], positive: np.ndarray, params):
    from shammie.filters.edu_fasttext import train_fasttext

    return train_fasttext(list(texts), [POSITIVE if p else NEGATIVE for p in positive], params)


def _p_hq(model, texts: Sequence[str], max_chars: int) -> np.ndarray:
    from shammie.filters.edu_fasttext import FastTextBinaryScorer

    return FastTextBinaryScorer(model, positive=POSITIVE, max_chars=max_chars).score_texts(list(texts))


def stratified_folds(positive: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k test-index arrays, each with about the same share of positives."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for cls in (True, False):
        idx = np.flatnonzero(positive == cls)
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[j % k].append(int(i))
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def cross_validate(texts: Sequence[str], positive: np.ndarray, params, k: int = 5, seed: int = 0) -> dict:
    """ROC AUC (and accuracy at 0.5) of P(hq) on each held-out fold, plus pooled over all folds."""
    from shammie.filters.edu_metrics import roc_auc

    if k < 2:
        raise InputError("--cv must be at least 2")
    if min(int(positive.sum()), int((~positive).sum())) < k:
        raise InputError(f"need at least {k} examples of each label for {k}-fold cross-validation")
    pooled = np.zeros(len(texts))
    per_fold = []
    for test in stratified_folds(positive, k, seed):
        train = np.setdiff1d(np.arange(len(texts)), test)
        model = _fit([texts[i] for i in train], positive[train], params)
        p = _p_hq(model, [texts[i] for i in test], params.max_chars)
        pooled[test] = p
        per_fold.append({"examples": int(len(test)), "roc_auc": roc_auc(positive[test], p),
                         "accuracy": float(np.mean((p >= 0.5) == positive[test]))})
    aucs = np.array([f["roc_auc"] for f in per_fold])
    return {
        "folds": k,
        "roc_auc_mean": float(aucs.mean()),
        "roc_auc_std": float(aucs.std()),
        "roc_auc_pooled": roc_auc(positive, pooled),
        "accuracy_mean": float(np.mean([f["accuracy"] for f in per_fold])),
        "per_fold": per_fold,
    }


def train(inputs: Sequence[str], output: str, *, text_column: str = "text", label_column: str = "label",
          cv: int = 5, seed: int = 0, params=None) -> dict:
    """Cross-validate (unless cv=0), then train on everything and save MODEL.bin (+ MODEL.bin.json)."""
    from shammie.filters.edu_fasttext import FastTextParams, fasttext_args, save_model
    from shammie.filters.edu_tables import read_labelled
    from shammie.pipeline import storage

    started = time.monotonic()
    params = params or FastTextParams(seed=seed)
    texts, raw = read_labelled(list(inputs), text_column, label_column)
    positive = binary_labels(raw)
    report: dict[str, Any] = {"output": output, "inputs": list(inputs), "rows": len(texts),
                              "positives": int(positive.sum()), "negatives": int((~positive).sum()),
                              "labels": {"positive": POSITIVE, "negative": NEGATIVE}, "params": params.as_dict()}
    if cv:
        report["cross_validation"] = cross_validate(texts, positive, params, k=cv, seed=seed)
    model = _fit(texts, positive, params)
    report["fasttext_used"] = fasttext_args(model)
    save_model(model, output)
    report["seconds"] = round(time.monotonic() - started, 3)
    storage.write_json_atomic(output + ".json", report)
    return report


# ---------------------------------------------------------------- score stage


def score(job: str, model: str, *, column: str = DEFAULT_COLUMN, output_stage: str = DEFAULT_OUTPUT_STAGE,
          input_stage: str | None = None, workers: int | None = None, ray_address: str | None = None,
          progress: bool = True, overwrite: bool = False, wait: bool = False) -> dict:
    """Add `column` = P(high quality) to every document -> JOB/<output_stage>/ (stats section "classify").

    The scoring stage is the one edu scoring uses (`shammie.filters.scoring`), with the quality scorer."""
    from shammie.filters.scoring import ScoreOptions, ScoreStage, run_scoring

    options = ScoreOptions(job=job, model=model, kind="quality", column=column, output_stage=output_stage,
                           input_stage=input_stage)
    return run_scoring(ScoreStage, options, workers=workers, ray_address=ray_address, progress=progress,
                       overwrite=overwrite, wait=wait)
