"""How many PREFIX/state messages a run sends, for each --mqtt-min-dwell (issue #16 item 7).

    python -m fer_edge.benchmarks.mqtt_states [--source VIDEO] [--dwell 0,0.5] [--json OUT]

For each dwell: a Mosquitto this tool starts on a loopback port, a subscriber counting the
messages on PREFIX/state, and `fer-edge run --mqtt --events` on the video. Besides the count,
each second of stream time gets a label twice: from the events file, the most frequent label
among that second's face-frames; from MQTT, the most frequent published state among them (a
face-frame has its track's last state published at or before that frame; face-frames before a
track's first state do not count). The debounce is right when the second list is the first.
Stream time, not wall time, decides the dwell, so the figures are the same at any speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from fer_edge.benchmarks.sinks import ROOT, start_mosquitto
from fer_edge.edge.config import default_model_path

TOPIC = "fer-edge/bench"


def per_second(rows: list[dict], labels: list[str | None]) -> list[str | None]:
    """The most frequent of `labels` (one per row; None = not counted) in each whole second."""
    seconds: dict[int, Counter] = {}
    for row, label in zip(rows, labels):
        counter = seconds.setdefault(int(row["t"]), Counter())
        if label is not None:
            counter[label] += 1
    last = max(seconds, default=-1)
    return [
        seconds[s].most_common(1)[0][0] if seconds.get(s) else None for s in range(last + 1)
    ]


def states_per_row(rows: list[dict], states: list[dict]) -> list[str | None]:
    """Each events row's published state: its track's last state message at or before it."""
    by_track: dict[int, list[dict]] = {}
    for s in states:
        by_track.setdefault(s["track"], []).append(s)
    out = []
    for row in rows:
        done = [s for s in by_track.get(row["track"], []) if s["frame"] <= row["frame"]]
        out.append(done[-1]["label"] if done else None)
    return out


def count_states(source: Path, model: Path, dwell: float, mqtt_url: str, port: int) -> dict:
    """One run with `--mqtt-min-dwell dwell`: its state messages and the labels per second."""
    import paho.mqtt.client as mqtt

    states: list[dict] = []
    offline, subscribed = threading.Event(), threading.Event()

    def on_message(client, userdata, msg):
        if msg.topic == f"{TOPIC}/state":
            states.append(json.loads(msg.payload))
        elif msg.topic == f"{TOPIC}/status" and msg.payload == b"offline" and not msg.retain:
            offline.set()  # sent after the last state (same client, QoS 1, in order)

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe(f"{TOPIC}/#", qos=1)
    sub.loop_start()
    try:
        if not subscribed.wait(10):
            raise SystemExit("the subscriber could not subscribe")
        with tempfile.TemporaryDirectory() as tmp:
            events = Path(tmp) / "events.jsonl"
            cmd = [sys.executable, "-m", "fer_edge.edge", "run", "--source", str(source),
                   "--model", str(model), "--headless", "--events", str(events),
                   "--mqtt", mqtt_url, "--mqtt-topic", TOPIC,
                   "--mqtt-min-dwell", str(dwell)]  # fmt: skip
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"fer-edge run failed: {proc.stderr.strip()[-500:]}")
            rows = [json.loads(line) for line in events.read_text().splitlines()]
        if not offline.wait(10):
            raise SystemExit("no 'offline' from the run: its last messages may be missing")
    finally:
        sub.disconnect()
        sub.loop_stop()
    return {
        "min_dwell": dwell,
        "state_messages": len(states),
        "states": [(s["frame"], s["track"], s["label"]) for s in states],
        "events_per_second": per_second(rows, [r["label"] for r in rows]),
        "mqtt_per_second": per_second(rows, states_per_row(rows, states)),
    }


def measure(source: Path, model: Path, dwells: list[float]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        broker, url = start_mosquitto(Path(tmp))
        try:
            port = int(url.rsplit(":", 1)[1])
            runs = [count_states(source, model, d, url, port) for d in dwells]
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    return {"source": str(source), "model": str(model), "runs": runs}


def default_dwell() -> float:
    """`fer-edge run`'s default --mqtt-min-dwell."""
    from fer_edge.edge.sink_options import add_sink_flags

    p = argparse.ArgumentParser()
    add_sink_flags(p)
    return p.get_default("mqtt_min_dwell")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fer_edge.benchmarks.mqtt_states",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--source",
        default=str(ROOT.parent / "shared/media/face_1zlab_854x480_30fps.mp4"),
        help="video file",
    )
    p.add_argument("--model", default=str(default_model_path()), help="model (.tflite)")
    p.add_argument(
        "--dwell",
        default=f"0,{default_dwell():g}",
        help="--mqtt-min-dwell values, comma-separated (0 = every change, as before the dwell)",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results here")
    args = p.parse_args(argv)
    try:
        dwells = [float(x) for x in args.dwell.split(",")]
    except ValueError:
        p.error(f"--dwell {args.dwell}: give seconds such as 0,0.5")
    if not Path(args.source).is_file():
        p.error(f"--source {args.source}: no such video file")
    started = time.monotonic()
    result = measure(Path(args.source), Path(args.model), dwells)
    base = result["runs"][0]
    print(f"{Path(args.source).name}: messages on PREFIX/state per --mqtt-min-dwell")
    print("| min dwell (s) | state messages | vs first | label per second (MQTT) | = events |")
    print("|---|---|---|---|---|")
    for r in result["runs"]:
        ratio = r["state_messages"] / max(1, base["state_messages"])
        same = "yes" if r["mqtt_per_second"] == r["events_per_second"] else "NO"
        seconds = " ".join(lb or "-" for lb in r["mqtt_per_second"])
        print(f"| {r['min_dwell']:g} | {r['state_messages']} | {ratio:.2f} | {seconds} | {same} |")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
