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
from fer_edge.train.config import Stage1Config, dump
from fer_edge.train.data import load_fer2013
from fer_edge.train.datasets import balanced_class_weights, make_dataset, stratified_subset

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
    """Copy the weights of an earlier run into `net`; returns that run's report, if any."""
    from fer_edge.edge.errors import ConfigError
    from fer_edge.train.model import load_keras, trained_net

    prior = trained_net(load_keras(path))
    try:
        net.set_weights(prior.get_weights())
    except ValueError:
        raise ConfigError(
            f"--init_from {path}: its architecture differs from this config's model"
        ) from None
    report = Path(path).with_suffix(".report.json")
    return json.loads(report.read_text()) if report.is_file() else None


def _total(report: dict | None, key: str) -> float:
    """`key` ("epochs" or "wall_seconds") over an earlier run and its own predecessors."""
    if not report:
        return 0
    return report.get(f"total_{key}", report.get("epochs_run" if key == "epochs" else key, 0))


def run_stage1(cfg: Stage1Config) -> dict:
    import keras
    import tensorflow as tf
    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.metrics import classification_report
    from fer_edge.train.model import TTA_VIEWS, build_model, inference_model

    if cfg.tta not in TTA_VIEWS:
        raise ConfigError(f"--tta {cfg.tta!r}: choose from {', '.join(TTA_VIEWS)}")
    t0 = time.time()
    keras.utils.set_random_seed(cfg.seed)
    labels = cfg.model.labels
    k = len(labels)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / f".{cfg.name}.ckpt"  # resume state; not a shipped artefact

    data = load_fer2013(cfg.data or None)
    x_tr, y_tr = data.select("train", labels, drop_test_duplicates=cfg.drop_test_duplicates)
    x_va, y_va = data.select("public", labels)
    if cfg.max_train:
        keep = stratified_subset(y_tr, cfg.max_train, cfg.seed)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if cfg.max_val:
        keep = stratified_subset(y_va, cfg.max_val, cfg.seed)
        x_va, y_va = x_va[keep], y_va[keep]
    log.info("train %d images, PublicTest %d, classes %s", len(y_tr), len(y_va), ", ".join(labels))

    weights = (
        balanced_class_weights(y_tr, k) ** cfg.class_weight_power
        if cfg.class_weights
        else np.ones(k)
    )
    train_ds = make_dataset(
        x_tr, y_tr, k, cfg.batch_size, True, cfg.seed, cfg.augment, sample_weights=weights[y_tr]
    )
    val_ds = make_dataset(x_va, y_va, k, 256, False)
    steps = int(np.ceil(len(y_tr) / cfg.batch_size))

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
    callbacks = [
        keras.callbacks.BackupAndRestore(str(ckpt_dir)),
        keras.callbacks.EarlyStopping(
            "val_accuracy", patience=cfg.patience, mode="max", restore_best_weights=True
        ),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
    ]
    hist = net.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    epochs_run = len(hist.history.get("loss", []))
    best_epoch = int(np.argmax(hist.history["val_accuracy"])) + 1 if epochs_run else 0

    model = inference_model(net, cfg.tta)
    stem = out / cfg.name
    save_model_atomic(model, stem.with_suffix(".keras"))
    save_model_atomic(model, stem.with_suffix(".h5"))
    wall = time.time() - t0
    contract = Contract(
        labels=labels,
        input_size=cfg.model.input_size,
        tta=cfg.tta,
        provenance={"data_sha256": data.sha256, "stage": 1},
    )
    write_contract(stem.with_suffix(".keras"), contract)
    write_contract(stem.with_suffix(".h5"), contract)
    atomic_write_text(stem.with_suffix(".config.json"), dump(cfg))

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
        "train_images": int(len(y_tr)),
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
    for split in ("public", "private"):
        xs, ys = data.select(split, labels)
        report["splits"][split] = classification_report(
            ys, predict_probs(model, xs).argmax(1), labels
        )
    atomic_write_text(stem.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    return report
