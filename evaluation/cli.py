"""`fer-edge eval` and `fer-edge card`: the evaluation commands (parsers import nothing heavy;
the commands read data and run models only when they run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fer_edge.edge.cliframe import non_negative_int, positive_int
from fer_edge.edge.fileio import atomic_write_text
from fer_edge.evaluation.degrade import SUITES
from fer_edge.evaluation.ferplus import LABEL_MODES

DATA_HELP = "FER2013 zip/folder/csv ('' = $DATA or ../shared)"
FERPLUS_HELP = "FER+ votes csv ('' = $FERPLUS or ../shared)"


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="macro-F1, per-class recall, accuracy and ECE of a model on FER2013's test faces",
        description="With neither --split nor --labels: both rulers, FER2013 labels on "
        "PrivateTest and the FER+ crowd majority on PublicTest (--json then holds "
        "{ruler: report}). With either: that one split and label rule (--json holds the report).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "model",
        nargs="?",
        default="",
        help=".tflite, .keras or .h5 with its .json contract beside it ('' = the runtime's model)",
    )
    p.add_argument("--data", default="", help=DATA_HELP)
    p.add_argument(
        "--split",
        default="",
        choices=["", "public", "private", "test"],
        help="PublicTest, PrivateTest, or both ('' = private, or public for a FER+ rule)",
    )
    p.add_argument(
        "--labels",
        default="",
        choices=["", *LABEL_MODES[:2]],
        help="ground truth: FER2013's folder labels or the FER+ crowd majority (public only); "
        "'' = fer2013",
    )
    p.add_argument("--ferplus", default="", help=FERPLUS_HELP)
    p.add_argument(
        "--degrade",
        default="",
        choices=["", *SUITES],
        help="also measure accuracy under this degradation suite at severities 1-3 (PrivateTest "
        "when both rulers run)",
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
    p.add_argument(
        "--figures",
        default=None,
        help="write confusion-<split>.png and reliability-<split>.png into this folder "
        "(needs matplotlib)",
    )
    p.add_argument("--json", default=None, help="also write the report to this JSON file")
    p.add_argument(
        "--threads", type=positive_int, default=None, help="interpreter threads (.tflite)"
    )
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from fer_edge.evaluation.evaluate import RULER_TITLES, evaluate, evaluate_rulers, write_figures
    from fer_edge.evaluation.metrics import format_report

    name = Path(args.model).name if args.model else "the runtime's model"
    common = dict(degrade=args.degrade, degrade_max=args.degrade_max)
    if not args.split and not args.labels:
        reports = evaluate_rulers(args.model, args.data, args.ferplus, args.threads, **common)
        titled = [(f"{name}: {RULER_TITLES[k]}", r) for k, r in reports.items()]
        result: dict = {"model": next(iter(reports.values()))["model"], **reports}
    else:
        labels = args.labels or "fer2013"
        split = args.split or ("private" if labels == "fer2013" else "public")
        report = evaluate(args.model, args.data, split, args.threads, labels=labels,
                          ferplus=args.ferplus, **common)  # fmt: skip
        titled = [(f"{name} on {split} ({labels} labels)", report)]
        result = report
    print("\n\n".join(format_report(r, title=t) for t, r in titled))
    degraded = next((r for _, r in titled if "robustness" in r), None)
    if degraded is not None:
        from fer_edge.evaluation.robustness import robustness_markdown

        md = robustness_markdown(degraded["robustness"], f"{name}, {degraded['split']}")
        print(md)
        if args.results:
            out = Path(args.results)
            out.mkdir(parents=True, exist_ok=True)
            stem = out / f"robustness_{name.replace('.', '_')}"
            atomic_write_text(stem.with_suffix(".md"), md)
            atomic_write_text(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    if args.figures:
        for p in write_figures([r for _, r in titled], Path(args.figures), name):
            print(p)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def add_card_parser(sub) -> None:
    p = sub.add_parser(
        "card",
        help="macro-F1, recall, accuracy, ECE (FER2013 + FER+), robustness, size and latency "
        "of shipped models, with confusion and reliability pictures",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("models", nargs="+", help=".tflite models, each with its .json contract")
    p.add_argument("--data", default="", help=DATA_HELP)
    p.add_argument("--ferplus", default="", help=FERPLUS_HELP)
    p.add_argument(
        "--runs", type=positive_int, default=300, help="timed single-face runs per thread count"
    )
    p.add_argument("--results", default=None, help="results root (default benchmarks/results)")
    p.set_defaults(func=cmd_card)


def cmd_card(args) -> int:
    from fer_edge.evaluation.modelcard import cards_markdown, model_card, write_cards

    cards = [model_card(m, args.data, args.ferplus, runs=args.runs) for m in args.models]
    for p in write_cards(cards, args.models, args.results):
        print(p)
    print(cards_markdown(cards))
    return 0
