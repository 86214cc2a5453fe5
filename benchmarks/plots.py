"""PNG plots of benchmark results. matplotlib is optional (a Pi has only the edge extra): without
it every function returns None and the JSON and Markdown results are still written.
Confusion matrices and reliability diagrams are in evaluation/figures.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# One implementation of "matplotlib if installed, PNG written atomically" (evaluation's figures,
# the confusion matrices among them, use it too).
from fer_edge.evaluation.figures import pyplot as _pyplot
from fer_edge.evaluation.figures import save_png as _save


def stage_latency_plot(samples: dict[str, list[float]], title: str, path: Path) -> Path | None:
    """Box per stage (ms, log scale; whiskers at p1 and p99)."""
    plt = _pyplot()
    if plt is None:
        return None
    names = list(samples)
    # Log scale: stages span microseconds (smoothing) to tens of milliseconds (detection).
    data = [np.maximum(np.asarray(samples[n]) * 1000.0, 1e-4) for n in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 4.5))
    ax.boxplot(data, whis=(1, 99), showmeans=True, flierprops={"markersize": 2, "alpha": 0.4})
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_yscale("log")
    ax.set_ylabel("ms per frame (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    return _save(plt, fig, path)


def fps_plot(
    fps: dict[str, float], title: str, path: Path, highlight: str = "default"
) -> Path | None:
    """Horizontal bar per configuration, its FPS written at the end of the bar."""
    plt = _pyplot()
    if plt is None or not fps:
        return None
    names = list(fps)[::-1]  # first configuration at the top
    values = [fps[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    colors = ["tab:orange" if n == highlight else "tab:blue" for n in names]
    bars = ax.barh(names, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=3, fontsize=8)
    ax.set_xlabel("frames per second (end to end)")
    ax.set_xlim(0, max(values) * 1.15)
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)


def percentile_plot(stats: dict[str, dict], title: str, path: Path) -> Path | None:
    """Grouped bars: p50 / p90 / p99 ms per run."""
    plt = _pyplot()
    if plt is None or not stats:
        return None
    names = list(stats)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
    for i, q in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        ax.bar(x + (i - 1) * 0.27, [stats[n].get(q, 0) for n in names], 0.27, label=q[:3])
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("ms")
    ax.legend()
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def scaling_plot(runs: dict[str, dict], title: str, path: Path) -> Path | None:
    """ms per frame and ms per face against faces in the frame, one line per configuration."""
    plt = _pyplot()
    if plt is None or not runs:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    for cfg in dict.fromkeys(r["config"] for r in runs.values()):
        rows = sorted((r for r in runs.values() if r["config"] == cfg), key=lambda r: r["faces"])
        faces = [r["faces"] for r in rows]
        a.plot(faces, [r["ms_per_frame"] for r in rows], marker="o", label=cfg)
        b.plot(faces, [r.get("ms_per_face") or np.nan for r in rows], marker="o", label=cfg)
    counts = sorted({r["faces"] for r in runs.values()})
    for axis in (a, b):
        axis.set_xticks(counts)
        axis.grid(alpha=0.3)
    a.set_xlabel("faces in the frame")
    a.set_ylabel("ms per frame")
    b.set_xlabel("faces in the frame")
    b.set_ylabel("ms per face")
    a.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(plt, fig, path)
