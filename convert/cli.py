"""`fer-edge convert`."""

from __future__ import annotations

import argparse

from convert.tflite import VARIANTS, ConvertConfig


def add_convert_parser(sub) -> None:
    d = ConvertConfig()
    p = sub.add_parser(
        "convert",
        help="Keras model -> TFLite variants, checked against Keras",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default=d.model, help="Keras model to convert")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--prefix", default=d.prefix, help="file name prefix")
    p.add_argument(
        "--variants", default=",".join(d.variants), help=f"comma list of {', '.join(VARIANTS)}"
    )
    p.add_argument("--data", default=d.data, help="FER2013 zip/folder/csv ('' = default)")
    p.add_argument("--calibration", type=int, default=d.calibration, help="representative faces")
    p.add_argument("--check", type=int, default=d.check, help="faces compared with Keras")
    p.add_argument("--min_agreement", type=float, default=d.min_agreement, help="fail below this")
    p.add_argument(
        "--max_drop",
        type=float,
        default=d.max_drop,
        help="fail if accuracy drops more (0.01 = 1 pt)",
    )
    p.add_argument(
        "--io_type", default=d.io_type, choices=["int8", "uint8"], help="int8 model I/O type"
    )
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from convert.run import run_convert

    cfg = ConvertConfig(
        model=args.model,
        out=args.out,
        prefix=args.prefix,
        variants=tuple(v for v in args.variants.split(",") if v),
        data=args.data,
        calibration=args.calibration,
        check=args.check,
        min_agreement=args.min_agreement,
        max_drop=args.max_drop,
        io_type=args.io_type,
    )
    summary = run_convert(cfg)
    for variant, e in summary["variants"].items():
        print(
            f"{variant:>8}  {e['file']:<24} {e['bytes'] / 1024:8.1f} KiB  "
            f"agreement {e['agreement']:.2%}  drop {100 * e['accuracy_drop']:+.2f} pt  "
            f"input {e['input'][0]}"
        )
    return 0
