"""The crop rule: frame + face box -> the grey square the model takes.

Training uses this for personal photos and the runtime for every frame, so a face reaches the
model the same way in both. FER2013 images are already such crops and are used as they are.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.contract import Contract


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
    gray = to_gray(image)
    x0, y0, side = square_box(box, contract.margin)
    h, w = gray.shape
    # Pad only as far as the square leaves the frame, so a face at the border keeps its size.
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    patch = gray[y0 : y0 + side, x0 : x0 + side]
    size = contract.input_size
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    if contract.interpolation != "area":
        raise ValueError(f"unknown interpolation {contract.interpolation!r} in model contract")
    return cv2.resize(patch, (size, size), interpolation=interp)
