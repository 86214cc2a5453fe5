"""The per-frame pipeline: detect -> crop -> classify -> smooth, with per-stage timings.

Work per frame is kept proportional to what changed: full-frame detection only every
`full_detect_every` frames (in between, each tracked face is re-found in a small square around
its last box), a narrower full-frame pass when the tracked faces are large, and one batched
interpreter call for all faces of a frame every `classify_every` frames (new faces at once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.config import DEFAULTS
from fer_edge.edge.crop import crop_face
from fer_edge.edge.detectors import Detector, detect_around
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box, Face, Frame, FrameResult

ADAPTIVE_FACE_PX = 24  # smallest tracked face's width in the detector's copy, adaptive mode
ADAPTIVE_MIN_WIDTH = 160  # narrowest full-frame copy in adaptive mode
ADAPTIVE_FULL_EVERY = 4  # every Nth full-frame pass uses the full --detect_width anyway


@dataclass(frozen=True)
class PipelineConfig:
    detect_every: int = DEFAULTS.detect_every  # detector every N frames; boxes held in between
    # 0: every detection pass searches the whole frame. N: the whole frame every N frames (and
    # whenever a tracked face is lost or none is tracked); passes in between search only a
    # square around each tracked face.
    full_detect_every: int = DEFAULTS.full_detect_every
    roi_size: int = 96  # side of the detector's input for one tracked face's square
    # Full-frame passes on a copy just wide enough for the smallest tracked face to stay
    # ADAPTIVE_FACE_PX wide (never narrower than ADAPTIVE_MIN_WIDTH nor wider than the
    # detector's width); every ADAPTIVE_FULL_EVERY-th pass uses the full width for new faces.
    adaptive_width: bool = DEFAULTS.adaptive_width
    max_faces: int = DEFAULTS.max_faces  # largest faces classified per frame; the rest ignored
    min_face: int = 24  # faces narrower than this (frame pixels) are skipped: too few pixels
    smoothing: bool = DEFAULTS.smoothing  # EMA of probabilities per track; off = raw output
    smoothing_alpha: float = 0.4  # weight of the newest frame in the moving average
    # With classify_every N, weigh each classification 1 - (1 - alpha)^N, so the average follows
    # a face as fast (in frames) as when every frame is classified. False: alpha as it is.
    alpha_per_frame: bool = True
    # Classify every N frames; in between, faces keep their track's last result (boxes still
    # move with detection). A face that starts a new track is classified at once.
    classify_every: int = DEFAULTS.classify_every


class Pipeline:
    """Holds the detector, classifier and tracker; `process` does one frame."""

    def __init__(
        self, detector: Detector, classifier: Classifier, config: PipelineConfig = PipelineConfig()
    ):
        self.detector, self.classifier, self.config = detector, classifier, config
        alpha = config.smoothing_alpha if config.smoothing else 1.0
        if config.alpha_per_frame:
            alpha = 1.0 - (1.0 - alpha) ** max(1, config.classify_every)
        self.tracker = Tracker(alpha=alpha)
        self._boxes: list[Box] = []
        self._faces: tuple[Face, ...] = ()
        self._raw: dict[int, np.ndarray] = {}
        self._last_full = -(10**9)
        self._full_passes = 0
        self.counts = {"full": 0, "roi": 0, "classified": 0}  # detection passes, classify calls

    def _full_width(self, frame: Frame) -> int | None:
        cfg, width = self.config, self.detector.width
        if not cfg.adaptive_width or not self._boxes or width <= 0:
            return None
        if self._full_passes % ADAPTIVE_FULL_EVERY == 0:
            return None
        frame_w = frame.image.shape[1]
        want = frame_w * ADAPTIVE_FACE_PX / max(1, min(b.w for b in self._boxes))
        want = int(round(want / 32.0)) * 32  # few distinct widths: YuNet keeps its input shape
        return max(ADAPTIVE_MIN_WIDTH, min(width, want))

    def _detect(self, frame: Frame) -> list[Box]:
        cfg = self.config
        roi = cfg.full_detect_every > 0 and self._boxes
        if roi and frame.index - self._last_full < cfg.full_detect_every:
            found = detect_around(self.detector, frame, self._boxes, size=cfg.roi_size)
            if found is not None and all(b is not None for b in found):
                self.counts["roi"] += 1
                # The small square places a face well but sizes it differently from a full
                # pass; keep the size from the last full pass so the crop stays the same.
                return [_moved(old, new) for old, new in zip(self._boxes, found)]
        self._last_full = frame.index
        boxes = self.detector.detect(frame, self._full_width(frame))
        self._full_passes += 1
        self.counts["full"] += 1
        return boxes

    def process(self, frame: Frame) -> FrameResult:
        cfg = self.config
        t0 = time.perf_counter()
        detected = frame.index % max(1, cfg.detect_every) == 0 or not self._boxes
        if detected:
            boxes = [b for b in self._detect(frame) if b.w >= cfg.min_face]
            self._boxes = sorted(boxes, key=lambda b: b.area, reverse=True)[: cfg.max_faces]
        boxes = self._boxes
        classify = frame.index % max(1, cfg.classify_every) == 0 or (
            detected and self.tracker.has_new(boxes)
        )
        t1 = time.perf_counter()
        if not detected and not classify:
            skipped = {"preprocess": 0.0, "inference": 0.0, "smoothing": 0.0}
            return FrameResult(frame, self._faces, {"detect": t1 - t0, **skipped})
        probs: list[np.ndarray | None] = [None] * len(boxes)
        t2 = t3 = t1
        if classify and boxes:
            contract = self.classifier.contract
            crops = [crop_face(frame.image, b.as_tuple(), contract) for b in boxes]
            t2 = time.perf_counter()
            probs = list(self.classifier.predict_batch(crops))
            t3 = time.perf_counter()
            self.counts["classified"] += 1
        tracked = self.tracker.update(boxes, probs)
        for (tid, _), p in zip(tracked, probs):
            if p is not None:
                self._raw[tid] = p
        faces = tuple(
            Face(b, tid, sp, self._raw.get(tid, sp)) for b, (tid, sp) in zip(boxes, tracked)
        )
        self._raw = {f.track: self._raw[f.track] for f in faces if f.track in self._raw}
        self._faces = faces
        t4 = time.perf_counter()
        timings = {
            "detect": t1 - t0,
            "preprocess": t2 - t1,
            "inference": t3 - t2,
            "smoothing": t4 - t3,
        }
        return FrameResult(frame, faces, timings)


def _moved(old: Box, new: Box) -> Box:
    """`old`'s size centred where `new` is."""
    cx, cy = new.x + new.w / 2.0, new.y + new.h / 2.0
    return Box(int(round(cx - old.w / 2.0)), int(round(cy - old.h / 2.0)), old.w, old.h, new.score)


def apply_thread_plan(cv_threads: int) -> int:
    """Set OpenCV's worker threads (0 = leave OpenCV's default); returns the previous count.

    On two cores the video decoder's thread, OpenCV's pool (resize, YuNet) and LiteRT's pool
    compete: one OpenCV thread leaves the second core to decoding and the interpreter.
    """
    import cv2

    previous = cv2.getNumThreads()
    if cv_threads > 0:
        cv2.setNumThreads(cv_threads)
    return previous
