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

    def update(self, boxes: list[Box], probs: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """(track id, smoothed probabilities) for each box, in the order given."""
        pairs = sorted(
            ((b.iou(t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self._tracks)),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.iou_threshold:
                break
            if i in assigned or j in used:
                continue
            assigned[i] = j
            used.add(j)
        out = []
        for i, (box, p) in enumerate(zip(boxes, probs)):
            if i in assigned:
                t = self._tracks[assigned[i]]
                t.probs = self.alpha * p + (1.0 - self.alpha) * t.probs
                t.box, t.missed = box, 0
            else:
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
