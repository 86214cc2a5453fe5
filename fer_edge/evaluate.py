"""`fer-edge eval MODEL`: accuracy, macro-F1 and confusion on a FER2013 test split.

A .tflite is run in the LiteRT interpreter (no TensorFlow needed); a .keras/.h5 in Keras. Both
get the same raw grey faces, so the numbers compare like for like.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fer_edge.degrade import SUITES
from fer_edge.edge.cliframe import non_negative_int, positive_int
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


def evaluate(
    model_path: str,
    data: str | None,
    split: str,
    threads: int | None = None,
    labels: str = "fer2013",
    ferplus: str = "",
    degrade: str = "",
    degrade_max: int = 0,
) -> dict:
    """Accuracy report of a model on a FER2013 split under a label rule (train/ferplus.py),
    plus, with `degrade`, the robustness table of that suite on the same faces."""
    from fer_edge.train.data import load_fer2013
    from fer_edge.train.datasets import stratified_subset
    from fer_edge.train.ferplus import load_votes, split_targets

    path = resolve_model(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    contract = read_contract(path)
    fer = load_fer2013(data or None)
    votes = load_votes(ferplus or None) if labels != "fer2013" else None
    x, t, _ = split_targets(fer, split, contract.labels, labels, votes)
    y = t.argmax(1)
    report = classification_report(y, predict(path, x, threads).argmax(1), contract.labels)
    report.update(
        {"model": str(path), "split": split, "labels_rule": labels, "data_sha256": fer.sha256}
    )
    if degrade:
        from fer_edge.robustness import robustness

        if degrade_max and degrade_max < len(y):
            keep = stratified_subset(y, degrade_max, 0)
            x, y = x[keep], y[keep]
        report["robustness"] = robustness(lambda xs: predict(path, xs, threads), x, y, degrade)
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
    p.add_argument(
        "--labels",
        default="fer2013",
        choices=["fer2013", "ferplus-majority"],
        help="ground truth: FER2013's folder labels or the FER+ crowd majority (public only)",
    )
    p.add_argument("--ferplus", default="", help="FER+ votes csv ('' = $FERPLUS or ../shared)")
    p.add_argument(
        "--degrade",
        default="",
        choices=["", *SUITES],
        help="also measure accuracy under this degradation suite at severities 1-3",
    )
    p.add_argument(
        "--degrade-max",
        type=non_negative_int,
        default=0,
        help="robustness on a stratified subset of this many faces (0 = all)",
    )
    p.add_argument(
        "--results",
        default=None,
        help="write the robustness table as Markdown + JSON into this folder",
    )
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="interpreter threads (.tflite)"
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    report = evaluate(
        args.model,
        args.data,
        args.split,
        args.threads,
        labels=args.labels,
        ferplus=args.ferplus,
        degrade=args.degrade,
        degrade_max=args.degrade_max,
    )
    title = f"{args.model} on {args.split} ({args.labels} labels)"
    print(format_report(report, title=title))
    if "robustness" in report:
        from fer_edge.robustness import robustness_markdown

        md = robustness_markdown(report["robustness"], f"{Path(args.model).name}, {args.split}")
        print(md)
        if args.results:
            out = Path(args.results)
            out.mkdir(parents=True, exist_ok=True)
            stem = out / f"robustness_{Path(args.model).name.replace('.', '_')}"
            atomic_write_text(stem.with_suffix(".md"), md)
            atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0
