"""TFLite conversion: four variants, each run in LiteRT and checked against Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.contract import read_contract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(keras_model, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    proc = run_cli(
        "convert",
        "--model",
        str(keras_model),
        "--out",
        str(out),
        "--data",
        str(archive),
        # Smaller than the defaults to keep CI fast; the shipped int8's own gate ran with the
        # defaults (models/fer_convert.report.json) and tests/test_shipped_models.py checks it.
        "--calibration",
        "500",
        "--check",
        "1000",
        "--min-agreement",
        "0.93",
        "--max-drop",
        "0.02",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Quiet: one log line per variant and its row in the table, nothing from the converter
    # (it prints the graph's signature, MLIR and quantiser lines: ~430 lines before)
    assert [ln.split()[2:4] for ln in proc.stderr.splitlines()] == [
        ["INFO", "fer_edge.convert.run:"]
    ] * 4, proc.stderr[-3000:]
    rows = proc.stdout.splitlines()
    assert [r.split()[0] for r in rows] == ["float32", "float16", "dynamic", "int8"], rows
    return out


def test_all_four_variants_run_and_agree_with_keras(converted, archive):
    from fer_edge.evaluation.data import load_fer2013

    report = json.loads((converted / "fer_convert.report.json").read_text())
    assert set(report["variants"]) == {"float32", "float16", "dynamic", "int8"}
    x, _ = load_fer2013(archive).select("private")
    outputs = {}
    for variant, entry in report["variants"].items():
        assert entry["agreement"] >= 0.93 and entry["accuracy_drop"] <= 0.02, (variant, entry)
        assert read_contract(converted / entry["file"]).provenance["agreement_with_keras"] == {
            "top1": round(entry["agreement"], 4),
            "accuracy_drop": round(entry["accuracy_drop"], 4),
            "faces": report["check_faces"],
            "split": "public",
        }
        clf = Classifier(converted / entry["file"])
        outputs[variant] = clf.predict_batch(x[:100])
        np.testing.assert_allclose(outputs[variant].sum(axis=1), 1.0, atol=0.03)
    agree = np.mean(outputs["int8"].argmax(1) == outputs["float32"].argmax(1))
    assert agree >= 0.9
    sizes = {v: e["bytes"] for v, e in report["variants"].items()}
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert sizes["int8"] <= 0.30 * sizes["float32"]


def test_accuracy_drop_is_keras_minus_the_variant_on_the_check_faces(
    converted, keras_model, archive
):
    """The report's figures recomputed here: Keras' and the int8 model's accuracy on the same
    1,000 stratified PublicTest faces; drop = Keras - int8 (positive = int8 is worse)."""
    from fer_edge.evaluation.data import load_fer2013, stratified_subset
    from fer_edge.train.model import load_keras

    report = json.loads((converted / "fer_convert.report.json").read_text())
    entry = report["variants"]["int8"]
    contract = read_contract(keras_model)
    x, y = load_fer2013(archive).select("public", contract.labels)
    idx = stratified_subset(y, 1000, 1337)  # --check 1000, the default seed
    x, y = x[idx], y[idx]
    keras_top1 = load_keras(keras_model).predict(x[..., None].astype(np.float32), verbose=0)
    keras_top1 = keras_top1.argmax(1)
    int8_top1 = Classifier(converted / entry["file"]).predict_batch(x).argmax(1)
    # about 1,000: each class's share is rounded on its own (see stratified_subset)
    assert report["check_faces"] == len(idx) and abs(len(idx) - 1000) <= len(contract.labels)
    assert entry["agreement"] == pytest.approx(np.mean(int8_top1 == keras_top1), abs=1e-9)
    drop = np.mean(keras_top1 == y) - np.mean(int8_top1 == y)
    assert entry["accuracy_drop"] == pytest.approx(drop, abs=1e-9)


def test_int8_io_matches_its_metadata(converted, keras_model):
    path = converted / "fer_int8.tflite"
    contract = read_contract(path)
    clf = Classifier(path)
    assert contract.input_dtype == clf.input_dtype == "int8"
    assert contract.output_dtype == clf.output_dtype == "int8"
    assert (contract.input_scale, contract.input_zero_point) == (clf.in_scale, clf.in_zero)
    prov = contract.provenance
    assert prov["calibration"]["count"] >= 450 and prov["source_sha256"]
    assert prov["agreement_with_keras"]["top1"] >= 0.93
    assert prov["agreement_with_keras"]["faces"] >= 990
    # the default's holdout calibration (folded into its weights) is named in every variant
    calibrated = read_contract(keras_model).provenance["calibrated"]
    # the default is an ensemble (fer-edge ensemble): each member carries its own calibration
    for member in calibrated["members"].values():
        assert member["temperature"] > 0 and len(member["logit_bias"]) == 5
    assert set(calibrated["members"]) == {"fer_student.h5", "fer_blend.h5"}
    for variant in converted.glob("*.tflite"):
        assert read_contract(variant).provenance["calibrated"] == calibrated, variant.name


def test_no_flex_ops_in_any_variant(converted):
    for path in converted.glob("*.tflite"):
        assert b"Flex" not in path.read_bytes(), path.name


def test_failed_agreement_does_not_overwrite(keras_model, archive, tmp_path):
    target = tmp_path / "fer_float32.tflite"
    target.write_bytes(b"previous model")
    proc = run_cli(
        "convert",
        "--model",
        str(keras_model),
        "--out",
        str(tmp_path),
        "--data",
        str(archive),
        "--variants",
        "float32",
        "--check",
        "50",
        "--min-agreement",
        "1.01",
    )
    line = one_line_error(proc)
    assert "float32" in line and "nothing written" in line
    assert target.read_bytes() == b"previous model"


@pytest.mark.parametrize("content", [b"", b"definitely not a model", b"TFL3" + bytes(100)])
def test_eval_of_a_corrupt_tflite_is_one_line(content, tmp_path, int8_model, archive):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    (tmp_path / "bad.tflite.json").write_text(
        (int8_model.parent / f"{int8_model.name}.json").read_text()
    )
    line = one_line_error(run_cli("eval", str(bad), "--data", str(archive)))
    assert "bad.tflite" in line


def test_convert_of_a_corrupt_keras_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 broken")
    (tmp_path / "bad.keras.json").write_text("{}")
    line = one_line_error(run_cli("convert", "--model", str(bad), "--out", str(tmp_path)))
    assert "bad.keras" in line
