"""The per-frame pipeline: detect -> crop -> classify -> smooth, with per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fer_edge.edge.classifier import Classifier
from fer_edge.edge.config import DEFAULTS
from fer_edge.edge.crop import crop_face
from fer_edge.edge.detectors import Detector
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box, Face, Frame, FrameResult


@dataclass(frozen=True)
class PipelineConfig:
    detect_every: int = DEFAULTS.detect_every  # detector every N frames; boxes held in between
    max_faces: int = 4  # largest faces classified per frame; the rest are ignored
    min_face: int = 24  # faces narrower than this (frame pixels) are skipped: too few pixels
    smoothing: bool = DEFAULTS.smoothing  # EMA of probabilities per track; off = raw output
    smoothing_alpha: float = 0.4  # weight of the newest frame in the moving average
    # Classify every N frames; in between, frames whose boxes are held (not re-detected) reuse
    # the faces' last smoothed result. Frames with fresh detections are always classified.
    classify_every: int = DEFAULTS.classify_every


class Pipeline:
    """Holds the detector, classifier and tracker; `process` does one frame."""

    def __init__(
        self, detector: Detector, classifier: Classifier, config: PipelineConfig = PipelineConfig()
    ):
        self.detector, self.classifier, self.config = detector, classifier, config
        self.tracker = Tracker(alpha=config.smoothing_alpha if config.smoothing else 1.0)
        self._boxes: list[Box] = []
        self._faces: tuple[Face, ...] = ()

    def process(self, frame: Frame) -> FrameResult:
        cfg = self.config
        t0 = time.perf_counter()
        detected = frame.index % max(1, cfg.detect_every) == 0 or not self._boxes
        if detected:
            boxes = [b for b in self.detector.detect(frame) if b.w >= cfg.min_face]
            self._boxes = sorted(boxes, key=lambda b: b.area, reverse=True)[: cfg.max_faces]
        t1 = time.perf_counter()
        if not detected and frame.index % max(1, cfg.classify_every) != 0:
            skipped = {"preprocess": 0.0, "inference": 0.0, "smoothing": 0.0}
            return FrameResult(frame, self._faces, {"detect": t1 - t0, **skipped})
        crops = [
            crop_face(frame.image, b.as_tuple(), self.classifier.contract) for b in self._boxes
        ]
        t2 = time.perf_counter()
        probs = [self.classifier.predict(c) for c in crops]
        t3 = time.perf_counter()
        tracked = self.tracker.update(self._boxes, probs)
        faces = tuple(Face(b, tid, sp, p) for b, (tid, sp), p in zip(self._boxes, tracked, probs))
        self._faces = faces
        t4 = time.perf_counter()
        timings = {
            "detect": t1 - t0,
            "preprocess": t2 - t1,
            "inference": t3 - t2,
            "smoothing": t4 - t3,
        }
        return FrameResult(frame, faces, timings)
