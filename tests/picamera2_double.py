"""TEST DOUBLE of picamera2 (not picamera2): the parts of `Picamera2` that edge/picamera.py
calls, serving the frames of a real video file in exactly the formats a Pi camera delivers.

picamera2 needs libcamera's Python bindings and a camera, neither of which exists off a Pi,
so tests put this module in `sys.modules["picamera2"]`. What it reproduces, from picamera2's
own code (picamera2/request.py `Helpers.make_array`, picamera2/picamera2.py):

- `Picamera2()` raises IndexError when there is no camera (here: no `video` set);
- `create_video_configuration(main=..., lores=...)` returns the configuration; `configure`
  refuses what libcamera refuses for these streams (a lores that is not YUV or is larger than
  main, odd sizes) and fills in each stream's `stride` (rows padded to 64 bytes, as the Pi's
  ISP does);
- `capture_request(wait=seconds)` paces frames at the video's rate and raises TimeoutError
  when none comes within `wait` (after `stall_after` frames the "camera" stalls);
- a request's `make_array("main")` for RGB888 is height x width x 3 in B, G, R byte order;
  `make_array("lores")` for YUV420 is (height * 3/2) x stride: the Y plane, then U and V
  (I420), the stride padding left in, exactly as picamera2 returns it; `release()` returns
  the buffers, after which the arrays cannot be made;
- `stop()` / `start()` restart the stream (from the start of the video), `close()` ends it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

MAIN_FORMATS = {"RGB888": 3, "BGR888": 3}
LORES_FORMATS = {"YUV420"}


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


class Picamera2:
    video: Path | None = None  # what the "sensor" sees; None = no camera attached
    stall_after: int | None = None  # frames served per start before the camera stalls
    instances: list[Picamera2] = []

    def __init__(self, camera_num: int = 0):
        if self.video is None:
            raise IndexError("list index out of range")  # picamera2's error with no camera
        self.calls: list[str] = []
        self.camera_config: dict | None = None
        self.started = self.closed = False
        self.served = self.released = 0
        self._cap: cv2.VideoCapture | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        type(self).instances.append(self)

    def create_video_configuration(self, main=None, lores=None, **kwargs) -> dict:
        self.calls.append("create_video_configuration")
        config = {"use_case": "video", "main": {"format": "XBGR8888", "size": (1280, 720)}}
        config["main"].update(main or {})
        config["lores"] = None if lores is None else {"format": "YUV420", **lores}
        return {**config, **kwargs}

    def configure(self, config: dict) -> None:
        self.calls.append("configure")
        main, lores = dict(config["main"]), config.get("lores")
        if main["format"] not in MAIN_FORMATS:
            raise RuntimeError(f"the double serves only {sorted(MAIN_FORMATS)} main streams")
        mw, mh = main["size"]
        main["stride"] = _align(mw * MAIN_FORMATS[main["format"]])
        if lores is not None:
            lores = dict(lores)
            lw, lh = lores["size"]
            if lores["format"] not in LORES_FORMATS:
                raise RuntimeError("lores stream must be YUV")
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if lw % 2 or lh % 2:
                raise RuntimeError("lores stream dimensions must be even for YUV420")
            lores["stride"] = _align(lw)
        self.camera_config = {**config, "main": main, "lores": lores}

    def start(self) -> None:
        self.calls.append("start")
        if self.closed:
            raise RuntimeError("Camera is closed")
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        with self._lock:
            self._cap = cv2.VideoCapture(str(self.video))
            self._fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
            self._next_t, self._count = time.monotonic(), 0
            self.started = True
            self._stopped.clear()

    def stop(self) -> None:
        self.calls.append("stop")
        self._stopped.set()
        with self._lock:
            self.started = False
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    def close(self) -> None:
        self.calls.append("close")
        if self.started:
            self.stop()
        self.closed = True

    def capture_request(self, wait: float | None = None) -> _Request:
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        stalled = self.stall_after is not None and self._count >= self.stall_after
        delay = max(0.0, self._next_t - time.monotonic())
        if not stalled and self._stopped.wait(delay):
            raise RuntimeError("Camera stopped while capturing")
        with self._lock:
            ok, bgr = self._cap.read() if (self._cap is not None and not stalled) else (False, None)
            if ok:
                self._count += 1
                self._next_t += 1.0 / self._fps
        if not ok:  # no frame arrives: picamera2 raises TimeoutError once `wait` has passed
            self._stopped.wait(wait)  # wait=None: until the camera is stopped
            raise TimeoutError("no frame from the camera")
        self.served += 1
        return _Request(self, bgr)


class _Request:
    """A completed request: the frame as the ISP writes it into the two streams' buffers."""

    def __init__(self, cam: Picamera2, bgr: np.ndarray):
        self._cam, self._config = cam, cam.camera_config
        main = self._config["main"]
        self._buffers = {"main": _main_buffer(bgr, main)}
        if self._config.get("lores"):
            self._buffers["lores"] = _yuv420_buffer(bgr, self._config["lores"])

    def make_array(self, name: str) -> np.ndarray:
        if self._buffers is None:
            raise RuntimeError("request has been released")
        if name not in self._buffers:
            raise RuntimeError(f"Stream {name!r} is not defined")
        config, buf = self._config[name], self._buffers[name]
        (w, h), stride = config["size"], config["stride"]
        if config["format"] in MAIN_FORMATS:  # picamera2: strip the padding, (h, w, 3)
            return np.ascontiguousarray(buf.reshape(h, stride)[:, : w * 3]).reshape(h, w, 3)
        return buf.reshape(h * 3 // 2, stride)  # YUV420: padding left in, as picamera2 does

    def release(self) -> None:
        if self._buffers is not None:
            self._buffers = None
            self._cam.released += 1


def _main_buffer(bgr: np.ndarray, config: dict) -> np.ndarray:
    (w, h), stride = config["size"], config["stride"]
    img = bgr if bgr.shape[:2] == (h, w) else cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    if config["format"] == "BGR888":  # libcamera's BGR888 is R, G, B in memory
        img = img[..., ::-1]
    buf = np.zeros((h, stride), np.uint8)
    buf[:, : w * 3] = img.reshape(h, w * 3)
    return buf.reshape(-1)


def lores_image(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The lores picture: the ISP scales the whole sensor image down (area average)."""
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def _yuv420_buffer(bgr: np.ndarray, config: dict) -> np.ndarray:
    (w, h), stride = config["size"], config["stride"]
    i420 = cv2.cvtColor(lores_image(bgr, (w, h)), cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y, u, v = i420[: w * h], i420[w * h : w * h * 5 // 4], i420[w * h * 5 // 4 :]
    planes = np.zeros(stride * h * 3 // 2, np.uint8)
    planes[: stride * h].reshape(h, stride)[:, :w] = y.reshape(h, w)
    half = stride // 2
    for k, plane in enumerate((u, v)):  # chroma planes: half the stride, half the rows
        start = stride * h + k * half * (h // 2)
        planes[start : start + half * (h // 2)].reshape(h // 2, half)[:, : w // 2] = plane.reshape(
            h // 2, w // 2
        )
    return planes
