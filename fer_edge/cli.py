"""`fer-edge`: one command, a subcommand per pipeline stage.

Training and conversion import TensorFlow only when their subcommand runs, so `fer-edge run`
works on a device that has just the `edge` extra.
"""

from __future__ import annotations

import sys

from fer_edge.edge.cliframe import OneLineParser, command_parser, run_command
from fer_edge.edge.quiet import debug_requested, quiet_native_logs


def build_parser() -> OneLineParser:
    parser, sub = command_parser("fer-edge", __doc__.splitlines()[0])
    # Training and conversion parsers import no TensorFlow; their commands do, when run.
    from fer_edge.convert.cli import add_convert_parser
    from fer_edge.edge.cli import add_subcommands as add_edge_commands
    from fer_edge.evaluation.cli import add_card_parser, add_eval_parser
    from fer_edge.train.calibrate import add_calibrate_parser
    from fer_edge.train.cli import add_data_parser, add_finetune_parser, add_train_parser
    from fer_edge.train.ensemble import add_ensemble_parser

    add_data_parser(sub)
    add_train_parser(sub)
    add_finetune_parser(sub)
    add_calibrate_parser(sub)
    add_ensemble_parser(sub)
    add_eval_parser(sub)
    add_card_parser(sub)
    add_convert_parser(sub)
    add_edge_commands(sub)
    try:
        from fer_edge.benchmarks.cli import add_bench_parsers
    except ImportError:
        pass
    else:
        add_bench_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before any command imports TensorFlow, LiteRT or OpenCV: they read it when they load
    quiet_native_logs(debug_requested(sys.argv[1:] if argv is None else argv))
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
