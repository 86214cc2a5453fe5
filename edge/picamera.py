"""Raspberry Pi camera through picamera2 (imported only when asked for).

As picamera2 recommends, the camera delivers two streams: `main` for display and crops, and a
small `lores` YUV stream whose Y plane is the grey image the detector runs on, so the Pi never
resizes full frames in Python.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from edge.errors import SourceError
from edge.sources import LatestFrameReader, Source
from edge.types import Frame

log = logging.getLogger(__name__)


class PiCameraSource(Source):
    name = "picamera2"
    live = True

    def __init__(self, width: int = 1280, height: int = 720, lores_width: int = 320):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(
                "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install -y "
                "python3-picamera2` and use a venv made with --system-site-packages"
            ) from None
        lores_w = lores_width - lores_width % 2
        lores_h = int(round(height * lores_w / width)) // 2 * 2
        self.small_scale = lores_w / width
        try:
            self._cam = Picamera2()
        except (IndexError, RuntimeError) as exc:
            raise SourceError(
                f"Pi camera not found ({exc}); check the ribbon cable and that "
                "`rpicam-hello` works (the legacy camera stack must be off)"
            ) from None
        config = self._cam.create_video_configuration(
            main={"size": (width, height), "format": "RGB888"},  # BGR byte order, as OpenCV
            lores={"size": (lores_w, lores_h), "format": "YUV420"},
        )
        self._cam.configure(config)
        self._cam.start()
        self._lores_h = lores_h
        self._reader = LatestFrameReader(self._read, self._restart, "picamera2")

    def _read(self):
        request = self._cam.capture_request()
        stamp = time.time()  # the capture stamp events carry (t_capture)
        try:
            main = request.make_array("main")
            lores = request.make_array("lores")[: self._lores_h]  # the Y (grey) plane
        finally:
            request.release()
        return True, (main, lores), stamp

    def _restart(self) -> None:
        self._cam.stop()
        self._cam.start()

    def frames(self) -> Iterator[Frame]:
        seq, index, t0 = 0, 0, time.monotonic()
        while True:
            seq, item, stamp, dropped = self._reader.next_stamped(seq)
            if item is None:
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
        self._cam.stop()
        self._cam.close()
