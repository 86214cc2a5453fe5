"""`fer-edge train` and `fer-edge finetune`: flags mirror the config dataclasses one to one."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from train.config import Stage1Config, Stage2Config

log = logging.getLogger(__name__)


def _parse_tuple(kind):
    def parse(text: str):
        items = [t for t in text.replace(" ", "").split(",") if t]
        return tuple(kind(t) for t in items)

    return parse


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, prefix: str = "") -> None:
    """One --flag per field, default shown, help taken from the field's name and type."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            add_dataclass_flags(parser, type(default), prefix=f"{f.name}.")
            continue
        flag = f"--{f.name}"
        dest = f"{prefix}{f.name}"
        kind = hints[f.name]
        if isinstance(default, bool):
            parser.add_argument(
                flag, dest=dest, default=default, action=argparse.BooleanOptionalAction
            )
        elif isinstance(default, tuple):
            elem = str if "str" in str(kind) else (float if "float" in str(kind) else int)
            parser.add_argument(
                flag, dest=dest, default=default, type=_parse_tuple(elem), metavar="A,B,..."
            )
        else:
            parser.add_argument(flag, dest=dest, default=default, type=type(default))


def build_dataclass(cls, args: argparse.Namespace, prefix: str = ""):
    kwargs = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            kwargs[f.name] = build_dataclass(type(default), args, prefix=f"{f.name}.")
        else:
            kwargs[f.name] = getattr(args, f"{prefix}{f.name}")
    return cls(**kwargs)


def add_data_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="decode FER2013 into the cache and print its counts",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", default="", help="archive.zip, extracted folder or fer2013.csv")
    p.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    from edge.contract import FER2013_CLASSES
    from train.data import SPLITS, cache_dir, load_fer2013

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
    p = sub.add_parser(
        "train",
        help="stage 1: train on FER2013",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataclass_flags(p, Stage1Config)
    p.set_defaults(func=cmd_train)


def add_finetune_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="stage 2: fine-tune on a personal photo folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_dataclass_flags(p, Stage2Config)
    p.set_defaults(func=cmd_finetune)


def cmd_train(args) -> int:
    from fer_edge.metrics import format_report
    from train.stage1 import run_stage1

    cfg = build_dataclass(Stage1Config, args)
    report = run_stage1(cfg)
    for split, rep in report["splits"].items():
        print(format_report(rep, title=f"{split} ({report['model']})"))
    print(f"wall time {report['wall_seconds'] / 60:.1f} min, {report['epochs_run']} epochs")
    return 0


def cmd_finetune(args) -> int:
    from fer_edge.metrics import format_report
    from train.stage2 import run_stage2

    cfg = build_dataclass(Stage2Config, args)
    report = run_stage2(cfg)
    for key in ("personal_before", "personal_after", "private_before", "private_after"):
        print(format_report(report[key], title=key))
    return 0
