"""Stage 1: MobileNetV2 transfer learning on FER2013 (five classes by default).

Reads like a script on purpose: data -> model -> fit -> save -> report. Resumable: a killed run
continues from its last epoch when started again with the same output folder.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from fer_edge.edge.contract import Contract, write_contract
from fer_edge.edge.fileio import atomic_write_text
from fer_edge.evaluation.data import load_fer2013, stratified_subset
from fer_edge.train.config import Stage1Config, dump
from fer_edge.train.datasets import balanced_class_weights, make_dataset, sample_class_weights

log = logging.getLogger(__name__)


def distribution_strategy():
    """All local GPUs, or several workers when TF_CONFIG is set; the default strategy on CPU."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cosine_with_warmup(peak: float, floor: float, warmup_steps: int, total_steps: int):
    import keras

    decay_steps = max(1, total_steps - warmup_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=floor if warmup_steps else peak,
        decay_steps=decay_steps,
        alpha=floor / peak,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def save_model_atomic(model, path: Path) -> None:
    """Keras writes in place; write beside it and rename so a crash never leaves half a model."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_run(model, stem: Path, contract: Contract, cfg, suffixes=(".keras",)) -> None:
    """The model in each format with its contract beside it, and the config that made it."""
    for suffix in suffixes:
        save_model_atomic(model, stem.with_suffix(suffix))
        write_contract(stem.with_suffix(suffix), contract)
    atomic_write_text(stem.with_suffix(".config.json"), dump(cfg))


def predict_probs(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return model.predict(x[..., None].astype(np.float32), batch_size=batch_size, verbose=0)


def versions() -> dict:
    import keras
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
    }


def init_weights(net, path: str) -> dict | None:
    """Copy the weights of an earlier run into `net`; returns that run's report, if any.

    Layers are matched by name. Only the classifier (`probs`) may differ, so a five-class run
    can start a seven-class one; any other difference is a different architecture.
    """
    from fer_edge.edge.errors import ConfigError
    from fer_edge.train.model import load_keras, trained_net

    prior = trained_net(load_keras(path))
    prior_layers = {layer.name: layer for layer in prior.layers}
    for layer in net.layers:
        if not layer.weights:
            continue
        src = prior_layers.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        same = src is not None and [tuple(w.shape) for w in src.weights] == shapes
        if same:
            layer.set_weights(src.get_weights())
        elif layer.name == "probs":
            log.info("--init-from %s: new classifier layer (%s)", path, shapes)
        else:
            raise ConfigError(
                f"--init-from {path}: its architecture differs from this config's model "
                f"(layer {layer.name})"
            )
    report = Path(path).with_suffix(".report.json")
    return json.loads(report.read_text()) if report.is_file() else None


def teacher_targets(
    teacher: str, data, idx: np.ndarray, labels: tuple[str, ...]
) -> tuple[np.ndarray, dict]:
    """The teacher's probabilities on the clean training faces, computed once and cached."""
    import hashlib

    from fer_edge.edge.contract import read_contract
    from fer_edge.edge.errors import ConfigError
    from fer_edge.evaluation.data import cache_dir
    from fer_edge.train.model import load_keras

    path = Path(teacher)
    if not path.is_file():
        raise ConfigError(f"--teacher {teacher}: model not found")
    contract = read_contract(path)
    if tuple(contract.labels) != tuple(labels):
        raise ConfigError(
            f"--teacher {teacher}: its classes ({', '.join(contract.labels)}) differ from "
            f"this run's ({', '.join(labels)})"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{digest}{data.sha256}".encode() + idx.tobytes()).hexdigest()[:16]
    cached = cache_dir() / f"teacher-{key}.npy"
    if cached.is_file():
        probs = np.load(cached)
    else:
        log.info("teacher %s: predicting %d faces once (cache %s)", path, len(idx), cached)
        probs = predict_probs(load_keras(path), data.images[idx]).astype(np.float32)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, probs)
        os.replace(tmp, cached)
    info = {"model": str(path), "sha256": digest, "tta": contract.tta, "cache": str(cached)}
    return probs, info


def holdout_mask(targets: np.ndarray, share: float, seed: int) -> np.ndarray:
    """The training faces held out for early stopping (and calibration): stratified by top vote."""
    hold = np.zeros(len(targets), bool)
    hold[stratified_subset(targets.argmax(1), int(share * len(targets)), seed)] = True
    return hold


def ensemble_targets(
    teachers: str, data, idx: np.ndarray, labels: tuple[str, ...]
) -> tuple[np.ndarray, dict | list]:
    """One teacher's probabilities, or the normalised geometric mean of several (comma-separated):
    averaging log-probabilities keeps a class only where every teacher allows it."""
    paths = [p.strip() for p in teachers.split(",") if p.strip()]
    parts = [teacher_targets(p, data, idx, labels) for p in paths]
    if len(parts) == 1:
        return parts[0]
    logp = np.mean([np.log(np.clip(p, 1e-7, 1.0)) for p, _ in parts], axis=0)
    probs = np.exp(logp - logp.max(1, keepdims=True))
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32), [i for _, i in parts]


def _total(report: dict | None, key: str) -> float:
    """`key` ("epochs" or "wall_seconds") over an earlier run and its own predecessors."""
    if not report:
        return 0
    return report.get(f"total_{key}", report.get("epochs_run" if key == "epochs" else key, 0))


def history_summary(history_csv: Path) -> tuple[int, int]:
    """(epochs run, best epoch by validation accuracy, 1-based) from the run's history file,
    which holds every epoch of a run resumed from its checkpoint, not only the last part's."""
    import csv

    with open(history_csv, newline="") as f:
        val = [float(row["val_accuracy"]) for row in csv.DictReader(f)]
    return len(val), (int(np.argmax(val)) + 1 if val else 0)


def run_stage1(cfg: Stage1Config) -> dict:
    import keras
    import tensorflow as tf
    from fer_edge.edge.errors import ConfigError
    from fer_edge.evaluation.ferplus import load_votes, split_targets
    from fer_edge.evaluation.metrics import classification_report
    from fer_edge.train.model import TTA_VIEWS, build_model, inference_model, resolve_classes

    if cfg.tta not in TTA_VIEWS:
        raise ConfigError(f"--tta {cfg.tta!r}: choose from {', '.join(TTA_VIEWS)}")
    t0 = time.time()
    keras.utils.set_random_seed(cfg.seed)
    labels = resolve_classes(cfg.model.classes)
    k = len(labels)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / f".{cfg.name}.ckpt"  # resume state; not a shipped artefact
    # Wall time of the parts before a resume (BackupAndRestore keeps the weights and the epoch,
    # this file the time), so the report covers the whole run.
    part_wall = ckpt_dir / "wall_seconds"
    resumed = ckpt_dir.is_dir() and any(ckpt_dir.glob("*.weights.h5"))
    earlier_wall = float(part_wall.read_text()) if resumed and part_wall.is_file() else 0.0
    if not resumed:  # a fresh run: an earlier run's history under this name is not its own
        (out / f"{cfg.name}.history.csv").unlink(missing_ok=True)

    data = load_fer2013(cfg.data or None)
    votes = load_votes(cfg.ferplus or None) if cfg.labels != "fer2013" else None
    x_tr, t_tr, idx_tr = split_targets(
        data, "train", labels, cfg.labels, votes,
        drop_test_duplicates=cfg.drop_test_duplicates, fer2013_votes=cfg.fer2013_votes,
    )  # fmt: skip
    if cfg.validation == "holdout":
        # A stratified share of the training faces validates (early stopping), so PublicTest
        # and PrivateTest stay tests that no choice was made on.
        val_rule = f"train holdout ({cfg.labels}, top vote)"
        hold = holdout_mask(t_tr, cfg.holdout, cfg.seed)
        x_va, t_va = x_tr[hold], np.eye(k, dtype=np.float32)[t_tr[hold].argmax(1)]
        x_tr, t_tr, idx_tr = x_tr[~hold], t_tr[~hold], idx_tr[~hold]
    elif cfg.validation == "public":
        val_rule = "PublicTest " + ("fer2013" if cfg.labels == "fer2013" else "ferplus-majority")
        x_va, t_va, _ = split_targets(data, "public", labels, val_rule.split()[1], votes)
    else:
        raise ConfigError(f"--validation {cfg.validation!r}: choose holdout or public")
    if cfg.max_train:  # after the holdout, so a smoke run validates on the same faces
        keep = stratified_subset(t_tr.argmax(1), cfg.max_train, cfg.seed)
        x_tr, t_tr, idx_tr = x_tr[keep], t_tr[keep], idx_tr[keep]
    if cfg.max_val:
        keep = stratified_subset(t_va.argmax(1), cfg.max_val, cfg.seed)
        x_va, t_va = x_va[keep], t_va[keep]
    log.info(
        "train %d images (%s), validation %d (%s), classes %s",
        len(t_tr), cfg.labels, len(t_va), val_rule, ", ".join(labels),
    )  # fmt: skip
    teacher_info = None
    if cfg.teacher:
        soft_teacher, teacher_info = ensemble_targets(cfg.teacher, data, idx_tr, labels)
        t_tr = (1.0 - cfg.teacher_weight) * t_tr + cfg.teacher_weight * soft_teacher

    weights = (
        balanced_class_weights(t_tr, k) ** cfg.class_weight_power
        if cfg.class_weights
        else np.ones(k)
    )
    train_ds = make_dataset(
        x_tr,
        t_tr,
        k,
        cfg.batch_size,
        True,
        cfg.seed,
        cfg.augment,
        sample_weights=sample_class_weights(t_tr, weights),
        robust=cfg.robust_augment,
    )
    val_ds = make_dataset(x_va, t_va, k, 256, False)
    steps = int(np.ceil(len(t_tr) / cfg.batch_size))

    with distribution_strategy().scope():
        net = build_model(cfg.model)
        previous = init_weights(net, cfg.init_from) if cfg.init_from else None
        schedule = cosine_with_warmup(
            cfg.lr, cfg.min_lr, int(cfg.warmup_epochs * steps), cfg.epochs * steps
        )
        net.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            weighted_metrics=[],
            metrics=["accuracy"],
        )
    history_csv = out / f"{cfg.name}.history.csv"

    def save_wall(epoch, logs) -> None:
        if ckpt_dir.is_dir():  # BackupAndRestore's, removed when the run ends
            atomic_write_text(part_wall, f"{earlier_wall + time.time() - t0:.1f}\n")

    callbacks = [
        keras.callbacks.BackupAndRestore(str(ckpt_dir)),
        keras.callbacks.EarlyStopping(
            "val_accuracy", patience=cfg.patience, mode="max", restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.LambdaCallback(on_epoch_end=save_wall),  # after BackupAndRestore's save
    ]
    net.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    # the history file has every epoch: this process's and, resumed, the earlier parts'
    epochs_run, best_epoch = history_summary(history_csv)

    model = inference_model(net, cfg.tta)
    stem = out / cfg.name
    wall = earlier_wall + time.time() - t0
    contract = Contract(
        labels=labels,
        input_size=cfg.model.input_size,
        tta=cfg.tta,
        provenance={"data_sha256": data.sha256, "stage": 1},
    )
    save_run(model, stem, contract, cfg, (".keras", ".h5"))

    report = {
        "stage": 1,
        "model": str(stem.with_suffix(".keras")),
        "labels": list(labels),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "wall_seconds": round(wall, 1),
        # Epochs and wall time of this run plus every run it was initialised from.
        "total_epochs": epochs_run + _total(previous, "epochs"),
        "total_wall_seconds": round(wall + _total(previous, "wall_seconds"), 1),
        "init_from": cfg.init_from or None,
        "train_images": int(len(t_tr)),
        "labels_rule": cfg.labels,
        "validation": val_rule,
        "validation_images": int(len(t_va)),
        "teacher": teacher_info,
        "data_source": data.source,
        "data_sha256": data.sha256,
        "skipped_images": list(data.skipped),
        "class_weights": [round(float(w), 4) for w in weights],
        "params": int(net.count_params()),
        "versions": versions(),
        "tf_threads": {
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "splits": {},
    }
    evals = (("public", "fer2013"), ("private", "fer2013"), ("public", "ferplus-majority"))
    for split, rule in evals:
        if rule != "fer2013" and votes is None:
            votes = load_votes(cfg.ferplus or None)
        xs, ts, _ = split_targets(data, split, labels, rule, votes)
        key = split if rule == "fer2013" else f"{split}_{rule}"
        report["splits"][key] = classification_report(
            ts.argmax(1), predict_probs(model, xs).argmax(1), labels
        )
    atomic_write_text(stem.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    return report
