"""The benchmark's configurations: what each one runs, and the standard set `fer-edge bench` times.

`v1-default` is the runtime as it was before the throughput work (issue 13): six-view model,
full-frame YuNet at 320 px every 2nd frame, classify every 2nd frame, 2 LiteRT threads,
OpenCV's default threads, one interpreter call per face through temporary arrays. Each `v1+X`
configuration adds one lever to it, so every lever's effect is measured on its own; `default`
is today's `fer-edge run`, and `reference` detects and classifies every frame (the labels every
configuration is compared with).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace


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
    full_detect_every: int = 0  # whole-frame search every N frames, tracked squares between
    adaptive_width: bool = False  # narrower whole-frame passes while tracked faces are large
    cv_threads: int = 0  # OpenCV worker threads (0 = OpenCV's default)
    decode_threads: int = 0  # FFmpeg decoder threads for the video (0 = OpenCV's default)
    batch: bool = False  # one interpreter call for all faces of a frame
    zero_copy: bool = False  # crops written straight into the interpreter's input buffer
    alpha_per_frame: bool = False  # smoothing weight per frame, not per classification
    max_faces: int = 4  # largest faces classified per frame
    detect_resize: str = "area"  # how the detector's copy is shrunk: area | linear
    reference: str = ""  # configuration whose labels this one is compared with ('' = none)

    def describe(self) -> str:
        if self.kind == "decode":
            return "decode only (the ceiling)"
        if self.kind == "baseline":
            from fer_edge.benchmarks.baseline import DESCRIPTION

            return DESCRIPTION
        precision = os.path.basename(self.model).removesuffix(".tflite").removeprefix("fer_")
        width = f"{self.detect_width} px" if self.detect_width else "full frame"
        parts = [
            f"{precision}, {self.detector} at {width}"
            + (" (adaptive)" if self.adaptive_width else "")
            + (f" ({self.detect_resize} resize)" if self.detect_resize != "area" else ""),
            f"detect every {self.detect_every}"
            + (f" (whole frame every {self.full_detect_every})" if self.full_detect_every else ""),
            f"{self.threads} thread{'s' if self.threads > 1 else ''}",
        ]
        if self.classify_every > 1:
            parts.append(f"classify every {self.classify_every}")
        if self.cv_threads:
            parts.append(f"{self.cv_threads} OpenCV thread{'s' if self.cv_threads > 1 else ''}")
        if self.decode_threads:
            n = self.decode_threads
            parts.append(f"{n} decode thread{'s' if n > 1 else ''}")
        parts += [
            n
            for n, on in (
                ("batched", self.batch),
                ("zero-copy", self.zero_copy),
                ("smoothing per frame", self.alpha_per_frame),
            )
            if on
        ]
        return ", ".join(parts)

    def to_json(self) -> dict:
        if self.kind != "pipeline":
            return {"kind": self.kind, "description": self.describe()}
        return {**asdict(self), "description": self.describe()}


def runtime_defaults():
    """The defaults of `fer-edge run` (detector, widths, threads): the runtime's own config."""
    from fer_edge.edge.config import DEFAULTS

    return DEFAULTS


def default_config(model: str, yunet_model: str | None = None) -> BenchConfig:
    """Today's `fer-edge run`, from its own flags."""
    d = runtime_defaults()
    return BenchConfig(
        "default",
        "pipeline",
        str(model),
        d.detector,
        d.detect_width,
        d.detect_every,
        d.threads,
        yunet_model,
        d.classify_every,
        full_detect_every=d.full_detect_every,
        adaptive_width=d.adaptive_width,
        cv_threads=d.cv_threads,
        decode_threads=d.decode_threads,
        batch=True,
        zero_copy=True,
        alpha_per_frame=True,
        max_faces=d.max_faces,
        detect_resize=d.detect_resize,
        reference="reference",
    )


def v1_config(model: str, yunet_model: str | None = None) -> BenchConfig:
    """The runtime's defaults before issue 13 (fixed here, so later changes cannot move it)."""
    return BenchConfig(
        "v1-default",
        "pipeline",
        str(model),
        "yunet",
        320,
        2,
        2,
        yunet_model,
        2,
        reference="v1-reference",
    )


def standard_configs(
    model: str, float_model: str, yunet_model: str | None = None, v1_model: str = ""
) -> tuple[dict[str, BenchConfig], list[str]]:
    """Every known configuration by name, and the names `fer-edge bench` runs by default."""
    base = default_config(model, yunet_model)
    v1 = v1_config(v1_model or model, yunet_model)
    same_model = os.path.abspath(v1.model) == os.path.abspath(base.model)
    reference = replace(
        base,
        name="reference",
        detect_every=1,
        classify_every=1,
        full_detect_every=0,
        adaptive_width=False,
        reference="",
    )
    v1_reference = replace(reference, name="v1-reference", model=v1.model)
    v1_ref = "reference" if same_model else "v1-reference"
    v1 = replace(v1, reference=v1_ref)
    levers = [
        replace(v1, name="v1+student", model=base.model, reference="reference"),
        replace(v1, name="v1+roi", full_detect_every=base.full_detect_every or 10),
        replace(v1, name="v1+linear-resize", detect_resize="linear"),
        replace(v1, name="v1+adaptive-width", adaptive_width=True),
        replace(
            v1,
            name="v1+threads",
            cv_threads=base.cv_threads or 1,
            threads=base.threads,
            decode_threads=base.decode_threads,
        ),
        replace(v1, name="v1+batch", batch=True),
        replace(v1, name="v1+zero-copy", zero_copy=True),
        replace(v1, name="v1+smoothing-per-frame", alpha_per_frame=True),
    ]
    other = "haar" if base.detector == "yunet" else "yunet"
    every = 1 if base.detect_every != 1 else 2
    configs = [
        base,
        v1,
        *levers,
        reference,
        v1_reference,
        replace(base, name="default-unbatched", batch=False),
        # the tracked-squares lever against the default: taken out when the default has it
        replace(base, name="default-no-roi", full_detect_every=0)
        if base.full_detect_every
        else replace(base, name="default+roi", full_detect_every=10),
        replace(base, name="float32", model=str(float_model), reference=""),
        replace(base, name=other, detector=other, reference=""),
        replace(base, name=f"detect_every_{every}", detect_every=every),
        replace(base, name="classify_every_2", classify_every=2)
        if base.classify_every == 1
        else replace(base, name="classify_every_1", classify_every=1),
        *(replace(base, name=f"threads_{t}", threads=t) for t in (1, 2, 4) if t != base.threads),
        BenchConfig("decode", "decode"),
        BenchConfig("baseline", "baseline"),
    ]
    cores = os.cpu_count() or 1
    skip = {"default-unbatched"} | ({"v1-reference", "v1+student"} if same_model else set())
    # More threads than cores only measures contention; it stays selectable with --configs.
    chosen = [
        c.name
        for c in configs
        if (c.kind != "pipeline" or c.threads <= max(2, cores)) and c.name not in skip
    ]
    return {c.name: c for c in configs}, chosen


def find_v1_model(models: str, fallback: str) -> str:
    """The six-view int8 five-class model `v1-default` ran with: the packaged fer_tta_int8.tflite
    (the default model until the one-view student replaced it), else the first int8 .tflite in
    `models` whose contract says tta "multi" and five classes."""
    import glob
    import json

    from fer_edge.edge.config import TTA_MODEL_FILE

    preferred = os.path.join(models, TTA_MODEL_FILE)
    for path in [preferred, *sorted(glob.glob(os.path.join(models, "*.tflite")))]:
        try:
            with open(f"{path}.json") as f:
                contract = json.load(f)
        except (OSError, ValueError):
            continue
        five = len(contract.get("labels", ())) == 5
        if contract.get("tta") == "multi" and contract.get("input_dtype") == "int8" and five:
            return path
    return fallback
