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

import os as _os
from typing import TYPE_CHECKING

# A source checkout used without installing it (CI's system python3 builds the emulated Pi's
# userland with deploy/pi before `make setup` has made the venv): the subpackages are the
# folders beside this one (edge/, evaluation/, train/, convert/, benchmarks/, models/), as
# pyproject.toml's package-dir maps them. An installed fer_edge has no pyproject.toml beside it.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_checkout, "pyproject.toml")) and _os.path.isfile(
    _os.path.join(_checkout, "edge", "__init__.py")
):
    __path__.append(_checkout)
del _checkout

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
