"""Face detectors behind one small interface: frame -> boxes in frame coordinates.

YuNet (cv2.FaceDetectorYN, needs its .onnx) is the default: faster and steadier than Haar on
720p. Haar needs OpenCV 4.x wheels: 5.x dropped cv2.CascadeClassifier and the XML files, so
the `edge` extra pins opencv-python-headless below 5.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from fer_edge.edge.config import DEFAULTS, default_yunet_path
from fer_edge.edge.errors import ConfigError, ModelError
from fer_edge.edge.types import Box, Frame

log = logging.getLogger(__name__)


class Detector(Protocol):
    name: str

    def detect(self, frame: Frame) -> list[Box]: ...


def _small_image(frame: Frame, width: int) -> tuple[np.ndarray, float]:
    """A copy at most `width` wide and the factor that maps its boxes back to the frame."""
    if frame.small is not None:
        return frame.small, 1.0 / frame.small_scale
    h, w = frame.image.shape[:2]
    if width <= 0 or w <= width:
        return frame.image, 1.0
    scale = width / w
    small = cv2.resize(frame.image, (width, int(round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, 1.0 / scale


class YuNetDetector:
    name = "yunet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        width: int = DEFAULTS.detect_width,
        score: float = 0.6,
        nms: float = 0.3,
        top_k: int = 50,
    ):
        path = Path(model_path) if model_path else default_yunet_path()
        if path is None:
            raise ModelError("YuNet model not found; set FER_EDGE_YUNET or pass --yunet-model PATH")
        if not path.is_file():
            raise ModelError(f"{path}: YuNet model file not found; pass --yunet-model PATH")
        self.path, self.width = path, width
        try:
            # (1, 1): a placeholder; detect() sets the real input size before the first call
            self._net = cv2.FaceDetectorYN.create(str(path), "", (1, 1), score, nms, top_k)
        except cv2.error:
            raise ModelError(f"{path}: not a YuNet ONNX model OpenCV can load") from None
        self._size: tuple[int, int] | None = None

    def detect(self, frame: Frame) -> list[Box]:
        small, back = _small_image(frame, self.width)
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(small)
        if faces is None:
            return []
        return [
            Box(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[14])).scaled(back)
            for f in faces
        ]


class HaarDetector:
    name = "haar"

    def __init__(
        self,
        width: int = DEFAULTS.detect_width,
        cascade: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
    ):
        if not hasattr(cv2, "CascadeClassifier"):
            raise ConfigError(
                "--detector haar needs an OpenCV 4.x wheel (5.x dropped "
                "CascadeClassifier); use --detector yunet or "
                "`pip install 'opencv-python-headless<5'`"
            )
        if cascade is None:
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._clf = cv2.CascadeClassifier(str(cascade))
        if self._clf.empty():
            raise ModelError(f"{cascade}: Haar cascade could not be loaded")
        self.width, self.scale_factor, self.min_neighbors = width, scale_factor, min_neighbors
        self.min_size = min_size

    def detect(self, frame: Frame) -> list[Box]:
        small, back = _small_image(frame, self.width)
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        found = self._clf.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [Box(int(x), int(y), int(w), int(h)).scaled(back) for x, y, w, h in found]


def make_detector(
    name: str, width: int = DEFAULTS.detect_width, yunet_model: str | None = None
) -> Detector:
    if name == "yunet":
        return YuNetDetector(yunet_model, width=width)
    if name == "haar":
        return HaarDetector(width=width)
    raise ConfigError(f"--detector {name!r}: choose yunet or haar")
