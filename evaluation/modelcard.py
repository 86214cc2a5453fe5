"""`fer-edge card MODEL.tflite ...`: one report per shipped model with every figure a user
compares models by, measured in one run on one machine.

- macro-F1 and per-class recall first, then accuracy and the expected calibration error (15
  bins), on both rulers: FER2013 PrivateTest with FER2013's labels (the held-out test) and
  PublicTest with the FER+ crowd majority (cleaner labels); PublicTest with FER2013's labels too;
- the capture-robustness table on PrivateTest (evaluation/robustness.py);
- parameters and training wall time (from the source model's training report), file size;
- single-face latency at 1 and 2 interpreter threads (quantise + invoke + read).
Written as `<model stem>.card.json` beside the model with its pictures (confusion matrices and
reliability diagrams, when matplotlib is installed) in `<model stem>.card/`, and a Markdown
table of all of them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from fer_edge.edge.contract import read_contract
from fer_edge.edge.fileio import atomic_write_text
from fer_edge.evaluation.evaluate import evaluate, write_figures
from fer_edge.evaluation.latency import latency
from fer_edge.evaluation.machine import machine_info, results_dir, software_info
from fer_edge.evaluation.robustness import robustness_markdown


def training_report(model: Path) -> dict | None:
    """The training report of the Keras model this .tflite was converted from, if beside it."""
    source = read_contract(model).provenance.get("source_model")
    if not source:
        return None
    report = model.parent / Path(source).with_suffix(".report.json").name
    return json.loads(report.read_text()) if report.is_file() else None


def model_card(
    model: str, data: str = "", ferplus: str = "", threads=(1, 2), runs: int = 300
) -> dict:
    path = Path(model)
    contract = read_contract(path)
    private = evaluate(model, data, "private", labels="fer2013", degrade="capture")
    public_fp = evaluate(model, data, "public", labels="ferplus-majority", ferplus=ferplus)
    public = evaluate(model, data, "public", labels="fer2013")
    train = training_report(path) or {}
    lat = {str(t): latency(path, t, runs) for t in threads}
    return {
        "model": path.name,
        "private_fer2013": _short(private),
        "public_ferplus_majority": _short(public_fp),
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "software": software_info(),
        "labels": list(contract.labels),
        "tta": contract.tta,
        "views_per_face": {"none": 1, "flip": 2, "multi": 6}.get(contract.tta),
        "bytes": path.stat().st_size,
        "params": train.get("params"),
        "training_wall_seconds": train.get("total_wall_seconds", train.get("wall_seconds")),
        "training_labels": train.get("labels_rule", "fer2013" if train else None),
        "public_fer2013": _short(public),
        "robustness": private["robustness"],
        "latency_ms": {t: {"p50": v["p50_ms"], "p90": v["p90_ms"]} for t, v in lat.items()},
    }


SHORT_KEYS = (
    "macro_f1", "recall", "accuracy", "ece", "ece_bins", "n", "labels", "split", "labels_rule",
    "per_class", "confusion", "reliability",
)  # fmt: skip


def _short(report: dict) -> dict:
    """A report without the paths and hashes the card already records once."""
    return {k: report[k] for k in SHORT_KEYS}


CARD_COLUMNS = (
    "model", "classes", "views/face", "PrivateTest macro-F1 (FER2013)", "acc", "ECE",
    "PublicTest macro-F1 (FER+ majority)", "acc", "ECE", "robustness mean, medium", "drop",
    "params", "file KiB", "p50 ms, 1 thread", "p50 ms, 2 threads", "training min",
)  # fmt: skip
CARD_RULERS = {
    "private_fer2013": "PrivateTest, FER2013 labels",
    "public_ferplus_majority": "PublicTest, FER+ crowd majority",
}


def _ruler_cells(r: dict) -> list[str]:
    # Cards made before ECE was measured show a dash until `make cards` regenerates them.
    ece = f"{r['ece']:.3f}" if "ece" in r else "–"
    return [f"{r['macro_f1']:.3f}", f"{100 * r['accuracy']:.1f}%", ece]


def _card_cells(c: dict) -> list[str]:
    r, wall = c["robustness"], c.get("training_wall_seconds")
    return [
        c["model"], str(len(c["labels"])), str(c["views_per_face"]),
        *_ruler_cells(c["private_fer2013"]), *_ruler_cells(c["public_ferplus_majority"]),
        f"{100 * r['mean']['2']:.1f}%", f"{r['drop_at_medium_points']:.1f} pt",
        f"{c['params']:,}" if c.get("params") else "–",
        f"{c['bytes'] / 1024:.0f}", f"{c['latency_ms']['1']['p50']:.2f}",
        f"{c['latency_ms']['2']['p50']:.2f}", f"{wall / 60:.0f}" if wall else "–",
    ]  # fmt: skip


def cards_table(cards: list[dict]) -> list[str]:
    """The one-row-per-model Markdown table (models.md and the README show the same)."""
    head = [
        "| " + " | ".join(CARD_COLUMNS) + " |",
        "|---" + "|---:" * (len(CARD_COLUMNS) - 1) + "|",
    ]
    return head + ["| " + " | ".join(_card_cells(c)) + " |" for c in cards]


def recall_table(cards: list[dict], ruler: str) -> list[str]:
    """Per-class recall of every model on one ruler; a class a model does not have is a dash."""
    labels = list(dict.fromkeys(lb for c in cards for lb in c["labels"]))
    rows = []
    for c in cards:
        per_class = c[ruler]["per_class"]
        cells = [f"{100 * per_class[lb]['recall']:.1f}%" if lb in per_class else "–"
                 for lb in labels]  # fmt: skip
        rows.append("| " + " | ".join([c["model"], *cells]) + " |")
    head = ["| model | " + " | ".join(labels) + " |", "|---" + "|---:" * len(labels) + "|"]
    return head + rows


def cards_markdown(cards: list[dict]) -> str:
    m, sw = cards[0]["machine"], cards[0]["software"]
    lines = [
        f"# Shipped models: {m['slug']}, {cards[0]['created'][:10]}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores; interpreter {sw.get('interpreter')} "
        f"{sw.get('interpreter_version')}",
        "- macro-F1 and per-class recall weigh every class alike (FER2013 is a quarter happy "
        "faces); ECE: expected calibration error, 15 equal-width confidence bins",
        "- pictures (confusion matrices, reliability diagrams): `models/<model>.card/`",
        "- regenerate: `make cards`",
        "",
        *cards_table(cards),
        "",
    ]
    for ruler, title in CARD_RULERS.items():
        lines += [f"### Per-class recall, {title}", "", *recall_table(cards, ruler), ""]
    return "\n".join(lines)


def card_folder(model: str | Path) -> Path:
    """Where a card's pictures go: `models/fer_int8.card/` beside `models/fer_int8.card.json`."""
    return Path(model).with_suffix(".card")


def write_card(card: dict, model: str | Path) -> list[Path]:
    """The card's pictures, then its JSON listing them (relative to the model's folder)."""
    folder = card_folder(model)
    reports = [card[k] for k in ("private_fer2013", "public_ferplus_majority")]
    pictures = write_figures(reports, folder, card["model"])
    card["figures"] = [str(p.relative_to(folder.parent)) for p in pictures]
    path = Path(model).with_suffix(".card.json")
    atomic_write_text(path, json.dumps(card, indent=2) + "\n")
    return [path, *pictures]


def write_cards(cards: list[dict], models: list[str], results: str | None) -> list[Path]:
    written = [p for card, model in zip(cards, models) for p in write_card(card, model)]
    out = results_dir(results, cards[0]["machine"]["slug"])
    out.mkdir(parents=True, exist_ok=True)
    md = (
        cards_markdown(cards)
        + "\n"
        + "\n".join(
            robustness_markdown(c["robustness"], f"{c['model']}, PrivateTest") for c in cards
        )
    )
    atomic_write_text(out / "models.md", md)
    atomic_write_text(out / "models.json", json.dumps(cards, indent=2) + "\n")
    return [*written, out / "models.md", out / "models.json"]
