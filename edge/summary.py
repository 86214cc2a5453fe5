"""What a run saw: per face (track id), the share of its frames in each emotion, overall and
per second of stream time. `fer-edge run` prints the overall shares at the end; `--summary-csv`
writes the per-second shares and `--plot` draws them as a timeline.

A face's emotion in a frame is the argmax of its smoothed probabilities: the `label` that
`--events` writes for the same face and frame, so the two outputs can be checked against
each other. Shares count frames, not seconds: every frame a face is in counts once.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass

import numpy as np
from fer_edge.edge.errors import ConfigError
from fer_edge.edge.fileio import atomic_write_bytes
from fer_edge.edge.types import FrameResult

MAX_LINES = 8  # faces listed at the end of a run; a crowd's other faces are counted in one line
MAX_PLOTTED = 4  # faces drawn in --plot, the ones seen in the most frames
# Fixed colours per emotion, so two plots read the same (matplotlib's tab10 order)
COLOURS = {
    "neutral": "#7f7f7f",
    "happy": "#ff7f0e",
    "sad": "#1f77b4",
    "angry": "#d62728",
    "surprise": "#2ca02c",
    "fear": "#9467bd",
    "disgust": "#8c564b",
}


@dataclass(frozen=True)
class FaceSummary:
    """One track over the whole run."""

    track: int
    frames: int  # frames the face was in
    first_t: float  # stream time (s) of its first and last frame
    last_t: float
    counts: tuple[int, ...]  # frames per emotion, contract label order

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(c / self.frames for c in self.counts)

    @property
    def dominant(self) -> int:
        """Index of the emotion in most frames (the first in label order on a tie)."""
        return int(np.argmax(self.counts))


def require_matplotlib(path: str) -> None:
    """Fail before the run starts, in one line, when --plot cannot be drawn here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--plot {path}: needs matplotlib, which is not installed "
            "(pip install matplotlib; --summary-csv needs nothing extra)"
        ) from None


class RunSummary:
    """A sink that counts each face's emotion per frame and per second of stream time.

    It keeps a few integers per face and second, so an hour-long camera run stays small.
    """

    needs_canvas = False

    def __init__(self, labels: tuple[str, ...]):
        self.labels = tuple(labels)
        self.frames = 0  # frames written, with or without a face
        self._per_second: dict[tuple[int, int], list[int]] = {}  # (track, second) -> counts
        self._totals: dict[int, list[int]] = {}
        self._span: dict[int, tuple[float, float]] = {}

    def write(self, result: FrameResult, canvas=None) -> bool:
        self.frames += 1
        t = result.frame.t
        second = int(math.floor(t))
        for face in result.faces:
            k = face.label_index()
            tid = face.track
            self._per_second.setdefault((tid, second), [0] * len(self.labels))[k] += 1
            self._totals.setdefault(tid, [0] * len(self.labels))[k] += 1
            first, _ = self._span.get(tid, (t, t))
            self._span[tid] = (first, t)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def faces(self) -> list[FaceSummary]:
        """Every track, the one seen in the most frames first (then by track id)."""
        out = [
            FaceSummary(tid, sum(c), *self._span[tid], tuple(c)) for tid, c in self._totals.items()
        ]
        return sorted(out, key=lambda f: (-f.frames, f.track))

    def lines(self) -> list[str]:
        """A few short lines for the end of a run: per face its dominant emotion and shares."""
        faces = self.faces()
        if not faces:
            return [f"no face seen in {self.frames} frames"]
        out = [f"what the run saw ({len(faces)} face{'s' if len(faces) > 1 else ''}, "
               "share of each face's frames):"]  # fmt: skip
        for f in faces[:MAX_LINES]:
            order = sorted(range(len(self.labels)), key=lambda k: (-f.counts[k], k))
            shares = ", ".join(f"{self.labels[k]} {f.shares[k]:.0%}" for k in order if f.counts[k])
            out.append(
                f"  face {f.track}: mostly {self.labels[f.dominant]} ({shares}); "
                f"{f.frames} frames, {f.first_t:.1f}-{f.last_t:.1f} s"
            )
        rest = faces[MAX_LINES:]
        if rest:
            out.append(f"  and {len(rest)} more faces, each in {rest[0].frames} frames or fewer")
        return out

    def rows(self) -> list[dict]:
        """Per face and second: frames seen and the share of them in each emotion."""
        out = []
        for (tid, second), counts in sorted(self._per_second.items(), key=lambda kv: kv[0][::-1]):
            n = sum(counts)
            row = {"second": second, "track": tid, "frames": n}
            row.update({lb: round(c / n, 4) for lb, c in zip(self.labels, counts)})
            row["dominant"] = self.labels[int(np.argmax(counts))]
            out.append(row)
        return out

    def write_csv(self, path: str) -> None:
        """The per-second rows as CSV (`second,track,frames,<emotions...>,dominant`), atomically."""
        buf = io.StringIO()
        fields = ["second", "track", "frames", *self.labels, "dominant"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        _write("--summary-csv", path, buf.getvalue().encode())

    def write_plot(self, path: str) -> None:
        """The emotion timeline as a PNG: per face (the MAX_PLOTTED seen longest), the share
        of each emotion in each second, stacked."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        faces = self.faces()[:MAX_PLOTTED]
        rows = max(1, len(faces))
        fig = Figure(figsize=(9, 1.2 + 1.8 * rows), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
        for ax, f in zip(axes, faces):
            seconds = [s for (tid, s) in self._per_second if tid == f.track]
            x = np.arange(min(seconds), max(seconds) + 2)  # one step past the last second
            shares = np.zeros((len(self.labels), len(x)))
            for i, s in enumerate(x[:-1]):
                counts = self._per_second.get((f.track, int(s)))
                if counts:  # a second the face was out of view stays empty
                    shares[:, i] = np.array(counts) / sum(counts)
            shares[:, -1] = shares[:, -2]
            colours = [COLOURS.get(lb) for lb in self.labels]
            ax.stackplot(x, shares, labels=self.labels, colors=colours, step="post")
            ax.set_ylim(0, 1)
            ax.set_ylabel("share")
            ax.set_title(
                f"face {f.track}: mostly {self.labels[f.dominant]} ({f.frames} frames)",
                fontsize=10,
                loc="left",
            )
        if not faces:
            axes[0].set_title(f"no face seen in {self.frames} frames", fontsize=10, loc="left")
        else:
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                       ncols=len(self.labels), fontsize=8)  # fmt: skip
        axes[-1].set_xlabel("stream time (s)")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        _write("--plot", path, buf.getvalue())


def check_output(option: str, path: str) -> None:
    """Fail before the run starts, in one line, when `path` cannot be a file."""
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # atomic_path creates missing folders
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{option} {path}: cannot write in {parent}")


def _write(option: str, path: str, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write ({exc.strerror or exc})") from None
