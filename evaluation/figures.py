"""PNG pictures of evaluation results: confusion matrices and reliability diagrams.

matplotlib is optional (a Pi has only the `edge` extra): without it every function returns None
and the JSON results, which hold the same numbers, are still complete. PNGs are written
atomically, so a reader never sees half a picture.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from fer_edge.edge.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (logged) when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no plots (pip install matplotlib)")
        return None
    return plt


def save_png(plt, fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def confusion_plot(report: dict, title: str, path: Path) -> Path | None:
    """Row-normalised confusion matrix (rows = true class) with counts in each cell."""
    plt = pyplot()
    if plt is None:
        return None
    counts = np.asarray(report["confusion"], dtype=np.int64)
    labels = report["labels"]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{rates[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (diagonal = recall)")
    ax.set_title(title, fontsize=10)
    return save_png(plt, fig, path)


def reliability_plot(report: dict, title: str, path: Path) -> Path | None:
    """Accuracy per confidence bin (bars) beside the bin's mean confidence (dots), the diagonal a
    calibrated model sits on, and how many faces fall in each bin (the ECE's weights)."""
    plt = pyplot()
    if plt is None:
        return None
    bins = report["reliability"]
    lo = np.array([b["lo"] for b in bins])
    width = np.array([b["hi"] - b["lo"] for b in bins])
    n = np.array([b["n"] for b in bins])
    acc = np.array([b.get("accuracy", 0.0) for b in bins])
    conf = np.array([b.get("confidence", 0.0) for b in bins])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.bar(lo, acc, width, align="edge", edgecolor="black", alpha=0.8, label="accuracy")
    used = n > 0  # the distance from each dot to its bar's top is what ECE weighs
    top.plot((lo + width / 2)[used], conf[used], "o", color="tab:red", markersize=4,
             label="mean confidence")  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title}\nECE {report['ece']:.3f} ({report['ece_bins']} bins)", fontsize=10)
    bottom.bar(lo, n, width, align="edge", color="grey", edgecolor="black")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("faces")
    return save_png(plt, fig, path)
