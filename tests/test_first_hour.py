"""Issue #16, "A laptop user's first hour": a run ends with what it saw; fine-tuning starts from
the shipped model and says what comes next; install lines work from a clone; the commands start
quietly. The real `fer-edge` command on the real video and model, as a user types it."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ARCHIVE, ROOT, one_line_error
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


@pytest.mark.slow  # real-time playback / TensorFlow start-up: 16-21 s
def test_tensorflow_commands_start_quietly_and_say_everything_with_debug(keras_model, tmp_path):
    # eval of a Keras model imports TensorFlow and runs it; finetune with too few photos loads
    # TensorFlow and the base model, then stops with one line
    few = tmp_path / "me" / "sad"
    few.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(few / f"{i}.png"), np.full((48, 48), 100 + i, np.uint8))
    small = tmp_path / "small.zip"
    make_small_archive(small, per_class=2)
    commands = [
        ["eval", str(keras_model), "--data", str(small), "--split", "private"],
        ["finetune", "--personal", str(tmp_path / "me"), "--detector", "none"],
    ]
    for args in commands:
        proc = fer_edge(*args)
        assert noise_in(proc.stderr) == [], (args, proc.stderr)
        assert proc.returncode == (0 if args[0] == "eval" else 2), proc.stderr
    # the same start-up lines are there with --log-level DEBUG
    loud = fer_edge("--log-level", "DEBUG", *commands[1])
    assert "absl::InitializeLog" in loud.stderr and "cuda" in loud.stderr.lower()


def test_make_help_prints_values_not_make_expressions():
    out = make("help")
    assert "$(" not in out
    assert "fine-tune models/fer_pair.h5 on PERSONAL=dir" in out  # was $(KERAS)
    assert "-> models/fer_mnv2.h5" in out  # train-teacher's target, was $(TEACHER)
    other = make("help", "KERAS=elsewhere/mine.h5")
    assert "fine-tune elsewhere/mine.h5 on" in other
    assert variable_value(other, "KERAS") == "elsewhere/mine.h5"


# ---------------------------------------------------------------- 2. fine-tuning


def make(*args: str) -> str:
    proc = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def variable_value(help_text: str, name: str) -> str:
    """The value `make help` prints under a variable's name."""
    lines = help_text.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [name])
    return lines[i + 1].strip().removeprefix("= ")


def make_small_archive(path: Path, per_class: int) -> None:
    """A real subset of FER2013 in Kaggle's layout: `per_class` images per class and split."""
    taken: Counter = Counter()
    with zipfile.ZipFile(ARCHIVE) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            top, cls, fname = name.split("/")
            key = (top, cls, fname.split("_")[0])
            if taken[key] < per_class:
                taken[key] += 1
                dst.writestr(name, src.read(name))


def test_the_default_keras_source_is_one_path_everywhere():
    from fer_edge.convert.tflite import ConvertConfig
    from fer_edge.train.config import DEFAULT_KERAS_SOURCE, Stage2Config

    assert DEFAULT_KERAS_SOURCE == "models/fer_pair.h5"
    assert (ROOT / DEFAULT_KERAS_SOURCE).is_file()
    assert Stage2Config().base == DEFAULT_KERAS_SOURCE  # was models/fer_mnv2.keras
    assert ConvertConfig().model == DEFAULT_KERAS_SOURCE
    assert variable_value(make("help"), "KERAS") == DEFAULT_KERAS_SOURCE
    # what you fine-tune on your face is not committed by accident
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "models/personal/fer_personal.keras"], cwd=ROOT
    )
    assert ignored.returncode == 0


def test_finetune_without_photos_or_base_is_one_line_before_tensorflow(tmp_path):
    line = one_line_error(fer_edge("finetune", timeout=60))
    assert "--personal" in line and "fer-edge capture" in line
    (tmp_path / "happy").mkdir()
    missing = tmp_path / "nope.h5"
    line = one_line_error(
        fer_edge("finetune", "--personal", str(tmp_path), "--base", str(missing), timeout=60)
    )
    assert f"--base {missing}: Keras model not found" in line


def test_make_finetune_names_its_input_output_and_the_next_make_commands(tmp_path):
    out = make("-n", "finetune", f"PERSONAL={tmp_path}")
    assert f'finetune --base models/fer_pair.h5 --personal "{tmp_path}"' in out
    assert "--out models/personal" in out
    assert (
        "make convert KERAS=models/personal/fer_personal.keras MODELS=models/personal "
        "ARGS='--prefix fer_personal --variants int8' && "
        "make run MODEL=models/personal/fer_personal_int8.tflite"
    ) in out


@pytest.mark.slow
def test_finetune_says_what_it_does_and_its_next_commands_run(video, tmp_path):
    # a personal folder of real faces: FER2013 PrivateTest images, 6 per class
    me, taken = tmp_path / "me", Counter()
    with zipfile.ZipFile(ARCHIVE) as z:
        for name in z.namelist():
            top, cls, fname = name.split("/")
            if top == "test" and cls in LABELS and taken[cls] < 6:
                taken[cls] += 1
                (me / cls).mkdir(parents=True, exist_ok=True)
                (me / cls / fname).write_bytes(z.read(name))
    small, out = tmp_path / "small.zip", tmp_path / "personal"
    make_small_archive(small, per_class=6)
    proc = fer_edge(
        "finetune", "--personal", str(me), "--data", str(small), "--out", str(out),
        "--epochs", "1", "--detector", "none", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert noise_in(proc.stderr) == [] and "UserWarning" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == [
        f"fine-tuning models/fer_pair.h5 on 30 photos in {me}: "
        "angry 6, happy 6, neutral 6, sad 6, surprise 6",
        "up to 1 epochs (early stop after 5 without progress), top 20 layers; 25% of each class "
        "held out to compare",
        f"writing {out}/fer_personal.keras",
    ]
    assert lines[-4:-2] == [
        f"wrote {out}/fer_personal.keras (report {out}/fer_personal.report.json)",
        "next, convert it to int8 and run it:",
    ]
    convert, run = (shlex.split(ln) for ln in lines[-2:])
    assert convert[:2] == ["fer-edge", "convert"] and run[:2] == ["fer-edge", "run"]
    assert (out / "fer_personal.keras").is_file()

    # The printed commands, as printed. Only the conversion's gate is relaxed: on the small
    # archive it checks 30 faces, where 2 int8 flips would fail the 95% agreement.
    proc = fer_edge(*convert[1:], "--min-agreement", "0", "--max-drop", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert noise_in(proc.stderr) == [], proc.stderr
    assert (out / "fer_personal_int8.tflite").is_file()
    proc = fer_edge(*run[1:], "--source", str(video), "--headless", "--max-frames", "5")
    assert proc.returncode == 0, proc.stderr
    assert "face 0: mostly" in proc.stdout


# ---------------------------------------------------------------- 3. install lines


def test_install_lines_name_what_installs_from_a_clone():
    # fer-edge is on no package index: `pip install 'fer-edge[x]'` fails for everyone
    skip = {".git", ".venv", "build", "dist", "tests", "node_modules", "__pycache__"}
    offenders = []
    for path in ROOT.rglob("*"):
        if skip & set(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        if path.suffix in (".py", ".sh", ".mk", ".js", ".html") or path.name == "Makefile":
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if re.search(r"pip install[^\n]*fer-edge\[", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_mqtt_without_paho_names_a_working_install_line(video):
    code = (
        "import sys; sys.modules['paho'] = None; from fer_edge.cli import main; "
        f"sys.exit(main(['run', '--source', {str(video)!r}, '--headless', "
        "'--mqtt', 'mqtt://127.0.0.1:1']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = one_line_error(proc)
    assert "pip install 'paho-mqtt>=2.1,<3'" in line and "pip install -e '.[mqtt]'" in line


def test_make_leaves_the_native_log_level_to_the_cli():
    # The CLI hides TensorFlow's start-up lines (the cuInit error among them) with level 3 only
    # where the environment has none; a Makefile exporting 2 made every make target noisy.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
        ["make", "-s", "-f", "Makefile", "-f", "-", "show-tf-level"],
        input="show-tf-level:\n\t@echo \"[$$TF_CPP_MIN_LOG_LEVEL]\"\n",
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
