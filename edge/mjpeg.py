"""HTTP MJPEG streams (multipart/x-mixed-replace), read part by part so that each frame keeps
its producer's capture stamp.

mjpg-streamer, many IP and ESP32 cameras and our own preview server send one JPEG per part;
mjpg-streamer and `benchmarks/live.py` also send `X-Timestamp: <epoch seconds>` with each part,
the moment the frame was captured. cv2.VideoCapture would decode the stream too, but it drops
those headers and buffers frames of its own. A URL that does not answer with a multipart
stream is handed to OpenCV unchanged.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.parse
from collections.abc import Iterator

import cv2
import numpy as np
from fer_edge.edge.errors import SourceError
from fer_edge.edge.sources import LatestFrameReader, OpenCVLiveSource, Source
from fer_edge.edge.types import Frame

log = logging.getLogger(__name__)

MULTIPART = "multipart/x-mixed-replace"
MAX_PART = 32 * 2**20  # a part larger than this is not a camera frame


def _connect(url: str, timeout: float):
    """(connection, response) for a GET of `url`; SourceError with the reason when it fails."""
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": f"{MULTIPART}, image/jpeg"})
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise SourceError(f"{url}: cannot open stream ({exc})") from None
    if resp.status != 200:
        conn.close()
        raise SourceError(f"{url}: cannot open stream (HTTP {resp.status} {resp.reason})")
    return conn, resp


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"').removeprefix("--").encode()
    return b""


class MjpegStreamSource(Source):
    """A multipart JPEG stream over HTTP, read on a thread that keeps only the newest frame."""

    name = "stream"
    live = True

    def __init__(self, url: str, timeout: float = 5.0, _opened=None):
        self.url, self.timeout = url, timeout
        self._conn, self._resp = _opened or _connect(url, timeout)
        self._check()
        self._reader = LatestFrameReader(self._read, self._reopen, url)

    def _check(self) -> None:
        ctype = self._resp.getheader("Content-Type", "")
        if not ctype.lower().startswith(MULTIPART):
            self._conn.close()
            raise SourceError(f"{self.url}: not an MJPEG stream (Content-Type {ctype!r})")
        self._marker = b"--" + _boundary(ctype)

    def _reopen(self) -> None:
        self._conn.close()
        self._conn, self._resp = _connect(self.url, self.timeout)
        self._check()

    def _part(self) -> tuple[dict[str, str], bytes] | None:
        """The next part's headers and body, or None when the stream ended."""
        fp = self._resp
        line = fp.readline(1024)
        while line and not line.startswith(b"--"):  # blank lines or a preamble before a part
            line = fp.readline(1024)
        if not line:
            return None
        headers = {}
        while (line := fp.readline(1024).strip()) != b"":
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "-1"))
        if 0 <= length <= MAX_PART:
            return headers, fp.read(length)
        body = bytearray()  # no length: read up to the next boundary line
        while (line := fp.readline(65536)) and not line.startswith(self._marker):
            body += line
            if len(body) > MAX_PART:
                return None
        return headers, bytes(body).rstrip(b"\r\n")

    def _read(self):
        try:
            part = self._part()
        except (OSError, ValueError, http.client.HTTPException):
            part = None
        if part is None:
            return False, None
        headers, body = part
        got = time.time()
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        try:
            stamp = float(headers["x-timestamp"])
        except (KeyError, ValueError):
            stamp = got
        return img is not None, img, stamp

    def frames(self) -> Iterator[Frame]:
        return self._reader.frames()

    def close(self) -> None:
        def unblock():
            sock = self._conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        self._reader.stop(unblock)
        self._conn.close()


def open_http_source(url: str, timeout: float = 5.0) -> Source:
    """An MJPEG stream read part by part, or OpenCV for anything else the URL serves."""
    conn, resp = _connect(url, timeout)
    if resp.getheader("Content-Type", "").lower().startswith(MULTIPART):
        return MjpegStreamSource(url, timeout, _opened=(conn, resp))
    conn.close()
    log.debug("%s is not multipart; reading it with OpenCV", url)
    return OpenCVLiveSource(url)
