"""How good a model is on FER2013's test faces, under a label rule: macro-F1 and per-class
recall first, accuracy beside them, calibration (ECE) and the confusion matrix.

Two rulers, because FER2013's labels are noisy (FER+'s crowd disagrees on about a quarter):
- FER2013's own labels on PrivateTest, the held-out test no training choice looked at;
- the FER+ crowd majority on PublicTest (PrivateTest votes are withheld).
A .tflite runs in the runtime's interpreter with no TensorFlow; a .keras/.h5 needs the `train`
extra (evaluation/predict.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fer_edge.edge.config import model_path as resolve_model
from fer_edge.edge.contract import read_contract
from fer_edge.edge.errors import ModelError
from fer_edge.evaluation.data import default_path, load_fer2013, stratified_subset
from fer_edge.evaluation.ferplus import SHARED_VOTES, load_votes, split_targets
from fer_edge.evaluation.metrics import calibration, classification_report
from fer_edge.evaluation.predict import check_model_type, predict

log = logging.getLogger(__name__)

# name -> (split, label rule): the two rulers every eval and card leads with
RULERS = {
    "private_fer2013": ("private", "fer2013"),
    "public_ferplus_majority": ("public", "ferplus-majority"),
}
RULER_TITLES = {
    "private_fer2013": "PrivateTest, FER2013 labels",
    "public_ferplus_majority": "PublicTest, FER+ majority",
}


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
    """The report of a model on a FER2013 split under a label rule (evaluation/ferplus.py):
    metrics.classification_report plus ECE and reliability bins, and with `degrade` the
    robustness table of that suite on the same faces."""
    path = resolve_model(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    check_model_type(path)  # Keras without TensorFlow fails here, before the data is read
    contract = read_contract(path)
    fer = load_fer2013(data or None)
    votes = load_votes(ferplus or None) if labels != "fer2013" else None
    x, t, _ = split_targets(fer, split, contract.labels, labels, votes)
    y = t.argmax(1)
    probs = predict(path, x, threads)
    report = classification_report(y, probs.argmax(1), contract.labels)
    report.update(calibration(probs, y))
    report.update(
        {"model": str(path), "split": split, "labels_rule": labels, "data_sha256": fer.sha256}
    )
    if degrade:
        from fer_edge.evaluation.robustness import robustness

        if degrade_max and degrade_max < len(y):
            keep = stratified_subset(y, degrade_max, 0)
            x, y = x[keep], y[keep]
        report["robustness"] = robustness(lambda xs: predict(path, xs, threads), x, y, degrade)
    return report


def ferplus_available(ferplus: str) -> bool:
    """Whether the FER+ ruler can run: votes given, in $FERPLUS, or in ../shared."""
    return bool(ferplus) or default_path(("FERPLUS",), SHARED_VOTES) is not None


def evaluate_rulers(
    model_path: str,
    data: str | None,
    ferplus: str = "",
    threads: int | None = None,
    degrade: str = "",
    degrade_max: int = 0,
) -> dict:
    """{ruler name: report} for both rulers; the degradation suite runs on PrivateTest. Without
    any FER+ votes file (none given, none found) that ruler is left out with a warning."""
    out = {}
    for name, (split, rule) in RULERS.items():
        if rule != "fer2013" and not ferplus_available(ferplus):
            log.warning("no FER+ votes file found: %s left out (pass --ferplus)", name)
            continue
        out[name] = evaluate(
            model_path, data, split, threads, labels=rule, ferplus=ferplus,
            degrade=degrade if split == "private" else "", degrade_max=degrade_max,
        )  # fmt: skip
    return out


def figure_stem(report: dict) -> str:
    """'private' and 'public' for the two rulers; the split and rule for any other pairing."""
    ruler = (report["split"], report["labels_rule"])
    return report["split"] if ruler in RULERS.values() else "-".join(ruler)


def write_figures(reports: list[dict], folder: Path, model_name: str) -> list[Path]:
    """confusion-<stem>.png and reliability-<stem>.png per report, atomically; none without
    matplotlib (the reports hold the same numbers)."""
    from fer_edge.evaluation.figures import confusion_plot, reliability_plot

    written = []
    for r in reports:
        stem = figure_stem(r)
        title = f"{model_name}, {r['split']} ({r['labels_rule']} labels), n={r['n']}"
        title_cm = f"{title}\nmacro-F1 {r['macro_f1']:.3f}, accuracy {r['accuracy']:.1%}"
        written += [
            confusion_plot(r, title_cm, Path(folder) / f"confusion-{stem}.png"),
            reliability_plot(r, title, Path(folder) / f"reliability-{stem}.png"),
        ]
    return [p for p in written if p is not None]
