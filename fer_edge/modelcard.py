"""`fer-edge card MODEL.tflite ...`: one report per shipped model with every figure a user
compares models by, measured in one run on one machine.

- accuracy and macro-F1 on FER2013 PrivateTest with FER2013's labels (the held-out test);
- accuracy and macro-F1 on PublicTest with FER+ crowd-majority labels (cleaner labels);
- the capture-robustness table on PrivateTest (fer_edge/robustness.py);
- parameters and training wall time (from the source model's training report), file size;
- single-face latency at 1 and 2 interpreter threads (quantise + invoke + read).
Written as `<model stem>.card.json` beside the model, and a Markdown table of all of them.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from fer_edge.edge.contract import atomic_write_text, read_contract
from fer_edge.evaluate import evaluate


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
    from fer_edge.benchmarks.accuracy import latency
    from fer_edge.benchmarks.system import machine_info, software_info

    path = Path(model)
    contract = read_contract(path)
    private = evaluate(model, data, "private", labels="fer2013", degrade="capture")
    public_fp = evaluate(model, data, "public", labels="ferplus-majority", ferplus=ferplus)
    public = evaluate(model, data, "public", labels="fer2013")
    train = training_report(path) or {}
    lat = {str(t): latency(path, t, runs) for t in threads}
    return {
        "model": path.name,
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
        "private_fer2013": _short(private),
        "public_ferplus_majority": _short(public_fp),
        "public_fer2013": _short(public),
        "robustness": private["robustness"],
        "latency_ms": {t: {"p50": v["p50_ms"], "p90": v["p90_ms"]} for t, v in lat.items()},
    }


def _short(report: dict) -> dict:
    return {k: report[k] for k in ("n", "accuracy", "macro_f1", "per_class", "confusion")}


CARD_COLUMNS = (
    "model", "classes", "views/face", "PrivateTest acc (FER2013)", "macro-F1",
    "PublicTest acc (FER+ majority)", "macro-F1", "robustness mean, medium", "drop", "params",
    "file KiB", "p50 ms, 1 thread", "p50 ms, 2 threads", "training min",
)  # fmt: skip


def _card_cells(c: dict) -> list[str]:
    r, wall = c["robustness"], c.get("training_wall_seconds")
    return [
        c["model"], str(len(c["labels"])), str(c["views_per_face"]),
        f"{100 * c['private_fer2013']['accuracy']:.1f}%", f"{c['private_fer2013']['macro_f1']:.3f}",
        f"{100 * c['public_ferplus_majority']['accuracy']:.1f}%",
        f"{c['public_ferplus_majority']['macro_f1']:.3f}", f"{100 * r['mean']['2']:.1f}%",
        f"{r['drop_at_medium_points']:.1f} pt", f"{c['params']:,}" if c.get("params") else "–",
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


def cards_markdown(cards: list[dict]) -> str:
    m, sw = cards[0]["machine"], cards[0]["software"]
    lines = [
        f"# Shipped models: {m['slug']}, {cards[0]['created'][:10]}",
        "",
        f"- machine: {m['cpu']}, {m['cores']} cores; interpreter {sw.get('interpreter')} "
        f"{sw.get('interpreter_version')}",
        "- regenerate: `make cards`",
        "",
        *cards_table(cards),
        "",
    ]
    return "\n".join(lines)


def write_cards(cards: list[dict], models: list[str], results: str | None) -> list[Path]:
    from fer_edge.benchmarks.system import results_dir
    from fer_edge.robustness import robustness_markdown

    written = []
    for card, model in zip(cards, models):
        p = Path(model).with_suffix(".card.json")
        atomic_write_text(p, json.dumps(card, indent=2) + "\n")
        written.append(p)
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


def add_card_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "card",
        help="accuracy (FER2013 + FER+), robustness, size and latency of shipped models",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("models", nargs="+", help=".tflite models, each with its .json contract")
    p.add_argument("--data", default="", help="FER2013 zip/folder/csv ('' = $DATA or ../shared)")
    p.add_argument("--ferplus", default="", help="FER+ votes csv ('' = $FERPLUS or ../shared)")
    p.add_argument("--runs", type=int, default=300, help="timed single-face runs per thread count")
    p.add_argument("--results", default=None, help="results root (default benchmarks/results)")
    p.set_defaults(func=cmd_card)


def cmd_card(args) -> int:
    cards = [model_card(m, args.data, args.ferplus, runs=args.runs) for m in args.models]
    for p in write_cards(cards, args.models, args.results):
        print(p)
    print(cards_markdown(cards))
    return 0
