"""Where results go: JSON Lines events, an overlay window, an MJPEG preview over HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time

import cv2
import numpy as np
from fer_edge.edge.display import display_available  # noqa: F401 (callers import it here)
from fer_edge.edge.errors import ConfigError
from fer_edge.edge.fileio import DEFAULT_EVENTS_SYNC, LineAppender
from fer_edge.edge.types import Closeable, Face, FrameResult

log = logging.getLogger(__name__)


def face_event(result: FrameResult, face: Face, labels: tuple[str, ...]) -> dict:
    """One face as a JSON-ready object: frame, t, track, box, label, score and probs; plus
    t_capture (epoch seconds the frame was captured) when the source stamped it."""
    k = face.label_index()
    event = {
        "frame": result.frame.index,
        "t": round(result.frame.t, 4),
        "track": face.track,
        "box": list(face.box.as_tuple()),
        "label": labels[k],
        "score": round(float(face.probs[k]), 4),
        "probs": {lb: round(float(p), 4) for lb, p in zip(labels, face.probs)},
    }
    if result.frame.t_capture is not None:
        event["t_capture"] = round(result.frame.t_capture, 6)
    return event


def face_events(result: FrameResult, labels: tuple[str, ...]) -> list[dict]:
    """One JSON-ready object per face (see face_event)."""
    return [face_event(result, face, labels) for face in result.faces]


class Sink(Closeable):
    """Where results go. One verb, `write(result, canvas)`, where canvas is the overlay image
    (drawn only when some sink has `needs_canvas`); it returns False when the user asked to
    stop (a closed window). Every sink is a context manager that closes what it holds."""

    needs_canvas = False

    def write(self, result: FrameResult, canvas: np.ndarray | None = None) -> bool:
        raise NotImplementedError


class EventWriter(Sink):
    """Appends JSON Lines, a frame's lines in one write, so a kill loses nothing already
    written and the file never holds a torn line.

    A full disk (or an SD card's I/O error) does not stop the runtime: the camera, MQTT and
    the dashboard carry on, the events of that time are dropped and counted, one log line
    says so, and writing resumes by itself once the disk takes a whole write again (tried at
    most every `retry_every` seconds).

    `sync_every` is how many seconds of events a power cut may take (see `LineAppender`):
    1 s by default, 0 for none at all (a journal commit per frame with a face), None for
    whatever the kernel's write-back leaves (about 5 s on ext4)."""

    def __init__(
        self,
        path: str,
        labels: tuple[str, ...],
        retry_every: float = 1.0,
        sync_every: float | None = DEFAULT_EVENTS_SYNC,
    ):
        self.labels = labels
        self.path = path
        self.retry_every = retry_every
        self.count = 0  # events written
        self.dropped = 0  # events lost to write errors, all told
        self._failing_since: float | None = None  # monotonic time of the first failed write
        self._next_try = 0.0
        self._dropped_now = 0  # dropped in the current failing stretch
        self._file = None
        if path != "-":
            try:
                self._file = LineAppender(path, sync_every)
            except OSError as exc:
                raise ConfigError(
                    f"--events {path}: cannot open for writing ({exc.strerror})"
                ) from None

    def _append(self, text: str) -> None:
        if self._file is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            self._file.append(text.encode())

    def write(self, result: FrameResult, canvas: np.ndarray | None = None) -> bool:
        events = face_events(result, self.labels)
        if not events:
            if self._file is not None:
                # a face that left still gets its last lines synced in time; a failing sync
                # shows up at the next write
                with contextlib.suppress(OSError):
                    self._file.tick()
            return True
        now = time.monotonic()
        if self._failing_since is not None and now < self._next_try:
            self._drop(len(events))
            return True
        text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
        try:
            self._append(text)
        except OSError as exc:
            if self._file is None and isinstance(exc, BrokenPipeError):
                raise  # stdout's reader left (`| head`): nobody reads events again; run stops
            if self._failing_since is None:
                self._failing_since = now
                log.warning(
                    "events: cannot write %s: %s; dropping events until it can (retry every %g s)",
                    self.path, (exc.strerror or str(exc)).lower(), self.retry_every,
                )  # fmt: skip
            self._next_try = now + self.retry_every
            self._drop(len(events))
            return True
        if self._failing_since is not None:
            log.warning(
                "events: writing %s again after %.1f s; %d events dropped meanwhile",
                self.path, now - self._failing_since, self._dropped_now,
            )  # fmt: skip
            self._failing_since, self._dropped_now = None, 0
        self.count += len(events)
        return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        self._dropped_now += n

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


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


class Window(Sink):
    """An OpenCV window; the headless wheel has none, so say how to swap it for the GUI one."""

    needs_canvas = True

    def __init__(self, title: str = "fer-edge"):
        self.title = title
        self._sized = False
        try:
            # no Qt toolbar or status bar: the overlay is the whole window
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error:
            # installing opencv-python beside the headless wheel leaves two packages writing
            # one cv2/ folder, so the advice is a swap
            raise ConfigError(
                "this OpenCV has no GUI (the headless wheel), so no window: add --headless (and "
                "--dashboard 8080 or --events - to see results), or swap in the GUI wheel with "
                "`make setup GUI=1` or `pip uninstall -y opencv-python-headless && "
                "pip install 'opencv-python<5'`"
            ) from None

    def write(self, result: FrameResult | None, canvas: np.ndarray | None = None) -> bool:
        """Shows the canvas; False when the user pressed q or Esc in the window."""
        if not self._sized:  # Qt opens a resizable window at 400x300: show the frame 1:1
            cv2.resizeWindow(self.title, canvas.shape[1], canvas.shape[0])
            self._sized = True
        cv2.imshow(self.title, canvas)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class MjpegStream:
    """The newest JPEG of an image stream and the clients waiting for it.

    The preview server and the dashboard both serve one: the frame loop calls `publish`, each
    HTTP client's thread calls `serve`, which writes multipart JPEG until the client leaves or
    the stream closes.
    """

    content_type = "multipart/x-mixed-replace; boundary=frame"

    def __init__(self, quality: int = 80):
        self.quality = quality
        self.viewers = 0  # clients being served now; the dashboard encodes only when > 0
        self._jpeg: bytes | None = None
        self._cond = threading.Condition()
        self._closed = False

    def publish(self, image: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg = buf.tobytes()
                self._cond.notify_all()

    def serve(self, wfile) -> None:
        with self._cond:
            self.viewers += 1
        last = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda seen=last: self._jpeg is not seen or self._closed, 1.0
                    )
                    if self._closed:
                        return
                    jpeg = last = self._jpeg
                if jpeg is None:
                    continue
                wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            with self._cond:
                self.viewers -= 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class MjpegServer(Sink):
    """Serves the newest overlay as multipart JPEG at http://HOST:PORT/ (127.0.0.1 by default)."""

    needs_canvas = True

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80):
        # http.server is imported here so a run without a preview loads no server code
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        stream = self.stream = MjpegStream(quality)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(200)
                self.send_header("Content-Type", stream.content_type)
                self.end_headers()
                stream.serve(self.wfile)

            def log_message(self, *args):
                pass

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"--preview-port {port}: cannot listen on {host} ({exc.strerror})"
            ) from None
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        log.info("MJPEG preview at %s", self.url)

    def write(self, result: FrameResult | None, canvas: np.ndarray | None = None) -> bool:
        self.stream.publish(canvas)
        return True

    def close(self) -> None:
        self.stream.close()
        self._httpd.shutdown()
        self._httpd.server_close()
