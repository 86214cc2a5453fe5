"""The edge runtime on real videos with the real LiteRT interpreter and YuNet/Haar detectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, one_line_error, run_cli, run_events
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.detectors import HaarDetector, YuNetDetector
from fer_edge.edge.pipeline import Pipeline, PipelineConfig
from fer_edge.edge.sources import open_source
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box

EVENT_KEYS = {"frame", "t", "track", "box", "label", "probs"}


def test_headless_run_labels_a_face_in_nearly_every_frame(video, int8_model, tmp_path):
    proc, rows = run_events(video, int8_model, tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert rows and all(EVENT_KEYS <= set(r) for r in rows)
    labels = Classifier(int8_model).labels
    for r in rows:
        assert r["label"] in labels and set(r["probs"]) == set(labels)
        assert abs(sum(r["probs"].values()) - 1.0) < 0.05
        assert len(r["box"]) == 4 and r["box"][2] > 0
    frames = {r["frame"] for r in rows}
    assert len(frames) >= 0.95 * 383  # the acceptance line: a face in >= 95% of 383 frames
    assert max(frames) == 382


def test_runtime_works_with_tensorflow_unimportable(video, int8_model, tmp_path):
    events = tmp_path / "e.jsonl"
    # None in sys.modules makes `import tensorflow` (and keras, train, convert) raise ImportError.
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'tf_keras', 'fer_edge.train', 'fer_edge.convert'):\n"
        "    sys.modules[m] = None\n"
        "from fer_edge.edge.cli import main\n"
        f"rc = main(['run', '--source', {str(video)!r}, '--model', {str(int8_model)!r},"
        f" '--headless', '--events', {str(events)!r}, '--max-frames', '40'])\n"
        "assert 'tensorflow' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert len({json.loads(x)["frame"] for x in events.read_text().splitlines()}) >= 38


def test_edge_package_never_imports_training_code():
    """The runtime is the bottom layer: no module of edge/ imports TensorFlow, Keras or a
    layer above it (train, convert, evaluation, benchmarks), at the top or inside a function."""
    import ast

    banned = ("tensorflow", "keras", "tf_keras", "fer_edge.train", "fer_edge.convert",
              "fer_edge.evaluation", "fer_edge.benchmarks", "train", "convert", "evaluation",
              "benchmarks")  # fmt: skip
    checked = 0
    for path in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            checked += 1
            for name in names:
                bad = [b for b in banned if name == b or name.startswith(b + ".")]
                assert not bad, f"{path.name}:{node.lineno} imports {name}"
    assert checked > 50  # the walk saw the package's imports


def test_pipeline_classifies_every_frame_of_a_video_file(video, int8_model):
    from fer_edge.edge.detectors import make_detector

    pipe = Pipeline(make_detector("yunet"), Classifier(int8_model), PipelineConfig(detect_every=3))
    with open_source(str(video)) as src:
        results = [pipe.process(f) for _, f in zip(range(30), src.frames())]
    assert [r.frame.index for r in results] == list(range(30))
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].track for r in results}) == 1  # one person, one track
    assert set(results[0].timings) == {"detect", "preprocess", "inference", "smoothing"}


@pytest.mark.parametrize("detector_cls", [YuNetDetector, HaarDetector])
def test_detectors_find_the_face_and_map_boxes_back(video, detector_cls):
    with open_source(str(video)) as src:
        frame = next(iter(src.frames()))
    full = detector_cls(width=0).detect(frame)
    small = detector_cls(width=320).detect(frame)
    assert full and small
    a = max(full, key=lambda b: b.area)
    b = max(small, key=lambda b: b.area)
    assert a.iou(b) > 0.6  # the downscaled detection lands on the same face in frame pixels


def test_smoothing_holds_label_steady_and_keeps_track_ids():
    tracker = Tracker(alpha=0.3)
    box = Box(100, 100, 80, 80)
    happy, sad = np.array([0, 1.0, 0, 0, 0]), np.array([0, 0, 1.0, 0, 0])
    for _ in range(10):
        ((tid, probs),) = tracker.update([box], [happy])
    ((tid2, probs),) = tracker.update([Box(104, 102, 80, 80)], [sad])  # one odd frame
    # 0.3 sad + 0.7 happy: the label holds
    assert tid2 == tid and int(np.argmax(probs)) == 1
    np.testing.assert_allclose(probs, [0, 0.7, 0.3, 0, 0], atol=1e-6)
    ((other, _),) = tracker.update([Box(400, 100, 80, 80)], [sad])  # a face elsewhere is new
    assert (tid, other) == (0, 1)


def test_image_folder_source(tmp_path, video):
    with open_source(str(video)) as src:
        frames = [f.image for _, f in zip(range(3), src.frames())]
    for i, img in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
    with open_source(str(tmp_path)) as src:
        got = list(src.frames())
    assert [f.index for f in got] == [0, 1, 2]
    np.testing.assert_array_equal(got[1].image, frames[1])


# --- every bad input: one line, non-zero exit, no traceback ---------------------------------


def test_missing_source(int8_model):
    line = one_line_error(
        run_cli("run", "--source", "no/such/video.mp4", "--model", str(int8_model), "--headless")
    )
    assert "no/such/video.mp4" in line


def test_unreadable_video(int8_model, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(4096))
    line = one_line_error(
        run_cli("run", "--source", str(bad), "--model", str(int8_model), "--headless")
    )
    assert "broken.mp4" in line and "cannot decode" in line


@pytest.mark.parametrize("content", [b"", b"this is not a model", b"TFL3" + os.urandom(2000)])
def test_corrupt_model(video, int8_model, tmp_path, content):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    (tmp_path / "bad.tflite.json").write_text(
        (int8_model.parent / (int8_model.name + ".json")).read_text()
    )
    line = one_line_error(run_cli("run", "--source", str(video), "--model", str(bad), "--headless"))
    assert "bad.tflite" in line


def test_model_without_contract(video, int8_model, tmp_path):
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(int8_model.read_bytes())
    line = one_line_error(
        run_cli("run", "--source", str(video), "--model", str(lonely), "--headless")
    )
    assert "lonely.tflite.json" in line


def test_camera_index_that_does_not_exist(int8_model):
    line = one_line_error(run_cli("run", "--source", "9", "--model", str(int8_model), "--headless"))
    assert "camera 9" in line and "SOURCE=" in line


def test_missing_yunet_file(video, int8_model, tmp_path):
    line = one_line_error(
        run_cli(
            "run",
            "--source",
            str(video),
            "--model",
            str(int8_model),
            "--headless",
            "--yunet-model",
            str(tmp_path / "yunet.onnx"),
        )
    )
    assert "yunet.onnx" in line


@pytest.mark.parametrize(
    "flags", [["--detector", "mtcnn"], ["--threads", "0"], ["--detect-every", "x"]]
)
def test_unknown_option_value(video, int8_model, flags):
    line = one_line_error(
        run_cli("run", "--source", str(video), "--model", str(int8_model), *flags)
    )
    assert flags[0] in line


def test_events_file_in_missing_folder(video, int8_model, tmp_path):
    line = one_line_error(
        run_cli(
            "run",
            "--source",
            str(video),
            "--model",
            str(int8_model),
            "--headless",
            "--events",
            str(tmp_path / "nope" / "e.jsonl"),
        )
    )
    assert "--events" in line


def test_checks_reports_what_it_found(int8_model, video):
    proc = run_cli("checks", "--model", str(int8_model), "--source", str(video))
    assert proc.returncode == 0, proc.stderr
    for word in ("interpreter", "threads", "input", "detector", "source", "int8"):
        assert word in proc.stdout


def _start_run(*flags: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "fer_edge.edge", "run", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_sigterm_stops_cleanly_and_every_event_line_is_whole(video, int8_model, tmp_path):
    import signal

    events = tmp_path / "e.jsonl"
    proc = _start_run(
        "--source",
        str(video),
        "--model",
        str(int8_model),
        "--headless",
        "--loop",
        "--events",
        str(events),
    )
    _wait_for(lambda: events.exists() and events.stat().st_size > 20_000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopping" in err and "frames, a face in" in err  # the summary line still runs
    text = events.read_text()
    assert text.endswith("\n")
    assert all(EVENT_KEYS <= set(json.loads(line)) for line in text.splitlines())


def test_mjpeg_preview_serves_jpeg_frames_on_loopback(video, int8_model):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _start_run(
        "--source",
        str(video),
        "--model",
        str(int8_model),
        "--headless",
        "--loop",
        "--preview-port",
        str(port),
    )
    try:

        def fetch():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                    return r.read(400_000)  # several whole frames
            except OSError:
                return None

        _wait_for(lambda: fetch() is not None)
        body = fetch()
        start = body.index(b"\xff\xd8")  # a JPEG's start-of-image marker after the part header
        assert b"Content-Type: image/jpeg" in body[:start]
        end = body.index(b"\r\n--frame", start)
        frame = cv2.imdecode(np.frombuffer(body[start:end], np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (480, 854, 3)  # the whole overlaid frame
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_live_stream_that_drops_is_reopened_with_backoff(video, int8_model, tmp_path):
    """A real network source: our own MJPEG preview, stopped and restarted under a reader."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = (
        "--source",
        str(video),
        "--model",
        str(int8_model),
        "--headless",
        "--loop",
        "--preview-port",
        str(port),
    )
    server = _start_run(*serve)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    _wait_for(listening)  # a stream that is down when the reader starts is a one-line error
    events, log = tmp_path / "live.jsonl", tmp_path / "reader.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with open(log, "w") as log_file:
        reader = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fer_edge.edge",
                "run",
                "--source",
                f"http://127.0.0.1:{port}/",
                "--model",
                str(int8_model),
                "--headless",
                "--events",
                str(events),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            _wait_for(lambda: events.exists() and events.stat().st_size > 2_000, timeout=60)
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
            _wait_for(lambda: "stopped delivering frames; reopening" in log.read_text(), timeout=30)
            before = events.read_text().count("\n")
            server = _start_run(*serve)
            _wait_for(lambda: events.read_text().count("\n") > before + 20, timeout=60)
        finally:
            server.terminate()
            server.wait(timeout=20)
            reader.send_signal(signal.SIGTERM)
            reader.wait(timeout=20)
    assert reader.returncode == 0, log.read_text()


def test_capture_saves_photos_for_stage_two(video, tmp_path):
    proc = run_cli(
        "capture",
        "--source",
        str(video),
        "--label",
        "happy",
        "--count",
        "3",
        "--out",
        str(tmp_path),
        "--countdown",
        "0",
        "--interval",
        "0",
        "--headless",
    )
    assert proc.returncode == 0, proc.stderr
    photos = sorted((tmp_path / "happy").glob("*.jpg"))
    assert len(photos) == 3
    assert cv2.imread(str(photos[0])).shape == (480, 854, 3)  # whole frames: stage 2 crops them
    assert not list((tmp_path / "happy").glob(".*"))  # no temporary files left behind


def test_classify_every_reuses_results_only_on_held_frames(video, int8_model):
    from fer_edge.edge.detectors import make_detector

    pipe = Pipeline(
        make_detector("yunet"),
        Classifier(int8_model),
        PipelineConfig(detect_every=2, classify_every=2),
    )
    with open_source(str(video)) as src:
        results = [pipe.process(f) for _, f in zip(range(10), src.frames())]
    assert all(len(r.faces) == 1 for r in results)
    for r in results:
        classified = r.timings["inference"] > 0
        assert classified == (r.frame.index % 2 == 0)
        if not classified:  # a held frame carries the previous frame's face unchanged
            prev = results[r.frame.index - 1].faces[0]
            assert r.faces[0] is prev
