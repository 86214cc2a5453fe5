"""What the MQTT sink publishes where: its settings (from the --mqtt-* flags) and the Home
Assistant discovery configs. Standard library only; paho is imported by edge/mqtt.py."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fer_edge.edge.contract import DEFAULT_LABELS, FER2013_CLASSES
from fer_edge.edge.errors import ConfigError

log = logging.getLogger(__name__)

PASSWORD_ENV = "FER_EDGE_MQTT_PASSWORD"
_TOPIC_BAD = re.compile(r"[+#\x00]")


@dataclass(frozen=True)
class MqttSettings:
    host: str  # broker address
    port: int  # 1883 for mqtt://, 8883 for mqtts:// unless the URL says otherwise
    tls: bool  # mqtts:// : TLS, verified against ca_file or the system's CAs
    topic: str  # prefix of every topic this camera publishes
    username: str | None = None  # from the URL
    password: str | None = field(default=None, repr=False)  # file, env var, or (discouraged) URL
    ca_file: str | None = None  # CA bundle for mqtts:// (None = the system's)
    qos: int = 1  # QoS of every message
    discovery: bool = True  # publish Home Assistant discovery configs; False removes them
    discovery_prefix: str = "homeassistant"  # Home Assistant's discovery topic prefix
    summary_every: float = 5.0  # seconds between summaries
    window: float = 60.0  # seconds the summary's shares cover
    max_rate: float = 20.0  # messages per second at most (0 = unlimited)
    queue: int = 1000  # messages held while the broker is away; the oldest go beyond it
    min_dwell: float = 0.5  # seconds a new label must hold before PREFIX/state has it
    client_id: str = ""  # MQTT client id

    @property
    def node_id(self) -> str:
        """The camera's id in Home Assistant: the topic prefix with unsafe characters as _."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.topic)

    @classmethod
    def from_args(cls, args) -> MqttSettings:
        url = urlsplit(args.mqtt)
        if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
            raise ConfigError(
                f"--mqtt {args.mqtt}: expected mqtt://[user@]host[:port] or mqtts://..."
            )
        tls = url.scheme == "mqtts"
        try:
            port = url.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"--mqtt {args.mqtt}: the port is not a number 1-65535") from None
        username = unquote(url.username) if url.username else None
        password = unquote(url.password) if url.password is not None else None
        if password is not None:
            log.warning(
                "--mqtt: a password in the URL is visible to every user (ps, the journal); "
                "use --mqtt-password-file or %s",
                PASSWORD_ENV,
            )
        if args.mqtt_password_file:
            try:
                password = Path(args.mqtt_password_file).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"--mqtt-password-file {args.mqtt_password_file}: cannot read ({exc.strerror})"
                ) from None
        elif password is None and os.environ.get(PASSWORD_ENV):
            password = os.environ[PASSWORD_ENV]
        if password is not None and not username:
            raise ConfigError(
                f"--mqtt {args.mqtt}: a password needs a user name: mqtt://USER@{url.hostname}"
            )
        if args.mqtt_ca_file:
            if not tls:
                raise ConfigError(
                    f"--mqtt-ca-file {args.mqtt_ca_file}: only used with mqtts:// (TLS)"
                )
            if not Path(args.mqtt_ca_file).is_file():
                raise ConfigError(f"--mqtt-ca-file {args.mqtt_ca_file}: no such file")
        for flag, value in (
            ("--mqtt-topic", args.mqtt_topic),
            ("--mqtt-discovery-prefix", args.mqtt_discovery_prefix),
        ):
            if not value or _TOPIC_BAD.search(value) or "/" in (value[0], value[-1]):
                raise ConfigError(
                    f"{flag} {value!r}: give a topic prefix such as fer-edge/kitchen "
                    "(no + or #, no leading or trailing /)"
                )
        return cls(
            host=url.hostname,
            port=port,
            tls=tls,
            topic=args.mqtt_topic,
            username=username,
            password=password,
            ca_file=args.mqtt_ca_file,
            qos=args.mqtt_qos,
            discovery=args.mqtt_discovery == "on",
            discovery_prefix=args.mqtt_discovery_prefix,
            summary_every=args.mqtt_summary_every,
            window=args.mqtt_window,
            max_rate=args.mqtt_max_rate,
            queue=args.mqtt_queue,
            min_dwell=args.mqtt_min_dwell,
            client_id=args.mqtt_client_id
            or f"fer-edge-{socket.gethostname()}-{secrets.token_hex(3)}",
        )


def _key(label: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", label.lower())


def sensors(labels: tuple[str, ...]) -> dict[str, dict]:
    """Sensor key -> the part of its discovery config that differs between sensors."""
    out = {
        "dominant": {
            "name": "Dominant emotion",
            "value_template": "{{ value_json.dominant or 'none' }}",
            "icon": "mdi:emoticon-outline",
        },
        "faces": {
            "name": "Faces in view",
            "value_template": "{{ value_json.faces }}",
            "state_class": "measurement",
            "icon": "mdi:account-multiple",
        },
    }
    for label in labels:
        out[f"share_{_key(label)}"] = {
            "name": f"{label.capitalize()} share",
            "value_template": f"{{{{ (value_json.share[{json.dumps(label)}] * 100) | round(1) }}}}",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:chart-donut",
        }
    out["fps"] = {
        "name": "Frame rate",
        "value_template": "{{ value_json.fps }}",
        "unit_of_measurement": "fps",
        "state_class": "measurement",
        "entity_category": "diagnostic",
    }
    out["dropped"] = {
        "name": "MQTT messages dropped",
        "value_template": "{{ value_json.dropped }}",
        "state_class": "total_increasing",
        "entity_category": "diagnostic",
    }
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return "unknown"


def discovery_messages(
    s: MqttSettings, labels: tuple[str, ...], status_topic: str
) -> list[tuple[str, bytes]]:
    """(topic, payload) to publish retained: a config per sensor, or b"" to remove one.

    With discovery on, share sensors of the usual labels this model lacks are removed, so a
    switch from a 7-class to a 5-class model leaves no stale entities; with it off, all are.
    """

    def topic(key: str) -> str:
        return f"{s.discovery_prefix}/sensor/{s.node_id}/{key}/config"

    current = sensors(labels) if s.discovery else {}
    others = sensors(tuple(dict.fromkeys(labels + FER2013_CLASSES + DEFAULT_LABELS)))
    sw = _version()
    device = {
        "identifiers": [f"fer_edge_{s.node_id}"],
        "name": f"fer-edge {s.topic.rsplit('/', 1)[-1]}",
        "manufacturer": "fer-edge",
        "model": f"emotion camera ({len(labels)} classes)",
        "sw_version": sw,
    }
    messages = []
    for key, part in current.items():
        config = {
            **part,
            "unique_id": f"fer_edge_{s.node_id}_{key}",
            "state_topic": f"{s.topic}/summary",
            "availability_topic": status_topic,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "origin": {"name": "fer-edge", "sw_version": sw},
        }
        messages.append((topic(key), json.dumps(config).encode()))
    messages += [(topic(key), b"") for key in others if key not in current]
    return messages
