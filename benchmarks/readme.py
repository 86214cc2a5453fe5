"""The docs' figures, rendered from result files: no measured number in them is typed by hand.

    python -m fer_edge.benchmarks.readme [--results DIR] [--check] [--readme FILE ...]

Every measured figure in README.md and docs/*.md sits in a block

    <!-- figures:NAME -->
    ...
    <!-- /figures:NAME -->

whose content this module renders from one results folder (`benchmarks/results/<machine>-
<date>/`, written by `make figures` in one go on one machine) and from the shipped models'
reports. Each block names the command, machine and date it comes from. A block may sit in any
of the files; each name appears once across them. `--check` changes nothing and exits 1 when a
file differs from what the results give (tests/test_readme.py runs it), so a figure cannot
drift from its source.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from fer_edge.edge.config import DEFAULT_MODEL_FILE, SEVEN_MODEL_FILE, TTA_MODEL_FILE
from fer_edge.edge.errors import ConfigError, FerEdgeError
from fer_edge.edge.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BLOCK = re.compile(
    r"<!-- figures:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /figures:(?P=name) -->", re.S
)
SHIPPED = (DEFAULT_MODEL_FILE, TTA_MODEL_FILE, SEVEN_MODEL_FILE)
MAKE_FIGURES = "`make figures`"
# Not measured here: figures quoted in issue #9 for the approaches this project set out to beat
# (accuracy on FER2013 PrivateTest with FER2013's labels). Kept in one place, rendered wherever
# the docs compare against them.
QUOTED_BASELINES = {
    "notebook, 5 classes": 0.728,  # the notebook project this grew out of, as it claims
    "mini-Xception, 5 classes": 0.743,  # 58k parameters
    "mini-Xception, 7 classes": 0.659,
}


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md page: the files whose figure blocks are rendered."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def dated_results(root: Path = RESULTS_ROOT) -> list[Path]:
    """The <machine>-<YYYYMMDD> folders, newest first (emulated-Pi results aside)."""
    dated = [p for p in root.glob("*-2*") if p.is_dir() and re.search(r"-\d{8}$", p.name)]
    if not dated:
        raise ConfigError(f"{root}: no results folder; run make figures")
    return sorted(dated, key=lambda p: (p.name[-8:], p.stat().st_mtime), reverse=True)


def newest_results(root: Path = RESULTS_ROOT) -> Path:
    """The most recent <machine>-<YYYYMMDD> folder."""
    return dated_results(root)[0]


class Sources:
    """Result files, each from the newest dated folder that holds it, read on first use.

    `make cards` and `make bench` may run on different days (a new model needs new cards, not
    new FPS figures): each block's stamp names the folder, machine and date of its own file.
    """

    def __init__(self, results: Path, older: list[Path] | None = None):
        self.dir = results
        self.folders = [results, *(older or [])]
        self._cache: dict[str, dict | list | None] = {}
        self._where: dict[str, Path] = {}

    def folder(self, name: str) -> Path:
        """The folder `name`.json (or .md) is read from: the newest that has it."""
        if name not in self._where:
            found = [d for d in self.folders if (d / f"{name}.json").is_file()]
            self._where[name] = found[0] if found else self.dir
        return self._where[name]

    def get(self, name: str):
        if name not in self._cache:
            path = self.folder(name) / f"{name}.json"
            self._cache[name] = json.loads(path.read_text()) if path.is_file() else None
        return self._cache[name]

    def need(self, name: str, command: str):
        found = self.get(name)
        if found is None:
            raise ConfigError(f"{self.dir / (name + '.json')}: missing; run {command}")
        return found

    def rel(self, name: str = "") -> str:
        d = self.folder(name) if name else self.dir
        try:
            return str(d.resolve().relative_to(ROOT))
        except ValueError:
            return str(d)


def stamp(result: dict, command: str, src: Sources, what: str = "", name: str = "") -> str:
    m = result["machine"]
    date = result["created"][:10]
    name = name or (what.rsplit(".", 1)[0] if what else "")
    where = f"`{src.rel(name)}/{what}`" if what else f"`{src.rel(name)}/`"
    return f"*{command} on {m['cpu']} ({m['cores']} cores), {date}: {where}*"


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(columns: list[str], rows: list[list], text: int = 1) -> list[str]:
    align = "|---" * text + "|---:" * (len(columns) - text) + "|"
    out = ["| " + " | ".join(columns) + " |", align]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


# --- the shipped models ---------------------------------------------------------------------


def cards(src: Sources) -> list[dict]:
    found = {c["model"]: c for c in src.need("models", "make cards")}
    return [found[m] for m in SHIPPED if m in found]


def models_block(src: Sources) -> list[str]:
    from fer_edge.evaluation.modelcard import cards_table

    cs = cards(src)
    line = stamp(cs[0], "`make cards`", src, "models.md")
    return [line, "", *cards_table(cs)]


def robustness_block(src: Sources) -> list[str]:
    cs = cards(src)
    kinds = list(cs[0]["robustness"]["table"])
    rows = [["none (clean)", *(pct(c["robustness"]["clean"]) for c in cs)]]
    rows += [[k, *(pct(c["robustness"]["table"][k]["2"]) for c in cs)] for k in kinds]
    rows.append(["**mean**", *(f"**{pct(c['robustness']['mean']['2'])}**" for c in cs)])
    rows.append(
        ["drop from clean", *(f"{c['robustness']['drop_at_medium_points']:.1f} pt" for c in cs)]
    )
    names = [c["model"].removesuffix(".tflite") for c in cs]
    names[0] += " (default)"
    return table(["degradation (severity 2)", *names], rows)


def models_summary_block(src: Sources) -> list[str]:
    student, six = cards(src)[:2]
    s_pub, t_pub = (c["public_ferplus_majority"]["accuracy"] for c in (student, six))
    s_priv, t_priv = (c["private_fer2013"]["accuracy"] for c in (student, six))
    s_ms, t_ms = (c["latency_ms"]["1"]["p50"] for c in (student, six))
    s_drop, t_drop = (c["robustness"]["drop_at_medium_points"] for c in (student, six))
    vs_crowd = "better" if s_pub >= t_pub else "worse"
    vs_fer = "ahead of" if s_priv >= t_priv else "*behind*"
    return [
        "**What the figures say.** Against the crowd's labels (FER+ majority, PublicTest) the "
        f"default (two nets, one view each) is {abs(100 * (s_pub - t_pub)):.1f} points "
        f"{vs_crowd} than "
        f"the six-view model; under the capture degradations it loses {s_drop:.1f} points at "
        f"medium severity where the six-view model loses {t_drop:.1f}. It costs one interpreter "
        f"run per face instead of six: {s_ms:.2f} ms per face against {t_ms:.2f} ms at one "
        f"thread in the same run ({t_ms / s_ms:.1f}x less). Against FER2013's own noisy labels "
        f"(PrivateTest) it is {abs(100 * (s_priv - t_priv)):.1f} points {vs_fer} the six-view "
        "model.",
    ]


def tried_block(src: Sources) -> list[str]:
    """Every training run kept in models/ and models/tried/: recipe, wall time, accuracy."""
    reports = sorted((ROOT / "models").glob("*.report.json")) + sorted(
        (ROOT / "models" / "tried").glob("*.report.json")
    )
    rows = []
    for path in reports:
        rep = json.loads(path.read_text())
        if rep.get("stage") != 1 or "splits" not in rep:
            continue
        cfg_path = path.with_name(path.name.replace(".report.json", ".config.json"))
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        splits = rep["splits"]
        plus = splits.get("public_ferplus-majority", {}).get("accuracy")
        where = "shipped" if path.parent.name == "models" else "tried"
        rows.append(
            [
                f"`{path.name.removesuffix('.report.json')}` ({where})",
                recipe(cfg, rep, path.name),
                f"{rep['wall_seconds'] / 60:.0f} min",
                pct(splits["private"]["accuracy"]) if "private" in splits else "–",
                pct(plus) if plus is not None else "–",
            ]
        )
    columns = ["Keras model", "recipe", "wall", "PrivateTest (FER2013)", "PublicTest (FER+)"]
    return [
        "*from each run's own report, `models/*.report.json` and `models/tried/` (Keras "
        "models, before conversion)*",
        "",
        *table(columns, rows, 2),
    ]


def recipe(cfg: dict, rep: dict, name: str) -> str:
    """A run's recipe in a line; configs older than an option show its behaviour then."""
    init = Path(cfg.get("init_from") or "").stem
    if not init:
        start = "ImageNet init"
    elif name.startswith(init):
        start = "continues its first part"
    else:
        start = f"init {init}"
    parts = [start, cfg.get("labels") or "fer2013"]
    if cfg.get("teacher"):
        parts.append(f"+ {cfg.get('teacher_weight')} teacher")
    if cfg.get("robust_augment"):
        parts.append(f"degradations p {cfg['robust_augment']}")
    model = cfg.get("model", {})
    parts.append(f"alpha {model.get('alpha')} at {model.get('backbone_size')} px")
    parts.append(f"tta {cfg.get('tta') or '–'}")
    parts.append(f"{rep.get('epochs_run')} epochs")
    # before --validation existed, early stopping watched PublicTest
    parts.append(f"early stop on {rep.get('validation') or 'PublicTest'}")
    return ", ".join(str(p) for p in parts)


# --- conversion -----------------------------------------------------------------------------


def accuracy_block(src: Sources) -> list[str]:
    acc = src.need("accuracy", "make bench-accuracy")
    md = (src.folder("accuracy") / "accuracy.md").read_text()
    body = md[md.index("| variant |") :].split("\n\n")[0]
    cmp = acc.get("int8_vs_float32") or {}
    lines = [stamp(acc, "`make bench-accuracy`", src, "accuracy.md"), "", body]
    if cmp:
        lines += [
            "",
            f"**int8 vs float32: {cmp['size_ratio']:.1f}x smaller file ({cmp['int8_kib']} vs "
            f"{cmp['float32_kib']} KiB), PrivateTest accuracy "
            f"{cmp['private_accuracy_points']:+.2f} points.**",
        ]
    return lines


def conversion_block(src: Sources) -> list[str]:
    rows = []
    for stem, model in (("fer", DEFAULT_MODEL_FILE), ("fer_tta", TTA_MODEL_FILE),
                        ("fer7", SEVEN_MODEL_FILE)):  # fmt: skip
        path = ROOT / "models" / f"{stem}_convert.report.json"
        if not path.is_file():
            continue
        rep = json.loads(path.read_text())
        v = rep["variants"]["int8"]
        rows.append(
            [
                model,
                f"`{Path(rep['model']).name}`",
                f"{100 * v['agreement']:.1f}%",
                f"{-100 * v['accuracy_drop']:+.1f}",
                rep["check_faces"],
            ]
        )
    columns = ["int8 model", "from", "top-1 agreement with Keras", "accuracy vs Keras, points",
               "faces checked"]  # fmt: skip
    return ["*`models/*_convert.report.json`, written by `make convert` / `make convert-extra`*",
            "", *table(columns, rows, 2)]  # fmt: skip


# --- the runtime ----------------------------------------------------------------------------


def bench_stamp_block(src: Sources) -> list[str]:
    p = src.need("pipeline", "make bench")
    return [stamp(p, '`make bench ARGS="--rounds 3"`', src, name="pipeline")]


PIPELINE_ORDER = (
    "default", "v1-default", "v1+student", "v1+roi", "v1+linear-resize", "v1+threads",
    "v1+batch", "v1+zero-copy", "v1+smoothing-per-frame", "v1+adaptive-width", "default+roi",
    "default-no-roi", "classify_every_1", "threads_2", "float32", "haar", "detect_every_1",
    "reference", "v1-reference", "decode", "baseline",
)  # fmt: skip


def pipeline_block(src: Sources) -> list[str]:
    p = src.need("pipeline", "make bench")
    cfg = p["configs"]
    v1 = cfg["v1-default"]["fps"]
    rows = []
    for name in [n for n in PIPELINE_ORDER if n in cfg] + [
        n for n in cfg if n not in PIPELINE_ORDER
    ]:
        c = cfg[name]
        agree = c.get("agreement")
        rows.append(
            [
                name,
                f"{c['fps']:.0f}",
                f"{c['fps'] / v1:.2f}x",
                f"{c.get('cpu_ms_per_frame') or 0:.2f}",
                f"{c.get('main_thread_cpu_ms_per_frame') or 0:.2f}",
                pct(c["face_fraction"]) if c.get("face_fraction") is not None else "–",
                pct(agree["label_agreement"]) if agree else "–",
            ]
        )
    columns = ["config", "FPS (median of rounds)", "vs v1-default", "CPU ms/frame",
               "pipeline-thread CPU ms/frame", "frames with a face", "label agreement"]  # fmt: skip
    d = cfg["default"]
    ratio = d["fps"] / v1
    rc = p.get("runtime_check") or {}
    met = "**met**" if ratio >= 2 else "**not met**"
    text = (
        f"The default configuration does **{ratio:.2f}x the FPS of `v1-default`** "
        f"({d['fps']:.0f} vs {v1:.0f} FPS) and needs "
        f"{p['work_ratio_vs_v1']['cpu_ms_per_frame']:.2f}x less CPU time per frame, with a face "
        f"labelled in {pct(d['face_fraction'])} of frames and "
        f"{pct(d['agreement']['label_agreement'])} label agreement with the every-frame "
        f"reference. The issue's target of 2x in the same run is {met} in this run."
    )
    if "baseline" in cfg:
        text += (
            " The original approach (full-frame Haar + a float Keras MobileNetV2 at 224 px with "
            f"`model.predict` per face, `baseline`, timed on 100 frames) is "
            f"{d['fps'] / cfg['baseline']['fps']:.0f}x slower."
        )
    if rc:
        spread = rc.get("run_fps_all") or [rc["run_fps"]]
        text += (
            f" `fer-edge run` on the same video reports {rc['run_fps']:.0f} FPS itself, the "
            f"median of {len(spread)} runs from {min(spread):.0f} to {max(spread):.0f} (ratio "
            f"{rc['ratio']:.2f} to the bench): at these rates one run takes about a second, and "
            "this 2-core VM's speed drifts from one second to the next."
        )
    return [*table(columns, rows), "", text]


def latency_block(src: Sources) -> list[str]:
    lat = src.need("latency", "make bench")
    rows = [
        [name, *(f"{r['age'][k]:.1f}" for k in ("p50_ms", "p90_ms", "p99_ms")),
         f"{r['fps']:.1f}", r["dropped_by_reader"], r["not_delivered"]]
        for name, r in lat["runs"].items() if "age" in r
    ]  # fmt: skip
    columns = ["run", "age p50 ms", "age p90 ms", "age p99 ms", "processed FPS",
               "dropped by reader", "not delivered"]  # fmt: skip
    d30 = lat["runs"]["default@30"]
    inside = "inside" if d30["age"]["p99_ms"] <= 1000 / 30 else "outside"
    text = (
        f"At 30 fps the default's p99 frame age is {d30['age']['p99_ms']:.1f} ms, {inside} one "
        f"frame interval (33 ms); {d30['dropped_by_reader']} frames were dropped by the reader "
        f"in the {d30['seconds']:.0f} s timed."
    )
    return [*table(columns, rows), "", text]


def crowd_block(src: Sources) -> list[str]:
    crowd = src.need("crowd", "make bench")
    runs = crowd["runs"]
    rows = []
    for key, r in runs.items():
        if not key.startswith("default/") or "fps" not in r:
            continue
        single = runs.get(f"default-unbatched/{r['faces']}", {})
        rows.append(
            [r["faces"], f"{r['faces_per_frame']:.2f}", f"{r['fps']:.0f}",
             f"{r['ms_per_frame']:.2f}", f"{r['ms_per_face']:.2f}",
             f"{single['fps']:.0f}" if "fps" in single else "–"]
        )  # fmt: skip
    columns = ["faces in the frame", "found per frame", "FPS", "ms/frame", "ms/face",
               "FPS, one call per face"]  # fmt: skip
    nine = runs.get("default/9", {})
    text = f"Nine faces per frame run at {nine['fps']:.0f} FPS." if "fps" in nine else ""
    return [*table(columns, rows, 0), "", text]


def pi_cost_block(src: Sources) -> list[str]:
    cost = src.need("pi_cost", "make bench")
    md = (src.folder("pi_cost") / "pi_cost.md").read_text()
    body = md[md.index("| stage |") : md.index("\nSources:")].strip()
    return [stamp(cost, "`make bench`", src, "pi_cost.md"), "", body]


def sinks_block(src: Sources) -> list[str]:
    sinks = src.need("sinks", "make figures")
    runs, cpu = sinks["runs"], sinks.get("median_cpu_ms_per_frame", {})
    med = {v: sinks["median_fps"][v] for v in runs if sinks["median_fps"].get(v)}
    base, base_cpu = med.get("plain"), cpu.get("plain")
    rows = [
        [v, f"{m:.0f}", f"{min(r['fps'] for r in runs[v] if 'fps' in r):.0f}–"
         f"{max(r['fps'] for r in runs[v] if 'fps' in r):.0f}", f"{m / base:.2f}" if base else "–",
         f"{cpu[v]:.2f}" if cpu.get(v) else "–",
         f"{cpu[v] / base_cpu:.2f}" if cpu.get(v) and base_cpu else "–",
         (sinks.get("repos", {}).get(v) or {}).get("commit") or sinks.get("commit", "")]
        for v, m in med.items()
    ]  # fmt: skip
    columns = ["variant", "median FPS", "range of rounds", "FPS vs plain", "CPU ms/frame",
               "CPU vs plain", "commit"]  # fmt: skip
    return [
        stamp(
            sinks,
            f"`python -m fer_edge.benchmarks.sinks --rounds {sinks.get('rounds', '?')}`",
            src,
            "sinks.json",
        ),
        "",
        *table(columns, rows),
    ]


def emulated_pi_block(src: Sources) -> list[str]:
    pi = src.need("emulated_pi", "make figures")
    oses = list(pi["os"])
    get = [pi["os"][o] for o in oses]
    rows = [
        ["rootfs build, once per recipe", *(f"{g['rootfs_build_s']:.0f} s" for g in get)],
        ["same label as x86, same pixels", *(f"{g['same']['same']} of {g['same']['face_frames']}"
                                             for g in get)],
        ["largest probability / box difference, same pixels",
         *(f"{g['same']['max_dp']:.4f} / {g['same']['max_box']:.0f} px" for g in get)],
        ["same label as x86, each side decoding the video",
         *(f"{g['decoded']['same']} of {g['decoded']['face_frames']}" for g in get)],
        ["largest probability / box difference, each side decoding",
         *(f"{g['decoded']['max_dp']:.3f} / {g['decoded']['max_box']:.0f} px" for g in get)],
        ["runtime on the Pi, emulated", *(f"{g['fps']:.1f} FPS" for g in get)],
        ["the deploy test, rootfs cached", *(f"{g['test_s']:.0f} s" for g in get)],
    ]  # fmt: skip
    return [stamp(pi, "`make figures` (tests/test_pi_emulated.py)", src, "emulated_pi.json"),
            "", *table(["", *(pi["os"][o]["label"] for o in oses)], rows)]  # fmt: skip


def pi_faults_block(src: Sources) -> list[str]:
    """docs/raspberry-pi.md's fault table: the whole emulated Pi's faults and the disk-full
    tests, from one `make pi-faults` run (tests/test_pi_system.py)."""
    f = src.need("pi_faults", "make pi-faults")
    pi, disk, full = f["whole_pi"], f["disk_full"], f["dev_full"]
    rows = [[r["fault"], "yes" if r["survived"] else "no",
             "never" if r["recovery_s"] is None else f"{r['recovery_s']} s to the next event",
             r["lost"], r["torn"]] for r in pi["rows"]]  # fmt: skip
    rows += [
        ["an upgrade whose pip install fails", "yes, the same process kept writing",
         f"nothing to recover (deploy failed in {pi['failed_upgrade_s']} s)", 0, 0],
        ["disk full (a 64 KiB tmpfs that fills)", "yes, kept running",
         f"{disk['resumed_after_s']:.1f} s after space returned",
         f"{disk['dropped']} dropped while full", disk["torn"]],
        ["disk full (`--events /dev/full`)",
         "yes, kept running" if full["exit"] == 0 else f"no (exit {full['exit']})",
         "—", "all (nothing fits)", 0],
    ]  # fmt: skip
    return [
        stamp(f, "`make pi-faults` (tests/test_pi_system.py)", src, "pi_faults.json"),
        "",
        *table(["fault", "survived", "recovery", "events lost", "torn lines"], rows, text=3),
        "",
        f"Power-on to SSH login {pi['boot_to_ssh_s']} s; the first `make deploy` (venv and pip "
        f"on the emulated Pi, service started) {pi['deploy_s']} s; the upgrade to "
        f"`PI_EVENTS_SYNC=0` {pi['upgrade_s']} s.",
    ]


def default_size_block(src: Sources) -> list[str]:
    return [f"{cards(src)[0]['bytes'] / 1024:.0f} KiB"]


def quoted_baselines_block(src: Sources) -> list[str]:
    q = {k: pct(v) for k, v in QUOTED_BASELINES.items()}
    return [
        "For reference (figures quoted in issue #9, not measured here), on the same five "
        f"PrivateTest classes: the notebook project this grew out of claims "
        f"{q['notebook, 5 classes']} and a 58k-parameter mini-Xception scores "
        f"{q['mini-Xception, 5 classes']}; on all seven, mini-Xception measures "
        f"{q['mini-Xception, 7 classes']}."
    ]


HEADLINE_NAMES = {
    DEFAULT_MODEL_FILE: "**`{}`**, the default: two nets, one view per face",
    TTA_MODEL_FILE: "`{}` (`--tta`), the first release: six views per face",
    SEVEN_MODEL_FILE: "`{}`: seven classes, six views",
}


def headline_block(src: Sources) -> list[str]:
    """The README's summary: accuracy on both rulers against the baselines, size, speed."""
    cs = cards(src)
    def lowest_recall(report: dict) -> str:
        name, r = min(report["per_class"].items(), key=lambda kv: kv[1]["recall"])
        return f"{r['recall']:.2f} ({name})"

    rows = [
        [HEADLINE_NAMES.get(c["model"], "`{}`").format(c["model"]), len(c["labels"]),
         f"{c['private_fer2013']['macro_f1']:.3f}", lowest_recall(c["private_fer2013"]),
         pct(c["private_fer2013"]["accuracy"]),
         f"{c['public_ferplus_majority']['macro_f1']:.3f}",
         pct(c["public_ferplus_majority"]["accuracy"]),
         f"{c['bytes'] / 1024:.0f}", f"{c['latency_ms']['1']['p50']:.2f}"]
        for c in cs
    ]  # fmt: skip
    quoted = "quoted in issue #9, not measured here"
    for name, acc in QUOTED_BASELINES.items():
        who, classes = name.split(", ")
        label = "the notebook project this grew out of" if who == "notebook" else who
        rows.append([f"{label} ({quoted})", classes.split()[0], "–", "–", pct(acc), "–", "–",
                     "–", "–"])  # fmt: skip
    columns = ["model", "classes", "PrivateTest macro-F1 (FER2013 labels)", "lowest recall",
               "acc", "PublicTest macro-F1 (FER+ majority)", "acc", "file KiB",
               "ms per face, 1 thread"]  # fmt: skip
    student, six = cs[:2]
    s_pub, t_pub = (c["public_ferplus_majority"]["accuracy"] for c in (student, six))
    s_priv, t_priv = (c["private_fer2013"]["accuracy"] for c in (student, six))
    s_drop, t_drop = (c["robustness"]["drop_at_medium_points"] for c in (student, six))
    verdict = (
        f"Against the crowd's labels the default is {abs(100 * (s_pub - t_pub)):.1f} points "
        f"{'better' if s_pub >= t_pub else 'worse'} than the six-view model, against FER2013's "
        f"{abs(100 * (s_priv - t_priv)):.1f} points {'better' if s_priv >= t_priv else 'worse'}; "
        f"under the capture degradations (blur, noise, low light, occlusion, ...) it loses "
        f"{s_drop:.1f} points at medium severity where the six-view model loses {t_drop:.1f}."
    )
    p = src.need("pipeline", "make bench")
    cfg = p["configs"]
    d, v1 = cfg["default"]["fps"], cfg["v1-default"]["fps"]
    m = cs[0]["machine"]
    text = (
        f"The runtime on the 720p test video (`make bench`, one face, {m['cpu']}, "
        f"{m['cores']} cores): {d:.0f} FPS with the default settings, {d / v1:.2f}x the "
        f"runtime before the throughput work (`v1-default`, the six-view model: {v1:.0f} FPS)"
    )
    if "baseline" in cfg:
        text += (
            f"; the original approach (Haar + a float Keras model, `model.predict` per face) "
            f"ran {cfg['baseline']['fps']:.0f} FPS"
        )
    text += "."
    pi = src.get("emulated_pi")
    if pi:
        fps = ", ".join(f"{o['fps']:.1f} FPS on {o['label']}" for o in pi["os"].values())
        text += (
            f" Under qemu-user emulation of a Pi 4's CPU on the same machine: {fps} "
            "(emulation checks that it works, not how fast a Pi is)."
        )
    return [
        headline_stamp(cs[0], p, src),
        "",
        *table(columns, rows),
        "",
        verdict,
        "",
        text,
    ]


def headline_stamp(card: dict, pipeline: dict, src: Sources) -> str:
    """One stamp when cards, bench and the emulated Pi come from one results folder, else one
    for each folder the figures were read from."""
    pi = src.get("emulated_pi")
    same_pi = not pi or src.folder("emulated_pi") == src.folder("pipeline")
    if src.folder("models") == src.folder("pipeline") and same_pi:
        return stamp(
            card, "`make figures` (`make cards`, `make bench`, the emulated-Pi test)", src,
            name="models",
        )  # fmt: skip
    parts = [stamp(card, "`make cards` (accuracy, size, ms per face)", src, "models.md")]
    if same_pi:
        parts.append(stamp(pipeline, "`make bench` (FPS, the emulated Pi)", src, name="pipeline"))
    else:
        parts.append(stamp(pipeline, "`make bench` (FPS)", src, name="pipeline"))
        parts.append(stamp(pi, "`make figures` (the emulated Pi)", src, name="emulated_pi"))
    return "; ".join(parts)


RENDERERS = {
    "default-size": default_size_block,
    "headline": headline_block,
    "quoted-baselines": quoted_baselines_block,
    "models": models_block,
    "models-summary": models_summary_block,
    "robustness": robustness_block,
    "tried": tried_block,
    "conversion": conversion_block,
    "accuracy": accuracy_block,
    "bench-stamp": bench_stamp_block,
    "latency": latency_block,
    "pipeline": pipeline_block,
    "crowd": crowd_block,
    "pi-cost": pi_cost_block,
    "sinks": sinks_block,
    "emulated-pi": emulated_pi_block,
    "pi-faults": pi_faults_block,
}


def render(text: str, src: Sources) -> str:
    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise ConfigError(f"figure block figures:{name}: no renderer of that name")
        body = "\n".join(RENDERERS[name](src)).rstrip("\n")
        inline = not match["body"].endswith("\n")  # a figure inside a sentence
        if inline and "\n" not in body:
            return f"<!-- figures:{name} -->\n{body}<!-- /figures:{name} -->"
        return f"<!-- figures:{name} -->\n{body}\n<!-- /figures:{name} -->"

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fer_edge.benchmarks.readme", description=__doc__.splitlines()[0]
    )
    p.add_argument("--results", default="", help="results folder ('' = the newest dated one)")
    p.add_argument(
        "--readme",
        action="append",
        default=None,
        metavar="FILE",
        help="a file to render, repeatable (default: README.md and every docs/*.md)",
    )
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if out of date")
    args = p.parse_args(argv)
    files = [Path(f) for f in args.readme] if args.readme else doc_files()
    try:
        if args.results:
            src = Sources(Path(args.results))
        else:
            newest, *older = dated_results()
            src = Sources(newest, older)
        rendered = []
        for path in files:
            old = path.read_text()
            rendered.append((path, old, render(old, src)))
    except (FerEdgeError, OSError, KeyError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, old, new in rendered if new != old]
    if args.check:
        for path in stale:
            print(f"{path}: figures differ from {src.rel()}; run {p.prog}", file=sys.stderr)
        return 1 if stale else 0
    for path, old, new in rendered:
        if new != old:
            atomic_write_text(path, new)
        blocks = len(BLOCK.findall(new))
        if blocks:
            print(f"{path}: {blocks} figure blocks from {src.rel()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
