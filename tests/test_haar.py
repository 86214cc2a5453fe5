"""The Haar detector (--detector haar, OpenCV 4.x) on the real video: grey and colour frames
alike, detection on a copy of the width and interpolation asked for, and its two errors as
one line each."""

from __future__ import annotations

import cv2
import pytest
from fer_edge.edge.detectors import HaarDetector
from fer_edge.edge.errors import ConfigError, ModelError


def test_haar_sees_a_grey_frame_as_its_colour_original(first_frame):
    haar = HaarDetector(width=0)
    colour = haar.detect_image(first_frame.image)
    assert len(colour) == 1 and colour[0].w > 150  # the one face, about 196 px wide
    assert haar.detect_image(cv2.cvtColor(first_frame.image, cv2.COLOR_BGR2GRAY)) == colour


def test_haar_detects_on_a_copy_of_the_width_asked_for(first_frame):
    """The face is 196 of 854 px wide: 18 px on an 80 px copy, under min_size (24), so none;
    on a 120 px copy it is found, mapped back to about where the full frame has it."""
    haar = HaarDetector(width=0)
    (full,) = haar.detect(first_frame)
    assert haar.detect(first_frame, width=80) == []
    (small,) = haar.detect(first_frame, width=120)
    assert small.iou(full) > 0.7
    assert HaarDetector(width=80).detect(first_frame) == []


def test_haar_errors_are_one_line(tmp_path, monkeypatch):
    missing = tmp_path / "cascade.xml"
    with pytest.raises(ModelError) as exc:
        HaarDetector(cascade=missing)
    assert str(exc.value) == f"{missing}: Haar cascade could not be loaded"
    monkeypatch.delattr(cv2, "CascadeClassifier")  # as in OpenCV 5 wheels
    with pytest.raises(ConfigError) as exc:
        HaarDetector()
    assert str(exc.value) == (
        "--detector haar needs an OpenCV 4.x wheel (5.x dropped CascadeClassifier); use "
        "--detector yunet or `pip install 'opencv-python-headless<5'`"
    )


def test_haar_shrinks_with_the_interpolation_asked_for(first_frame):
    """--detect-resize reaches Haar too: its copy is the frame shrunk with INTER_AREA or
    INTER_LINEAR (at 120 px wide the two copies give this face different boxes)."""
    h, w = first_frame.image.shape[:2]
    size = (120, int(round(h * 120 / w)))
    found = {}
    for resize, flag in (("area", cv2.INTER_AREA), ("linear", cv2.INTER_LINEAR)):
        haar = HaarDetector(width=120, resize=resize)
        small = cv2.resize(first_frame.image, size, interpolation=flag)
        found[resize] = haar.detect(first_frame)
        assert found[resize] == [b.scaled(w / 120) for b in haar.detect_image(small)]
    assert found["area"] != found["linear"]
