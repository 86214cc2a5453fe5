"""Typed, immutable results that travel through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Closeable:
    """A resource with `close()` that is also a context manager (sources, sinks)."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    score: float = 1.0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h

    def iou(self, other: Box) -> float:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.w, other.x + other.w)
        y1 = min(self.y + self.h, other.y + other.h)
        inter = max(0, x1 - x0) * max(0, y1 - y0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> Box:
        return Box(
            int(round(self.x * factor)),
            int(round(self.y * factor)),
            int(round(self.w * factor)),
            int(round(self.h * factor)),
            self.score,
        )


@dataclass(frozen=True)
class Frame:
    """One captured frame. `small` is an optional pre-scaled grey or BGR copy for detection
    (picamera2's lores stream), with `small_scale` = small width / image width."""

    image: np.ndarray  # BGR uint8 (or grey)
    index: int  # 0-based frame number from this source
    t: float  # seconds: media time for files, time since start for live sources
    small: np.ndarray | None = None
    small_scale: float = 1.0
    # Wall-clock time (time.time(), seconds since the epoch) the frame was captured: the
    # producer's stamp when the stream carries one (X-Timestamp), else when the reader grabbed
    # or decoded it. Event time minus this is the frame's age ("glass to event").
    t_capture: float | None = None
    # Frames the latest-frame reader overwrote (never processed) since the previous one.
    dropped_before: int = 0


@dataclass(frozen=True)
class Face:
    box: Box
    track: int  # stable id while the face stays in view
    probs: np.ndarray  # smoothed probabilities, contract label order
    raw_probs: np.ndarray  # this frame's model output

    def label_index(self) -> int:
        return int(np.argmax(self.probs))


@dataclass(frozen=True)
class FrameResult:
    frame: Frame
    faces: tuple[Face, ...]
    timings: dict  # stage -> seconds for this frame
