"""What the MQTT sink derives from the frames before it publishes: each track's debounced
label (LabelDwell, for PREFIX/state) and the share of each label (ShareWindow, for the
summary). Standard library only, so both are testable without a broker."""

from __future__ import annotations

from collections import deque


class LabelDwell:
    """Each track's published label: a new label becomes it only after holding, frame after
    frame, for `seconds` of stream time (a video file's timestamps, a camera's clock).

    The smoothed label still flips for a frame or two on a blink or a head turn; published as
    is, a Home Assistant automation on "changed to surprise" fires on that noise. A track's
    first label waits too, so every published label has held for `seconds`. 0 publishes
    every change at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.published: dict[int, str] = {}
        self._candidate: dict[int, tuple[str, float]] = {}  # track -> (label, since)

    def update(self, track: int, label: str, t: float) -> float | None:
        """The time `label` began if it becomes the track's published label at `t`, else None."""
        if self.published.get(track) == label:
            self._candidate.pop(track, None)
            return None
        held, since = self._candidate.get(track, (None, t))
        if held != label or t < since:  # a new candidate (or the clock went back: start over)
            since = t
            self._candidate[track] = (label, t)
        # 1e-6: frame times are index / fps, so 15 frames at 30 fps may fall just short of 0.5
        if t - since < self.seconds - 1e-6:
            return None
        del self._candidate[track]
        self.published[track] = label
        return since

    def forget(self, live: set[int]) -> None:
        """Drops the tracks not in `live` (faces that left long ago)."""
        self.published = {k: v for k, v in self.published.items() if k in live}
        self._candidate = {k: v for k, v in self._candidate.items() if k in live}

    def __len__(self) -> int:
        return len(self.published) + len(self._candidate)


class ShareWindow:
    """Share of each label among the faces seen over the last `seconds` (by face-frames)."""

    def __init__(self, n_labels: int, seconds: float):
        self.seconds = seconds
        self.counts = [0] * n_labels
        self._seen: deque[tuple[float, int]] = deque()

    def add(self, now: float, label_indices: list[int]) -> None:
        for k in label_indices:
            self._seen.append((now, k))
            self.counts[k] += 1
        while self._seen and self._seen[0][0] < now - self.seconds:
            self.counts[self._seen.popleft()[1]] -= 1

    def shares(self) -> list[float]:
        total = sum(self.counts)
        return [c / total if total else 0.0 for c in self.counts]
