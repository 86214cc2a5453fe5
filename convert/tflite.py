"""Keras model -> TFLite float32, float16, dynamic-range and full-integer int8.

Converted with `TFLiteConverter.from_keras_model`: with TF 2.21 / Keras 3.15 the other route,
`model.export()` + `from_saved_model`, produced a graph whose outputs differ from the Keras model
(measured: 17% top-1 agreement on a small model), which the agreement check below catches.
Builtin ops only, so plain LiteRT / tflite-runtime run the
result. Every output is checked in the LiteRT interpreter against the Keras model before it
replaces anything, and carries its contract as a `.json` sidecar.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from fer_edge.edge.quiet import native_stderr_to_debug
from fer_edge.train.config import DEFAULT_KERAS_SOURCE

log = logging.getLogger(__name__)

VARIANTS = ("float32", "float16", "dynamic", "int8")


@dataclass(frozen=True)
class ConvertConfig:
    model: str = DEFAULT_KERAS_SOURCE  # Keras model with its .json contract beside it
    out: str = "models"  # folder for <prefix>_<variant>.tflite (+ .json)
    prefix: str = "fer"  # file name prefix
    variants: tuple[str, ...] = VARIANTS  # which TFLite variants to write
    data: str = ""  # FER2013 source for calibration and checks ("" = default)
    # representative FER2013 training faces, stratified over classes; more than the usual few
    # hundred because agreement with Keras kept rising with the count on our models
    calibration: int = 1500
    check: int = 0  # PublicTest faces compared with the Keras model (0 = all 3,037)
    # A variant is written only if it agrees with Keras on at least min_agreement of the check
    # faces AND loses at most max_drop accuracy on them. FER2013 has many near-ties, so int8
    # flips some of them both ways: the shipped int8 agrees on 95.8% of PublicTest and loses
    # 0.4 points there, while a broken conversion agrees on ~20%.
    min_agreement: float = 0.95
    max_drop: float = 0.01  # largest accuracy drop against Keras allowed (0.01 = 1 point)
    # int8 in/out: the graph's input is raw grey 0..255, which int8 with scale 1 and zero point
    # -128 represents exactly; int8 is LiteRT's native full-integer type (uint8 is legacy).
    io_type: str = "int8"
    seed: int = 1337  # seed of the stratified calibration and check subsets
    # Test-time views to wrap the trained network in before converting: none | flip | multi;
    # "" keeps the graph as saved. The Keras reference is the re-wrapped graph too.
    tta: str = ""


def gate_problem(agreement: float, drop: float, cfg: ConvertConfig) -> str:
    """Why a converted variant may not replace the model, or "" when it may.

    `agreement`: share of the check faces where the variant's top-1 is Keras'; `drop`: Keras'
    accuracy minus the variant's (positive = the variant is worse). Both limits are inclusive;
    the 1e-9 keeps a drop of exactly max_drop (a difference of two accuracies, 0.5 - 0.49 =
    0.010000000000000009) from failing on float rounding.
    """
    if agreement < cfg.min_agreement - 1e-9:
        return f"{agreement:.1%} top-1 agreement with Keras (< {cfg.min_agreement:.0%})"
    if drop > cfg.max_drop + 1e-9:
        return f"accuracy {100 * drop:.2f} points below Keras (> {100 * cfg.max_drop:.1f})"
    return ""


def convert_variant(
    model, variant: str, representative: np.ndarray | None, io_type: str = "int8"
) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 needs representative data")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [x[None, :, :, None].astype(np.float32)] for x in representative
        )
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        dtype = {"int8": tf.int8, "uint8": tf.uint8}[io_type]
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype
    elif variant != "float32":
        raise ValueError(f"unknown variant {variant}")
    # The converter prints the exported graph's signature (stdout), MLIR and quantiser lines and
    # a UserWarning (stderr): hundreds of lines per variant, at DEBUG only.
    with native_stderr_to_debug(fds=(1, 2)):
        return conv.convert()


def contract_for(interpreter_details: tuple[dict, dict], base_contract, provenance: dict):
    inp, out = interpreter_details
    return base_contract.with_(
        input_dtype=np.dtype(inp["dtype"]).name,
        input_scale=float(inp["quantization"][0]),
        input_zero_point=int(inp["quantization"][1]),
        output_dtype=np.dtype(out["dtype"]).name,
        output_scale=float(out["quantization"][0]),
        output_zero_point=int(out["quantization"][1]),
        provenance=provenance,
    )


def tflite_io_details(model_bytes: bytes) -> tuple[dict, dict]:
    from fer_edge.edge.interpreter import load_interpreter_class

    cls, _, _ = load_interpreter_class()
    interp = cls(model_content=model_bytes)
    return interp.get_input_details()[0], interp.get_output_details()[0]


def converter_versions() -> dict:
    import keras
    import tensorflow as tf
    from fer_edge.edge.interpreter import load_interpreter_class

    _, pkg, ver = load_interpreter_class()
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "checked_with": f"{pkg} {ver}",
    }
