"""Training configuration: one frozen dataclass per stage, a comment on every field.

The resolved config is written beside every model it produced (`<model>.config.json`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelConfig:
    # Output classes in contract order: 5 (neutral, happy, sad, angry, surprise), 7 (those plus
    # fear and disgust: FER2013's seven) or a comma-separated list of FER2013 class names.
    classes: tuple[str, ...] = ("5",)
    input_size: int = 48  # raw grey crop side the model takes (the contract's input_size)
    backbone_size: int = 96  # the crop is resized to this inside the graph before the backbone
    alpha: float = 0.35  # MobileNetV2 width; ImageNet weights here exist only for 0.35
    # "imagenet" (Keras download), a path to a no-top .h5, or "none" for random init.
    backbone_weights: str = "auto"
    # Last backbone layer kept. At 96 px block_12_add is a 6x6 map (stride 16): the full
    # stride-32 backbone leaves only 3x3, too coarse for 48-px faces.
    cut: str = "block_12_add"
    head_filters: tuple[int, ...] = (256, 256)  # the mid-network Conv2D blocks (3x3, BN, ReLU)
    dropout: float = 0.3  # before the classifier
    bn_momentum: float = 0.9  # Keras' 0.999 lags the weights: eval accuracy swings epoch to epoch


@dataclass(frozen=True)
class Stage1Config:
    data: str = ""  # FER2013 archive.zip / folder / csv ("" = $DATA, then ../shared's archive)
    # Training targets: fer2013 (folder labels, noisy), ferplus-majority (FER+ crowd majority)
    # or ferplus-soft (FER+ vote distribution; the FER+ paper's best). With --validation public,
    # FER+ modes validate on PublicTest's FER+ majority. Rules: evaluation/ferplus.py.
    labels: str = "fer2013"
    # ferplus-fer2013 only: how many extra votes FER2013's folder label adds to the crowd's ten
    fer2013_votes: float = 5.0
    ferplus: str = ""  # FER+ votes csv ("" = $FERPLUS, then ../shared's ferplus_votes.csv)
    # Knowledge distillation: trained fer-edge models (same classes, comma-separated) whose
    # predictions on the clean training images are computed once, cached, averaged in log space
    # (an ensemble teacher) and mixed into the targets.
    teacher: str = ""
    teacher_weight: float = 0.5  # target = (1 - w) * labels + w * teacher
    # Capture degradations (blur, noise, JPEG, low light, gamma, low resolution, occlusion,
    # box jitter; evaluation/degrade.py) applied to this share of training faces; 0 = off.
    robust_augment: float = 0.0
    out: str = "models"  # output folder for the model, its contract, config and report
    name: str = "fer_mnv2"  # file stem: <out>/<name>.keras, .h5, .report.json, ...
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 24  # cosine schedule length; early stopping (--patience) may end sooner
    batch_size: int = 64
    lr: float = 2e-3  # peak AdamW learning rate after warm-up
    min_lr: float = 1e-5  # cosine decay floor
    warmup_epochs: float = 1.0  # linear warm-up: the fresh head must not wreck ImageNet features
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    label_smoothing: float = 0.1  # FER2013 labels are noisy (57 duplicate groups disagree)
    patience: int = 6  # early stopping on validation accuracy, best weights restored
    class_weights: bool = True  # weight classes by inverse frequency (happy has 2.3x surprise)
    # weights = balanced ** power: 1 = fully balanced (best macro-F1), 0.5 = halfway, which
    # keeps rare classes heard without giving up overall accuracy
    class_weight_power: float = 0.5
    drop_test_duplicates: bool = True  # train images byte-identical to a test image leak the test
    max_train: int = 0  # >0: use a stratified subset of this many train images (smoke runs)
    # What early stopping watches: holdout (a stratified share of the training faces, so both
    # test halves stay untouched) or public (PublicTest, as the first shipped model did).
    validation: str = "holdout"
    holdout: float = 0.08  # share of the training faces held out when validation = holdout
    max_val: int = 0  # >0: subset of the validation faces (smoke runs)
    augment: bool = True  # flip, rotation, shift, zoom, brightness, contrast
    # test-time views averaged inside the shipped graph: none | flip (2) | multi (6: as cropped,
    # zoomed in and out, each mirrored); multi measured +2.5 points on PublicTest over flip
    tta: str = "multi"
    seed: int = 1337
    # Start from this fer-edge model's weights instead of ImageNet, e.g. to extend a finished run
    # with a second, lower cosine cycle; a model with other classes gives all but its
    # classifier layer. "" = a fresh start.
    init_from: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# The Keras source of the shipped default model (models/fer_int8.tflite is its int8): what
# `fer-edge finetune` starts from and `fer-edge convert` converts unless told otherwise. The
# Makefile's KERAS default is the same path (tests/test_first_hour.py checks that they agree).
DEFAULT_KERAS_SOURCE = "models/fer_pair.h5"


@dataclass(frozen=True)
class Stage2Config:
    base: str = DEFAULT_KERAS_SOURCE  # Keras model to start from: the shipped default's source
    personal: str = ""  # folder of <class>/*.jpg|png photos of one person (required)
    out: str = "models/personal"  # output folder (git ignores it: your face stays yours)
    name: str = "fer_personal"  # file stem: <out>/<name>.keras, .report.json, ...
    data: str = ""  # FER2013 source for the before/after PrivateTest comparison
    trainable_top: int = 20  # only the top N layers train (15-30 keeps the features general)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4  # start, cosine-decayed to min_lr
    min_lr: float = 1e-5
    patience: int = 5  # early stopping on the held-out personal split
    holdout: float = 0.25  # fraction of each class held out to measure before/after
    min_per_class: int = 5  # fewer photos than this in a class is an error
    detector: str = "yunet"  # face detector used to crop the photos: yunet | haar | none
    yunet_model: str = ""  # path to the YuNet .onnx ("" = ../shared/models' copy)
    seed: int = 1337

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def dump(cfg) -> str:
    return json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n"
