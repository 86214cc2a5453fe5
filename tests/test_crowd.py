"""Crowd videos built from the shared face videos, and the bench's crowd mode on them."""

from __future__ import annotations

import contextlib
import json

import cv2
import pytest
from conftest import VIDEO_480, VIDEO_720, need
from fer_edge.benchmarks.cli import main
from fer_edge.benchmarks.configs import standard_configs
from fer_edge.benchmarks.crowd import build_crowd_video, crowd_config
from fer_edge.edge.detectors import make_detector
from fer_edge.edge.sources import open_source


@pytest.fixture(scope="module")
def videos():
    return [str(need(VIDEO_720)), str(need(VIDEO_480))]


def test_crowd_video_is_a_grid_of_faces_built_once(videos, tmp_path, int8_model):
    path = build_crowd_video(videos, 4, frames=6, out=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".mp4"
    assert not list(tmp_path.glob(".*"))  # no partial file left
    cap = cv2.VideoCapture(str(path))
    size = (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert size == (1280, 720) and count == 6
    mtime = path.stat().st_mtime_ns
    assert build_crowd_video(videos, 4, frames=6, out=tmp_path) == path  # from the cache
    assert path.stat().st_mtime_ns == mtime
    # the runtime's detector, at the crowd configuration's width, finds the four faces
    known, _ = standard_configs(str(int8_model), "")
    cfg = crowd_config(known["default"], 4)
    assert cfg.detect_width == 640 and cfg.max_faces >= 16
    with open_source(str(path)) as src, contextlib.closing(src.frames()) as it:
        frame = next(it)
    boxes = make_detector("yunet", width=cfg.detect_width).detect(frame)
    centres = {(int(b.x + b.w / 2) // 640, int(b.y + b.h / 2) // 360) for b in boxes}
    assert centres == {(0, 0), (1, 0), (0, 1), (1, 1)}  # one face in each tile


def test_face_count_must_be_a_square(videos, tmp_path):
    with pytest.raises(ValueError, match="square number"):
        build_crowd_video(videos, 5, frames=2, out=tmp_path)


@pytest.mark.slow  # a benchmark run end to end (~8 s)
def test_bench_crowd_mode(int8_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_EDGE_CACHE", str(tmp_path / "cache"))
    rc = main(
        [
            "bench",
            "--modes",
            "crowd",
            "--model",
            str(int8_model),
            "--crowd-faces",
            "1,4",
            "--crowd-configs",
            "default,default-unbatched",
            "--crowd-frames",
            "12",
            "--warmup",
            "2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    assert len(list((tmp_path / "cache" / "crowd").glob("*.mp4"))) == 2
    (folder,) = (tmp_path / "out").iterdir()
    runs = json.loads((folder / "crowd.json").read_text())["runs"]
    assert set(runs) == {"default/1", "default/4", "default-unbatched/1", "default-unbatched/4"}
    for key, r in runs.items():
        assert r["fps"] > 0 and r["ms_per_face"] > 0, key
    assert runs["default/1"]["cost_vs_first"] == 1.0
    assert runs["default/4"]["faces_per_frame"] >= 3.5
    assert "| default/4 | 4 |" in (folder / "crowd.md").read_text()


def test_a_crowd_size_that_is_not_a_square_is_one_line(int8_model):
    from conftest import one_line_error, run_cli

    proc = run_cli("bench", "--modes", "crowd", "--model", str(int8_model), "--crowd-faces", "1,5")
    assert "--crowd-faces 1,5" in one_line_error(proc)
