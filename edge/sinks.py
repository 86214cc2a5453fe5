"""Where results go: JSON Lines events, an overlay window, an MJPEG preview over HTTP."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edge.errors import ConfigError
from edge.types import FrameResult

log = logging.getLogger(__name__)


def face_events(result: FrameResult, labels: tuple[str, ...]) -> list[dict]:
    """One JSON-ready object per face: frame, t, track, box, label, score and probs; plus
    t_capture (epoch seconds the frame was captured) when the source stamped it."""
    out = []
    for face in result.faces:
        k = face.label_index()
        out.append(
            {
                "frame": result.frame.index,
                "t": round(result.frame.t, 4),
                "track": face.track,
                "box": list(face.box.as_tuple()),
                "label": labels[k],
                "score": round(float(face.probs[k]), 4),
                "probs": {lb: round(float(p), 4) for lb, p in zip(labels, face.probs)},
            }
        )
        if result.frame.t_capture is not None:
            out[-1]["t_capture"] = round(result.frame.t_capture, 6)
    return out


class EventWriter:
    """Appends JSON Lines, flushed per line, so a kill loses nothing already written."""

    def __init__(self, path: str, labels: tuple[str, ...]):
        self.labels = labels
        self.path = path
        if path == "-":
            self._f, self._own = sys.stdout, False
        else:
            try:
                self._f, self._own = open(path, "a", buffering=1), True  # line-buffered
            except OSError as exc:
                raise ConfigError(
                    f"--events {path}: cannot open for writing ({exc.strerror})"
                ) from None
        self.count = 0

    def write(self, result: FrameResult) -> None:
        for event in face_events(result, self.labels):
            self._f.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.count += 1
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def draw_overlay(
    image: np.ndarray, result: FrameResult, labels: tuple[str, ...], fps: float | None = None
) -> np.ndarray:
    """Boxes, the winning label with its confidence, per-class bars, and FPS."""
    canvas = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    for face in result.faces:
        x, y, w, h = face.box.as_tuple()
        k = face.label_index()
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), 2)
        cv2.putText(
            canvas,
            f"{labels[k]} {face.probs[k]:.0%}",
            (x, max(15, y - 8)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (0, 200, 0),
            2,
            cv2.LINE_AA,
        )
        for i, (lb, p) in enumerate(zip(labels, face.probs)):
            by = y + h + 14 + 14 * i
            cv2.rectangle(canvas, (x, by - 9), (x + int(80 * float(p)), by), (0, 160, 255), -1)
            cv2.putText(canvas, lb, (x + 84, by), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    if fps is not None:
        cv2.putText(
            canvas,
            f"{fps:.1f} FPS",
            (10, 24),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
    return canvas


def display_available() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Window:
    """An OpenCV window; the headless wheel has none, so say what to install instead."""

    def __init__(self, title: str = "fer-edge"):
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise ConfigError(
                "this OpenCV build has no GUI (opencv-python-headless): use "
                "--headless, --preview_port 8080, or `pip install opencv-python`"
            ) from None

    def show(self, image: np.ndarray) -> bool:
        """False when the user closed the window or pressed q / Esc."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class MjpegServer:
    """Serves the newest overlay as multipart JPEG at http://HOST:PORT/ (127.0.0.1 by default)."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80):
        self._jpeg: bytes | None = None
        self._cond = threading.Condition()
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                last = None
                try:
                    while True:
                        with server._cond:
                            server._cond.wait_for(
                                lambda seen=last: server._jpeg is not seen or server._closed, 1.0
                            )
                            if server._closed:
                                return
                            jpeg = last = server._jpeg
                        if jpeg is None:
                            continue
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, *args):
                pass

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"--preview_port {port}: cannot listen on {host} ({exc.strerror})"
            ) from None
        self._httpd.daemon_threads = True
        self.quality = quality
        self.url = f"http://{host}:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        log.info("MJPEG preview at %s", self.url)

    def publish(self, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg = buf.tobytes()
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
