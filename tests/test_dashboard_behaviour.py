"""What a dashboard viewer gets, in-process on an ephemeral loopback port: the source named
without its password, the page's files with their types, ticks at the push rate (never the
same tick twice), video encoded only for someone watching and at video_fps, and one line when
the page's files are missing from the installed package."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import numpy as np
import pytest
from conftest import wait_for
from fer_edge.edge import dashboard as dashboard_module
from fer_edge.edge.dashboard import PUSH_EVERY, Dashboard, DashboardSettings, source_name
from fer_edge.edge.errors import FerEdgeError
from fer_edge.edge.types import Box, Face, Frame, FrameResult


@pytest.mark.parametrize(
    "spec, shown",
    [
        ("rtsp://admin:s3cret@cam.local:554/stream1", "rtsp://cam.local:554/stream1"),
        ("http://user@10.0.0.7/video?fps=5", "http://10.0.0.7/video?fps=5"),
        ("rtsp://cam.local/live", "rtsp://cam.local/live"),
        ("/home/pi/videos/party.mp4", "party.mp4"),
        ("clips/a b.mkv", "a b.mkv"),
        ("picamera", "picamera"),
        ("0", "0"),
        ("/", "/"),
    ],
)
def test_the_page_names_its_source_without_user_or_password(spec, shown):
    assert source_name(spec) == shown


def result(n: int) -> FrameResult:
    p = np.array([0.25, 0.75], np.float32)
    face = Face(Box(1, 2, 30, 30), track=3, probs=p, raw_probs=p)
    return FrameResult(Frame(np.zeros((8, 8, 3), np.uint8), n, n / 10), (face,), {})


@pytest.fixture
def dash():
    with Dashboard(DashboardSettings(port=0, video_fps=2.0), ("neutral", "happy"), {}) as d:
        yield d


def test_the_page_files_are_served_with_their_types(dash):
    for path, ctype, start in (("", "text/html; charset=utf-8", b"<!doctype html"),
                               ("app.js", "text/javascript; charset=utf-8", b""),
                               ("app.css", "text/css; charset=utf-8", b"")):  # fmt: skip
        with urllib.request.urlopen(dash.url + path, timeout=5) as r:
            body = r.read()
            assert r.headers["Content-Type"] == ctype, path
            assert int(r.headers["Content-Length"]) == len(body) > 100
            assert body.lower().startswith(start)


def test_ticks_come_at_the_push_rate_each_once(dash):
    """A second and a half of /events: a hello, then one tick per PUSH_EVERY (0.5 s), not a
    stream of repeats of the newest one."""
    dash.write(result(0))
    got, comments, t0 = [], 0, time.monotonic()
    with urllib.request.urlopen(dash.url + "events", timeout=5) as r:
        for raw in r:
            if raw.startswith(b"event: "):
                got.append(raw.strip().split(b" ", 1)[1])
            elif raw.startswith(b"data: ") and got[-1] == b"tick":  # compact JSON, 2 per second
                assert b": " not in raw[6:] and b", " not in raw and json.loads(raw[6:])
            comments += raw.startswith(b":")  # a keep-alive: only after 15 s without a tick
            if time.monotonic() - t0 > 1.5:
                break
    assert comments == 0
    assert got[0] == b"hello"
    ticks = got[1:]
    assert set(ticks) == {b"tick"}
    expected = 1.5 / PUSH_EVERY
    assert expected - 2 <= len(ticks) <= expected + 1, len(ticks)


def read_for(sock: socket.socket, seconds: float, until: bytes | None = None) -> bytes:
    """What arrives within `seconds` (or until `until` has)."""
    end = time.monotonic() + seconds
    data = b""
    while (left := end - time.monotonic()) > 0 and not (until and until in data):
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_video_is_encoded_only_for_a_viewer_and_at_video_fps(dash):
    image = np.full((48, 64, 3), 200, np.uint8)
    assert not dash.wants_frame()
    dash.write(result(0), image)  # nobody watches: nothing is encoded for a later viewer
    with socket.create_connection(("127.0.0.1", dash.port), timeout=5) as viewer:
        viewer.sendall(b"GET /video.mjpg HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        wait_for(dash.wants_frame, 5, "the viewer to be counted")
        assert b"\xff\xd8" not in read_for(viewer, 0.6)
        # a frame without a picture (none was drawn) sends nothing and breaks nothing
        assert dash.write(result(1))
        assert b"\xff\xd8" not in read_for(viewer, 0.3)
        dash.write(result(2), image)
        assert b"\xff\xd9" in read_for(viewer, 2.0, until=b"\xff\xd9")
        # the next frame is due 1 / video_fps = 0.5 s after this one, not later
        t0 = time.monotonic()
        dash.write(result(3), image)
        assert not dash.wants_frame()
        wait_for(dash.wants_frame, 2, "the next frame to be due")
        assert 0.4 <= time.monotonic() - t0 <= 0.8


def test_a_page_missing_from_the_package_is_one_line(monkeypatch):
    monkeypatch.setitem(dashboard_module.ASSETS, "/app.js", ("gone.js", "text/javascript"))
    with pytest.raises(FerEdgeError) as exc:
        Dashboard(DashboardSettings(port=0), ("neutral",), {})
    message = str(exc.value)
    assert message.startswith("dashboard page missing from the installed package (")
    assert "gone.js" in message and message.endswith("); reinstall fer-edge")
    assert "\n" not in message


def test_the_state_a_page_starts_from_is_compact_json(dash):
    dash.write(result(0))
    with urllib.request.urlopen(dash.url + "api/state", timeout=5) as r:
        body = r.read()
    assert json.loads(body)["frames"] == 1
    assert b": " not in body and b", " not in body  # compact: sent every PUSH_EVERY
