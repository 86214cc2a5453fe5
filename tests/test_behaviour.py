"""What a user sees, with expected values worked out by hand: how fast a label changes under
the default smoothing, how long a face keeps its track, where detection boxes land, what the
events file holds across restarts, what `undeploy` keeps, and that a missing input fails.

Real parts throughout (the shipped models, the 480p video, YuNet, deploy's own remote.sh);
fast, so all of it is in `make test-fast`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import ROOT, need
from fer_edge.edge.detectors import YuNetDetector
from fer_edge.edge.pipeline import Pipeline, PipelineConfig
from fer_edge.edge.sinks import EventWriter
from fer_edge.edge.sources import open_source
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box, Face, Frame, FrameResult

LABELS = ("neutral", "happy", "sad", "angry", "surprise")
NEUTRAL = np.array([1, 0, 0, 0, 0], np.float32)
HAPPY = np.array([0, 1, 0, 0, 0], np.float32)


@pytest.fixture(scope="module")
def frames(video):
    """The 480p video's first 24 frames (one face, the woman, in all of them)."""
    with open_source(str(video)) as src:
        return [f for _, f in zip(range(24), src.frames())]


@pytest.fixture(scope="module")
def recognizer(int8_model):
    from fer_edge.edge.recognizer import EmotionRecognizer

    with EmotionRecognizer(int8_model) as rec:
        yield rec


# --- smoothing and tracking -------------------------------------------------------------------


def test_a_new_label_shows_on_the_second_frame_with_the_default_smoothing(recognizer):
    # Defaults: alpha 0.4 per frame, classify every 2 frames, so each classification weighs
    # 1 - 0.6^2 = 0.64. A face that turns from neutral to happy (one-hot outputs):
    #   classify every frame, alpha 0.4:  happy 0.40 (neutral 0.60) -> 0.64 (0.36): frame 2
    #   classify every 2nd, alpha 0.64:   happy 0.64 at the first classification, frame 2
    pipe = recognizer.pipeline()
    assert pipe.config.smoothing and pipe.config.classify_every == 2
    assert pipe.tracker.alpha == pytest.approx(0.64)
    every = Tracker(alpha=0.4)
    every.update([Box(0, 0, 50, 50)], [NEUTRAL])
    shown = [every.update([Box(0, 0, 50, 50)], [HAPPY])[0][1] for _ in range(2)]
    np.testing.assert_allclose([s[1] for s in shown], [0.4, 0.64], atol=1e-6)
    assert [int(np.argmax(s)) for s in shown] == [0, 1]
    halved = Tracker(alpha=pipe.tracker.alpha)
    halved.update([Box(0, 0, 50, 50)], [NEUTRAL])
    ((_, probs),) = halved.update([Box(0, 0, 50, 50)], [HAPPY])
    np.testing.assert_allclose(probs, [0.36, 0.64, 0, 0, 0], atol=1e-6)
    # smoothing off: the raw output at once
    assert recognizer.pipeline(smoothing=False).tracker.alpha == 1.0
    every_frame = PipelineConfig(classify_every=1)
    assert Pipeline(recognizer.detector, recognizer.classifier, every_frame).tracker.alpha == 0.4


def test_default_pipeline_smooths_the_real_models_output(recognizer, frames):
    """On the video, each face's shown probabilities follow p = 0.64 raw + 0.36 previous on
    frames that were classified, and stay as they were on frames that were not."""
    pipe = recognizer.pipeline()
    previous = None
    classified = smoothed_away = 0
    for frame in frames:
        (face,) = pipe.process(frame).faces
        if previous is None:
            np.testing.assert_array_equal(face.probs, face.raw_probs)  # a new track: raw
        elif frame.index % 2 == 0:
            expected = 0.64 * face.raw_probs + 0.36 * previous
            np.testing.assert_allclose(face.probs, expected, atol=1e-6)
            classified += 1
            smoothed_away += not np.allclose(face.probs, face.raw_probs, atol=1e-3)
        else:
            np.testing.assert_array_equal(face.probs, previous)  # held between classifications
        assert face.track == 0
        previous = face.probs
    assert classified == 11 and smoothed_away >= 1


def test_a_face_keeps_its_track_through_five_missed_frames_not_six():
    tracker = Tracker()  # max_missed 5
    box, other = Box(100, 100, 60, 60), Box(400, 100, 60, 60)
    assert tracker.update([box], [NEUTRAL])[0][0] == 0  # a new track ...
    for _ in range(5):
        assert tracker.update([], []) == []
    assert tracker.update([box], [NEUTRAL])[0][0] == 0  # ... survives 5 misses too
    for _ in range(5):
        assert tracker.update([], []) == []
    assert tracker.update([box], [NEUTRAL])[0][0] == 0  # back after 5 misses: same track
    # unseen for 6 frames while another face arrives (id 1) and stays: the first one is gone
    for _ in range(6):
        assert tracker.update([other], [HAPPY])[0][0] == 1
    assert tracker.update([box], [NEUTRAL])[0][0] == 2  # a new face, a new id
    assert tracker.update([other], [HAPPY])[0][0] == 1  # the other kept its own


def test_each_box_takes_the_best_track_still_free():
    # Tracks 0 at x = 0 and 1 at x = 40 (100 px squares). The left box overlaps track 0 most
    # and track 1 next; the right box overlaps only track 1, less than the left box does.
    # In order of IoU: left -> 0; (left, 1) skipped, left is taken; right -> 1.
    tracker = Tracker()
    tracker.update([Box(0, 0, 100, 100), Box(40, 0, 100, 100)], [NEUTRAL, HAPPY])
    left, right = Box(2, 0, 100, 100), Box(85, 0, 100, 100)
    assert left.iou(Box(0, 0, 100, 100)) == pytest.approx(98 / 102)
    assert left.iou(Box(40, 0, 100, 100)) == pytest.approx(62 / 138)  # 0.449
    assert right.iou(Box(40, 0, 100, 100)) == pytest.approx(55 / 145)  # 0.379
    assert [tid for tid, _ in tracker.update([left, right], [NEUTRAL, HAPPY])] == [0, 1]


def test_two_boxes_on_one_track_the_closer_continues_it_the_other_is_a_new_face():
    # one track at x = 0; boxes at x = 5 (IoU 95/105) and x = 20 (IoU 80/120): both continue
    # it by IoU alone, but a track goes to one box: the closer; the other face is new (id 1)
    tracker = Tracker()
    tracker.update([Box(0, 0, 100, 100)], [NEUTRAL])
    near, far = Box(5, 0, 100, 100), Box(20, 0, 100, 100)
    assert tracker.assign([far, near]) == [None, 0]
    assert [tid for tid, _ in tracker.update([far, near], [HAPPY, HAPPY])] == [1, 0]


def test_an_iou_exactly_at_the_threshold_continues_the_track():
    # 13 px boxes 7 px apart: IoU = (13 - 7) / (13 + 7) = 0.3, the threshold itself
    assert Box(0, 0, 13, 13).iou(Box(7, 0, 13, 13)) == 0.3
    tracker = Tracker(iou_threshold=0.3)
    tracker.update([Box(0, 0, 13, 13)], [NEUTRAL])
    assert tracker.update([Box(7, 0, 13, 13)], [NEUTRAL])[0][0] == 0


def test_a_new_face_without_probabilities_is_refused_by_its_box():
    with pytest.raises(ValueError, match=r"a new face at \(1, 2, 30, 40\) needs probabilities"):
        Tracker().update([Box(1, 2, 30, 40)], [None])


def test_a_box_moved_past_the_iou_threshold_is_a_new_face():
    # IoU of 60x60 boxes shifted by d: (60 - d) * 60 / (7200 - (60 - d) * 60)
    # d = 27: 1980 / 5220 = 0.379 (same face); d = 33: 1620 / 5580 = 0.290 (< 0.3: new face)
    tracker = Tracker()
    tracker.update([Box(0, 0, 60, 60)], [NEUTRAL])
    assert Box(0, 0, 60, 60).iou(Box(27, 0, 60, 60)) == pytest.approx(1980 / 5220)
    assert tracker.update([Box(27, 0, 60, 60)], [NEUTRAL])[0][0] == 0
    assert tracker.update([Box(60, 0, 60, 60)], [NEUTRAL])[0][0] == 1  # 33 px from 27


# --- detection boxes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_frame(frames):
    return frames[0].image


def test_detector_boxes_are_in_the_frames_pixels(face_frame):
    """Moved by whole 32 px cells (YuNet's stride), the picture gives the same box moved by
    exactly that much: x with x, y with y, width and height unchanged."""
    yunet = YuNetDetector(width=0)
    (box,) = yunet.detect_image(face_frame)
    assert 0.6 <= box.score <= 1.0 and 100 < box.w < box.h < 300  # a portrait face
    canvas = np.full((480 + 64, 854 + 96, 3), 255, np.uint8)
    canvas[32:512, 64:918] = face_frame  # 64 px right, 32 px down
    (moved,) = yunet.detect_image(canvas)
    assert moved.as_tuple() == (box.x + 64, box.y + 32, box.w, box.h)


def test_boxes_found_on_a_smaller_copy_are_scaled_back(face_frame):
    big = cv2.resize(face_frame, (1708, 960), interpolation=cv2.INTER_LINEAR)
    half = cv2.resize(big, (854, 480), interpolation=cv2.INTER_AREA)
    yunet = YuNetDetector(width=854, resize="area")
    (small,) = yunet.detect_image(half)
    x, y, w, h = small.as_tuple()
    (box,) = yunet.detect(Frame(big, 0, 0.0))  # 1708 wide, found at 854: x2
    assert box.as_tuple() == (2 * x, 2 * y, 2 * w, 2 * h)
    # a camera's low-resolution stream at a quarter of the width: x4
    quarter = cv2.resize(big, (427, 240), interpolation=cv2.INTER_AREA)
    (q,) = yunet.detect_image(quarter)
    (box,) = yunet.detect(Frame(big, 0, 0.0, small=quarter, small_scale=0.25))
    assert box.as_tuple() == (4 * q.x, 4 * q.y, 4 * q.w, 4 * q.h)
    # a frame no wider than the detector's width is used as it is
    (same,) = yunet.detect(Frame(half, 0, 0.0))
    assert same.as_tuple() == small.as_tuple()


def test_box_scaling_rounds_each_field():
    assert Box(10, 21, 31, 40, 0.5).scaled(2.5) == Box(25, 52, 78, 100, 0.5)
    assert Box(7, 9, 33, 35).scaled(0.25) == Box(2, 2, 8, 9)


# --- the events file ---------------------------------------------------------------------------


def result(index: int, t: float, faces) -> FrameResult:
    frame = Frame(np.zeros((4, 4, 3), np.uint8), index, t)
    return FrameResult(frame, tuple(faces), {})


def test_events_append_across_restarts_one_json_object_per_line(tmp_path):
    path = tmp_path / "events.jsonl"
    shown = np.array([0.1, 0.2, 0.5, 0.15, 0.05], np.float32)  # smoothed: sad
    raw = np.array([0.9, 0.025, 0.025, 0.025, 0.025], np.float32)  # this frame alone: neutral
    face_a = Face(Box(10, 20, 30, 40), 3, shown, raw)
    face_b = Face(Box(50, 60, 70, 80), 4, HAPPY, HAPPY)
    with EventWriter(str(path), LABELS) as events:
        events.write(result(0, 0.0, [face_a, face_b]))
        events.write(result(1, 1 / 30, []))  # no face: no line
    with EventWriter(str(path), LABELS) as events:  # a restart appends
        events.write(result(7, 0.123456, [face_a]))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and path.read_text().endswith("\n")
    rows = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in rows)
    assert [(r["frame"], r["track"], r["label"]) for r in rows] == [
        (0, 3, "sad"), (0, 4, "happy"), (7, 3, "sad"),
    ]  # fmt: skip
    first = rows[0]
    assert first["box"] == [10, 20, 30, 40] and first["score"] == 0.5 and first["t"] == 0.0
    assert first["probs"] == {"neutral": 0.1, "happy": 0.2, "sad": 0.5, "angry": 0.15,
                              "surprise": 0.05}  # fmt: skip
    assert rows[2]["t"] == 0.1235  # seconds, four decimals


@pytest.fixture
def fdatasyncs(monkeypatch):
    """The file descriptors os.fdatasync is called on, in order (the real call still runs)."""
    calls, real = [], os.fdatasync

    def spy(fd):
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", spy)
    return calls


def test_events_reach_the_disk_once_the_oldest_unsynced_line_is_a_second_old(tmp_path, fdatasyncs):
    from fer_edge.edge.fileio import LineAppender

    out = LineAppender(tmp_path / "e.jsonl", sync_every=1.0)
    t0 = time.monotonic()
    out.append(b"a\n")
    out.append(b"b\n")
    assert fdatasyncs == []  # both younger than a second
    out.tick(t0 + 0.5)
    assert fdatasyncs == []
    out.tick(time.monotonic() + 1.0)  # the oldest ("a") is now a second old: one sync for both
    assert len(fdatasyncs) == 1
    out.tick(time.monotonic() + 60)  # nothing written since: nothing to sync
    assert len(fdatasyncs) == 1
    out.append(b"c\n")
    out.close()  # what is still unsynced goes to disk at close
    assert len(fdatasyncs) == 2
    assert (tmp_path / "e.jsonl").read_bytes() == b"a\nb\nc\n"


@pytest.mark.parametrize("every, syncs", [(0.0, 3), (None, 0)])
def test_events_sync_0_syncs_every_write_and_off_never(tmp_path, fdatasyncs, every, syncs):
    from fer_edge.edge.fileio import LineAppender

    out = LineAppender(tmp_path / "e.jsonl", sync_every=every)
    for line in (b"a\n", b"b\n", b"c\n"):
        out.append(line)
    out.close()
    assert len(fdatasyncs) == syncs


def test_frames_without_a_face_still_sync_the_last_lines(tmp_path, fdatasyncs):
    face = Face(Box(10, 20, 30, 40), 0, HAPPY, HAPPY)
    with EventWriter(str(tmp_path / "e.jsonl"), LABELS, sync_every=0.05) as events:
        events.write(result(0, 0.0, [face]))
        assert fdatasyncs == []
        time.sleep(0.06)
        events.write(result(1, 1 / 30, []))  # the face left; its line is synced anyway
        assert len(fdatasyncs) == 1


def test_events_sync_flag(video):
    from fer_edge.edge.cli import build_parser

    def parsed(*flags):
        return build_parser().parse_args(["run", "--source", str(video), *flags]).events_sync

    assert parsed() == 1.0  # the default: a power cut takes at most about a second
    assert parsed("--events-sync", "0") == 0.0
    assert parsed("--events-sync", "off") is None
    assert parsed("--events-sync", "2.5") == 2.5
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(video),
         "--events-sync", "-1"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--events-sync: give seconds (0 = every frame) or off, got -1" in proc.stderr


# --- missing inputs ----------------------------------------------------------------------------


def test_a_missing_data_file_fails_and_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "archive.zip"
    with pytest.raises(pytest.fail.Exception, match="nowhere/archive.zip"):
        need(missing)
    assert need(ROOT / "pyproject.toml") == ROOT / "pyproject.toml"


# --- deploy: what `make undeploy` runs on the Pi -------------------------------------------------

FAKE_SSH = """#!/bin/sh
# ssh stand-in: records its arguments, then runs the remote command here (the last argument)
printf '%s\\0' "$@" > "$SSH_ARGV"
for last in "$@"; do :; done
exec sh -c "$last"
"""


@pytest.fixture
def staged_pi(tmp_path, int8_model):
    """A deployed folder as `make deploy` leaves it on the Pi, and an `ssh` that runs here."""
    from deploy.stage import StageConfig, build, resolve_yunet

    pi_dir = tmp_path / "pi" / "fer-edge"
    config = StageConfig(int8_model, resolve_yunet(None), "picamera", str(pi_dir))
    # Both layouts a deploy has left: the release at the top of PI_DIR, and releases/ID with
    # a `current` link (the undeploy command finds its remote.sh in either).
    build(config, pi_dir / "releases" / "r1")
    (pi_dir / "current").symlink_to("releases/r1")
    build(config, pi_dir)
    (pi_dir / "logs").mkdir(exist_ok=True)
    (pi_dir / "logs" / "events.jsonl").write_text('{"frame":0}\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "SSH_ARGV": str(tmp_path / "argv"), "HOME": str(tmp_path / "home")}  # fmt: skip
    return pi_dir, env, tmp_path / "argv"


def deploy_cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_undeploy_keeps_the_pi_folder_unless_purge(staged_pi):
    pi_dir, env, argv_file = staged_pi
    proc = deploy_cli(env, "undeploy", "--pi", "pi@raspberrypi.local", "--pi_dir", str(pi_dir),
                      "--ssh_opts", "-p 2222")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = argv_file.read_text().split("\0")[:-1]
    # the user's options first (ssh keeps the first value), then ours, the target, the command
    assert argv[:2] == ["-p", "2222"] and "BatchMode=yes" in argv
    assert argv[-2] == "pi@raspberrypi.local" and argv[-1].startswith("sh -c ")
    assert "remote.sh undeploy" in argv[-1] and "--purge" not in argv[-1]
    assert "kept" in proc.stdout
    assert (pi_dir / "logs" / "events.jsonl").read_text() == '{"frame":0}\n'  # logs kept

    proc = deploy_cli(env, "undeploy", "--pi", "pi@raspberrypi.local", "--pi_dir", str(pi_dir),
                      "--purge")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "remote.sh undeploy --purge" in argv_file.read_text()
    assert not pi_dir.exists() and pi_dir.parent.is_dir()


def test_undeploy_where_nothing_was_deployed_says_so(staged_pi, tmp_path):
    _, env, _ = staged_pi
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = deploy_cli(env, "undeploy", "--pi", "pi@host", "--pi_dir", str(empty), "--purge")
    assert proc.returncode == 1 and "nothing deployed" in proc.stderr + proc.stdout
    assert empty.is_dir()  # --purge never removes a folder that holds no deploy


# --- the conversion gate -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keras_right, lite_right, agree, problem",
    [
        (500, 500, 1000, ""),
        (500, 490, 950, ""),  # 1.00 point below, 95.0% agreement: both limits are inclusive
        (500, 489, 950, "accuracy 1.10 points below Keras (> 1.0)"),
        (500, 450, 960, "accuracy 5.00 points below Keras (> 1.0)"),
        (450, 500, 960, ""),  # the converted model better than Keras: a negative drop passes
        (500, 500, 949, "94.9% top-1 agreement with Keras (< 95%)"),
        (500, 400, 200, "20.0% top-1 agreement with Keras (< 95%)"),  # agreement named first
    ],
)
def test_conversion_gate_on_hand_made_counts(keras_right, lite_right, agree, problem):
    from fer_edge.convert.tflite import ConvertConfig, gate_problem

    cfg = ConvertConfig()  # min_agreement 0.95, max_drop 0.01 on 1,000 check faces here
    assert (cfg.min_agreement, cfg.max_drop) == (0.95, 0.01)
    drop = keras_right / 1000 - lite_right / 1000  # how fer-edge convert computes it
    assert gate_problem(agree / 1000, drop, cfg) == problem


def test_conversion_gate_uses_the_limits_it_is_given():
    from fer_edge.convert.tflite import ConvertConfig, gate_problem

    loose = ConvertConfig(min_agreement=0.9, max_drop=0.02)
    assert gate_problem(0.91, 0.015, loose) == ""
    assert gate_problem(0.89, 0.0, loose).startswith("89.0% top-1 agreement")
    assert gate_problem(0.99, 0.021, loose) == "accuracy 2.10 points below Keras (> 2.0)"
    assert gate_problem(1.0, 0.0, ConvertConfig(max_drop=-0.01)) != ""  # must beat Keras
    strict = ConvertConfig(min_agreement=0.975, max_drop=0.2)
    assert gate_problem(0.97, 0.0, strict) == "97.0% top-1 agreement with Keras (< 98%)"
    assert gate_problem(0.98, 0.25, strict) == "accuracy 25.00 points below Keras (> 20.0)"


def test_a_stratified_subset_keeps_each_class_share_without_repeats():
    from fer_edge.evaluation.data import stratified_subset

    y = np.repeat(np.arange(5), [500, 300, 120, 60, 20])  # 1,000 labels
    idx = stratified_subset(y, 100, 7)
    assert len(set(idx.tolist())) == len(idx)
    assert np.bincount(y[idx], minlength=5).tolist() == [50, 30, 12, 6, 2]
    # a class too small to round to one face still gets one
    assert np.bincount(y[stratified_subset(y, 10, 7)], minlength=5).tolist() == [5, 3, 1, 1, 1]
    # same seed, same faces (the training holdout depends on it)
    assert np.array_equal(idx, stratified_subset(y, 100, 7))
