"""Latency: percentiles in milliseconds from samples in seconds, and the per-face latency of a
model as the runtime calls it (the figure a model card and `bench-accuracy` report)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 99)
LATENCY_WARMUP = 30  # invokes before timing: first calls allocate and pick kernels


def summarise(seconds) -> dict:
    """{'n', 'mean_ms', 'p50_ms', 'p90_ms', 'p99_ms', 'max_ms'} of a list of durations."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if not ms.size:
        return {"n": 0}
    out = {"n": int(ms.size), "mean_ms": round(float(ms.mean()), 3)}
    for q, v in zip(PERCENTILES, np.percentile(ms, PERCENTILES), strict=True):
        out[f"p{q}_ms"] = round(float(v), 3)
    out["max_ms"] = round(float(ms.max()), 3)
    return out


def latency(model: Path, threads: int, runs: int, warmup: int = LATENCY_WARMUP) -> dict:
    """Batch-1 `Classifier.predict` latency (ms percentiles) on a fixed random crop."""
    from fer_edge.edge.classifier import Classifier

    clf = Classifier(model, threads=threads)
    size = clf.contract.input_size
    crop = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    for _ in range(warmup):
        clf.predict(crop)
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        clf.predict(crop)
        seconds.append(time.perf_counter() - t0)
    return summarise(seconds)
