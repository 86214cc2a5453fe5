"""`fer-edge eval MODEL`: accuracy, macro-F1 and confusion on a FER2013 test split.

A .tflite is run in the LiteRT interpreter (no TensorFlow needed); a .keras/.h5 in Keras. Both
get the same raw grey faces, so the numbers compare like for like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fer_edge.edge.config import model_path as resolve_model
from fer_edge.edge.contract import read_contract
from fer_edge.edge.errors import ModelError
from fer_edge.edge.fileio import atomic_write_text
from fer_edge.edge.metrics import classification_report, format_report


def predict(model_path: Path, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Probabilities (N, K) for raw grey faces (N, S, S)."""
    if model_path.suffix == ".tflite":
        from fer_edge.edge.classifier import Classifier

        clf = Classifier(model_path, threads=threads)
        return clf.predict_batch(x)
    if model_path.suffix in (".keras", ".h5"):
        from fer_edge.train.model import load_keras

        model = load_keras(model_path)
        return model.predict(x[..., None].astype(np.float32), batch_size=256, verbose=0)
    raise ModelError(f"{model_path}: unknown model type; expected .tflite, .keras or .h5")


def evaluate(model_path: str, data: str | None, split: str, threads: int | None = None) -> dict:
    from fer_edge.train.data import load_fer2013

    path = resolve_model(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    contract = read_contract(path)
    fer = load_fer2013(data or None)
    x, y = fer.select(split, contract.labels)
    report = classification_report(y, predict(path, x, threads).argmax(1), contract.labels)
    report.update({"model": str(path), "split": split, "data_sha256": fer.sha256})
    return report


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on FER2013 test images",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="?",
        default="",
        help=".tflite, .keras or .h5 with its .json contract beside it ('' = the runtime's model)",
    )
    p.add_argument("--data", default="", help="FER2013 zip/folder/csv ('' = $DATA or ../shared)")
    p.add_argument(
        "--split",
        default="private",
        choices=["public", "private", "test"],
        help="PublicTest, PrivateTest, or both",
    )
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (.tflite)")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    report = evaluate(args.model, args.data, args.split, args.threads)
    print(format_report(report, title=f"{args.model} on {args.split}"))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0
