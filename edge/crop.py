"""The crop rule: frame + face box -> the grey square the model takes.

Training uses this for personal photos and the runtime for every frame, so a face reaches the
model the same way in both. FER2013 images are already such crops and are used as they are.
"""

from __future__ import annotations

import cv2
import numpy as np
from fer_edge.edge.contract import Contract


def to_gray(image: np.ndarray) -> np.ndarray:
    """8-bit grey from grey, BGR or BGRA (OpenCV's channel order)."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"unsupported image shape {image.shape}")


def square_box(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int]:
    """Square around the box centre, grown by `margin` of the longer side on each side."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    half = side / 2.0
    return int(round(cx - half)), int(round(cy - half)), max(1, int(round(side)))


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], contract: Contract) -> np.ndarray:
    """Grey uint8 (S, S) crop for the model; parts outside the frame are edge-replicated."""
    if contract.interpolation != "area":
        raise ValueError(f"unknown interpolation {contract.interpolation!r} in model contract")
    x0, y0, side = square_box(box, contract.margin)
    h, w = image.shape[:2]
    # Cut first and convert only the face to grey: at 720p that is 50x less colour conversion.
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + side - h), max(0, x0 + side - w)
    # max(0, ...) on the ends too: a square wholly above or left of the frame has a negative
    # end, which a slice would count from the far edge instead of finding it empty.
    patch = image[max(0, y0) : max(0, min(h, y0 + side)), max(0, x0) : max(0, min(w, x0 + side))]
    if patch.size == 0:
        raise ValueError(f"face box {box} lies outside the {w}x{h} frame")
    if top or bottom or left or right:
        # Replicate the edge so a face at the border keeps its size and position in the crop.
        patch = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_REPLICATE)
    gray = to_gray(patch)
    size = contract.input_size
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)
