"""What a cheap camera does to a face: blur, noise, compression, bad light, low resolution,
occlusion and a detector box that is a little off.

One implementation serves two purposes: training draws random degradations at a random
severity (`augment_batch`), and `fer-edge eval --degrade capture` applies each one at three
fixed severities (`degrade`) to measure robustness. Numpy and OpenCV only, so the suite also
runs next to the runtime without TensorFlow.

Severities are in face-crop units: the images are 48x48 crops, where a face is about 40 px
wide. Level 1 is a mediocre webcam, level 2 a cheap one in a dim room, level 3 the worst
frame you would still want a label for. Level 0 is the image unchanged; training interpolates
between levels.
"""

from __future__ import annotations

import cv2
import numpy as np

# Parameters at severity levels 0 (identity), 1, 2, 3 for each degradation.
LEVELS: dict[str, tuple[float, ...]] = {
    "defocus": (0.0, 0.7, 1.1, 1.6),  # Gaussian blur sigma, px
    "motion": (1.0, 3.0, 5.0, 7.0),  # motion-blur streak length, px, random direction
    "noise": (0.0, 6.0, 12.0, 20.0),  # sensor noise sigma, grey levels (plus shot noise)
    "jpeg": (100.0, 50.0, 25.0, 12.0),  # JPEG quality of the crop
    "dark": (1.0, 0.5, 0.3, 0.16),  # exposure gain (with read noise), no auto-exposure
    "gamma": (1.0, 0.7, 0.5, 0.35),  # gamma < 1: washed-out, over-exposed face
    "lowres": (48.0, 32.0, 22.0, 16.0),  # face resolution before upscaling back, px
    "occlude": (0.0, 0.12, 0.2, 0.3),  # share of the crop hidden by a hand/glasses/mask block
    "jitter": (0.0, 0.05, 0.1, 0.15),  # detector box error: shift and scale, share of the side
}
SUITES: dict[str, tuple[str, ...]] = {
    "capture": tuple(LEVELS),
}
SEVERITIES = (1, 2, 3)


def _param(kind: str, severity: float) -> float:
    levels = LEVELS[kind]
    return float(np.interp(severity, np.arange(len(levels)), levels))


def degrade(img: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """One grey uint8 (S, S) face crop under degradation `kind` at `severity` (0..3)."""
    p = _param(kind, severity)
    f = img.astype(np.float32)
    s = img.shape[0]
    if kind == "defocus":
        out = cv2.GaussianBlur(f, (0, 0), p) if p > 0.05 else f
    elif kind == "motion":
        n = max(1, int(round(p)))
        if n == 1:
            out = f
        else:
            k = np.zeros((n, n), np.float32)
            k[n // 2, :] = 1.0 / n
            angle = rng.uniform(0, 180)
            rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, 1.0)
            k = cv2.warpAffine(k, rot, (n, n))
            out = cv2.filter2D(f, -1, k / max(k.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)
    elif kind == "noise":
        shot = np.sqrt(np.maximum(f, 0) / 255.0) * p * 0.5
        out = f + rng.normal(0, 1, f.shape).astype(np.float32) * (p * 0.75 + shot)
    elif kind == "jpeg":
        q = int(round(p))
        if q >= 100:
            out = f
        else:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    elif kind == "dark":
        read_noise = (1.0 - p) * 4.0
        out = f * p + rng.normal(0, 1, f.shape).astype(np.float32) * read_noise
        out = np.round(out)  # the sensor quantises the dark image: detail is gone for good
    elif kind == "gamma":
        out = 255.0 * (f / 255.0) ** p
    elif kind == "lowres":
        r = max(4, int(round(p)))
        if r >= s:
            out = f
        else:
            small = cv2.resize(img, (r, r), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    elif kind == "occlude":
        out = f.copy()
        if p > 0:
            area = p * s * s
            aspect = rng.uniform(0.5, 2.0)
            h = int(np.clip(np.sqrt(area / aspect), 2, s))
            w = int(np.clip(area / h, 2, s))
            y0, x0 = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
            fill = rng.uniform(0, 255) if rng.random() < 0.7 else rng.uniform(0, 255, (h, w))
            out[y0 : y0 + h, x0 : x0 + w] = fill
    elif kind == "jitter":
        if p <= 0:
            out = f
        else:
            dx, dy = rng.uniform(-p, p, 2) * s
            scale = 1.0 + rng.uniform(-p, p)
            m = cv2.getRotationMatrix2D((s / 2, s / 2), 0.0, scale)
            m[:, 2] += (dx, dy)
            out = cv2.warpAffine(f, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
    else:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(LEVELS)}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def degrade_set(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """The whole (N, S, S) set under one degradation; the same seed gives the same images."""
    rng = np.random.default_rng([seed, list(LEVELS).index(kind), int(severity * 10)])
    return np.stack([degrade(img, kind, severity, rng) for img in images])


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, p: float = 0.5, max_severity: float = 3.0
) -> np.ndarray:
    """Training augmentation: each image gets, with probability p, one or two random
    degradations at a random severity in (0, max_severity]."""
    out = images.copy()
    kinds = list(LEVELS)
    squeeze = out.ndim == 4
    if squeeze:
        out = out[..., 0]
    for i in range(len(out)):
        if rng.random() >= p:
            continue
        img = np.clip(np.round(out[i]), 0, 255).astype(np.uint8)
        for kind in rng.choice(kinds, size=1 + int(rng.random() < 0.3), replace=False):
            img = degrade(img, str(kind), rng.uniform(0.2, max_severity), rng)
        out[i] = img
    return out[..., None] if squeeze else out
