"""The network: MobileNetV2 backbone cut mid-way, Conv2D blocks, a softmax head.

The model takes raw grey face crops (0..255, the contract's input size) and does all of its own
normalisation in the graph, so every consumer (training, eval, conversion, the edge runtime)
feeds the same raw input. `inference_model` adds the mirror-image average used at test time.
"""

from __future__ import annotations

from pathlib import Path

import keras
from fer_edge.evaluation.predict import load_keras  # noqa: F401  (one loader for eval and training)
from fer_edge.train.config import ModelConfig
from keras import layers, ops

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = (
    PROJECT_ROOT.parent
    / "shared"
    / "weights"
    / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
)


def trained_net(model: keras.Model) -> keras.Model:
    """The trainable network inside a shipped graph (which may wrap it with the mirror average)."""
    try:
        return model.get_layer("fer_mobilenetv2")
    except ValueError:
        return model


def resolve_classes(classes: tuple[str, ...]) -> tuple[str, ...]:
    """`--classes` 5, 7 or a list of FER2013 class names -> the contract's label tuple."""
    from fer_edge.edge.contract import DEFAULT_LABELS, FER2013_CLASSES, SEVEN_LABELS
    from fer_edge.edge.errors import ConfigError

    if tuple(classes) == ("5",):
        return DEFAULT_LABELS
    if tuple(classes) == ("7",):
        return SEVEN_LABELS
    unknown = [c for c in classes if c not in FER2013_CLASSES]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(
            f"--classes {','.join(classes)}: use 5, 7 or two or more distinct FER2013 classes "
            f"({', '.join(FER2013_CLASSES)})"
        )
    return tuple(classes)


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
    out = layers.Dense(len(resolve_classes(cfg.classes)), activation="softmax", name="probs")(x)
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
        from fer_edge.edge.errors import ConfigError

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


# Test-time views, each also mirrored: the face as cropped, zoomed in by ZOOM_PX on every side,
# and zoomed out by ZOOM_PX (mirror-padded). Measured on PublicTest with the shipped model
# (see README): 2 views (flip) and 6 views (multi) are the useful points.
TTA_VIEWS = {"none": 1, "flip": 2, "multi": 6}
ZOOM_PX = 2


@keras.saving.register_keras_serializable("fer_edge")
class TTAViews(layers.Layer):
    """(B, H, W, C) -> (V*B, H, W, C): the batch under each test-time view, view-major."""

    def __init__(self, mode: str = "flip", **kwargs):
        super().__init__(**kwargs)
        if mode not in TTA_VIEWS:
            raise ValueError(f"unknown TTA mode {mode!r}; choose from {', '.join(TTA_VIEWS)}")
        self.mode = mode

    def call(self, x):
        views = [x]
        if self.mode == "multi":
            h, w, z = x.shape[1], x.shape[2], ZOOM_PX
            zin = ops.image.resize(x[:, z : h - z, z : w - z, :], (h, w), interpolation="bilinear")
            padded = ops.pad(x, [[0, 0], [z, z], [z, z], [0, 0]], mode="symmetric")
            zout = ops.image.resize(padded, (h, w), interpolation="bilinear")
            views += [zin, zout]
        if self.mode != "none":
            views += [ops.flip(v, axis=2) for v in views]
        return ops.concatenate(views, axis=0)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable("fer_edge")
class MeanViews(layers.Layer):
    """(V*B, K) -> (B, K): the average prediction over the V views of each face."""

    def __init__(self, views: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.views = views

    def call(self, p):
        return ops.mean(ops.stack(ops.split(p, self.views, axis=0)), axis=0)

    def get_config(self):
        return {**super().get_config(), "views": self.views}


# Graphs saved before multi-view TTA (mirror only) use these two layers; kept so they load.
@keras.saving.register_keras_serializable("fer_edge")
class StackMirror(layers.Layer):
    def call(self, x):
        return ops.concatenate([x, ops.flip(x, axis=2)], axis=0)


@keras.saving.register_keras_serializable("fer_edge")
class MeanHalves(layers.Layer):
    def call(self, p):
        a, b = ops.split(p, 2, axis=0)
        return (a + b) * 0.5


def inference_model(net: keras.Model, tta: str = "flip") -> keras.Model:
    """The shipped graph: the trained net, averaged over the test-time views of each face."""
    if tta == "none":
        # The same layers in a new, uncompiled Model: saving it leaves the optimizer state
        # (two thirds of the file) out of the shipped model.
        return keras.Model(net.inputs, net.outputs, name=net.name)
    inp = keras.Input(net.input_shape[1:], name="face")
    probs = net(TTAViews(tta, name="views")(inp))
    if isinstance(probs, list):  # a net loaded from .h5 returns its one output in a list
        (probs,) = probs
    out = MeanViews(TTA_VIEWS[tta], name="probs_tta")(probs)
    return keras.Model(inp, out, name="fer_edge")
