"""The original approach, timed on the same frames so the runtime's gain is measured, not claimed.

What hobby emotion detectors typically do and this project replaced: Haar on the full-resolution
grey frame, every frame; the face box resized to 48x48; a float Keras MobileNetV2 (alpha 1.0)
that resizes 48 -> 224 inside its graph; and `model.predict` once per face per frame. Weights are
random: speed does not depend on them. Needs TensorFlow, so on a device without it the
configuration is recorded as skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from fer_edge.benchmarks.timing import FramePlan, Skipped, time_frames

DESCRIPTION = "original approach: full-frame Haar + Keras MobileNetV2 224 px, predict() per face"
# The classic detectMultiScale settings of such projects.
HAAR_ARGS = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (40, 40)}
# ModelConfig fields of the baseline network: the full-width MobileNetV2 at its ImageNet size.
MODEL_ARGS = {
    "alpha": 1.0,
    "backbone_size": 224,
    "cut": "out_relu",
    "head_filters": (),
    "backbone_weights": "none",
}


def run_original_approach(plan: FramePlan, desc: str = "baseline") -> tuple[dict, dict]:
    try:
        import keras
        import tensorflow as tf
        from fer_edge.train.config import ModelConfig
        from fer_edge.train.model import build_model, resolve_classes
    except ImportError as exc:
        raise Skipped(
            f"needs TensorFlow and the project's train package ({exc}); install the "
            "`train` extra to time the original approach"
        ) from None
    import cv2
    from fer_edge.edge.sinks import EventWriter
    from fer_edge.edge.types import Box, Face, FrameResult

    if not hasattr(cv2, "CascadeClassifier"):
        raise Skipped(
            "this OpenCV has no CascadeClassifier (5.x); install opencv-python-headless<5"
        )
    cascade = cv2.CascadeClassifier(
        str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    )
    mcfg = ModelConfig(**MODEL_ARGS)
    model = build_model(mcfg)
    size = (mcfg.input_size, mcfg.input_size)

    with EventWriter(os.devnull, resolve_classes(mcfg.classes)) as events:

        def step(frame):
            t0 = time.perf_counter()
            gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
            boxes = [tuple(int(v) for v in b) for b in cascade.detectMultiScale(gray, **HAAR_ARGS)]
            t1 = time.perf_counter()
            crops = [
                cv2.resize(gray[y : y + h, x : x + w], size)[None, :, :, None].astype(np.float32)
                for x, y, w, h in boxes
            ]
            t2 = time.perf_counter()
            probs = [model.predict(c, verbose=0)[0] for c in crops]
            t3 = time.perf_counter()
            faces = tuple(
                Face(Box(*b), i, p, p) for i, (b, p) in enumerate(zip(boxes, probs, strict=True))
            )
            events.write(FrameResult(frame, faces, {}))
            t4 = time.perf_counter()
            return (
                {"detect": t1 - t0, "preprocess": t2 - t1, "inference": t3 - t2, "output": t4 - t3},
                len(boxes),
            )

        timed = time_frames(plan, step, desc)
    summary = timed.summary()
    summary.update(
        tensorflow=tf.__version__,
        keras=keras.__version__,
        params=int(model.count_params()),
        note=(
            f"timed on {timed.frames} frames (--baseline_frames), not the whole video; every "
            "Haar box is classified, false positives included (see faces_per_frame); "
            "TensorFlow's default threads; random weights"
        ),
    )
    return summary, timed.samples
