"""Classification metrics in numpy, so `fer-edge eval` of a .tflite needs no TensorFlow."""

from __future__ import annotations

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows = truth)."""
    k = len(labels)
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    n = int(len(y_true))
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1.mean()),
        "labels": list(labels),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "n": int(support[i]),
            }
            for i, name in enumerate(labels)
        },
        "confusion": confusion.tolist(),
    }


def format_report(report: dict, title: str = "") -> str:
    labels = report["labels"]
    width = max(8, *(len(lb) for lb in labels))
    lines = []
    if title:
        lines.append(title)
    lines.append(
        f"n={report['n']}  accuracy={report['accuracy']:.4f}  macro_f1={report['macro_f1']:.4f}"
    )
    lines.append("confusion (rows = true, columns = predicted):")
    lines.append(
        " " * (width + 1) + " ".join(f"{lb[:width]:>{width}}" for lb in labels) + "   recall"
    )
    for i, lb in enumerate(labels):
        row = " ".join(f"{v:>{width}d}" for v in report["confusion"][i])
        lines.append(f"{lb:>{width}} {row}   {report['per_class'][lb]['recall']:.3f}")
    return "\n".join(lines)
