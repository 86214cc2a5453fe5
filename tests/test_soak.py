"""Long run: 10,000 frames of a looped video; memory must stay flat."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_10000_frames_with_flat_memory(video, int8_model, tmp_path):
    events = tmp_path / "soak.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fer_edge.edge",
            "run",
            "--source",
            str(video),
            "--model",
            str(int8_model),
            "--headless",
            "--loop",
            "--max-frames",
            "10000",
            "--events",
            str(events),
        ],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples: list[tuple[int, float]] = []  # (events written so far, RSS MiB)
    while proc.poll() is None:
        try:
            samples.append((events.stat().st_size if events.exists() else 0, rss_mib(proc.pid)))
        except (FileNotFoundError, RuntimeError, ProcessLookupError):
            break
        time.sleep(0.25)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "10000 frames" in err
    lines = events.read_text().count("\n")
    assert lines >= 9500
    # Baseline once the first loop of the video (383 frames) is done and everything is warm.
    size_at_warm = events.stat().st_size * 500 / 10000
    warm = [rss for size, rss in samples if size >= size_at_warm]
    assert len(warm) >= 10, samples
    growth = max(warm) - warm[0]
    print(f"RSS after warm-up {warm[0]:.1f} MiB, max {max(warm):.1f} MiB, growth {growth:.1f} MiB")
    assert growth < 20.0
