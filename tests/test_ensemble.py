"""`fer-edge ensemble`: trained models as one graph whose output is the softmax of their mean
logits (the normalised geometric mean of their probabilities), saved with one contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MODELS, need, one_line_error, run_cli
from fer_edge.edge.contract import read_contract

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow  # Keras models built and run: 2-50 s each


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_ensemble_is_the_geometric_mean_of_its_members(archive, tmp_path):
    from fer_edge.evaluation.data import load_fer2013
    from fer_edge.train.model import load_keras, trained_net

    a, b = need(MODELS / "fer_student.h5"), need(MODELS / "fer_mnv2.h5")
    proc = run_cli("ensemble", "--members", f"{a},{b}", "--out", str(tmp_path / "pair"))
    assert proc.returncode == 0, proc.stderr
    assert "2 members" in proc.stdout and "convert --model" in proc.stdout

    x, _ = load_fer2013(str(archive)).select("private", read_contract(a).labels)
    x = x[:40, ..., None].astype(np.float32)
    # Each member as its trained net: fer_mnv2 ships six test-time views, the ensemble takes
    # its net alone (the views are convert --tta's business, around the whole ensemble).
    logp = [np.log(trained_net(load_keras(m)).predict(x, verbose=0)) for m in (a, b)]
    expected = softmax(np.mean(logp, axis=0))
    for suffix in (".keras", ".h5"):
        pair = load_keras(tmp_path / f"pair{suffix}")
        np.testing.assert_allclose(pair.predict(x, verbose=0), expected, atol=2e-4)
        contract = read_contract(tmp_path / f"pair{suffix}")
        assert contract.labels == read_contract(a).labels and contract.tta == "none"
        assert contract.provenance["ensemble"] == ["fer_student.h5", "fer_mnv2.h5"]
        # fer_student's holdout calibration is in its weights, and named; fer_mnv2 has none
        members = contract.provenance["calibrated"]["members"]
        assert members == {"fer_student.h5": read_contract(a).provenance["calibrated"]}
    # what the cards read: parameters, and the members' training time summed from their reports
    report = json.loads((tmp_path / "pair.report.json").read_text())
    walls = [json.loads(m.with_suffix(".report.json").read_text()) for m in (a, b)]
    members = sum(load_keras(m).count_params() for m in (a, b))
    assert report["params"] == pair.count_params() == members + 5 * 5 + 5  # + the K x K probs
    assert report["total_wall_seconds"] == sum(
        w.get("total_wall_seconds", w.get("wall_seconds")) for w in walls
    )
    assert report["stage"] == "ensemble"
    # the members disagree on some faces, so the mean is not one member's output
    assert not np.allclose(expected, softmax(logp[0]), atol=1e-2)


def test_members_that_held_out_the_same_faces_can_be_calibrated_as_one(tmp_path):
    """Members trained with the same holdout (labels, seed, fraction, data): the ensemble gets
    their holdout as its config, so `fer-edge calibrate` fits a temperature and bias on faces no
    member saw and keeps each member's own calibration on record. Members with different
    holdouts: no config, and calibrate says why in one line."""
    import shutil

    a = need(MODELS / "fer_student.h5")
    b = tmp_path / "fer_student_b.h5"  # the same run under another name: the same holdout
    for suffix in (".h5", ".h5.json", ".config.json"):
        shutil.copy(MODELS / f"fer_student{suffix}", tmp_path / f"fer_student_b{suffix}")
    proc = run_cli("ensemble", "--members", f"{a},{b}", "--out", str(tmp_path / "twin"))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "twin.config.json").read_text())
    student = json.loads(a.with_suffix(".config.json").read_text())
    assert config["validation"] == "holdout" and config["members"] == [str(a), str(b)]
    assert {k: config[k] for k in ("labels", "seed", "holdout")} == {
        k: student[k] for k in ("labels", "seed", "holdout")
    }
    cal = tmp_path / "cal"
    proc = run_cli("calibrate", "--model", str(tmp_path / "twin.h5"), "--out", str(cal))
    assert proc.returncode == 0, proc.stderr
    assert "holdout_after" in proc.stdout
    calibrated = read_contract(tmp_path / "cal.h5").provenance["calibrated"]
    fitted = json.loads((tmp_path / "cal.calibration.json").read_text())["calibration"]
    assert calibrated["ensemble"] == fitted and "temperature" in fitted
    assert set(calibrated["members"]) == {"fer_student.h5", "fer_student_b.h5"}

    other = need(MODELS / "fer_mnv2.h5")  # FER2013 labels: another holdout
    proc = run_cli("ensemble", "--members", f"{a},{other}", "--out", str(tmp_path / "twin"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "twin.config.json").exists()  # the earlier ensemble's is gone
    proc = run_cli("calibrate", "--model", str(tmp_path / "twin.h5"), "--out", str(tmp_path / "x"))
    line = one_line_error(proc)
    assert "twin.h5" in line and "same holdout" in line, line


def test_members_with_other_labels_or_a_missing_file_are_one_line(tmp_path):
    a, seven = need(MODELS / "fer_student.h5"), need(MODELS / "fer7_mnv2.h5")
    proc = run_cli("ensemble", "--members", f"{a},{seven}", "--out", str(tmp_path / "x"))
    line = one_line_error(proc)
    assert "fer7_mnv2.h5" in line and "labels" in line, line
    proc = run_cli("ensemble", "--members", f"{a},{tmp_path}/nope.h5", "--out", str(tmp_path / "x"))
    line = one_line_error(proc)
    assert "nope.h5" in line and "does not exist" in line, line
    proc = run_cli("ensemble", "--members", str(a), "--out", str(tmp_path / "x"))
    assert "two or more" in one_line_error(proc)
    assert not list(tmp_path.glob("x.*"))  # nothing written for a bad request


def test_fine_tuning_an_ensemble_opens_the_top_layers_of_each_member():
    """Stage 2's rule (the top N layers trainable, BatchNorm frozen) holds inside each member
    of an ensemble, not over the ensemble's handful of top-level layers (which would open
    every member whole)."""
    import keras
    from fer_edge.train.ensemble import ensemble_model
    from fer_edge.train.model import load_keras, trained_net
    from fer_edge.train.stage2 import set_trainable_top

    source = need(MODELS / "fer_student.h5")
    single = trained_net(load_keras(source))
    opened = set_trainable_top(single, 20)
    pair = ensemble_model([load_keras(source), load_keras(source)])
    # both members, plus each member's logits layer and the combining `probs`
    assert set_trainable_top(pair, 20) == 2 * opened + 3
    for i in (0, 1):
        member = pair.get_layer(f"member{i}")
        flags = [layer.trainable for layer in member.layers]
        assert not any(flags[:-20]), "a layer below the top 20 is trainable"
        assert not any(
            layer.trainable
            for layer in member.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        )
        assert sum(bool(layer.weights) and layer.trainable for layer in member.layers) > 0
