"""The one place that picks a TFLite interpreter: LiteRT, then tflite-runtime, then TensorFlow."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# (module, pip package) in order of preference.
BACKENDS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)


def load_interpreter_class(prefer: str | None = None):
    """(Interpreter class, package name, version) of the first backend that imports."""
    errors = []
    for module_name, package in BACKENDS:
        if prefer and package != prefer:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{package}: {exc}")
            continue
        return module.Interpreter, package, _version(package)
    from fer_edge.edge.errors import ModelError

    raise ModelError(
        "no TFLite interpreter found; install one with `pip install ai-edge-litert` "
        f"(tried {'; '.join(errors)})"
    )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
