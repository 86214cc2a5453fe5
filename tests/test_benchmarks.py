"""The benchmark harness on a real video with a real model: structure of the results, files
written, failures recorded instead of raised, and no TensorFlow needed on a device.

No performance numbers are asserted: these tests run on loaded CI machines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import INT8, ROOT
from fer_edge.benchmarks.accuracy import (
    accuracy_markdown,
    int8_vs_float32,
    latency,
    write_accuracy_results,
)
from fer_edge.benchmarks.cli import main
from fer_edge.benchmarks.report import pipeline_markdown
from fer_edge.benchmarks.system import machine_info, machine_slug
from fer_edge.benchmarks.throughput import (
    BenchConfig,
    run_benchmark,
    standard_configs,
)
from fer_edge.evaluation.metrics import classification_report

PIPELINE_STAGES = {"capture", "detect", "preprocess", "inference", "smoothing", "output", "total"}
STAT_KEYS = {"p50_ms", "p90_ms", "p99_ms", "mean_ms"}


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def bench_model(tmp_path_factory) -> Path:
    """The shipped int8 model, or a tiny float32 one made with the project's own converter."""
    if INT8.is_file() and Path(f"{INT8}.json").is_file():
        return INT8
    pytest.importorskip("tensorflow")
    from fer_edge.convert.tflite import convert_variant
    from fer_edge.edge.contract import Contract, write_contract
    from fer_edge.train.config import ModelConfig
    from fer_edge.train.model import build_model, inference_model

    net = build_model(ModelConfig(backbone_weights="none", head_filters=(8,)))
    path = tmp_path_factory.mktemp("bench_model") / "fer_float32.tflite"
    path.write_bytes(convert_variant(inference_model(net), "float32", None))
    write_contract(path, Contract())
    return path


@pytest.fixture(scope="module")
def pipeline_run(bench_model, video, tmp_path_factory):
    """One short run of three configurations through the CLI, as a user runs it."""
    out = tmp_path_factory.mktemp("bench")
    rc = main(
        [
            "bench",
            "--source",
            str(video),
            "--model",
            str(bench_model),
            "--frames",
            "20",
            "--warmup",
            "5",
            "--configs",
            "default,haar,decode",
            "--modes",
            "pipeline",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    (folder,) = out.iterdir()
    return folder, json.loads((folder / "pipeline.json").read_text())


def test_bench_times_every_stage_of_each_configuration(pipeline_run):
    _, result = pipeline_run
    assert list(result["configs"]) == ["default", "haar", "decode"]
    for name in ("default", "haar"):
        r = result["configs"][name]
        assert set(r["stages"]) == PIPELINE_STAGES, name
        for stage, stats in r["stages"].items():
            assert STAT_KEYS <= set(stats), (name, stage)
            assert stats["n"] == 20
            assert 0 <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
        assert r["frames"] == 20 and r["fps"] > 0 and r["cpu_percent"] > 0
        assert r["frames_with_face"] > 0  # the woman is in every frame of this video
        assert r["config"]["detector"] == name.replace("default", "yunet")
    decode = result["configs"]["decode"]
    assert set(decode["stages"]) == {"capture"} and decode["fps"] > 0


def test_default_configuration_follows_the_runtime_defaults(pipeline_run):
    # the documented defaults written out (runtime_defaults() would agree with itself)
    cfg = pipeline_run[1]["configs"]["default"]["config"]
    got = (cfg["detector"], cfg["detect_width"], cfg["detect_every"], cfg["threads"])
    assert got == ("yunet", 320, 2, 1) and cfg["classify_every"] == 2


def test_bench_records_machine_software_and_video(pipeline_run):
    folder, result = pipeline_run
    m = result["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["python"] and m["platform"]
    assert folder.name.startswith(m["slug"] + "-") and folder.name[-8:].isdigit()
    assert result["software"]["interpreter"] and result["software"]["opencv"]
    v = result["video"]
    assert (v["width"], v["height"], v["frame_count"]) == (854, 480, 383)
    assert result["settings"]["frames"] == 20 and result["settings"]["warmup"] == 5


def test_bench_writes_json_markdown_and_plots(pipeline_run):
    folder, result = pipeline_run
    md = (folder / "pipeline.md").read_text()
    for name in result["configs"]:
        assert f"| {name} |" in md
    assert "| inference |" in md  # the per-stage table of the default configuration
    pngs = {p.name for p in folder.glob("*.png")}
    assert pngs == ({"pipeline_fps.png", "pipeline_stages.png"} if has_matplotlib() else set())
    assert not list(folder.glob(".*"))  # no temporary files left behind


def test_a_failing_configuration_is_recorded_and_the_others_still_run(bench_model, video):
    known, _ = standard_configs(str(bench_model), "")
    configs = [
        replace(known["default"], name="bad_detector", detector="nope"),
        replace(known["default"], name="no_model", model=str(bench_model) + ".missing"),
        known["decode"],
    ]
    result, samples = run_benchmark(configs, str(video), frames=5, warmup=0, baseline_frames=0)
    r = result["configs"]
    assert "nope" in r["bad_detector"]["error"]
    assert "not found" in r["no_model"]["skipped"]
    assert r["decode"]["fps"] > 0 and set(samples) == {"decode"}
    assert "| bad_detector |" in pipeline_markdown(result)


def test_configuration_set_and_selection(bench_model, tmp_path, capsys):
    from fer_edge.benchmarks.throughput import runtime_defaults

    known, default = standard_configs(str(bench_model), "float.tflite")
    threads = 1 if runtime_defaults().threads != 1 else 2  # the alternative to the default
    assert {
        "default",
        "float32",
        "haar",
        "detect_every_1",
        f"threads_{threads}",
        "decode",
        "baseline",
    } <= set(default)
    assert known["float32"].model == "float.tflite"
    assert known[f"threads_{threads}"].threads == threads
    assert main(["bench", "--configs", "default,nope", "--model", str(bench_model)]) == 2
    assert "nope" in capsys.readouterr().err


def test_baseline_is_skipped_without_tensorflow(bench_model, video, monkeypatch):
    for name in ("keras", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    result, _ = run_benchmark(
        [BenchConfig("baseline", "baseline")], str(video), frames=3, warmup=0, baseline_frames=3
    )
    assert "TensorFlow" in result["configs"]["baseline"]["skipped"]
    assert "speedup_vs_baseline" not in result


# slow tier: 6-10 s end to end, and `make test-fast` must stay under 3 minutes
@pytest.mark.slow
def test_baseline_original_approach_and_ratio(bench_model, video):
    pytest.importorskip("tensorflow")
    known, _ = standard_configs(str(bench_model), "")
    result, _ = run_benchmark(
        [known["baseline"], known["default"]], str(video), frames=20, warmup=2, baseline_frames=3
    )
    assert list(result["configs"]) == ["default", "baseline"]  # the baseline always runs last
    base = result["configs"]["baseline"]
    assert base["frames"] == 3 and base["fps"] > 0 and base["tensorflow"]
    assert {"detect", "preprocess", "inference", "output"} <= set(base["stages"])
    assert result["speedup_vs_baseline"] == pytest.approx(
        result["configs"]["default"]["fps"] / base["fps"], rel=0.01
    )
    assert "original approach" in pipeline_markdown(result)


def test_bench_runs_without_tensorflow_or_optional_packages(bench_model, video, tmp_path):
    """What a Raspberry Pi has: edge/ and benchmarks/ with the edge extra, nothing else."""
    blocked = (
        "tensorflow",
        "keras",
        "tf_keras",
        "train",
        "convert",
        "fer_edge.train",
        "fer_edge.convert",
        "fer_edge.cli",
        "matplotlib",
        "psutil",
        "tqdm",
    )
    code = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "from benchmarks.cli import main\n"
        f"rc = main(['bench', '--source', {str(video)!r}, '--model', {str(bench_model)!r},"
        f" '--configs', 'default,baseline', '--frames', '5', '--warmup', '0',"
        " '--modes', 'pipeline',"
        f" '--baseline-frames', '2', '--out', {str(tmp_path)!r}])\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = tmp_path.iterdir()
    result = json.loads((folder / "pipeline.json").read_text())
    assert result["configs"]["default"]["fps"] > 0
    assert "skipped" in result["configs"]["baseline"]
    assert (folder / "pipeline.md").is_file() and not list(folder.glob("*.png"))


def test_machine_slug():
    assert machine_slug("Intel(R) Xeon(R) Platinum 8480C", 2) == "intel-xeon-8480c-2c"
    assert machine_slug("Raspberry Pi 5 Model B Rev 1.0", 4) == "raspberry-pi-5-model-b-4c"
    assert machine_slug("AMD Ryzen 7 5800X 8-Core Processor", 16) == "amd-ryzen-7-5800x-16c"
    assert machine_slug("Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", 8) == "intel-core-i7-1165g7-8c"
    assert machine_info()["slug"].endswith("c")


def fake_report(labels, n, correct, seed):
    """A real classification report of predictions that are right with probability `correct`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(labels), n)
    pred = np.where(rng.random(n) < correct, y, rng.integers(0, len(labels), n))
    return classification_report(y, pred, labels)


def fake_accuracy_result():
    labels = ("neutral", "happy", "sad", "angry", "surprise")
    variants = {}
    for i, (name, size, correct) in enumerate(
        [
            ("fer_float32.tflite", 2_000_000, 0.7),
            ("fer_int8.tflite", 500_000, 0.65),
            ("fer_mnv2.keras", 6_000_000, 0.7),
        ]
    ):
        v = {
            "file": name,
            "bytes": size,
            "public": fake_report(labels, 300, correct, i),
            "private": fake_report(labels, 300, correct, 10 + i),
        }
        if name.endswith(".tflite"):
            v["latency"] = {
                "1": {"p50_ms": 1.5, "p90_ms": 2.0},
                "2": {"p50_ms": 1.0, "p90_ms": 1.4},
            }
        variants[name] = v
    variants["fer_float16.tflite"] = {
        "file": "fer_float16.tflite",
        "bytes": 1_000_000,
        "errors": {"private": "DataError: broken"},
    }
    result = {
        "created": "2026-01-01T00:00:00",
        "machine": machine_info(),
        "software": {
            "interpreter": "ai-edge-litert",
            "interpreter_version": "2",
            "opencv": "4",
            "numpy": "2",
        },
        "data": {"source": "archive.zip", "sha256": "0" * 64},
        "settings": {"threads": [1, 2], "runs": 300, "warmup": 30},
        "variants": variants,
    }
    result["int8_vs_float32"] = int8_vs_float32(variants)
    return result


def test_accuracy_table_lists_every_variant_and_the_int8_comparison(tmp_path):
    result = fake_accuracy_result()
    v = result["variants"]
    cmp = result["int8_vs_float32"]
    assert cmp["size_ratio"] == 4.0
    expected = 100 * (
        v["fer_int8.tflite"]["private"]["accuracy"] - v["fer_float32.tflite"]["private"]["accuracy"]
    )
    assert cmp["private_accuracy_points"] == pytest.approx(expected, abs=0.01)
    md = accuracy_markdown(result)
    header = next(line for line in md.splitlines() if line.startswith("| variant"))
    for col in (
        "file KiB",
        "PublicTest acc",
        "PrivateTest acc",
        "macro-F1 (private)",
        "macro-F1 (public)",
        "recall neutral",
        "recall surprise",
        "1 thread",
        "2 threads",
    ):
        assert col in header
    rows = {
        line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| fer_")
    }
    assert set(rows) == set(v)
    assert rows["fer_int8.tflite"].count("|") == header.count("|")
    assert "1.50 / 2.00" in rows["fer_int8.tflite"] and "–" in rows["fer_mnv2.keras"]
    assert "4.0x smaller" in md and f"{expected:+.2f} points" in md
    assert "DataError: broken" in md
    written = write_accuracy_results(result, tmp_path)
    names = {p.name for p in written}
    assert {"accuracy.json", "accuracy.md"} <= names
    if has_matplotlib():
        assert {
            "confusion_fer_int8.png",
            "confusion_fer_float32.png",
            "confusion_fer_mnv2.png",
        } <= names


def test_latency_of_a_tflite_model(bench_model):
    stats = latency(bench_model, threads=1, runs=20, warmup=2)
    assert stats["n"] == 20 and 0 < stats["p50_ms"] <= stats["p90_ms"]


# slow tier: 6-10 s end to end, and `make test-fast` must stay under 3 minutes
@pytest.mark.slow
def test_bench_accuracy_on_fer2013(bench_model, archive, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for suffix in ("", ".json"):  # fer_int8 or fer_float32: both are variant names
        src = Path(f"{bench_model}{suffix}")
        (models / src.name).write_bytes(src.read_bytes())
    rc = main(
        [
            "bench-accuracy",
            "--data",
            str(archive),
            "--models",
            str(models),
            "--runs",
            "20",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert rc == 0
    (folder,) = (tmp_path / "out").iterdir()
    result = json.loads((folder / "accuracy.json").read_text())
    v = result["variants"][bench_model.name]
    assert v["public"]["n"] > 3000 and v["private"]["n"] > 3000
    assert 0 <= v["private"]["accuracy"] <= 1 and v["latency"]["1"]["n"] == 20


# --- issue 13: today's default against v1, one lever at a time, labels against a reference ----


def test_each_v1_lever_changes_exactly_one_thing(bench_model):
    from dataclasses import asdict

    known, default = standard_configs(str(bench_model), "", v1_model=str(bench_model) + ".v1")
    v1 = asdict(known["v1-default"])
    assert (v1["detect_every"], v1["classify_every"], v1["detect_width"], v1["threads"]) == (
        2,
        2,
        320,
        2,
    )
    assert v1["model"].endswith(".v1") and not v1["batch"] and v1["full_detect_every"] == 0
    for name, cfg in known.items():
        if not name.startswith("v1+"):
            continue
        changed = {k for k, v in asdict(cfg).items() if v != v1[k]} - {"name", "reference"}
        # the thread plan is one lever: OpenCV's, LiteRT's and the decoder's threads together
        thread_plan = {"cv_threads", "threads", "decode_threads"}
        assert len(changed) == 1 or changed <= thread_plan, (name, changed)
    assert known["v1+student"].model == str(bench_model)
    assert {"default", "v1-default", "reference", "v1-reference", "v1+roi"} <= set(default)
    assert known["reference"].detect_every == known["reference"].classify_every == 1
    assert known["default"].reference == "reference"
    assert known["v1-default"].reference == "v1-reference"


def test_agreement_with_the_reference_labels():
    from fer_edge.benchmarks.throughput import agreement
    from fer_edge.edge.types import Box

    ref = {0: [(Box(0, 0, 50, 50), 1)], 1: [(Box(0, 0, 50, 50), 1), (Box(200, 0, 50, 50), 2)]}
    same = {0: [(Box(2, 1, 50, 50), 1)], 1: [(Box(0, 0, 50, 50), 1), (Box(201, 0, 50, 50), 2)]}
    assert agreement(ref, same) == {"faces": 3, "found": 1.0, "label_agreement": 1.0}
    other = {0: [(Box(0, 0, 50, 50), 3)], 1: [(Box(0, 0, 50, 50), 1)]}  # one wrong, one missed
    assert agreement(ref, other) == {"faces": 3, "found": 0.6667, "label_agreement": 0.3333}


def test_default_is_compared_with_v1_and_the_reference_in_one_run(bench_model, video):
    known, _ = standard_configs(str(bench_model), "")
    roi, no_roi = (
        ("default", "default-no-roi")
        if known["default"].full_detect_every
        else (
            "default+roi",
            "default",
        )
    )
    configs = [known[n] for n in dict.fromkeys(("default", "v1-default", roi, no_roi, "reference"))]
    result, _ = run_benchmark(configs, str(video), frames=30, warmup=2, baseline_frames=0)
    r = result["configs"]
    for name in ("default", "v1-default", roi, no_roi):
        a = r[name]["agreement"]
        assert a["reference"] == "reference" and a["faces"] >= 30
        assert 0.9 <= a["found"] <= 1 and 0 <= a["label_agreement"] <= 1
        assert "_labels" not in r[name]
    assert "agreement" not in r["reference"]
    assert r[roi]["passes"]["roi"] > 0 and r["v1-default"]["passes"]["roi"] == 0
    assert r[no_roi]["passes"]["roi"] == 0
    assert result["speedup_vs_v1"] == pytest.approx(
        r["default"]["fps"] / r["v1-default"]["fps"], rel=0.01
    )
    md = pipeline_markdown(result)
    assert "agreement" in md and "v1-default" in md


def test_cost_model_counts_from_the_graphs(int8_model):
    from conftest import YUNET, need
    from fer_edge.benchmarks.costmodel import REFERENCES, cost_model, onnx_cost, tflite_cost
    from fer_edge.benchmarks.report_modes import cost_markdown

    yunet = need(YUNET)
    pytest.importorskip("onnx")
    small, large = onnx_cost(yunet, 320, 192), onnx_cost(yunet, 640, 384)
    # every feature map is 4x larger at twice the side (sides are multiples of 32)
    assert large["macs"] == 4 * small["macs"] and small["params"] == large["params"]
    assert 40_000 < small["params"] < 200_000  # YuNet is a ~75k-parameter detector
    c = tflite_cost(int8_model)
    assert 1_000_000 < c["macs"] and 100_000 < c["params"] < 5_000_000
    model = cost_model(yunet, [int8_model])
    assert model["estimate"] is True
    for stage in model["stages"].values():
        assert stage["pi4_ms"] > stage["pi5_ms"] > 0 and stage["source"]
    md = cost_markdown({**fake_header(), "cost": model})
    assert "ESTIMATES" in md and md.count("(estimate)") >= 4
    for ref in REFERENCES.values():
        assert ref["url"] in md


def test_tflite_macs_and_params_of_a_model_with_known_counts(tmp_path):
    """A two-layer model whose counts are known by hand: 3x3 conv, 1 -> 8 channels on 16x16
    (same padding) = 16*16*8*9 MACs and 8*9 + 8 parameters; dense 2048 -> 5 = 10,240 MACs and
    10,245 parameters; run as a batch of 3 inside the graph to check the batch is counted."""
    tf = pytest.importorskip("tensorflow")
    from fer_edge.benchmarks.costmodel import tflite_cost

    inp = tf.keras.Input((16, 16, 1), batch_size=1)
    x = tf.keras.layers.Lambda(lambda t: tf.concat([t, t + 1.0, t - 1.0], axis=0))(inp)
    # non-zero biases: the converter drops a bias that is all zeros
    x = tf.keras.layers.Conv2D(8, 3, padding="same", bias_initializer="ones")(x)
    x = tf.keras.layers.Flatten()(x)
    out = tf.keras.layers.Dense(5, bias_initializer="ones")(x)
    model = tf.keras.Model(inp, out)
    path = tmp_path / "known.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    c = tflite_cost(path)
    assert c["macs"] == 3 * (16 * 16 * 8 * 9 + 2048 * 5)
    assert c["params"] == (8 * 9 + 8) + (2048 * 5 + 5)


def fake_header() -> dict:
    return {
        "created": "2026-01-01T00:00:00",
        "machine": machine_info(),
        "software": {"interpreter": "ai-edge-litert", "opencv": "4", "numpy": "2"},
    }


def test_rounds_keep_each_configurations_median_round(bench_model, video):
    known, _ = standard_configs(str(bench_model), "")
    configs = [known["default"], known["decode"]]
    result, samples = run_benchmark(configs, str(video), frames=8, warmup=1, rounds=3)
    assert result["settings"]["rounds"] == 3
    for name in ("default", "decode"):
        r = result["configs"][name]
        assert len(r["fps_rounds"]) == 3
        assert r["fps"] == sorted(r["fps_rounds"])[1]  # the median round is the one reported
    assert set(samples) == {"default", "decode"}
    assert "3 rounds" in pipeline_markdown(result)


def test_runtime_check_reads_the_runtimes_own_fps_line(bench_model, video):
    """The bench step that compares its FPS with `fer-edge run`'s own closing line (within
    10% is checked by `make bench` on an idle machine, not here: speed is not a test)."""
    from fer_edge.benchmarks.runcheck import runtime_check, runtime_fps

    fps = runtime_fps(str(video), str(bench_model), frames=30, runs=1)
    assert len(fps) == 1 and fps[0] > 0
    fake = {"configs": {"default": {"fps": fps[0]}}}
    check = runtime_check(fake, str(video), str(bench_model), frames=30)
    assert set(check) >= {"bench_fps", "run_fps", "ratio", "within"} and check["ratio"] > 0


def earlier_report(crop: dict, tracking: dict, diffs: tuple[str, str],
                   tracking_reason: str = "") -> dict:
    """A committed mutation.json of two modules, each with its row and one survivor."""
    return {
        "modules": {"fer_edge.edge.crop": crop, "fer_edge.edge.tracking": tracking},
        "survivors": [
            {"mutant": "fer_edge.edge.crop.x_crop_face__mutmut_1", "module": "fer_edge.edge.crop",
             "diff": diffs[0], "reason": ""},
            {"mutant": "fer_edge.edge.tracking.x_iou__mutmut_2",
             "module": "fer_edge.edge.tracking", "diff": diffs[1], "reason": tracking_reason},
        ],
    }  # fmt: skip


def test_a_mutation_run_of_some_modules_keeps_the_others_figures(tmp_path, monkeypatch):
    """`make mutation MUTATE=edge/crop.py` replaces crop's row and survivors and keeps every
    other module's from the run that measured it; the total is over all of them."""
    from fer_edge.benchmarks import mutation

    earlier = earlier_report(
        crop={"killed": 9, "timeout": 0, "survived": 1, "other": 0, "score": 0.9},
        tracking={"killed": 6, "timeout": 1, "survived": 3, "other": 2, "score": 0.7},
        diffs=("-a\n+b", "-c\n+d"), tracking_reason="equivalent",
    )
    earlier.update(created="2026-11-30T19:47:34+0000", command="old run", score=0.9)
    (tmp_path / "mutation.json").write_text(json.dumps(earlier))
    now = {
        "fer_edge.edge.crop.x_crop_face__mutmut_1": "killed",
        "fer_edge.edge.crop.x_crop_face__mutmut_2": "killed",
        "fer_edge.edge.crop.x_crop_face__mutmut_3": "survived",
        "fer_edge.edge.crop.x_crop_face__mutmut_4": "no tests",
        "fer_edge.edge.crop.x_crop_face__mutmut_5": "not checked",  # the run was stopped
    }
    monkeypatch.setattr(mutation, "results", lambda stage: now)
    monkeypatch.setattr(mutation, "diff_of", lambda stage, name: "-x\n+y")
    got = mutation.report(tmp_path / "stage", tmp_path, 12.0, "new run")

    crop, tracking = got["modules"]["fer_edge.edge.crop"], got["modules"]["fer_edge.edge.tracking"]
    # a mutant no test reaches is missed, like a survivor: 2 / (2 + 1 + 1)
    assert (crop["killed"], crop["survived"], crop["other"], crop["score"]) == (2, 1, 1, 0.5)
    assert crop["command"] == "new run" and crop["sha"] == mutation.source_sha("fer_edge.edge.crop")
    assert (tracking["killed"], tracking["timeout"], tracking["survived"]) == (6, 1, 3)
    assert tracking["command"] == "old run" and tracking["created"].startswith("2026-11-30")
    assert [s["mutant"] for s in got["survivors"]] == [
        "fer_edge.edge.crop.x_crop_face__mutmut_3", "fer_edge.edge.tracking.x_iou__mutmut_2",
    ]  # fmt: skip
    assert (got["killed"], got["tested"], got["score"]) == (2 + 7, 4 + 12, round(9 / 16, 4))
    table = (tmp_path / "mutation.md").read_text()
    # tracking: 7 caught of 12; its one judged survivor leaves the judged score's
    # denominator: 7 / (7 + 2 + 2)
    row = ("| fer_edge.edge.tracking | 6 | 1 | 3 (1) | 2 | 0 | 58.3% | 63.6% "
           "| 2026-11-30 19:47 *stale* |")  # fmt: skip
    assert row in table
    assert "| fer_edge.edge.crop | 2 | 0 | 1 (0) | 1 | 1 | 50.0% | 50.0% |" in table
    assert (got["judged"], got["score_judged"]) == (1, 0.6)
    assert json.loads((tmp_path / "mutation.json").read_text()) == got


def test_a_survivors_diff_is_taken_again_only_when_its_source_changed(tmp_path, monkeypatch):
    from fer_edge.benchmarks import mutation

    row = {"killed": 1, "timeout": 0, "survived": 1, "other": 0}
    earlier = earlier_report(
        crop={**row, "sha": mutation.source_sha("fer_edge.edge.crop")},
        tracking={**row, "sha": "changed-since"},
        diffs=("-kept\n+diff", "-old\n+diff"),
    )
    (tmp_path / "mutation.json").write_text(json.dumps(earlier))
    now = {"fer_edge.edge.crop.x_crop_face__mutmut_1": "survived",
           "fer_edge.edge.crop.x_crop_face__mutmut_2": "survived",
           "fer_edge.edge.tracking.x_iou__mutmut_2": "survived"}  # fmt: skip
    shown = []
    monkeypatch.setattr(mutation, "results", lambda stage: now)
    monkeypatch.setattr(mutation, "diff_of", lambda stage, n: shown.append(n) or "-new\n+diff")
    got = mutation.report(tmp_path / "stage", tmp_path, 1.0, "run")
    assert [s["diff"] for s in got["survivors"]] == ["-kept\n+diff", "-new\n+diff", "-new\n+diff"]
    assert shown == ["fer_edge.edge.crop.x_crop_face__mutmut_2",
                     "fer_edge.edge.tracking.x_iou__mutmut_2"]  # fmt: skip


def test_make_mutation_tests_each_mutant_with_the_fast_tier_as_one_marker_expression(tmp_path):
    """`make mutation` with no TESTS: mutmut is told `tests -m "not slow"` (three words; the
    marker expression split into `not` and `slow` made pytest stop before any mutant ran)."""
    import tomllib
    from fer_edge.benchmarks import mutation

    args = mutation.parser().parse_args(["run", "--modules", "edge/config.py"])
    mutation.stage(tmp_path / "repo", args.modules.split(","), args.tests)
    conf = tomllib.loads((tmp_path / "repo" / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert conf["pytest_add_cli_args_test_selection"] == ["tests", "-m", "not slow"]
    assert conf["only_mutate"] == ["fer_edge/edge/config.py"]
    assert (tmp_path / "repo" / "fer_edge" / "edge" / "config.py").is_file()


def test_tests_that_run_the_program_in_a_subprocess_count_for_its_mutants(tmp_path):
    """The stage lets a subprocess reach the mutants (PYTHONPATH) and tell mutmut, which
    watches only its own process, which functions it ran: a function reached only by a
    `fer-edge run` in a subprocess is then tested with that test, not marked "no tests"."""
    from fer_edge.benchmarks import mutation
    from mutmut.state import state

    stage = tmp_path / "repo"
    mutation.stage(stage, ["edge/config.py"], "tests")
    env = mutation.mutation_env(stage)
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [
        str((stage / "mutants").resolve()), str((stage / "hits").resolve())
    ]  # fmt: skip
    # a subprocess while mutmut collects its stats: its trampolines' hits land in files
    code = (
        "import mutmut.mutation.trampoline as t\n"
        "t.record_trampoline_hit('fer_edge.edge.config.x_model_path')\n"
        "t.record_trampoline_hit('fer_edge.edge.config.x_model_path')\n"
        "t.record_trampoline_hit('fer_edge.edge.sinks.x_face_event', caller='x')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={**env, "MUTANT_UNDER_TEST": "stats"})  # fmt: skip
    # while a mutant is tested, the subprocess's trampolines are mutmut's own
    untouched = "import mutmut.mutation.trampoline as t; print(t.record_trampoline_hit.__module__)"
    out = subprocess.run([sys.executable, "-c", untouched], check=True, cwd=tmp_path, text=True,
                         capture_output=True,
                         env={**env, "MUTANT_UNDER_TEST": "fer_edge.edge.config.x_a__mutmut_1"})
    assert out.stdout.strip() == "mutmut.stats"
    (hits,) = (stage / "hits" / "log").iterdir()
    assert hits.read_text().split() == [
        "fer_edge.edge.config.x_model_path", "fer_edge.edge.sinks.x_face_event"
    ]  # fmt: skip
    # the staged conftest hands them to mutmut after the test, as its own process's hits
    hook = (stage / "tests" / "conftest.py").read_text()
    assert hook.startswith((mutation.ROOT / "tests" / "conftest.py").read_text())
    namespace: dict = {"pytest": pytest}
    exec(hook[hook.index("# --- added by fer_edge.benchmarks.mutation"):], namespace)
    state()._stats.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", {**env, "MUTANT_UNDER_TEST": "stats"})
        namespace["pytest_runtest_teardown"](None, None)
    assert state()._stats == {"fer_edge.edge.config.x_model_path",
                              "fer_edge.edge.sinks.x_face_event"}  # fmt: skip
    assert list((stage / "hits" / "log").iterdir()) == []
    state()._stats.clear()


def test_again_tests_chosen_modules_of_a_kept_stage_with_the_checkouts_tests(tmp_path):
    """--again: all of a module's (or a function's) mutants, or only those not caught;
    the stage's tests (with the hook) and unmutated code become the checkout's, the mutated
    module's stays; a stage whose mutated source is no longer the checkout's is refused."""
    from fer_edge.benchmarks import mutation

    if not (mutation.ROOT / "tests").is_dir():  # inside a mutation stage (no checkout there)
        pytest.skip("a mutation stage's package has no checkout around it to stage from")
    status = {
        "fer_edge.edge.crop.x_crop_face__mutmut_1": "killed",
        "fer_edge.edge.crop.x_crop_face__mutmut_2": "survived",
        "fer_edge.edge.crop.x_square_box__mutmut_1": "no tests",
        "fer_edge.edge.crop.x_square_box__mutmut_2": "timeout",
        "fer_edge.edge.cropper.x_f__mutmut_1": "survived",  # another module, a longer name
        "deploy.remote.xǁRemoteǁssh_argv__mutmut_1": "killed",
        "deploy.remote.xǁRemoteǁssh_argv__mutmut_2": "not checked",
    }
    assert mutation.again(status, ["fer_edge.edge.crop:missed"]) == [
        "fer_edge.edge.crop.x_crop_face__mutmut_2", "fer_edge.edge.crop.x_square_box__mutmut_1"]
    assert mutation.again(status, ["deploy.remote", "fer_edge.edge.crop:missed"]) == [
        "deploy.remote.xǁRemoteǁssh_argv__mutmut_1", "deploy.remote.xǁRemoteǁssh_argv__mutmut_2",
        "fer_edge.edge.crop.x_crop_face__mutmut_2", "fer_edge.edge.crop.x_square_box__mutmut_1"]
    assert mutation.again(status, ["fer_edge.edge.crop.x_square_box"]) == [
        "fer_edge.edge.crop.x_square_box__mutmut_1", "fer_edge.edge.crop.x_square_box__mutmut_2"]
    assert mutation.again(status, ["deploy.remote.xǁRemoteǁssh_argv:missed"]) == [
        "deploy.remote.xǁRemoteǁssh_argv__mutmut_2"]
    judged = {"fer_edge.edge.crop.x_crop_face__mutmut_2"}  # a reason on record
    assert mutation.again(status, ["fer_edge.edge.crop:unjudged"], judged) == [
        "fer_edge.edge.crop.x_square_box__mutmut_1"]
    assert mutation.again(status, ["fer_edge.edge.crop:missed"], judged) == [
        "fer_edge.edge.crop.x_crop_face__mutmut_2", "fer_edge.edge.crop.x_square_box__mutmut_1"]
    for bad, said in (("fer_edge.edge.crop:all", "give MODULE, MODULE:missed or MODULE:unjudged"),
                      ("edge/crop.py", "no mutants of edge/crop.py in the stage")):
        with pytest.raises(SystemExit, match=f"^mutation: --again {bad}: {said}"):
            mutation.again(status, [bad])

    stage = tmp_path / "repo"
    mutation.stage(stage, ["edge/config.py"], "tests")
    for where in (stage / "tests", stage / "mutants" / "tests"):  # as mutmut leaves them
        if not where.exists():
            shutil.copytree(stage / "tests", where)
        (where / "test_old.py").write_text("def test_gone(): pass\n")
    (stage / "mutants" / "fer_edge" / "benchmarks").mkdir(parents=True)
    (stage / "fer_edge" / "benchmarks" / "mutation.py").write_text("# older\n")
    (stage / "fer_edge" / "edge" / "crop.py").write_text("# older, not mutated\n")
    mutated = stage / "fer_edge" / "edge" / "config.py"
    mutation.refresh(stage, ["edge/config.py"])
    for where in (stage / "tests", stage / "mutants" / "tests"):
        assert not (where / "test_old.py").exists()
        conftest = (where / "conftest.py").read_text()
        assert conftest == (mutation.ROOT / "tests" / "conftest.py").read_text() + (
            mutation.CONFTEST_HOOK)
    for pkg in (stage / "fer_edge", stage / "mutants" / "fer_edge"):
        assert (pkg / "benchmarks" / "mutation.py").read_bytes() == (
            mutation.ROOT / "benchmarks" / "mutation.py").read_bytes()
    assert (stage / "fer_edge" / "edge" / "crop.py").read_bytes() == (
        mutation.ROOT / "edge" / "crop.py").read_bytes()
    mutated.write_text("# the checkout moved on\n")
    with pytest.raises(SystemExit, match="^mutation: edge/config.py changed since .* staged;"):
        mutation.refresh(stage, ["edge/config.py"])


@pytest.mark.slow  # ~2-4 min: CI's sample of `make mutation` (the whole run takes hours)
def test_ci_sample_of_make_mutation_the_crop_with_its_tests(tmp_path):
    """The sample of the mutation run CI makes on every push (docs/development.md): every
    mutant of the crop, tested by the crop's own test files, through the same tool and stage
    as `make mutation`. The crop is the contract between training and the runtime; its own
    tests must catch at least 95% of its mutants (survivors judged in reasons.json left out;
    the whole run measured 99.4%)."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy2(ROOT / "benchmarks" / "results" / "mutation" / "reasons.json", out)
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.benchmarks.mutation", "run", "--modules",
         "edge/crop.py", "--tests", "tests/test_contract.py tests/test_properties.py",
         "--stage", str(tmp_path / "repo"), "--out", str(out), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    got = json.loads((out / "mutation.json").read_text())
    crop = got["modules"]["fer_edge.edge.crop"]
    assert crop["not_run"] == 0 and crop["other"] == 0, crop
    assert crop["killed"] + crop["timeout"] + crop["survived"] >= 100, crop
    assert crop["score_judged"] >= 0.95, crop
    assert "fer_edge.edge.crop" in (out / "mutation.md").read_text()


def test_the_report_scores_issue_18s_scope_beside_the_whole_files(tmp_path, monkeypatch):
    """convert/tflite.py counts only its conversion gate in the scoped score, deploy only its
    command construction; other modules count whole; both figures are in the report."""
    from fer_edge.benchmarks import mutation

    assert mutation.function_of("fer_edge.convert.tflite.x_gate_problem__mutmut_3") == (
        "gate_problem"
    )
    assert mutation.function_of("deploy.remote.xǁRemoteǁssh_argv__mutmut_12") == "Remote.ssh_argv"
    assert mutation.function_of("fer_edge.edge.crop.x_crop_face__mutmut_1") == "crop_face"
    now = {
        "fer_edge.convert.tflite.x_gate_problem__mutmut_1": "killed",
        "fer_edge.convert.tflite.x_gate_problem__mutmut_2": "survived",
        "fer_edge.convert.tflite.x_convert_variant__mutmut_1": "no tests",  # out of scope
        "deploy.remote.xǁRemoteǁssh_argv__mutmut_1": "killed",
        "deploy.remote.xǁRemoteǁstream__mutmut_1": "survived",  # out of scope
        "deploy.remote.x_changed_files__mutmut_1": "no tests",  # out of scope
        "fer_edge.edge.crop.x_crop_face__mutmut_1": "killed",
        "fer_edge.edge.crop.x_crop_face__mutmut_2": "no tests",
        "fer_edge.edge.crop.x_crop_face__mutmut_3": "not checked",
    }
    (tmp_path / mutation.REASONS_FILE).write_text(
        json.dumps({"fer_edge.convert.tflite.x_gate_problem__mutmut_2": "equivalent: x"})
    )
    monkeypatch.setattr(mutation, "results", lambda stage: now)
    monkeypatch.setattr(mutation, "diff_of", lambda stage, name: "-x\n+y")
    got = mutation.report(tmp_path / "stage", tmp_path, 60.0, "run")
    # whole files: 3 caught of 8 tested; the scope: gate 1 + 1, ssh_argv 1, crop 1 + 1
    assert (got["killed"], got["tested"], got["score"]) == (3, 8, 0.375)
    assert {k: got["scope"][k] for k in ("killed", "tested", "judged")} == {
        "killed": 3, "tested": 5, "judged": 1}  # fmt: skip
    assert (got["scope"]["score"], got["scope"]["score_judged"]) == (0.6, 0.75)
    assert got["modules"]["deploy.remote"]["scope"] == {
        "killed": 1, "timeout": 0, "survived": 0, "other": 0}  # fmt: skip
    text = (tmp_path / "mutation.md").read_text()
    assert "Over issue 18's scope (whole files, except only the conversion gate" in text
    assert "tflite.gate_problem, deploy.remote_from" in text
    assert "): 75.0% judged, 60.0% raw (3 of 5)." in text


def test_a_survivor_that_changes_only_help_text_is_judged_by_the_stated_rule():
    from fer_edge.benchmarks.mutation import judged_by_rule

    line = '-        "--pi", default="", help="user@host (or a Host from ~/.ssh/config)"'
    for changed in (
        '+        "--pi", default="", help="XXuser@host (or a Host from ~/.ssh/config)XX"',
        '+        "--pi", default="", help="USER@HOST (OR A HOST FROM ~/.SSH/CONFIG)"',
        '+        "--pi", default="", help=None',
        '+        "--pi", default="", )',
    ):
        diff = line + "\n-    )\n" + changed if changed.endswith(")") else line + "\n" + changed
        assert judged_by_rule(diff).startswith("harmless"), diff
    # a default, an option's name or anything beside the help text is behaviour: not judged
    for changed in (
        '+        "--pi", default="XXXX", help="user@host (or a Host from ~/.ssh/config)"',
        '+        "--PI", default="", help="user@host (or a Host from ~/.ssh/config)"',
        '+        "--pi", help="user@host (or a Host from ~/.ssh/config)"',
    ):
        assert judged_by_rule(line + "\n" + changed) == "", changed
    assert judged_by_rule("-    x = 1\n+    x = 2") == ""
