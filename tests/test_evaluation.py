"""The evaluation layer: where it sits among the folders, its metrics against hand-computed
values, and `fer-edge eval` / the model card on the real FER2013 files and the shipped model."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, one_line_error, run_cli
from fer_edge.evaluation.metrics import calibration, classification_report, format_report
from fer_edge.evaluation.modelcard import SHORT_KEYS, cards_markdown, write_card
from reference import reference_report

# Every folder installed as fer_edge.<folder>, plus fer_edge/ itself (the `fer-edge` command).
FOLDERS = ("edge", "evaluation", "train", "convert", "benchmarks", "deploy", "fer_edge")
ABOVE_EVALUATION = {"train", "convert", "benchmarks"}
RULER_KEYS = ("private_fer2013", "public_ferplus_majority")


def imported_folders(path) -> set[str]:
    """Folders a module imports, anywhere in it (function-level imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from fer_edge import evaluation` names the folder in the imported names
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in FOLDERS[:-1]:  # a checkout's bare folder name (`import benchmarks`)
                found.add(parts[0])
            elif parts[0] == "fer_edge":
                found.add(parts[1] if len(parts) > 1 and parts[1] in FOLDERS else "fer_edge")
    return found


def folder_graph() -> dict[str, dict[str, list[str]]]:
    """{folder: {imported folder: [modules importing it]}}, self-imports left out."""
    graph: dict[str, dict[str, list[str]]] = {f: {} for f in FOLDERS}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for target in imported_folders(path) - {folder}:
                graph[folder].setdefault(target, []).append(str(path.relative_to(ROOT)))
    return graph


def find_cycle(graph: dict[str, dict]) -> list[str] | None:
    """One cycle of folders as a path [a, b, ..., a], or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in graph.get(node, {}):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    return next((c for n in graph if n not in state and (c := visit(n, [n]))), None)


def test_cycle_finder_on_hand_made_graphs():
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {}}) is None
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y": []}, "y": {"y2": []}, "y2": {"y": []}}) == ["y", "y2", "y"]


def test_folders_import_one_way_with_evaluation_between_runtime_and_the_rest():
    graph = folder_graph()
    # The parser sees real edges (a parser that found nothing would pass everything below).
    assert "evaluation" in graph["train"] and "edge" in graph["evaluation"]
    assert "evaluation" in graph["benchmarks"]
    assert find_cycle(graph) is None
    for low in ("edge", "evaluation"):
        bad = {f: mods for f, mods in graph[low].items() if f in ABOVE_EVALUATION | {"fer_edge"}}
        assert not bad, f"{low}/ imports from above it: {bad}"
    assert set(graph["edge"]) <= set(), graph["edge"]  # the runtime imports no other folder


# --- metrics against hand-computed values ----------------------------------------------------


def test_macro_f1_and_recall_on_a_small_confusion_matrix():
    #            predicted 0  1  2
    # true 0:              3  1  0   recall 3/4
    # true 1:              1  2  0   recall 2/3
    # true 2:              0  2  1   recall 1/3
    # precision: 3/4, 2/5, 1/1 -> F1: 0.75, 2*.4*(2/3)/(.4+2/3) = 0.5, 2*1*(1/3)/(4/3) = 0.5
    # macro-F1 = (0.75 + 0.5 + 0.5) / 3 = 0.58333; accuracy 6/10
    y = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    p = [0, 0, 0, 1, 1, 1, 0, 2, 1, 1]
    r = classification_report(np.array(y), np.array(p), ("a", "b", "c"))
    assert r["confusion"] == [[3, 1, 0], [1, 2, 0], [0, 2, 1]]
    assert r["macro_f1"] == pytest.approx(7 / 12)
    assert r["recall"] == pytest.approx({"a": 0.75, "b": 2 / 3, "c": 1 / 3})
    assert r["accuracy"] == pytest.approx(0.6)
    assert [r["per_class"][c]["f1"] for c in "abc"] == pytest.approx([0.75, 0.5, 0.5])
    assert list(r)[:3] == ["macro_f1", "recall", "accuracy"]  # reports lead with macro-F1


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    k = 4
    y = rng.integers(0, k, 60)
    p = np.where(rng.random(60) < 0.6, y, rng.integers(0, k - 1, 60))  # class 3 rarely predicted
    ref = reference_report(y.tolist(), p.tolist(), k)  # counted one prediction at a time
    r = classification_report(y, p, ("w", "x", "y", "z"))
    assert list(r["recall"].values()) == pytest.approx([pc[1] for pc in ref["per_class"]])
    assert r["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert r["confusion"] == ref["confusion"]


def test_ece_on_a_hand_made_example():
    # Five faces, two classes; confidence = top probability. 15 bins of width 1/15:
    #   0.55 right -> bin (0.533, 0.600]: |1 - 0.55| = 0.45, weight 1/5
    #   0.70 right -> bin (0.667, 0.733]: |1 - 0.70| = 0.30, weight 1/5
    #   0.82 wrong -> bin (0.800, 0.867]: |0 - 0.82| = 0.82, weight 1/5
    #   0.90 right and 0.88 right -> bin (0.867, 0.933]: accuracy 1, mean confidence 0.89,
    #                                 |1 - 0.89| = 0.11, weight 2/5
    # ECE = (0.45 + 0.30 + 0.82) / 5 + 2/5 * 0.11 = 0.314 + 0.044 = 0.358
    probs = np.array([[0.55, 0.45], [0.3, 0.7], [0.82, 0.18], [0.9, 0.1], [0.12, 0.88]])
    y = np.array([0, 1, 1, 0, 1])
    c = calibration(probs, y)
    assert c["ece"] == pytest.approx(0.358)
    assert c["ece_bins"] == 15 and len(c["reliability"]) == 15
    used = {i: b for i, b in enumerate(c["reliability"]) if b["n"]}
    assert sorted(used) == [8, 10, 12, 13]
    assert used[13]["n"] == 2 and used[13]["confidence"] == pytest.approx(0.89)
    assert used[12]["accuracy"] == 0.0
    assert sum(b["n"] for b in c["reliability"]) == 5


def test_ece_is_zero_when_confidence_equals_accuracy():
    # Four faces at confidence 0.75, three of them right: one bin, accuracy 0.75 = confidence.
    probs = np.array([[0.75, 0.25]] * 4)
    assert calibration(probs, np.array([0, 0, 0, 1]))["ece"] == pytest.approx(0.0)


def test_text_report_leads_with_macro_f1_then_recall():
    r = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]), ("a", "b"))
    r.update(calibration(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])))
    lines = format_report(r, title="t").splitlines()
    # by hand: confidences 0.9 (right), 0.8 (right), 0.6 (wrong), one per bin: ECE = 0.9 / 3
    assert lines == [
        "t",
        "macro_f1=0.6667  accuracy=0.6667  ece=0.3000 (15 bins)  n=3",
        "recall  a=1.000  b=0.500",
        "confusion (rows = true, columns = predicted):",
        "                a        b   recall",  # columns at least 8 wide, after a 9-wide margin
        "       a        1        0   1.000",
        "       b        1        1   0.500",
    ]
    # a label longer than 8 sets the width of every column; no title, no ECE: no such lines
    r = classification_report(np.array([0, 1]), np.array([1, 1]), ("a", "surprised!"))
    assert format_report(r).splitlines() == [
        "macro_f1=0.3333  accuracy=0.5000  n=2",
        "recall  a=0.000  surprised!=1.000",
        "confusion (rows = true, columns = predicted):",
        "                    a surprised!   recall",
        "         a          0          1   0.000",
        "surprised!          0          1   1.000",
    ]


# --- `fer-edge eval` and the card on the real files --------------------------------------------


@pytest.fixture(scope="module")
def both_rulers(int8_model, archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    proc = run_cli("eval", str(int8_model), "--data", str(archive), "--json",
                   str(out / "r.json"), "--figures", str(out / "figs"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, json.loads((out / "r.json").read_text()), out / "figs"


@pytest.mark.slow  # a whole eval of both test sets (~15 s): the fast tier's budget
def test_eval_without_split_reports_both_rulers(both_rulers):
    stdout, result, _ = both_rulers
    private, public = result["private_fer2013"], result["public_ferplus_majority"]
    assert (private["n"], public["n"]) == (3006, 3268)  # PrivateTest; PublicTest with a majority
    assert (private["split"], public["labels_rule"]) == ("private", "ferplus-majority")
    assert "PrivateTest, FER2013 labels" in stdout and "PublicTest, FER+ majority" in stdout
    assert stdout.count("macro_f1=") == 2


@pytest.mark.slow  # a whole eval of both test sets (~15 s): the fast tier's budget
def test_ece_in_the_report_is_the_weighted_gap_of_its_bins(both_rulers):
    for r in both_rulers[1].values():
        if not isinstance(r, dict):
            continue
        bins = [b for b in r["reliability"] if b["n"]]
        assert sum(b["n"] for b in bins) == r["n"]
        gaps = sum(b["n"] / r["n"] * abs(b["accuracy"] - b["confidence"]) for b in bins)
        assert r["ece"] == pytest.approx(gaps) and 0 < r["ece"] < 0.5
        # the bins' accuracies, weighted by their faces, give back the accuracy
        assert sum(b["n"] * b["accuracy"] for b in bins) / r["n"] == pytest.approx(r["accuracy"])


@pytest.mark.slow  # a whole eval of both test sets (~15 s): the fast tier's budget
def test_eval_figures(both_rulers):
    pytest.importorskip("matplotlib")
    names = {p.name for p in both_rulers[2].iterdir()}
    assert names == {f"{k}-{s}.png" for k in ("confusion", "reliability")
                     for s in ("private", "public")}  # fmt: skip
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in both_rulers[2].iterdir())


def card_from(result: dict, model: str, labels: list[str]) -> dict:
    """A card as model_card builds it, around real reports (no latency run needed here)."""
    short = {k: {f: result[k][f] for f in SHORT_KEYS} for k in RULER_KEYS}
    rob = {"clean": 0.7, "mean": {"2": 0.6}, "drop_at_medium_points": 10.0}
    return {"model": model, **short, "labels": labels, "views_per_face": 1, "bytes": 2048,
            "robustness": rob, "latency_ms": {"1": {"p50": 1.0}, "2": {"p50": 0.8}},
            "machine": {"slug": "m", "cpu": "cpu", "cores": 2}, "software": {},
            "created": "2026-01-01T00:00:00"}  # fmt: skip



def test_card_writes_its_pictures_beside_it_and_lists_them(both_rulers, tmp_path):
    result = both_rulers[1]
    card = card_from(result, "fer_int8.tflite", result["private_fer2013"]["labels"])
    written = write_card(card, tmp_path / "fer_int8.tflite")
    saved = json.loads((tmp_path / "fer_int8.card.json").read_text())
    assert list(saved)[:3] == ["model", *RULER_KEYS]
    assert list(saved["private_fer2013"])[:4] == ["macro_f1", "recall", "accuracy", "ece"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert saved["figures"] == [] and written == [tmp_path / "fer_int8.card.json"]
        return
    assert saved["figures"] == [f"fer_int8.card/{k}-{s}.png" for s in ("private", "public")
                                for k in ("confusion", "reliability")]  # fmt: skip
    assert all((tmp_path / f).is_file() for f in saved["figures"])


def test_cards_markdown_leads_with_macro_f1_and_lists_recall_per_class(both_rulers):
    result = both_rulers[1]
    five = card_from(result, "five.tflite", result["private_fer2013"]["labels"])
    seven = json.loads(json.dumps(five))
    seven["model"], seven["labels"] = "seven.tflite", [*five["labels"], "fear", "disgust"]
    for k in RULER_KEYS:
        seven[k]["per_class"]["fear"] = {"recall": 0.25}
        del seven[k]["ece"]  # a card from before ECE: a dash, not a crash
    md = cards_markdown([five, seven])
    head = next(line for line in md.splitlines() if line.startswith("| model | classes"))
    assert head.index("PrivateTest macro-F1") < head.index("acc") < head.index("ECE")
    row = next(line for line in md.splitlines() if line.startswith("| five.tflite | 5"))
    p = result["private_fer2013"]
    assert f"| {p['macro_f1']:.3f} | {100 * p['accuracy']:.1f}% | {p['ece']:.3f} |" in row
    recall_rows = [ln for ln in md.splitlines() if ln.startswith("| seven.tflite | ")]
    assert len(recall_rows) == 3 and "| 25.0% | – |" in recall_rows[1]  # fear yes, disgust no
    five_recall = next(ln for ln in md.splitlines()[md.splitlines().index(head) + 4 :]
                       if ln.startswith("| five.tflite | "))  # fmt: skip
    assert five_recall.endswith("| – | – |")  # a five-class model has no fear or disgust


# --- Keras without TensorFlow ------------------------------------------------------------------


def test_keras_model_without_tensorflow_is_one_line_naming_the_train_extra(archive):
    # What the runtime-only install has: no keras, no tensorflow (tests/test_wheel.py checks the
    # same in a real TF-free venv built from the wheel).
    code = (
        "import sys\n"
        "for m in ('keras', 'tensorflow'): sys.modules[m] = None\n"
        "from fer_edge.cli import main\n"
        f"sys.exit(main(['eval', 'models/fer_student.h5', '--data', {str(archive)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    line = one_line_error(proc)
    assert "fer_student.h5" in line and "pip install -e '.[train]'" in line
