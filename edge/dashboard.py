"""Dashboard: one page served by the runtime (standard library HTTP server, no CDN).

  /            the page (edge/dashboard-assets/, shipped as package data)
  /video.mjpg  the annotated video (edge.sinks.MjpegStream, the preview's stream)
  /events      Server-Sent Events: `hello` (labels, the whole timeline) then `tick` every 0.5 s
  /api/state   the same as `hello`, as one JSON document

Security defaults: it binds 127.0.0.1. Any other address needs a token (--dashboard-token or
--dashboard-token-file) and refuses to start without one. With a token, every request must carry
it (`Authorization: Bearer`, `?token=` or the cookie set by opening `/?token=...`); without it the
answer is 401, with a wrong one 403. Without a token only loopback Host headers are served, so a
web page cannot reach the dashboard through DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from fer_edge.edge.dashboard_state import DashboardState
from fer_edge.edge.errors import ConfigError, FerEdgeError
from fer_edge.edge.sinks import MjpegStream
from fer_edge.edge.types import FrameResult

log = logging.getLogger(__name__)

TOKEN_ENV = "FER_EDGE_DASHBOARD_TOKEN"
COOKIE = "fer_edge_token"
MIN_TOKEN = 16
TOKEN_RE = re.compile(rf"[A-Za-z0-9._~+/=-]{{{MIN_TOKEN},}}")  # also a valid cookie value
PUSH_EVERY = 0.5  # seconds between SSE ticks
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def source_name(spec: str) -> str:
    """What the page says it shows: a file's name, or a URL without its user and password."""
    if "://" in spec:
        url = urlsplit(spec)
        return url._replace(
            netloc=(url.hostname or "") + (f":{url.port}" if url.port else "")
        ).geturl()
    return Path(spec).name or spec


@dataclass(frozen=True)
class DashboardSettings:
    port: int  # TCP port (1-65535)
    host: str = "127.0.0.1"  # address to bind
    token: str | None = field(default=None, repr=False)  # required beyond loopback
    window: float = 300.0  # seconds of stream time on the timeline
    video_fps: float = 15.0  # the page's video is encoded at most this often

    @classmethod
    def from_args(cls, args) -> DashboardSettings:
        token = args.dashboard_token
        where = "--dashboard-token"
        if args.dashboard_token_file:
            where = f"--dashboard-token-file {args.dashboard_token_file}"
            try:
                token = Path(args.dashboard_token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read ({exc.strerror})") from None
        elif token is None and os.environ.get(TOKEN_ENV):
            token, where = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
        if token is not None and not TOKEN_RE.fullmatch(token):
            raise ConfigError(
                f"{where}: give a token of at least {MIN_TOKEN} letters, digits or ._~+/=- "
                "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if not token and not is_loopback(args.dashboard_host):
            raise ConfigError(
                f"--dashboard-host {args.dashboard_host}: serving beyond loopback needs a token; "
                "pass --dashboard-token-file PATH (or --dashboard-token, or set "
                f"{TOKEN_ENV}), or bind 127.0.0.1 and use an SSH tunnel"
            )
        return cls(
            args.dashboard,
            args.dashboard_host,
            token or None,
            args.dashboard_window,
            args.dashboard_fps,
        )


def _load_assets() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("fer_edge.edge") / "dashboard-assets"
    try:
        return {p: (folder.joinpath(f).read_bytes(), ct) for p, (f, ct) in ASSETS.items()}
    except OSError as exc:
        raise FerEdgeError(
            f"dashboard page missing from the installed package ({exc}); reinstall fer-edge"
        ) from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class Dashboard:
    """The page, its video and its live data; a context manager. Feed it with `write`."""

    def __init__(self, settings: DashboardSettings, labels: tuple[str, ...], info: dict):
        self.settings = settings
        self.stream = MjpegStream(quality=75)
        self.state = DashboardState(labels, settings.window)
        self._info = {**info, "video_fps": settings.video_fps}
        self._assets = _load_assets()
        self._tick: tuple[int, bytes] = (0, b"")
        self._cond = threading.Condition()
        self._closed = False
        self._next_video = 0.0
        try:
            self._httpd = _Server((settings.host, settings.port), self._handler_class())
        except OSError as exc:
            raise ConfigError(
                f"--dashboard {settings.port}: cannot listen on {settings.host} ({exc.strerror})"
            ) from None
        self.port = self._httpd.server_address[1]
        host = settings.host if ":" not in settings.host else f"[{settings.host}]"
        self.url = f"http://{host}:{self.port}/"
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, name="dashboard", daemon=True),
            threading.Thread(target=self._push_loop, name="dashboard-push", daemon=True),
        ]
        for t in self._threads:
            t.start()
        hint = "?token=<your token>" if settings.token else ""
        log.info("dashboard at %s%s", self.url, hint)

    def wants_frame(self) -> bool:
        """True when someone watches the video and the next frame is due (saves the encoding)."""
        return self.stream.viewers > 0 and time.monotonic() >= self._next_video

    needs_canvas = False  # drawn only when `wants_frame` says someone watches

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> bool:
        self.state.update(result)
        if image is not None and self.stream.viewers > 0:
            self._next_video = time.monotonic() + 1.0 / self.settings.video_fps
            self.stream.publish(image)
        return True

    def _push_loop(self) -> None:
        seq = 0
        while not self._closed:
            time.sleep(PUSH_EVERY)
            seq += 1
            data = json.dumps(self.state.tick(), separators=(",", ":")).encode()
            with self._cond:
                self._tick = (seq, data)
                self._cond.notify_all()

    def hello(self) -> bytes:
        return json.dumps(self.state.hello(self._info), separators=(",", ":")).encode()

    def stream_events(self, wfile) -> None:
        """Serve one SSE client until it leaves or the dashboard closes."""
        wfile.write(b"retry: 2000\nevent: hello\ndata: " + self.hello() + b"\n\n")
        wfile.flush()
        seen = self._tick[0]
        while True:
            with self._cond:
                self._cond.wait_for(lambda s=seen: self._tick[0] != s or self._closed, 15.0)
                if self._closed:
                    return
                fresh = self._tick[0] != seen
                seen, data = self._tick
            wfile.write(b"event: tick\ndata: " + data + b"\n\n" if fresh else b": keep-alive\n\n")
            wfile.flush()

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict) -> tuple[int, str] | None:
        """None when the request may go on, else (status, reason)."""
        token = self.settings.token
        if token is None:
            host = urlsplit(f"//{handler.headers.get('Host', '')}").hostname or ""
            return None if is_loopback(host) else (403, "only loopback Host names are served")
        supplied = None
        auth = handler.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            supplied = auth[7:].strip()
        elif "token" in query:
            supplied = query["token"][0]
        else:
            cookie = SimpleCookie(handler.headers.get("Cookie", ""))
            if COOKIE in cookie:
                supplied = cookie[COOKIE].value
        if supplied is None:
            return 401, "a token is required"
        if not hmac.compare_digest(supplied.encode(), token.encode()):
            return 403, "wrong token"
        return None

    def _handler_class(self):
        dash = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fer-edge"
            sys_version = ""

            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                refused = dash.authorize(self, query)
                if refused:
                    extra = {"WWW-Authenticate": 'Bearer realm="fer-edge"'}
                    return self._send(*refused, extra=extra if refused[0] == 401 else {})
                if url.path == "/" and "token" in query:  # keep the token out of the address bar
                    cookie = f"{COOKIE}={dash.settings.token}; HttpOnly; SameSite=Lax; Path=/"
                    return self._send(303, "", extra={"Location": "/", "Set-Cookie": cookie})
                if url.path in dash._assets:
                    body, ctype = dash._assets[url.path]
                    return self._send(200, body, ctype)
                if url.path == "/api/state":
                    return self._send(200, dash.hello(), "application/json")
                if url.path == "/video.mjpg":
                    self._head(200, dash.stream.content_type)
                    return dash.stream.serve(self.wfile)
                if url.path == "/events":
                    self._head(200, "text/event-stream")
                    try:
                        dash.stream_events(self.wfile)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                return self._send(404, "not found")

            def _head(self, code: int, ctype: str, extra: dict | None = None, length=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                for key, value in {**HEADERS, **(extra or {})}.items():
                    self.send_header(key, value)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send(self, code, body, ctype="text/plain; charset=utf-8", extra=None):
                data = body if isinstance(body, bytes) else (body + "\n" if body else "").encode()
                self._head(code, ctype, extra, len(data))
                self.wfile.write(data)

            def log_message(self, fmt, *args):
                text = fmt % args
                if dash.settings.token:  # a ?token= in the request line never reaches a log
                    text = text.replace(dash.settings.token, "<token>")
                log.debug("dashboard %s: %s", self.address_string(), text)

        return Handler

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.stream.close()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
