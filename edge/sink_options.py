"""Flags of the optional sinks of `run`: MQTT (edge/mqtt.py), the dashboard (edge/dashboard.py)
and the run summary's files (edge/summary.py).

Only argparse lives here, so a run without --mqtt / --dashboard imports neither client nor
server code: `cmd_run` imports those modules only when their flag is given.
"""

from __future__ import annotations

import argparse
import socket

from fer_edge.edge.cliframe import non_negative_float, positive_float, positive_int


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port 1-65535 (0 = off), got {value}")
    return value


def add_sink_flags(p: argparse.ArgumentParser) -> None:
    host = socket.gethostname().split(".")[0] or "camera"
    g = p.add_argument_group("MQTT and Home Assistant (needs the mqtt extra: paho-mqtt)")
    g.add_argument(
        "--mqtt",
        default=None,
        metavar="URL",
        help="publish to this broker: mqtt://[user@]host[:port] or mqtts://... (TLS)",
    )
    g.add_argument(
        "--mqtt-topic", default=f"fer-edge/{host}", metavar="PREFIX", help="prefix of every topic"
    )
    g.add_argument(
        "--mqtt-password-file",
        default=None,
        metavar="PATH",
        help="file holding the broker password (else env FER_EDGE_MQTT_PASSWORD)",
    )
    g.add_argument(
        "--mqtt-ca-file",
        default=None,
        metavar="PATH",
        help="CA bundle that signed the broker's certificate (mqtts://; None = system CAs)",
    )
    g.add_argument("--mqtt-qos", type=int, default=1, choices=[0, 1, 2], help="QoS of messages")
    g.add_argument(
        "--mqtt-discovery",
        default="on",
        choices=["on", "off"],
        help="Home Assistant discovery configs: on publishes them, off removes them",
    )
    g.add_argument(
        "--mqtt-discovery-prefix",
        default="homeassistant",
        metavar="PREFIX",
        help="Home Assistant discovery prefix",
    )
    g.add_argument(
        "--mqtt-summary-every",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between summary messages",
    )
    g.add_argument(
        "--mqtt-window",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="the summary's share of each emotion covers this many seconds",
    )
    g.add_argument(
        "--mqtt-max-rate",
        type=non_negative_float,
        default=20.0,
        metavar="PER_SECOND",
        help="messages per second at most (0 = no limit); the rest wait in the queue",
    )
    g.add_argument(
        "--mqtt-queue",
        type=positive_int,
        default=1000,
        metavar="N",
        help="messages kept while the broker is away; beyond it the oldest are dropped",
    )
    # 0.5 s: on the 480p test video a face's happy spells last 0.6-0.7 s and its surprise
    # flickers 0.07-0.13 s; 0.5 s keeps the first and drops the second (1 s drops both)
    g.add_argument(
        "--mqtt-min-dwell",
        type=non_negative_float,
        default=0.5,
        metavar="SECONDS",
        help="a new label is published on PREFIX/state once it has held this long (stream "
        "time; 0 = every change at once)",
    )
    g.add_argument(
        "--mqtt-client-id",
        default="",
        metavar="ID",
        help="MQTT client id ('' = fer-edge-<hostname>-<random>)",
    )

    g = p.add_argument_group("dashboard (a page with the live video and the emotions)")
    g.add_argument(
        "--dashboard",
        type=port_number,
        default=0,
        metavar="PORT",
        help="serve the dashboard on this port (0 = off)",
    )
    g.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to bind; any non-loopback address requires a token",
    )
    g.add_argument(
        "--dashboard-token",
        default=None,
        metavar="TOKEN",
        help="token the browser must present (visible in ps: prefer --dashboard-token-file)",
    )
    g.add_argument(
        "--dashboard-token-file",
        default=None,
        metavar="PATH",
        help="file holding the token (else env FER_EDGE_DASHBOARD_TOKEN)",
    )
    g.add_argument(
        "--dashboard-window",
        type=positive_float,
        default=300.0,
        metavar="SECONDS",
        help="the timeline shows this many seconds of stream time",
    )
    g.add_argument(
        "--dashboard-fps",
        type=positive_float,
        default=15.0,
        metavar="FPS",
        help="the video on the page is encoded at most this often (only while watched)",
    )

    g = p.add_argument_group("what the run saw (printed at the end: per face, its emotions)")
    g.add_argument(
        "--summary-csv",
        default=None,
        metavar="FILE",
        help="write per second and face the share of frames in each emotion (CSV)",
    )
    g.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the emotion timeline per face (needs matplotlib)",
    )
