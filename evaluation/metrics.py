"""Classification metrics in numpy, so `fer-edge eval` of a .tflite needs no TensorFlow.

Reports lead with macro-F1 and per-class recall: FER2013's classes are unbalanced (happy is a
quarter of the faces, disgust 1.5%), so accuracy alone rewards a model that ignores the rare
classes. Calibration (ECE, reliability bins) says whether a 0.9 score means 90% right.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 ("On Calibration of ...")


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...]) -> dict:
    """macro-F1, per-class recall, accuracy, per-class precision/recall/F1 and the confusion
    matrix (rows = truth)."""
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
        "macro_f1": float(f1.mean()),
        "recall": {name: float(recall[i]) for i, name in enumerate(labels)},
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "n": n,
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


def calibration(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Expected calibration error and the reliability diagram's bins.

    Each face falls in the equal-width bin (lo, hi] of its top probability (the confidence);
    ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|. Empty bins
    carry no weight and are listed with n = 0.
    """
    probs = np.asarray(probs, np.float64)
    y_true = np.asarray(y_true, np.int64)
    conf = probs.max(1)
    hit = probs.argmax(1) == y_true
    edges = np.arange(bins + 1) / bins  # b / bins exactly (linspace gives 3 * 0.1 for 0.3)
    # side="left": a confidence equal to an edge belongs to the bin below it, (lo, hi]
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        m = which == b
        row = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum())}
        if m.any():
            row["accuracy"] = float(hit[m].mean())
            row["confidence"] = float(conf[m].mean())
            ece += m.mean() * abs(row["accuracy"] - row["confidence"])
        table.append(row)
    return {"ece": float(ece), "ece_bins": bins, "reliability": table}


def format_report(report: dict, title: str = "") -> str:
    """The report as text: macro-F1 first, then per-class recall, accuracy and ECE, then the
    confusion matrix with each row's recall."""
    labels = report["labels"]
    width = max(8, *(len(lb) for lb in labels))
    lines = [title] if title else []
    head = f"macro_f1={report['macro_f1']:.4f}  accuracy={report['accuracy']:.4f}"
    if "ece" in report:
        head += f"  ece={report['ece']:.4f} ({report['ece_bins']} bins)"
    lines.append(f"{head}  n={report['n']}")
    recall = {lb: report["per_class"][lb]["recall"] for lb in labels}
    lines.append("recall  " + "  ".join(f"{lb}={r:.3f}" for lb, r in recall.items()))
    lines.append("confusion (rows = true, columns = predicted):")
    lines.append(
        " " * (width + 1) + " ".join(f"{lb[:width]:>{width}}" for lb in labels) + "   recall"
    )
    for i, lb in enumerate(labels):
        row = " ".join(f"{v:>{width}d}" for v in report["confusion"][i])
        lines.append(f"{lb:>{width}} {row}   {recall[lb]:.3f}")
    return "\n".join(lines)
