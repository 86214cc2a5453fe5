"""`fer-edge convert`: flags generated from ConvertConfig, one per field."""

from __future__ import annotations

from fer_edge.convert.tflite import ConvertConfig
from fer_edge.edge.cliframe import add_dataclass_flags, build_dataclass


def add_convert_parser(sub) -> None:
    p = sub.add_parser("convert", help="Keras model -> TFLite variants, checked against Keras")
    add_dataclass_flags(p, ConvertConfig)
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from fer_edge.convert.run import run_convert

    summary = run_convert(build_dataclass(ConvertConfig, args))
    for variant, e in summary["variants"].items():
        print(
            f"{variant:>8}  {e['file']:<24} {e['bytes'] / 1024:8.1f} KiB  "
            f"agreement {e['agreement']:.2%}  drop {100 * e['accuracy_drop']:+.2f} pt  "
            f"input {e['input'][0]}"
        )
    return 0
