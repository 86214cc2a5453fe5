"""The holdout calibration: ECE by hand, the fit recovering a known bias and temperature, and the
fold into the classifier layer giving exactly the fitted probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from fer_edge.train.calibrate import adjusted, ece, fit, macro_f1


def test_ece_on_three_faces_by_hand():
    # confidences 0.9 (right), 0.6 (wrong), 0.8 (right) fall in three different 1/15-wide bins:
    # (|1 - 0.9| + |0 - 0.6| + |1 - 0.8|) / 3 = 0.3
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    assert ece(probs, np.array([0, 1, 0])) == pytest.approx(0.3)
    # two faces in one bin: confidences 0.9 and 0.9, one right -> |0.5 - 0.9| = 0.4
    assert ece(np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([0, 0])) == pytest.approx(0.4)
    # perfectly calibrated: four faces at 0.75 confidence, three right
    p = np.tile([0.75, 0.25], (4, 1))
    assert ece(p, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_macro_f1_by_hand():
    # class 0: tp 1, predicted 2, true 1 -> F1 2/3; class 1: tp 1, predicted 1, true 2 -> 2/3
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1]), 2) == pytest.approx(2 / 3)
    # a class never predicted and never true counts 0, as in classification_report
    assert macro_f1(np.array([0, 0]), np.array([0, 0]), 2) == pytest.approx(0.5)


def _skewed(n=6000, k=4, seed=0):
    """Logits of a model that is right about the face but 1.2 nats shy of class 2 and twice too
    confident: the fit must find bias[2] - bias[0] ~ +1.2 and a temperature ~ 2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    clean = rng.normal(0, 1.0, (n, k)) + 1.5 * np.eye(k)[y]
    true_p = np.exp(clean) / np.exp(clean).sum(1, keepdims=True)
    # labels drawn from the clean model's own probabilities: it is calibrated by construction
    y = np.array([rng.choice(k, p=p) for p in true_p])
    skew = clean.copy()
    skew[:, 2] -= 1.2
    logp = 2.0 * skew
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return logp, y


def test_fit_recovers_the_bias_and_the_temperature():
    logp, y = _skewed()
    t, bias = fit(logp, [y, y])
    assert t == pytest.approx(2.0, abs=0.25)
    # The bias maximises macro-F1, which is not the generative shift of 1.2 nats, but it must
    # lift the shy class and leave the others near each other.
    assert 0.5 < bias[2] - bias[0] < 1.6
    assert abs(bias[1] - bias[0]) < 0.5 and abs(bias[3] - bias[0]) < 0.5
    before, after = adjusted(logp, 1.0, np.zeros(4)), adjusted(logp, t, bias)
    assert ece(after, y) < ece(before, y) / 2
    recall_2 = lambda p: np.mean(p.argmax(1)[y == 2] == 2)  # noqa: E731
    assert recall_2(after) > recall_2(before) + 0.15
    assert macro_f1(y, after.argmax(1), 4) > macro_f1(y, before.argmax(1), 4) + 0.02


def test_fit_leaves_a_calibrated_unbiased_model_alone():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.0, (4000, 3)) + 2.0 * np.eye(3)[rng.integers(0, 3, 4000)]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in p])
    t, bias = fit(np.log(p), [y, y])
    assert t == pytest.approx(1.0, abs=0.1)
    assert np.all(np.abs(bias - bias[0]) <= 0.2)


def test_a_ruler_without_a_label_ignores_that_face():
    logp, y = _skewed(n=3000, seed=2)
    missing = y.copy()
    missing[::2] = -1  # half the faces have no second label: the fit must not read -1 as a class
    t1, b1 = fit(logp, [y, missing])
    assert np.isfinite(t1) and np.all(np.isfinite(b1))
    assert b1[2] - b1[0] > 0.6


def test_fold_gives_the_fitted_probabilities():
    keras = pytest.importorskip("keras")
    from fer_edge.train.calibrate import fold

    inp = keras.Input((6,))
    out = keras.layers.Dense(3, activation="softmax", name="probs")(inp)
    net = keras.Model(inp, out)
    x = np.random.default_rng(3).normal(size=(50, 6)).astype(np.float32)
    p0 = net.predict(x, verbose=0)
    bias = np.array([0.0, 0.4, -0.7])
    fold(net, 1.6, bias)
    np.testing.assert_allclose(
        net.predict(x, verbose=0), adjusted(np.log(p0), 1.6, bias), atol=1e-5
    )


@pytest.mark.slow  # three calibrations of a Keras model on ~2,000 faces: ~45 s
def test_a_model_with_test_time_views_is_calibrated_only_as_its_single_view_net(tmp_path):
    """A temperature folded into the net rescales each view, not their average: calibrate
    refuses a multi-view model in one line; with --single-view it writes the trained net alone
    (tta none), calibrated exactly as that net would be on its own."""
    pytest.importorskip("tensorflow")
    import json
    import shutil

    from conftest import MODELS, need, one_line_error, run_cli
    from fer_edge.edge.contract import read_contract, write_contract
    from fer_edge.train.model import inference_model, load_keras, trained_net

    student = need(MODELS / "fer_student.h5")
    flip = tmp_path / "flip.h5"  # fer_student wrapped with six test-time views
    inference_model(trained_net(load_keras(student)), "multi").save(flip)
    write_contract(flip, read_contract(student).with_(tta="multi"))
    shutil.copy(student.with_suffix(".config.json"), tmp_path / "flip.config.json")

    proc = run_cli("calibrate", "--model", str(flip), "--out", str(tmp_path / "x"))
    line = one_line_error(proc)
    assert "flip.h5" in line and "--single-view" in line, line
    assert not list(tmp_path.glob("x.*"))

    one = tmp_path / "one"
    proc = run_cli("calibrate", "--model", str(flip), "--out", str(one), "--single-view")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("calibrate", "--model", str(student), "--out", str(tmp_path / "ref"))
    assert proc.returncode == 0, proc.stderr
    assert read_contract(tmp_path / "one.h5").tta == "none"
    assert json.loads((tmp_path / "one.config.json").read_text())["tta"] == "none"
    one, ref = (
        json.loads((tmp_path / f"{s}.calibration.json").read_text())
        for s in ("one", "ref")
    )
    assert one["calibration"]["temperature"] == ref["calibration"]["temperature"]
    assert one["calibration"]["logit_bias"] == ref["calibration"]["logit_bias"]
    x = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(
        load_keras(tmp_path / "one.h5").predict(x, verbose=0),
        load_keras(tmp_path / "ref.h5").predict(x, verbose=0),
        atol=1e-5,
    )
