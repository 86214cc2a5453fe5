"""`fer-edge eval MODEL --degrade capture`: accuracy under each capture degradation at three
severities, beside clean accuracy, on the same faces.

The suite (evaluation/degrade.py) models what sits between a face and the model on a cheap
camera: defocus and motion blur, sensor noise, JPEG compression, low light and over-exposure,
low resolution (a far face), occlusion (hand, glasses, mask) and a detector box that is off.
Each degradation is seeded, so a model is always judged on the same degraded images.
"""

from __future__ import annotations

import numpy as np
from fer_edge.evaluation.degrade import SEVERITIES, SUITES, degrade_set


def robustness(
    predict, x: np.ndarray, y: np.ndarray, suite: str = "capture", seed: int = 0
) -> dict:
    """{"clean": acc, "table": {kind: {severity: acc}}, "mean": {severity: acc}, ...}."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    clean = float((predict(x).argmax(1) == y).mean())
    table: dict[str, dict[str, float]] = {}
    for kind in SUITES[suite]:
        table[kind] = {}
        for sev in SEVERITIES:
            xd = degrade_set(x, kind, sev, seed)
            table[kind][str(sev)] = float((predict(xd).argmax(1) == y).mean())
    mean = {str(s): float(np.mean([table[k][str(s)] for k in table])) for s in SEVERITIES}
    return {
        "suite": suite,
        "seed": seed,
        "n": int(len(y)),
        "clean": clean,
        "table": table,
        "mean": mean,
        "drop_at_medium_points": round(100.0 * (clean - mean["2"]), 2),
    }


def robustness_markdown(rob: dict, title: str) -> str:
    sev = [str(s) for s in SEVERITIES]
    lines = [
        f"### {title}",
        "",
        f"Suite `{rob['suite']}` on {rob['n']} faces (seed {rob['seed']}); clean accuracy "
        f"{100 * rob['clean']:.1f}%.",
        "",
        "| degradation | " + " | ".join(f"severity {s}" for s in sev) + " |",
        "|---|" + "---:|" * len(sev),
    ]
    for kind, row in rob["table"].items():
        lines.append(f"| {kind} | " + " | ".join(f"{100 * row[s]:.1f}%" for s in sev) + " |")
    means = " | ".join(f"**{100 * rob['mean'][s]:.1f}%**" for s in sev)
    lines.append(f"| **mean** | {means} |")
    lines += ["", f"Drop at medium severity: {rob['drop_at_medium_points']:.1f} points.", ""]
    return "\n".join(lines)
