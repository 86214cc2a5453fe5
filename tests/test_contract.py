"""One preprocessing contract: training and the runtime feed the model identical tensors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import MODELS
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.contract import Contract, read_contract, write_contract
from fer_edge.edge.crop import crop_face, square_box
from fer_edge.edge.detectors import YuNetDetector
from fer_edge.edge.errors import ModelError
from fer_edge.edge.pipeline import Pipeline, PipelineConfig
from fer_edge.edge.sources import open_source
from reference import reference_crop, reference_gray


@pytest.fixture(scope="module")
def personal_photo(tmp_path_factory, video):
    """A real camera frame saved as a personal photo, as `fer-edge capture` does."""
    folder = tmp_path_factory.mktemp("personal")
    with open_source(str(video)) as src:
        frame = next(f for f in src.frames() if f.index == 50)
    (folder / "happy").mkdir()
    path = folder / "happy" / "me.jpg"
    cv2.imwrite(str(path), frame.image)
    return folder, path


@pytest.mark.parametrize("model_fixture", ["int8_model", "float_model"])
def test_training_and_runtime_feed_identical_tensors(personal_photo, model_fixture, request):
    pytest.importorskip("tensorflow")
    from fer_edge.train.datasets import make_dataset
    from fer_edge.train.personal import load_personal

    model = request.getfixturevalue(model_fixture)
    folder, photo = personal_photo
    clf = Classifier(model)
    detector = YuNetDetector()
    # Training side: stage-2 loader + the tf.data pipeline (no augmentation at evaluation).
    crops, labels, _ = load_personal(folder, clf.contract, detector, min_per_class=1)
    train_batch = next(iter(make_dataset(crops, labels, len(clf.labels), 8, training=False)))[
        0
    ].numpy()
    # Runtime side: the same file through the runtime's source, detector, crop and quantiser.
    pipe = Pipeline(detector, clf, PipelineConfig())
    with open_source(str(photo)) as src:
        frame = next(iter(src.frames()))
    box = max(detector.detect(frame), key=lambda b: b.area)
    crop = crop_face(frame.image, box.as_tuple(), clf.contract)
    fed = clf.quantize_input(crop)
    # Both sides call crop_face, so they also agree when it is wrong: hold the crop to the
    # rule written out independently (square, margin, edge pixels, area resize, BT.601 grey).
    c = clf.contract
    expected = reference_crop(reference_gray(frame.image), box.as_tuple(), c.input_size, c.margin)
    assert np.abs(crop - expected).max() <= 1.0
    # The int8 model is fed the training tensor quantised with the model's own input scale:
    # compare in the model's input dtype, exactly.
    np.testing.assert_array_equal(fed, clf.quantize_input(train_batch[0, :, :, 0]))
    assert fed.dtype == np.dtype(clf.input_dtype)
    if clf.input_dtype == "float32":
        np.testing.assert_array_equal(fed, train_batch[:1])
    assert pipe.process(frame).faces  # and the pipeline classifies that face


def test_fer_images_are_fed_unchanged(archive, int8_model):
    pytest.importorskip("tensorflow")
    from fer_edge.evaluation.data import load_fer2013
    from fer_edge.train.datasets import make_dataset

    x, y = load_fer2013(archive).select("private")
    x, y = x[:16], y[:16]
    train_batch = next(iter(make_dataset(x, y, 5, 16, training=False)))[0].numpy()
    clf = Classifier(int8_model)
    for i in range(16):
        q = clf.quantize_input(x[i])
        np.testing.assert_array_equal(q, clf.quantize_input(train_batch[i, :, :, 0]))
        np.testing.assert_array_equal(
            q.astype(np.int16), x[i].astype(np.int16)[None, :, :, None] - 128
        )


def test_int8_input_quantisation_is_lossless_for_grey_levels(int8_model):
    clf = Classifier(int8_model)
    assert clf.input_dtype == "int8"
    # Calibrated on raw grey levels, the input scale is 1 (to float rounding) and the zero
    # point -128, so each of the 256 grey levels gets its own int8 value: nothing is lost.
    assert clf.in_zero == -128 and abs(clf.in_scale - 1.0) < 1e-5
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    q = clf.quantize_input(levels).astype(np.int16)[0, :, :, 0]
    np.testing.assert_array_equal(q, levels.astype(np.int16) - 128)


def test_contract_round_trip_and_mismatch_is_refused(int8_model, tmp_path):
    contract = read_contract(int8_model)
    copy = tmp_path / "m.tflite"
    copy.write_bytes(int8_model.read_bytes())
    write_contract(copy, contract)
    assert read_contract(copy) == contract
    write_contract(copy, contract.with_(input_dtype="float32"))
    with pytest.raises(ModelError, match="dtype"):
        Classifier(copy)
    write_contract(copy, contract.with_(labels=("a", "b")))
    with pytest.raises(ModelError, match="labels"):
        Classifier(copy)
    (tmp_path / "m.tflite.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a valid model contract"):
        Classifier(copy)


def test_crop_rule_squares_adds_margin_and_pads_at_the_border():
    # Noise, so a crop one pixel off differs by far more than rounding.
    img = np.random.default_rng(7).integers(0, 256, (100, 200), dtype=np.uint8)
    assert square_box((50, 20, 40, 60), 0.1) == (34, 14, 72)  # centre (70, 50), side 60 * 1.2
    c = Contract(input_size=48, margin=0.1)
    crop = crop_face(img, (0, 0, 60, 60), c)  # runs off the top-left corner
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # square (-6, -6, 72): rows and columns -6..-1 repeat row/column 0, then 72 -> 48 by area
    rows = np.clip(np.arange(-6, 66), 0, None)
    square = img[np.ix_(rows, rows)].astype(np.float64)
    # 72 -> 48 is 1.5 source pixels per output pixel: weights 1, 0.5 then 0.5, 1 (over 1.5)
    w = np.zeros((48, 72))
    for i in range(24):
        w[2 * i, 3 * i : 3 * i + 2] = (1 / 1.5, 0.5 / 1.5)
        w[2 * i + 1, 3 * i + 1 : 3 * i + 3] = (0.5 / 1.5, 1 / 1.5)
    np.testing.assert_allclose(crop, w @ square @ w.T, atol=1.0)
    # the bottom-right corner: square (172, 72, 72) runs 44 px past the right, 44 past the bottom
    crop = crop_face(img, (178, 78, 60, 60), c)
    np.testing.assert_allclose(crop, reference_crop(img, (178, 78, 60, 60), 48, 0.1), atol=1.0)
    assert square_box((178, 78, 60, 60), 0.1) == (172, 72, 72)
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(
        crop_face(bgr, (50, 20, 40, 60), c), crop_face(img, (50, 20, 40, 60), c)
    )


def test_every_shipped_contract_is_what_write_contract_writes(tmp_path):
    """The contracts in models/ are reviewed in git diffs: written with sorted keys, indented
    two spaces, one field per line, ending in a newline; reading one and writing it again
    changes no byte (a field renamed, dropped or reformatted on the way would)."""
    shipped = sorted(p for p in MODELS.glob("*.json")
                     if p.name.endswith((".tflite.json", ".h5.json", ".keras.json")))  # fmt: skip
    assert len(shipped) >= 4, shipped
    for sidecar in shipped:
        model = sidecar.with_suffix("")
        written = write_contract(tmp_path / model.name, read_contract(model))
        assert written == tmp_path / sidecar.name
        assert written.read_text() == sidecar.read_text(), sidecar.name
    text = (MODELS / "fer_int8.tflite.json").read_text()
    assert text.startswith('{\n  "') and text.endswith("\n}\n")
    keys = [line.split('"')[1] for line in text.splitlines()[1:-1] if line.startswith('  "')]
    assert keys == sorted(keys) and {"labels", "contract_version"} <= set(keys)
    assert json.loads(text)["contract_version"] == 1


def test_sidecar_is_plain_json(int8_model):
    data = json.loads((int8_model.parent / f"{int8_model.name}.json").read_text())
    assert data["labels"] == ["neutral", "happy", "sad", "angry", "surprise"]
    assert data["input_dtype"] == "int8" and data["input_size"] == 48


def test_crop_takes_grey_with_or_without_a_channel_axis_and_names_what_it_refuses():
    img = np.random.default_rng(3).integers(0, 256, (60, 80), dtype=np.uint8)
    c = Contract(input_size=48, margin=0.1)
    np.testing.assert_array_equal(crop_face(img[:, :, None], (20, 10, 40, 40), c),
                                  crop_face(img, (20, 10, 40, 40), c))  # fmt: skip
    two = np.stack([img, img], axis=2)
    with pytest.raises(ValueError, match=r"unsupported image shape \(\d+, \d+, 2\)"):
        crop_face(two, (20, 10, 40, 40), c)
    with pytest.raises(ValueError, match="unknown interpolation 'linear' in model contract"):
        crop_face(img, (20, 10, 40, 40), c.with_(interpolation="linear"))


@pytest.mark.parametrize(
    "box",
    # squares (margin 0) that end exactly at the top or left edge, or start exactly at the
    # bottom or right edge of the 80x60 frame: nothing of the face is in it
    [(10, -20, 20, 20), (-20, 10, 20, 20), (80, 10, 20, 20), (10, 60, 20, 20), (0, -1, 1, 1)],
)
def test_a_face_square_outside_the_frame_is_refused(box):
    img = np.zeros((60, 80), np.uint8)
    c = Contract(input_size=48, margin=0.0)
    with pytest.raises(ValueError, match="lies outside the 80x60 frame"):
        crop_face(img, box, c)
    x, y, w, h = box  # one pixel further in, and the square touches the frame
    inward = (x + (x < 0) - (x >= 80), y + (y < 0) - (y >= 60), w, h)
    assert crop_face(img, inward, c).shape == (48, 48)
    # and further out: ends below zero must not count from the far edge as a slice would
    far = (x - 25 * (x <= 0), y - 25 * (y <= 0), w, h)
    with pytest.raises(ValueError, match="lies outside the 80x60 frame"):
        crop_face(img, far, c)
