"""`fer-edge data`, `train` and `finetune`: flags generated from the config dataclasses, one per
field, with the field's comment as help."""

from __future__ import annotations

import logging

from fer_edge.edge.cliframe import add_dataclass_flags, build_dataclass
from fer_edge.train.config import Stage1Config, Stage2Config

log = logging.getLogger(__name__)


def add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="decode FER2013 into the cache and print its counts")
    p.add_argument("--data", default="", help="archive.zip, extracted folder or fer2013.csv")
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from fer_edge.edge.contract import FER2013_CLASSES
    from fer_edge.evaluation.data import SPLITS, cache_dir, load_fer2013

    data = load_fer2013(args.data or None)
    print(f"{data.source}  sha256 {data.sha256}  cache {cache_dir()}")
    counts = data.counts()
    print(f"{'class':>10} " + " ".join(f"{s:>8}" for s in SPLITS))
    for c in FER2013_CLASSES:
        print(f"{c:>10} " + " ".join(f"{counts[s][c]:>8}" for s in SPLITS))
    print(
        f"skipped (failed to decode): {len(data.skipped)}"
        + (f" first: {data.skipped[0]}" if data.skipped else "")
    )
    print(f"train images identical to a test image: {int(data.train_copies_of_test().sum())}")
    return 0


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="stage 1: train on FER2013")
    add_dataclass_flags(p, Stage1Config)
    p.set_defaults(func=cmd_train)


def add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="stage 2: fine-tune on a personal photo folder")
    add_dataclass_flags(p, Stage2Config)
    p.set_defaults(func=cmd_finetune)


def cmd_train(args) -> int:
    from fer_edge.evaluation.metrics import format_report
    from fer_edge.train.stage1 import run_stage1

    cfg = build_dataclass(Stage1Config, args)
    report = run_stage1(cfg)
    for split, rep in report["splits"].items():
        print(format_report(rep, title=f"{split} ({report['model']})"))
    print(f"wall time {report['wall_seconds'] / 60:.1f} min, {report['epochs_run']} epochs")
    return 0


def cmd_finetune(args) -> int:
    from fer_edge.evaluation.metrics import format_report
    from fer_edge.train.stage2 import next_steps, plan, run_stage2

    cfg = build_dataclass(Stage2Config, args)
    print("\n".join(plan(cfg)), flush=True)
    report = run_stage2(cfg)
    for key in ("personal_before", "personal_after", "private_before", "private_after"):
        print(format_report(report[key], title=key))
    print("\n".join(next_steps(cfg)))
    return 0
