"""Class probabilities of a model file for a batch of raw grey faces: a .tflite in the runtime's
interpreter (no TensorFlow), a .keras/.h5 in Keras (the `train` extra).

Both get the same raw faces, so the numbers compare like for like.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fer_edge.edge.errors import ModelError

KERAS_SUFFIXES = (".keras", ".h5")
# fer-edge is not on a package index: the extra installs from a clone; elsewhere, its packages
TRAIN_EXTRA_HINT = (
    "install the train extra (in a clone of fer-edge: pip install -e '.[train]'; elsewhere: "
    "pip install tensorflow keras h5py) or evaluate its .tflite"
)


def require_keras(path: Path):
    """The keras module, or a one-line ModelError naming the `train` extra."""
    try:
        import keras
    except ImportError:
        raise ModelError(
            f"{path}: a Keras model needs TensorFlow, which is not installed; {TRAIN_EXTRA_HINT}"
        ) from None
    return keras


def load_keras(path: str | Path):
    """A saved fer-edge Keras model (.keras or .h5), or a one-line ModelError."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: Keras model not found; train one with `make train`")
    keras = require_keras(p)
    try:
        return keras.saving.load_model(p, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{p}: not a loadable Keras model ({first})") from None


def check_model_type(path: Path) -> None:
    """Fail before any data is read: an unknown suffix, or Keras without TensorFlow."""
    if path.suffix in KERAS_SUFFIXES:
        require_keras(path)
    elif path.suffix != ".tflite":
        raise ModelError(f"{path}: unknown model type; expected .tflite, .keras or .h5")


def predict(model_path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Probabilities (N, K) for raw grey faces (N, S, S)."""
    check_model_type(model_path)
    if model_path.suffix == ".tflite":
        from fer_edge.edge.classifier import Classifier

        return Classifier(model_path, threads=threads).predict_batch(x)
    model = load_keras(model_path)
    return model.predict(x[..., None].astype(np.float32), batch_size=256, verbose=0)
