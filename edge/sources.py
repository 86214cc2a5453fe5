"""Frame sources behind one interface: iterate frames, close when done.

`open_source(spec)` picks the kind from the spec: a camera index ("0"), "picamera", a video or
image file, a folder of images, or a stream URL (rtsp://, http://). Live sources read on a
thread that keeps only the newest frame, so a slow stage never builds a backlog, and reopen
with backoff when the device stops delivering. Every frame carries its capture stamp
(`Frame.t_capture`); an HTTP MJPEG stream is read by edge.mjpeg, which keeps the producer's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from fer_edge.edge.config import DEFAULTS
from fer_edge.edge.errors import SourceError
from fer_edge.edge.types import Closeable, Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class Source(Closeable):
    """Yields frames until exhausted or closed; a context manager."""

    name = "source"
    live = False

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError


class VideoFileSource(Source):
    """A video file, decoded frame by frame (no frame dropped); `t` is media time."""

    name = "video"

    def __init__(self, path: str | Path, loop: bool = False, decode_threads: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: video file not found")
        self.loop = loop
        self.decode_threads = decode_threads  # FFmpeg's decoder threads (0 = OpenCV's choice)
        self._lock = threading.Lock()
        self._cap = self._open()
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def _open(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_N_THREADS, self.decode_threads] if self.decode_threads else []
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, params)
        ok, _ = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise SourceError(
                f"{self.path}: cannot decode this video (unsupported or corrupt file)"
            )
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return cap

    def _decoded(self) -> Iterator[tuple[np.ndarray, float]]:
        while True:
            with self._lock:  # close() may run while the read-ahead thread decodes
                if self._cap is None:
                    return
                ok, img = self._cap.read()
                if not ok and self.loop:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, img = self._cap.read()
            if not ok:
                return
            yield img, time.time()  # "captured" = decoded, for a file

    def frames(self) -> Iterator[Frame]:
        # Decode one step ahead on a thread (bounded, nothing dropped): cv2 releases the GIL,
        # so decoding overlaps detection on a second core.
        for index, (img, stamp) in enumerate(read_ahead(self._decoded(), depth=4)):
            yield Frame(img, index, index / self.fps, t_capture=stamp)

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


def read_ahead(items: Iterator, depth: int) -> Iterator:
    """Run `items` on a thread, at most `depth` ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def fill():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        finally:
            q.put(done)

    thread = threading.Thread(target=fill, name="read-ahead", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class ImageSource(Source):
    """One image file or every image in a folder (sorted by name)."""

    name = "images"

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise SourceError(
                    f"{path}: folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
        else:
            self.files = [path]

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise SourceError(f"{f}: cannot read this image")
            yield Frame(img, i, float(i), t_capture=time.time())


class LatestFrameReader:
    """Reads a live device on a thread and keeps only the newest frame.

    `read()` returns (ok, frame) or (ok, frame, capture stamp); without a stamp the frame is
    stamped with time.time() as soon as the read returns. A frame replaced before anyone took
    it is dropped: `next()` says how many were dropped since the caller's previous frame.
    """

    def __init__(self, read, reopen, name: str, max_backoff: float = 8.0):
        self._read, self._reopen, self._name = read, reopen, name
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._stamp = 0.0
        self._seq = 0
        self._stop = threading.Event()
        self.max_backoff = max_backoff
        self._thread = threading.Thread(target=self._run, name=f"capture-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            got = self._read()
            ok, img = got[0], got[1]
            stamp = got[2] if len(got) > 2 else time.time()
            if ok and img is not None:
                backoff = 0.5
                with self._cond:
                    self._frame, self._stamp, self._seq = img, stamp, self._seq + 1
                    self._cond.notify_all()
                continue
            if self._stop.is_set():
                return
            log.warning("%s stopped delivering frames; reopening in %.1f s", self._name, backoff)
            if self._stop.wait(backoff):
                return
            backoff = min(self.max_backoff, backoff * 2)
            try:
                self._reopen()
            except SourceError as exc:
                log.warning("%s", exc)

    def next_stamped(self, last_seq: int, timeout: float = 1.0):
        """(seq, frame or None, capture stamp, frames dropped since `last_seq`)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq != last_seq or self._stop.is_set(), timeout)
            if self._seq == last_seq:
                return last_seq, None, 0.0, 0
            return self._seq, self._frame, self._stamp, max(0, self._seq - last_seq - 1)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def frames(self) -> Iterator[Frame]:
        """Frames as they come, each with its capture stamp and the drops before it."""
        seq, index, t0 = 0, 0, time.monotonic()
        while True:
            seq, img, stamp, dropped = self.next_stamped(seq)
            if img is None:
                if self.stopped:
                    return
                continue
            # The first frame's "drops" are frames the device delivered before we asked.
            dropped = dropped if index else 0
            yield Frame(img, index, time.monotonic() - t0, t_capture=stamp, dropped_before=dropped)
            index += 1

    def stop(self, unblock=None) -> None:
        """Stop reading; `unblock()` (e.g. closing a socket) frees a read that is waiting."""
        self._stop.set()
        if unblock is not None:
            unblock()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


class OpenCVLiveSource(Source):
    """A webcam index or a network stream via cv2.VideoCapture."""

    live = True

    def __init__(self, spec: str | int, width: int = 0, height: int = 0):
        self.spec, self.width, self.height = spec, width, height
        self.name = "camera" if isinstance(spec, int) else "stream"
        self._cap = self._open()
        self._reader = LatestFrameReader(lambda: self._cap.read(), self._reopen, str(spec))

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.spec)
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if not cap.isOpened() or not cap.read()[0]:
            cap.release()
            if isinstance(self.spec, int):
                raise SourceError(
                    f"camera {self.spec}: cannot open (no such device or it is busy); "
                    "use SOURCE=<video file> or --source PATH when there is no camera"
                )
            raise SourceError(f"{self.spec}: cannot open stream")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _reopen(self) -> None:
        self._cap.release()
        self._cap = self._open()

    def frames(self) -> Iterator[Frame]:
        return self._reader.frames()

    def close(self) -> None:
        self._reader.stop()
        self._cap.release()


def open_source(
    spec: str,
    loop: bool = False,
    width: int = 0,
    height: int = 0,
    lores_width: int = DEFAULTS.detect_width,
    decode_threads: int = 0,
) -> Source:
    """Open a source from its command-line spec (see module docstring)."""
    spec = str(spec).strip()
    if spec.isdigit():
        return OpenCVLiveSource(int(spec), width, height)
    if spec in ("picamera", "picamera2", "pi"):
        from fer_edge.edge.picamera import PiCameraSource

        return PiCameraSource(width or 1280, height or 720, lores_width=lores_width)
    if spec.lower().startswith(("http://", "https://")):
        from fer_edge.edge.mjpeg import open_http_source

        return open_http_source(spec)
    if spec.lower().startswith(STREAM_PREFIXES):
        return OpenCVLiveSource(spec)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"--source {spec}: no such file, folder or camera")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoFileSource(path, loop=loop, decode_threads=decode_threads)
