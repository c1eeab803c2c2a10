"""`shammie classify`: DCLM-style binary fastText quality filter (train with CV, score a job)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from shammie.filters import classify, edu
from shammie.filters.edu_fasttext import FastTextParams
from shammie.filters.edu_metrics import roc_auc
from shammie.filters.edu_synthetic import graded_corpus
from shammie.pipeline import documents, jobdir
from shammie.pipeline.errors import ShammieError

SMALL = FastTextParams(bucket=20_000, dim=16, thread=1, seed=0)


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_binary_labels_and_folds():
    assert classify.binary_labels([1, 0, "hq", "cc", True, "false", "1.0", "__label__hq"]).tolist() == \
        [True, False, True, False, True, False, True, True]
    with pytest.raises(ShammieError, match="not binary"):
        classify.binary_labels([2])
    positive = np.array([True] * 10 + [False] * 20)
    folds = classify.stratified_folds(positive, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(30))
    assert all(positive[f].sum() == 2 and len(f) == 6 for f in folds)


def write_labelled_jsonl(path, n=240, seed=0):
    texts, levels = graded_corpus(n, seed=seed)
    with open(path, "w") as f:
        for t, lv in zip(texts, levels):
            f.write(json.dumps({"text": t, "label": int(lv >= 3)}) + "\n")
    return texts, levels


def test_train_cross_validates_and_score_adds_column(tmp_path, ray_session):
    write_labelled_jsonl(tmp_path / "labels.jsonl")
    model = str(tmp_path / "q.bin")
    report = classify.train([str(tmp_path / "labels.jsonl")], model, cv=4, params=SMALL)
    cv = report["cross_validation"]
    assert report["rows"] == 240 and report["positives"] == 120 and len(cv["per_fold"]) == 4
    assert cv["roc_auc_mean"] > 0.95 and cv["roc_auc_pooled"] > 0.95
    assert json.loads(open(model + ".json").read())["cross_validation"]["folds"] == 4

    job = str(tmp_path / "job")
    texts, levels = graded_corpus(40, seed=9)
    rows = [{"id": f"d{i}", "text": t, "url": None, "dump": "x", "date": None, "language": "en",
             "language_score": 1.0, "warc_file": "w", "warc_offset": i} for i, t in enumerate(texts)]
    documents.write_table(pa.Table.from_pylist(rows, schema=documents.DOCUMENT_SCHEMA), f"{job}/documents/a.parquet")
    jobdir.mark_complete(job, "documents")
    stats = classify.score(job, model, progress=False)
    assert stats["documents"] == 40 and stats["output_stage"] == "classified"
    out = documents.read_table(f"{job}/classified/a.parquet")
    assert out.column_names == list(documents.DOCUMENT_SCHEMA.names) + ["quality_score"]
    q = out["quality_score"].to_numpy()
    hq = np.array(levels) >= 3
    assert np.all((q >= 0) & (q <= 1)) and roc_auc(hq, q) > 0.95
    assert jobdir.is_complete(job, "classified") and jobdir.read_stats(job)["classify"]["documents"] == 40

    # Chained with edu scoring: scored/ keeps quality_score and adds the edu columns.
    edu_model = str(tmp_path / "edu.bin")
    documents.write_table(pa.table({"text": texts, "score": levels}), str(tmp_path / "ann.parquet"))
    edu.train([str(tmp_path / "ann.parquet")], edu_model, holdout=0, params=SMALL)
    edu.score(job, edu_model, input_stage="classified", progress=False)
    both = documents.read_table(f"{job}/scored/a.parquet")
    assert both.column_names[-3:] == ["quality_score", "edu_score", "edu_int_score"]
    with pytest.raises(ShammieError, match="already has"):
        classify.score(job, model, input_stage="scored", output_stage="classified2", progress=False)


def test_cli_classify_train(tmp_path, capsys):
    from shammie.jobs.cli import main

    write_labelled_jsonl(tmp_path / "l.jsonl", n=60)
    assert main(["classify", "train", str(tmp_path / "l.jsonl"), "--output", str(tmp_path / "m.bin"),
                 "--cv", "3", "--bucket", "20000", "--dim", "16", "--threads", "1"]) == 0
    assert "3-fold ROC AUC" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "m.bin")
    assert main(["classify", "train", str(tmp_path / "l.jsonl"), "--output", str(tmp_path / "m.bin"),
                 "--label-column", "nope"]) == 2


@pytest.mark.shared_data
@pytest.mark.slow
def test_dclm_human_agreement_cross_validation(shared_data, tmp_path):
    """281 real CC pages with human binary labels: the 5-fold AUC must beat chance clearly."""
    path = shared_data / "labels" / "dclm-human-quality-agreement.jsonl"
    if not path.exists():
        pytest.skip(f"{path} absent")
    report = classify.train([str(path)], str(tmp_path / "q.bin"), cv=5,
                            params=FastTextParams(bucket=100_000, thread=1, seed=0))
    assert report["rows"] == 281 and report["positives"] == 152
    assert report["cross_validation"]["roc_auc_mean"] > 0.75
