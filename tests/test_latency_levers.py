"""The throughput levers keep results honest: a batched, zero-copy interpreter call gives the
same probabilities as one call per face; tracked-square detection lands on the full-frame box;
the pipeline's schedule (whole-frame passes, classification of new faces) does what it says."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.crop import crop_face
from fer_edge.edge.detectors import detect_around, make_detector
from fer_edge.edge.pipeline import Pipeline, PipelineConfig
from fer_edge.edge.sources import open_source
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box


@pytest.fixture(scope="module")
def frames(video):
    with open_source(str(video)) as src, contextlib.closing(src.frames()) as it:
        return [f for _, f in zip(range(40), it)]


@pytest.mark.parametrize("model", ["int8_model", "float_model"])
def test_batched_zero_copy_call_equals_one_plain_call_per_face(model, frames, request):
    path = request.getfixturevalue(model)
    plain = Classifier(path, threads=1, batch=False, zero_copy=False)
    fast = Classifier(path, threads=1, batch=True, zero_copy=True)
    det = make_detector("yunet")
    box = det.detect(frames[0])[0]
    # four different real crops: the face and shifted copies of its box
    crops = [
        crop_face(f.image, (box.x + dx, box.y, box.w, box.h), plain.contract)
        for f, dx in zip(frames[::10], (0, 8, -8, 16))
    ]
    one_by_one = np.stack([plain.predict(c) for c in crops])
    batched = fast.predict_batch(crops)
    np.testing.assert_array_equal(batched, one_by_one)  # exactly: same int8 tensor in
    assert batched.dtype == one_by_one.dtype == np.float32  # probabilities, as float32
    np.testing.assert_array_equal(fast.predict(crops[1]), one_by_one[1])
    assert not np.allclose(one_by_one[0], one_by_one[3])  # the crops really differ
    assert fast.predict_batch([]).shape == (0, len(fast.labels))


def test_zero_copy_input_is_the_contract_quantisation(int8_model):
    clf = Classifier(int8_model, zero_copy=True)
    crop = np.arange(48 * 48, dtype=np.int64).reshape(48, 48) % 256
    crop = crop.astype(np.uint8)  # every grey level 0..255
    expected = clf.quantize_input(crop)
    clf._feed(clf._interp, [crop])
    got = clf._interp.get_tensor(clf._in)
    np.testing.assert_array_equal(got, expected)


def test_tracked_square_finds_the_face_where_the_whole_frame_pass_does(frames):
    det = make_detector("yunet")
    prev = det.detect(frames[0])
    for frame in frames[1:20:3]:
        full = det.detect(frame)[0]
        (roi,) = detect_around(det, frame, prev)
        assert roi is not None and roi.iou(full) > 0.6
        prev = [full]
    # a square with no face in it: lost, so the pipeline falls back to the whole frame
    (lost,) = detect_around(det, frames[0], [Box(5, 5, 40, 40)])
    assert lost is None
    # squares that together cover more than the detector's whole copy: one whole-frame pass
    # is cheaper, so there is no tracked-square result at all
    face = prev[0]
    h, w = frames[0].image.shape[:2]
    many = [Box(x, y, face.w, face.h) for x in range(0, w - face.w, w // 3)
            for y in range(0, h - face.h, h // 3)]  # fmt: skip
    assert detect_around(det, frames[0], many) is None
    assert detect_around(det, frames[0], many[:1]) is not None


def test_schedule_of_whole_frame_passes_and_classifications(frames, int8_model):
    pipe = Pipeline(
        make_detector("yunet"),
        Classifier(int8_model),
        PipelineConfig(detect_every=2, classify_every=2, full_detect_every=10),
    )
    results = [pipe.process(f) for f in frames[:40]]
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].track for r in results}) == 1
    # detection on 20 frames: whole frame on frames 0, 10, 20, 30; tracked squares between
    assert pipe.counts == {"full": 4, "roi": 16, "classified": 20}


def test_adaptive_width_uses_a_narrower_copy_between_full_width_passes(frames, int8_model):
    det = make_detector("yunet", width=320)
    widths = []
    original = det.detect

    def spy(frame, width=None):
        widths.append(width)
        return original(frame, width)

    det.detect = spy
    pipe = Pipeline(
        det,
        Classifier(int8_model),
        PipelineConfig(adaptive_width=True, detect_every=1, full_detect_every=0),
    )
    for f in frames[:6]:
        pipe.process(f)
    assert widths[0] is None and widths[4] is None  # every 4th pass: the full --detect_width
    assert all(w is not None and 160 <= w < 320 for w in widths[1:4])


def test_tracker_keeps_probabilities_of_frames_that_were_not_classified():
    tracker = Tracker(alpha=0.5)
    happy = np.array([0, 1.0, 0, 0, 0], np.float32)
    ((tid, p),) = tracker.update([Box(10, 10, 50, 50)], [happy])
    ((tid2, p2),) = tracker.update([Box(14, 12, 50, 50)], [None])  # moved, not classified
    assert tid2 == tid and np.array_equal(p2, happy)
    assert tracker.has_new([Box(300, 300, 50, 50)])
    with pytest.raises(ValueError, match="needs probabilities"):
        tracker.update([Box(300, 300, 50, 50)], [None])


def test_yunet_detects_on_a_copy_of_the_width_asked_for_with_its_own_score(frames):
    """The adaptive pipeline asks YuNet for a narrower copy: detect(frame, width) is
    detect_image on the frame shrunk to that width (its interpolation), mapped back; the
    box carries YuNet's confidence, not a certainty of 1."""
    import cv2

    det = make_detector("yunet", resize="linear")
    frame = frames[0]
    h, w = frame.image.shape[:2]
    found = {}
    for width in (160, 320):
        size = (width, round(h * width / w))
        small = cv2.resize(frame.image, size, interpolation=cv2.INTER_LINEAR)
        found[width] = det.detect(frame, width)
        assert found[width] == [b.scaled(w / width) for b in det.detect_image(small)]
        (face,) = found[width]
        assert 0.5 < face.score < 1.0
    assert found[160] != found[320]
