"""The pipeline's schedule and its box rules, counted exactly on a simple world (bright
squares on black, tests/scenes.py) with the shipped int8 classifier: which frames get a
whole-frame pass, which a tracked-square search, which are classified, how wide an adaptive
pass is, and which faces are kept. YuNet on the real video: tests/test_latency_levers.py."""

from __future__ import annotations

import cv2
import pytest
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.pipeline import Pipeline, PipelineConfig, _moved, apply_thread_plan
from fer_edge.edge.types import Box
from scenes import BrightSquares, frame_with

FACE = (200, 120, 100, 100)


@pytest.fixture(scope="module")
def classifier(int8_model):
    return Classifier(int8_model)


def run(classifier, frames, width=320, **config):
    det = BrightSquares(width)
    pipe = Pipeline(det, classifier, PipelineConfig(**config))
    results = [pipe.process(f) for f in frames]
    return pipe, det, results


def test_a_square_search_keeps_the_last_whole_pass_size_centred_where_the_face_is_now():
    old, new = Box(10, 20, 40, 50), Box(100, 100, 20, 31, 0.7)
    # new's centre (110, 115.5); old's 40 x 50 around it
    assert _moved(old, new) == Box(90, 90, 40, 50, 0.7)
    assert _moved(Box(0, 0, 41, 41), Box(50, 50, 10, 10, 0.5)) == Box(34, 34, 41, 41, 0.5)


@pytest.mark.parametrize(
    "full_every, detect_every, whole, squares",
    [(3, 1, [0, 3, 6], [1, 2, 4, 5]), (1, 1, [0, 1, 2, 3, 4, 5, 6], []),
     (0, 1, [0, 1, 2, 3, 4, 5, 6], []), (4, 2, [0, 4], [2, 6])],
)  # fmt: skip
def test_whole_frame_passes_every_n_frames_and_squares_between(
    classifier, full_every, detect_every, whole, squares
):
    frames = [frame_with(FACE, index=i) for i in range(7)]
    pipe, det, results = run(classifier, frames, full_detect_every=full_every,
                             detect_every=detect_every, classify_every=1)  # fmt: skip
    assert len(det.full) == len(whole) and len(det.seen) == len(squares)
    assert pipe.counts == {"full": len(whole), "roi": len(squares), "classified": 7}
    assert all(len(r.faces) == 1 and r.faces[0].box.as_tuple() == FACE for r in results)
    assert len({r.faces[0].track for r in results}) == 1


def test_the_square_is_roi_size_for_a_small_face(classifier):
    # a 40-px face is 20 px in the detector's copy: the square is roi_size (2 x 20 is less)
    frames = [frame_with((300, 200, 40, 40), index=i) for i in range(2)]
    for size in (64, 96):
        _, det, results = run(classifier, frames, roi_size=size, detect_every=1)
        assert [s.shape for s in det.seen] == [(size, size, 3)]
        assert results[1].faces[0].box.as_tuple() == (300, 200, 40, 40)


def test_a_face_lost_by_its_square_gets_a_whole_frame_pass_at_once(classifier):
    # the face jumps across the frame on frame 2: its square is empty, so frame 2 searches
    # the whole frame, and the count of frames to the next whole pass starts again there
    frames = [frame_with(FACE if i < 2 else (420, 300, 100, 100), index=i) for i in range(5)]
    pipe, det, results = run(classifier, frames, full_detect_every=3, detect_every=1)
    assert pipe.counts["full"] == 2 and pipe.counts["roi"] == 3  # whole: 0, 2; squares: 1, 3, 4
    assert len(det.seen) == 4  # frame 2's empty square, then 3 and 4
    assert results[2].faces[0].box.as_tuple() == (420, 300, 100, 100)
    assert pipe.process(frame_with((420, 300, 100, 100), index=5)).faces  # frame 5: whole
    assert pipe.counts["full"] == 3


def test_held_boxes_and_classification_every_n_frames(classifier):
    frames = [frame_with(FACE, index=i) for i in range(8)]
    pipe, det, results = run(classifier, frames, full_detect_every=0, detect_every=2,
                             classify_every=4)  # fmt: skip
    # detection on even frames; classification on frames 0 and 4 only (no new face after 0)
    assert len(det.full) == 4 and pipe.counts["classified"] == 2
    for i in (1, 3, 5, 7):  # held: the previous frame's faces as they were, no work
        assert results[i].faces is results[i - 1].faces
        assert results[i].timings["inference"] == results[i].timings["preprocess"] == 0.0
    # a new face is classified at once, off the schedule
    pipe.process(frame_with(FACE, (420, 300, 80, 80), index=9))  # odd: not a detection frame
    pipe.process(frame_with(FACE, (420, 300, 80, 80), index=10))  # detected, new: classified
    assert pipe.counts["classified"] == 3


def test_adaptive_passes_are_just_wide_enough_for_the_smallest_face(classifier):
    # 640-px frames; the smallest face 100 px: 640 x 24 / 100 = 153.6 -> 160 (multiple of 32,
    # at least 160); every 4th whole pass at the detector's own width (None)
    frames = [frame_with(FACE, (420, 300, 120, 120), index=i) for i in range(9)]
    _, det, _ = run(classifier, frames, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, 160, 160, 160, None, 160, 160, 160, None]
    # a 40-px face: 640 x 24 / 40 = 384 -> capped at the detector's 320
    frames = [frame_with((300, 200, 40, 40), index=i) for i in range(3)]
    _, det, _ = run(classifier, frames, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, 320, 320]
    # a 60-px face: 256 exactly
    frames = [frame_with((300, 200, 60, 60), index=i) for i in range(2)]
    _, det, _ = run(classifier, frames, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, 256]
    # a 70-px face: 640 x 24 / 70 = 219.4 -> 224, the nearest multiple of 32
    frames = [frame_with((300, 200, 70, 70), index=i) for i in range(2)]
    _, det, _ = run(classifier, frames, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, 224]
    # a 50-px face: 640 x 24 / 50 = 307.2 -> 320 (9.6 multiples of 32, rounded to 10)
    frames = [frame_with((300, 200, 50, 50), index=i) for i in range(2)]
    _, det, _ = run(classifier, frames, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, 320]
    # a detector that sees the whole frame (width 0) is never narrowed
    _, det, _ = run(classifier, frames, 0, adaptive_width=True, full_detect_every=0, detect_every=1)
    assert det.full == [None, None]
    # off (the default): always the detector's width
    _, det, _ = run(classifier, frames, full_detect_every=0, detect_every=1)
    assert det.full == [None, None]


def test_faces_too_small_are_skipped_and_only_the_largest_max_faces_kept(classifier):
    boxes = [(10, 10, 30, 30), (100, 10, 60, 60), (200, 10, 44, 44), (300, 10, 22, 22),
             (400, 10, 24, 24)]  # fmt: skip
    pipe, _, (result,) = run(classifier, [frame_with(*boxes)], max_faces=2, full_detect_every=0)
    assert [f.box.as_tuple() for f in result.faces] == [(100, 10, 60, 60), (200, 10, 44, 44)]
    _, _, (result,) = run(classifier, [frame_with(*boxes)], full_detect_every=0)
    # 22 px is under min_face (24): skipped; 24 px kept; the rest largest first
    assert [f.box.w for f in result.faces] == [60, 44, 30, 24]


def test_while_no_face_is_tracked_every_detection_searches_the_whole_frame(classifier):
    """full_detect_every 10 squares only around tracked faces: a face that walks into an
    empty scene is found by the next detection, not ten frames later."""
    frames = [frame_with(index=0), frame_with(FACE, index=1), frame_with(FACE, index=2)]
    pipe, det, results = run(classifier, frames, full_detect_every=10, detect_every=1)
    assert [len(r.faces) for r in results] == [0, 1, 1]
    assert det.full == [None, None] and pipe.counts == {"full": 2, "roi": 1, "classified": 2}


def test_the_thread_plan_sets_opencvs_threads_and_zero_leaves_them():
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        assert apply_thread_plan(1) == 2 and cv2.getNumThreads() == 1
        assert apply_thread_plan(0) == 1 and cv2.getNumThreads() == 1
        assert apply_thread_plan(2) == 1 and cv2.getNumThreads() == 2
        assert apply_thread_plan(0) == 2 and cv2.getNumThreads() == 2  # 0 leaves them
    finally:
        cv2.setNumThreads(before)


def test_stage_timings_are_each_positive_and_add_up_to_no_more_than_the_frame_took(classifier):
    """The per-stage seconds the benchmark and --stats report: each one >= 0, together no
    more than process() took; a frame that neither detects nor classifies (frame 1 here:
    boxes held, classification every 2nd frame) spends nothing past detection."""
    import time

    config = PipelineConfig(detect_every=2, full_detect_every=0)
    pipe = Pipeline(BrightSquares(), classifier, config)
    for i in range(4):
        t0 = time.perf_counter()
        timings = pipe.process(frame_with(FACE, index=i)).timings
        took = time.perf_counter() - t0
        assert set(timings) == {"detect", "preprocess", "inference", "smoothing"}
        assert min(timings.values()) >= 0 and sum(timings.values()) <= took, (i, timings, took)
        if i == 1:
            assert timings["preprocess"] == timings["inference"] == timings["smoothing"] == 0.0
        if i in (0, 2):
            assert timings["inference"] > 0
