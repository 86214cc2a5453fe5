"""The network: MobileNetV2 backbone cut mid-way, Conv2D blocks, a softmax head.

The model takes raw grey face crops (0..255, the contract's input size) and does all of its own
normalisation in the graph, so every consumer (training, eval, conversion, the edge runtime)
feeds the same raw input. `inference_model` adds the mirror-image average used at test time.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

from train.config import ModelConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = (
    PROJECT_ROOT.parent
    / "shared"
    / "weights"
    / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
)


def load_keras(path: str | Path) -> keras.Model:
    """A saved fer-edge Keras model (.keras or .h5), or a one-line ModelError."""
    from edge.errors import ModelError

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: Keras model not found; train one with `make train`")
    try:
        return keras.saving.load_model(p, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"{p}: not a loadable Keras model ({first})") from None


def trained_net(model: keras.Model) -> keras.Model:
    """The trainable network inside a shipped graph (which may wrap it with the mirror average)."""
    try:
        return model.get_layer("fer_mobilenetv2")
    except ValueError:
        return model


def resolve_backbone_weights(spec: str) -> str | None:
    if spec == "none":
        return None
    if spec == "auto":
        return str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else "imagenet"
    return spec


def build_model(cfg: ModelConfig) -> keras.Model:
    """The trainable network: raw (B, S, S, 1) grey -> (B, classes) softmax."""
    inp = keras.Input((cfg.input_size, cfg.input_size, 1), name="face")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_pm1")(inp)  # MobileNetV2's range
    if cfg.backbone_size != cfg.input_size:
        x = layers.Resizing(
            cfg.backbone_size, cfg.backbone_size, interpolation="bilinear", name="resize"
        )(x)
    x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    backbone = keras.applications.MobileNetV2(
        input_tensor=x, include_top=False, weights=None, alpha=cfg.alpha
    )
    _load_backbone_weights(backbone, cfg)
    x = backbone.get_layer(cfg.cut).output
    for i, filters in enumerate(cfg.head_filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"mid_conv{i}")(x)
        x = layers.BatchNormalization(name=f"mid_bn{i}")(x)
        x = layers.ReLU(6.0, name=f"mid_relu{i}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    out = layers.Dense(len(cfg.labels), activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="fer_mobilenetv2")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = cfg.bn_momentum
    return model


def _load_backbone_weights(backbone: keras.Model, cfg: ModelConfig) -> None:
    weights = resolve_backbone_weights(cfg.backbone_weights)
    if weights is None:
        return
    # Build the stock backbone, load it there (Keras' own loader checks every shape), and copy
    # layer by layer: our graph has extra preprocessing layers in front of the same names.
    size = cfg.backbone_size if cfg.backbone_size in (96, 128, 160, 192, 224) else 224
    if weights != "imagenet" and not Path(weights).is_file():
        from edge.errors import ConfigError

        raise ConfigError(f"--backbone_weights {weights}: file not found")
    ref = keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        include_top=False,
        alpha=cfg.alpha,
        weights="imagenet" if weights == "imagenet" else None,
    )
    if weights != "imagenet":
        ref.load_weights(weights)
    for layer in ref.layers:
        if layer.weights:
            backbone.get_layer(layer.name).set_weights(layer.get_weights())


@keras.saving.register_keras_serializable("fer_edge")
class StackMirror(layers.Layer):
    """(B, H, W, C) -> (2B, H, W, C): the batch followed by its left-right mirror."""

    def call(self, x):
        return ops.concatenate([x, ops.flip(x, axis=2)], axis=0)


@keras.saving.register_keras_serializable("fer_edge")
class MeanHalves(layers.Layer):
    """(2B, K) -> (B, K): averages the prediction for a face and for its mirror."""

    def call(self, p):
        a, b = ops.split(p, 2, axis=0)
        return (a + b) * 0.5


def inference_model(net: keras.Model, tta_flip: bool = True) -> keras.Model:
    """The shipped graph: the trained net, averaged over the face and its mirror image."""
    if not tta_flip:
        return net
    inp = keras.Input(net.input_shape[1:], name="face")
    out = MeanHalves(name="probs_tta")(net(StackMirror(name="mirror")(inp)))
    return keras.Model(inp, out, name="fer_edge")
