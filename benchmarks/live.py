"""Latency on a live source: a local camera stand-in and the `latency` bench mode.

The producer (`python -m fer_edge.benchmarks.live --video V --fps 30`) behaves like an IP camera: it
serves an HTTP MJPEG stream on 127.0.0.1 and, at a steady `fps`, "captures" the next frame of
the video: it stamps it with time.time() and sends it to every client at once, with
`X-Timestamp` (the capture time, as mjpg-streamer sends it) and `X-Frame` (its number). A
client that is not ready misses frames, as it would miss them from a camera. The frames are
JPEG-encoded once before serving starts, so encoding (a camera's hardware job) does not take
CPU from the pipeline being measured.

The `latency` mode runs a configuration on that stream with the runtime's own reader
(edge.mjpeg: a thread that keeps only the newest frame) and measures, per processed frame, the
frame's age when its event line has been written and flushed: capture -> transfer -> decode ->
wait for the pipeline -> detect -> classify -> event. It also counts frames that never reached
the pipeline: dropped by the latest-frame reader, and not delivered at all.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fer_edge.evaluation.latency import summarise

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0  # seconds for the producer to encode its frames and start listening


def encode_frames(video: str, count: int, quality: int = 85) -> list[bytes]:
    import cv2

    cap = cv2.VideoCapture(video)
    out = []
    try:
        while len(out) < count:
            ok, img = cap.read()
            if not ok:
                break
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            out.append(buf.tobytes())
    finally:
        cap.release()
    if not out:
        raise SystemExit(f"{video}: cannot decode this video")
    return out


class Producer:
    """Serves `jpegs` as a live MJPEG stream at `fps`, looping, for at most `seconds`."""

    def __init__(self, jpegs: list[bytes], fps: float, port: int = 0, seconds: float = 600.0):
        self.jpegs, self.fps, self.seconds = jpegs, fps, seconds
        self._cond = threading.Condition()
        self._current: tuple[int, float, bytes] | None = None
        self._stop = threading.Event()
        producer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                seen = -1
                try:
                    while not producer._stop.is_set():
                        with producer._cond:
                            producer._cond.wait_for(
                                lambda seen=seen: (
                                    producer._current is not None
                                    and producer._current[0] != seen
                                    or producer._stop.is_set()
                                ),
                                1.0,
                            )
                            if producer._current is None or producer._current[0] == seen:
                                continue
                            seen, stamp, jpeg = producer._current
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpeg)}\r\nX-Timestamp: {stamp:.6f}\r\n"
                            f"X-Frame: {seen}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def _clock(self) -> None:
        period, start = 1.0 / self.fps, time.perf_counter()
        n = 0
        while not self._stop.is_set() and n * period < self.seconds:
            delay = start + n * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with self._cond:
                self._current = (n, time.time(), self.jpegs[n % len(self.jpegs)])
                self._cond.notify_all()
            n += 1
        self._stop.set()

    def serve(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self._clock()
        self.httpd.shutdown()


@contextlib.contextmanager
def producer_process(video: str, fps: float, frames: int, seconds: float):
    """Start the producer in its own process (a camera is another device); yields its URL."""
    cmd = [sys.executable, "-m", "fer_edge.benchmarks.live", "--video", video, "--fps", str(fps)]
    cmd += ["--frames", str(frames), "--seconds", str(seconds)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        line = _readline(proc, STARTUP_TIMEOUT)
        if not line.startswith("listening "):
            err = proc.stderr.read() if proc.poll() is not None else ""
            raise RuntimeError(f"live producer did not start: {line!r} {err[-500:]}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


def measure_latency(cfg, url: str, seconds: float, warmup: float, fps: float) -> dict:
    """Run `cfg` on the live stream at `url`; frame ages and losses over `seconds`."""
    from fer_edge.benchmarks.system import ProcessMeter, progress_bar
    from fer_edge.benchmarks.throughput import build_pipeline, thread_plan
    from fer_edge.edge.sinks import EventWriter
    from fer_edge.edge.sources import open_source

    ages, waits, works = [], [], []
    dropped = processed = with_face = 0
    bar = progress_bar(int((warmup + seconds) * fps), f"{cfg.name} @ {fps:g} fps")
    with (
        thread_plan(cfg),
        tempfile.TemporaryDirectory() as tmp,
        open_source(url) as source,
        contextlib.closing(source.frames()) as frames,
    ):
        pipeline = build_pipeline(cfg)
        with EventWriter(os.path.join(tmp, "events.jsonl"), pipeline.classifier.labels) as events:
            t_warm = time.monotonic() + warmup
            t_end = t_warm + seconds
            meter = None
            for frame in frames:
                start = time.time()
                result = pipeline.process(frame)
                events.write(result)
                done = time.time()
                bar.update(1 + frame.dropped_before)
                now = time.monotonic()
                if now < t_warm:
                    continue
                if meter is None:
                    meter, first = ProcessMeter().start(), time.monotonic()
                    continue  # its drops belong to the warm-up
                ages.append(done - frame.t_capture)
                waits.append(start - frame.t_capture)
                works.append(done - start)
                dropped += frame.dropped_before
                processed += 1
                with_face += bool(result.faces)
                if now >= t_end:
                    break
            usage = meter.stop() if meter else {}
            wall = time.monotonic() - first if meter else 0.0
    bar.close()
    if not processed:
        raise RuntimeError(f"{url}: no frames arrived in {warmup + seconds:.0f} s")
    expected = int(round(wall * fps))
    return {
        "fps_offered": fps,
        "frames": processed,
        "seconds": round(wall, 2),
        "fps": round(processed / wall, 2) if wall else None,
        "age": summarise(ages),
        "wait": summarise(waits),  # capture -> the pipeline takes it (transfer, decode, queue)
        "work": summarise(works),  # the pipeline and the event line
        "dropped_by_reader": dropped,
        "not_delivered": max(0, expected - processed - dropped),
        "dropped_fraction": round(max(0, expected - processed) / max(1, expected), 4),
        "face_fraction": round(with_face / processed, 4),
        **usage,
    }


def run_latency(configs, video: str, rates, seconds: float, warmup: float = 2.0) -> dict:
    """Every configuration at every rate, each on a fresh producer; failures are recorded."""
    frames = min(300, int(max(rates) * (seconds + warmup)) + 30)  # looped when shorter
    out: dict = {}
    for cfg in configs:
        for fps in rates:
            key = f"{cfg.name}@{fps:g}"
            entry: dict = {"config": cfg.name, "description": cfg.describe()}
            try:
                with producer_process(video, fps, frames, seconds + warmup + 60) as url:
                    entry.update(measure_latency(cfg, url, seconds, warmup, fps))
            except Exception as exc:  # one failure must not lose the other runs
                log.warning("%s failed: %s", key, exc)
                entry["error"] = f"{type(exc).__name__}: {exc}"
            out[key] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="serve a video as a live MJPEG camera on 127.0.0.1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--video", required=True, help="video file whose frames are served")
    p.add_argument("--fps", type=float, default=30.0, help="frames captured per second")
    p.add_argument("--frames", type=int, default=300, help="frames encoded (then looped)")
    p.add_argument("--port", type=int, default=0, help="port (0 = any free port)")
    p.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    args = p.parse_args(argv)
    producer = Producer(encode_frames(args.video, args.frames), args.fps, args.port, args.seconds)
    print(f"listening http://127.0.0.1:{producer.port}/", flush=True)
    producer.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
