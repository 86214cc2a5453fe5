"""The timed frame loop every pipeline benchmark shares: warm up, then time each frame's stages.

"capture" is the time spent waiting for the next frame from the source. A video file decodes
on a read-ahead thread, so this is near zero while decoding keeps ahead of the pipeline and
grows when it does not: it is the decode cost the pipeline actually waits for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from fer_edge.benchmarks.system import ProcessMeter, progress_bar
from fer_edge.edge.types import Frame
from fer_edge.evaluation.latency import summarise

# A step does one frame's work: (seconds per stage, faces found).
Step = Callable[[Frame], tuple[dict[str, float], int]]


class Skipped(Exception):
    """A configuration that cannot run here (missing optional model or package); not a failure."""


class BenchError(Exception):
    """A configuration that ran but could not be measured."""


@dataclass(frozen=True)
class FramePlan:
    source: str  # what edge.sources.open_source opens
    warmup: int  # frames processed before timing starts (interpreter, caches, decoder)
    frames: int  # frames timed; 0 = until the video ends
    loop: bool = False  # restart the video when it ends, to time more frames than it holds


@dataclass(frozen=True)
class Timed:
    samples: dict[str, list[float]]  # stage -> seconds per timed frame, in stage order
    frames: int
    wall: float  # seconds from the first timed frame's request to the last frame's end
    with_face: int  # frames where at least one face was classified
    faces: int  # faces classified over all timed frames
    usage: dict  # ProcessMeter: cpu_percent, peak_rss_mib, rss_scope
    main_cpu: float = 0.0  # CPU seconds the pipeline's own thread spent in the timed steps

    def summary(self, faces: bool = True) -> dict:
        stages = {name: summarise(s) for name, s in self.samples.items()}
        if len(self.samples) > 1:
            stages["total"] = summarise(np.sum([self.samples[k] for k in self.samples], axis=0))
        out = {
            "frames": self.frames,
            "wall_s": round(self.wall, 3),
            "fps": round(self.frames / self.wall, 2),
            **self.usage,
        }
        # CPU time per frame is work done, whatever else the machine runs: all threads
        # (decoding, interpreter pool) and the pipeline thread alone (its serial path).
        if self.usage.get("cpu_percent") is not None:
            cpu = self.usage["cpu_percent"] / 100.0 * self.wall
            out["cpu_ms_per_frame"] = round(1000.0 * cpu / self.frames, 3)
        out["main_thread_cpu_ms_per_frame"] = round(1000.0 * self.main_cpu / self.frames, 3)
        if faces:
            out.update(
                frames_with_face=self.with_face,
                face_fraction=round(self.with_face / self.frames, 4),
                faces_per_frame=round(self.faces / self.frames, 3),
            )
        out["stages"] = stages
        return out


def time_frames(plan: FramePlan, step: Step, desc: str, decode_threads: int = 0) -> Timed:
    """Run `step` on `plan.warmup` frames untimed, then on `plan.frames` frames timed."""
    from fer_edge.edge.sources import open_source

    bar = progress_bar(plan.warmup + plan.frames if plan.frames else None, desc)
    samples: dict[str, list[float]] = {"capture": []}
    frames = with_face = faces = 0
    main_cpu = 0.0
    try:
        with (
            open_source(plan.source, loop=plan.loop, decode_threads=decode_threads) as source,
            contextlib.closing(source.frames()) as it,
        ):
            for _ in range(plan.warmup):
                frame = next(it, None)
                if frame is None:
                    break
                step(frame)
                bar.update()
            meter = ProcessMeter().start()
            t_start = t_end = time.perf_counter()
            while not plan.frames or frames < plan.frames:
                t0 = time.perf_counter()
                frame = next(it, None)
                t1 = time.perf_counter()
                if frame is None:
                    break
                c0 = time.thread_time()
                timings, n_faces = step(frame)
                main_cpu += time.thread_time() - c0
                t_end = time.perf_counter()
                samples["capture"].append(t1 - t0)
                for stage, seconds in timings.items():
                    samples.setdefault(stage, []).append(seconds)
                frames += 1
                with_face += n_faces > 0
                faces += n_faces
                bar.update()
            usage = meter.stop()
    finally:
        bar.close()
    if not frames:
        raise BenchError(
            f"{plan.source}: no frames left to time after {plan.warmup} warm-up "
            "frames; use a longer video or a smaller --warmup"
        )
    return Timed(samples, frames, t_end - t_start, with_face, faces, usage, main_cpu)
