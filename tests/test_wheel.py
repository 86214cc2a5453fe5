"""The wheel as a user gets it: built from the repository, installed with the `edge` extra into
a fresh venv outside it, run from another folder with no --model and no repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, free_port, one_line_error
from fer_edge.edge.config import DEFAULT_MODEL_FILE, SEVEN_MODEL_FILE, TTA_MODEL_FILE, YUNET_FILE

pytestmark = pytest.mark.slow

TOP_LEVEL = {"fer_edge", "fer_edge-0.1.0.dist-info"}


def run(
    argv: list, cwd: Path, timeout: int = 600, env: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    # A clean environment: nothing from this repository's venv or PYTHONPATH leaks in.
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {**base, "TF_CPP_MIN_LOG_LEVEL": "3", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("fer_edge-*.whl")
    return path


def test_wheel_holds_only_fer_edge_with_its_models(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == TOP_LEVEL
    models = {n.removeprefix("fer_edge/models/") for n in names if "/models/" in n}
    int8 = (DEFAULT_MODEL_FILE, TTA_MODEL_FILE, SEVEN_MODEL_FILE)
    assert models == {*int8, *(f"{m}.json" for m in int8), YUNET_FILE, "LICENSE-yunet.txt"}
    shipped = zipfile.ZipFile(wheel).read(f"fer_edge/models/{DEFAULT_MODEL_FILE}")
    assert shipped == (ROOT / "models" / DEFAULT_MODEL_FILE).read_bytes()
    assert not [n for n in names if "/tests/" in n or n.startswith("deploy/")]


@pytest.fixture(scope="module")
def edge_venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its `edge` extra: the runtime-only install (no TF)."""
    root = tmp_path_factory.mktemp("edge_venv")
    venv = root / "venv"
    assert run([sys.executable, "-m", "venv", venv], root).returncode == 0
    proc = run([venv / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[edge]"], root,
               timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def test_installed_wheel_runs_anywhere(edge_venv, tmp_path, video):
    py, bin_dir = edge_venv / "bin" / "python", edge_venv / "bin"
    work = tmp_path / "elsewhere"
    work.mkdir()

    proc = run(
        [bin_dir / "fer-edge", "run", "--source", video, "--headless", "--events", "-"]
        + ["--max-frames", "30"],
        work,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {e["frame"] for e in events} == set(range(30)), "a face in every frame of this video"
    labels = json.loads((ROOT / "models" / f"{DEFAULT_MODEL_FILE}.json").read_text())["labels"]
    assert all(list(e["probs"]) == labels for e in events)

    # The dashboard's page comes from the package too (it once looked for a top-level `edge`).
    port = free_port()
    proc = run(
        [bin_dir / "fer-edge", "run", "--source", video, "--headless", "--max-frames", "30",
         "--dashboard", port],
        work,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and f"dashboard at http://127.0.0.1:{port}" in proc.stderr, (
        proc.stderr[-3000:]
    )

    # Only fer_edge is installed: the repository's folder names are not importable.
    for name in ("edge", "evaluation", "train", "convert", "benchmarks"):
        proc = run([py, "-c", f"import {name}"], work)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, name
    proc = run(
        [py, "-c", "import sys, fer_edge.edge.cli; print('tensorflow' in sys.modules)"], work
    )
    assert proc.stdout.strip() == "False", proc.stderr
    proc = run([py, "-c", "import tensorflow"], work)
    assert proc.returncode != 0, "the edge extra must not pull TensorFlow"


def metrics_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("macro_f1="))


def test_eval_in_the_runtime_only_install(edge_venv, archive, tmp_path):
    """`fer-edge eval` of a .tflite where TensorFlow is absent gives the dev venv's figures;
    a Keras model there is one line naming the `train` extra."""
    fer = edge_venv / "bin" / "fer-edge"
    model = ROOT / "models" / DEFAULT_MODEL_FILE
    args = ["eval", model, "--data", archive, "--split", "private"]
    # An empty cache: the TF-free install decodes the archive itself, not the dev venv's npz.
    proc = run([fer, *args], tmp_path, env={"FER_EDGE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    dev = run([sys.executable, "-m", "fer_edge.cli", *args], ROOT)
    assert dev.returncode == 0, dev.stderr[-3000:]
    line = metrics_line(proc.stdout)
    assert line == metrics_line(dev.stdout), (proc.stdout, dev.stdout)
    assert " n=3006" in line  # every PrivateTest face
    accuracy = float(line.split("accuracy=")[1].split()[0])
    assert 0.6 < accuracy < 0.8

    keras = ROOT / "models" / "fer_student.h5"
    line = one_line_error(run([fer, "eval", keras, "--data", archive], tmp_path))
    assert keras.name in line and "pip install -e '.[train]'" in line, line
