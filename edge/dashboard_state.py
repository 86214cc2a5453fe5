"""What the dashboard shows, kept up to date by the frame loop and read by the push thread.

The timeline is a list of segments per track, `[id, track, label index, t start, t end]` in
stream time (the events' `t`): a track's segment grows while its smoothed label stays the same
and a new one starts when the label changes or the face was away for more than `gap` seconds.
Pushes carry only the segments that changed, so the traffic does not grow with the window.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from fer_edge.edge.types import FrameResult


def _rounded(seg: list) -> list:
    return [seg[0], seg[1], seg[2], round(seg[3], 3), round(seg[4], 3)]


class DashboardState:
    def __init__(self, labels: tuple[str, ...], window: float, gap: float = 1.0):
        self.labels, self.window, self.gap = labels, window, gap
        self._lock = threading.Lock()
        self._segments: deque[list] = deque()
        self._open: dict[int, list] = {}  # track -> its newest segment
        self._dirty: dict[int, list] = {}  # segment id -> segment, changed since the last push
        self._next_id = 0
        self._faces: tuple = ()
        self._t = 0.0
        self._frames = 0
        self._stage_ms: dict[str, float] = {}  # moving average per pipeline stage
        self._frame_times: deque[float] = deque(maxlen=61)  # monotonic times, for the fps

    def update(self, result: FrameResult) -> None:
        """Called by the frame loop once per frame: a few list and dict operations per face."""
        now = time.monotonic()
        t = result.frame.t
        with self._lock:
            self._frames += 1
            self._t = t
            self._faces = result.faces
            self._frame_times.append(now)
            for stage, seconds in result.timings.items():
                old = self._stage_ms.get(stage)
                ms = seconds * 1000.0
                self._stage_ms[stage] = ms if old is None else 0.9 * old + 0.1 * ms
            for face in result.faces:
                k = face.label_index()
                seg = self._open.get(face.track)
                if seg is not None and seg[2] == k and t - seg[4] <= self.gap:
                    seg[4] = t
                else:
                    seg = [self._next_id, face.track, k, t, t]
                    self._next_id += 1
                    self._segments.append(seg)
                    self._open[face.track] = seg
                self._dirty[seg[0]] = seg
            while self._segments and self._segments[0][4] < t - self.window:
                old = self._segments.popleft()
                if self._open.get(old[1]) is old:
                    del self._open[old[1]]

    def _now(self) -> dict:
        times = self._frame_times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        faces = [
            {
                "track": f.track,
                "label": self.labels[f.label_index()],
                "score": round(float(f.probs[f.label_index()]), 3),
                "probs": [round(float(p), 3) for p in f.probs],
            }
            for f in self._faces
        ]
        mean = [
            round(sum(f["probs"][i] for f in faces) / len(faces), 3) if faces else 0.0
            for i in range(len(self.labels))
        ]
        return {
            "t": round(self._t, 3),
            "frames": self._frames,
            "fps": round(fps, 1),
            "stages_ms": {k: round(v, 2) for k, v in self._stage_ms.items()},
            "faces": faces,
            "distribution": mean,
        }

    def hello(self, info: dict) -> dict:
        """Everything a newly connected page needs: labels, settings and the whole timeline."""
        with self._lock:
            return {
                **info,
                "labels": list(self.labels),
                "window_s": self.window,
                **self._now(),
                "segments": [_rounded(s) for s in self._segments],
            }

    def tick(self) -> dict:
        """The current values and the segments changed since the previous tick."""
        with self._lock:
            changed = [_rounded(s) for s in self._dirty.values()]
            self._dirty.clear()
            return {**self._now(), "segments": changed}
