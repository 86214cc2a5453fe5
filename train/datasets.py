"""tf.data input pipelines and augmentation shared by both training stages."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers


def augmenter(seed: int) -> tf.keras.Sequential:
    """Label-preserving changes a webcam face goes through: mirror, tilt, framing, light."""
    import keras

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.04, fill_mode="nearest", seed=seed + 1),  # about +-15 degrees
            layers.RandomTranslation(0.08, 0.08, fill_mode="nearest", seed=seed + 2),
            layers.RandomZoom((-0.1, 0.1), fill_mode="nearest", seed=seed + 3),
            layers.RandomBrightness(0.2, value_range=(0.0, 255.0), seed=seed + 4),
            layers.RandomContrast(0.25, seed=seed + 5),
        ],
        name="augment",
    )


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    batch_size: int,
    training: bool,
    seed: int = 0,
    augment: bool = True,
    sample_weights: np.ndarray | None = None,
    robust: float = 0.0,
) -> tf.data.Dataset:
    """Raw uint8 (N, S, S) images -> batches of float32 (B, S, S, 1) 0..255 and targets.

    `y` is class indices (N,) or target distributions (N, K). `robust` > 0 adds capture
    degradations (evaluation/degrade.py) to that share of the training faces.
    """
    x = x[..., None] if x.ndim == 3 else x
    onehot = np.eye(n_classes, dtype=np.float32)[y] if y.ndim == 1 else y.astype(np.float32)
    parts = (
        (x, onehot) if sample_weights is None else (x, onehot, sample_weights.astype(np.float32))
    )
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)

    def to_float(*t):
        return (tf.cast(t[0], tf.float32),) + t[1:]

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment:
        aug = augmenter(seed)

        def do_aug(*t):
            return (tf.clip_by_value(aug(t[0], training=True), 0.0, 255.0),) + t[1:]

        ds = ds.map(do_aug, num_parallel_calls=tf.data.AUTOTUNE)
    if training and robust > 0:
        from fer_edge.evaluation.degrade import augment_batch

        rng = np.random.default_rng(seed + 99)

        def degrade_np(batch):
            return augment_batch(batch, rng, p=robust).astype(np.float32)

        def do_degrade(*t):
            out = tf.numpy_function(degrade_np, [t[0]], tf.float32, stateful=True)
            return (tf.ensure_shape(out, t[0].shape),) + t[1:]

        ds = ds.map(do_degrade, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency; `y` is class indices or target distributions (expected counts)."""
    counts = y.sum(0) if y.ndim == 2 else np.bincount(y, minlength=n_classes).astype(float)
    return len(y) / (n_classes * np.maximum(counts, 1))


def sample_class_weights(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-sample weight: the class weight, averaged over a soft target's distribution."""
    return y @ weights if y.ndim == 2 else weights[y]
