"""The MQTT sink against a real Mosquitto broker that each test starts on a random loopback port,
with a real paho subscriber; the runtime runs the 480p video as a user would
(python -m fer_edge.edge)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import ROOT, free_port, one_line_error, run_cli, system_tool, wait_for
from fer_edge.benchmarks.mqtt_states import default_dwell
from fer_edge.edge.contract import Contract, read_contract, write_contract

PREFIX = "fer-edge/testcam"
DWELL = default_dwell()  # fer-edge run's --mqtt-min-dwell
NODE = "fer-edge_testcam"


class Broker:
    """A mosquitto process with its own config file; stop() and start() keep the port."""

    def __init__(self, folder: Path, lines: list[str], port: int):
        self.folder, self.port = folder, port
        self.conf = folder / "mosquitto.conf"
        user = ["user root"] if os.geteuid() == 0 else []  # read root's 0600 files in tmp
        self.conf.write_text("\n".join([*user, "persistence false", *lines]) + "\n")
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [system_tool("mosquitto", package="mosquitto"), "-c", str(self.conf)],
                stdout=log,
                stderr=log,
            )

        def listening():
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_for(listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextmanager
def broker(folder: Path, extra: list[str] = (), anonymous: bool = True, port: int = 0):
    port = port or free_port()
    lines = [f"listener {port} 127.0.0.1", f"allow_anonymous {str(anonymous).lower()}", *extra]
    b = Broker(folder, lines, port)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Subscriber:
    """A paho client that records every message under PREFIX/# and homeassistant/#."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None,
                 session: str | None = None):
        """session: a client id whose subscriptions the broker keeps (clean_session off), so
        what is published while this client is away reaches it when it connects again."""
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.qos: dict[str, set[int]] = {}  # topic -> the QoS its messages arrived with
        self._lock = threading.Lock()
        self.connected = threading.Event()
        c = self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=session or f"test-{secrets.token_hex(4)}",
            clean_session=session is None,
        )
        if username:
            c.username_pw_set(username, password)
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        wait_for(self.connected.is_set, 10, "the subscriber to connect")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(f"{PREFIX}/#", 1), (f"homeassistant/sensor/{NODE}/#", 1)])
        time.sleep(0.2)  # let SUBACK arrive before the test starts the runtime
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain, time.time()))
            self.qos.setdefault(msg.topic, set()).add(msg.qos)

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def subscriber(port: int, username: str | None = None, password: str | None = None,
               session: str | None = None):
    s = Subscriber(port, username, password, session)
    try:
        yield s
    finally:
        s.close()


def run_edge(video, model, events, *flags, env=None, timeout=180):
    """`python -m fer_edge.edge run` on the video; a traceback on any thread fails the test."""
    proc = subprocess.run(
        [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(video),
         "--model", str(model),
         "--headless", "--events", str(events), "--mqtt-topic", PREFIX, *flags],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def label_changes(rows: list[dict], dwell: float = 0.0) -> list[dict]:
    """What PREFIX/state gets: per track, the row at which a label other than the last one
    published has been the track's label, row after row, for `dwell` seconds of stream time."""
    published: dict[int, str] = {}
    run: dict[int, tuple[str, float]] = {}  # track -> (label, t of the run's first row)
    out = []
    for r in rows:
        if run.get(r["track"], (None,))[0] != r["label"]:
            run[r["track"]] = (r["label"], r["t"])
        since = run[r["track"]][1]
        if published.get(r["track"]) != r["label"] and r["t"] - since >= dwell - 1e-6:
            out.append({**r, "previous": published.get(r["track"]), "since": since})
            published[r["track"]] = r["label"]
    return out


def retained(port: int, username=None, password=None) -> dict[str, bytes]:
    """What a client that connects now is given: the retained messages, by topic."""
    with subscriber(port, username, password) as s:
        time.sleep(1.0)
        with s._lock:
            return {t: p for t, p, r, _ in s.messages if r}


def test_plain_run_imports_no_mqtt_or_dashboard_code(video, int8_model, tmp_path):
    """Without --mqtt / --dashboard, neither paho, our client or any HTTP server is loaded;
    with them, they are (so the check can fail)."""
    sink_modules = [
        "paho",
        "fer_edge.edge.mqtt",
        "fer_edge.edge.mqtt_config",
        "fer_edge.edge.dashboard",
        "http.server",
    ]
    code = (
        "import sys\n"
        "from fer_edge.edge.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        f"print([m for m in {sink_modules!r} if m in sys.modules])\n"
        "sys.exit(rc)\n"
    )
    base = ["run", "--source", str(video), "--model", str(int8_model), "--headless",
            "--max_frames", "20", "--events", str(tmp_path / "e.jsonl")]  # fmt: skip
    plain = subprocess.run(
        [sys.executable, "-c", code, *base], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip().splitlines()[-1] == "[]"
    dead = f"mqtt://127.0.0.1:{free_port()}"
    both = subprocess.run(
        [sys.executable, "-c", code, *base, "--mqtt", dead, "--dashboard", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode == 0, both.stderr
    assert both.stdout.strip().splitlines()[-1] == str(sink_modules)


def test_password_broker_gets_discovery_availability_and_every_label_change(
    video, int8_model, tmp_path
):
    pw = tmp_path / "passwd"
    subprocess.run(
        [
            system_tool("mosquitto_passwd", package="mosquitto"),
            "-b",
            "-c",
            str(pw),
            "fer",
            "s3cret",
        ],
        check=True,
    )
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    events = tmp_path / "events.jsonl"
    with broker(tmp_path, [f"password_file {pw}"], anonymous=False) as b:
        with subscriber(b.port, "fer", "s3cret") as sub:
            proc = run_edge(
                video, int8_model, events,
                "--mqtt", f"mqtt://fer@127.0.0.1:{b.port}",
                "--mqtt-password-file", str(secret),
                "--mqtt-summary-every", "1",
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
        after = retained(b.port, "fer", "s3cret")
        # the broker refuses a client without the password (so the run above really used it)
        refused = run_edge(video, int8_model, tmp_path / "refused.jsonl", "--max_frames", "10",
                           "--mqtt", f"mqtt://fer@127.0.0.1:{b.port}")  # fmt: skip
        # ... and takes it from the environment as well as from a file
        from_env = run_edge(video, int8_model, tmp_path / "env.jsonl", "--max_frames", "10",
                            "--mqtt", f"mqtt://fer@127.0.0.1:{b.port}",
                            env={"FER_EDGE_MQTT_PASSWORD": "s3cret"})  # fmt: skip
    assert "connected to" in proc.stderr and "Traceback" not in proc.stderr
    rows = read_events(events)
    assert {r["frame"] for r in rows} == set(range(383))
    labels = read_contract(int8_model).labels

    # state: exactly the label changes of the events file that held for the default
    # --mqtt-min-dwell, field for field
    states = sub.json_on(f"{PREFIX}/state")
    expected = label_changes(rows, DWELL)
    assert len(states) == len(expected) >= 2
    for got, want in zip(states, expected):
        assert abs(got.pop("time") - time.time()) < 300
        assert got == want
        assert list(got["probs"]) == list(labels)

    # availability: online first, offline last and retained (a clean exit; the last will is
    # test_a_killed_run_leaves_offline_by_its_last_will)
    assert sub.on(f"{PREFIX}/status")[0] == b"online"
    assert after[f"{PREFIX}/status"] == b"offline"

    # summaries: the last one covers the whole run (it is shorter than the 60 s window)
    summaries = sub.json_on(f"{PREFIX}/summary")
    assert len(summaries) >= 2
    last = summaries[-1]
    assert last["frame"] == 382 and last["faces"] == 1 and last["dropped"] == 0
    counts = {lb: sum(r["label"] == lb for r in rows) for lb in labels}
    assert last["share"] == {lb: round(counts[lb] / len(rows), 4) for lb in labels}
    assert last["dominant"] == max(counts, key=counts.get)
    assert json.loads(after[f"{PREFIX}/summary"]) == last

    # discovery: one device, a sensor per emotion of the contract plus dominant and faces
    configs = {t: json.loads(p) for t, p in after.items() if t.endswith("/config") and p}
    keys = {t.split("/")[-2] for t in configs}
    assert {"dominant", "faces", "fps", "dropped"} | {f"share_{lb}" for lb in labels} == keys
    for config in configs.values():
        assert config["state_topic"] == f"{PREFIX}/summary"
        assert config["availability_topic"] == f"{PREFIX}/status"
        assert config["device"]["identifiers"] == [f"fer_edge_{NODE}"]
    assert configs[f"homeassistant/sensor/{NODE}/share_happy/config"]["unit_of_measurement"] == "%"

    assert from_env.returncode == 0 and "connected to" in from_env.stderr, from_env.stderr
    assert "refused" not in from_env.stderr, from_env.stderr
    assert refused.returncode == 0, refused.stderr
    assert refused.stderr.count("refused the connection") == 1, refused.stderr
    assert len({r["frame"] for r in read_events(tmp_path / "refused.jsonl")}) == 10


def test_discovery_follows_the_contract_labels_and_off_removes_it(video, int8_model, tmp_path):
    """A model whose contract names other classes gets sensors named after them (nothing is
    hard-coded); --mqtt-discovery off leaves no config behind."""
    model = tmp_path / "renamed.tflite"
    shutil.copy(int8_model, model)
    renamed = ("calm", "joy", "gloom", "rage", "awe")
    contract = read_contract(int8_model)
    write_contract(model, Contract.from_json({**contract.to_json(), "labels": list(renamed)}))
    with broker(tmp_path) as b:
        proc = run_edge(video, model, tmp_path / "a.jsonl", "--max_frames", "15",
                        "--mqtt", f"mqtt://127.0.0.1:{b.port}")  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        on = retained(b.port)
        off_flags = ("--mqtt", f"mqtt://127.0.0.1:{b.port}", "--mqtt-discovery", "off")
        proc = run_edge(video, model, tmp_path / "b.jsonl", "--max_frames", "5", *off_flags)
        assert proc.returncode == 0, proc.stderr
        off = retained(b.port)
    shares = {t.split("/")[-2] for t in on if "/share_" in t}
    assert shares == {f"share_{lb}" for lb in renamed}
    summary = json.loads(on[f"{PREFIX}/summary"])
    assert set(summary["share"]) == set(renamed) and summary["dominant"] in renamed
    assert not [t for t in off if t.startswith("homeassistant/")]
    assert off[f"{PREFIX}/status"] == b"offline"


def test_broker_down_at_start_never_stops_the_camera(video, int8_model, tmp_path):
    events = tmp_path / "e.jsonl"
    started = time.monotonic()
    proc = run_edge(video, int8_model, events, "--max_frames", "60",
                    "--mqtt", f"mqtt://127.0.0.1:{free_port()}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 60
    assert {r["frame"] for r in read_events(events)} == set(range(60))
    assert proc.stderr.count("cannot connect") == 1, proc.stderr
    assert "messages were dropped in this run" in proc.stderr


@pytest.mark.slow  # real-time playback / TensorFlow start-up: 16-21 s
def test_broker_outage_mid_run_the_run_goes_on_and_publishing_resumes(video, int8_model, tmp_path):
    """The broker is stopped for 5 s while the video plays in real time (20 s, looped; not
    marked slow: the video's pace, not the machine, sets its ~21 s), then restarted on the
    same port: every frame is in the events file, the last state is the events file's last
    label, the outage is one log line with the count dropped (a 2-message queue overflows),
    and messages flow again. Summaries 1.5 s apart leave the publisher idle for whole
    seconds, as in real use."""
    events, log = tmp_path / "events.jsonl", tmp_path / "run.log"
    with broker(tmp_path) as b, subscriber(b.port) as sub:
        with open(log, "w") as log_file:
            run = subprocess.Popen(
                [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(video),
                 "--model", str(int8_model), "--headless", "--events", str(events),
                 "--realtime", "--loop", "--max_frames", "600",
                 "--mqtt", f"mqtt://127.0.0.1:{b.port}", "--mqtt-topic", PREFIX,
                 "--mqtt-summary-every", "1.5", "--mqtt-queue", "2"],
                cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                stdout=subprocess.DEVNULL, stderr=log_file,
            )  # fmt: skip
            try:
                wait_for(lambda: sub.on(f"{PREFIX}/summary"), 60, "a first summary")
                b.stop()
                time.sleep(5)
                assert run.poll() is None, log.read_text()  # the camera goes on
                b.start()
                up_at = time.time()
                run.wait(timeout=120)
            finally:
                if run.poll() is None:
                    run.send_signal(signal.SIGTERM)
                    run.wait(timeout=20)
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
    text = log.read_text()
    assert run.returncode == 0, text
    assert "Traceback" not in text, text
    rows = read_events(events)
    assert {r["frame"] for r in rows} == set(range(600))
    # what Home Assistant is left with is what the camera saw last: the last state is the
    # run's last debounced change, made long after the restart, and it is the label of the
    # events file's last row (which had held for longer than the default dwell)
    last = sub.json_on(f"{PREFIX}/state")[-1]
    assert last == {**label_changes(rows, DWELL)[-1], "time": last["time"]}
    assert last["label"] == rows[-1]["label"]
    assert text.count("lost the connection") == 1, text
    assert text.count("again after") == 1, text
    with sub._lock:
        later = [json.loads(p) for t, p, _, at in sub.messages
                 if t == f"{PREFIX}/summary" and at > up_at]  # fmt: skip
    assert later, "no summary after the broker came back"
    assert later[-1]["frame"] == 599
    assert later[-1]["dropped"] > 0  # 5 s of summaries every 1.5 s overflow a 2-message queue
    assert max(s["time"] for s in later) > up_at  # made after the restart, not just a backlog
    assert sub.on(f"{PREFIX}/status").count(b"online") >= 2  # re-announced on reconnect


def test_tls_with_a_ca_file(video, int8_model, tmp_path):
    """mqtts:// verified against the CA file; without it the system CAs reject the broker's
    certificate, and the run still completes."""
    openssl = system_tool("openssl", package="openssl")

    def ssl(*args):
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=fer-edge test CA")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    tls_port = free_port()
    tls = [f"listener {tls_port} 127.0.0.1", f"cafile {tmp_path / 'ca.crt'}",
           f"certfile {tmp_path / 'server.crt'}", f"keyfile {tmp_path / 'server.key'}"]  # fmt: skip
    with broker(tmp_path, tls) as b, subscriber(b.port) as sub:  # the subscriber: plain listener
        good = run_edge(video, int8_model, tmp_path / "good.jsonl", "--max_frames", "20",
                        "--realtime", "--mqtt", f"mqtts://127.0.0.1:{tls_port}",
                        "--mqtt-ca-file", str(tmp_path / "ca.crt"), "--mqtt-qos", "0",
                        "--mqtt-min-dwell", "0")  # fmt: skip
        bad = run_edge(video, int8_model, tmp_path / "bad.jsonl", "--max_frames", "20",
                       "--mqtt", f"mqtts://127.0.0.1:{tls_port}")  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "connected to mqtts://127.0.0.1" in good.stderr
    states = sub.json_on(f"{PREFIX}/state")
    assert states and all(s["frame"] < 20 for s in states)
    assert bad.returncode == 0, bad.stderr
    assert bad.stderr.count("cannot connect") == 1, bad.stderr
    assert len({r["frame"] for r in read_events(tmp_path / "bad.jsonl")}) == 20


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--mqtt", "ftp://broker"], "--mqtt ftp://broker: expected mqtt://"),
        (["--mqtt", "mqtt://broker:99999"], "the port is not a number"),
        (["--mqtt", "mqtt://u@b", "--mqtt-password-file", "/no/such"], "--mqtt-password-file"),
        (["--mqtt", "mqtt://b", "--mqtt-password-file", __file__], "a password needs a user"),
        (["--mqtt", "mqtt://b", "--mqtt-ca-file", __file__], "only used with mqtts://"),
        (["--mqtt", "mqtts://b", "--mqtt-ca-file", "/no/ca.pem"], "--mqtt-ca-file /no/ca.pem"),
        (["--mqtt", "mqtt://b", "--mqtt-topic", "cams/#"], "--mqtt-topic 'cams/#'"),
        (["--mqtt", "mqtt://b", "--mqtt-qos", "3"], "--mqtt-qos"),
        (["--mqtt", "mqtt://b", "--mqtt-min-dwell", "-1"], "--mqtt-min-dwell"),
    ],
)
def test_bad_mqtt_options_are_one_line_errors(flags, message, video):
    line = one_line_error(run_cli("run", "--source", str(video), "--headless", *flags))
    assert message in line


def test_label_dwell_publishes_a_label_only_once_it_has_held():
    """LabelDwell on a made-up track at 10 frames a second: blips shorter than the dwell are
    never published, the first label waits too, and a track's clock is its own."""
    from fer_edge.edge.mqtt_state import LabelDwell

    d = LabelDwell(0.3)
    seq = ["a", "a", "a", "a", "b", "b", "a", "b", "b", "b", "b", "a"]
    got = [(i, d.update(0, lb, i / 10)) for i, lb in enumerate(seq)]
    # "a" from 0.0 is published at 0.3; "b" from 0.4 is broken at 0.6; "b" from 0.7 at 1.0
    assert [(i, since) for i, since in got if since is not None] == [(3, 0.0), (10, 0.7)]
    assert d.published == {0: "b"}
    assert d.update(1, "a", 5.0) is None and d.update(0, "a", 1.2) is None  # tracks apart
    assert d.update(1, "a", 5.3) == 5.0 and d.update(0, "a", 1.4) == 1.1
    assert d.update(0, "b", 9.0) is None and d.update(0, "b", 2.0) is None  # clock went back
    assert d.update(0, "b", 2.3) == 2.0
    d.forget({1})
    assert d.published == {1: "a"} and len(d) == 1
    zero = LabelDwell(0.0)  # --mqtt-min-dwell 0: every change at once, no repeats
    assert [zero.update(0, lb, i / 10) for i, lb in enumerate("aab")] == [0.0, None, 0.2]


def test_min_dwell_cuts_state_messages_and_keeps_each_seconds_label(video, int8_model):
    """Issue #16 item 7 on the 480p video: the state messages a subscriber counts with the
    default --mqtt-min-dwell are at most a third of those with 0 (every change, as before),
    and the label of each second (the most frequent published state among its frames) is
    still the events file's."""
    from fer_edge.benchmarks.mqtt_states import measure

    system_tool("mosquitto", package="mosquitto")
    runs = measure(video, int8_model, [0.0, DWELL])["runs"]
    before, after = runs
    print(f"\nstate messages: {before['state_messages']} with --mqtt-min-dwell 0, "
          f"{after['state_messages']} with {DWELL} (the default)")  # fmt: skip
    assert before["events_per_second"] == after["events_per_second"]  # the same run twice
    assert before["mqtt_per_second"] == before["events_per_second"]
    assert after["mqtt_per_second"] == after["events_per_second"]
    assert after["state_messages"] * 3 <= before["state_messages"]
    assert after["state_messages"] >= 2  # still says something (measured: happy, neutral)


def kept_for_later(folder: Path) -> list[str]:
    """Broker lines that keep a session across a restart (saved when mosquitto stops)."""
    return ["persistence true", f"persistence_location {folder}/"]


def start_run(video, model, events: Path, log: Path, *flags: str) -> subprocess.Popen:
    """`python -m fer_edge.edge run` playing the video in real time, looped, in the background."""
    with open(log, "w") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(video),
             "--model", str(model), "--headless", "--events", str(events),
             "--realtime", "--loop", "--mqtt-topic", PREFIX, *flags],
            cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip


@contextmanager
def running(proc: subprocess.Popen):
    """Ends the run if the test leaves before it did (SIGTERM, then SIGKILL)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_a_killed_run_leaves_offline_by_its_last_will(video, int8_model, tmp_path):
    """SIGKILL gives the runtime no chance to say "offline": the broker publishes the last will,
    so Home Assistant shows the camera's entities unavailable instead of a frozen state."""
    events, log = tmp_path / "events.jsonl", tmp_path / "run.log"
    with broker(tmp_path) as b, subscriber(b.port) as sub:
        run = start_run(video, int8_model, events, log, "--mqtt", f"mqtt://127.0.0.1:{b.port}")
        with running(run):
            wait_for(lambda: sub.on(f"{PREFIX}/summary"), 60, "a first summary")
            assert retained(b.port)[f"{PREFIX}/status"] == b"online"
            run.kill()
            assert run.wait(timeout=10) == -signal.SIGKILL
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "the last will")
        after = retained(b.port)
    assert after[f"{PREFIX}/status"] == b"offline"
    assert "Traceback" not in log.read_text()
    assert "messages were dropped" not in log.read_text()  # it never reached close()


@pytest.mark.slow  # the runtime in a subprocess (~5 s); in-process: test_a_broker_down_at_boot_...
def test_broker_unreachable_at_boot_the_run_connects_when_it_appears(
    video, int8_model, tmp_path
):
    """Issue #17: the service starts before the broker (a power cut brings both up). The camera
    runs meanwhile; once the broker listens, discovery, "online" and the states queued since
    boot arrive, and the run goes on to a clean "offline"."""
    events, log, port = tmp_path / "events.jsonl", tmp_path / "run.log", free_port()
    b = Broker(tmp_path, [f"listener {port} 127.0.0.1", "allow_anonymous true",
                          *kept_for_later(tmp_path)], port)  # fmt: skip
    b.start()  # once, so the subscriber's session is kept for the broker's second start
    with subscriber(b.port, session="ha-like"):
        pass
    b.stop()
    run = start_run(video, int8_model, events, log, "--mqtt", f"mqtt://127.0.0.1:{b.port}")
    with running(run):
        wait_for(lambda: events.exists() and len(events.read_text().splitlines()) >= 45, 60,
                 "1.5 s of video with no broker")  # fmt: skip
        assert "cannot connect" in log.read_text()
        b.start()
        try:
            with subscriber(b.port, session="ha-like") as sub:
                wait_for(lambda: sub.json_on(f"{PREFIX}/state"), 30, "a state")
                wait_for(lambda: sub.on(f"{PREFIX}/status"), 10, "online")
                configs = {t for t, p, _, _ in sub.messages if t.endswith("/config") and p}
                run.send_signal(signal.SIGTERM)
                assert run.wait(timeout=20) == 0, log.read_text()
                wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
        finally:
            b.stop()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("cannot connect") == 1, text  # one line for the whole outage
    assert "connected to mqtt://127.0.0.1" in text, text
    first = sub.json_on(f"{PREFIX}/state")[0]
    rows = read_events(events)
    assert first == {**label_changes(rows, DWELL)[0], "time": first["time"]}
    assert sub.on(f"{PREFIX}/status")[0] == b"online"
    assert {f"homeassistant/sensor/{NODE}/{key}/config" for key in ("dominant", "faces")} <= configs
    labels = read_contract(int8_model).labels
    assert {f"homeassistant/sensor/{NODE}/share_{lb}/config" for lb in labels} <= configs


@pytest.mark.slow  # the whole video through the pipeline (~5 s); in-process: the outage tests
def test_a_full_queue_keeps_the_newest_messages(video, int8_model, tmp_path):
    """The queue policy of edge/mqtt.py: while the broker is away, at most --mqtt-queue messages
    wait and the oldest go first (the newest state matters most). The whole video goes through
    the real pipeline into a sink whose broker is down, with a queue of 3 and no dwell; when
    the broker appears exactly the last three label changes arrive, the older ones and the
    first frame's summary are counted as dropped, and "online" and the discovery configs,
    which are not queued, arrive all the same."""
    from fer_edge.edge.mqtt import MqttSink
    from fer_edge.edge.recognizer import EmotionRecognizer
    from fer_edge.edge.sinks import face_events
    from fer_edge.edge.sources import open_source

    port = free_port()
    b = Broker(tmp_path, [f"listener {port} 127.0.0.1", "allow_anonymous true",
                          *kept_for_later(tmp_path)], port)  # fmt: skip
    b.start()
    with subscriber(port, session="late"):
        pass
    b.stop()
    recognizer = EmotionRecognizer(int8_model)
    pipeline, labels = recognizer.pipeline(), recognizer.classifier.labels
    settings = in_process_settings(port, "queue-test", queue=3)
    rows = []
    with MqttSink(settings, labels) as sink, open_source(str(video)) as source:
        for frame in source.frames():
            result = pipeline.process(frame)
            rows += face_events(result, labels)
            sink.write(result)
        changes = label_changes(rows)
        assert len(rows) == 383 and len(changes) >= 4
        assert sink.dropped == len(changes) + 1 - 3  # + 1: the first frame's summary
        b.start()
        try:
            with subscriber(port, session="late") as sub:
                wait_for(lambda: len(sub.on(f"{PREFIX}/state")) >= 3, 30, "the queued states")
                time.sleep(1.0)  # nothing else is on its way
                states = sub.json_on(f"{PREFIX}/state")
                summaries = sub.json_on(f"{PREFIX}/summary")
                sink.close()  # queues the closing summary, sends it and "offline"
                wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
                closing = sub.json_on(f"{PREFIX}/summary")
        finally:
            b.stop()
    assert [{k: v for k, v in s.items() if k != "time"} for s in states] == changes[-3:]
    assert summaries == []  # the first frame's summary was among the oldest
    assert len(closing) == 1 and closing[0]["frame"] == 382
    assert closing[0]["dropped"] == sink.dropped == len(changes) - 2
    assert sub.on(f"{PREFIX}/status")[0] == b"online"
    assert any(t.endswith("/dominant/config") for t, _, _, _ in sub.messages)


def test_a_sink_in_this_process_logs_in_publishes_changes_and_leaves_its_will(tmp_path, caplog):
    """MqttSink without a run around it, on a broker that wants a password: it says where it
    publishes, logs in, sends each label change (not retained, stamped to the millisecond),
    keeps "online" retained, and when its connection dies without a goodbye the broker's
    retained status is its will, "offline". A CA file it cannot use is one line."""
    import logging

    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.mqtt import MqttSettings, MqttSink

    pw = tmp_path / "passwd"
    passwd = system_tool("mosquitto_passwd", package="mosquitto")
    subprocess.run([passwd, "-b", "-c", str(pw), "fer", "s3cret"], check=True)
    labels = ("neutral", "happy", "sad")

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    with broker(tmp_path, [f"password_file {pw}"], anonymous=False) as b:
        settings = in_process_settings(b.port, "in-process", username="fer", password="s3cret")
        with subscriber(b.port, "fer", "s3cret") as sub:
            sink = MqttSink(settings, labels)
            try:
                where = f"MQTT: publishing to mqtt://127.0.0.1:{b.port} under {PREFIX}/"
                assert where in caplog.text
                wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
                before = time.time()
                for t, label in ((0.0, 1), (0.1, 1), (0.2, 2)):
                    sink.write(in_process_result(t, label))
                wait_for(lambda: len(sub.on(f"{PREFIX}/state")) == 2, 10, "two label changes")
                states = sub.json_on(f"{PREFIX}/state")
                assert [(s["label"], s["previous"], s["since"]) for s in states] == [
                    ("happy", None, 0.0), ("sad", "happy", 0.2)]  # fmt: skip
                assert all(round(s["time"], 3) == s["time"] for s in states)
                assert all(before - 1 <= s["time"] <= time.time() + 1 for s in states)
                # the first frame's summary (the next is summary_every away), retained
                wait_for(lambda: sub.on(f"{PREFIX}/summary"), 10, "the first summary")
                first = sub.json_on(f"{PREFIX}/summary")[0]
                assert round(first.pop("time"), 3) >= round(before - 1, 3)
                share = {"neutral": 0.0, "happy": 1.0, "sad": 0.0}
                assert first == {"frame": 0, "t": 0.0, "faces": 1, "tracks": [1],
                                 "dominant": "happy", "share": share, "window_s": 60.0,
                                 "fps": 0.0, "dropped": 0}  # fmt: skip
                kept = retained(b.port, "fer", "s3cret")
                assert kept[f"{PREFIX}/status"] == b"online" and f"{PREFIX}/state" not in kept
                assert json.loads(kept[f"{PREFIX}/summary"])["frame"] == 0
                # the connection dies without DISCONNECT (a power cut, a pulled cable)
                sink._client.loop_stop()
                sink._client.socket().close()
                wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "the will")
                assert retained(b.port, "fer", "s3cret")[f"{PREFIX}/status"] == b"offline"
            finally:
                sink.close(flush_seconds=0.5)

    bad = MqttSettings(host="127.0.0.1", port=1, tls=True, topic=PREFIX,
                       ca_file=str(tmp_path / "no-ca.pem"))  # fmt: skip
    with pytest.raises(ConfigError, match=f"^--mqtt-ca-file {tmp_path / 'no-ca.pem'}: not usable"):
        MqttSink(bad, labels)


def test_an_outage_in_this_process_is_one_line_each_way_and_the_newest_states_arrive(
    tmp_path, caplog
):
    """MqttSink in this process through a broker outage: connected is one line; the loss is
    one warning however often paho retries; the frame loop goes on while the queue (3 here)
    keeps the newest states and counts the rest; the reconnect line says how long and how many
    were dropped; then "online" again, the newest states in order (the last one the last label
    written), and at the end a closing summary, "offline" and the count for the whole run."""
    import logging
    import re

    from fer_edge.edge.mqtt import MqttSink

    labels = ("neutral", "happy", "sad")

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    port = free_port()
    b = Broker(tmp_path, [f"listener {port} 127.0.0.1", "allow_anonymous true",
                          *kept_for_later(tmp_path)], port)  # fmt: skip
    b.start()
    where = f"mqtt://127.0.0.1:{port}"
    settings = in_process_settings(port, "outage-test", queue=3)
    sub = Subscriber(port, session="ha-like")  # its session outlives the broker's restart
    sink = MqttSink(settings, labels)
    try:
        wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
        sink.write(in_process_result(0.0, 1))
        wait_for(lambda: sub.json_on(f"{PREFIX}/state"), 10, "the first state")
        b.stop()
        wait_for(lambda: "lost the connection" in caplog.text, 10, "the outage line")
        outage = [2, 0, 2, 1, 0, 2]  # six changes: the queue keeps the last three
        for i, label in enumerate(outage, start=1):
            assert sink.write(in_process_result(i / 10, label)) is True
        assert sink.dropped == 3
        time.sleep(1.5)  # paho retries (and fails) meanwhile: its first retry is after 1 s
        b.start()
        wait_for(lambda: len(sub.json_on(f"{PREFIX}/state")) >= 4, 30, "the queued states")
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"online"], 10, "online again")
    finally:
        sink.close(flush_seconds=2.0)
        time.sleep(0.5)
        sub.close()
        b.stop()
    states = sub.json_on(f"{PREFIX}/state")
    assert [(s["label"], s["previous"], s["frame"]) for s in states] == [
        ("happy", None, 0), ("happy", "sad", 4), ("neutral", "happy", 5), ("sad", "neutral", 6)
    ]  # fmt: skip
    assert states[-1]["label"] == labels[outage[-1]]
    # online; offline while the broker was away (its will, which the broker also hands the
    # returning subscriber); online again after the reconnect; offline from close()
    statuses = [s for i, s in enumerate(sub.on(f"{PREFIX}/status"))
                if i == 0 or s != sub.on(f"{PREFIX}/status")[i - 1]]  # fmt: skip
    assert statuses == [b"online", b"offline", b"online", b"offline"]
    closing = sub.json_on(f"{PREFIX}/summary")[-1]
    assert (closing["frame"], closing["dropped"], closing["dominant"]) == (6, 3, "sad")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == ("INFO", f"MQTT: publishing to {where} under {PREFIX}/")
    assert lines[1] == ("INFO", f"MQTT: connected to {where}")
    warnings = [m for level, m in lines if level == "WARNING"]
    assert len(warnings) == 2, lines  # the outage (once) and the run's count at the end
    assert re.fullmatch(
        rf"MQTT: {re.escape(where)}: lost the connection \(.+\); the camera and events go on, "
        r"messages queue \(at most 3, then the oldest are dropped\) while reconnecting with "
        r"backoff",
        warnings[0],
    ), warnings[0]
    back = [m for level, m in lines if "again after" in m]
    assert len(back) == 1 and re.fullmatch(
        rf"MQTT: connected to {re.escape(where)} again after ([1-9]|[12]\d) s; "
        r"3 messages dropped meanwhile \(3 in all\)",
        back[0],
    ), back
    assert warnings[1] == "MQTT: 3 messages were dropped in this run"


def test_a_broker_down_at_boot_and_again_later_is_counted_per_outage(tmp_path, caplog):
    """The broker is not there when the run starts: one warning ("cannot connect"), the frame
    loop goes on, the queue (3) keeps the newest and counts the rest; when it comes, the line
    says connected "after" (not "again", this is the first time) with that outage's count. A
    later outage says "again" and counts its own drops beside the run's total."""
    import logging
    import re

    from fer_edge.edge.mqtt import MqttSink

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    port = free_port()
    b = Broker(tmp_path, [f"listener {port} 127.0.0.1", "allow_anonymous true"], port)
    where = f"mqtt://127.0.0.1:{port}"
    settings = in_process_settings(port, "boot-test", queue=3)
    sink = MqttSink(settings, ("neutral", "happy", "sad"))
    try:
        wait_for(lambda: "cannot connect" in caplog.text, 10, "the boot outage line")
        for i, label in enumerate([1, 2, 0, 1]):  # a summary and four states: two too many
            sink.write(in_process_result(i / 10, label))
        assert sink.dropped == 2
        b.start()
        wait_for(lambda: "MQTT: connected to" in caplog.text, 10, "the first connection")
        b.stop()
        wait_for(lambda: "lost the connection" in caplog.text, 10, "the second outage")
        for i, label in enumerate([2, 0, 1, 2, 0], start=4):  # five states: two too many
            sink.write(in_process_result(i / 10, label))
        assert sink.dropped == 4
        b.start()
        wait_for(lambda: "again after" in caplog.text, 10, "the reconnection")
    finally:
        sink.close(flush_seconds=1.0)
        b.stop()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    tail = ("the camera and events go on, messages queue (at most 3, then the oldest are "
            "dropped) while reconnecting with backoff")  # fmt: skip
    assert lines[:2] == [("INFO", f"MQTT: publishing to {where} under {PREFIX}/"),
                         ("WARNING", f"MQTT: {where}: cannot connect; {tail}")]  # fmt: skip
    connected = [m for level, m in lines if m.startswith(f"MQTT: connected to {where}")]
    assert len(connected) == 2, lines
    assert re.fullmatch(rf"MQTT: connected to {re.escape(where)} after [1-9]\d? s; "
                        r"2 messages dropped meanwhile \(2 in all\)", connected[0]), connected
    assert re.fullmatch(rf"MQTT: connected to {re.escape(where)} again after [1-9]\d? s; "
                        r"2 messages dropped meanwhile \(4 in all\)", connected[1]), connected
    warnings = [m for level, m in lines if level == "WARNING"]
    assert len(warnings) == 3 and warnings[1].startswith(f"MQTT: {where}: lost the connection")
    assert warnings[2] == "MQTT: 4 messages were dropped in this run"


def test_a_message_sent_as_the_connection_drops_is_kept_or_counted(tmp_path, caplog):
    """paho can refuse a publish (no connection) before it has told us the connection went:
    a QoS 0 message goes back to the front of the queue and is sent once the broker is back;
    QoS 1 ones stay in paho's own queue (not counted); any other refusal is a dropped message."""
    import logging
    from dataclasses import replace

    import paho.mqtt.client as paho
    from fer_edge.edge.mqtt import MqttSink

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    port = free_port()
    b = Broker(tmp_path, [f"listener {port} 127.0.0.1", "allow_anonymous true"], port)
    b.start()
    sub = Subscriber(port)
    settings = in_process_settings(port, "requeue-test", queue=3, qos=0)
    sink = MqttSink(settings, ("neutral", "happy"))
    try:
        wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
        b.stop()
        wait_for(lambda: "lost the connection" in caplog.text, 10, "the sink to see the outage")
        sink._requeue((f"{PREFIX}/late", b"kept", False), paho.MQTT_ERR_NO_CONN)
        assert sink.dropped == 0
        sink._requeue((f"{PREFIX}/late", b"refused", False), paho.MQTT_ERR_QUEUE_SIZE)
        assert sink.dropped == 1
        sink._requeue((f"{PREFIX}/late", b"too big", False), paho.MQTT_ERR_PAYLOAD_SIZE)
        assert sink.dropped == 2  # each refusal counts
        sink.settings = replace(settings, qos=1)
        sink._requeue((f"{PREFIX}/late", b"paho's", False), paho.MQTT_ERR_NO_CONN)
        sink.settings = settings
        assert sink.dropped == 2
        sub.close()
        b.start()
        sub = Subscriber(port)
        wait_for(lambda: sub.on(f"{PREFIX}/late"), 15, "the kept message")
        time.sleep(0.3)
        assert sub.on(f"{PREFIX}/late") == [b"kept"]
    finally:
        sink.close(flush_seconds=1.0)
        sub.close()
        b.stop()


def in_process_settings(port: int, client_id: str, **changes):
    """MqttSink's settings for an in-process test: the loopback broker on `port`, no TLS,
    topics under PREFIX, every label change published (no dwell), a summary only on the
    first frame and at close (unless `changes` say otherwise)."""
    from fer_edge.edge.mqtt import MqttSettings

    base = dict(host="127.0.0.1", port=port, tls=False, topic=PREFIX, min_dwell=0.0,
                summary_every=1e6, client_id=client_id)  # fmt: skip
    return MqttSettings(**{**base, **changes})


def in_process_result(t: float, label: int, track: int = 1, index: int | None = None):
    """One frame with one face whose label is `label` (of three), for MqttSink in-process."""
    import numpy as np
    from fer_edge.edge.types import Box, Face, Frame, FrameResult

    p = np.full(3, 0.1, np.float32)
    p[label] = 0.8
    index = int(round(t * 10)) if index is None else index
    frame = Frame(np.zeros((8, 8, 3), np.uint8), index, t)
    return FrameResult(frame, (Face(Box(0, 0, 4, 4), track, p, p),), {})


def test_states_go_out_at_most_max_rate_a_second_after_a_one_second_burst(tmp_path):
    """--mqtt-max-rate: a burst of ten label changes at 5 a second leaves as about one second's
    worth (5) at once, then one every 0.2 s; unlimited (0), all ten at once."""
    from fer_edge.edge.mqtt import MqttSink

    spans = {}
    with broker(tmp_path) as b:
        for rate in (5.0, 0.0):
            settings = in_process_settings(b.port, f"rate-{rate}", max_rate=rate)
            with subscriber(b.port) as sub, MqttSink(settings, ("neutral", "happy", "sad")) as sink:
                wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"online"], 10, "online")
                time.sleep(0.3)  # status and discovery are out of the way
                for i in range(10):
                    sink.write(in_process_result(i / 10, i % 3))
                wait_for(lambda: len(sub.on(f"{PREFIX}/state")) == 10, 15, "ten states")
                times = [at for t, _, _, at in sub.messages if t == f"{PREFIX}/state"]
                spans[rate] = (times[4] - times[0], times[-1] - times[0])
                labels = [s["label"] for s in sub.json_on(f"{PREFIX}/state")]
                assert labels == ["neutral", "happy", "sad"] * 3 + ["neutral"]
    assert spans[5.0][0] < 0.4, spans  # the first second's worth at once
    assert 0.8 <= spans[5.0][1] <= 2.5, spans  # then 5 more, 0.2 s apart
    assert spans[0.0][1] < 0.4, spans


def test_every_message_goes_out_with_the_configured_qos(tmp_path):
    """--mqtt-qos 1 (the default): states, summaries, status and discovery all arrive at QoS 1
    (a subscriber at QoS 1 gets the lower of the two), "offline" from close() too."""
    from fer_edge.edge.mqtt import MqttSink

    with broker(tmp_path) as b, subscriber(b.port) as sub:
        settings = in_process_settings(b.port, "qos")
        assert settings.qos == 1
        with MqttSink(settings, ("neutral", "happy")) as sink:
            wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
            sink.write(in_process_result(0.0, 1))
            wait_for(lambda: sub.on(f"{PREFIX}/state"), 10, "a state")
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
        topics = {t for t, _, _, _ in sub.messages}
        assert {f"{PREFIX}/state", f"{PREFIX}/summary", f"{PREFIX}/status"} <= topics
        assert any(t.startswith(f"homeassistant/sensor/{NODE}/") for t in topics)
        assert {t: q for t, q in sub.qos.items() if q != {1}} == {}
        (state,) = sub.json_on(f"{PREFIX}/state")
        assert isinstance(state["time"], float) and abs(state["time"] - time.time()) < 30


def test_a_summary_says_no_dominant_emotion_before_a_face_and_close_adds_none_unneeded(tmp_path):
    """The first frame's summary, before any face: dominant null (Home Assistant shows 'none'),
    times as seconds with their fractions. A close right after a summary, with no frame since,
    sends no second one."""
    from fer_edge.edge.mqtt import MqttSink
    from fer_edge.edge.types import Frame, FrameResult

    with broker(tmp_path) as b, subscriber(b.port) as sub:
        settings = in_process_settings(b.port, "none")
        with MqttSink(settings, ("neutral", "happy")) as sink:
            wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
            image = in_process_result(0.0, 0).frame.image
            sink.write(FrameResult(Frame(image, 0, 0.25), (), {}))
            wait_for(lambda: sub.on(f"{PREFIX}/summary"), 10, "the first summary")
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
        (summary,) = sub.json_on(f"{PREFIX}/summary")
    assert (summary["frame"], summary["faces"], summary["dominant"]) == (0, 0, None)
    assert summary["share"] == {"neutral": 0.0, "happy": 0.0}
    assert summary["t"] == 0.25 and isinstance(summary["time"], float)
    assert abs(summary["time"] - time.time()) < 30


def test_closing_again_sends_nothing_and_counts_nothing(tmp_path, caplog):
    """close() twice (the API's `with` and a caller's own close): the closing summary and
    "offline" go out once, and the second close neither queues another summary nor reports
    it as dropped."""
    import logging

    from fer_edge.edge.mqtt import MqttSink

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    with broker(tmp_path) as b, subscriber(b.port) as sub:
        sink = MqttSink(in_process_settings(b.port, "twice"), ("neutral", "happy"))
        wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
        sink.write(in_process_result(0.0, 1))
        sink.write(in_process_result(0.1, 0))  # a frame since the first summary
        sink.close()
        wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
        assert len(sub.on(f"{PREFIX}/summary")) == 2  # the first frame's and the closing one
        sink.close()
        time.sleep(0.3)
        assert sink.dropped == 0 and "dropped" not in caplog.text
        assert len(sub.on(f"{PREFIX}/summary")) == 2
        assert sub.on(f"{PREFIX}/status") == [b"online", b"offline"]


def test_a_slow_rate_limits_to_one_a_second_and_close_waits_no_longer_than_asked(tmp_path):
    """--mqtt-max-rate 1: a burst leaves as one second's worth (two) at once, the rest one a
    second; close(flush_seconds=1) gives the queue one second, counts what is left as dropped
    and returns, whatever is still queued."""
    from fer_edge.edge.mqtt import MqttSink

    with broker(tmp_path) as b, subscriber(b.port) as sub:
        settings = in_process_settings(b.port, "slow", max_rate=1.0, queue=10)
        sink = MqttSink(settings, ("neutral", "happy", "sad"))
        wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
        for i in range(5):  # a summary and five states: six messages
            sink.write(in_process_result(i / 10, i % 3))
        time.sleep(0.3)
        sent = len(sub.on(f"{PREFIX}/state")) + len(sub.on(f"{PREFIX}/summary"))
        assert sent == 2, sub.messages
        t0 = time.monotonic()
        sink.close(flush_seconds=1.0)
        took = time.monotonic() - t0
        assert took < 2.5, took
        assert 2 <= sink.dropped <= 4, sink.dropped


def test_summaries_every_summary_every_with_the_frame_rate_and_the_window_shares(
    tmp_path, caplog
):
    """A summary on the first frame (fps 0: nothing to measure yet), then every summary_every
    seconds of wall time with the frames per second since the last one and the shares of the
    frames in the window; close() sends one more for the frames since; all retained. A broker
    that refuses the login is one warning, and the frames go on."""
    import logging

    from fer_edge.edge.mqtt import MqttSettings, MqttSink

    labels = ("neutral", "happy", "sad")
    with broker(tmp_path) as b:
        settings = in_process_settings(b.port, "summaries", summary_every=0.5, window=60.0)
        with subscriber(b.port) as sub:
            with MqttSink(settings, labels) as sink:
                wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
                start = time.monotonic()
                n = 0
                while time.monotonic() - start < 1.2:  # 20 frames a second: happy, then sad
                    sink.write(in_process_result(n / 20, 1 if n < 8 else 2, index=n))
                    n += 1
                    time.sleep(0.05)
                rate = (n - 1) / (time.monotonic() - start)  # frames a second, as written
            wait_for(lambda: sub.on(f"{PREFIX}/status")[-1:] == [b"offline"], 10, "offline")
            summaries = sub.json_on(f"{PREFIX}/summary")
            kept = retained(b.port)
    first, *middle, closing = summaries
    assert (first["frame"], first["fps"], first["dominant"], first["share"]["happy"]) == (
        0, 0.0, "happy", 1.0)  # fmt: skip
    assert len(middle) == 2, summaries  # at 0.5 s and 1.0 s
    for s in middle + [closing]:
        assert abs(s["fps"] - rate) <= 0.25 * rate, (rate, summaries)
        assert s["faces"] == 1 and s["tracks"] == [1] and s["dropped"] == 0
        assert s["window_s"] == 60.0
    assert closing["frame"] == n - 1
    share = {"neutral": 0.0, "happy": round(8 / n, 4), "sad": round(1 - 8 / n, 4)}
    assert closing["share"] == share
    assert closing["dominant"] == "sad"
    assert json.loads(kept[f"{PREFIX}/summary"]) == closing

    caplog.set_level(logging.WARNING, logger="fer_edge.edge.mqtt")
    pw = tmp_path / "passwd"
    passwd = system_tool("mosquitto_passwd", package="mosquitto")
    subprocess.run([passwd, "-b", "-c", str(pw), "fer", "s3cret"], check=True)
    with broker(tmp_path, [f"password_file {pw}"], anonymous=False) as b:
        wrong = in_process_settings(b.port, "refused", username="fer", password="wrong", queue=2,
                                    summary_every=MqttSettings.summary_every)  # the default
        with MqttSink(wrong, labels) as sink:
            wait_for(lambda: "refused" in caplog.text, 10, "the refusal")
            for i in range(4):
                assert sink.write(in_process_result(i / 10, i % 3)) is True
            time.sleep(1.5)  # paho retries (after 1 s) and is refused again
    where = f"mqtt://127.0.0.1:{b.port}"
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0].startswith(f"MQTT: {where}: the broker refused the connection (Not auth")
    # nothing was sent: 4 states and 2 summaries (the first frame's, the closing one), of
    # which the queue of 2 held the last two until close() gave up on them
    assert warnings[1:] == ["MQTT: 6 messages were dropped in this run"]


def test_the_sink_forgets_tracks_beyond_256(tmp_path):
    """A camera that runs for weeks sees thousands of tracks; the label memory keeps at most
    256 (then only the faces in view), so a face seen again long after is announced afresh."""
    from fer_edge.edge.mqtt import MqttSink

    settings = in_process_settings(free_port(), "forget")
    with MqttSink(settings, ("neutral", "happy", "sad")) as sink:
        for track in range(256):
            sink.write(in_process_result(track / 10, 1, track=track, index=track))
        assert len(sink._dwell) == 256
        sink.write(in_process_result(25.6, 1, track=256, index=256))
        assert len(sink._dwell) == 1 and sink._dwell.published == {256: "happy"}


def test_the_broker_sees_our_client_id_mqtt_311_and_a_retained_will_at_the_qos_asked(tmp_path):
    """What mosquitto logs of each connection: --mqtt-client-id as the client's id, MQTT 3.1.1
    (p2), keepalive 30 s, and the last will ("offline", 7 bytes, on the status topic) retained
    at --mqtt-qos, so a subscriber at QoS 1 is sure to get it when the Pi loses power."""
    from fer_edge.edge.mqtt import MqttSink

    with broker(tmp_path, ["log_type all"]) as b:
        for qos in (1, 0):
            name = f"cam-qos{qos}"
            with MqttSink(in_process_settings(b.port, name, qos=qos), ("neutral", "happy")):
                connack = f"Sending CONNACK to {name}"
                wait_for(lambda c=connack: c in b.log.read_text(), 10, connack)
            lines = [ln.split(": ", 1)[-1] for ln in b.log.read_text().splitlines()]
            at = next(i for i, ln in enumerate(lines) if f" as {name} (" in ln)
            assert lines[at].endswith(f" as {name} (p2, c1, k30)."), lines[at]
            will = f"Will message specified (7 bytes) (r1, q{qos})."
            assert lines[at + 1 : at + 3] == [will, f"\t{PREFIX}/status"], lines[at : at + 3]


def test_without_paho_mqtt_is_one_line_saying_what_to_install(monkeypatch):
    import sys

    from fer_edge.edge.errors import ConfigError
    from fer_edge.edge.mqtt import MqttSink

    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # as if it were not installed
    with pytest.raises(ConfigError) as exc:
        MqttSink(in_process_settings(1883, "none"), ("neutral",))
    assert str(exc.value) == (
        "--mqtt needs paho-mqtt 2.x: pip install 'paho-mqtt>=2.1,<3' "
        "(or, in a clone of fer-edge: pip install -e '.[mqtt]')"
    )


def test_a_message_paho_will_not_send_is_one_warning_and_publishing_goes_on(tmp_path, caplog):
    """Through the Python API nothing checks the discovery prefix (the CLI refuses + and #):
    paho refuses the first discovery topic with a wildcard; that is one warning and one
    dropped message, and the states still go out."""
    import logging

    from fer_edge.edge.mqtt import MqttSink

    caplog.set_level(logging.INFO, logger="fer_edge.edge.mqtt")
    with broker(tmp_path) as b, subscriber(b.port) as sub:
        settings = in_process_settings(b.port, "wild", discovery_prefix="ha/+")
        with MqttSink(settings, ("neutral", "happy")) as sink:
            wait_for(lambda: sub.on(f"{PREFIX}/status") == [b"online"], 10, "online")
            sink.write(in_process_result(0.0, 1))
            wait_for(lambda: sub.on(f"{PREFIX}/state"), 10, "a state")
            assert sink.dropped == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "MQTT: a message could not be sent (Publish topic cannot contain wildcards.)",
        "MQTT: 1 messages were dropped in this run",
    ]


def test_a_program_that_never_closes_its_sink_still_exits(tmp_path):
    """A script using the API that forgets close() (or dies of an exception outside `with`)
    must still exit: the sink's threads do not hold the interpreter, even while they wait for
    a broker that is not there."""
    import subprocess
    import sys

    script = (
        "from fer_edge.edge.mqtt import MqttSettings, MqttSink\n"
        f"MqttSink(MqttSettings(host='127.0.0.1', port={free_port()}, tls=False, topic='t',"
        " client_id='left-open'), ('neutral',))\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=10, cwd=tmp_path)  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
