"""The runtime's defaults, written once: the CLI flags, `PipelineConfig`, the Python API, the
benchmark and deploy all read them from here.

Standard library only, so anything (a Makefile probe, deploy) can import it cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The models packaged with fer_edge: fer_edge/models/ in an installed wheel, models/ in a
# source checkout (the same path relative to this file in both layouts).
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL_FILE = "fer_int8.tflite"  # one view per face: the distilled student
TTA_MODEL_FILE = "fer_tta_int8.tflite"  # six views per face inside the graph (`--tta`)
SEVEN_MODEL_FILE = "fer7_int8.tflite"  # FER2013's seven classes (`--model fer7_int8.tflite`)
YUNET_FILE = "face_detection_yunet.onnx"
# Environment variables that override the packaged files.
MODEL_ENV = "FER_EDGE_MODEL"
YUNET_ENV = "FER_EDGE_YUNET"


@dataclass(frozen=True)
class RuntimeConfig:
    # TFLite model with its .json contract beside it; "" = $FER_EDGE_MODEL when set, else the
    # packaged fer_int8.tflite
    # (a bare file name such as fer7_int8.tflite also finds the packaged models)
    model: str = ""
    # test-time augmentation: the packaged six-view model (six interpreter views per face,
    # about 4x the classifier's cost) instead of the one-view default; ignored with --model
    tta: bool = False
    source: str = "0"  # camera index, 'picamera', video/image file, image folder, or stream URL
    # interpreter threads; 1 on two cores leaves the other core to decoding and detection
    threads: int = 1
    detector: str = "yunet"  # face detector: yunet (faster, steadier) or haar
    # YuNet .onnx; "" = $FER_EDGE_YUNET when set, else the packaged face_detection_yunet.onnx
    yunet_model: str = ""
    # the detector sees a copy this wide and its boxes are mapped back (0 = full frame)
    detect_width: int = 320
    # how the detector's copy is shrunk: linear (about 10x cheaper at 1280 -> 320 px and as good
    # for finding faces) or area (smoothest)
    detect_resize: str = "linear"
    detect_every: int = 2  # run the detector every N frames and hold its boxes in between
    # search the whole frame every N frames; detection passes in between look only around
    # tracked faces, so a new face is found within N frames (0 = always the whole frame)
    full_detect_every: int = 10
    # narrower whole-frame passes while the tracked faces are large (every 4th pass full width)
    adaptive_width: bool = False
    max_faces: int = 16  # largest faces classified per frame; the rest are ignored
    cv_threads: int = (
        1  # OpenCV worker threads (0 = OpenCV's default); LiteRT and decoding use the rest
    )
    # FFmpeg's decoder threads for video files (0 = OpenCV's choice, one per core and more);
    # 1 leaves the other core of two to the pipeline instead of both fighting over it
    decode_threads: int = 1
    # classify every N frames; frames whose boxes are held reuse the faces' last result
    classify_every: int = 2
    smoothing: bool = True  # EMA of probabilities per track; off = raw per-frame output
    width: int = 0  # requested camera width (0 = device default)
    height: int = 0  # requested camera height (0 = device default)


DEFAULTS = RuntimeConfig()


def default_model_path() -> Path:
    """$FER_EDGE_MODEL, else the packaged default model."""
    return Path(os.environ.get(MODEL_ENV) or MODELS_DIR / DEFAULT_MODEL_FILE)


def default_yunet_path() -> Path | None:
    """$FER_EDGE_YUNET, else the packaged YuNet when it is there."""
    if os.environ.get(YUNET_ENV):
        return Path(os.environ[YUNET_ENV])
    packaged = MODELS_DIR / YUNET_FILE
    return packaged if packaged.is_file() else None


def model_path(model: str | os.PathLike | None, tta: bool = False) -> Path:
    """The model to load: the one given (a bare name may be a packaged model), the six-view
    model with `tta`, or the default."""
    if model:
        p = Path(model)
        if not p.exists() and p.name == str(model) and (MODELS_DIR / p.name).is_file():
            return MODELS_DIR / p.name
        return p
    return MODELS_DIR / TTA_MODEL_FILE if tta else default_model_path()
