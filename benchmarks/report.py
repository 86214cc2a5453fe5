"""Pipeline results on disk: pipeline.json, pipeline.md and the PNG plots, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from fer_edge.benchmarks import plots
from fer_edge.benchmarks.system import results_dir
from fer_edge.edge.contract import atomic_write_text

STAGE_COLUMNS = ("capture", "detect", "preprocess", "inference", "smoothing", "output")


def _ms(stats: dict | None, key: str = "mean_ms") -> str:
    return f"{stats[key]:.2f}" if stats and key in stats else "–"


def _optional(value, fmt: str = "{}") -> str:
    return fmt.format(value) if value is not None else "–"


def header_lines(result: dict, title: str) -> list[str]:
    m, sw = result["machine"], result["software"]
    lines = [
        f"# {title}: {m['slug']}, {result['created'][:10]}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}",
        f"- interpreter: {sw.get('interpreter')} {sw.get('interpreter_version')}; "
        f"OpenCV {sw.get('opencv')}; numpy {sw.get('numpy')}"
        + (f"; TensorFlow {sw['tensorflow']}" if sw.get("tensorflow") else ""),
    ]
    return lines


def pipeline_markdown(result: dict) -> str:
    v, s = result["video"], result["settings"]
    lines = header_lines(result, "Pipeline benchmark")
    size = f"{v.get('width')}x{v.get('height')}"
    frames = f"{v['frame_count']} frames" if v.get("frame_count") else "live"
    timed = f"{s['frames']} frames" if s["frames"] else "every frame"
    if s.get("rounds", 1) > 1:
        timed += f", {s['rounds']} rounds (the median-FPS round of each configuration is shown)"
    lines += [
        f"- video: {Path(v['source']).name} ({size}, {frames}); timed: {timed} after "
        f"{s['warmup']} warm-up frames per configuration",
        f"- output stage: {s['output_stage']}",
        "",
    ]
    cols = [
        "config",
        "what",
        "FPS",
        "ms/frame",
        *STAGE_COLUMNS,
        "CPU %",
        "CPU ms/frame",
        "main-thread CPU ms/frame",
        "peak RSS MiB",
        "frames with a face",
        "label agreement",
    ]
    lines += [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(cols) - 2)) + "|",
    ]
    for name, r in result["configs"].items():
        what = r["config"]["description"]
        if "fps" not in r:
            problem = r.get("error") or f"skipped: {r.get('skipped')}"
            lines.append(f"| {name} | {what}; **{problem}** |" + " – |" * (len(cols) - 2))
            continue
        stages = r["stages"]
        faces = (
            f"{r['face_fraction']:.0%} ({r['faces_per_frame']:.2f} faces/frame)"
            if "face_fraction" in r
            else "–"
        )
        agree = r.get("agreement", {})
        agreement = (
            f"{agree['label_agreement']:.1%} (vs {agree['reference']})"
            if "label_agreement" in agree
            else "–"
        )
        cells = [
            name,
            what,
            f"{r['fps']:.1f}",
            f"{1000.0 / r['fps']:.1f}",
            *(_ms(stages.get(st)) for st in STAGE_COLUMNS),
            _optional(r.get("cpu_percent"), "{:.0f}"),
            _optional(r.get("cpu_ms_per_frame"), "{:.2f}"),
            _optional(r.get("main_thread_cpu_ms_per_frame"), "{:.2f}"),
            _optional(r.get("peak_rss_mib"), "{:.0f}"),
            faces,
            agreement,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Stage columns are the mean ms per frame: with detection every N frames the "
        "detect mean is its cost spread over N frames. CPU % is process CPU time over wall "
        "time (100% = one core busy); CPU ms/frame is that CPU time per frame (every thread: "
        "decoding, interpreter pool) and main-thread CPU ms/frame the pipeline thread's own, "
        "its serial path. Label agreement: share of the reference run's faces "
        "(detect and classify every frame, same model) found with the same label.",
        "",
    ]
    if "speedup_vs_v1" in result:
        v1 = result["configs"]["v1-default"]
        lines += [
            f"**Default vs v1-default (the runtime before issue 13), same run: "
            f"{result['speedup_vs_v1']:.2f}x the FPS** "
            f"({result['configs']['default']['fps']:.1f} vs {v1['fps']:.1f}). Timings on a "
            "shared machine are noisy: compare ratios within one run.",
            "",
        ]
        work = result.get("work_ratio_vs_v1", {})
        if work:
            lines += [
                "Work per frame, which other load on the machine changes much less than FPS: "
                "v1-default needs "
                + " and ".join(
                    f"{v:.2f}x the {k.removesuffix('_ms_per_frame').replace('_', ' ')} time"
                    for k, v in work.items()
                )
                + " of default.",
                "",
            ]
    default = result["configs"].get("default", {})
    if "stages" in default:
        lines += [
            f"Default configuration per stage, ms over {default['frames']} frames:",
            "",
            "| stage | p50 | p90 | p99 | mean | max |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for stage, st in default["stages"].items():
            cells = [_ms(st, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        lines.append("")
    base = result["configs"].get("baseline", {})
    if "speedup_vs_baseline" in result:
        lines.append(
            f"**Default vs original approach: {result['speedup_vs_baseline']:.1f}x the "
            f"FPS** ({default['fps']:.1f} vs {base['fps']:.1f}). Original approach: "
            f"{base['note']}."
        )
    rc = result.get("runtime_check")
    if rc:
        verdict = "within" if rc["within"] else "NOT within"
        lines += [
            "",
            f"`fer-edge run` on the same video (its own closing FPS line, median of "
            f"{len(rc['run_fps_all'])} runs): {rc['run_fps']:.1f} FPS vs the bench's default "
            f"{rc['bench_fps']:.1f} FPS, ratio {rc['ratio']:.2f}: {verdict} "
            f"{100 * rc['tolerance']:.0f}%.",
        ]
    return "\n".join(lines) + "\n"


def write_pipeline_results(result: dict, samples: dict, out_root: str | None) -> list[Path]:
    """pipeline.json, pipeline.md and the plots into <out_root>/<machine>-<date>/."""
    out = results_dir(out_root, result["machine"]["slug"])
    written = [out / "pipeline.json", out / "pipeline.md"]
    atomic_write_text(written[0], json.dumps(result, indent=2) + "\n")
    atomic_write_text(written[1], pipeline_markdown(result))
    fps = {n: r["fps"] for n, r in result["configs"].items() if "fps" in r}
    where = f"{result['machine']['slug']}, {Path(result['video']['source']).name}"
    written.append(
        plots.fps_plot(fps, f"End-to-end FPS per configuration ({where})", out / "pipeline_fps.png")
    )
    if "default" in samples:
        n = result["configs"]["default"]["frames"]
        written.append(
            plots.stage_latency_plot(
                samples["default"],
                f"Per-stage latency, default configuration ({where}, {n} frames; whiskers p1-p99)",
                out / "pipeline_stages.png",
            )
        )
    return [p for p in written if p is not None]
