"""The classifier's arithmetic and its refusals, with values worked out by hand: the TFLite
quantisation formula at every grey level for other scales and zero points than the shipped
model's, the tensor fed at a batch, and a model that disagrees with its contract refused in
one line naming what differs. Fast: all of it is in `make test-fast`."""

from __future__ import annotations

import numpy as np
import pytest
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.contract import read_contract, sidecar_path, write_contract
from fer_edge.edge.errors import ModelError
from fer_edge.edge.interpreter import load_interpreter_class

LEVELS = np.arange(256, dtype=np.uint8).reshape(16, 16)


def spec(x: int, scale: float, zero: int, lo: int, hi: int) -> int:
    """TFLite's affine quantisation, one value: q = round(x / scale) + zero, saturated."""
    return min(hi, max(lo, round(x / scale) + zero))


@pytest.mark.parametrize(
    "dtype, scale, zero",
    [("int8", 1.0, -128), ("int8", 0.5, -100), ("int8", 2.0, 10), ("uint8", 1.3, 7),
     ("uint8", 0.25, 0), ("int8", 3.0, -128)],
)  # fmt: skip
def test_input_quantisation_is_the_tflite_formula_at_every_grey_level(
    int8_model, dtype, scale, zero
):
    clf = Classifier(int8_model)
    clf.input_dtype, clf.in_scale, clf.in_zero = dtype, scale, zero
    info = np.iinfo(dtype)
    q = clf.quantize_input(LEVELS)
    assert q.shape == (1, 16, 16, 1) and q.dtype == np.dtype(dtype)
    expected = [spec(int(x), scale, zero, info.min, info.max) for x in LEVELS.ravel()]
    assert q.ravel().tolist() == expected
    if (dtype, scale, zero) == ("int8", 0.5, -100):  # both ends saturate here
        assert q.min() == -100 and q.max() == 127 and (q == 127).sum() == 256 - 114


def test_a_float_model_is_fed_the_grey_levels_as_they_are(float_model):
    clf = Classifier(float_model)
    q = clf.quantize_input(LEVELS)
    assert q.dtype == np.float32 and q.shape == (1, 16, 16, 1)
    assert q.ravel().tolist() == list(range(256))


def test_describe_says_what_runs(int8_model):
    clf = Classifier(int8_model, threads=2, batch=False, zero_copy=True)
    got = clf.describe()
    assert got["interpreter"] == f"{clf.backend} {clf.backend_version}"
    assert {k: v for k, v in got.items() if k != "interpreter"} == {
        "model": str(int8_model), "threads": 2, "batch": False, "zero_copy": True,
        "input": "(1, 48, 48, 1) int8", "input_quantization": [1.0, -128],
        "output": f"{len(clf.labels)} int8", "labels": list(read_contract(int8_model).labels),
    }  # fmt: skip


@pytest.fixture
def copy(int8_model, tmp_path):
    """The shipped int8 model and its contract in tmp_path, to be disagreed with."""
    path = tmp_path / "m.tflite"
    path.write_bytes(int8_model.read_bytes())
    write_contract(path, read_contract(int8_model))
    return path


def test_a_model_that_disagrees_with_its_contract_is_refused_in_one_line(copy):
    contract = read_contract(copy)
    cases = [
        (contract.with_(input_size=64),
         f"{copy}: input shape (1, 48, 48, 1) does not match the contract's 64x64x1 grey crop"),
        (contract.with_(input_dtype="uint8"),
         f"{copy}: input dtype int8 but its contract says uint8; re-run `fer-edge convert`"),
        (contract.with_(input_scale=0.5),
         f"{copy}: input quantisation (1.0, -128) differs from its contract (0.5, -128)"),
        (contract.with_(input_zero_point=0),
         f"{copy}: input quantisation (1.0, -128) differs from its contract (1.0, 0)"),
        (contract.with_(labels=contract.labels[:4]),
         f"{copy}: 5 outputs but 4 labels in contract"),
    ]  # fmt: skip
    for changed, message in cases:
        write_contract(copy, changed)
        with pytest.raises(ModelError) as err:
            Classifier(copy)
        assert str(err.value) == message
    write_contract(copy, contract)
    assert Classifier(copy).labels == contract.labels  # and as shipped it loads


def test_a_missing_or_broken_model_file_is_one_line(copy, tmp_path):
    with pytest.raises(ModelError) as err:
        Classifier(tmp_path / "nowhere.tflite")
    assert str(err.value) == f"{tmp_path / 'nowhere.tflite'}: model file not found"
    copy.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises((ValueError, RuntimeError)) as raw:  # the interpreter's own words
        load_interpreter_class()[0](model_path=str(copy))
    first = str(raw.value).strip().splitlines()[0]
    with pytest.raises(ModelError) as err:
        Classifier(copy)
    assert str(err.value) == f"{copy}: not a loadable TFLite model ({first})"


def test_a_backend_asked_for_is_the_one_used_or_one_line_when_missing(int8_model):
    assert Classifier(int8_model, backend="ai-edge-litert").backend == "ai-edge-litert"
    with pytest.raises(ModelError) as err:  # not installed here (nor on a Pi with LiteRT)
        Classifier(int8_model, backend="tflite-runtime")
    assert str(err.value).startswith("no TFLite interpreter found; install one with `pip ")
    assert "(tried tflite-runtime: No module named 'tflite_runtime')" in str(err.value)


def test_batches_of_each_size_build_one_interpreter_each_and_match_one_by_one(int8_model):
    clf = Classifier(int8_model, batch=True)
    one = Classifier(int8_model, batch=False, zero_copy=False)
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
    for n in (1, 2, 3, 2):
        np.testing.assert_array_equal(
            clf.predict_batch(crops[:n]), np.stack([one.predict(c) for c in crops[:n]])
        )
    assert sorted(clf._batched) == [1, 2, 3] and clf.batch is True
    empty = clf.predict_batch([])
    assert empty.shape == (0, 5) and empty.dtype == np.float32  # as a batch of faces is


def test_a_model_with_a_fixed_batch_of_one_is_called_once_per_face_after_one_warning(
    int8_model, tmp_path, caplog
):
    """A converter given a fixed input shape writes batch 1 into the graph (shape_signature
    1, not -1): LiteRT then refuses to resize it, and the classifier says so once and goes on
    one call per face with the same probabilities. The fixed model is the shipped one with its
    input's signature [-1, 48, 48, 1] written as [1, 48, 48, 1]."""
    import logging
    import shutil
    import struct

    flexible, fixed_sig = struct.pack("<5i", 4, -1, 48, 48, 1), struct.pack("<5i", 4, 1, 48, 48, 1)
    raw = int8_model.read_bytes()
    assert raw.count(flexible) >= 1
    fixed = tmp_path / "fixed_int8.tflite"
    fixed.write_bytes(raw.replace(flexible, fixed_sig))
    shutil.copy(sidecar_path(int8_model), sidecar_path(fixed))
    probe = load_interpreter_class()[0](model_path=str(fixed))
    index = probe.get_input_details()[0]["index"]
    with pytest.raises((ValueError, RuntimeError)) as refusal:  # LiteRT's own words, expected
        probe.resize_tensor_input(index, [3, 48, 48, 1], strict=True)

    caplog.set_level(logging.WARNING, logger="fer_edge.edge.classifier")
    clf = Classifier(fixed, batch=True)
    one = Classifier(int8_model, batch=False, zero_copy=False)
    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 256, (48, 48), dtype=np.uint8) for _ in range(3)]
    for n in (3, 2):  # the second batch is not tried again: no second warning
        np.testing.assert_array_equal(
            clf.predict_batch(crops[:n]), np.stack([one.predict(c) for c in crops[:n]])
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{fixed}: no batched input ({refusal.value}); one call per face"]
    assert clf.batch is False and clf.describe()["batch"] is False
