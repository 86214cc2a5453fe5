"""FER2013 loading from the real archive, its extracted folder and a csv built from it."""

from __future__ import annotations

import csv
import zipfile

import numpy as np
import pytest
from conftest import one_line_error, run_cli
from fer_edge.edge.contract import DEFAULT_LABELS, FER2013_CLASSES
from fer_edge.edge.errors import DataError
from fer_edge.evaluation.data import load_fer2013


def _write_csv(data, path):
    usage = {0: "Training", 1: "PublicTest", 2: "PrivateTest"}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for img, label, split in zip(data.images, data.labels, data.splits):
            w.writerow([int(label), " ".join(map(str, img.ravel())), usage[int(split)]])


def test_zip_folder_and_csv_give_identical_arrays(small_archive, tmp_path):
    from_zip = load_fer2013(small_archive, use_cache=False)
    folder = tmp_path / "extracted"
    with zipfile.ZipFile(small_archive) as zf:
        zf.extractall(folder)
    from_dir = load_fer2013(folder, use_cache=False)
    _write_csv(from_zip, tmp_path / "fer2013.csv")
    from_csv = load_fer2013(tmp_path / "fer2013.csv", use_cache=False)

    assert from_zip.images.shape == (7 * 6 * 3, 48, 48) and from_zip.images.dtype == np.uint8
    for other in (from_dir, from_csv):
        np.testing.assert_array_equal(other.images, from_zip.images)
        np.testing.assert_array_equal(other.labels, from_zip.labels)
        np.testing.assert_array_equal(other.splits, from_zip.splits)
    for split in ("train", "public", "private"):
        x_zip, y_zip = from_zip.select(split)
        x_csv, y_csv = from_csv.select(split)
        np.testing.assert_array_equal(x_zip, x_csv)
        np.testing.assert_array_equal(y_zip, y_csv)


def test_full_archive_counts_and_five_classes(archive, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_EDGE_CACHE", str(tmp_path / "cache"))
    data = load_fer2013(archive)
    assert len(data.images) == 35887 and not data.skipped
    x, y = data.select("private")  # the five classes of PrivateTest
    assert len(x) == 3006
    assert set(np.unique(y)) == set(range(len(DEFAULT_LABELS)))
    assert len(data.select("public")[0]) == 3037
    assert len(data.select("train")[0]) == 24176
    seven = data.select("test", FER2013_CLASSES)[0]
    assert len(seven) == 7178
    # 547 five-class training images are byte-identical copies of test images (MANIFEST.md).
    assert len(data.select("train", drop_test_duplicates=True)[0]) == 24176 - 547
    cached = load_fer2013(archive)  # second load comes from the cache
    np.testing.assert_array_equal(cached.images, data.images)
    assert list((tmp_path / "cache").glob("fer2013-*.npz"))


def test_corrupt_image_is_skipped_and_listed(small_archive, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(small_archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("train/happy/Training_broken.jpg", b"not a jpeg")
    data = load_fer2013(bad, use_cache=False)
    assert data.skipped == ("train/happy/Training_broken.jpg",)
    assert len(data.images) == 7 * 6 * 3


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"test/happy/PublicTest_1.jpg": None}, "no train/"),
        (
            {"train/bored/Training_1.jpg": None, "test/happy/PublicTest_1.jpg": None},
            "unknown class folder",
        ),
        ({"train/happy/Training_1.jpg": None}, "no images under test/"),
    ],
)
def test_wrong_layout_is_a_clear_error(small_archive, tmp_path, entries, message):
    with zipfile.ZipFile(small_archive) as src:
        jpeg = src.read(src.namelist()[0])
    path = tmp_path / "layout.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name in entries:
            zf.writestr(name, jpeg)
    with pytest.raises(DataError, match=message):
        load_fer2013(path, use_cache=False)


def test_empty_class_folder_is_an_error(small_archive, tmp_path):
    folder = tmp_path / "fer"
    with zipfile.ZipFile(small_archive) as zf:
        zf.extractall(folder)
    (folder / "train" / "sad").mkdir(exist_ok=True)
    for f in (folder / "train" / "sad").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="class folder is empty"):
        load_fer2013(folder, use_cache=False)


def test_missing_data_cli_says_how_to_get_it(tmp_path):
    proc = run_cli("data", "--data", str(tmp_path / "nowhere.zip"))
    line = one_line_error(proc)
    assert "nowhere.zip" in line and "kaggle" in line.lower()


def test_bad_csv_header_is_an_error(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="emotion,pixels,Usage"):
        load_fer2013(path, use_cache=False)
