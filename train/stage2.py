"""Stage 2: fine-tune the stage-1 model on one person's photos (about 20 per class).

Only the top N layers train, BatchNorm stays frozen (batch statistics from 16 photos would
wreck the running averages), and the learning rate decays from 1e-4 to 1e-5. The report shows
the trade-off: accuracy before and after on held-out photos of this person AND on FER2013
PrivateTest, i.e. on everyone else.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np
from fer_edge.edge.contract import read_contract
from fer_edge.edge.detectors import make_detector
from fer_edge.edge.errors import ConfigError
from fer_edge.edge.fileio import atomic_write_text
from fer_edge.evaluation.data import load_fer2013
from fer_edge.train.config import Stage2Config
from fer_edge.train.datasets import make_dataset
from fer_edge.train.personal import holdout_split, load_personal

log = logging.getLogger(__name__)


def set_trainable_top(net, n: int) -> int:
    """Freeze all but the last n layers of `net`; BatchNorm always frozen. Returns the number
    of layers left trainable that have weights. In an ensemble (fer-edge ensemble: member
    nets inside one graph) the rule holds for each member, and the layers that combine the
    members stay trainable."""
    import keras
    from keras import layers

    if n < 1:
        raise ConfigError(f"--trainable-top {n}: must be at least 1")
    net.trainable = True
    if any(isinstance(layer, keras.Model) for layer in net.layers):
        count = 0
        for layer in net.layers:
            if isinstance(layer, keras.Model):
                count += set_trainable_top(layer, n)
            else:
                count += bool(layer.weights)
        return count
    for i, layer in enumerate(net.layers):
        top = i >= len(net.layers) - n
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
    return sum(1 for layer in net.layers if layer.trainable and layer.weights)


def photo_counts(folder: str) -> dict[str, int]:
    """Image files per class sub-folder, without reading them (the plan printed first)."""
    from fer_edge.edge.sources import IMAGE_SUFFIXES

    root = Path(folder)
    return {
        d.name: sum(1 for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def plan(cfg: Stage2Config) -> list[str]:
    """What `finetune` will do, in a few lines; one-line errors for a missing input, before
    TensorFlow loads."""
    from fer_edge.edge.errors import DataError, ModelError

    if not cfg.personal:
        raise ConfigError(
            "--personal: give the folder of your photos, one sub-folder per class (happy/, "
            "sad/, ...); `fer-edge capture --label happy --out DIR` takes them"
        )
    if not Path(cfg.personal).is_dir():
        raise DataError(f"--personal {cfg.personal}: personal photo folder not found")
    if not Path(cfg.base).is_file():
        raise ModelError(
            f"--base {cfg.base}: Keras model not found; run from the project folder or give "
            "--base PATH to a .h5 or .keras model (`make train` makes one)"
        )
    counts = photo_counts(cfg.personal)
    found = ", ".join(f"{c} {n}" for c, n in counts.items()) or "no class folders"
    return [
        f"fine-tuning {cfg.base} on {sum(counts.values())} photos in {cfg.personal}: {found}",
        f"up to {cfg.epochs} epochs (early stop after {cfg.patience} without progress), top "
        f"{cfg.trainable_top} layers; {cfg.holdout:.0%} of each class held out to compare",
        f"writing {Path(cfg.out) / cfg.name}.keras",
    ]


def next_steps(cfg: Stage2Config) -> list[str]:
    """Where the model went and the exact commands that convert and run it."""
    out = Path(cfg.out)
    model = out / f"{cfg.name}.keras"
    data = f" --data {shlex.quote(cfg.data)}" if cfg.data else ""
    return [
        f"wrote {model} (report {out / cfg.name}.report.json)",
        "next, convert it to int8 and run it:",
        f"  fer-edge convert --model {shlex.quote(str(model))} --out {shlex.quote(str(out))} "
        f"--prefix {shlex.quote(cfg.name)} --variants int8{data}",
        f"  fer-edge run --model {shlex.quote(str(out / f'{cfg.name}_int8.tflite'))}",
    ]


def run_stage2(cfg: Stage2Config) -> dict:
    import keras
    from fer_edge.evaluation.metrics import classification_report
    from fer_edge.train.model import inference_model, load_keras, trained_net
    from fer_edge.train.stage1 import cosine_with_warmup, predict_probs, save_run

    t0 = time.time()
    keras.utils.set_random_seed(cfg.seed)
    base_path = Path(cfg.base)
    shipped = load_keras(base_path)
    contract = read_contract(base_path)
    detector = (
        None
        if cfg.detector == "none"
        else make_detector(cfg.detector, yunet_model=cfg.yunet_model or None)
    )
    x, y, summary = load_personal(cfg.personal, contract, detector, cfg.min_per_class)
    tr, ho = holdout_split(y, cfg.holdout, cfg.seed)
    labels = contract.labels
    fer = load_fer2013(cfg.data or None)
    x_priv, y_priv = fer.select("private", labels)

    def scores(model) -> tuple[dict, dict]:
        return (
            classification_report(y[ho], predict_probs(model, x[ho]).argmax(1), labels),
            classification_report(y_priv, predict_probs(model, x_priv).argmax(1), labels),
        )

    personal_before, private_before = scores(shipped)
    # The shipped graph wraps the trained net with the mirror average; fine-tune the net.
    net = trained_net(shipped)
    trainable = set_trainable_top(net, cfg.trainable_top)
    k = len(labels)
    train_ds = make_dataset(x[tr], y[tr], k, cfg.batch_size, True, cfg.seed, augment=True)
    val_ds = make_dataset(x[ho], y[ho], k, 64, False)
    steps = int(np.ceil(len(tr) / cfg.batch_size))
    net.compile(
        optimizer=keras.optimizers.Adam(
            cosine_with_warmup(cfg.lr, cfg.min_lr, 0, cfg.epochs * steps)
        ),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    hist = net.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        verbose=2,
        callbacks=[
            keras.callbacks.EarlyStopping(
                "val_loss", patience=cfg.patience, restore_best_weights=True
            )
        ],
    )
    tuned = inference_model(net, contract.tta)
    personal_after, private_after = scores(tuned)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / cfg.name
    provenance = dict(
        contract.provenance, stage=2, base_model=base_path.name, personal=str(cfg.personal)
    )
    save_run(tuned, stem, contract.with_(provenance=provenance), cfg)
    report = {
        "stage": 2,
        "model": str(stem.with_suffix(".keras")),
        "base": str(base_path),
        "photos": summary,
        "train_photos": int(len(tr)),
        "holdout_photos": int(len(ho)),
        "trainable_layers_with_weights": trainable,
        "epochs_run": len(hist.history["loss"]),
        "wall_seconds": round(time.time() - t0, 1),
        "personal_before": personal_before,
        "personal_after": personal_after,
        "private_before": private_before,
        "private_after": private_after,
    }
    atomic_write_text(stem.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    log.info(
        "personal hold-out %.1f%% -> %.1f%%; FER2013 PrivateTest %.1f%% -> %.1f%%",
        100 * personal_before["accuracy"],
        100 * personal_after["accuracy"],
        100 * private_before["accuracy"],
        100 * private_after["accuracy"],
    )
    return report
