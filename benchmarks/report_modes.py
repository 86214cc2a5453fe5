"""Results of the latency, crowd and Pi cost modes: JSON, Markdown and plots, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from fer_edge.benchmarks import plots
from fer_edge.benchmarks.report import header_lines
from fer_edge.benchmarks.system import results_dir
from fer_edge.edge.contract import atomic_write_text

NOISE = (
    "Timed on a shared machine: compare rows of one run with each other (ratios), not "
    "with other runs."
)


def _ms(stats: dict | None, key: str) -> str:
    return f"{stats[key]:.1f}" if stats and key in stats else "–"


def _runs_table(result: dict, columns: tuple[str, ...], text: int, cells) -> list[str]:
    """A Markdown table of result["runs"], one row of cells(key, run) per run: the first
    `text` columns left-aligned, the numbers right."""
    align = "|---" * text + "|---:" * (len(columns) - text) + "|"
    rows = [
        "| " + " | ".join(str(c) for c in cells(k, r)) + " |" for k, r in result["runs"].items()
    ]
    return ["| " + " | ".join(columns) + " |", align, *rows]


LATENCY_COLUMNS = (
    "run", "what", "offered FPS", "processed FPS", "age p50", "age p90", "age p99",
    "wait p50", "work p50", "dropped by reader", "not delivered", "frames lost", "CPU %",
)  # fmt: skip


def _latency_cells(key: str, r: dict) -> list:
    if "error" in r:
        return [key, f"{r['description']}; **{r['error']}**", *["–"] * 11]
    age, wait, work = r["age"], r["wait"], r["work"]
    return [
        key, r["description"], f"{r['fps_offered']:g}", f"{r['fps']:.1f}",
        _ms(age, "p50_ms"), _ms(age, "p90_ms"), _ms(age, "p99_ms"), _ms(wait, "p50_ms"),
        _ms(work, "p50_ms"), r["dropped_by_reader"], r["not_delivered"],
        f"{r['dropped_fraction']:.1%}", f"{r.get('cpu_percent', 0):.0f}",
    ]  # fmt: skip


def latency_markdown(result: dict) -> str:
    lines = header_lines(result, "Latency on a live source")
    lines += [
        f"- source: {Path(result['video']).name} served as a live MJPEG camera on 127.0.0.1 "
        "(benchmarks/live.py), each frame stamped at capture (X-Timestamp)",
        "- age = event line written and flushed minus capture stamp; wait = capture until the "
        "pipeline takes the frame (transfer, JPEG decode, queue); work = pipeline + event",
        f"- {NOISE}",
        "",
        *_runs_table(result, LATENCY_COLUMNS, 2, _latency_cells),
    ]
    return "\n".join(lines) + "\n\nAges in ms.\n"


CROWD_COLUMNS = (
    "run", "faces in the video", "faces found per frame", "FPS", "ms/frame", "ms/face",
    "cost vs 1 face", "CPU %",
)  # fmt: skip


def _crowd_cells(key: str, r: dict) -> list:
    if "error" in r:
        return [key, r["faces"], f"**{r['error']}**", *["–"] * 5]
    per_face = f"{r['ms_per_face']:.2f}" if r.get("ms_per_face") else "–"
    return [
        key, r["faces"], f"{r['faces_per_frame']:.2f}", f"{r['fps']:.1f}",
        f"{r['ms_per_frame']:.2f}", per_face, f"{r.get('cost_vs_first', '–')}x",
        f"{r.get('cpu_percent') or 0:.0f}",
    ]  # fmt: skip


def crowd_markdown(result: dict) -> str:
    lines = header_lines(result, "Crowds: cost per face")
    lines += [
        "- videos: 1280x720, a k x k grid of the shared face videos (benchmarks/crowd.py); "
        "the detector's copy grows with k so each face gets as many pixels as alone",
        f"- {NOISE}",
        "",
        *_runs_table(result, CROWD_COLUMNS, 1, _crowd_cells),
    ]
    return "\n".join(lines) + "\n"


def cost_markdown(result: dict) -> str:
    c = result["cost"]
    s = c["schedule"]
    lines = header_lines(result, "Pi cost model (ESTIMATES, not measured on a Pi)")
    lines += [
        "- MACs and parameters are counted from the ONNX / TFLite graphs by "
        "benchmarks/costmodel.py; Pi times are **estimates**: a published reference timing "
        "scaled by MACs (ms per MAC of the reference x this stage's MACs)",
        "",
        "| stage | input | MACs (M) | params (k) | Pi 4 ms (estimate) | Pi 5 ms (estimate) | "
        "source |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, st in c["stages"].items():
        params = f"{st['params'] / 1e3:.0f}" if st.get("params") else "–"
        lines.append(
            f"| {name} | {st.get('input', '48x48 grey')} | {st['macs'] / 1e6:.1f} | {params} | "
            f"{st['pi4_ms']:.2f} | {st['pi5_ms']:.2f} | {st['source']} |"
        )
    if s["full_detect_every"]:
        detection = (
            f"whole-frame detection every {s['full_detect_every']} frames, tracked squares on "
            f"the other detection frames (every {s['detect_every']})"
        )
    else:
        detection = f"whole-frame detection every {s['detect_every']} frames"
    lines += [
        "",
        f"Per frame, one face, {c['frame']}, {detection}, classification every "
        f"{s['classify_every']} (**estimates**; JPEG/video decoding, resizing and Python "
        "overhead not included):",
        "",
        "| classifier | Pi 4 ms/frame (estimate) | Pi 5 ms/frame (estimate) |",
        "|---|---:|---:|",
    ]
    for name, row in c["per_frame_one_face"].items():
        lines.append(f"| {name} | {row['pi4_ms']:.2f} | {row['pi5_ms']:.2f} |")
    lines += ["", "Sources:", ""]
    for key, ref in c["references"].items():
        value = f"{ref['ms']:.2f} ms" if "ms" in ref else f"ratio {ref['ratio']:.2f}"
        lines.append(f"- `{key}`: {ref['what']}: {value} ({ref['figure']}). <{ref['url']}>")
    return "\n".join(lines) + "\n"


def write_mode_results(result: dict, out_root: str | None) -> list[Path]:
    """latency.*, crowd.* and pi_cost.* for the modes present in `result`."""
    out = results_dir(out_root, result["machine"]["slug"])
    written: list[Path | None] = []
    for mode, render in (
        ("latency", latency_markdown),
        ("crowd", crowd_markdown),
        ("pi_cost", cost_markdown),
    ):
        if mode not in result["modes"] or "skipped" in result["modes"][mode]:
            continue
        part = {**{k: v for k, v in result.items() if k != "modes"}, **result["modes"][mode]}
        atomic_write_text(out / f"{mode}.json", json.dumps(part, indent=2) + "\n")
        atomic_write_text(out / f"{mode}.md", render(part))
        written += [out / f"{mode}.json", out / f"{mode}.md"]
    if "runs" in result["modes"].get("latency", {}):
        runs = result["modes"]["latency"]["runs"]
        written.append(
            plots.percentile_plot(
                {k: r["age"] for k, r in runs.items() if "age" in r},
                "Frame age at event (capture -> event written), live MJPEG source",
                out / "latency_age.png",
            )
        )
    if "runs" in result["modes"].get("crowd", {}):
        runs = result["modes"]["crowd"]["runs"]
        written.append(
            plots.scaling_plot(
                {k: r for k, r in runs.items() if "ms_per_frame" in r},
                "Cost per frame and per face vs faces in the frame",
                out / "crowd_scaling.png",
            )
        )
    return [p for p in written if p is not None]
