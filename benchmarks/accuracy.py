"""`fer-edge bench-accuracy`: every model variant on FER2013 PublicTest and PrivateTest, with
its file size and batch-1 latency, in one table.

Accuracy comes from `fer_edge.evaluation.evaluate`, so the numbers are those `fer-edge eval`
prints. Latency is `edge.classifier.Classifier.predict` on one crop (quantise, invoke, read),
as the runtime calls it per face. A variant that fails is recorded with its error; the others
still run.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from fer_edge.benchmarks.report import header_lines
from fer_edge.edge.contract import atomic_write_text
from fer_edge.edge.errors import ModelError
from fer_edge.evaluation.figures import confusion_plot
from fer_edge.evaluation.latency import LATENCY_WARMUP, latency
from fer_edge.evaluation.machine import machine_info, results_dir, software_info
from fer_edge.train.config import DEFAULT_KERAS_SOURCE

log = logging.getLogger(__name__)

VARIANT_FILES = (
    "fer_float32.tflite",
    "fer_float16.tflite",
    "fer_dynamic.tflite",
    "fer_int8.tflite",
    Path(DEFAULT_KERAS_SOURCE).name,  # the Keras source they were converted from
)
SPLITS = {"public": "PublicTest", "private": "PrivateTest"}


def find_variants(models: str | Path) -> list[Path]:
    folder = Path(models)
    found = [folder / name for name in VARIANT_FILES if (folder / name).is_file()]
    if not found:
        raise ModelError(
            f"--models {models}: none of {', '.join(VARIANT_FILES)} is there; run "
            "`make train convert` or pass the folder that holds them"
        )
    return found


def _attempt(entry: dict, key: str, fn) -> None:
    """entry[key] = fn(), or the error under entry['errors'][key]: one failure loses one cell."""
    try:
        entry[key] = fn()
    except Exception as exc:
        log.warning("%s %s failed: %s", entry["file"], key, exc)
        entry.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"


def bench_variant(model: Path, data: str, threads: tuple[int, ...], runs: int) -> dict:
    from fer_edge.evaluation.evaluate import evaluate

    entry: dict = {"file": str(model), "bytes": model.stat().st_size}
    for split in SPLITS:
        _attempt(entry, split, lambda split=split: evaluate(str(model), data, split))
    if model.suffix == ".tflite":
        entry["latency"] = {}
        for t in threads:
            _attempt(entry["latency"], str(t), lambda t=t: latency(model, t, runs))
        if "errors" in entry["latency"]:
            entry.setdefault("errors", {}).update(entry["latency"].pop("errors"))
    return entry


def run_accuracy(
    models: str | Path, data: str = "", threads: tuple[int, ...] = (1, 2), runs: int = 300
) -> dict:
    from fer_edge.evaluation.data import load_fer2013

    variants = find_variants(models)
    # Load once up front: a missing dataset is one clear error, and the cache is then warm.
    fer = load_fer2013(data or None)
    results = {}
    for model in variants:
        log.info("%s", model)
        results[model.name] = bench_variant(model, data, threads, runs)
    result = {
        "kind": "accuracy",
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "software": software_info(),
        "data": {"source": fer.source, "sha256": fer.sha256},
        "settings": {"threads": list(threads), "runs": runs, "warmup": LATENCY_WARMUP},
        "variants": results,
    }
    comparison = int8_vs_float32(results)
    if comparison:
        result["int8_vs_float32"] = comparison
    return result


def int8_vs_float32(variants: dict) -> dict | None:
    """Size ratio float32/int8 and PrivateTest accuracy difference (int8 - float32) in points."""
    a, b = variants.get("fer_int8.tflite"), variants.get("fer_float32.tflite")
    if not a or not b:
        return None
    out = {
        "size_ratio": round(b["bytes"] / a["bytes"], 2),
        "int8_kib": round(a["bytes"] / 1024),
        "float32_kib": round(b["bytes"] / 1024),
    }
    if "private" in a and "private" in b:
        out["private_accuracy_points"] = round(
            100.0 * (a["private"]["accuracy"] - b["private"]["accuracy"]), 2
        )
    return out


def accuracy_markdown(result: dict) -> str:
    """The variant table: size, macro-F1 beside accuracy on each split, per-class recall,
    latency; comparison footer."""
    variants = result["variants"]
    labels = next((v["private"]["labels"] for v in variants.values() if "private" in v), [])
    threads = result["settings"]["threads"]
    cols = [
        "variant",
        "file KiB",
        "macro-F1 (private)",
        "PrivateTest acc",
        "macro-F1 (public)",
        "PublicTest acc",
        *(f"recall {lb}" for lb in labels),
        *(f"p50 / p90 ms, {t} thread{'s' if t > 1 else ''}" for t in threads),
    ]
    lines = header_lines(result, "Model variants")
    data = result["data"]
    lines += [
        f"- data: {Path(data['source']).name} (sha256 {data['sha256'][:12]}); recall is on "
        "PrivateTest",
        f"- latency: batch-1 `Classifier.predict` (quantise + invoke), "
        f"{result['settings']['runs']} runs after {result['settings']['warmup']} warm-up",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|",
    ]
    for name, v in variants.items():
        pub, priv = v.get("public"), v.get("private")
        cells = [
            name,
            f"{v['bytes'] / 1024:.0f}",
            _f1(priv),
            _pct(priv, "accuracy"),
            _f1(pub),
            _pct(pub, "accuracy"),
            *(_pct(priv["per_class"].get(lb) if priv else None, "recall") for lb in labels),
        ]
        for t in threads:
            lat = v.get("latency", {}).get(str(t))
            cells.append(f"{lat['p50_ms']:.2f} / {lat['p90_ms']:.2f}" if lat else "–")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    n = {s: v[s]["n"] for v in variants.values() for s in SPLITS if s in v}
    if n:
        lines.append("Images: " + ", ".join(f"{SPLITS[s]} {k}" for s, k in n.items()) + ".")
    cmp = result.get("int8_vs_float32")
    if cmp:
        text = (
            f"int8 vs float32: {cmp['size_ratio']:.1f}x smaller file ({cmp['int8_kib']} vs "
            f"{cmp['float32_kib']} KiB)"
        )
        if "private_accuracy_points" in cmp:
            text += f", PrivateTest accuracy {cmp['private_accuracy_points']:+.2f} points"
        lines.append(f"**{text}.**")
    for name, v in variants.items():
        for key, err in v.get("errors", {}).items():
            lines.append(f"- {name} {key}: {err}")
    return "\n".join(lines) + "\n"


def _pct(d: dict | None, key: str) -> str:
    return f"{100.0 * d[key]:.1f}%" if d else "–"


def _f1(report: dict | None) -> str:
    return f"{report['macro_f1']:.3f}" if report else "–"


def write_accuracy_results(result: dict, out_root: str | None) -> list[Path]:
    """accuracy.json, accuracy.md and a PrivateTest confusion PNG per variant."""
    out = results_dir(out_root, result["machine"]["slug"])
    written = [out / "accuracy.json", out / "accuracy.md"]
    atomic_write_text(written[0], json.dumps(result, indent=2) + "\n")
    atomic_write_text(written[1], accuracy_markdown(result))
    for name, v in result["variants"].items():
        if "private" in v:
            r = v["private"]
            title = f"{name}, PrivateTest (n={r['n']}, accuracy {r['accuracy']:.1%})"
            png = out / f"confusion_{Path(name).stem}.png"
            written.append(confusion_plot(r, f"{title}\nmacro-F1 {r['macro_f1']:.3f}", png))
    return [p for p in written if p is not None]
