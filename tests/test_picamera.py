"""edge/picamera.py against a TEST DOUBLE of picamera2 (tests/picamera2_double.py).

picamera2 needs libcamera and a camera, which exist only on a Pi, so `sys.modules["picamera2"]`
is the double here, serving the real 480p test video in the Pi camera's formats: main RGB888
and lores YUV420 (stride-padded). Everything downstream is real: YuNet, the classifier, the
CLI. The missing-picamera2 error is checked against the real import, which fails here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time

import cv2
import numpy as np
import picamera2_double
import pytest
from conftest import YUNET, need, one_line_error, run_cli
from fer_edge.edge.detectors import YuNetDetector
from fer_edge.edge.picamera import PiCameraSource
from fer_edge.edge.types import Frame

MAIN = (854, 480)  # the test video's own size: main frames are its frames, unchanged


@pytest.fixture
def camera(monkeypatch, video):
    """picamera2 = the double, its camera seeing the 480p video."""
    monkeypatch.setitem(sys.modules, "picamera2", picamera2_double)
    monkeypatch.setattr(picamera2_double.Picamera2, "video", video)
    monkeypatch.setattr(picamera2_double.Picamera2, "stall_after", None)
    monkeypatch.setattr(picamera2_double.Picamera2, "instances", [])
    return picamera2_double.Picamera2


def video_frames(video, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def test_missing_picamera2_is_one_line():
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    line = one_line_error(run_cli("run", "--source", "picamera", "--headless", "--max_frames", "1"))
    assert "picamera2 is not installed" in line
    assert "sudo apt install -y python3-picamera2" in line and "--system-site-packages" in line


def test_no_camera_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", picamera2_double)
    monkeypatch.setattr(picamera2_double.Picamera2, "video", None)  # the double: no camera
    with pytest.raises(Exception) as err:
        PiCameraSource(*MAIN)
    assert "Pi camera not found" in str(err.value) and "rpicam-hello" in str(err.value)


def test_streams_requested_and_lores_is_the_y_plane(camera, video):
    # 300 px wide lores: the ISP pads its rows to 320 bytes, which must not reach the detector.
    with PiCameraSource(*MAIN, lores_width=300) as source:
        cam = camera.instances[0]
        frames = [f for f, _ in zip(source.frames(), range(3))]
    assert cam.camera_config["main"]["format"] == "RGB888"
    assert cam.camera_config["main"]["size"] == MAIN
    assert cam.camera_config["lores"]["format"] == "YUV420"
    assert cam.camera_config["lores"]["size"] == (300, 168)
    assert cam.camera_config["lores"]["stride"] == 320
    originals = video_frames(video, 60)
    for frame in frames:
        # main is the camera frame itself, BGR as OpenCV wants it; the live reader keeps the
        # newest frame, so find which one it is.
        k = next(i for i, img in enumerate(originals) if np.array_equal(img, frame.image))
        assert frame.small.shape == (168, 300) and frame.small.flags.c_contiguous
        y = cv2.cvtColor(
            picamera2_double.lores_image(originals[k], (300, 168)), cv2.COLOR_BGR2YUV_I420
        )[:168]
        assert np.array_equal(frame.small, y)
        assert frame.small_scale == pytest.approx(300 / 854)
    assert cam.calls[-2:] == ["stop", "close"] and cam.served == cam.released


def test_detection_on_lores_maps_boxes_to_main(camera, video):
    detector = YuNetDetector(need(YUNET), width=320)
    checked = 0
    with PiCameraSource(*MAIN, lores_width=320) as source:
        for frame in source.frames():
            # A black main image: a face can only be found in the lores Y plane.
            blind = Frame(np.zeros_like(frame.image), 0, 0.0, frame.small, frame.small_scale)
            from_lores = detector.detect(blind)
            from_main = detector.detect(Frame(frame.image, 0, 0.0))  # full-colour frame
            assert len(from_lores) == 1 and len(from_main) == 1
            a, b = from_lores[0], from_main[0]
            # Main-stream coordinates: the lores box (320 px wide) scaled by 854/320.
            assert a.x + a.w <= MAIN[0] + 4 and a.y + a.h <= MAIN[1] + 4
            assert a.w > 320 * 0.2, "a box in lores pixels would be this small"
            assert a.iou(b) > 0.8, (a, b)
            checked += 1
            if checked == 5:
                break
    print(f"picamera2 double: lores Y-plane boxes vs full-colour boxes, {checked} frames")


def test_frames_ends_when_the_reader_stops(camera):
    source = PiCameraSource(*MAIN)
    seen, done = [], threading.Event()

    def consume():
        for frame in source.frames():
            seen.append(frame.index)
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(seen) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(seen) >= 5
    t0 = time.monotonic()
    source.close()  # what SIGTERM's unwinding or another thread does
    assert done.wait(5), "frames() kept waiting after its reader stopped"
    print(f"frames() returned {time.monotonic() - t0:.2f} s after close()")
    assert camera.instances[0].calls[-2:] == ["stop", "close"]


def test_a_stalled_camera_is_restarted(camera, caplog):
    camera.stall_after = 4  # then no frame comes: capture_request times out
    frames = []
    with PiCameraSource(*MAIN, capture_timeout=0.3) as source:
        t0 = time.monotonic()
        for frame in source.frames():
            frames.append(frame)
            if len(frames) == 7 or time.monotonic() - t0 > 20:
                break
        cam = camera.instances[0]
    assert len(frames) == 7, "frames did not resume after the restart"
    assert cam.calls.count("start") >= 2  # stop + start again by the reader
    assert any("no frame within 0.3 s" in r.message for r in caplog.records)


def test_fer_edge_run_on_the_pi_camera_path(camera, tmp_path, int8_model):
    """The CLI as the Pi's service runs it, with --source picamera served by the double."""
    from fer_edge.edge.cli import main

    events = tmp_path / "events.jsonl"
    rc = main(
        [
            "run",
            "--model",
            str(int8_model),
            "--yunet_model",
            str(need(YUNET)),
            "--source",
            "picamera",
            "--width",
            str(MAIN[0]),
            "--height",
            str(MAIN[1]),
            "--headless",
            "--events",
            str(events),
            "--max_frames",
            "20",
        ]
    )
    assert rc == 0
    lines = [json.loads(ln) for ln in events.read_text().splitlines()]
    assert len({e["frame"] for e in lines}) >= 15  # a face in (nearly) every frame
    for event in lines:
        x, y, w, h = event["box"]
        assert w > 100 and x + w <= MAIN[0] + 4 and y + h <= MAIN[1] + 4  # main coordinates
    cam = camera.instances[0]
    assert cam.calls[-2:] == ["stop", "close"] and cam.served == cam.released
