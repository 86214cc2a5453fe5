"""A person's photo folder (<class>/*.jpg|png) -> face crops by the runtime's own crop rule."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from fer_edge.edge.contract import Contract
from fer_edge.edge.crop import crop_face
from fer_edge.edge.errors import DataError
from fer_edge.edge.sources import IMAGE_SUFFIXES
from fer_edge.edge.types import Frame

log = logging.getLogger(__name__)


def load_personal(
    folder: str | Path, contract: Contract, detector=None, min_per_class: int = 5
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crops (N, S, S) uint8, labels (N,) in contract order, and a summary.

    Each photo goes through the detector and the runtime's crop rule, so a fine-tuned model
    sees faces framed exactly as the camera will show them. A photo with no face found is
    taken to be a crop already and used as it is (whole image, no margin).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: personal photo folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: no class folders; expected {root}/<class>/*.jpg with classes "
            f"from {', '.join(contract.labels)}"
        )
    unknown = [c for c in classes if c not in contract.labels]
    if unknown:
        raise DataError(
            f"{root / unknown[0]}: unknown class; the model's classes are "
            f"{', '.join(contract.labels)}"
        )
    crops, labels = [], []
    summary = {"classes": {}, "no_face_used_whole": [], "unreadable": []}
    whole = contract.with_(margin=0.0)
    for cls in classes:
        files = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        n = 0
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                summary["unreadable"].append(str(f))
                continue
            boxes = detector.detect(Frame(img, 0, 0.0)) if detector is not None else []
            if boxes:
                box = max(boxes, key=lambda b: b.area)
                crops.append(crop_face(img, box.as_tuple(), contract))
            else:
                h, w = img.shape[:2]
                crops.append(crop_face(img, (0, 0, w, h), whole))
                summary["no_face_used_whole"].append(str(f))
            labels.append(contract.labels.index(cls))
            n += 1
        if n < min_per_class:
            raise DataError(
                f"{root / cls}: {n} usable photos; at least {min_per_class} per class "
                "are needed (about 20 is good)"
            )
        summary["classes"][cls] = n
    missing = [c for c in contract.labels if c not in classes]
    if missing:
        log.warning("no photos for %s: those classes are not fine-tuned", ", ".join(missing))
    summary["missing_classes"] = missing
    return np.stack(crops), np.array(labels, np.int64), summary


def holdout_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): at least one photo per class held out, at least one kept."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train)), np.sort(np.array(held))
