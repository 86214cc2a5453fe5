"""Independent NumPy references for what the runtime computes with OpenCV or by hand.

Written from the rules as stated (the contract's crop rule, the metrics' textbook definitions),
not from the code under test, so a test comparing the two can catch a slip in either.
"""

from __future__ import annotations

import math

import numpy as np


def reference_square(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """(x0, y0, side) of the crop square: centred on the box, the longer side grown by `margin`
    of itself on each side; positions and side rounded to the nearest pixel."""
    x, y, w, h = box
    side = max(w, h) + 2 * margin * max(w, h)
    return round(x + (w - side) / 2), round(y + (h - side) / 2), max(1, round(side))


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """Output pixel i is the mean of the input over [i*s, (i+1)*s), s = n_in / n_out >= 1."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        a, b = i * s, (i + 1) * s
        for j in range(math.floor(a), min(n_in, math.ceil(b))):
            w[i, j] = max(0.0, min(b, j + 1) - max(a, j))
    return w / s


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear with pixel centres aligned ((i + 0.5) * s - 0.5), clamped at the edges."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        f = (i + 0.5) * s - 0.5
        j = math.floor(f)
        t = f - j
        if j < 0:
            j, t = 0, 0.0
        if j >= n_in - 1:
            j, t = n_in - 1, 0.0
        w[i, j] += 1 - t
        if t:
            w[i, j + 1] += t
    return w


def reference_crop(
    gray: np.ndarray, box: tuple[int, int, int, int], size: int, margin: float
) -> np.ndarray:
    """The model's input for a face box in a grey frame, as float64 before rounding.

    Pixels outside the frame repeat the nearest edge pixel (index clamping, not padding);
    a square larger than `size` is area-averaged, a smaller one bilinearly enlarged."""
    x0, y0, side = reference_square(box, margin)
    h, w = gray.shape
    rows = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    cols = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    square = gray[np.ix_(rows, cols)].astype(np.float64)
    weights = _area_weights(side, size) if side >= size else _linear_weights(side, size)
    return weights @ square @ weights.T


def reference_gray(bgr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of a BGR image, float64: 0.299 R + 0.587 G + 0.114 B."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def reference_report(y_true, y_pred, k: int) -> dict:
    """accuracy, per-class precision/recall/F1, macro-F1 and the confusion matrix, counted
    one prediction at a time (0 where a ratio has no denominator)."""
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred):
        confusion[t][p] += 1
    per_class = []
    for c in range(k):
        tp = confusion[c][c]
        predicted = sum(confusion[r][c] for r in range(k))
        actual = sum(confusion[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append((precision, recall, f1, actual))
    n = len(y_true)
    return {
        "n": n,
        "accuracy": sum(confusion[c][c] for c in range(k)) / n if n else 0.0,
        "macro_f1": sum(pc[2] for pc in per_class) / k,
        "per_class": per_class,
        "confusion": confusion,
    }


def assert_report_matches_confusion(report: dict) -> None:
    """A metrics report (`fer-edge eval --json`, a training report) whose every figure follows
    from its own confusion matrix (rows = truth): n, accuracy, per-class P/R/F1/n, macro-F1."""
    confusion = np.asarray(report["confusion"])
    k = len(confusion)
    assert confusion.shape == (k, k) and confusion.min() >= 0
    assert report["n"] == confusion.sum() > 0
    # the confusion expanded back into (truth, prediction) pairs, then counted afresh
    pairs = [(t, p) for t in range(k) for p in range(k) for _ in range(confusion[t, p])]
    ref = reference_report([t for t, _ in pairs], [p for _, p in pairs], k)
    assert abs(report["accuracy"] - ref["accuracy"]) < 1e-9
    assert abs(report["macro_f1"] - ref["macro_f1"]) < 1e-9
    per_class = report["per_class"]
    names = report.get("labels") or list(per_class)
    assert len(names) == k
    for name, (precision, recall, f1, n) in zip(names, ref["per_class"]):
        got = per_class[name]
        assert got["n"] == n, name
        assert abs(got["precision"] - precision) < 1e-9, name
        assert abs(got["recall"] - recall) < 1e-9, name
        assert abs(got["f1"] - f1) < 1e-9, name
