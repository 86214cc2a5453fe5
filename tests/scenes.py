"""A simple world with a real detector for it: bright squares ("faces") on a black frame,
found by thresholding. Geometry and scheduling tests use it where YuNet on a real video can
only be checked approximately."""

from __future__ import annotations

import cv2
import numpy as np
from fer_edge.edge.types import Box, Frame


class BrightSquares:
    """Boxes around bright regions; `seen` holds each square it searched, `full` the width of
    each whole-frame pass (None: its own)."""

    name = "bright"
    resize = "area"

    def __init__(self, width: int = 320):
        self.width, self.seen, self.full = width, [], []

    def detect(self, frame, width=None):
        """A whole-frame pass on a copy `width` wide (the detector's width when None)."""
        self.full.append(width)
        width = self.width if width is None else width
        h, w = frame.image.shape[:2]
        scale = width / w if 0 < width < w else 1.0
        small = cv2.resize(frame.image, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
        return [b.scaled(1 / scale) for b in self._find(small)]

    def detect_image(self, image):
        """A search of one square (what detect_around asks for)."""
        self.seen.append(image.copy())
        return self._find(image)

    def _find(self, image):
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        n, _, stats, _ = cv2.connectedComponentsWithStats((grey > 127).astype(np.uint8))
        return [Box(int(x), int(y), int(w), int(h), 0.9) for x, y, w, h, _ in stats[1:n]]


def frame_with(*boxes, size=(480, 640), index=0):
    """A black frame with a white square at each (x, y, w, h)."""
    image = np.zeros((*size, 3), np.uint8)
    for x, y, w, h in boxes:
        image[y : y + h, x : x + w] = 255
    return Frame(image, index, index / 30)
