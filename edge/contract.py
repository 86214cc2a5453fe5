"""The model contract: what a model expects as input and what its outputs mean.

It travels with every model as a JSON sidecar (``<model file>.json``) written by training or
conversion; the runtime reads it and never guesses. Training, conversion and the runtime all
take labels and the crop rule from here, so there is exactly one definition of each.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fer_edge.edge.errors import ModelError

# atomic_write_bytes is re-exported: callers have imported both helpers from here.
from fer_edge.edge.fileio import atomic_write_bytes, atomic_write_text  # noqa: F401

# Order of the `emotion` column in the original fer2013.csv (0..6).
FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
# The project's five classes in the fixed order every model and report uses.
DEFAULT_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprise")

CONTRACT_VERSION = 1


@dataclass(frozen=True)
class Contract:
    """Everything needed to turn a camera frame plus a face box into the model's input."""

    labels: tuple[str, ...] = DEFAULT_LABELS  # output index -> class name
    input_size: int = 48  # side of the square grey face crop the model takes (FER2013 native)
    margin: float = 0.1  # crop = face box grown by this fraction of its size on each side
    # The crop is converted to 8-bit grey and resized with cv2.INTER_AREA; normalisation
    # (scaling, resizing to the backbone's size, grey->RGB) happens inside the model graph,
    # so the model's input is always raw grey levels 0..255.
    color: str = "gray"
    interpolation: str = "area"
    input_dtype: str = "float32"  # float32 | int8 | uint8 (what the interpreter reports)
    input_scale: float = 0.0  # quantisation scale of the input tensor (0 = not quantised)
    input_zero_point: int = 0
    output_dtype: str = "float32"
    output_scale: float = 0.0
    output_zero_point: int = 0
    outputs: str = "probabilities"  # softmax, averaged over the test-time views
    tta: str = "flip"  # test-time views inside the graph: none | flip (2) | multi (6)
    provenance: dict = field(default_factory=dict)  # source hashes, versions, calibration set

    def to_json(self) -> dict:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["contract_version"] = CONTRACT_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict) -> Contract:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "labels" in kwargs:
            kwargs["labels"] = tuple(kwargs["labels"])
        return cls(**kwargs)

    def with_(self, **changes) -> Contract:
        return replace(self, **changes)


def sidecar_path(model_path: str | os.PathLike) -> Path:
    return Path(f"{model_path}.json")


def write_contract(model_path: str | os.PathLike, contract: Contract) -> Path:
    path = sidecar_path(model_path)
    atomic_write_text(path, json.dumps(contract.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def read_contract(model_path: str | os.PathLike) -> Contract:
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model contract not found; every model needs the .json written beside it "
            "by `fer-edge train` or `fer-edge convert`"
        )
    try:
        data = json.loads(path.read_text())
        return Contract.from_json(data)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{path}: not a valid model contract ({exc})") from None
