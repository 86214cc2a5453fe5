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
from conftest import ROOT, free_port
from fer_edge.edge.config import DEFAULT_MODEL_FILE, SEVEN_MODEL_FILE, TTA_MODEL_FILE, YUNET_FILE

pytestmark = pytest.mark.slow

TOP_LEVEL = {"fer_edge", "fer_edge-0.1.0.dist-info"}


def run(argv: list, cwd: Path, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    # A clean environment: nothing from this repository's venv or PYTHONPATH leaks in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PIP_DISABLE_PIP_VERSION_CHECK="1")
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


def test_installed_wheel_runs_anywhere(wheel, tmp_path, video):
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    py, bin_dir = venv / "bin" / "python", venv / "bin"
    proc = run([py, "-m", "pip", "install", "-q", f"{wheel}[edge]"], tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    for name in ("edge", "train", "convert", "benchmarks"):
        proc = run([py, "-c", f"import {name}"], work)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, name
    proc = run(
        [py, "-c", "import sys, fer_edge.edge.cli; print('tensorflow' in sys.modules)"], work
    )
    assert proc.stdout.strip() == "False", proc.stderr
    proc = run([py, "-c", "import tensorflow"], work)
    assert proc.returncode != 0, "the edge extra must not pull TensorFlow"
