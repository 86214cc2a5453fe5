"""The bench against the runtime itself: `fer-edge run` on the same video, its own closing FPS
line, next to the bench's `default` FPS. They must agree within 10%, or the bench is not
measuring what users run."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

TOLERANCE = 0.10
_FPS = re.compile(r"a face in \d+ \([\d.]+%\), ([\d.]+) FPS")


def runtime_fps(source: str, model: str, frames: int = 0, runs: int = 5) -> list[float]:
    """The closing FPS of `fer-edge run --headless` with its default flags, `runs` times."""
    cmd = [sys.executable, "-m", "fer_edge.cli", "run", "--source", source, "--model", model,
           "--headless", "--events", os.devnull]  # fmt: skip
    if frames:
        cmd += ["--max-frames", str(frames)]
    out = []
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        found = _FPS.findall(proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(f"fer-edge run failed: {proc.stderr.strip()[-300:]}")
        out.append(float(found[-1]))
    return out


def runtime_check(result: dict, source: str, model: str, frames: int = 0) -> dict | None:
    """{"bench_fps", "run_fps", "ratio", "within"} for the `default` configuration."""
    default = result["configs"].get("default")
    if not default or "fps" not in default or not os.path.isfile(source):
        return None
    fps = runtime_fps(source, model, frames)
    run = statistics.median(fps)
    ratio = run / default["fps"]
    return {
        "bench_fps": round(default["fps"], 1),
        "run_fps": round(run, 1),
        "run_fps_all": fps,
        "ratio": round(ratio, 3),
        "tolerance": TOLERANCE,
        "within": abs(ratio - 1.0) <= TOLERANCE,
    }
