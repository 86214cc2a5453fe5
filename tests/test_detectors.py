"""YuNet and the detector factory as `fer-edge run` builds them: the options reach the
detector, each error is one line naming the file or option, and the networks kept per input
size (one per size, at most MAX_NETS, the least recently used dropped). Fast."""

from __future__ import annotations

import numpy as np
import pytest
from fer_edge.edge import config
from fer_edge.edge.detectors import MAX_NETS, YuNetDetector, make_detector
from fer_edge.edge.errors import ConfigError, ModelError


def test_the_factory_hands_width_and_resize_to_either_detector():
    for name in ("yunet", "haar"):
        det = make_detector(name, width=224, resize="linear")
        assert (det.name, det.width, det.resize) == (name, 224, "linear")
    with pytest.raises(ConfigError) as exc:
        make_detector("yunet", resize="cubic")
    assert str(exc.value) == "--detect-resize 'cubic': choose area or linear"
    with pytest.raises(ConfigError) as exc:
        make_detector("mtcnn")
    assert str(exc.value) == "--detector 'mtcnn': choose yunet or haar"


def test_yunet_errors_are_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(config.YUNET_ENV, raising=False)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)  # a wheel without the packaged file
    with pytest.raises(ModelError) as exc:
        YuNetDetector()
    assert str(exc.value) == "YuNet model not found; set FER_EDGE_YUNET or pass --yunet-model PATH"
    missing = tmp_path / "yunet.onnx"
    with pytest.raises(ModelError) as exc:
        YuNetDetector(missing)
    assert str(exc.value) == f"{missing}: YuNet model file not found; pass --yunet-model PATH"
    missing.write_bytes(b"not an onnx graph" * 20)
    with pytest.raises(ModelError) as exc:
        YuNetDetector(missing)
    assert str(exc.value) == f"{missing}: not a YuNet ONNX model OpenCV can load"


def test_yunet_keeps_its_score_threshold(first_frame):
    """The face in the test video scores about 0.93: found at the default threshold (0.6),
    not above 0.95."""
    (face,) = YuNetDetector(width=320).detect(first_frame)
    assert 0.9 < face.score < 0.95
    assert YuNetDetector(width=320, score=0.95).detect(first_frame) == []


def test_yunet_keeps_one_network_per_input_size_and_drops_the_least_recently_used():
    det = YuNetDetector()
    sizes = [(32 * (i + 1), 32) for i in range(MAX_NETS + 1)]
    first = det._net_for(sizes[0])
    assert det._net_for(sizes[0]) is first  # the same size: the same network, not rebuilt
    for size in sizes[1:MAX_NETS]:
        det._net_for(size)
    det._net_for(sizes[0])  # used again: now the most recent
    det._net_for(sizes[MAX_NETS])  # one size too many: the least recently used goes
    assert len(det._nets) == MAX_NETS
    assert sizes[1] not in det._nets and det._nets[sizes[0]] is first
    assert list(det._nets)[-2:] == [sizes[0], sizes[MAX_NETS]]
    image = np.zeros((32, 64, 3), np.uint8)
    assert det.detect_image(image) == [] and list(det._nets)[-1] == (64, 32)
