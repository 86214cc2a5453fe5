"""fer-edge: facial emotion recognition from training to a camera on a Raspberry Pi.

The Python API:

    from fer_edge import EmotionRecognizer

    with EmotionRecognizer() as rec:
        for face in rec.predict(image):
            print(face.label, face.score, face.box)

Importing this package is cheap: the API's modules (OpenCV, the interpreter) load on first use,
and nothing here ever imports TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fer_edge.edge.config import RuntimeConfig
    from fer_edge.edge.errors import FerEdgeError
    from fer_edge.edge.recognizer import EmotionRecognizer, FaceEmotion, FrameEmotions

__all__ = ["EmotionRecognizer", "FaceEmotion", "FerEdgeError", "FrameEmotions", "RuntimeConfig"]

_HOMES = {
    "EmotionRecognizer": "fer_edge.edge.recognizer",
    "FaceEmotion": "fer_edge.edge.recognizer",
    "FrameEmotions": "fer_edge.edge.recognizer",
    "RuntimeConfig": "fer_edge.edge.config",
    "FerEdgeError": "fer_edge.edge.errors",
}


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'fer_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
