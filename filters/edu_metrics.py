"""Held-out metrics for the edu scorer and the quality classifier.

Why hand-written: these are the four numbers FineWeb-Edu and DCLM report (MSE,
macro F1 of the rounded score, binary F1 at a threshold, ROC AUC); each is a few
lines of numpy, and scikit-learn is not a Shammie dependency.
"""

from __future__ import annotations

import numpy as np

EDU_LABELS = (0, 1, 2, 3, 4, 5)


def int_scores(scores: np.ndarray) -> np.ndarray:
    """Round half up and clip to 0-5 (2.5 counts as 3, like a reader would expect)."""
    return np.clip(np.floor(np.asarray(scores, dtype=np.float64) + 0.5), 0, 5).astype(np.int8)


def mse(y_true, y_pred) -> float:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return float(np.mean((y_true - y_pred) ** 2)) if len(y_true) else float("nan")


def _f1(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def binary_f1(y_true, y_pred) -> float:
    """F1 of the positive class for boolean arrays."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    return _f1(int(np.sum(t & p)), int(np.sum(~t & p)), int(np.sum(t & ~p)))


def macro_f1(y_true, y_pred, labels=None) -> float:
    """Mean per-class F1 over the classes present in the truth or the predictions."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if labels is None:
        labels = sorted(set(t.tolist()) | set(p.tolist()))
    if not labels:
        return float("nan")
    return float(np.mean([binary_f1(t == c, p == c) for c in labels]))


def confusion(y_true, y_pred, labels=EDU_LABELS) -> list[list[int]]:
    """Rows: true label, columns: predicted label."""
    index = {c: i for i, c in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for a, b in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist()):
        if a in index and b in index:
            m[index[a]][index[b]] += 1
    return m


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties count half."""
    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney U from average ranks (ties get their mean rank).
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[t].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def edu_report(y_true, y_pred_scores, threshold: float = 3) -> dict:
    """The FineWeb-Edu held-out report for 0-5 truth vs. continuous predictions."""
    y_true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred_scores, dtype=np.float64)
    true_int = int_scores(y_true)
    pred_int = int_scores(pred)
    return {
        "examples": int(len(y_true)),
        "mse": mse(y_true, pred),
        "mse_rounded": mse(y_true, pred_int),
        "accuracy_rounded": float(np.mean(true_int == pred_int)) if len(y_true) else float("nan"),
        "macro_f1": macro_f1(true_int, pred_int),  # over labels in truth or predictions, as sklearn
        "threshold": threshold,
        "binary_f1": binary_f1(true_int >= threshold, pred_int >= threshold),
        "confusion": confusion(true_int, pred_int),
    }
