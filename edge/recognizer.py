"""The Python API: `EmotionRecognizer` finds faces in BGR images or a video source and says
which emotion each one shows.

    from fer_edge import EmotionRecognizer

    with EmotionRecognizer() as rec:
        faces = rec.predict(image)

The command-line runtime (`fer-edge run`) builds its pipeline here too. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from fer_edge.edge.classifier import Classifier
from fer_edge.edge.config import DEFAULTS, RuntimeConfig, model_path
from fer_edge.edge.detectors import Detector, make_detector
from fer_edge.edge.pipeline import Pipeline, PipelineConfig, apply_thread_plan
from fer_edge.edge.types import Face, Frame, FrameResult


@dataclass(frozen=True)
class FaceEmotion:
    """One face: where it is and what the model says about it."""

    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    label: str  # the most probable emotion
    score: float  # its probability, 0..1
    probabilities: dict[str, float]  # every label -> probability, in the model's label order
    track: int | None = None  # stream(): an id that stays with the face while it is in view


@dataclass(frozen=True)
class FrameEmotions:
    """One frame of `EmotionRecognizer.stream`."""

    index: int  # 0-based frame number from the source
    t: float  # seconds: media time for files, time since start for live sources
    faces: tuple[FaceEmotion, ...]
    image: np.ndarray = dataclasses.field(repr=False)  # the BGR frame, e.g. to draw on


def face_emotion(face: Face, labels: tuple[str, ...], tracked: bool) -> FaceEmotion:
    k = face.label_index()
    return FaceEmotion(
        box=face.box.as_tuple(),
        label=labels[k],
        score=float(face.probs[k]),
        probabilities={lb: float(p) for lb, p in zip(labels, face.probs)},
        track=face.track if tracked else None,
    )


class EmotionRecognizer:
    """Face detector + emotion classifier, loaded once and reused for every image or frame.

    Args:
        model: TFLite model with its `.json` contract beside it. Default: `$FER_EDGE_MODEL`,
            else the int8 model packaged with fer_edge.
        threads: interpreter threads.
        detector: "yunet" or "haar".
        yunet_model: YuNet `.onnx`. Default: `$FER_EDGE_YUNET`, else the packaged copy.
        config: every other runtime setting (detection width, detect/classify every N
            frames, smoothing); the arguments above override its fields.

    Raises:
        edge.errors.FerEdgeError: a model or detector file is missing or unusable (the
            message names the file).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        threads: int | None = None,
        detector: str | None = None,
        yunet_model: str | os.PathLike | None = None,
        config: RuntimeConfig = DEFAULTS,
    ):
        given = {"model": model, "threads": threads, "detector": detector}
        given["yunet_model"] = yunet_model
        overrides = {k: str(v) if k != "threads" else v for k, v in given.items() if v}
        self.config = dataclasses.replace(config, **overrides)
        cfg = self.config
        apply_thread_plan(cfg.cv_threads)
        self.classifier = Classifier(model_path(cfg.model, cfg.tta), threads=cfg.threads)
        self.detector: Detector = make_detector(
            cfg.detector,
            width=cfg.detect_width,
            yunet_model=cfg.yunet_model or None,
            resize=cfg.detect_resize,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, in the order of its outputs."""
        return self.classifier.labels

    def pipeline(self, smoothing: bool | None = None, every_frame: bool = False) -> Pipeline:
        """A new per-frame pipeline (its own tracker) over this recognizer's models."""
        cfg = self.config
        return Pipeline(
            self.detector,
            self.classifier,
            PipelineConfig(
                detect_every=1 if every_frame else cfg.detect_every,
                classify_every=1 if every_frame else cfg.classify_every,
                smoothing=cfg.smoothing if smoothing is None else smoothing,
                full_detect_every=0 if every_frame else cfg.full_detect_every,
                adaptive_width=False if every_frame else cfg.adaptive_width,
                max_faces=cfg.max_faces,
            ),
        )

    def predict(self, image: np.ndarray) -> list[FaceEmotion]:
        """Faces in one BGR (or grey) image, largest first, each with its emotion.

        Every call detects afresh and is independent of the others (no tracking, no
        smoothing); use `stream` for video.
        """
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(
                "predict() takes an image as a numpy array (H, W[, 3]), e.g. cv2.imread"
            )
        result = self.pipeline(smoothing=False, every_frame=True).process(Frame(image, 0, 0.0))
        return [face_emotion(f, self.labels, tracked=False) for f in result.faces]

    def results(
        self, source: str | int | os.PathLike | Iterable[np.ndarray], **source_options
    ) -> Iterator[FrameResult]:
        """The runtime's own per-frame results (with stage timings) for a source."""
        from fer_edge.edge.sources import open_source

        pipeline = self.pipeline()
        if isinstance(source, (str, int, os.PathLike)):
            options = {
                "lores_width": self.config.detect_width,
                "decode_threads": self.config.decode_threads,
                **source_options,
            }
            with open_source(str(source), **options) as src:
                for frame in src.frames():
                    yield pipeline.process(frame)
        else:
            for index, image in enumerate(source):
                yield pipeline.process(Frame(image, index, float(index)))

    def stream(
        self,
        source: str | int | os.PathLike | Iterable[np.ndarray],
        *,
        max_frames: int | None = None,
        loop: bool = False,
    ) -> Iterator[FrameEmotions]:
        """Emotions frame by frame from a camera index, "picamera", a video or image file, a
        folder of images, a stream URL, or any iterable of BGR images.

        Faces are tracked across frames (`FaceEmotion.track`) and their probabilities
        smoothed per track, as in `fer-edge run`. Stops after `max_frames` frames when given;
        the source is closed when the loop ends or is left early.
        """
        options = {"loop": loop} if isinstance(source, (str, int, os.PathLike)) else {}
        with contextlib.closing(self.results(source, **options)) as results:
            for n, result in enumerate(results, start=1):
                faces = tuple(face_emotion(f, self.labels, tracked=True) for f in result.faces)
                yield FrameEmotions(result.frame.index, result.frame.t, faces, result.frame.image)
                if max_frames and n >= max_frames:
                    return

    def close(self) -> None:
        """Release the interpreter and detector; the recognizer cannot be used afterwards."""
        self.classifier = self.detector = None  # type: ignore[assignment]

    def __enter__(self) -> EmotionRecognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
