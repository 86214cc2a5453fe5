"""Raspberry Pi camera through picamera2 (imported only when asked for).

As picamera2 recommends, the camera delivers two streams: `main` for display and crops, and a
small `lores` YUV420 stream whose Y plane is the grey image the detector runs on, so the Pi
never resizes full frames in Python. tests/test_picamera.py runs this module against a test
double of Picamera2 (tests/picamera2_double.py), because no camera exists off a Pi.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
from fer_edge.edge.config import DEFAULTS
from fer_edge.edge.errors import SourceError
from fer_edge.edge.sources import LatestFrameReader, Source
from fer_edge.edge.types import Frame

log = logging.getLogger(__name__)

# Seconds without a frame before the camera counts as stalled and is restarted. A video
# configuration delivers a frame every 33-100 ms, so 2 s is never a slow exposure.
CAPTURE_TIMEOUT = 2.0


class PiCameraSource(Source):
    name = "picamera2"
    live = True

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        lores_width: int = DEFAULTS.detect_width,
        capture_timeout: float = CAPTURE_TIMEOUT,
    ):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install -y "
                "python3-picamera2` and use a venv made with --system-site-packages"
            ) from None
        self.capture_timeout = capture_timeout
        # lores may not be larger than main; 0 (detect on the full frame) means no lores at all.
        lores_w = min(lores_width, width) // 2 * 2
        lores_h = int(round(height * lores_w / width)) // 2 * 2
        self._lores = (lores_w, lores_h) if lores_w > 0 and lores_h > 0 else None
        self.small_scale = lores_w / width if self._lores else 1.0
        try:
            self._cam = Picamera2()
        except (IndexError, RuntimeError) as exc:
            raise SourceError(
                f"Pi camera not found ({exc}); check the ribbon cable and that "
                "`rpicam-hello` works (the legacy camera stack must be off)"
            ) from None
        streams = {"main": {"size": (width, height), "format": "RGB888"}}  # BGR bytes, as OpenCV
        if self._lores:
            streams["lores"] = {"size": self._lores, "format": "YUV420"}
        try:
            self._cam.configure(self._cam.create_video_configuration(**streams))
            self._cam.start()
        except RuntimeError as exc:
            self._cam.close()
            raise SourceError(f"Pi camera: cannot start {width}x{height} ({exc})") from None
        self._reader = LatestFrameReader(self._read, self._restart, "picamera2")

    def _read(self):
        """One frame, or (False, None) when the camera stalls or fails: the reader then
        restarts it with backoff. Nothing may escape, or the reader thread would die."""
        try:
            request = self._cam.capture_request(wait=self.capture_timeout)
        except Exception as exc:  # TimeoutError when no frame comes; RuntimeError from libcamera
            log.warning("picamera2: no frame within %.1f s (%r)", self.capture_timeout, exc)
            return False, None
        stamp = time.time()  # the capture stamp events carry (t_capture)
        try:
            main = request.make_array("main")
            lores = None
            if self._lores:
                # YUV420 arrives as (h * 3/2) rows of `stride` bytes: the first h rows are the
                # Y (grey) plane, and the stride may be padded past the width.
                w, h = self._lores
                lores = np.ascontiguousarray(request.make_array("lores")[:h, :w])
        except Exception as exc:
            log.warning("picamera2: unreadable frame (%r)", exc)
            return False, None
        finally:
            request.release()
        return True, (main, lores), stamp

    def _restart(self) -> None:
        try:
            self._cam.stop()
            self._cam.start()
        except Exception as exc:
            raise SourceError(f"picamera2: restarting the camera failed ({exc!r})") from None

    def _reader_done(self) -> bool:
        return self._reader._stop.is_set() or not self._reader._thread.is_alive()

    def frames(self) -> Iterator[Frame]:
        seq, index, t0 = 0, 0, time.monotonic()
        while True:
            seq, item, stamp, dropped = self._reader.next_stamped(seq)
            if item is None:
                if self._reader_done():  # closed: the stream has ended, so must the loop
                    return
                continue
            main, lores = item
            yield Frame(
                main,
                index,
                time.monotonic() - t0,
                small=lores,
                small_scale=self.small_scale,
                t_capture=stamp,
                dropped_before=dropped if index else 0,
            )
            index += 1

    def close(self) -> None:
        self._reader.stop()
        try:
            self._cam.stop()
        finally:
            self._cam.close()
