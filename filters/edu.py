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

import os
import time
from typing import Any, Sequence

import numpy as np

from shammie.pipeline.errors import UserError

SCORE_COLUMN = "edu_score"
INT_COLUMN = "edu_int_score"
BACKENDS = ("fasttext", "transformers")
DEFAULT_BATCH = 1024  # documents per score_texts call (memory stays small, progress stays live)

_SCORERS: dict[tuple, Any] = {}  # per worker process: a Ray worker reuses its loaded model across tasks


def load_scorer(model: str, backend: str = "fasttext", **kwargs):
    """A scorer object with `score_texts(list[str]) -> np.ndarray` (cached per process)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    key = (model, backend, tuple(sorted(kwargs.items())))
    if key not in _SCORERS:
        if backend == "fasttext":
            from shammie.filters.edu_fasttext import FastTextEduScorer

            _SCORERS[key] = FastTextEduScorer(model, **kwargs)
        else:
            try:
                from shammie.filters.edu_transformers import TransformersEduScorer
            except ImportError as e:
                raise UserError(f"the transformers backend needs torch and transformers: {e}") from None
            _SCORERS[key] = TransformersEduScorer(model, **kwargs)
    return _SCORERS[key]


def load_classifier_scorer(model: str):
    """The `shammie classify` scorer (P(high quality)), cached per process like load_scorer."""
    key = (model, "classify", ())
    if key not in _SCORERS:
        from shammie.filters.edu_fasttext import FastTextBinaryScorer

        _SCORERS[key] = FastTextBinaryScorer(model)
    return _SCORERS[key]


def int_scores(scores: np.ndarray) -> np.ndarray:
    from shammie.filters.edu_metrics import int_scores as _int

    return _int(scores)


def whitespace_tokens(table, column: str = "text") -> np.ndarray:
    """Whitespace-separated words per row (Arrow compute; the count stats.json reports as tokens)."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    words = pc.list_value_length(pc.utf8_split_whitespace(table[column]))
    return np.asarray(pc.fill_null(words, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def histogram(int_values: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(int_values, dtype=np.int64), minlength=6)[:6]
    return {str(k): int(v) for k, v in enumerate(counts)}


def _add_column(table, name: str, values, type_):
    import pyarrow as pa

    return table.append_column(pa.field(name, type_), pa.array(values, type=type_))


# ---------------------------------------------------------------- score stage

def _score_file(payload: dict) -> dict:
    """Ray task: score one Parquet file, write it to the output folder, return its stats."""
    import pyarrow as pa

    from shammie.pipeline import documents

    started = time.monotonic()
    table = documents.read_table(payload["input"])
    if SCORE_COLUMN in table.column_names or INT_COLUMN in table.column_names:
        raise UserError(f"{payload['input']} already has {SCORE_COLUMN}; score from documents/ or deduped/")
    scorer = load_scorer(payload["model"], payload["backend"], **payload.get("scorer_kwargs", {}))
    texts = table["text"].to_pylist()
    batch = payload.get("batch_size") or DEFAULT_BATCH
    scores = np.concatenate([np.asarray(scorer.score_texts(texts[i:i + batch]), dtype=np.float64)
                             for i in range(0, len(texts), batch)]) if texts else np.zeros(0)
    ints = int_scores(scores)
    table = _add_column(table, SCORE_COLUMN, scores.astype(np.float32), pa.float32())
    table = _add_column(table, INT_COLUMN, ints, pa.int8())
    documents.write_table(table, payload["output"])
    return {
        "documents": int(table.num_rows),
        "tokens": int(whitespace_tokens(table).sum()),
        "histogram": histogram(ints),
        "seconds": round(time.monotonic() - started, 3),
    }


def _model_fingerprint(model: str) -> dict:
    """What identifies a model's scores: path plus size/mtime (a retrained file re-scores)."""
    from shammie.pipeline import storage

    fs, path = storage.get_fs(model)
    if not fs.exists(path):
        raise UserError(f"model {model} does not exist")
    info = fs.info(path)
    return {"model": model, "size": info.get("size"),
            "mtime": str(info.get("mtime") or info.get("LastModified") or info.get("ETag") or "")}


def check_columns_absent(files: list[str], columns: list[str], hint: str) -> None:
    """Fail in the driver, before any task starts, when the input already has a column we would add."""
    import pyarrow.parquet as pq

    from shammie.pipeline import storage

    fs, path = storage.get_fs(files[0])
    with fs.open(path, "rb") as f:
        names = pq.read_schema(f).names
    clash = [c for c in columns if c in names]
    if clash:
        raise UserError(f"{files[0]} already has {', '.join(clash)}; {hint}")


def _prepare_output(job: str, stage: str, config: dict) -> None:
    """Keep finished tasks only when they were made with the same config; else start the folder over."""
    from shammie.pipeline import jobdir, storage

    config_url = storage.join(jobdir.stage_path(job, stage), "_config.json")
    previous = storage.read_json(config_url)
    if previous is not None and previous != config:
        print(f"{jobdir.stage_path(job, stage)} was made with different settings; rescoring from scratch")
        storage.remove(jobdir.stage_path(job, stage))
    elif previous is None and storage.exists(jobdir.stage_path(job, stage)):
        storage.remove(jobdir.stage_path(job, stage))
    if previous != config:
        storage.write_json_atomic(config_url, config)


def _sum_stats(results: dict[str, dict]) -> dict:
    hist = {str(k): 0 for k in range(6)}
    docs = tokens = 0
    for r in results.values():
        docs += int(r.get("documents", 0))
        tokens += int(r.get("tokens", 0))
        for k, v in (r.get("histogram") or {}).items():
            hist[k] = hist.get(k, 0) + int(v)
    return {"documents": docs, "tokens": tokens, "histogram": hist}


def score(job: str, model: str, *, backend: str = "fasttext", input_stage: str | None = None,
          workers: int | None = None, ray_address: str | None = None, progress: bool = True,
          batch_size: int | None = None, output_stage: str = "scored") -> dict:
    """Add `edu_score`/`edu_int_score` to every document of the job's input folder -> `scored/`.

    Returns (and writes as the "edu_score" section of stats.json) documents, tokens
    (whitespace-separated words), a histogram of edu_int_score 0-5 and seconds."""
    from shammie.pipeline import jobdir, storage
    from shammie.pipeline.parallel import run_tasks
    from shammie.pipeline.ray_runtime import init_ray

    started = time.monotonic()
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not storage.is_remote(model):
        model = os.path.abspath(storage.strip_file_scheme(model))
    stage = jobdir.resolve_input_stage(job, input_stage, before=output_stage)
    if stage == output_stage:
        raise UserError(f"input and output are both {output_stage}/")
    files = jobdir.stage_files(job, stage)
    if not files:
        raise UserError(f"{jobdir.stage_path(job, stage)} has no Parquet files")
    check_columns_absent(files, [SCORE_COLUMN, INT_COLUMN],
                         "score an earlier folder (--input-stage documents or deduped)")
    # Load once in the driver: a bad model fails here with a clear message, not in N workers.
    load_scorer(model, backend)
    config = {"backend": backend, "input_stage": stage, **_model_fingerprint(model)}
    _prepare_output(job, output_stage, config)
    tasks = []
    for f in files:
        name = os.path.basename(f)
        tasks.append((name.removesuffix(".parquet"), {
            "input": f, "output": storage.join(jobdir.stage_path(job, output_stage), name),
            "model": model, "backend": backend, "batch_size": batch_size,
        }))
    init_ray(ray_address, workers)
    results = run_tasks(job, output_stage, tasks, _score_file, desc=f"edu score ({backend})", progress=progress)
    stats = {
        **_sum_stats(results),
        "tokens_kind": "whitespace-separated words",
        "input_stage": stage,
        "output_stage": output_stage,
        "model": model,
        "backend": backend,
        "files": len(files),
        "seconds": round(time.monotonic() - started, 3),
    }
    stats["documents_per_second"] = round(stats["documents"] / max(stats["seconds"], 1e-9), 1)
    jobdir.mark_complete(job, output_stage, {"documents": stats["documents"], "model": model})
    jobdir.update_stats(job, "edu_score", stats)
    return stats


# ---------------------------------------------------------------- subset stage

def subset_name(threshold: float) -> str:
    value = float(threshold)
    return f"edu-{int(value)}" if value.is_integer() else f"edu-{value:g}"


def subset(job: str, *, threshold: float = 3, output: str | None = None, input_stage: str | None = None,
           progress: bool = True) -> dict:
    """Keep documents scoring at least `threshold` -> `edu-<threshold>/` (or `output`).

    An integer threshold compares `edu_int_score` (FineWeb-Edu's int_score >= 3);
    a fractional one compares the continuous `edu_score`."""
    import pyarrow.compute as pc
    from tqdm import tqdm

    from shammie.pipeline import documents, jobdir, storage

    started = time.monotonic()
    output = output or subset_name(threshold)
    if "/" in output or "://" in output or not output.startswith(jobdir.SUBSET_PREFIXES):
        raise UserError(f"--output {output!r}: give a folder name inside the job starting with "
                        f"{' or '.join(jobdir.SUBSET_PREFIXES)} (e.g. edu-3), so later stages find it")
    if input_stage is None:
        if not jobdir.is_complete(job, jobdir.SCORED):
            raise UserError(f"{jobdir.stage_path(job, jobdir.SCORED)} is not complete; run `shammie edu score` first")
        input_stage = jobdir.SCORED
    stage = jobdir.resolve_input_stage(job, input_stage)
    if stage == output:
        raise UserError("input and output folders are the same")
    files = jobdir.stage_files(job, stage)
    use_int = float(threshold).is_integer()
    column = INT_COLUMN if use_int else SCORE_COLUMN
    out_dir = jobdir.stage_path(job, output)
    # A subset is cheap to rebuild, so a re-run rewrites it; _SUCCESS goes last.
    if storage.exists(out_dir):
        storage.remove(out_dir)
    totals = {"input_documents": 0, "input_tokens": 0, "documents": 0, "tokens": 0}
    hist = np.zeros(6, dtype=np.int64)
    for f in tqdm(files, desc=f"edu subset >= {threshold:g}", unit="file", disable=not progress):
        table = documents.read_table(f)
        if column not in table.column_names:
            raise UserError(f"{f} has no {column} column; run `shammie edu score` first")
        tokens = whitespace_tokens(table)
        keep = pc.fill_null(pc.greater_equal(table[column], threshold), False)
        kept = table.filter(keep)
        mask = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
        totals["input_documents"] += table.num_rows
        totals["input_tokens"] += int(tokens.sum())
        totals["documents"] += kept.num_rows
        totals["tokens"] += int(tokens[mask].sum())
        if kept.num_rows:
            hist += np.bincount(np.asarray(kept[INT_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int64),
                                minlength=6)[:6]
            documents.write_table(kept, storage.join(out_dir, os.path.basename(f)))
    stats = {
        **totals,
        "tokens_kind": "whitespace-separated words",
        "document_fraction": round(totals["documents"] / totals["input_documents"], 6) if totals["input_documents"] else 0.0,
        "token_fraction": round(totals["tokens"] / totals["input_tokens"], 6) if totals["input_tokens"] else 0.0,
        "histogram": {str(k): int(v) for k, v in enumerate(hist)},
        "threshold": threshold,
        "compared_column": column,
        "input_stage": stage,
        "output": output,
        "files": len(files),
        "seconds": round(time.monotonic() - started, 3),
    }
    jobdir.mark_complete(job, output, {"documents": stats["documents"], "threshold": threshold})
    previous = jobdir.read_stats(job).get("edu_subset") or {}
    by_output = dict(previous.get("subsets") or {})
    by_output[output] = {k: stats[k] for k in ("documents", "tokens", "threshold", "document_fraction", "token_fraction")}
    jobdir.update_stats(job, "edu_subset", {**stats, "subsets": by_output})
    return {**stats, "subsets": by_output}


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
        raise UserError(f"column {score_column!r} must hold numbers 0-5") from None
    if np.any((scores < 0) | (scores > 5)):
        raise UserError(f"column {score_column!r} has values outside 0-5 (min {scores.min()}, max {scores.max()})")
    if not 0 <= holdout < 1:
        raise UserError("--holdout must be in [0, 1)")
    labels = int_scores(scores)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = int(round(len(texts) * holdout))
    if holdout > 0 and n_test < 1:
        n_test = 1
    test_idx, train_idx = order[:n_test], order[n_test:]
    if len(train_idx) < 2:
        raise UserError(f"only {len(texts)} labelled rows; need more to train")
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
