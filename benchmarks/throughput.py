"""`fer-edge bench`: end-to-end FPS and per-stage latency of the runtime on one video.

Several configurations run in one process on the same frames, one after another: the default
runtime, the runtime before issue 13 (`v1-default`) and each of its levers alone (`v1+X`), the
reference that detects and classifies every frame (every run's labels are compared with it), its
float32 model, the other face detector, other schedules and thread counts, the decode-only rate
of the video (the ceiling), and the original approach this project replaced (see
benchmarks/baseline.py); benchmarks/configs.py defines them all. A configuration that fails is
recorded as `{"error": ...}` and the others still run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import datetime

from fer_edge.benchmarks.configs import BenchConfig, runtime_defaults, standard_configs
from fer_edge.benchmarks.system import machine_info, software_info
from fer_edge.benchmarks.timing import FramePlan, Skipped, time_frames

__all__ = ["BenchConfig", "run_benchmark", "runtime_defaults", "standard_configs"]

log = logging.getLogger(__name__)

LIVE_FRAMES = 300  # frames timed from a camera when --frames is 0 (a camera never ends)
# The headless deployment's output: what `run --headless --events FILE` does per frame.
OUTPUT_STAGE = "JSON Lines events (edge.sinks.EventWriter) written to os.devnull"


def build_pipeline(cfg: BenchConfig):
    """The runtime's Pipeline as this configuration sets it up."""
    from fer_edge.edge.classifier import Classifier
    from fer_edge.edge.detectors import make_detector
    from fer_edge.edge.pipeline import Pipeline, PipelineConfig

    if not os.path.isfile(cfg.model):
        raise Skipped(f"{cfg.model}: model not found (pass --model / --float_model)")
    classifier = Classifier(
        cfg.model, threads=cfg.threads, batch=cfg.batch, zero_copy=cfg.zero_copy
    )
    detector = make_detector(
        cfg.detector, width=cfg.detect_width, yunet_model=cfg.yunet_model, resize=cfg.detect_resize
    )
    config = PipelineConfig(
        detect_every=cfg.detect_every,
        classify_every=cfg.classify_every,
        full_detect_every=cfg.full_detect_every,
        adaptive_width=cfg.adaptive_width,
        alpha_per_frame=cfg.alpha_per_frame,
        max_faces=cfg.max_faces,
    )
    return Pipeline(detector, classifier, config)


@contextlib.contextmanager
def thread_plan(cfg: BenchConfig):
    """OpenCV's thread count for this configuration, restored afterwards."""
    import cv2
    from fer_edge.edge.pipeline import apply_thread_plan

    previous = apply_thread_plan(cfg.cv_threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def run_pipeline(cfg: BenchConfig, plan: FramePlan) -> tuple[dict, dict]:
    from fer_edge.edge.sinks import EventWriter

    labels: dict[int, list] = {}  # frame index -> [(box, label index)], for agreement
    with thread_plan(cfg):
        pipeline = build_pipeline(cfg)
        classifier = pipeline.classifier
        with EventWriter(os.devnull, classifier.labels) as events:

            def step(frame):
                result = pipeline.process(frame)
                t0 = time.perf_counter()
                events.write(result)
                labels[frame.index] = [(f.box, f.label_index()) for f in result.faces]
                return {**result.timings, "output": time.perf_counter() - t0}, len(result.faces)

            timed = time_frames(plan, step, cfg.name, cfg.decode_threads)
    summary = timed.summary()
    summary["interpreter"] = f"{classifier.backend} {classifier.backend_version}"
    summary["model_input"] = f"{classifier.input_dtype} {list(classifier.input_shape)}"
    summary["passes"] = dict(pipeline.counts)
    # How often the largest face's label changes from one frame to the next: near a class
    # boundary even the reference flips, and every flip is a chance to disagree with it.
    firsts = [labels[i][0][1] for i in sorted(labels) if labels[i]]
    summary["label_changes"] = sum(a != b for a, b in zip(firsts, firsts[1:]))
    summary["_labels"] = labels  # removed by run_benchmark once agreement is computed
    return summary, timed.samples


def agreement(reference: dict[int, list], labels: dict[int, list]) -> dict:
    """Share of the reference's faces that this run found (IoU >= 0.3) with the same label."""
    faces = found = same = 0
    for index, ref_faces in reference.items():
        got = labels.get(index)
        if got is None:
            continue
        for box, label in ref_faces:
            faces += 1
            best = max(got, key=lambda g: g[0].iou(box), default=None)
            if best is not None and best[0].iou(box) >= 0.3:
                found += 1
                same += best[1] == label
    if not faces:
        return {"faces": 0}
    return {
        "faces": faces,
        "found": round(found / faces, 4),
        "label_agreement": round(same / faces, 4),
    }


def run_decode(cfg: BenchConfig, plan: FramePlan) -> tuple[dict, dict]:
    timed = time_frames(plan, lambda frame: ({}, 0), cfg.name, cfg.decode_threads)
    return timed.summary(faces=False), timed.samples


def run_baseline(cfg: BenchConfig, plan: FramePlan) -> tuple[dict, dict]:
    from fer_edge.benchmarks.baseline import run_original_approach

    return run_original_approach(plan, cfg.name)


RUNNERS = {"pipeline": run_pipeline, "decode": run_decode, "baseline": run_baseline}


def probe_source(spec: str) -> dict:
    """Kind, resolution, fps and frame count of a source, from its first frame."""
    from fer_edge.edge.sources import open_source

    with open_source(spec) as src, contextlib.closing(src.frames()) as it:
        first = next(it, None)
        info = {"source": str(spec), "kind": src.name, "live": src.live}
        if os.path.isfile(spec):
            info["path"] = os.path.abspath(spec)
        if first is not None:
            info["height"], info["width"] = first.image.shape[:2]
        if hasattr(src, "frame_count"):
            info["fps"] = round(float(src.fps), 3)
            info["frame_count"] = int(src.frame_count)
    return info


def plan_frames(video: dict, frames: int, warmup: int) -> FramePlan:
    count = video.get("frame_count", 0)
    if video["live"] and not frames:
        log.info(
            "%s is live: timing %d frames (set --frames to change)", video["source"], LIVE_FRAMES
        )
        frames = LIVE_FRAMES
    loop = bool(frames and count and warmup + frames > count)
    if loop:
        log.info(
            "the video has %d frames: looping it to time %d after %d warm-up frames",
            count,
            frames,
            warmup,
        )
    return FramePlan(video["source"], warmup, frames, loop)


def run_benchmark(
    configs: list[BenchConfig],
    source: str,
    frames: int = 0,
    warmup: int = 20,
    baseline_frames: int = 100,
    rounds: int = 1,
) -> tuple[dict, dict]:
    """Run each configuration on `source`; (result dict, raw stage samples per configuration).

    With `rounds` > 1 every configuration runs that many times, the whole set round after
    round, and the round with its median FPS is kept (`fps_rounds` lists them all): on a shared
    machine, load that comes and goes then falls on every configuration alike. The baseline
    runs once, last whatever the order given: TensorFlow, once imported, stays in memory and
    would inflate every later configuration's peak RSS.
    """
    video = probe_source(source)
    plan = plan_frames(video, frames, warmup)
    base_frames = min(plan.frames or baseline_frames, baseline_frames)
    runs: dict[str, list[tuple[dict, dict]]] = {}
    ordered = sorted(configs, key=lambda c: c.kind == "baseline")
    for round_ in range(max(1, rounds)):
        for cfg in ordered:
            if cfg.kind == "baseline" and round_ < max(1, rounds) - 1:
                continue
            log.info("%s: %s", cfg.name, cfg.describe())
            runs.setdefault(cfg.name, []).append(run_one(cfg, plan, video, base_frames, warmup))
    results, samples = {}, {}
    for name, done in runs.items():
        timed = sorted((r for r in done if "fps" in r[0]), key=lambda r: r[0]["fps"])
        entry, kept = timed[len(timed) // 2] if timed else done[-1]
        if len(timed) > 1:
            entry["fps_rounds"] = [r[0]["fps"] for r in done if "fps" in r[0]]
        results[name] = entry
        if kept is not None:
            samples[name] = kept
    by_name = {c.name: c for c in configs}
    for name, entry in results.items():
        ref = by_name[name].reference
        if "_labels" in entry and ref in results and "_labels" in results[ref]:
            entry["agreement"] = {
                "reference": ref,
                **agreement(results[ref]["_labels"], entry["_labels"]),
            }
    for entry in results.values():
        entry.pop("_labels", None)
    result = {
        "kind": "pipeline",
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "software": software_info(),
        "video": video,
        "settings": {
            "frames": plan.frames,
            "warmup": warmup,
            "baseline_frames": base_frames,
            "loop": plan.loop,
            "rounds": max(1, rounds),
            "output_stage": OUTPUT_STAGE,
        },
        "configs": results,
    }
    ratio = speedup(results)
    if ratio is not None:
        result["speedup_vs_baseline"] = ratio
    ratio = speedup(results, "v1-default")
    if ratio is not None:
        result["speedup_vs_v1"] = ratio
        result["work_ratio_vs_v1"] = {
            key: round(results["v1-default"][key] / results["default"][key], 2)
            for key in ("cpu_ms_per_frame", "main_thread_cpu_ms_per_frame")
            if results["default"].get(key) and results["v1-default"].get(key)
        }
    return result, samples


def run_one(cfg: BenchConfig, plan: FramePlan, video: dict, base_frames: int, warmup: int):
    """(result entry, stage samples or None) of one configuration; failures are recorded."""
    entry: dict = {"config": cfg.to_json()}
    samples = None
    try:
        cfg_plan = plan
        if cfg.kind == "baseline":
            if not base_frames:
                raise Skipped("--baseline_frames 0")
            cfg_plan = plan_frames(video, base_frames, warmup)
        summary, samples = RUNNERS[cfg.kind](cfg, cfg_plan)
        entry.update(summary)
    except Skipped as exc:
        log.info("%s skipped: %s", cfg.name, exc)
        entry["skipped"] = str(exc)
    except Exception as exc:  # one broken configuration must not lose the others
        log.warning("%s failed: %s", cfg.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry, samples


def speedup(results: dict, over: str = "baseline") -> float | None:
    """Default FPS / another configuration's FPS (the original approach), when both ran."""
    fps = [results.get(name, {}).get("fps") for name in ("default", over)]
    return round(fps[0] / fps[1], 2) if all(fps) else None
