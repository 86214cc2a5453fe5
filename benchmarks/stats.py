"""Latency summaries: percentiles in milliseconds from samples in seconds."""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 99)


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
