"""Where results go, in-process and with values worked out by hand: the event a face becomes,
the events file when the disk fails and comes back, what the overlay draws where, and the
MJPEG stream's wire format. Fast: all of it is in `make test-fast`."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from fer_edge.edge.errors import ConfigError
from fer_edge.edge.sinks import EventWriter, MjpegServer, MjpegStream, draw_overlay, face_events
from fer_edge.edge.types import Box, Face, Frame, FrameResult

LABELS = ("neutral", "happy", "sad", "angry", "surprise")
GREEN, ORANGE, WHITE = (0, 200, 0), (0, 160, 255), (255, 255, 255)


def result(faces, index=5, t=0.123456, t_capture=None, image=None):
    image = np.zeros((240, 320, 3), np.uint8) if image is None else image
    return FrameResult(Frame(image, index, t, t_capture=t_capture), tuple(faces), {})


def face(x=40, y=50, w=60, h=70, track=2, probs=(0.1, 0.2, 0.55558, 0.1, 0.04442)):
    p = np.array(probs, np.float32)
    return Face(Box(x, y, w, h), track, p, p)


# --- events -----------------------------------------------------------------------------------


def test_a_face_becomes_one_event_with_its_winning_label_and_rounded_figures():
    a, b = face(track=2), face(x=200, y=10, w=30, h=40, track=7, probs=(0, 0, 0, 0.25, 0.75))
    got = face_events(result([a, b], index=5, t=0.123456, t_capture=1_700_000_000.1234567), LABELS)
    assert got == [
        {"frame": 5, "t": 0.1235, "track": 2, "box": [40, 50, 60, 70], "label": "sad",
         "score": 0.5556,
         "probs": {"neutral": 0.1, "happy": 0.2, "sad": 0.5556, "angry": 0.1, "surprise": 0.0444},
         "t_capture": 1_700_000_000.123457},
        {"frame": 5, "t": 0.1235, "track": 7, "box": [200, 10, 30, 40], "label": "surprise",
         "score": 0.75,
         "probs": {"neutral": 0.0, "happy": 0.0, "sad": 0.0, "angry": 0.25, "surprise": 0.75},
         "t_capture": 1_700_000_000.123457},
    ]  # fmt: skip
    # a source that does not stamp capture time: no t_capture key at all
    (plain,) = face_events(result([a]), LABELS)
    assert "t_capture" not in plain and list(plain) == [
        "frame", "t", "track", "box", "label", "score", "probs"
    ]  # fmt: skip
    assert face_events(result([]), LABELS) == []


def test_events_to_stdout_are_compact_lines_one_per_face(capsys):
    with EventWriter("-", LABELS) as events:
        assert events.write(result([face(track=1), face(track=4)])) is True
        assert events.write(result([])) is True  # no face, no line
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 2 and out.endswith("\n") and ": " not in out and ", " not in out
    assert [json.loads(ln)["track"] for ln in lines] == [1, 4]
    assert events.count == 2 and events.dropped == 0


def test_an_events_file_that_cannot_be_opened_is_one_line_naming_it(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "events.jsonl"
    with pytest.raises(ConfigError) as err:
        EventWriter(str(path), LABELS)
    assert str(err.value) == f"--events {path}: cannot open for writing (No such file or directory)"


class FailingDisk:
    """The appender's disk, failing with ENOSPC while `full` (as a full SD card does)."""

    def __init__(self, appender):
        self.real, self.full, self.tries = appender.append, True, 0

    def __call__(self, data: bytes) -> None:
        self.tries += 1
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(data)


def test_a_full_disk_drops_and_counts_events_then_writing_resumes_by_itself(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    caplog.set_level(logging.WARNING, logger="fer_edge.edge.sinks")
    with EventWriter(str(path), LABELS, retry_every=0.2) as events:
        events.write(result([face(track=1)], index=0))  # written before the disk fills
        disk = events._file.append = FailingDisk(events._file)
        assert events.write(result([face(track=1), face(track=2)], index=1)) is True
        assert (events.count, events.dropped, disk.tries) == (1, 2, 1)
        # within retry_every the disk is not even tried: the frame is dropped and counted
        assert events.write(result([face(track=1)], index=2)) is True
        assert (events.dropped, disk.tries) == (3, 1)
        time.sleep(0.25)
        events.write(result([face(track=1)], index=3))  # tried again, still full
        assert (events.dropped, disk.tries) == (4, 2)
        disk.full = False
        time.sleep(0.25)
        events.write(result([face(track=3)], index=4))  # the disk takes it: resumed
        assert (events.count, events.dropped, disk.tries) == (2, 4, 3)
        events.write(result([face(track=3)], index=5))  # and the next at once
        assert (events.count, disk.tries) == (3, 4)
        # a second outage reports its own drops, not the first one's
        disk.full = True
        events.write(result([face(track=3)], index=6))
        disk.full = False
        time.sleep(0.25)
        events.write(result([face(track=3)], index=7))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 4, 5, 7]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0] == (
        f"events: cannot write {path}: no space left on device; dropping events until it can "
        "(retry every 0.2 s)"
    )
    assert warnings[1].startswith(f"events: writing {path} again after 0.")
    assert warnings[1].endswith(" s; 4 events dropped meanwhile")
    assert warnings[3].endswith(" s; 1 events dropped meanwhile")
    assert len(warnings) == 4 and events.dropped == 5


def test_a_reader_that_left_stdout_stops_the_run(monkeypatch):
    class GonePipe(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr("sys.stdout", GonePipe())
    events = EventWriter("-", LABELS)
    with pytest.raises(BrokenPipeError):
        events.write(result([face()]))


# --- the overlay --------------------------------------------------------------------------------


def colour_at(canvas, x, y):
    return tuple(int(v) for v in canvas[y, x])


def test_the_overlay_draws_the_box_label_bars_and_fps_where_the_face_is():
    image = np.full((240, 320, 3), 60, np.uint8)
    a = face(x=40, y=50, w=60, h=70, probs=(0.0, 0.25, 0.75, 0.0, 0.0))
    canvas = draw_overlay(image, result([a], image=image), LABELS, fps=12.34)
    assert canvas.shape == image.shape and canvas.dtype == np.uint8
    assert (image == 60).all()  # drawn on a copy
    # the box: a 2-px green outline on the face's edges, its inside untouched
    for x, y in ((40, 50), (99, 50), (40, 119), (99, 119), (70, 50), (40, 85), (100, 120)):
        assert colour_at(canvas, x, y) == GREEN, (x, y)
    assert colour_at(canvas, 70, 85) == (60, 60, 60)
    assert colour_at(canvas, 70, 53) == (60, 60, 60) and colour_at(canvas, 37, 85) == (60, 60, 60)
    # the label is written in green just above the box
    above = canvas[25:48, 40:200]
    assert (np.all(above == GREEN, axis=-1)).sum() > 50
    # one bar per class under the box, 80 px for a probability of 1: happy 20 px, sad 60 px
    bars = np.all(canvas == ORANGE, axis=-1)
    rows = [y + 70 + 14 + 14 * i - 4 for i, y in enumerate([50] * 5)]  # middle of each bar
    widths = [int(bars[r, 40:130].sum()) for r in rows]
    assert widths == [1, 21, 61, 1, 1]  # cv2 fills from x to x + w inclusive
    bar_tops = [r - 5 for r in rows]
    assert all(bars[top, 40] and not bars[top - 1, 40] for top in bar_tops)
    # each class name is written in white to the right of its bar
    for r in rows:
        assert np.all(canvas[r - 6 : r + 1, 124:190] == WHITE, axis=-1).sum() > 5
    # the frame rate at the top left, in white
    assert np.all(canvas[8:26, 10:90] == WHITE, axis=-1).sum() > 50


def test_the_overlay_without_fps_or_faces_is_the_frame_and_a_grey_frame_becomes_colour():
    image = np.full((120, 160, 3), 90, np.uint8)
    assert np.array_equal(draw_overlay(image, result([], image=image), LABELS), image)
    grey = np.full((120, 160), 90, np.uint8)
    canvas = draw_overlay(grey, result([], image=grey), LABELS)
    assert canvas.shape == (120, 160, 3) and (canvas == 90).all()
    # a face at the top edge keeps its label inside the picture
    top = face(x=10, y=2, w=50, h=50)
    canvas = draw_overlay(image, result([top], image=image), LABELS)
    assert np.all(canvas[0:16, 10:120] == GREEN, axis=-1).sum() > 50


# --- the MJPEG stream ---------------------------------------------------------------------------


class Client(io.RawIOBase):
    """A viewer's socket: collects what is written, and can leave (a broken pipe)."""

    def __init__(self):
        self.data, self.gone = bytearray(), False

    def write(self, b):
        if self.gone:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.data += b
        return len(b)


def parts(data: bytes) -> list[bytes]:
    """The JPEGs of a multipart stream, each checked against its headers."""
    jpegs = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ")
        n = int(head.rsplit(b" ", 1)[1])
        jpegs.append(rest[:n])
        assert rest[n : n + 2] == b"\r\n"
        data = rest[n + 2 :]
    return jpegs


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_stream_sends_each_new_frame_once_as_a_multipart_jpeg_then_ends_on_close():
    stream, client = MjpegStream(quality=90), Client()
    first = np.zeros((48, 64, 3), np.uint8)
    first[:, 32:] = 255
    stream.publish(first)  # before the viewer came: it gets the newest frame at once
    viewer = threading.Thread(target=stream.serve, args=(client,))
    viewer.start()
    wait_until(lambda: stream.viewers == 1 and len(parts(bytes(client.data))) == 1)
    time.sleep(0.05)
    assert len(parts(bytes(client.data))) == 1  # not sent again while nothing new came
    second = np.full((48, 64, 3), 128, np.uint8)
    stream.publish(second)
    wait_until(lambda: len(parts(bytes(client.data))) == 2)
    stream.close()
    viewer.join(timeout=5)
    assert not viewer.is_alive() and stream.viewers == 0
    jpegs = parts(bytes(client.data))
    got = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).astype(int) for j in jpegs]
    assert np.abs(got[0] - first).mean() < 8 and np.abs(got[1] - 128).max() <= 2
    assert MjpegStream.content_type == "multipart/x-mixed-replace; boundary=frame"


def test_a_viewer_that_leaves_is_let_go():
    stream, client = MjpegStream(), Client()
    viewer = threading.Thread(target=stream.serve, args=(client,))
    viewer.start()
    wait_until(lambda: stream.viewers == 1)
    client.gone = True
    stream.publish(np.zeros((8, 8, 3), np.uint8))
    viewer.join(timeout=5)
    assert not viewer.is_alive() and stream.viewers == 0
    stream.close()


def test_viewers_are_counted_each_and_one_leaving_lets_the_other_watch():
    """Two viewers count two; when one leaves, the other still counts (the dashboard encodes
    only while someone watches) and gets the next frames. One who came before any frame waits
    past the stream's one-second wake-ups and gets the first one."""
    stream, early, late = MjpegStream(), Client(), Client()
    first = threading.Thread(target=stream.serve, args=(early,))
    first.start()
    time.sleep(1.2)  # no frame yet: the viewer waits on through a wake-up
    assert first.is_alive() and stream.viewers == 1 and not early.data
    second = threading.Thread(target=stream.serve, args=(late,))
    second.start()
    wait_until(lambda: stream.viewers == 2)
    stream.publish(np.zeros((8, 8, 3), np.uint8))
    wait_until(lambda: len(parts(bytes(early.data))) == 1 and len(parts(bytes(late.data))) == 1)
    late.gone = True
    stream.publish(np.full((8, 8, 3), 99, np.uint8))
    second.join(timeout=5)
    assert not second.is_alive() and stream.viewers == 1
    wait_until(lambda: len(parts(bytes(early.data))) == 2)
    stream.close()
    first.join(timeout=5)
    assert not first.is_alive() and stream.viewers == 0


def test_the_preview_server_says_where_it_is(caplog):
    caplog.set_level(logging.INFO, logger="fer_edge.edge.sinks")
    with MjpegServer(0) as server:
        assert [r.getMessage() for r in caplog.records] == [f"MJPEG preview at {server.url}"]


def test_quality_sets_the_jpeg_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sizes = []
    for quality in (20, 95):
        stream = MjpegStream(quality)
        stream.publish(image)
        sizes.append(len(stream._jpeg))
    assert sizes[0] < sizes[1] / 2


def test_the_preview_server_serves_the_stream_on_loopback_and_frees_its_port():
    with MjpegServer(0) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/")
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        image = np.full((32, 32, 3), 200, np.uint8)
        assert server.write(None, image) is True
        with urllib.request.urlopen(server.url, timeout=5) as resp:
            assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            head = resp.read(40)
        assert head.startswith(b"--frame\r\nContent-Type: image/jpeg\r\n")
        with pytest.raises(ConfigError) as err:
            MjpegServer(port)
        assert str(err.value) == (
            f"--preview-port {port}: cannot listen on 127.0.0.1 (Address already in use)"
        )
    with socket.socket() as s:  # closed: the port is free again
        s.bind(("127.0.0.1", port))


def test_events_on_a_full_device_are_dropped_with_the_default_retry(monkeypatch, caplog):
    """The real /dev/full (every write: ENOSPC) as --events, as `fer-edge run` opens it (the
    default retry_every): a warning naming it and the retry, the run goes on. Events to a
    full stdout are dropped the same way: only a reader that left stdout stops the run."""
    caplog.set_level(logging.WARNING, logger="fer_edge.edge.sinks")
    with EventWriter("/dev/full", LABELS) as events:
        assert events.write(result([face(track=1)], index=0)) is True
        assert (events.count, events.dropped) == (0, 1)
    assert [r.getMessage() for r in caplog.records] == [
        "events: cannot write /dev/full: no space left on device; dropping events until it can "
        "(retry every 1 s)"
    ]
    full = open("/dev/full", "w")  # noqa: SIM115 (closed below, whatever its buffer holds)
    monkeypatch.setattr("sys.stdout", full)
    events = EventWriter("-", LABELS)
    assert events.write(result([face(track=1)], index=0)) is True
    assert (events.count, events.dropped) == (0, 1)
    with contextlib.suppress(OSError):
        full.close()


def test_a_failing_sync_on_a_frame_without_faces_waits_for_the_next_write(tmp_path):
    """A frame without faces only syncs what earlier frames wrote; if the SD card fails that
    sync (EIO), the run goes on and the next write meets the failure (counted there)."""
    with EventWriter(str(tmp_path / "events.jsonl"), LABELS) as events:
        events.write(result([face(track=1)], index=0))

        def failing_sync():
            raise OSError(errno.EIO, "Input/output error")

        events._file.tick = failing_sync
        assert events.write(result([], index=1)) is True
        assert (events.count, events.dropped) == (1, 0)
