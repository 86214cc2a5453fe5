"""The Python API, through the examples the docs show: their code is run as it is printed, and
what it prints is what the docs say it prints."""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT
from fer_edge.edge.errors import FerEdgeError

from fer_edge import EmotionRecognizer


def api_example() -> tuple[str, list[str]]:
    """docs/runtime.md's "Python API" section: its first ```python block and the output block
    printed after it."""
    text = (ROOT / "docs" / "runtime.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    code, output = re.search(r"```python\n(.*?)```.*?```\n(.*?)```", section, re.S).groups()
    return code, output.splitlines()


def readme_example() -> str:
    """The README's short ```python example ("In Python")."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### In Python\n", 1)[1].split("\n#", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_python(code: str, cwd) -> list[str]:
    code += "\nimport sys\nprint('tensorflow' in sys.modules)\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "False", "the API imported TensorFlow"
    return lines[:-1]


@pytest.fixture(scope="module")
def first_frame(video) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.fixture
def example_dir(tmp_path, video, first_frame):
    """The files the examples open: the video's first frame as face.jpg, the video as clip.mp4."""
    cv2.imwrite(str(tmp_path / "face.jpg"), first_frame)
    (tmp_path / "clip.mp4").symlink_to(video)
    return tmp_path


def test_docs_example_prints_what_the_docs_show(example_dir):
    code, printed = api_example()
    assert re.fullmatch(r"\w+ [01]\.\d\d \(\d+, \d+, \d+, \d+\)", printed[0]), printed
    # every line as printed: label, score to two decimals, box, then the tracked stream
    assert run_python(code, example_dir) == printed


def test_readme_example_prints_the_same_face(example_dir):
    _, printed = api_example()
    assert run_python(readme_example(), example_dir) == printed[:1]


def test_predict_matches_stream_on_the_first_frame(video, first_frame):
    with EmotionRecognizer(threads=1) as rec:
        faces = rec.predict(first_frame)
        frame = next(rec.stream(video))
        labels = rec.labels
    assert len(faces) == 1 and len(frame.faces) == 1
    face, tracked = faces[0], frame.faces[0]
    assert face.box == tracked.box and face.label == tracked.label
    assert face.track is None and tracked.track == 0
    # int8 outputs: each probability is a multiple of 1/256, so the sum is off by a little
    assert abs(sum(face.probabilities.values()) - 1.0) < 5 / 256
    assert face.score == max(face.probabilities.values())
    assert list(face.probabilities) == list(labels)


def test_predict_without_a_face_and_bad_input(first_frame):
    with EmotionRecognizer() as rec:
        assert rec.predict(np.zeros((240, 320, 3), np.uint8)) == []
        with pytest.raises(ValueError, match="numpy array"):
            rec.predict("face.jpg")


def test_stream_of_arrays_is_tracked(first_frame):
    with EmotionRecognizer() as rec:
        frames = list(rec.stream([first_frame] * 4))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert {face.track for f in frames for face in f.faces} == {0}


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(FerEdgeError, match="nothing.tflite"):
        EmotionRecognizer(tmp_path / "nothing.tflite")


def test_model_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FER_EDGE_MODEL", str(tmp_path / "from_env.tflite"))
    with pytest.raises(FerEdgeError, match="from_env.tflite"):
        EmotionRecognizer()
