"""Face detectors behind one small interface: frame -> boxes in frame coordinates.

YuNet (cv2.FaceDetectorYN, needs its .onnx) is the default: faster and steadier than Haar on
720p. Haar needs OpenCV 4.x wheels: 5.x dropped cv2.CascadeClassifier and the XML files, so
the `edge` extra pins opencv-python-headless below 5.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
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
    width: int

    def detect(self, frame: Frame, width: int | None = None) -> list[Box]: ...

    def detect_image(self, image: np.ndarray) -> list[Box]: ...


# How the detector's copy is shrunk. "area" averages every source pixel (the smoothest copy);
# "linear" samples it, about 10x cheaper at 1280 -> 320 px and as good for finding faces.
RESIZE = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
# YuNet networks kept per detector, one per input size in use: the whole-frame copy and the
# tracked squares (multiples of 32, so few distinct sizes)
MAX_NETS = 8


def _small_image(frame: Frame, width: int, resize: str = "area") -> tuple[np.ndarray, float]:
    """A copy at most `width` wide and the factor that maps its boxes back to the frame."""
    if frame.small is not None:
        return frame.small, 1.0 / frame.small_scale
    h, w = frame.image.shape[:2]
    if width <= 0 or w <= width:
        return frame.image, 1.0
    scale = width / w
    small = cv2.resize(frame.image, (width, int(round(h * scale))), interpolation=RESIZE[resize])
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
        resize: str = "area",
    ):
        path = Path(model_path) if model_path else default_yunet_path()
        if path is None:
            raise ModelError("YuNet model not found; set FER_EDGE_YUNET or pass --yunet-model PATH")
        if not path.is_file():
            raise ModelError(f"{path}: YuNet model file not found; pass --yunet-model PATH")
        self.path, self.width, self.resize = path, width, resize
        self._params = (score, nms, top_k)
        # One network per input size: changing a network's input size makes OpenCV reshape
        # (reallocate) it on the next call, which costs more than a small detection itself, and
        # whole-frame passes alternate with tracked squares of other sizes.
        self._nets: OrderedDict[tuple[int, int], cv2.FaceDetectorYN] = OrderedDict()
        self._net_for((1, 1))  # fail here, not on the first frame, when the file is no model
        self._nets.clear()

    def detect(self, frame: Frame, width: int | None = None) -> list[Box]:
        """Faces in frame pixels, found on a copy `width` wide (default: the detector's)."""
        small, back = _small_image(frame, self.width if width is None else width, self.resize)
        return [b.scaled(back) for b in self.detect_image(small)]

    def detect_image(self, image: np.ndarray) -> list[Box]:
        """Faces in this image's own pixels."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        _, faces = self._net_for((image.shape[1], image.shape[0])).detect(image)
        if faces is None:
            return []
        return [Box(int(f[0]), int(f[1]), int(f[2]), int(f[3]), float(f[14])) for f in faces]

    def _net_for(self, size: tuple[int, int]):
        net = self._nets.get(size)
        if net is None:
            try:
                net = cv2.FaceDetectorYN.create(str(self.path), "", size, *self._params)
            except cv2.error:
                raise ModelError(f"{self.path}: not a YuNet ONNX model OpenCV can load") from None
            self._nets[size] = net
            if len(self._nets) > MAX_NETS:
                self._nets.popitem(last=False)  # the least recently used size
        else:
            self._nets.move_to_end(size)
        return net


class HaarDetector:
    name = "haar"

    def __init__(
        self,
        width: int = DEFAULTS.detect_width,
        cascade: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        resize: str = "area",
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
        self.min_size, self.resize = min_size, resize

    def detect(self, frame: Frame, width: int | None = None) -> list[Box]:
        small, back = _small_image(frame, self.width if width is None else width, self.resize)
        return [b.scaled(back) for b in self.detect_image(small)]

    def detect_image(self, image: np.ndarray) -> list[Box]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self._clf.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        return [Box(int(x), int(y), int(w), int(h)) for x, y, w, h in found]


def detect_around(
    detector: Detector,
    frame: Frame,
    boxes: list[Box],
    size: int = 96,
    grow: float = 2.0,
    face_px: int = 48,
) -> list[Box | None] | None:
    """Re-detect each tracked face in a small square around its last box.

    The square is cut from the same shrunk copy a whole-frame pass sees, so the detector
    finds the face about where a whole-frame pass would. The detector sees it with the face
    at most `face_px` wide (a larger face is shrunk to that: YuNet finds faces of that size
    reliably, and its cost grows with the square's area) in a square `grow` times the face,
    at least `size` pixels, rounded up to a multiple of 32 (YuNet's stride, and few distinct
    input shapes); the square is moved inside the copy rather than padded. The detection
    closest to the old box wins; None where the face was not found. None when the squares
    together are at least as large as the whole copy (many or large faces): then one
    whole-frame pass is the cheaper search.
    """
    small, back = _small_image(frame, detector.width, getattr(detector, "resize", "area"))
    sh, sw = small.shape[:2]
    squares = []
    for box in boxes:
        b = box.scaled(1.0 / back)
        face = max(b.w, b.h, 1)
        shrink = min(1.0, face_px / face)  # detector pixels per copy pixel
        out_side = max(size, -(-int(grow * face * shrink) // 32) * 32)
        side = min(int(round(out_side / shrink)), sw, sh)  # pixels cut from the copy
        x0 = min(max(0, int(round(b.x + b.w / 2 - side / 2))), max(0, sw - side))
        y0 = min(max(0, int(round(b.y + b.h / 2 - side / 2))), max(0, sh - side))
        squares.append((box, x0, y0, side, min(out_side, side)))
    if sum(sq[3] * sq[3] for sq in squares) >= sw * sh:
        return None
    out: list[Box | None] = []
    for box, x0, y0, side, out_side in squares:
        region = np.ascontiguousarray(small[y0 : y0 + side, x0 : x0 + side])
        k = 1.0
        if out_side < side:
            k = side / out_side
            # bit-exact on every CPU (plain INTER_LINEAR is not, at this non-integer scale)
            region = cv2.resize(region, (out_side, out_side), interpolation=cv2.INTER_LINEAR_EXACT)
        found = [
            Box(
                int(round(x0 + f.x * k)), int(round(y0 + f.y * k)),
                int(round(f.w * k)), int(round(f.h * k)), f.score,
            ).scaled(back)
            for f in detector.detect_image(region)
        ]  # fmt: skip
        best = max(found, key=box.iou, default=None)
        out.append(best if best is not None and box.iou(best) > 0.1 else None)
    return out


def make_detector(
    name: str,
    width: int = DEFAULTS.detect_width,
    yunet_model: str | None = None,
    resize: str = "area",
) -> Detector:
    if resize not in RESIZE:
        raise ConfigError(f"--detect-resize {resize!r}: choose {' or '.join(RESIZE)}")
    if name == "yunet":
        return YuNetDetector(yunet_model, width=width, resize=resize)
    if name == "haar":
        return HaarDetector(width=width, resize=resize)
    raise ConfigError(f"--detector {name!r}: choose yunet or haar")
