"""The bench modes after `pipeline`: latency on a live source, crowds, the Pi cost model."""

from __future__ import annotations

import logging
import math
import os
from datetime import datetime
from pathlib import Path

from fer_edge.benchmarks.system import machine_info, software_info
from fer_edge.edge.errors import ConfigError, FerEdgeError

log = logging.getLogger(__name__)


def run_modes(args, modes: list[str]) -> list[str]:
    """Run `modes`, write their results; the names of runs that failed. A mode that cannot run
    here (no onnx, no face videos, as on a Pi) is recorded as skipped; a bad option raises."""
    from fer_edge.benchmarks.cli import select_configs
    from fer_edge.benchmarks.report_modes import (
        cost_markdown,
        crowd_markdown,
        latency_markdown,
        write_mode_results,
    )

    # Options first, so a typo fails before anything has run.
    live = select_configs(args, args.live_configs, "--live-configs") if "latency" in modes else []
    crowd = select_configs(args, args.crowd_configs, "--crowd-configs") if "crowd" in modes else []
    bad = [n for n in args.crowd_faces if math.isqrt(n) ** 2 != n or n > 36]
    if "crowd" in modes and bad:
        raise ConfigError(
            f"--crowd-faces {','.join(map(str, args.crowd_faces))}: each count must be a square "
            "number up to 36 (a k x k grid), such as 1,4,9,16"
        )
    header = {
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "software": software_info(),
    }
    result = {**header, "modes": {}}
    plan = {
        "latency": (
            "latency",
            latency_markdown,
            lambda: {"video": args.source, "runs": latency_runs(args, live)},
        ),
        "crowd": ("crowd", crowd_markdown, lambda: crowd_runs(args, crowd)),
        "cost": ("pi_cost", cost_markdown, lambda: {"cost": cost_runs(args)}),
    }
    renders = []
    for mode in modes:
        key, render, run = plan[mode]
        try:
            result["modes"][key] = run()
        except (ImportError, FerEdgeError) as exc:
            log.warning("%s mode skipped: %s", mode, exc)
            result["modes"][key] = {"skipped": str(exc)}
            continue
        renders.append((key, render))
    written = write_mode_results(result, args.out)
    for key, render in renders:
        print(render({**header, **result["modes"][key]}))
    print("wrote " + ", ".join(str(p) for p in written))
    return [
        f"{mode}:{key}"
        for mode, part in result["modes"].items()
        for key, run in part.get("runs", {}).items()
        if "error" in run
    ]


def latency_runs(args, configs) -> dict:
    from fer_edge.benchmarks.live import measure_latency, run_latency

    if os.path.isfile(args.source):
        return run_latency(configs, args.source, args.live_fps, args.live_seconds)
    # A real camera or stream: measure on it as it is; the first --live-fps is its nominal rate.
    out = {}
    for cfg in configs:
        key = f"{cfg.name}@{args.source}"
        try:
            out[key] = {
                "config": cfg.name,
                "description": cfg.describe(),
                **measure_latency(cfg, args.source, args.live_seconds, 2.0, args.live_fps[0]),
            }
        except Exception as exc:
            out[key] = {"config": cfg.name, "description": cfg.describe(), "error": str(exc)}
    return out


def crowd_runs(args, configs) -> dict:
    from fer_edge.benchmarks.crowd import run_crowd

    media = Path(__file__).resolve().parents[2] / "shared" / "media"
    videos = sorted(str(p.resolve()) for p in media.glob("*.mp4"))
    source = os.path.realpath(args.source)
    if os.path.isfile(source) and source not in videos:
        videos = [source, *videos]
    if not videos:
        raise ConfigError(f"crowd mode: no face videos in {media}; pass --source VIDEO")
    runs = run_crowd(configs, videos, args.crowd_faces, args.crowd_frames, args.warmup, args.rounds)
    return {"videos": videos, "runs": runs}


def cost_runs(args) -> dict:
    from fer_edge.benchmarks.cli import known_configs
    from fer_edge.benchmarks.costmodel import cost_model
    from fer_edge.edge.detectors import default_yunet_path

    yunet = args.yunet_model or default_yunet_path()
    if yunet is None:
        raise ConfigError("cost mode: YuNet .onnx not found; run `make models` or --yunet_model")
    known, _ = known_configs(args)
    d = known["default"]
    models = list(dict.fromkeys(c.model for c in known.values() if c.kind == "pipeline"))
    models = [m for m in models if os.path.isfile(m)]
    return cost_model(
        yunet,
        models,
        detect_width=d.detect_width,
        detect_every=d.detect_every,
        full_detect_every=d.full_detect_every,
        classify_every=d.classify_every,
    )
