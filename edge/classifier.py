"""Emotion classifier over a TFLite model: built once, then crop -> probabilities."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from fer_edge.edge.contract import Contract, read_contract
from fer_edge.edge.errors import ModelError
from fer_edge.edge.interpreter import load_interpreter_class

log = logging.getLogger(__name__)

_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}


class Classifier:
    """Reads the model's contract, checks it against the interpreter, and classifies crops.

    One instance serves float and quantised models: the input dtype, scale and zero point come
    from the interpreter and must agree with the contract.
    """

    def __init__(
        self, model_path: str | os.PathLike, threads: int | None = None, backend: str | None = None
    ):
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        self.path = path
        self.contract: Contract = read_contract(path)
        cls, self.backend, self.backend_version = load_interpreter_class(backend)
        self.threads = threads
        try:
            self._interp = cls(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable TFLite model ({first})") from None
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_dtype = np.dtype(inp["dtype"]).name
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.in_scale, self.in_zero = inp["quantization"]
        self.out_scale, self.out_zero = out["quantization"]
        self.output_dtype = np.dtype(out["dtype"]).name
        self._check_contract()

    def _check_contract(self) -> None:
        c = self.contract
        s = c.input_size
        if self.input_shape[1:] != (s, s, 1):
            raise ModelError(
                f"{self.path}: input shape {self.input_shape} does not match the "
                f"contract's {s}x{s}x1 grey crop"
            )
        if self.input_dtype != c.input_dtype:
            raise ModelError(
                f"{self.path}: input dtype {self.input_dtype} but its contract says "
                f"{c.input_dtype}; re-run `fer-edge convert`"
            )
        if c.input_dtype != "float32" and (
            not np.isclose(self.in_scale, c.input_scale) or self.in_zero != c.input_zero_point
        ):
            raise ModelError(
                f"{self.path}: input quantisation ({self.in_scale}, {self.in_zero}) "
                f"differs from its contract ({c.input_scale}, {c.input_zero_point})"
            )
        n_out = self._interp.get_output_details()[0]["shape"][-1]
        if n_out != len(c.labels):
            raise ModelError(f"{self.path}: {n_out} outputs but {len(c.labels)} labels in contract")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    def quantize_input(self, crop: np.ndarray) -> np.ndarray:
        """Grey uint8 (S, S) crop -> the exact tensor the interpreter is fed, (1, S, S, 1)."""
        x = crop.astype(np.float32)[None, :, :, None]
        if self.input_dtype == "float32":
            return x
        info = np.iinfo(_DTYPES[self.input_dtype])
        q = np.round(x / self.in_scale + self.in_zero)
        return np.clip(q, info.min, info.max).astype(_DTYPES[self.input_dtype])

    def predict(self, crop: np.ndarray) -> np.ndarray:
        """Probabilities (K,) for one grey crop of the contract's size."""
        self._interp.set_tensor(self._in, self.quantize_input(crop))
        self._interp.invoke()
        y = self._interp.get_tensor(self._out)[0]
        if self.output_dtype != "float32":
            y = (y.astype(np.float32) - self.out_zero) * self.out_scale
        return y.astype(np.float32)

    def predict_batch(self, crops: np.ndarray) -> np.ndarray:
        return (
            np.stack([self.predict(c) for c in crops])
            if len(crops)
            else np.zeros((0, len(self.labels)), np.float32)
        )

    def describe(self) -> dict:
        return {
            "model": str(self.path),
            "interpreter": f"{self.backend} {self.backend_version}",
            "threads": self.threads,
            "input": f"{self.input_shape} {self.input_dtype}",
            "input_quantization": [float(self.in_scale), int(self.in_zero)],
            "output": f"{len(self.labels)} {self.output_dtype}",
            "labels": list(self.labels),
        }
