"""Faces matched across frames by IoU; probabilities smoothed per track so labels hold still."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from fer_edge.edge.types import Box


@dataclass
class _Track:
    id: int
    box: Box
    probs: np.ndarray
    missed: int = 0


@dataclass
class Tracker:
    """Greedy IoU matching; an exponential moving average of probabilities per track.

    `alpha` is the weight of the newest frame (1.0 = no smoothing). A track survives `max_missed`
    frames without a match, so a blink of the detector does not reset its history.
    """

    alpha: float = 0.4
    iou_threshold: float = 0.3
    max_missed: int = 5
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0

    def assign(self, boxes: list[Box]) -> list[int | None]:
        """For each box, the index of the track it continues, or None for a new face."""
        pairs = sorted(
            ((b.iou(t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self._tracks)),
            reverse=True,
        )
        assigned: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.iou_threshold:
                break
            if assigned[i] is not None or j in used:
                continue
            assigned[i] = j
            used.add(j)
        return assigned

    def has_new(self, boxes: list[Box]) -> bool:
        """True when some box does not continue a track (it needs classifying)."""
        return any(j is None for j in self.assign(boxes))

    def update(
        self, boxes: list[Box], probs: list[np.ndarray | None]
    ) -> list[tuple[int, np.ndarray]]:
        """(track id, smoothed probabilities) for each box, in the order given.

        A None in `probs` (a frame that was not classified) moves the track's box and keeps its
        probabilities; only boxes that continue a track may have None.
        """
        assigned = self.assign(boxes)
        used = {j for j in assigned if j is not None}
        out = []
        for box, p, j in zip(boxes, probs, assigned):
            if j is not None:
                t = self._tracks[j]
                if p is not None:
                    t.probs = self.alpha * p + (1.0 - self.alpha) * t.probs
                t.box, t.missed = box, 0
            else:
                if p is None:
                    raise ValueError(f"a new face at {box.as_tuple()} needs probabilities")
                t = _Track(self._next_id, box, p.astype(np.float32))
                self._next_id += 1
                self._tracks.append(t)
                used.add(len(self._tracks) - 1)
            out.append((t.id, t.probs))
        for j, t in enumerate(self._tracks):
            if j not in used:
                t.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return out
