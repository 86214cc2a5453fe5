"""`fer-edge bench`: end-to-end FPS and per-stage latency of the runtime on one video.

Several configurations run in one process on the same frames, one after another: the default
runtime, its float32 model, the other face detector, detection on every frame, more interpreter
threads, the decode-only rate of the video (the ceiling), and the original approach this project
replaced (see benchmarks/baseline.py). A configuration that fails is recorded as
`{"error": ...}` and the others still run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from fer_edge.benchmarks.system import machine_info, software_info
from fer_edge.benchmarks.timing import FramePlan, Skipped, time_frames
from fer_edge.edge.config import RuntimeConfig

log = logging.getLogger(__name__)

LIVE_FRAMES = 300  # frames timed from a camera when --frames is 0 (a camera never ends)
# The headless deployment's output: what `run --headless --events FILE` does per frame.
OUTPUT_STAGE = "JSON Lines events (edge.sinks.EventWriter) written to os.devnull"


@dataclass(frozen=True)
class BenchConfig:
    """One configuration. Pipeline ones come from `standard_configs`, which starts from the
    runtime's own defaults; the field defaults here only suit the decode and baseline kinds."""

    name: str  # key in the results
    kind: str = "pipeline"  # pipeline | decode (source only) | baseline (the original approach)
    model: str = ""  # .tflite with its .json contract (pipeline only)
    detector: str = ""  # yunet | haar
    detect_width: int = 0  # the detector sees a copy this wide (0 = full frame)
    detect_every: int = 1  # detector runs every N frames; boxes are held in between
    threads: int = 1  # interpreter threads
    yunet_model: str | None = None  # YuNet .onnx (None = the runtime's default search)
    classify_every: int = 1  # classifier runs every N frames on held boxes

    def describe(self) -> str:
        if self.kind == "decode":
            return "decode only (the ceiling)"
        if self.kind == "baseline":
            from fer_edge.benchmarks.baseline import DESCRIPTION

            return DESCRIPTION
        precision = os.path.basename(self.model).removesuffix(".tflite").removeprefix("fer_")
        width = f"{self.detect_width} px" if self.detect_width else "full frame"
        return (
            f"{precision}, {self.detector} at {width}, detect every {self.detect_every}, "
            f"{self.threads} thread{'s' if self.threads > 1 else ''}"
            + (f", classify every {self.classify_every}" if self.classify_every > 1 else "")
        )

    def to_json(self) -> dict:
        if self.kind != "pipeline":
            return {"kind": self.kind, "description": self.describe()}
        return {**asdict(self), "description": self.describe()}


def runtime_defaults() -> RuntimeConfig:
    """The defaults of `fer-edge run` (detector, widths, threads): the runtime's own config."""
    return RuntimeConfig()


def standard_configs(
    model: str, float_model: str, yunet_model: str | None = None
) -> tuple[dict[str, BenchConfig], list[str]]:
    """Every known configuration by name, and the names `fer-edge bench` runs by default."""
    d = runtime_defaults()
    base = BenchConfig(
        "default",
        "pipeline",
        str(model),
        d.detector,
        d.detect_width,
        d.detect_every,
        d.threads,
        yunet_model,
        d.classify_every,
    )
    other = "haar" if base.detector == "yunet" else "yunet"
    every = 1 if base.detect_every != 1 else 2
    configs = [
        base,
        replace(base, name="float32", model=str(float_model)),
        replace(base, name=other, detector=other),
        replace(base, name=f"detect_every_{every}", detect_every=every),
        replace(base, name="classify_every_2", classify_every=2)
        if base.classify_every == 1
        else replace(base, name="classify_every_1", classify_every=1),
        *(replace(base, name=f"threads_{t}", threads=t) for t in (1, 2, 4) if t != base.threads),
        BenchConfig("decode", "decode"),
        BenchConfig("baseline", "baseline"),
    ]
    cores = os.cpu_count() or 1
    # More threads than cores only measures contention; it stays selectable with --configs.
    chosen = [c.name for c in configs if c.kind != "pipeline" or c.threads <= max(2, cores)]
    return {c.name: c for c in configs}, chosen


def run_pipeline(cfg: BenchConfig, plan: FramePlan) -> tuple[dict, dict]:
    from fer_edge.edge.classifier import Classifier
    from fer_edge.edge.detectors import make_detector
    from fer_edge.edge.pipeline import Pipeline, PipelineConfig
    from fer_edge.edge.sinks import EventWriter

    if not os.path.isfile(cfg.model):
        raise Skipped(f"{cfg.model}: model not found (pass --model / --float_model)")
    classifier = Classifier(cfg.model, threads=cfg.threads)
    detector = make_detector(cfg.detector, width=cfg.detect_width, yunet_model=cfg.yunet_model)
    config = PipelineConfig(detect_every=cfg.detect_every, classify_every=cfg.classify_every)
    pipeline = Pipeline(detector, classifier, config)
    with EventWriter(os.devnull, classifier.labels) as events:

        def step(frame):
            result = pipeline.process(frame)
            t0 = time.perf_counter()
            events.write(result)
            return {**result.timings, "output": time.perf_counter() - t0}, len(result.faces)

        timed = time_frames(plan, step, cfg.name)
    summary = timed.summary()
    summary["interpreter"] = f"{classifier.backend} {classifier.backend_version}"
    summary["model_input"] = f"{classifier.input_dtype} {list(classifier.input_shape)}"
    return summary, timed.samples


def run_decode(cfg: BenchConfig, plan: FramePlan) -> tuple[dict, dict]:
    timed = time_frames(plan, lambda frame: ({}, 0), cfg.name)
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
) -> tuple[dict, dict]:
    """Run each configuration on `source`; (result dict, raw stage samples per configuration).

    The baseline runs last whatever the order given: TensorFlow, once imported, stays in memory
    and would inflate every later configuration's peak RSS.
    """
    video = probe_source(source)
    plan = plan_frames(video, frames, warmup)
    base_frames = min(plan.frames or baseline_frames, baseline_frames)
    results, samples = {}, {}
    for cfg in sorted(configs, key=lambda c: c.kind == "baseline"):
        log.info("%s: %s", cfg.name, cfg.describe())
        entry: dict = {"config": cfg.to_json()}
        try:
            cfg_plan = plan
            if cfg.kind == "baseline":
                if not base_frames:
                    raise Skipped("--baseline_frames 0")
                cfg_plan = plan_frames(video, base_frames, warmup)
            summary, samples[cfg.name] = RUNNERS[cfg.kind](cfg, cfg_plan)
            entry.update(summary)
        except Skipped as exc:
            log.info("%s skipped: %s", cfg.name, exc)
            entry["skipped"] = str(exc)
        except Exception as exc:  # one broken configuration must not lose the others
            log.warning("%s failed: %s", cfg.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            entry["error"] = f"{type(exc).__name__}: {exc}"
        results[cfg.name] = entry
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
            "output_stage": OUTPUT_STAGE,
        },
        "configs": results,
    }
    ratio = speedup(results)
    if ratio is not None:
        result["speedup_vs_baseline"] = ratio
    return result, samples


def speedup(results: dict) -> float | None:
    """Default FPS / original-approach FPS, when both ran."""
    fps = [results.get(name, {}).get("fps") for name in ("default", "baseline")]
    return round(fps[0] / fps[1], 2) if all(fps) else None
