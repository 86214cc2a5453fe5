"""Properties that must hold for every input, checked with Hypothesis against independent NumPy
references (tests/reference.py): the crop at any box, the tracker's identities, the metrics,
and int8 quantisation. Fast (no video, no training): part of `make test-fast`."""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import pytest
from fer_edge.edge.contract import Contract
from fer_edge.edge.crop import crop_face, square_box
from fer_edge.edge.tracking import Tracker
from fer_edge.edge.types import Box
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from reference import reference_crop, reference_gray, reference_report, reference_square

# deadline off: the machine is shared with training, so one example may take a while
# Hypothesis keeps caches (parsed constants) in .hypothesis/ of the working folder: not in
# the checkout
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "fer-edge-hypothesis"))
# Under mutation testing (benchmarks/mutation.py sets FER_EDGE_HYPOTHESIS=mutation) a failing
# example is reported as found: shrinking it would take longer than mutmut's timeout.
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile(os.environ.get("FER_EDGE_HYPOTHESIS", "default"))
# database off: no .hypothesis/ folder left in the checkout
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def noise(seed: int, shape) -> np.ndarray:
    """Random pixels: a crop one pixel off then differs from the reference by far more than 1."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@st.composite
def frames_and_boxes(draw):
    """A frame and a face box anywhere: inside, across any border or corner, or larger than the
    frame, with a margin and a model input size."""
    h, w = draw(st.integers(8, 120)), draw(st.integers(8, 120))
    bw, bh = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    x = draw(st.integers(-bw - 40, w + 40))
    y = draw(st.integers(-bh - 40, h + 40))
    margin = draw(st.sampled_from([0.0, 0.1, 0.25]) | st.floats(0.0, 0.5))
    size = draw(st.sampled_from([48, 24, 64]))
    return (h, w), (x, y, bw, bh), margin, size, draw(st.integers(0, 2**32 - 1))


@SETTINGS
@given(frames_and_boxes())
# always tried (also under mutation testing, where a run must not depend on luck): a face
# enlarged to the input, one cut by the bottom-right corner, one wholly above the frame
@example(((60, 80), (20, 10, 20, 20), 0.1, 48, 1))
@example(((60, 80), (70, 50, 40, 40), 0.1, 48, 2))
@example(((8, 8), (0, -2, 1, 1), 0.0, 48, 3))
def test_crop_at_any_box_equals_the_reference(case):
    (h, w), box, margin, size, seed = case
    img = noise(seed, (h, w))
    x0, y0, side = reference_square(box, margin)
    assert square_box(box, margin) == (x0, y0, side)
    c = Contract(input_size=size, margin=margin)
    if x0 + side <= 0 or y0 + side <= 0 or x0 >= w or y0 >= h:  # the square misses the frame
        with pytest.raises(ValueError, match="outside"):
            crop_face(img, box, c)
        return
    crop = crop_face(img, box, c)
    assert crop.shape == (size, size) and crop.dtype == np.uint8
    # OpenCV rounds once (and area-resizes in fixed point): within one grey level
    assert np.abs(crop - reference_crop(img, box, size, margin)).max() < 1.0


@SETTINGS
@given(
    st.integers(-30, 90), st.integers(-30, 70), st.sampled_from([3, 4]), st.integers(0, 2**32 - 1)
)
def test_colour_crop_is_the_grey_of_the_same_pixels(x, y, channels, seed):
    # a 40 px box with margin 0.1 is a 48 px square: no resizing, only grey conversion and edges
    img = noise(seed, (80, 100, channels))
    box = (x, y, 40, 40)
    assume(-48 < x - 4 < 100 and -48 < y - 4 < 80)
    crop = crop_face(img, box, Contract(input_size=48, margin=0.1))
    expected = reference_crop(reference_gray(img[..., :3]), box, 48, 0.1)
    assert np.abs(crop - expected).max() <= 0.51  # one rounding of the grey level


@st.composite
def moving_faces(draw):
    """Faces apart from each other (one per cell of a grid), each drifting a few pixels and
    changing size a little from frame to frame, listed in a random order each frame."""
    n = draw(st.integers(1, 6))
    cells = draw(st.lists(st.integers(0, 11), min_size=n, max_size=n, unique=True))
    faces = [[(c % 4) * 160 + 20, (c // 4) * 160 + 20, draw(st.integers(30, 80))] for c in cells]
    frames = []
    for _ in range(draw(st.integers(2, 8))):
        boxes = []
        for f in faces:
            f[0] += draw(st.integers(-4, 4))
            f[1] += draw(st.integers(-4, 4))
            f[2] = max(20, f[2] + draw(st.integers(-3, 3)))
            boxes.append(Box(f[0], f[1], f[2], f[2]))
        order = draw(st.permutations(range(n)))
        frames.append((order, boxes))
    return frames


@SETTINGS
@given(moving_faces())
def test_tracker_keeps_each_face_its_identity_through_small_motion(frames):
    tracker = Tracker()
    ids_of_face: dict[int, int] = {}
    for order, boxes in frames:
        shown = [boxes[i] for i in order]
        probs = [np.full(5, 0.2, np.float32) for _ in shown]
        ids = [tid for tid, _ in tracker.update(shown, probs)]
        assert len(set(ids)) == len(ids)
        for face, tid in zip(order, ids):
            assert ids_of_face.setdefault(face, tid) == tid, (face, ids_of_face, ids)
    assert sorted(ids_of_face.values()) == list(range(len(ids_of_face)))  # ids 0, 1, ...


boxes = st.builds(
    Box, st.integers(0, 200), st.integers(0, 200), st.integers(1, 120), st.integers(1, 120)
)


@SETTINGS
@given(st.lists(st.lists(boxes, max_size=6), min_size=1, max_size=6))
def test_tracker_never_gives_one_track_to_two_boxes(frames):
    # any boxes at all, overlapping or not, appearing and vanishing
    tracker = Tracker()
    for shown in frames:
        before = list(tracker._tracks)
        assigned = tracker.assign(shown)
        taken = [j for j in assigned if j is not None]
        assert len(set(taken)) == len(taken)
        for b, j in zip(shown, assigned):
            if j is not None:
                assert b.iou(before[j].box) >= tracker.iou_threshold
        ids = [tid for tid, _ in tracker.update(shown, [np.ones(5, np.float32)] * len(shown))]
        assert len(set(ids)) == len(ids)
        continued = {before[j].id for j in taken}
        assert continued <= set(ids) and len(continued) == len(taken)


@SETTINGS
@given(
    st.integers(2, 7).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=200),
        )
    )
)
def test_metrics_equal_counting_one_prediction_at_a_time(case):
    from fer_edge.evaluation.metrics import classification_report

    k, pairs = case
    y_true = [t for t, _ in pairs]
    y_pred = [p for _, p in pairs]
    labels = tuple(f"c{i}" for i in range(k))
    # Freed small arrays full of 7.5 go to numpy's allocation cache: a ratio left undefined
    # (a class never true or never predicted) would read them back unless it is set to 0.
    poison = [np.full(k, 7.5) for _ in range(20)]
    del poison
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns of `where` without `out`
        got = classification_report(np.array(y_true, int), np.array(y_pred, int), labels)
    ref = reference_report(y_true, y_pred, k)
    assert got["n"] == ref["n"] and got["confusion"] == ref["confusion"]
    # counts stay integers in the JSON a user reads (3, not 3.0)
    assert all(type(v) is int for row in got["confusion"] for v in row)
    assert got["accuracy"] == pytest.approx(ref["accuracy"], abs=1e-12)
    assert got["macro_f1"] == pytest.approx(ref["macro_f1"], abs=1e-12)
    assert got["labels"] == list(labels)
    for name, (precision, recall, f1, n) in zip(labels, ref["per_class"]):
        pc = got["per_class"][name]
        assert pc["n"] == n and got["recall"][name] == pc["recall"]  # the headline recall
        assert (pc["precision"], pc["recall"], pc["f1"]) == pytest.approx(
            (precision, recall, f1), abs=1e-12
        )


@pytest.fixture(scope="module")
def int8_pair(int8_model):
    """The shipped int8 model twice: crops written straight into the interpreter (the default)
    and through quantize_input + set_tensor, one call per face."""
    from fer_edge.edge.classifier import Classifier

    return Classifier(int8_model), Classifier(int8_model, zero_copy=False, batch=False)


crops = st.integers(0, 2**32 - 1).map(lambda seed: noise(seed, (48, 48)))


@SETTINGS
@given(crops)
def test_int8_input_round_trips_within_one_step(int8_pair, crop):
    clf, _ = int8_pair
    q = clf.quantize_input(crop)
    assert q.shape == (1, 48, 48, 1) and q.dtype == np.int8
    back = (q.astype(np.float64) - clf.in_zero) * clf.in_scale
    assert np.abs(back[0, :, :, 0] - crop).max() <= clf.in_scale / 2 + 1e-9


@SETTINGS
@given(st.lists(crops, min_size=1, max_size=4))
def test_int8_output_is_dequantised_with_the_models_own_scale(int8_pair, faces):
    from fer_edge.edge.interpreter import load_interpreter_class

    fast, plain = int8_pair
    cls, _, _ = load_interpreter_class()
    raw = cls(model_path=str(fast.path))
    raw.allocate_tensors()
    inp, out = raw.get_input_details()[0], raw.get_output_details()[0]
    scale, zero = out["quantization"]
    assert out["dtype"] == np.int8 and 0 < scale < 0.01
    batch = fast.predict_batch(faces)
    for crop, probs in zip(faces, batch):
        # reference: the bare interpreter fed x - 128 (input scale 1, zero point -128)
        raw.set_tensor(inp["index"], (crop.astype(np.int16) - 128).astype(np.int8)[None, ..., None])
        raw.invoke()
        q = raw.get_tensor(out["index"])[0].astype(np.float64)
        expected = (q - zero) * scale
        np.testing.assert_allclose(probs, expected, atol=1e-6)
        np.testing.assert_allclose(plain.predict(crop), expected, atol=1e-6)
        np.testing.assert_allclose(fast.predict(crop), expected, atol=1e-6)
        assert probs.min() >= 0 and abs(probs.sum() - 1) <= len(probs) * scale


def reference_calibration(probs: np.ndarray, y_true: np.ndarray, bins: int) -> tuple:
    """ECE and per-bin counts, one face at a time: a face with top probability c falls in the
    bin (lo, hi] holding c (c = 0 in the first bin)."""
    counts, hits, confs = [0] * bins, [0] * bins, [0.0] * bins
    for p, t in zip(probs, y_true):
        c = max(p)
        b = next(i for i in range(bins) if c <= (i + 1) / bins) if c > 0 else 0
        counts[b] += 1
        hits[b] += int(list(p).index(c) == t)
        confs[b] += c
    n = len(probs)
    ece = sum(counts[b] / n * abs(hits[b] / counts[b] - confs[b] / counts[b])
              for b in range(bins) if counts[b])  # fmt: skip
    return ece, counts


def test_a_confidence_just_above_an_edge_is_in_the_bin_above():
    """Bins are (b / bins, (b + 1) / bins]: 3 * 0.1 = 0.30000000000000004 (np.linspace(0, 1, 11)
    has it as its fourth edge) is above 3 / 10, in (0.3, 0.4]; 3 / 10 itself is in (0.2, 0.3]."""
    from fer_edge.evaluation.metrics import calibration

    probs = np.array([[3 * 0.1, 0.25, 0.25, 0.2], [3 / 10, 0.25, 0.25, 0.2]])
    rows = calibration(probs, np.array([0, 1]), 10)["reliability"]
    assert [r["n"] for r in rows] == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert rows[3]["lo"] == 3 / 10 and rows[3]["accuracy"] == 1.0 and rows[2]["accuracy"] == 0.0


@st.composite
def scored_faces(draw):
    """Probabilities for 1-60 faces over 2-12 classes (so the top one can fall in any bin,
    down to 1/12), from small integers: confidences land exactly on bin edges too."""
    k, n = draw(st.integers(2, 12)), draw(st.integers(1, 60))
    weights = draw(st.lists(st.lists(st.integers(0, 20), min_size=k, max_size=k),
                            min_size=n, max_size=n))  # fmt: skip
    return weights, draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))


@SETTINGS
@given(scored_faces(), st.sampled_from([15, 10, 4]))
def test_calibration_equals_binning_one_face_at_a_time(case, bins):
    from fer_edge.evaluation.metrics import calibration

    weights, y_true = case
    w = np.array(weights, np.float64) + 1e-3 * np.arange(len(weights[0]))  # no argmax ties
    probs = w / w.sum(1, keepdims=True)
    got = calibration(probs, np.array(y_true), bins)
    ece, counts = reference_calibration(probs.tolist(), y_true, bins)
    assert got["ece"] == pytest.approx(ece, abs=1e-9) and got["ece_bins"] == bins
    assert [row["n"] for row in got["reliability"]] == counts
    edges = [x for row in got["reliability"] for x in (row["lo"], row["hi"])]
    assert edges == pytest.approx([x for b in range(bins) for x in (b / bins, (b + 1) / bins)])
