"""Which files the runtime loads when the user names none, a bare name, or a path; and the
environment variables that override the packaged files. Values worked out by hand."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT
from fer_edge.edge import config
from fer_edge.edge.config import (
    MODELS_DIR,
    default_model_path,
    default_yunet_path,
    model_path,
)


def test_the_packaged_models_are_the_checkouts_models_folder():
    assert MODELS_DIR.resolve() == (ROOT / "models").resolve()
    assert (MODELS_DIR / config.DEFAULT_MODEL_FILE).is_file()


def test_no_model_given_is_the_default_or_with_tta_the_six_view_model(monkeypatch):
    monkeypatch.delenv("FER_EDGE_MODEL", raising=False)
    assert model_path(None) == MODELS_DIR / "fer_int8.tflite"
    assert model_path("") == MODELS_DIR / "fer_int8.tflite" == default_model_path()
    assert model_path(None, tta=True) == MODELS_DIR / "fer_tta_int8.tflite"
    assert model_path("", True) == MODELS_DIR / "fer_tta_int8.tflite"
    monkeypatch.setenv("FER_EDGE_MODEL", "/somewhere/mine.tflite")
    assert model_path(None) == Path("/somewhere/mine.tflite") == default_model_path()
    assert model_path(None, tta=True) == MODELS_DIR / "fer_tta_int8.tflite"  # tta wins
    monkeypatch.setenv("FER_EDGE_MODEL", "")  # empty is unset
    assert default_model_path() == MODELS_DIR / "fer_int8.tflite"


def test_a_bare_name_finds_a_packaged_model_and_a_path_is_taken_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a bare name that is not in the working folder: the packaged model of that name
    assert model_path("fer7_int8.tflite") == MODELS_DIR / "fer7_int8.tflite"
    assert model_path(Path("fer7_int8.tflite"), tta=True) == MODELS_DIR / "fer7_int8.tflite"
    # a bare name that is in the working folder: that file (the user's own wins)
    (tmp_path / "fer7_int8.tflite").write_bytes(b"mine")
    assert model_path("fer7_int8.tflite") == Path("fer7_int8.tflite")
    # a bare name no packaged model has: as given (the loader then says it is missing)
    assert model_path("nothing.tflite") == Path("nothing.tflite")
    # a path with a folder is never redirected, even if the packaged folder has the name
    assert model_path("sub/fer7_int8.tflite") == Path("sub/fer7_int8.tflite")
    assert model_path("./fer_int8.tflite") == Path("fer_int8.tflite")
    absolute = tmp_path / "x" / "fer_int8.tflite"
    assert model_path(str(absolute)) == absolute


def test_yunet_comes_from_the_environment_else_the_packaged_file(monkeypatch, tmp_path):
    monkeypatch.delenv("FER_EDGE_YUNET", raising=False)
    assert default_yunet_path() == MODELS_DIR / "face_detection_yunet.onnx"
    monkeypatch.setenv("FER_EDGE_YUNET", str(tmp_path / "y.onnx"))
    assert default_yunet_path() == tmp_path / "y.onnx"
    monkeypatch.delenv("FER_EDGE_YUNET")
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)  # a wheel without YuNet packaged
    assert default_yunet_path() is None
