"""Our MQTT discovery against Home Assistant itself (issue #16 item 7), not against our idea of it.

Home Assistant 2023.12 (the last release that runs on Python 3.11) is installed from PyPI into
its own venv, cached under ~/.cache/fer-edge/ (or $XDG_CACHE_HOME/fer-edge/) by version, so
only the first run pays the install (about 20 s on a quiet machine, 2 min on a busy one). It
starts from a fresh config folder with a real Mosquitto on a random loopback port, MQTT added
as a user adds it (the config flow, over the REST API), and the runtime plays the 480p video.

FER_EDGE_SKIP_HA=1 skips this test (for a machine that cannot reach PyPI); nothing else does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from fer_edge.edge.contract import read_contract
from test_mqtt import PREFIX, broker, running, start_run, subscriber

HA_VERSION = "2023.12.4"
# what the integrations this test loads need, at HA's own pins (HA would pip-install them at
# start; installed with it instead, HA runs with --skip-pip: no network after the venv). MQTT
# sets up its camera platform too, which imports numpy.
HA_REQUIREMENTS = [f"homeassistant=={HA_VERSION}", "paho-mqtt==1.6.1", "janus==1.0.0",
                   "PyTurboJPEG==1.7.1", "numpy==1.26.0"]  # fmt: skip
TOPIC = PREFIX  # fer-edge/testcam: the device "fer-edge testcam"

pytestmark = pytest.mark.slow


def ha_python() -> str:
    """A Python 3.11 for Home Assistant's venv (2023.12 needs >= 3.11)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        pytest.fail("Home Assistant 2023.12 needs Python 3.11: install python3.11 "
                    "(or set FER_EDGE_SKIP_HA=1 to skip this test)")  # fmt: skip
    return found


def ha_venv() -> Path:
    """The cached venv with Home Assistant: created when missing, completed when a run was
    interrupted or HA_REQUIREMENTS changed (pip installs only what is missing)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer-edge"
    venv = cache / f"homeassistant-{HA_VERSION}-py311"
    done = venv / "fer-edge-installed.json"
    if done.exists() and json.loads(done.read_text()) == HA_REQUIREMENTS:
        return venv
    started = time.monotonic()
    if not (venv / "bin/python").exists():
        subprocess.run([ha_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *HA_REQUIREMENTS],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    done.write_text(json.dumps(HA_REQUIREMENTS))
    print(f"\nHome Assistant {HA_VERSION} installed in {time.monotonic() - started:.0f} s: {venv}")
    return venv


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_config(folder: Path, http_port: int) -> str:
    """A config folder as after onboarding: one owner with a long-lived token (written to
    .storage/auth, as HA stores it) and the integrations the test talks to. Returns an access
    token: a JWT signed with the refresh token's key, exactly what HA itself issues."""
    (folder / ".storage").mkdir(parents=True)
    (folder / "configuration.yaml").write_text(
        "homeassistant:\n  name: fer-edge test\n  latitude: 0\n  longitude: 0\n"
        "  elevation: 0\n  unit_system: metric\n  time_zone: UTC\n  country: CH\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {http_port}\n"
        "api:\nconfig:\nlogger:\n  default: warning\n"
    )
    user_id, token_id, jwt_key = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(64)
    auth = {
        "users": [{"id": user_id, "group_ids": ["system-admin"], "is_owner": True,
                   "is_active": True, "name": "fer-edge test", "system_generated": False,
                   "local_only": False}],
        "groups": [{"id": "system-admin"}, {"id": "system-users"}, {"id": "system-read-only"}],
        "credentials": [],
        "refresh_tokens": [{"id": token_id, "user_id": user_id, "client_id": None,
                            "client_name": "fer-edge test", "client_icon": None,
                            "token_type": "long_lived_access_token",
                            "created_at": datetime.now(timezone.utc).isoformat(),
                            "access_token_expiration": 3600, "token": secrets.token_hex(64),
                            "jwt_key": jwt_key, "last_used_at": None, "last_used_ip": None,
                            "credential_id": None, "version": HA_VERSION}],
    }  # fmt: skip
    store = {"version": 1, "minor_version": 1, "key": "auth", "data": auth}
    (folder / ".storage" / "auth").write_text(json.dumps(store))
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"iss": token_id, "iat": now, "exp": now + 3600}).encode())
    signed = f"{header}.{claims}".encode()
    return f"{header}.{claims}.{b64(hmac.new(jwt_key.encode(), signed, hashlib.sha256).digest())}"


class HomeAssistant:
    """Home Assistant's REST API, as an automation or a dashboard sees it."""

    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def call(self, path: str, body: dict | None = None, text: bool = False):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method="POST" if data else "GET")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read().decode()
        return raw if text else json.loads(raw)

    def up(self) -> bool:
        try:
            return self.call("/api/")["message"] == "API running."
        except (OSError, ValueError):
            return False

    def template(self, template: str):
        return json.loads(self.call("/api/template", {"template": template}, text=True))

    def states(self, entity_ids: list[str]) -> dict[str, str]:
        return {e: self.call(f"/api/states/{e}")["state"] for e in entity_ids}


@contextmanager
def home_assistant(folder: Path):
    venv = ha_venv()
    port = free_port()
    token = write_config(folder / "config", port)
    log = folder / "hass.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(venv / "bin/hass"), "-c", str(folder / "config"), "--skip-pip",
             "--log-no-color"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    ha = HomeAssistant(port, token)
    try:
        started = time.monotonic()

        def up():
            assert proc.poll() is None, log.read_text()[-3000:]
            return ha.up()

        wait_for(up, 180, "Home Assistant's API")
        print(f"\nHome Assistant {HA_VERSION} up in {time.monotonic() - started:.0f} s")
        yield ha
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def expected_states(summary: dict, labels: tuple[str, ...]) -> dict:
    """Entity id -> the state our discovery configs make of this summary."""
    want = {
        "dominant_emotion": summary["dominant"] or "none",
        "faces_in_view": summary["faces"],
        "frame_rate": summary["fps"],
        "mqtt_messages_dropped": summary["dropped"],
        **{f"{lb}_share": round(summary["share"][lb] * 100, 1) for lb in labels},
    }
    return {f"sensor.{TOPIC.replace('-', '_').replace('/', '_')}_{k}": v for k, v in want.items()}


def matches(states: dict[str, str], want: dict) -> bool:
    for entity, value in want.items():
        state = states.get(entity)
        if isinstance(value, str):
            if state != value:
                return False
        else:
            try:
                if abs(float(state) - value) > 1e-9:
                    return False
            except (TypeError, ValueError):
                return False
    return True


@pytest.mark.skipif(os.environ.get("FER_EDGE_SKIP_HA") == "1", reason="FER_EDGE_SKIP_HA=1")
def test_home_assistant_shows_the_camera_follows_it_and_marks_it_unavailable(
    video, int8_model, tmp_path
):
    """Our device and its 9 sensors appear in Home Assistant; while the runtime plays the video
    their states are those of the last summary it published (the emotion sensor: its dominant
    label); when it stops they are unavailable; HA logs no error or warning about them."""
    labels = read_contract(int8_model).labels
    all_mqtt = "{{ integration_entities('mqtt') | list | tojson }}"
    with broker(tmp_path) as b, home_assistant(tmp_path) as ha:
        # MQTT as a user adds it: Settings > Devices > Add integration > MQTT > broker, port
        flow = ha.call("/api/config/config_entries/flow", {"handler": "mqtt"})
        assert flow.get("step_id") == "broker", flow
        done = ha.call(f"/api/config/config_entries/flow/{flow['flow_id']}",
                       {"broker": "127.0.0.1", "port": b.port})  # fmt: skip
        assert done["type"] == "create_entry", done
        assert ha.template(all_mqtt) == []

        events, log = tmp_path / "events.jsonl", tmp_path / "run.log"
        flags = ["--mqtt", f"mqtt://127.0.0.1:{b.port}", "--mqtt-summary-every", "1"]
        with subscriber(b.port) as sub, running(
            start_run(video, int8_model, events, log, *flags)  # --mqtt-topic TOPIC
        ) as run:
            entities = wait_for(lambda: len(e := ha.template(all_mqtt)) >= 9 and e, 60,
                                "the camera's entities in Home Assistant")  # fmt: skip
            time.sleep(1.0)  # any tenth entity would be announced with the nine

            def last_summary() -> dict | None:
                with sub._lock:
                    found = [p for t, p, _, _ in sub.messages if t == f"{TOPIC}/summary"]
                return json.loads(found[-1]) if found else None

            def follows() -> dict | None:
                """The last summary, if HA's states are its states (the same summary before
                and after reading them: the runtime publishes one a second)."""
                before = last_summary()
                states = ha.states(entities)
                seen.update(states=states, summary=before)
                if before and last_summary() == before:
                    if matches(states, expected_states(before, labels)):
                        return before
                return None

            entities, seen = ha.template(all_mqtt), {}
            try:
                followed = wait_for(follows, 30, "HA's states to be the last summary's")
            except AssertionError as exc:
                want = expected_states(seen["summary"], labels) if seen["summary"] else None
                raise AssertionError(f"{exc}: HA has {seen['states']}, expected {want}") from None
            name = f"{{{{ device_attr(device_id('{entities[0]}'), 'name') | tojson }}}}"
            device = ha.template(name)
            run.send_signal(signal.SIGTERM)
            assert run.wait(timeout=20) == 0, log.read_text()
        gone = wait_for(lambda: set(ha.states(entities).values()) == {"unavailable"}, 30,
                        "the entities to go unavailable")  # fmt: skip
        error_log = ha.call("/api/error_log", text=True)
    assert gone
    assert sorted(entities) == sorted(expected_states(followed, labels)), entities
    assert followed["dominant"] in labels
    assert device == "fer-edge testcam"
    # no error at all, and no warning but the one --skip-pip always gives (so this is HA's log)
    assert "Skipping pip installation" in error_log
    bad = [ln for ln in error_log.splitlines() if " ERROR " in ln or " CRITICAL " in ln
           or (" WARNING " in ln and "Skipping pip installation" not in ln)]  # fmt: skip
    assert not bad, "\n".join(bad)
    assert "Traceback" not in log.read_text()
