"""Live sources and frame age: a real MJPEG producer on 127.0.0.1, the runtime's stream reader,
capture stamps in events, frames dropped by the latest-frame reader, and the bench's latency
mode end to end. No timing is asserted beyond "an age is positive and below a second"."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from conftest import ROOT
from fer_edge.benchmarks.cli import main
from fer_edge.benchmarks.live import Producer, encode_frames
from fer_edge.edge.sinks import face_events
from fer_edge.edge.sources import open_source
from fer_edge.edge.types import Box, Face, FrameResult


@contextlib.contextmanager
def producer(video, fps: float, frames: int = 20, seconds: float = 30.0):
    prod = Producer(encode_frames(str(video), frames, quality=70), fps, seconds=seconds)
    thread = threading.Thread(target=prod.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{prod.port}/"
    finally:
        prod._stop.set()
        thread.join(timeout=10)
        prod.httpd.server_close()


def test_stream_frames_carry_the_producers_capture_stamp(video):
    with producer(video, fps=30) as url, open_source(url) as src:
        assert src.name == "stream" and src.live
        with contextlib.closing(src.frames()) as it:
            frames = [f for _, f in zip(range(8), it)]
    now = time.time()
    assert [f.index for f in frames] == list(range(8))
    assert frames[0].image.shape == (480, 854, 3)
    stamps = [f.t_capture for f in frames]
    assert all(s is not None and 0 < now - s < 5.0 for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 8  # one stamp per captured frame


def test_a_slow_consumer_drops_frames_and_says_how_many(video):
    with producer(video, fps=60) as url, open_source(url) as src:
        with contextlib.closing(src.frames()) as it:
            got = []
            for _, frame in zip(range(6), it):
                got.append(frame)
                time.sleep(0.1)  # a pipeline slower than the camera: ~5 frames arrive meanwhile
    dropped = sum(f.dropped_before for f in got[1:])
    assert dropped >= 10  # ~25 frames arrived while 5 were taken
    # newest frame only: the frames taken span the consumer's ~0.5 s, not five camera frames
    # (~0.08 s, as a queue would give); the span, not each gap, so that a loaded machine that
    # delays the reader thread by a frame or two does not fail it
    assert got[-1].t_capture - got[0].t_capture > 0.25


def test_events_carry_t_capture_and_stay_backward_compatible(video):
    import numpy as np

    with open_source(str(video)) as src, contextlib.closing(src.frames()) as it:
        frame = next(it)
    assert frame.t_capture is not None and abs(time.time() - frame.t_capture) < 10
    probs = np.array([0.1, 0.6, 0.1, 0.1, 0.1], np.float32)
    face = Face(Box(1, 2, 30, 40), 0, probs, probs)
    labels = ("neutral", "happy", "sad", "angry", "surprise")
    (event,) = face_events(FrameResult(frame, (face,), {}), labels)
    assert {"frame", "t", "track", "box", "label", "score", "probs"} < set(event)
    assert event["t_capture"] == round(frame.t_capture, 6) and event["label"] == "happy"
    from dataclasses import replace

    (old,) = face_events(FrameResult(replace(frame, t_capture=None), (face,), {}), labels)
    assert "t_capture" not in old  # a source without stamps writes the old schema


def test_a_url_that_is_not_a_stream_is_one_clear_error():
    import socket

    from fer_edge.edge.errors import SourceError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError, match=f"127.0.0.1:{port}"):
        open_source(f"http://127.0.0.1:{port}/")


# slow tier: 6-10 s end to end, and `make test-fast` must stay under 3 minutes
@pytest.mark.slow
def test_bench_latency_mode_on_a_live_stand_in_camera(int8_model, video, tmp_path):
    rc = main(
        [
            "bench",
            "--modes",
            "latency",
            "--source",
            str(video),
            "--model",
            str(int8_model),
            "--live-configs",
            "default",
            "--live-fps",
            "30,60",
            "--live-seconds",
            "2",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    (folder,) = tmp_path.iterdir()
    result = json.loads((folder / "latency.json").read_text())
    assert set(result["runs"]) == {"default@30", "default@60"}
    for run in result["runs"].values():
        age = run["age"]
        assert age["n"] == run["frames"] > 10
        # a clock mix-up (monotonic vs epoch, or producer vs reader) would be far off
        assert 0 < age["p50_ms"] <= age["p90_ms"] <= age["p99_ms"] < 10_000
        assert run["wait"]["p50_ms"] < age["p50_ms"]  # age = wait + work
        # Every frame offered in the timed window is counted once: processed, dropped by the
        # latest-frame reader, or not delivered; the fraction lost is the last two over all.
        offered = run["seconds"] * run["fps_offered"]  # seconds are rounded to 0.01
        accounted = run["frames"] + run["dropped_by_reader"] + run["not_delivered"]
        assert run["dropped_by_reader"] >= 0 and run["not_delivered"] >= 0
        assert accounted >= offered - 1
        if run["not_delivered"]:
            assert abs(accounted - offered) <= 1
        lost = max(0.0, offered - run["frames"]) / offered
        assert abs(run["dropped_fraction"] - lost) <= 1.5 / offered
        assert abs(run["fps"] - run["frames"] / run["seconds"]) <= 0.01 * run["fps"]
        assert run["face_fraction"] > 0.9
    md = (folder / "latency.md").read_text()
    assert "| default@30 |" in md and "age p99" in md


def test_producer_module_runs_as_a_script(video):
    """`python -m benchmarks.live` prints its URL, then serves until its time is up."""
    import subprocess
    import sys
    import urllib.request

    proc = subprocess.Popen(
        [sys.executable, "-m", "fer_edge.benchmarks.live", "--video", str(video), "--frames", "5"]
        + ["--seconds", "20"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "listening"
        with urllib.request.urlopen(line[1], timeout=10) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = r.read(300)
        assert b"X-Timestamp: " in head and b"X-Frame: " in head
    finally:
        proc.terminate()
        proc.wait(timeout=10)
