"""FER+ crowd votes (10 annotators per image) as training targets and as a cleaner ruler.

Two inputs give the same votes:
- `ferplus_votes.csv` keyed by the Kaggle archive's own paths (`train/angry/Training_1.jpg`),
  for data loaded from archive.zip or its folder;
- FER+'s own `fer2013new.csv`, whose rows are the rows of the original `fer2013.csv`, for data
  loaded from that csv (the loader names those images `line <n>`).

Label rules (`--labels`):
- `fer2013`: the archive's folder label (noisy: FER+ disagrees on about a quarter).
- `ferplus-majority`: the one emotion with more votes than any other over all ten FER+
  columns (ties dropped, as in the dataset's MANIFEST); kept when it is one of our classes.
  An image whose plurality is `unknown`, `NF` (not a face) or a class we do not train is left
  out, whatever its folder says.
- `ferplus-soft`: the vote distribution over our classes. An image is kept when at least half
  of its votes fall in our classes; the rest (mostly fear, disgust, contempt, unknown or not a
  face) is left out rather than forced onto a class it was not voted for.
- `ferplus-fer2013`: the crowd and FER2013's annotator together. The folder label counts as
  `fer2013_votes` extra votes beside the crowd's ten, then the distribution over our classes is
  taken as in `ferplus-soft` (same keep rule, on the crowd's votes alone). Neither label set is
  the truth alone: the crowd calls half of FER2013's "sad" faces neutral, and the single
  annotator saw sadness the crowd mostly missed.
Images without votes (FER+ dropped 159 non-faces; PrivateTest votes are withheld) are left out
of both FER+ modes.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fer_edge.edge.errors import DataError

LABEL_MODES = ("fer2013", "ferplus-majority", "ferplus-soft", "ferplus-fer2013")
VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger",
    "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
# FER+ column -> our class name (FER2013's names); contempt, unknown and NF have none.
TO_FER2013 = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
}
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_VOTES = PROJECT_ROOT.parent / "shared" / "datasets" / "ferplus" / "ferplus_votes.csv"
HINT = (
    "pass --ferplus path/to/ferplus_votes.csv (keyed by archive path), or FER+'s "
    "fer2013new.csv together with --data fer2013.csv"
)


@dataclass(frozen=True)
class Votes:
    """Vote counts (N, 10) in VOTE_COLUMNS order, keyed like `Fer2013.names`."""

    counts: dict[str, np.ndarray]
    source: str

    def for_names(self, names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(votes (N, 10) float32, has_votes (N,) bool) for the dataset's image names."""
        out = np.zeros((len(names), len(VOTE_COLUMNS)), np.float32)
        has = np.zeros(len(names), bool)
        for i, n in enumerate(names):
            v = self.counts.get(str(n))
            if v is not None:
                out[i], has[i] = v, True
        return out, has


def load_votes(path: str | os.PathLike | None = None) -> Votes:
    from fer_edge.evaluation.data import input_path

    path = input_path(path, ("FERPLUS",), SHARED_VOTES, "FER+ votes file", HINT)
    if path.is_dir():
        raise DataError(f"{path}: a folder, not a FER+ votes csv; {HINT}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        if not set(VOTE_COLUMNS) <= fields:
            raise DataError(f"{path}: not a FER+ votes file (columns {', '.join(VOTE_COLUMNS)})")
        counts: dict[str, np.ndarray] = {}
        if "path" in fields:  # ferplus_votes.csv
            for row in reader:
                if row["neutral"] != "":
                    counts[row["path"]] = np.array([float(row[c]) for c in VOTE_COLUMNS])
        else:  # fer2013new.csv: data row k is fer2013.csv line k + 1 (line 1 is the header)
            for row_no, row in enumerate(reader, start=2):
                if (row.get("Image name") or "").strip():
                    counts[f"line {row_no}"] = np.array([float(row[c]) for c in VOTE_COLUMNS])
    if not counts:
        raise DataError(f"{path}: no rows with votes")
    return Votes(counts, str(path))


def majority(votes: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """Index into `labels` of each row's unique plurality emotion, or -1."""
    top = votes.max(1)
    unique = (votes == top[:, None]).sum(1) == 1
    idx = np.full(len(votes), -1, np.int64)
    for col, name in enumerate(VOTE_COLUMNS):
        ours = TO_FER2013.get(name)
        if ours in labels:
            idx[unique & (votes.argmax(1) == col) & (top > 0)] = labels.index(ours)
    return idx


def soft(votes: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(distribution (N, K) over `labels`, keep mask: at least half the votes in `labels`)."""
    cols = [VOTE_COLUMNS.index(c) for c in VOTE_COLUMNS if TO_FER2013.get(c) in labels]
    order = [labels.index(TO_FER2013[VOTE_COLUMNS[c]]) for c in cols]
    dist = np.zeros((len(votes), len(labels)), np.float32)
    dist[:, order] = votes[:, cols]
    inside = dist.sum(1)
    keep = (inside > 0) & (inside >= 0.5 * votes.sum(1))
    dist[keep] /= inside[keep, None]
    return dist, keep


_SPLIT_CODES = {"train": (0,), "public": (1,), "private": (2,), "test": (1, 2)}


def split_targets(
    data,
    split: str,
    labels: tuple[str, ...],
    mode: str,
    votes: Votes | None = None,
    drop_test_duplicates: bool = False,
    fer2013_votes: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, S, S), targets (N, K) float32, indices into `data`) under label rule `mode`."""
    if mode not in LABEL_MODES:
        raise DataError(f"--labels {mode!r}: choose from {', '.join(LABEL_MODES)}")
    if split not in _SPLIT_CODES:
        raise DataError(f"unknown split {split!r}; choose from {', '.join(_SPLIT_CODES)}")
    in_split = np.isin(data.splits, _SPLIT_CODES[split])
    if drop_test_duplicates and split == "train":
        in_split &= ~data.train_copies_of_test()
    k = len(labels)
    if mode == "fer2013":
        from fer_edge.edge.contract import FER2013_CLASSES

        remap = np.array([labels.index(c) if c in labels else -1 for c in FER2013_CLASSES])
        y = remap[data.labels.astype(np.int64)]
        idx = np.flatnonzero(in_split & (y >= 0))
        return data.images[idx], np.eye(k, dtype=np.float32)[y[idx]], idx
    if votes is None:
        votes = load_votes()
    v, has = votes.for_names(data.names)
    if not (has & in_split).any():
        raise DataError(
            f"{votes.source}: no FER+ votes match the {split} images of {data.source}; {HINT}"
            + (" (PrivateTest votes are withheld on purpose)" if split == "private" else "")
        )
    if mode == "ferplus-majority":
        y = majority(v, labels)
        idx = np.flatnonzero(in_split & has & (y >= 0))
        return data.images[idx], np.eye(k, dtype=np.float32)[y[idx]], idx
    dist, keep = soft(v, labels)
    if mode == "ferplus-fer2013":
        dist = with_folder_votes(v, data.labels, labels, fer2013_votes)
    idx = np.flatnonzero(in_split & has & keep)
    return data.images[idx], dist[idx], idx


def with_folder_votes(
    votes: np.ndarray, folder: np.ndarray, labels: tuple[str, ...], weight: float
) -> np.ndarray:
    """Distribution over `labels` of the crowd's votes plus `weight` votes for the folder label.

    `folder` indexes FER2013_CLASSES; a folder class outside `labels` adds nothing. Rows with no
    vote in `labels` at all come back as zeros (the keep rule drops them).
    """
    from fer_edge.edge.contract import FER2013_CLASSES

    cols = [VOTE_COLUMNS.index(c) for c in VOTE_COLUMNS if TO_FER2013.get(c) in labels]
    counts = np.zeros((len(votes), len(labels)), np.float64)
    for c in cols:
        counts[:, labels.index(TO_FER2013[VOTE_COLUMNS[c]])] = votes[:, c]
    remap = np.array([labels.index(c) if c in labels else -1 for c in FER2013_CLASSES])
    y = remap[folder.astype(np.int64)]
    rows = np.flatnonzero(y >= 0)
    counts[rows, y[rows]] += weight
    total = counts.sum(1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0).astype(np.float32)
