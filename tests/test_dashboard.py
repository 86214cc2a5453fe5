"""The dashboard, served by the runtime while it plays the 480p video, read by Python's HTTP
client and by Debian's headless Chromium driven by Selenium. Loopback addresses only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port, one_line_error, run_cli, system_tool, wait_for
from fer_edge.edge.contract import read_contract

TOKEN = "test-token-0123456789abcdef"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1280,1000"]  # fmt: skip


@contextmanager
def dashboard_run(video, model, tmp_path, *flags):
    """The runtime playing the video in real time (looped, at most 60 s) with a dashboard:
    the `fer-edge` command a user types, run from outside the repository (the page's assets
    must come from the package, not from a folder that happens to be the working directory)."""
    port = free_port()
    log = tmp_path / "run.log"
    fer_edge = Path(sys.executable).with_name("fer-edge")
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            [fer_edge, "run", "--source", str(video), "--model", str(model),
             "--headless", "--realtime", "--loop", "--max-frames", "1800",
             "--dashboard", str(port), *flags],
            cwd=tmp_path, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    try:
        wait_for(lambda: proc.poll() is not None or "dashboard at" in log.read_text(), 60, "start")
        assert proc.poll() is None, log.read_text()
        yield f"http://127.0.0.1:{port}", log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    assert proc.returncode == 0, log.read_text()


def get(url: str, headers: dict | None = None, timeout: float = 5.0) -> tuple[int, bytes, dict]:
    """(status, body, headers) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def first_events(url: str, headers: dict | None = None, ticks: int = 2) -> list[tuple[str, dict]]:
    """The first Server-Sent Events of /events: hello, then `ticks` ticks."""
    request = urllib.request.Request(f"{url}/events", headers=headers or {})
    out: list[tuple[str, dict]] = []
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        name = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if len(out) > ticks:
                    return out
    return out


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--dashboard-host", "0.0.0.0"],
            "--dashboard-host 0.0.0.0: serving beyond loopback needs",
        ),
        (["--dashboard-token", "short"], "--dashboard-token: give a token of at least 16"),
        (["--dashboard-token-file", "/no/such/token"], "--dashboard-token-file /no/such/token"),
    ],
)
def test_bad_dashboard_options_refuse_to_start(flags, message, video):
    line = one_line_error(run_cli("run", "--source", str(video), "--dashboard", "8080", *flags))
    assert message in line


def test_loopback_dashboard_serves_page_state_and_live_events(video, int8_model, tmp_path):
    labels = list(read_contract(int8_model).labels)
    with dashboard_run(video, int8_model, tmp_path) as (url, log):
        status, page, headers = get(f"{url}/")
        assert status == 200 and b'<script src="app.js"' in page
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        for asset in ("app.js", "app.css"):
            assert get(f"{url}/{asset}")[0] == 200
        assert get(f"{url}/nothing-here")[0] == 404
        # no token on loopback, but a foreign Host name (DNS rebinding) is refused
        assert get(f"{url}/api/state", {"Host": "attacker.example:80"})[0] == 403
        state = json.loads(get(f"{url}/api/state")[1])
        assert state["labels"] == labels and state["model"] == int8_model.name
        events = first_events(url)
        hello, ticks = events[0], events[1:]
        assert hello[0] == "hello" and hello[1]["labels"] == labels
        assert [name for name, _ in ticks] == ["tick", "tick"]
        last = ticks[-1][1]
        assert last["frames"] > state["frames"] and last["t"] > 0
        assert len(last["faces"]) == 1 and last["faces"][0]["label"] in labels
        assert len(last["distribution"]) == len(labels)
        assert {"detect", "inference"} <= set(last["stages_ms"])
        segments = hello[1]["segments"] + [s for _, t in ticks for s in t["segments"]]
        assert segments and all(0 <= s[2] < len(labels) and s[3] <= s[4] for s in segments)


@pytest.mark.slow
def test_browser_shows_live_video_and_timeline_and_token_is_enforced(video, int8_model, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = system_tool("chromium", "chromium-browser", package="chromium")
    driver_path = system_tool("chromedriver", package="chromium-driver")
    labels = list(read_contract(int8_model).labels)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    flags = ("--dashboard-host", "0.0.0.0", "--dashboard-token-file", str(token_file),
             "--dashboard-window", "60")  # fmt: skip
    with dashboard_run(video, int8_model, tmp_path, *flags) as (url, log):
        # bound beyond loopback: nothing is served without the token, and a wrong one is refused
        for path in ("/", "/app.js", "/api/state", "/events", "/video.mjpg"):
            assert get(f"{url}{path}")[0] == 401, path
            assert get(f"{url}{path}", {"Authorization": "Bearer wrong-token-0123456789"})[0] == 403
        assert get(f"{url}/api/state", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, _, headers = get(f"{url}/?token={TOKEN}")
        assert status == 303 and headers["Location"] == "/"
        assert "HttpOnly" in headers["Set-Cookie"]

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
            options.add_argument(flag)
        os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        try:
            driver.set_page_load_timeout(30)
            driver.get(f"{url}/")
            assert "a token is required" in driver.page_source
            driver.get(f"{url}/?token={TOKEN}")  # sets the cookie, then the page without it
            assert driver.current_url == f"{url}/"

            def body(key):
                return int(driver.execute_script(f"return document.body.dataset.{key} || 0"))

            wait_for(lambda: body("ticks") >= 4 and body("segments") >= 1, 30, "live data")
            width = wait_for(
                lambda: driver.execute_script(
                    "const v = document.getElementById('video');"
                    "return v.complete && v.naturalWidth;"
                ),
                30,
                "the video",
            )
            assert width == 854
            rows = driver.find_elements("css selector", "#distribution .row span:first-child")
            assert [r.text for r in rows] == labels
            assert driver.find_element("id", "status").text == "live"
            assert driver.find_element("id", "fps").text.endswith("fps")
            ticks = body("ticks")
            wait_for(lambda: body("ticks") > ticks, 10, "more ticks")  # it keeps streaming
            time.sleep(6)  # a few seconds of timeline for the picture
            shot = tmp_path / "dashboard.png"
            driver.save_screenshot(str(shot))
        finally:
            driver.quit()
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[1] >= 1000 and float(np.std(image)) > 20
    if os.environ.get("FER_EDGE_DASHBOARD_SCREENSHOT"):  # how docs/dashboard.png is made
        target = Path(os.environ["FER_EDGE_DASHBOARD_SCREENSHOT"])
        small = cv2.resize(
            image, (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4), cv2.INTER_AREA
        )
        # 5 bits per channel: no visible banding, half the bytes
        ok, png = cv2.imencode(".png", small & 0xF8, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        from fer_edge.edge.contract import atomic_write_bytes

        atomic_write_bytes(target, png.tobytes())


@pytest.fixture
def dashboard():
    """A token-protected dashboard in this process, on an ephemeral loopback port."""
    from fer_edge.edge.dashboard import Dashboard, DashboardSettings

    settings = DashboardSettings(port=0, host="127.0.0.1", token=TOKEN)
    with Dashboard(settings, ("neutral", "happy"), {"model": "m.tflite"}) as dash:
        yield f"http://127.0.0.1:{dash.port}"


@pytest.mark.parametrize("path", ["/", "/api/state", "/app.js", "/video.mjpg", "/events"])
def test_token_dashboard_answers_401_without_and_403_with_a_wrong_token(dashboard, path):
    status, body, headers = get(dashboard + path)
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="fer-edge"'
    assert body == b"a token is required\n"
    for wrong in ({"Authorization": "Bearer " + TOKEN[:-1] + "X"},
                  {"Cookie": "fer_edge_token=" + TOKEN.upper()}):  # fmt: skip
        status, body, headers = get(dashboard + path, wrong)
        assert status == 403 and body == b"wrong token\n" and "WWW-Authenticate" not in headers
    status, _, _ = get(f"{dashboard}{path}?token={TOKEN}x")
    assert status == 403


def test_token_dashboard_serves_the_right_token_from_header_query_or_cookie(dashboard):
    status, body, headers = get(dashboard + "/api/state", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["labels"] == ["neutral", "happy"]
    # opening /?token= sets the cookie and sends the browser to / without the token
    status, _, headers = get(f"{dashboard}/?token={TOKEN}")
    assert status == 303 and headers["Location"] == "/"
    assert headers["Set-Cookie"].startswith(f"fer_edge_token={TOKEN};")
    assert "HttpOnly" in headers["Set-Cookie"]
    status, body, _ = get(dashboard + "/", {"Cookie": f"fer_edge_token={TOKEN}"})
    assert status == 200 and b"<html" in body.lower()
    status, _, _ = get(f"{dashboard}/api/state?token={TOKEN}")
    assert status == 200
    status, _, _ = get(dashboard + "/nope", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 404


def test_dashboard_without_token_serves_only_loopback_host_names():
    from fer_edge.edge.dashboard import Dashboard, DashboardSettings

    with Dashboard(DashboardSettings(port=0), ("neutral",), {}) as dash:
        url = f"http://127.0.0.1:{dash.port}/api/state"
        assert get(url)[0] == 200
        assert get(url, {"Host": f"localhost:{dash.port}"})[0] == 200
        # a web page whose DNS name now points at 127.0.0.1 (DNS rebinding) is refused
        status, body, _ = get(url, {"Host": f"evil.example:{dash.port}"})
        assert status == 403 and body == b"only loopback Host names are served\n"


def test_a_dashboard_in_this_process_serves_state_ticks_and_video_then_closes():
    """The whole Dashboard object without a run around it: its address, the page, the state a
    page starts from (with the settings it was given), a tick carrying a written face, the
    video only while someone watches and at most video_fps, and a close that ends its threads
    and frees the port. A second dashboard on a taken port is one line; IPv6 loopback works."""
    import socket
    import threading

    from fer_edge.edge.dashboard import Dashboard, DashboardSettings
    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.types import Box, Face, Frame, FrameResult

    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = 255
    p = np.array([0.25, 0.75], np.float32)
    face = Face(Box(1, 2, 30, 30), track=7, probs=p, raw_probs=p)
    settings = DashboardSettings(port=0, window=60.0, video_fps=5.0)
    before = set(threading.enumerate())
    with Dashboard(settings, ("neutral", "happy"), {"model": "m.tflite"}) as dash:
        port = dash.port
        assert dash.url == f"http://127.0.0.1:{port}/"
        status, body, _ = get(dash.url)
        assert status == 200 and b"<html" in body.lower()
        state = json.loads(get(dash.url + "api/state")[1])
        assert (state["model"], state["video_fps"], state["window_s"]) == ("m.tflite", 5.0, 60.0)
        assert (state["labels"], state["frames"], state["faces"]) == (["neutral", "happy"], 0, [])

        dash.write(FrameResult(Frame(image, 0, 0.5), (face,), {"detect": 0.002}))
        (_, hello), (name, tick) = first_events(dash.url.rstrip("/"), ticks=1)
        assert hello["frames"] == 1 and name == "tick"
        shown_face = {"track": 7, "label": "happy", "score": 0.75, "probs": [0.25, 0.75]}
        assert tick["faces"] == [shown_face]
        assert tick["stages_ms"] == {"detect": 2.0}

        assert not dash.wants_frame()  # nobody watches: no frame is drawn or encoded
        with urllib.request.urlopen(dash.url + "video.mjpg", timeout=5) as video:
            wait_for(dash.wants_frame, 5, "the viewer to be counted")
            dash.write(FrameResult(Frame(image, 1, 0.6), (face,), {}), image)
            assert not dash.wants_frame()  # the next frame is due 1 / video_fps later
            data = b""
            while b"\xff\xd9" not in data[data.find(b"\xff\xd8") :]:
                data += video.read1(4096)
            jpeg = data[data.find(b"\xff\xd8") : data.find(b"\xff\xd9") + 2]
            shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert shown.shape == image.shape and abs(int(shown[:, :32].mean()) - 0) < 10
            assert abs(int(shown[:, 32:].mean()) - 255) < 10
            wait_for(dash.wants_frame, 2, "the next frame to be due")

        with pytest.raises(ConfigError, match=f"--dashboard {port}: cannot listen on 127.0.0.1"):
            Dashboard(DashboardSettings(port=port), ("neutral",), {})
    time.sleep(0.5)
    assert {t for t in threading.enumerate() if t.name.startswith("dashboard")} - before == set()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    with Dashboard(DashboardSettings(port=0, host="::1"), ("neutral",), {}) as dash:
        assert dash.url == f"http://[::1]:{dash.port}/"
        assert get(dash.url + "api/state")[0] == 200


def test_the_dashboards_http_as_a_client_reads_it(caplog):
    """The wire, byte for byte where a client depends on it: the log line that gives the
    address (the token never in it), status, type and length of each answer, the event
    stream's framing (reconnect delay, a hello, then ticks that keep coming), and request
    logs with the token blanked."""
    import http.client
    import logging
    import socket

    from fer_edge.edge.dashboard import Dashboard, DashboardSettings

    caplog.set_level(logging.DEBUG, logger="fer_edge.edge.dashboard")
    with Dashboard(DashboardSettings(port=0), ("neutral", "happy"), {"model": "m"}) as dash:
        assert f"dashboard at http://127.0.0.1:{dash.port}/" in [
            r.getMessage() for r in caplog.records
        ]  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=5)
        conn.request("GET", "/api/state")
        r = conn.getresponse()
        body = r.read()
        assert (r.status, r.getheader("Content-Type")) == (200, "application/json")
        assert r.getheader("Server").split() == ["fer-edge"]  # no Python version given away
        assert r.getheader("Content-Length") == str(len(body)) and b", " not in body
        conn.request("GET", "/nothing-here")
        r = conn.getresponse()
        assert (r.status, r.read()) == (404, b"not found\n")
        assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
        assert r.getheader("Content-Length") == "10"
        conn.close()

        with socket.create_connection(("127.0.0.1", dash.port), timeout=10) as s:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while data.count(b"event: tick\ndata: ") < 3:
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
        head, _, stream = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200 ") and b"Content-Type: text/event-stream" in head
        assert stream.startswith(b"retry: 2000\nevent: hello\ndata: {")
        events = stream.split(b"\n\n")
        assert json.loads(events[0].split(b"data: ", 1)[1]) == json.loads(dash.hello())
        ticks = [e for e in events if e.startswith(b"event: tick\ndata: ")]
        assert len(ticks) >= 3 and all(json.loads(t[18:])["frames"] == 0 for t in ticks)

        with urllib.request.urlopen(dash.url + "video.mjpg", timeout=5) as video:
            assert video.status == 200
            assert video.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"

    caplog.clear()
    settings = DashboardSettings(port=0, token=TOKEN)
    with Dashboard(settings, ("neutral",), {}) as dash:
        status, body, headers = get(f"{dash.url}?token={TOKEN}")
        assert (status, body, headers["Content-Length"]) == (303, b"", "0")
    messages = [r.getMessage() for r in caplog.records]
    assert f"dashboard at http://127.0.0.1:{dash.port}/?token=<your token>" in messages
    requests = [m for m in messages if m.startswith("dashboard 127.0.0.1: ")]
    assert requests and all(TOKEN not in m for m in messages)
    assert any('"GET /?token=<token> HTTP/1.1" 303' in m for m in requests), requests
