"""Every flag of every command: hyphenated, with help and a shown default; the old underscore
spellings still parse but stay out of --help."""

from __future__ import annotations

import argparse

import pytest
from conftest import run_cli, run_events
from fer_edge.benchmarks.cli import add_bench_parsers
from fer_edge.edge.cli import build_parser as edge_parser
from fer_edge.edge.cliframe import HelpFormatter, command_parser

from fer_edge.cli import build_parser as fer_edge_parser


def bench_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser("python -m fer_edge.benchmarks", "benchmarks")
    add_bench_parsers(sub)
    return parser


def walk(parser: argparse.ArgumentParser, path: str):
    """(command path, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


ALL = [
    pair
    for root, build in (
        ("fer-edge", fer_edge_parser),
        ("python -m fer_edge.edge", edge_parser),
        ("python -m fer_edge.benchmarks", bench_parser),
    )
    for pair in walk(build(), root)
]


def test_every_command_is_walked():
    names = {path for path, _ in ALL}
    for expected in ("fer-edge train", "fer-edge convert", "fer-edge run", "fer-edge bench"):
        assert expected in names
    assert {"python -m fer_edge.edge run", "python -m fer_edge.benchmarks bench-accuracy"} <= names


@pytest.mark.parametrize("path,parser", ALL, ids=[p for p, _ in ALL])
def test_every_option_has_help_and_default(path, parser):
    formatter = HelpFormatter(prog=path)
    visible = [
        a
        for a in parser._actions
        if a.option_strings and a.help is not argparse.SUPPRESS and a.dest != "help"
    ]
    for action in visible:
        flag = action.option_strings[0]
        assert (action.help or "").strip(), f"{path} {flag}: no help text"
        shown = formatter._expand_help(action)
        assert "default" in shown.lower() or "(required)" in shown, f"{path} {flag}: {shown}"
        for option in action.option_strings:
            assert "_" not in option, f"{path}: {option} is not hyphenated"


@pytest.mark.parametrize("path,parser", ALL, ids=[p for p, _ in ALL])
def test_underscore_aliases_are_hidden_and_parse(path, parser):
    hidden = [a for a in parser._actions if a.option_strings and a.help is argparse.SUPPRESS]
    visible_dests = {a.dest for a in parser._actions if a.help is not argparse.SUPPRESS}
    for action in hidden:
        assert action.dest in visible_dests, f"{path}: {action.option_strings} aliases nothing"
        for option in action.option_strings:
            assert option not in parser.format_help()


def test_train_help_comes_from_the_config_comments():
    out = run_cli("train", "--help").stdout
    # Stage1Config: `warmup_epochs: float = 1.0  # linear warm-up: the fresh head must not ...`
    assert "--warmup-epochs" in out and "linear warm-up" in out
    assert "--warmup_epochs" not in out
    assert "(default: 1.0)" in out
    # a block comment above the field joins its help (class_weight_power)
    assert "fully balanced" in out


def test_both_spellings_run(video, int8_model, tmp_path):
    counts = {}
    for spelling in (["--max-frames", "10", "--detect-every", "1"], ["--max_frames", "10"]):
        proc, rows = run_events(video, int8_model, tmp_path / f"{spelling[0]}.jsonl", *spelling)
        assert proc.returncode == 0, proc.stderr
        counts[spelling[0]] = {r["frame"] for r in rows}
    assert counts["--max-frames"] == set(range(10))
    assert counts["--max_frames"] == set(range(10))


# The runtime's defaults as the README states them, written out: comparing the flags with
# DEFAULTS itself would pass whatever DEFAULTS said.
RUNTIME_DEFAULTS = {
    "model": "",
    "tta": False,
    "source": "0",
    "threads": 1,
    "detector": "yunet",
    "yunet_model": "",
    "detect_width": 320,
    "detect_resize": "linear",
    "detect_every": 2,
    "full_detect_every": 10,
    "adaptive_width": False,
    "max_faces": 16,
    "cv_threads": 1,
    "decode_threads": 1,
    "classify_every": 2,
    "smoothing": True,
}


def test_runtime_defaults_are_the_documented_values():
    from fer_edge.benchmarks.throughput import standard_configs
    from fer_edge.edge.config import DEFAULTS
    from fer_edge.edge.pipeline import PipelineConfig

    assert {k: getattr(DEFAULTS, k) for k in RUNTIME_DEFAULTS} == RUNTIME_DEFAULTS
    run = edge_parser().parse_args(["run"])
    shown = {k: getattr(run, k) for k in RUNTIME_DEFAULTS if hasattr(run, k)}
    assert shown == {k: RUNTIME_DEFAULTS[k] for k in shown}
    assert len(shown) == len(RUNTIME_DEFAULTS) - 1  # every one but smoothing, which is:
    assert run.no_smoothing is False
    pipe = PipelineConfig()
    assert (pipe.detect_every, pipe.full_detect_every, pipe.classify_every, pipe.max_faces) == (
        2,
        10,
        2,
        16,
    )
    assert (pipe.smoothing, pipe.smoothing_alpha, pipe.alpha_per_frame) == (True, 0.4, True)
    assert (pipe.min_face, pipe.roi_size, pipe.adaptive_width) == (24, 96, False)
    bench = standard_configs("m.tflite", "f.tflite")[0]["default"]
    assert (bench.detect_width, bench.detect_every, bench.classify_every, bench.threads) == (
        320,
        2,
        2,
        1,
    )
