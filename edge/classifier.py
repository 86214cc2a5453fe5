"""Emotion classifier over a TFLite model: built once, then crop -> probabilities."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from fer_edge.edge.contract import Contract, read_contract
from fer_edge.edge.errors import ModelError
from fer_edge.edge.interpreter import load_interpreter_class
from fer_edge.edge.quiet import native_stderr_to_debug

log = logging.getLogger(__name__)

_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}


class Classifier:
    """Reads the model's contract, checks it against the interpreter, and classifies crops.

    One instance serves float and quantised models: the input dtype, scale and zero point come
    from the interpreter and must agree with the contract.

    `batch`: all faces of a frame go through one interpreter call (the input's batch dimension
    resized; one interpreter per batch size, built on first use). `zero_copy`: crops are written
    straight into the interpreter's input buffer instead of through temporary float arrays.
    Both give the same probabilities as one call per face.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        backend: str | None = None,
        batch: bool = True,
        zero_copy: bool = True,
    ):
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        self.path = path
        self.contract: Contract = read_contract(path)
        self._cls, self.backend, self.backend_version = load_interpreter_class(backend)
        self.threads, self.batch, self.zero_copy = threads, batch, zero_copy
        try:
            self._interp = self._build()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path}: not a loadable TFLite model ({first})") from None
        self._batched: dict[int, object] = {1: self._interp}
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in, self._out = inp["index"], out["index"]
        self.input_dtype = np.dtype(inp["dtype"]).name
        self.input_shape = tuple(int(d) for d in inp["shape"])
        self.in_scale, self.in_zero = inp["quantization"]
        self.out_scale, self.out_zero = out["quantization"]
        self.output_dtype = np.dtype(out["dtype"]).name
        self._check_contract()
        # int8 with scale 1 and zero point -128 holds grey levels exactly: q = x - 128, which is
        # x XOR 0x80 in the same 8 bits, written in place.
        self._xor_input = (
            self.input_dtype == "int8" and np.isclose(self.in_scale, 1.0) and self.in_zero == -128
        )

    def _build(self, batch: int = 1):
        # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" to fd 2 when allocating
        with native_stderr_to_debug():
            interp = self._cls(model_path=str(self.path), num_threads=self.threads)
            if batch != 1:
                inp = interp.get_input_details()[0]
                interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]], strict=True)
            interp.allocate_tensors()
        return interp

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

    def _feed(self, interp, crops) -> None:
        if self.zero_copy and self._xor_input:
            buf = interp.tensor(self._in)().view(np.uint8)
            for i, crop in enumerate(crops):
                np.bitwise_xor(crop, 0x80, out=buf[i, :, :, 0])
            del buf  # no reference into the interpreter may outlive this call
        elif self.zero_copy and self.input_dtype == "float32":
            buf = interp.tensor(self._in)()
            for i, crop in enumerate(crops):
                buf[i, :, :, 0] = crop
            del buf
        else:
            interp.set_tensor(self._in, np.concatenate([self.quantize_input(c) for c in crops]))

    def _run(self, interp, crops) -> np.ndarray:
        self._feed(interp, crops)
        interp.invoke()
        y = interp.get_tensor(self._out)
        if self.output_dtype != "float32":
            return (y.astype(np.float32) - self.out_zero) * self.out_scale
        return y.astype(np.float32)

    def predict(self, crop: np.ndarray) -> np.ndarray:
        """Probabilities (K,) for one grey crop of the contract's size."""
        return self._run(self._interp, [crop])[0]

    def _interpreter_for(self, n: int):
        if n not in self._batched:
            try:
                self._batched[n] = self._build(n)
            except (ValueError, RuntimeError) as exc:  # a graph with a fixed batch of 1
                log.warning("%s: no batched input (%s); one call per face", self.path, exc)
                self.batch = False
                return None
        return self._batched[n]

    def predict_batch(self, crops) -> np.ndarray:
        """Probabilities (N, K) for N crops: one interpreter call when `batch` is on."""
        if not len(crops):
            return np.zeros((0, len(self.labels)), np.float32)
        interp = self._interpreter_for(len(crops)) if self.batch and len(crops) > 1 else None
        if interp is not None:
            return self._run(interp, crops)
        return np.stack([self.predict(c) for c in crops])

    def describe(self) -> dict:
        return {
            "model": str(self.path),
            "interpreter": f"{self.backend} {self.backend_version}",
            "threads": self.threads,
            "batch": self.batch,
            "zero_copy": self.zero_copy,
            "input": f"{self.input_shape} {self.input_dtype}",
            "input_quantization": [float(self.in_scale), int(self.in_zero)],
            "output": f"{len(self.labels)} {self.output_dtype}",
            "labels": list(self.labels),
        }
