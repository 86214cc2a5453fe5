"""Shared fixtures: real FER2013 files, real videos, the shipped models. Nothing is mocked."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARCHIVE = SHARED / "datasets" / "fer2013" / "archive.zip"
VIDEO_480 = SHARED / "media" / "face_1zlab_854x480_30fps.mp4"
VIDEO_720 = SHARED / "media" / "obama_face2face-demo_1280x720_30fps.mp4"
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"
MODELS = ROOT / "models"
INT8 = MODELS / "fer_int8.tflite"
FLOAT32 = MODELS / "fer_float32.tflite"
KERAS = MODELS / "fer_student.h5"  # the Keras source of the default int8 model


def need(path: Path) -> Path:
    """The file, or a failure in CI (where everything must be there) and a skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def archive() -> Path:
    return need(ARCHIVE)


@pytest.fixture(scope="session")
def video() -> Path:
    return need(VIDEO_480)


@pytest.fixture(scope="session")
def int8_model() -> Path:
    return need(INT8)


@pytest.fixture(scope="session")
def float_model() -> Path:
    return need(FLOAT32)


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory, archive) -> Path:
    """A real subset of FER2013 in Kaggle's layout: 6 images per class and split."""
    out = tmp_path_factory.mktemp("fer") / "small.zip"
    taken: dict[tuple[str, str, str], int] = {}
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            top, cls, fname = name.split("/")
            key = (top, cls, fname.split("_")[0])
            if taken.get(key, 0) < 6:
                taken[key] = taken.get(key, 0) + 1
                dst.writestr(name, src.read(name))
    return out


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `fer-edge` as a user would, in a fresh interpreter."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "fer_edge.cli", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single error line a failed command printed (asserting there is no traceback)."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="session")
def keras_model() -> Path:
    return need(KERAS)


@pytest.fixture(scope="session")
def smoke_training(tmp_path_factory, archive):
    """A one-epoch stage-1 run on a small real subset, through the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("smoke_train")
    proc = run_cli(
        "train",
        "--data",
        str(archive),
        "--out",
        str(out),
        "--name",
        "smoke",
        "--max-train",
        "400",
        "--max-val",
        "150",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        # one view at test time: the smoke run still evaluates all 6,043 test faces
        "--tta",
        "none",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc
