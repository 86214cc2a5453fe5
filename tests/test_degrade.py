"""The capture degradations: deterministic, identity at severity 0, harder with severity; and
`fer-edge eval --degrade` on the shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_line_error, run_cli
from fer_edge.evaluation.data import load_fer2013
from fer_edge.evaluation.degrade import LEVELS, SEVERITIES, augment_batch, degrade, degrade_set


@pytest.fixture(scope="module")
def faces(archive):
    fer = load_fer2013(archive)
    x, _ = fer.select("private")
    return x[:64]


@pytest.mark.parametrize("kind", list(LEVELS))
def test_each_degradation_is_seeded_and_grows_with_severity(faces, kind):
    rng = np.random.default_rng(0)
    if kind != "motion":  # a 1-px streak is the identity too, but drawn with a random angle
        np.testing.assert_array_equal(degrade(faces[0], kind, 0.0, rng), faces[0])
    a = degrade_set(faces, kind, 2, seed=3)
    np.testing.assert_array_equal(a, degrade_set(faces, kind, 2, seed=3))
    assert a.dtype == np.uint8 and a.shape == faces.shape
    change = [np.abs(degrade_set(faces, kind, s).astype(int) - faces).mean() for s in SEVERITIES]
    assert 0 < change[0] < change[2], change


def test_augment_batch_touches_about_the_requested_share(faces):
    batch = faces[..., None].astype(np.float32)
    out = augment_batch(batch, np.random.default_rng(1), p=0.5)
    changed = np.any(out != batch, axis=(1, 2, 3)).mean()
    assert out.shape == batch.shape and 0.3 < changed < 0.7


@pytest.mark.slow  # an eval at every degradation level (~11 s): the fast tier's budget
def test_eval_degrade_writes_the_robustness_table(int8_model, archive, tmp_path):
    proc = run_cli("eval", str(int8_model), "--data", str(archive), "--split", "private",
                   "--degrade", "capture", "--degrade-max", "60", "--results", str(tmp_path),
                   "--json", str(tmp_path / "r.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rob = json.loads((tmp_path / "r.json").read_text())["robustness"]
    assert rob["n"] == 60 and set(rob["table"]) == set(LEVELS)
    assert all(set(row) == {"1", "2", "3"} for row in rob["table"].values())
    assert rob["mean"]["3"] < rob["clean"]
    md = (tmp_path / "robustness_fer_int8_tflite.md").read_text()
    assert "| **mean** |" in md and "severity 3" in md


def test_unknown_suite_is_one_line(int8_model, archive):
    line = one_line_error(run_cli("eval", str(int8_model), "--degrade", "fog"))
    assert "--degrade" in line and "fog" in line
