"""MQTT sink: emotions to a broker and to Home Assistant, metadata only (never images).

Topics, with PREFIX = --mqtt-topic (default fer-edge/<hostname>); schemas in the README:
  PREFIX/status    "online" / "offline", retained; "offline" is also the last will
  PREFIX/state     one JSON object per track when its label changes and the new one has held
                   for --mqtt-min-dwell seconds of stream time (mqtt_state.LabelDwell)
  PREFIX/summary   JSON every --mqtt-summary-every seconds, retained
  <discovery>/sensor/<node>/<key>/config   Home Assistant discovery, retained (mqtt_config.py)

The frame loop only queues messages. A publisher thread sends them while the broker is
connected, at most --mqtt-max-rate a second; paho's own thread reconnects with backoff. A broker
that is down never stops the camera or the events file: the queue holds --mqtt-queue messages,
the oldest are dropped beyond that, and each outage is one log line with the count dropped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from fer_edge.edge.errors import ConfigError
from fer_edge.edge.mqtt_config import MqttSettings, discovery_messages
from fer_edge.edge.mqtt_state import LabelDwell, ShareWindow
from fer_edge.edge.sinks import face_event
from fer_edge.edge.types import FrameResult

log = logging.getLogger(__name__)

__all__ = ["MqttSettings", "MqttSink", "ShareWindow"]


def _paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ConfigError(
            "--mqtt needs paho-mqtt 2.x: pip install 'paho-mqtt>=2.1,<3' "
            "(or, in a clone of fer-edge: pip install -e '.[mqtt]')"
        ) from None
    return mqtt


class MqttSink:
    """Publishes a run's results; a context manager. `write(result)` is cheap and never blocks."""

    def __init__(self, settings: MqttSettings, labels: tuple[str, ...]):
        mqtt = _paho()
        self.settings, self.labels = settings, labels
        s = settings
        self.status_topic = f"{s.topic}/status"
        self.state_topic = f"{s.topic}/state"
        self.summary_topic = f"{s.topic}/summary"
        self.where = f"{'mqtts' if s.tls else 'mqtt'}://{s.host}:{s.port}"
        self.dropped = 0
        self._outbox: deque[tuple[str, bytes, bool]] = deque()
        self._cond = threading.Condition()
        self._online = self._stopping = self._closed = False
        self._hello = False  # (re)publish status and discovery on the next connection
        self._outage_since: float | None = time.monotonic()
        self._outage_logged = False
        self._was_connected = False
        self._dropped_at_outage = 0
        self._dwell = LabelDwell(s.min_dwell)
        self._window = ShareWindow(len(labels), s.window)
        self._frames_since = 0
        self._summary_at = 0.0  # the first frame publishes a summary, then every summary_every
        self._last_summary_mono = time.monotonic()
        self._last_result: FrameResult | None = None  # for the closing summary

        c = self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv311
        )
        c.will_set(self.status_topic, "offline", qos=s.qos, retain=True)
        if s.username:
            c.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                c.tls_set(ca_certs=s.ca_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"--mqtt-ca-file {s.ca_file}: not usable ({exc})") from None
        c.reconnect_delay_set(min_delay=1, max_delay=16)
        # paho holds only what was handed over while connected and is not acknowledged yet;
        # the room beyond our queue is for the status and discovery messages of a (re)connect
        c.max_queued_messages_set(s.queue + 64)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.connect_async(s.host, s.port, keepalive=30)
        log.info("MQTT: publishing to %s under %s/", self.where, s.topic)
        c.loop_start()
        self._thread = threading.Thread(target=self._publish_loop, name="mqtt-out", daemon=True)
        self._thread.start()

    # -- the frame loop's side ------------------------------------------------------------

    needs_canvas = False  # the frame loop's sink interface (edge.sinks.Sink): metadata only

    def write(self, result: FrameResult, canvas=None) -> bool:
        now = time.monotonic()
        indices = [face.label_index() for face in result.faces]
        for face, k in zip(result.faces, indices):
            previous = self._dwell.published.get(face.track)
            since = self._dwell.update(face.track, self.labels[k], result.frame.t)
            if since is not None:
                event = face_event(result, face, self.labels)
                event.update(previous=previous, since=round(since, 4), time=round(time.time(), 3))
                self._queue(self.state_topic, event, retain=False)
        if len(self._dwell) > 256:  # tracks that left long ago
            self._dwell.forget({f.track for f in result.faces})
        self._window.add(now, indices)
        self._frames_since += 1
        self._last_result = result
        if now >= self._summary_at:
            elapsed = max(1e-6, now - self._last_summary_mono)
            fps = self._frames_since / elapsed if self._summary_at else 0.0
            payload = self._summary(result, fps)
            self._queue(self.summary_topic, payload, retain=True)
            self._summary_at = now + self.settings.summary_every
            self._frames_since, self._last_summary_mono = 0, now
        return True

    def _summary(self, result: FrameResult, fps: float) -> dict:
        shares = self._window.shares()
        seen = sum(self._window.counts)
        return {
            "time": round(time.time(), 3),
            "frame": result.frame.index,
            "t": round(result.frame.t, 4),
            "faces": len(result.faces),
            "tracks": [f.track for f in result.faces],
            "dominant": self.labels[shares.index(max(shares))] if seen else None,
            "share": {lb: round(x, 4) for lb, x in zip(self.labels, shares)},
            "window_s": self.settings.window,
            "fps": round(fps, 1),
            "dropped": self.dropped,
        }

    def _queue(self, topic: str, payload: dict, retain: bool) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        with self._cond:
            if len(self._outbox) >= self.settings.queue:
                self._outbox.popleft()  # the oldest goes: the newest state matters most
                self.dropped += 1
            self._outbox.append((topic, data, retain))
            self._cond.notify()

    # -- paho's network thread --------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._outage(f"the broker refused the connection ({reason_code})")
            return
        with self._cond:
            self._online, self._hello = True, True
            self._cond.notify()
        if self._outage_logged:
            log.info(
                "MQTT: connected to %s %safter %.0f s; %d messages dropped meanwhile (%d in all)",
                self.where,
                "again " if self._was_connected else "",
                time.monotonic() - (self._outage_since or time.monotonic()),
                self.dropped - self._dropped_at_outage,
                self.dropped,
            )
        else:
            log.info("MQTT: connected to %s", self.where)
        self._outage_since, self._outage_logged, self._was_connected = None, False, True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            was_online, self._online = self._online, False
            stopping = self._stopping
        if was_online and not stopping:
            self._outage(f"lost the connection ({reason_code})")

    def _on_connect_fail(self, client, userdata):
        self._outage("cannot connect")

    def _outage(self, why: str) -> None:
        with self._cond:
            self._online = False
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        if not self._outage_logged and not self._stopping:
            self._outage_logged = True
            self._dropped_at_outage = self.dropped
            log.warning(
                "MQTT: %s: %s; the camera and events go on, messages queue (at most %d, "
                "then the oldest are dropped) while reconnecting with backoff",
                self.where,
                why,
                self.settings.queue,
            )

    # -- the publisher thread ---------------------------------------------------------------

    def _publish_loop(self) -> None:
        rate = self.settings.max_rate
        next_at = 0.0
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._stopping or (self._online and (self._hello or self._outbox)),
                    timeout=1.0,
                )
                if self._stopping and not (self._online and self._outbox):
                    return
                if not (self._online and (self._hello or self._outbox)):
                    continue  # woken by the timeout with nothing to send
                hello, self._hello = self._hello, False
                item = None if hello else self._outbox.popleft()
            try:
                if hello:
                    self._send_hello()
                    continue
                if rate > 0:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_at = max(next_at, time.monotonic() - 1.0) + 1.0 / rate
                topic, data, retain = item
                info = self._client.publish(topic, data, qos=self.settings.qos, retain=retain)
                if info.rc != 0:
                    self._requeue(item, info.rc)
            except Exception as exc:  # publishing must outlive any one bad message
                log.warning("MQTT: a message could not be sent (%s)", exc)
                with self._cond:
                    self.dropped += 1

    def _requeue(self, item, rc) -> None:
        mqtt = _paho()
        if rc == mqtt.MQTT_ERR_NO_CONN and self.settings.qos == 0:
            with self._cond:
                self._outbox.appendleft(item)  # sent when the connection is back
                self._online = self._client.is_connected()
            time.sleep(0.1)  # paho may not have noticed the lost connection yet
        elif rc != mqtt.MQTT_ERR_NO_CONN:  # QoS 1/2 with no connection stay in paho's queue
            with self._cond:
                self.dropped += 1

    def _send_hello(self) -> None:
        s = self.settings
        hello = [(self.status_topic, b"online")]
        hello += discovery_messages(s, self.labels, self.status_topic)
        for topic, payload in hello:
            info = self._client.publish(topic, payload, qos=s.qos, retain=True)
            if info.rc != 0:  # the connection went again; the next connect repeats them all
                log.debug("MQTT: %s not sent (%s)", topic, info.rc)
                return

    # -- shutdown ---------------------------------------------------------------------------

    def close(self, flush_seconds: float = 3.0) -> None:
        """A last summary; what is queued is sent (while connected, for at most `flush_seconds`);
        then "offline". Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._last_result is not None and self._frames_since:
            elapsed = max(1e-6, time.monotonic() - self._last_summary_mono)
            fps = self._frames_since / elapsed
            self._queue(self.summary_topic, self._summary(self._last_result, fps), retain=True)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(flush_seconds)
        if self._client.is_connected():
            qos = self.settings.qos
            info = self._client.publish(self.status_topic, "offline", qos=qos, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        with self._cond:
            left = len(self._outbox)
        self.dropped += left
        if self.dropped:
            log.warning("MQTT: %d messages were dropped in this run", self.dropped)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
