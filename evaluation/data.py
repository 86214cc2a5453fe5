"""FER2013 loading: Kaggle archive.zip, its extracted folder, or the original fer2013.csv.

All three give the same uint8 arrays, labels and split tags. The decoded set is cached as one
.npz keyed by the source's sha256, so a second run starts in about a second.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from fer_edge.edge.contract import DEFAULT_LABELS, FER2013_CLASSES
from fer_edge.edge.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "public", "private")  # split codes 0, 1, 2
_PREFIX_SPLIT = {"Training": 0, "PublicTest": 1, "PrivateTest": 2}
_USAGE_SPLIT = {"Training": 0, "PublicTest": 1, "PrivateTest": 2}
IMAGE_SIZE = 48
CACHE_FORMAT = 2  # bump when the cached arrays change meaning
KAGGLE_HINT = (
    "download FER2013 from Kaggle (https://www.kaggle.com/datasets/msambare/fer2013, "
    "'Download' gives archive.zip) and pass its path with DATA=... or --data"
)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013" / "archive.zip"


@dataclass(frozen=True)
class Fer2013:
    """The whole decoded dataset; `select` cuts out one split and a label set."""

    images: np.ndarray  # (N, 48, 48) uint8 grey
    labels: np.ndarray  # (N,) int8 index into FER2013_CLASSES
    splits: np.ndarray  # (N,) uint8 index into SPLITS
    names: np.ndarray  # (N,) str, the source file name or csv row
    source: str
    sha256: str
    skipped: tuple[str, ...] = field(default=())  # entries that failed to decode

    def select(
        self,
        split: str,
        labels: tuple[str, ...] = DEFAULT_LABELS,
        drop_test_duplicates: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images of `split` ('train', 'public', 'private' or 'test') with labels re-indexed
        into `labels`; classes not in `labels` are left out."""
        codes = {"train": (0,), "public": (1,), "private": (2,), "test": (1, 2)}
        if split not in codes:
            raise DataError(f"unknown split {split!r}; choose from train, public, private, test")
        unknown = [c for c in labels if c not in FER2013_CLASSES]
        if unknown:
            raise DataError(
                f"unknown class {unknown[0]!r}; FER2013 has {', '.join(FER2013_CLASSES)}"
            )
        remap = np.full(len(FER2013_CLASSES), -1, np.int64)
        for new, name in enumerate(labels):
            remap[FER2013_CLASSES.index(name)] = new
        y = remap[self.labels.astype(np.int64)]
        keep = np.isin(self.splits, codes[split]) & (y >= 0)
        if drop_test_duplicates and split == "train":
            keep &= ~self.train_copies_of_test()
        return self.images[keep], y[keep]

    def train_copies_of_test(self) -> np.ndarray:
        """Mask of training images whose pixels equal some test image (a known FER2013 leak)."""
        digests = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in self.images]
        test = {d for d, s in zip(digests, self.splits) if s != 0}
        return np.array([s == 0 and d in test for d, s in zip(digests, self.splits)])

    def counts(self) -> dict:
        out = {}
        for code, split in enumerate(SPLITS):
            m = self.splits == code
            out[split] = {
                c: int(np.sum(self.labels[m] == i)) for i, c in enumerate(FER2013_CLASSES)
            }
        return out


def default_path(env_names: tuple[str, ...], fallback: Path) -> Path | None:
    """The first of these environment variables that is set, else `fallback` if it exists."""
    env = next((os.environ[n] for n in env_names if os.environ.get(n)), None)
    if env:
        return Path(env)
    return fallback if fallback.is_file() else None


def input_path(given, env_names: tuple[str, ...], fallback: Path, what: str, hint: str) -> Path:
    """The input file the user gave ("" or None: `default_path`), checked to exist; a
    one-line DataError naming it and saying how to get it otherwise."""
    path = default_path(env_names, fallback) if given is None or str(given) == "" else given
    if path is None:
        raise DataError(f"no {what} given; {hint}")
    if not Path(path).exists():
        raise DataError(f"{path}: {what} not found; {hint}")
    return Path(path)


def cache_dir() -> Path:
    return Path(os.environ.get("FER_EDGE_CACHE", Path.home() / ".cache" / "fer-edge"))


def load_fer2013(path: str | os.PathLike | None = None, use_cache: bool = True) -> Fer2013:
    """Load FER2013 from a zip, folder or csv (default: $DATA, then ../shared's archive)."""
    path = input_path(path, ("DATA", "FER_DATA"), SHARED_ARCHIVE, "FER2013 data", KAGGLE_HINT)
    digest = _sha256_of(path)
    cached = cache_dir() / f"fer2013-{digest[:16]}-v{CACHE_FORMAT}.npz"
    if use_cache and cached.is_file():
        try:
            return _read_cache(cached, path, digest)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache %s (%s)", cached, exc)
    if path.is_dir():
        data = _from_entries(_folder_entries(path), path, digest)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            data = _from_entries(_zip_entries(zf, path), path, digest)
    elif path.suffix.lower() == ".csv":
        data = _from_csv(path, digest)
    else:
        raise DataError(f"{path}: not a FER2013 archive.zip, folder or fer2013.csv; {KAGGLE_HINT}")
    if use_cache:
        _write_cache(cached, data)
    return data


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _zip_entries(zf: zipfile.ZipFile, path: Path):
    names = sorted(n for n in zf.namelist() if not n.endswith("/"))
    # Some unpackers add one parent folder (e.g. archive/train/...): accept it.
    prefix = _layout_prefix([n.split("/") for n in names], path)
    for n in names:
        parts = n[len(prefix) :].split("/")
        if len(parts) == 3 and not parts[2].startswith("."):
            yield parts, (lambda n=n: zf.read(n))


def _folder_entries(path: Path):
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    prefix = _layout_prefix([f.split("/") for f in files], path)
    for f in files:
        parts = f[len(prefix) :].split("/")
        if len(parts) == 3 and not parts[2].startswith("."):
            yield parts, (lambda f=f: (path / f).read_bytes())
    # Empty class folders hold no files; check the directories themselves too.
    for top in ("train", "test"):
        root = path / prefix / top
        if root.is_dir():
            for d in root.iterdir():
                if d.is_dir() and not any(d.iterdir()):
                    raise DataError(f"{d}: class folder is empty")


def _layout_prefix(parts: list[list[str]], path: Path) -> str:
    tops = {p[0] for p in parts if len(p) >= 3}
    if "train" in tops:
        return ""
    seconds = {p[1] for p in parts if len(p) >= 4}
    if len(tops) == 1 and "train" in seconds:
        return tops.pop() + "/"
    raise DataError(f"{path}: no train/<class>/ folders found (expected Kaggle's FER2013 layout)")


def _from_entries(entries, path: Path, digest: str) -> Fer2013:
    images, labels, splits, names, skipped = [], [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    for (top, cls, fname), read in entries:
        if top not in ("train", "test"):
            continue
        if cls not in FER2013_CLASSES:
            raise DataError(
                f"{path}: unknown class folder {top}/{cls}; expected {', '.join(FER2013_CLASSES)}"
            )
        seen[(top, cls)] = seen.get((top, cls), 0) + 1
        img = cv2.imdecode(np.frombuffer(read(), np.uint8), cv2.IMREAD_GRAYSCALE)
        if img is None:
            skipped.append(f"{top}/{cls}/{fname}")
            continue
        if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
            img = cv2.resize(img, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        prefix = fname.split("_", 1)[0]
        split = 0 if top == "train" else _PREFIX_SPLIT.get(prefix, 2)
        images.append(img)
        labels.append(FER2013_CLASSES.index(cls))
        splits.append(split)
        names.append(f"{top}/{cls}/{fname}")
    if not any(t == "train" for t, _ in seen):
        raise DataError(f"{path}: no images under train/; {KAGGLE_HINT}")
    if not any(t == "test" for t, _ in seen):
        raise DataError(f"{path}: no images under test/ (needed for validation and evaluation)")
    if skipped:
        log.warning(
            "%d images failed to decode and were skipped (first: %s)", len(skipped), skipped[0]
        )
    if not images:
        raise DataError(f"{path}: no image decoded")
    return Fer2013(
        images=np.stack(images),
        labels=np.array(labels, np.int8),
        splits=np.array(splits, np.uint8),
        names=np.array(names),
        source=str(path),
        sha256=digest,
        skipped=tuple(skipped),
    )


def _from_csv(path: Path, digest: str) -> Fer2013:
    images, labels, splits, names, skipped = [], [], [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"emotion", "pixels", "Usage"} <= set(
            reader.fieldnames
        ):
            raise DataError(f"{path}: expected a fer2013.csv with columns emotion,pixels,Usage")
        for row_no, row in enumerate(reader, start=2):
            try:
                label = int(row["emotion"])
                pixels = np.array(row["pixels"].split(), np.uint8)
                split = _USAGE_SPLIT[row["Usage"]]
                if not 0 <= label < len(FER2013_CLASSES) or pixels.size != IMAGE_SIZE * IMAGE_SIZE:
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                skipped.append(f"line {row_no}")
                continue
            images.append(pixels.reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(label)
            splits.append(split)
            names.append(f"line {row_no}")
    if not images:
        raise DataError(f"{path}: no usable rows")
    return Fer2013(
        np.stack(images),
        np.array(labels, np.int8),
        np.array(splits, np.uint8),
        np.array(names),
        str(path),
        digest,
        tuple(skipped),
    )


def _write_cache(cached: Path, data: Fer2013) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fer2013-", suffix=".npz", dir=cached.parent)
    with os.fdopen(fd, "wb") as f:
        np.savez(
            f,
            images=data.images,
            labels=data.labels,
            splits=data.splits,
            names=data.names,
            skipped=np.array(data.skipped, dtype=str),
        )
    os.replace(tmp, cached)


def _read_cache(cached: Path, path: Path, digest: str) -> Fer2013:
    with np.load(cached, allow_pickle=False) as z:
        return Fer2013(
            z["images"],
            z["labels"],
            z["splits"],
            z["names"],
            str(path),
            digest,
            tuple(z["skipped"].tolist()),
        )


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of about n items with each class in its original proportion.

    Each class's count is rounded on its own, so the total can miss n by up to one per class.
    Kept so on purpose: the training holdout (train/stage1.py) is drawn with this function, and
    an exact-n rule would move faces between the holdout and training for every shipped model."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        take = max(1, int(round(n * len(idx) / len(y))))
        picks.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picks))


__all__ = ["Fer2013", "load_fer2013", "stratified_subset", "SPLITS", "KAGGLE_HINT"]
