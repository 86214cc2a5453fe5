"""The committed models on fixed test sets (FER2013 PrivateTest with its own labels, PublicTest
with FER+ crowd-majority labels), so the floors are stable figures, not timings."""

from __future__ import annotations

import json

import pytest
from conftest import MODELS, need, run_cli
from fer_edge.edge.contract import DEFAULT_LABELS, SEVEN_LABELS, read_contract
from reference import assert_report_matches_confusion

pytestmark = pytest.mark.slow

TTA = MODELS / "fer_tta_int8.tflite"
SEVEN = MODELS / "fer7_int8.tflite"


def evaluate(model, archive, tmp_path, split="private", labels="fer2013") -> dict:
    out = tmp_path / f"{model.name}-{split}-{labels}.json"
    proc = run_cli("eval", str(model), "--data", str(archive), "--split", split,
                   "--labels", labels, "--json", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reports(int8_model, float_model, archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    return {
        (name, split, labels): evaluate(model, archive, tmp, split, labels)
        for name, model in (("int8", int8_model), ("float32", float_model))
        for split, labels in (("private", "fer2013"), ("public", "ferplus-majority"))
    }


def test_eval_json_has_the_documented_keys(reports):
    r = reports["int8", "private", "fer2013"]
    assert {"accuracy", "macro_f1", "per_class", "confusion", "n"} <= set(r)
    assert r["n"] == 3006 and reports["int8", "public", "ferplus-majority"]["n"] == 3268
    for report in reports.values():  # every figure follows from the report's own confusion
        assert_report_matches_confusion(report)
        assert list(report["per_class"]) == list(DEFAULT_LABELS)
    # PrivateTest's five classes as FER2013 labels them (rows = truth): fixed by the data
    rows = [sum(row) for row in r["confusion"]]
    assert rows == [r["per_class"][c]["n"] for c in DEFAULT_LABELS] and sum(rows) == 3006


def test_default_model_is_one_view_and_holds_its_floors(reports, int8_model):
    # Measured at commit time (the fer_student + fer_blend ensemble, int8): PrivateTest (FER2013
    # labels) 72.0%, macro-F1 0.708, sad recall 0.503; PublicTest (FER+ majority) 82.4%,
    # macro-F1 0.811. The default before it read 70.3% / 0.691 and 81.7% / 0.802: these floors
    # sit above it on both rulers.
    assert read_contract(int8_model).tta == "none"
    private = reports["int8", "private", "fer2013"]
    public = reports["int8", "public", "ferplus-majority"]
    assert private["accuracy"] >= 0.714 and private["macro_f1"] >= 0.70
    assert public["accuracy"] >= 0.818 and public["macro_f1"] >= 0.806
    # sad and angry faces are no longer mostly called neutral
    assert min(c["recall"] for c in private["per_class"].values()) >= 0.49


def test_int8_within_one_point_of_float(reports):
    for split, labels in (("private", "fer2013"), ("public", "ferplus-majority")):
        gap = (
            reports["float32", split, labels]["accuracy"]
            - reports["int8", split, labels]["accuracy"]
        )
        assert gap <= 0.01, (split, gap)


def test_six_view_model_behind_tta(archive, tmp_path):
    model = need(TTA)
    c = read_contract(model)
    assert c.tta == "multi" and c.labels == DEFAULT_LABELS
    assert evaluate(model, archive, tmp_path)["accuracy"] >= 0.75  # 75.7% at commit time


def test_seven_class_model(archive, tmp_path):
    model = need(SEVEN)
    assert read_contract(model).labels == SEVEN_LABELS
    r = evaluate(model, archive, tmp_path)
    assert r["n"] == 3589 and len(r["confusion"]) == 7
    assert_report_matches_confusion(r)
    assert r["accuracy"] >= 0.64  # 65.1% at commit time (mini-Xception: 65.9%)
