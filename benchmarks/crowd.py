"""Crowds: a multi-face test video built from the shared face videos, and the `crowd` mode.

`python -m fer_edge.benchmarks.crowd --faces 1,4,9,16` writes one 1280x720 video per face count
into the
cache (FER_EDGE_CACHE, default ~/.cache/fer-edge/crowd/; never into the repository): a k x k grid
of tiles (k = 1..4), each tile a face video started at its own offset and every other tile
mirrored, so the faces do not move in step. The frame size stays the same for every count, so
decoding costs the same and only the number (and size) of faces changes. The `crowd` mode runs
a configuration on each video: FPS, ms per frame, ms per face, faces found per frame.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

log = logging.getLogger(__name__)

SIZE = (1280, 720)
FRAMES = 300  # 10 s at 30 fps
VERSION = 1  # bump when the layout changes, so cached videos are rebuilt


def cache_dir() -> Path:
    root = Path(os.environ.get("FER_EDGE_CACHE", Path.home() / ".cache" / "fer-edge"))
    return root / "crowd"


def crowd_path(videos: list[str], faces: int, frames: int, out: Path) -> Path:
    key = "|".join(
        [str(VERSION), str(faces), str(frames)]
        + [f"{Path(v).name}:{Path(v).stat().st_size}" for v in videos]
    )
    return out / f"crowd_{faces}faces_{hashlib.sha256(key.encode()).hexdigest()[:10]}.mp4"


def build_crowd_video(
    videos: list[str], faces: int, frames: int = FRAMES, out: Path | None = None
) -> Path:
    """The k x k tiled video for `faces` = k*k (built once, then taken from the cache)."""
    import cv2
    import numpy as np

    k = math.isqrt(faces)
    if k * k != faces or not 1 <= k <= 6:
        raise ValueError(f"{faces} faces: use a square number from 1 to 36 (1, 4, 9, 16)")
    out = Path(out or cache_dir())
    path = crowd_path(videos, faces, frames, out)
    if path.is_file():
        return path
    out.mkdir(parents=True, exist_ok=True)
    tile_w, tile_h = SIZE[0] // k, SIZE[1] // k
    caps = []
    for j in range(faces):
        cap = cv2.VideoCapture(videos[j % len(videos)])
        length = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 1)
        cap.set(cv2.CAP_PROP_POS_FRAMES, (j * 53) % max(1, length - 1))
        caps.append(cap)
    tmp = path.with_name(f".{path.name}.part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"{tmp}: OpenCV cannot write mp4v video here")
    canvas = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    try:
        for _ in range(frames):
            for j, cap in enumerate(caps):
                ok, img = cap.read()
                if not ok:  # loop this tile's video
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, img = cap.read()
                tile = cv2.resize(img, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
                if j % 2:
                    tile = cv2.flip(tile, 1)
                r, c = divmod(j, k)
                canvas[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
            writer.write(canvas)
    finally:
        writer.release()
        for cap in caps:
            cap.release()
    os.replace(tmp, path)  # whole file or none: a killed build leaves no half video
    return path


def crowd_config(cfg, faces: int):
    """`cfg` for a k x k crowd: the detector sees each tile as wide as one face gets alone."""
    k = math.isqrt(faces)
    width = min(SIZE[0], cfg.detect_width * k) if cfg.detect_width else 0
    return replace(cfg, name=f"{cfg.name}/{faces}", detect_width=width, max_faces=max(16, faces))


def run_crowd(configs, videos: list[str], counts, frames: int, warmup: int, rounds: int = 1):
    """Each configuration on each crowd video; per face count: FPS, ms per face, scaling.

    With `rounds` > 1 the whole set runs that many times and each run keeps its median-FPS
    round, as `fer-edge bench --rounds` does for the pipeline mode."""
    paths = {faces: build_crowd_video(videos, faces) for faces in counts}
    done: dict[str, list[dict]] = {}
    for _ in range(max(1, rounds)):
        for faces in counts:
            for cfg in configs:
                run = crowd_config(cfg, faces)
                done.setdefault(run.name, []).append(
                    _crowd_run(run, cfg, faces, paths, frames, warmup)
                )
    out: dict = {}
    for name, entries in done.items():
        timed = sorted((e for e in entries if "fps" in e), key=lambda e: e["fps"])
        out[name] = timed[len(timed) // 2] if timed else entries[-1]
        if len(timed) > 1:
            out[name]["fps_rounds"] = [e["fps"] for e in entries if "fps" in e]
    for cfg in configs:  # cost relative to the first face count, same configuration
        one = out.get(f"{cfg.name}/{counts[0]}", {}).get("ms_per_frame")
        for faces in counts:
            entry = out[f"{cfg.name}/{faces}"]
            if one and entry.get("ms_per_frame"):
                entry["cost_vs_first"] = round(entry["ms_per_frame"] / one, 2)
    return out


def _crowd_run(run, cfg, faces: int, paths: dict, frames: int, warmup: int) -> dict:
    from fer_edge.benchmarks.throughput import run_pipeline
    from fer_edge.benchmarks.timing import FramePlan

    entry: dict = {"faces": faces, "config": cfg.name, "description": run.describe()}
    try:
        summary, _ = run_pipeline(run, FramePlan(str(paths[faces]), warmup, frames))
    except Exception as exc:
        log.warning("%s failed: %s", run.name, exc)
        entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry
    per_frame_ms = 1000.0 / summary["fps"]
    found = summary["faces_per_frame"]
    entry.update(
        fps=summary["fps"],
        ms_per_frame=round(per_frame_ms, 3),
        faces_per_frame=found,
        ms_per_face=round(per_frame_ms / found, 3) if found else None,
        cpu_percent=summary.get("cpu_percent"),
        passes=summary.get("passes"),
    )
    return entry


def main(argv: list[str] | None = None) -> int:
    media = Path(__file__).resolve().parents[2] / "shared" / "media"
    p = argparse.ArgumentParser(
        description="build the multi-face test videos into the cache",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--faces", default="1,4,9,16", help="face counts (square numbers)")
    p.add_argument(
        "--videos",
        nargs="+",
        default=[str(p) for p in sorted(media.glob("*.mp4"))],
        help="face videos the tiles come from",
    )
    p.add_argument("--frames", type=int, default=FRAMES, help="frames per video")
    p.add_argument("--out", default=str(cache_dir()), help="folder for the videos")
    args = p.parse_args(argv)
    if not args.videos:
        print(f"crowd: no face videos in {media}; pass --videos", file=sys.stderr)
        return 2
    for faces in (int(f) for f in args.faces.split(",")):
        print(build_crowd_video(args.videos, faces, args.frames, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
