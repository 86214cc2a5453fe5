"""`fer-edge bench` and `fer-edge bench-accuracy`; also `python -m fer_edge.benchmarks bench ...`.

Importing this module imports nothing heavy: `fer-edge` builds its parser from it on every call,
and on a Pi there is no TensorFlow, matplotlib, psutil or tqdm.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fer_edge.edge.cliframe import command_parser, positive_int, run_command
from fer_edge.edge.config import MODELS_DIR, default_model_path
from fer_edge.edge.errors import ConfigError, ModelError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VIDEO_ENV = "FER_EDGE_BENCH_VIDEO"  # the video `fer-edge bench` reads when --source is not given


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 1,2, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers such as 1,2, got {text!r}")
    return values


def add_out_flag(p) -> None:
    p.add_argument(
        "--out",
        default=str(PROJECT_ROOT / "benchmarks" / "results"),
        help="results root; files go to OUT/<machine>-<YYYYMMDD>/",
    )


def add_bench_parsers(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "bench",
        formatter_class=fmt,
        help="runtime FPS and per-stage latency of configurations on a video",
    )
    p.add_argument(
        "--source",
        default=os.environ.get(VIDEO_ENV, ""),
        help="video file (or camera index / picamera) every configuration reads",
    )
    p.add_argument(
        "--model",
        default=str(default_model_path()),
        help="the model of the default configuration",
    )
    p.add_argument(
        "--float_model",
        default=str(MODELS_DIR / "fer_float32.tflite"),
        help="model of the float32 configuration (skipped when missing)",
    )
    p.add_argument("--yunet_model", default=None, help="YuNet .onnx (None = the runtime's)")
    p.add_argument(
        "--frames",
        type=non_negative_int,
        default=0,
        help="frames timed per configuration (0 = the whole video)",
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=20,
        help="frames run before timing starts, per configuration",
    )
    p.add_argument(
        "--configs",
        default="",
        help="comma list of configurations ('' = the standard set; `--configs list` shows them)",
    )
    p.add_argument(
        "--baseline_frames",
        type=non_negative_int,
        default=100,
        help="frames timed for the slow original approach (0 = skip it)",
    )
    add_out_flag(p)
    add_mode_flags(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "bench-accuracy",
        formatter_class=fmt,
        help="every model variant: accuracy, size and latency -> a table",
    )
    p.add_argument("--data", default="", help="FER2013 zip/folder/csv ('' = $DATA)")
    p.add_argument("--models", default=str(MODELS_DIR), help="folder holding the model variants")
    p.add_argument(
        "--threads",
        type=int_list,
        default="1,2",
        help="interpreter thread counts to time, comma separated",
    )
    p.add_argument("--runs", type=positive_int, default=300, help="timed invokes per variant")
    add_out_flag(p)
    p.set_defaults(func=cmd_bench_accuracy)


def select_configs(args, text: str | None = None, flag: str = "--configs") -> list:
    known, default = known_configs(args)
    text = args.configs if text is None else text
    names = [n.strip() for n in text.split(",") if n.strip()] or default
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"{flag} {text}: unknown {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return [known[n] for n in names]


def cmd_bench(args) -> int:
    from fer_edge.benchmarks.report import pipeline_markdown, write_pipeline_results
    from fer_edge.benchmarks.throughput import run_benchmark

    if args.configs.strip() == "list":
        known, default = known_configs(args)
        for name, cfg in known.items():
            print(f"{name:24} {cfg.describe()}{'' if name in default else '  (not by default)'}")
        return 0
    modes = parse_modes(args.modes)
    configs = select_configs(args)
    if not args.source and {"pipeline", "latency"} & set(modes):
        raise ConfigError(f"--source: give a video file or camera (or set {VIDEO_ENV})")
    if any(c.name == "default" for c in configs) and not Path(args.model).is_file():
        raise ModelError(
            f"--model {args.model}: not found; train and convert one with "
            "`make train convert`, or pass --model PATH"
        )
    failed = []
    if "pipeline" in modes:
        result, samples = run_benchmark(
            configs, args.source, args.frames, args.warmup, args.baseline_frames, args.rounds
        )
        from fer_edge.benchmarks.runcheck import runtime_check

        # Whole videos only: a few frames say little about a frame rate.
        check = None if args.frames else runtime_check(result, args.source, args.model)
        if check:
            result["runtime_check"] = check
        written = write_pipeline_results(result, samples, args.out)
        print(pipeline_markdown(result))
        print("wrote " + ", ".join(str(p) for p in written))
        failed += [n for n, r in result["configs"].items() if "error" in r]
    others = [m for m in modes if m != "pipeline"]
    if others:
        from fer_edge.benchmarks.modes import run_modes

        failed += run_modes(args, others)
    return 1 if failed else 0


def known_configs(args):
    from fer_edge.benchmarks.configs import find_v1_model, standard_configs
    from fer_edge.edge.config import MODELS_DIR

    v1_model = args.v1_model or find_v1_model(str(MODELS_DIR), args.model)
    return standard_configs(args.model, args.float_model, args.yunet_model, v1_model)


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ConfigError(f"--modes {text}: choose from {', '.join(MODES)}")
    return modes


MODES = ("pipeline", "latency", "crowd", "cost")


def add_mode_flags(p) -> None:
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help="what to run: pipeline (FPS per configuration on --source), latency (frame age "
        "on a live stream), crowd (1..16 faces per frame), cost (Pi cost model, on paper)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=1,
        help="run the configuration set this many times, round after round, and keep each "
        "configuration's median-FPS round (for a machine shared with other work)",
    )
    p.add_argument(
        "--v1-model",
        default="",
        help="model of v1-default ('' = the six-view int8 model in models/, else --model)",
    )
    p.add_argument(
        "--live-fps",
        type=int_list,
        default="30,60",
        help="frame rates of the live stand-in camera (latency mode)",
    )
    p.add_argument(
        "--live-seconds",
        type=positive_int,
        default=10,
        help="seconds timed per configuration and frame rate (latency mode)",
    )
    p.add_argument(
        "--live-configs",
        default="default,v1-default,reference",
        help="configurations timed on the live source (reference = the heaviest)",
    )
    p.add_argument(
        "--crowd-faces",
        type=int_list,
        default="1,4,9,16",
        help="faces per frame of the crowd videos (square numbers)",
    )
    p.add_argument(
        "--crowd-configs",
        default="default,default-unbatched",
        help="configurations timed on the crowd videos",
    )
    p.add_argument(
        "--crowd-frames",
        type=non_negative_int,
        default=0,
        help="frames timed per crowd video (0 = all 300)",
    )


def cmd_bench_accuracy(args) -> int:
    from fer_edge.benchmarks.accuracy import accuracy_markdown, run_accuracy, write_accuracy_results

    result = run_accuracy(args.models, args.data, threads=args.threads, runs=args.runs)
    written = write_accuracy_results(result, args.out)
    print(accuracy_markdown(result))
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if any("error" in r for r in result["variants"].values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser, sub = command_parser("python -m fer_edge.benchmarks", __doc__.splitlines()[0])
    add_bench_parsers(sub)
    return run_command(parser, argv)
