"""Issue #16, "A laptop user's first hour": a run ends with what it saw; fine-tuning starts from
the shipped model and says what comes next; install lines work from a clone; the commands start
quietly. The real `fer-edge` command on the real video and model, as a user types it."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, one_line_error
from fer_edge.edge.summary import RunSummary
from fer_edge.edge.types import Box, Face, Frame, FrameResult

FER = Path(sys.executable).with_name("fer-edge")
LABELS = ("neutral", "happy", "sad", "angry", "surprise")
# What native libraries print at start-up when nobody silences them
NOISE = (
    "XNNPACK",
    "absl::InitializeLog",
    "cuInit",
    "cuda",
    "oneDNN",
    "cpu_feature_guard",
    "[ WARN:",
    "Traceback",
    "Exception ignored",
)


def fer_edge(*args: str, env: dict | None = None, timeout: int = 300):
    """`fer-edge ARGS` from the project root, with no display and none of the environment
    variables that quiet native libraries (the user's first hour has neither)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    for key in ("TF_CPP_MIN_LOG_LEVEL", "OPENCV_LOG_LEVEL"):
        base.pop(key, None)
    return subprocess.run(
        [str(FER), *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def noise_in(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if any(n.lower() in ln.lower() for n in NOISE)]


# ---------------------------------------------------------------- 1. the run's summary


def result(t: float, *faces: tuple[int, int]) -> FrameResult:
    """A frame at stream time t with faces (track, index of the winning label)."""
    frame = Frame(np.zeros((4, 4, 3), np.uint8), int(round(t * 10)), t)
    out = []
    for track, k in faces:
        probs = np.full(len(LABELS), 0.1, np.float32)
        probs[k] = 0.6
        out.append(Face(Box(0, 0, 2, 2), track, probs, probs))
    return FrameResult(frame, tuple(out), {})


def test_summary_counts_each_faces_frames_per_emotion_and_second():
    s = RunSummary(LABELS)
    # face 3: happy, happy, sad in second 0, neutral in second 2; face 7: angry once in second 1
    for r in (
        result(0.0, (3, 1)),
        result(0.5, (3, 1)),
        result(0.9, (3, 2)),
        result(1.2, (7, 3)),
        result(1.5),
        result(2.0, (3, 0)),
    ):
        s.write(r)
    assert s.lines() == [
        "what the run saw (2 faces, share of each face's frames):",
        "  face 3: mostly happy (happy 50%, neutral 25%, sad 25%); 4 frames, 0.0-2.0 s",
        "  face 7: mostly angry (angry 100%); 1 frames, 1.2-1.2 s",
    ]
    rows = [
        (r["second"], r["track"], r["frames"], r["happy"], r["sad"], r["dominant"])
        for r in s.rows()
    ]
    assert rows == [
        (0, 3, 3, 0.6667, 0.3333, "happy"),
        (1, 7, 1, 0.0, 0.0, "angry"),
        (2, 3, 1, 0.0, 0.0, "neutral"),
    ]
    assert RunSummary(LABELS).lines() == ["no face seen in 0 frames"]


def test_run_ends_with_what_it_saw_per_face(video, int8_model, tmp_path):
    events, table, plot = tmp_path / "e.jsonl", tmp_path / "out" / "s.csv", tmp_path / "t.png"
    proc = fer_edge(
        "run", "--source", str(video), "--model", str(int8_model), "--headless",
        "--events", str(events), "--summary-csv", str(table), "--plot", str(plot),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(seen) == 383 and {e["track"] for e in seen} == {0}  # one face, the whole video

    # the closing lines, checked against the events of the same run
    counts = Counter(e["label"] for e in seen)
    assert counts.most_common(1)[0][0] == "neutral"
    shares = ", ".join(f"{lb} {n / 383:.0%}" for lb, n in counts.most_common())
    assert proc.stdout.splitlines() == [
        "what the run saw (1 face, share of each face's frames):",
        f"  face 0: mostly neutral ({shares}); 383 frames, 0.0-12.7 s",
    ]
    assert "--headless: no window; results go to --events, --summary-csv, --plot" in proc.stderr

    # per second: 383 frames at 30 fps are 12 whole seconds of 30 frames and 23 frames after
    rows = list(csv.DictReader(table.open()))
    assert [int(r["second"]) for r in rows] == list(range(13))
    assert [int(r["frames"]) for r in rows] == [30] * 12 + [23]
    for r in rows:
        assert math.isclose(sum(float(r[lb]) for lb in LABELS), 1.0, abs_tol=1e-3), r
        assert r["dominant"] == max(LABELS, key=lambda lb: float(r[lb]))
    for second in (0, 12):  # hand-check two seconds against the events
        labels = Counter(e["label"] for e in seen if math.floor(e["t"]) == second)
        n = sum(labels.values())
        for lb in LABELS:
            assert float(rows[second][lb]) == round(labels[lb] / n, 4), (second, lb)

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[1] == 900  # 9 in at 100 dpi
    assert not list(tmp_path.rglob(".*"))  # no temporary file left beside the outputs


def test_a_run_without_a_display_says_where_to_look(video, int8_model):
    proc = fer_edge("run", "--source", str(video), "--model", str(int8_model), "--max-frames", "3")
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if "no display found" in ln]
    for hint in ("--events -", "--dashboard", "--summary-csv FILE", "--plot FILE.png"):
        assert hint in line
    assert "face 0: mostly" in proc.stdout


def test_plot_without_matplotlib_is_one_line_naming_the_package(video, tmp_path):
    # matplotlib made unimportable in this one process, as on a Pi without the bench extra
    code = (
        "import sys; sys.modules['matplotlib'] = None; from fer_edge.cli import main; "
        f"sys.exit(main(['run', '--source', {str(video)!r}, '--headless', '--plot', "
        f"{str(tmp_path / 't.png')!r}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = one_line_error(proc)
    assert "--plot" in line and "pip install matplotlib" in line
    assert not (tmp_path / "t.png").exists()


def test_summary_csv_that_is_a_folder_fails_before_the_run(video, tmp_path):
    proc = fer_edge("run", "--source", str(video), "--summary-csv", str(tmp_path))
    line = one_line_error(proc)
    assert f"--summary-csv {tmp_path}: is a folder" in line
    assert "frames, a face in" not in proc.stderr  # nothing ran


# ---------------------------------------------------------------- 4. a quiet start


def test_run_and_checks_start_quietly_and_say_everything_with_debug(video):
    run = ["run", "--source", str(video), "--headless", "--max-frames", "3"]
    for args in (run, ["checks"]):
        proc = fer_edge(*args)
        assert proc.returncode == 0, proc.stderr
        assert noise_in(proc.stderr) == [], args
        loud = fer_edge("--log-level", "DEBUG", *args)
        assert loud.returncode == 0, loud.stderr
        assert "Created TensorFlow Lite XNNPACK delegate" in loud.stderr, args


def test_events_to_a_pipe_that_closes_end_quietly_with_status_0(video):
    cmd = f"'{FER}' run --source '{video}' --headless --events - | head -2"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["frame"] for line in proc.stdout.splitlines()] == [0, 1]
    assert noise_in(proc.stderr) == [] and "cannot write" not in proc.stderr, proc.stderr
    # the run stopped when its reader left, instead of decoding the rest of the video
    frames = int(re.search(r"(\d+) frames, a face in", proc.stderr).group(1))
    assert frames < 383


@pytest.mark.parametrize("source", ["0", "no-such-video.mp4"])
def test_checks_with_a_source_that_cannot_open_fails_in_one_line(source):
    proc = fer_edge("checks", "--source", source)
    line = one_line_error(proc)
    assert source in line
    assert noise_in(proc.stderr) == []
